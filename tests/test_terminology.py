"""Terminology (nmt/search/terminology.py): matching, term files, and terms through the
Translator (one process and forked workers) and ``nmt-translate --terms``."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import make_checkpoint, one_line_error, run_main
from omegaconf import OmegaConf

from nmt.errors import NMTError
from nmt.inference import load_for_inference
from nmt.search.terminology import TermTable
from nmt.search.translator import Translator

LINES = ["A dog runs on the beach.", "", "Two men in red shirts play.", "A woman sits."]
TERMS = "dog\tchien\nbeach\tplage\n\nshirts\tchemises\n"


def test_whole_words_any_case_in_order_each_once():
    table = TermTable.from_pairs([("dog", "chien"), ("beach", "plage"), ("Hot dog", "hot-dog")])
    assert table.constraints_for("The BEACH, a Dog and a dog.") == ["plage", "chien"]
    assert table.constraints_for("dogs on beaches; a hotdog; underdog") == []
    assert table.constraints_for("a  hot\tdog and a dog") == ["hot-dog", "chien"]
    assert TermTable.from_pairs([]).constraints_for("a dog") == []


def test_letters_whose_case_folding_differs_still_find_their_term():
    """IGNORECASE matches "KAPI" to "kapı" (and "İ" to "i") though casefold() differs."""
    assert TermTable.from_pairs([("kapı", "porte")]).constraints_for("KAPI açık") == ["porte"]
    assert TermTable.from_pairs([("i", "x")]).constraints_for("İ") == ["x"]


def test_the_longest_match_wins_on_overlaps():
    table = TermTable.from_pairs(
        [("shirt", "chemise"), ("red shirt", "chemise rouge"), ("shirt collar", "col de chemise")]
    )
    assert table.constraints_for("a red shirt") == ["chemise rouge"]
    assert table.constraints_for("a red shirt collar") == ["col de chemise"]  # 12 > 9 chars
    assert table.constraints_for("a shirt, a red shirt") == ["chemise", "chemise rouge"]


def test_term_files(tmp_path):
    good = tmp_path / "terms.tsv"
    good.write_text("dog\tchien\n\n  beach \tplage\n", encoding="utf-8")
    table = TermTable.from_file(good)
    assert len(table) == 2 and table.pairs() == [("dog", "chien"), ("beach", "plage")]
    bad_lines = {
        "dog\tchien\ncat chat\n": "line 2",
        "dog\tchien\n\nbird\t\n": "line 3",
        "dog\tchien\tle chien\n": "line 1",
        "dog\tchien\nDog\tcabot\n": "line 2",
    }
    for text, where in bad_lines.items():
        good.write_text(text, encoding="utf-8")
        with pytest.raises(NMTError, match=f"{good} {where}"):
            TermTable.from_file(good)
    good.write_bytes(b"caf\xe9\tcafe\n")
    with pytest.raises(NMTError, match="not UTF-8"):
        TermTable.from_file(good)
    with pytest.raises(NMTError, match="cannot read"):
        TermTable.from_file(tmp_path / "missing.tsv")
    with pytest.raises(NMTError, match="term pair 2"):
        TermTable.from_pairs([("dog", "chien"), ("cat", " ")])


@pytest.fixture(scope="module")
def checkpoint(tiny_tokenizer, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("terms") / "best.pt", *[tiny_tokenizer] * 2)


def test_translator_puts_every_term_in_and_workers_carry_them(checkpoint):
    model, src_tok, tgt_tok, cfg = load_for_inference(checkpoint)
    dec = dataclasses.replace(OmegaConf.to_object(cfg.decode), max_len_b=12, max_sentences=1)
    table = TermTable.from_pairs([("dog", "chien"), ("beach", "plage"), ("shirts", "chemises")])
    one = Translator(model, src_tok, tgt_tok, dec)
    plain = one.translate(LINES)
    assert "chien" not in plain[0]  # random weights: the term does not come by itself
    out = one.translate_nbest(LINES, terms=table)
    assert "chien" in out[0][0].text and "plage" in out[0][0].text
    assert "chemises" in out[2][0].text and out[1] == []
    assert out[3][0].text == plain[3]  # no term in the line: translated as without terms
    prefixes = ["Un", None, "", "Une femme"]
    both = one.translate_nbest(LINES, prefixes=prefixes, terms=table)
    assert both[0][0].text.startswith("Un") and "chien" in both[0][0].text
    assert both[3][0].text.startswith("Une femme")
    forked = Translator(model, src_tok, tgt_tok, dataclasses.replace(dec, workers=2))
    again = forked.translate_nbest(LINES, prefixes=prefixes, terms=table)
    assert [[t.text for t in r] for r in again] == [[t.text for t in r] for r in both]


def test_a_term_the_vocabulary_cannot_spell_is_skipped_with_a_warning(checkpoint):
    model, src_tok, tgt_tok, cfg = load_for_inference(checkpoint)
    warnings: list[str] = []
    translator = Translator(model, src_tok, tgt_tok, cfg.decode, warn=warnings.append)
    table = TermTable.from_pairs([("dog", "犬")])
    assert (
        translator.translate_nbest(LINES[:1], terms=table)[0][0].text
        == translator.translate(LINES[:1])[0]
    )
    assert len(warnings) == 1 and "犬" in warnings[0]


def test_cli_terms(checkpoint, tmp_path, capsys):
    from nmt.cli import translate

    inp, terms = tmp_path / "in.en", tmp_path / "terms.tsv"
    inp.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    terms.write_text(TERMS, encoding="utf-8")
    args = [str(checkpoint), "-i", str(inp), "--max-len-b", "12", "--quiet"]
    code, out, err = run_main(translate, [*args, "--terms", str(terms)], capsys)
    assert code == 0, err
    rows = out.splitlines()
    assert len(rows) == 4 and rows[1] == ""
    assert "chien" in rows[0] and "plage" in rows[0] and "chemises" in rows[2]
    code, out, err = run_main(translate, [*args, "--terms", str(terms), "--greedy"], capsys)
    one_line_error(code, err, "terms need beam search", "--beam", out=out)
    terms.write_text("dog\tchien\ncat\n", encoding="utf-8")
    code, out, err = run_main(translate, [*args, "--terms", str(terms)], capsys)
    one_line_error(code, err, f"{terms} line 2", out=out)


def test_a_term_drops_a_bare_word_start_piece(checkpoint):
    """Alone, 'eau' encodes as '▁' + 'e' 'a' 'u'; "l'eau" has no '▁' before its 'e': the
    constraint leaves the bare '▁' out, so both spellings meet it."""
    model, src_tok, tgt_tok, cfg = load_for_inference(checkpoint)
    translator = Translator(model, src_tok, tgt_tok, cfg.decode)
    alone = tgt_tok.encode("eau")
    assert tgt_tok.id_to_piece(alone[0]) == "\u2581" and len(alone) > 1
    assert translator._term_pieces("eau", {}) == alone[1:]
    elided = tgt_tok.encode("l'eau")
    assert elided[-len(alone[1:]) :] == alone[1:]
    assert translator._term_pieces("homme", {}) == tgt_tok.encode("homme")  # one piece: kept


def test_term_lengths_are_bounded(checkpoint):
    """The constrained search's memory grows with the square of a phrase's pieces: a term
    over MAX_TERM_PIECES pieces, or a line asking for more than MAX_LINE_TERM_PIECES in all,
    is refused with one sentence."""
    from nmt.errors import NMTError
    from nmt.search.translator import MAX_LINE_TERM_PIECES, MAX_TERM_PIECES

    model, src_tok, tgt_tok, cfg = load_for_inference(checkpoint)
    translator = Translator(model, src_tok, tgt_tok, cfg.decode)
    long_term = "x" * 40
    assert len(tgt_tok.encode(long_term)) > MAX_TERM_PIECES + 1
    with pytest.raises(NMTError, match="pieces long"):
        translator.term_constraints(["a dog"], TermTable.from_pairs([("dog", long_term)]))
    words = [f"w{chr(97 + i)}" for i in range(12)]
    targets = [f"eau {chr(97 + i) * 2}" for i in range(12)]  # a few pieces each, distinct
    pieces = [translator._term_pieces(target, {}) for target in targets]
    assert all(0 < len(p) <= MAX_TERM_PIECES for p in pieces)
    assert sum(len(p) for p in pieces) > MAX_LINE_TERM_PIECES
    table = TermTable.from_pairs(list(zip(words, targets)))
    assert translator.term_constraints([words[0]], table) == [[pieces[0]]]
    with pytest.raises(NMTError, match="line 2 asks for terms of more than"):
        translator.term_constraints([words[0], " ".join(words)], table)
