"""nmt.scoring: the library function the trainer and recipes call."""

from __future__ import annotations

import pytest

from nmt.errors import DataError
from nmt.scoring import format_scores, score


def test_perfect_and_imperfect_scores():
    refs = ["Un homme regarde un chapeau orange.", "Deux chiens courent dans l'herbe."]
    perfect = score(refs, [refs])
    assert perfect["bleu"] == 100.0 and perfect["chrf"] == 100.0 and perfect["ter"] == 0.0
    assert (
        perfect["bleu_signature"].startswith("nrefs:1|case:mixed")
        and "tok:13a" in perfect["bleu_signature"]
    )
    hyps = ["un homme regarde un chapeau.", "Deux chats courent dans l'herbe !"]
    worse = score(hyps, [refs])
    assert 0 < worse["bleu"] < 100 and 0 < worse["chrf"] < 100 and worse["ter"] > 0
    # A second reference equal to the hypotheses can only help.
    assert score(hyps, [refs, hyps])["bleu"] == 100.0
    assert score(hyps, [refs], lowercase=True)["bleu"] > worse["bleu"]
    assert "case:lc" in score(hyps, [refs], lowercase=True)["bleu_signature"]


def test_moses_lowercased_bleu():
    refs = ["Un homme, avec un chapeau."]
    hyps = ["un homme , avec un chapeau ."]  # already lowercased and tokenized
    out = score(hyps, [refs], metrics=["bleu"], moses_lc_tok=True, lang="fr")
    assert out["bleu_lc_tok"] == 100.0 and out["bleu"] < 100.0
    assert "tok:none" in out["bleu_lc_tok_signature"] and "moses" in out["bleu_lc_tok_signature"]
    assert "BLEU (lc, Moses-tok) = 100.00" in format_scores(out)


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(DataError, match="reference stream 1 has 1 lines but there are 2"):
        score(["a", "b"], [["a"]])
