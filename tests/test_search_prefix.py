"""Target prefixes: forced first tokens, then free decoding (nmt/search/prefix.py).

On the toy model of test_search_beam.py (vocabulary 6: UNK and two words can be emitted)
every output of at most 4 tokens can be scored by hand, so beam search with a prefix is
checked against exhaustive search over the outputs that start with it.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import make_checkpoint, one_line_error, run_main
from test_search_beam import ToyModel, cfg, random_batch

from nmt.config import EOS_ID, UNK_ID, DecodeConfig
from nmt.errors import NMTError
from nmt.inference import load_for_inference
from nmt.search import beam_search, greedy_search, search
from nmt.search.constraints import constrain
from nmt.search.translator import Translator

WORDS = [UNK_ID, 4, 5]  # what the vocabulary-6 toy model can emit besides EOS


@torch.inference_mode()
def sequence_log_prob(model, src, lengths, tokens: list[int], c: DecodeConfig, max_len: int):
    """Log-probability of ``tokens + EOS`` for sentence 0 under the search's rules, with a
    maximum output length of ``max_len``."""
    enc = model.encode(src, lengths)
    state = model.init_state(enc)
    prev, total = torch.tensor([2]), 0.0
    for t, tok in enumerate(tokens + [EOS_ID]):
        lp, _, state = model.step(prev, state, enc)
        lp = constrain(lp, t, None, torch.tensor([max_len]), c.min_len, False, 0)
        total += float(lp[0, tok])
        prev = torch.tensor([tok])
    return total


def all_outputs(max_len: int) -> list[list[int]]:
    """Every output of at most ``max_len`` tokens over WORDS."""
    return [list(p) for n in range(max_len + 1) for p in itertools.product(WORDS, repeat=n)]


def test_beam_continuation_is_the_exhaustive_best_after_the_prefix():
    """A beam as wide as every continuation ranks prefix + continuation exactly; the
    length limit (0 * src + 4) grows to the prefix + 4 free tokens."""
    model = ToyModel(vocab=6, seed=11, sharp=2.0).eval()
    c = cfg(beam_size=81, n_best=4, max_len_a=0.0, max_len_b=4)
    for seed, prefix in [(0, [4]), (1, [5, 4]), (2, [UNK_ID, 5, 5])]:
        src, lengths = random_batch(1, 6, seed=seed, max_len=3)
        max_len = len(prefix) + 4
        exhaustive = sorted(
            (
                (sequence_log_prob(model, src, lengths, prefix + rest, c, max_len), prefix + rest)
                for rest in all_outputs(4)
            ),
            reverse=True,
        )
        hyps = beam_search(model, src, lengths, c, prefixes=[prefix])[0]
        assert [h.tokens for h in hyps] == [toks for _, toks in exhaustive[:4]]
        for h, (score, _) in zip(hyps, exhaustive):
            assert h.score == pytest.approx(score, abs=1e-5)  # the prefix's log-probs count


def test_every_output_starts_with_its_prefix_and_batches_equal_alone():
    model = ToyModel(seed=5).eval()
    src, lengths = random_batch(5, 12, seed=4)
    prefixes = [[7], [], [9, 9, 4], [5, 11], [10, 6, 6, 6, 8]]
    for c in (cfg(beam_size=4, n_best=3), cfg(method="greedy"), cfg(beam_size=3, n_best=2)):
        batched = search(model, src, lengths, c, prefixes=prefixes)
        for i, prefix in enumerate(prefixes):
            alone = search(
                model, src[i : i + 1, : lengths[i]], lengths[i : i + 1], c, prefixes=[prefix]
            )[0]
            assert [h.tokens for h in alone] == [h.tokens for h in batched[i]]
            for h in batched[i]:
                assert h.tokens[: len(prefix)] == prefix
    # Free decoding really happens after the prefix: some outputs are longer than it.
    assert any(len(h.tokens) > len(p) for hyps, p in zip(batched, prefixes) for h in hyps)


@torch.inference_mode()
def test_greedy_continues_with_the_best_token():
    model = ToyModel(vocab=6, seed=3, sharp=2.0).eval()
    c = cfg(method="greedy", max_len_a=0.0, max_len_b=4)
    src, lengths = random_batch(1, 6, seed=7, max_len=3)
    out = greedy_search(model, src, lengths, c, prefixes=[[5, 5]])[0][0]
    assert out.tokens[:2] == [5, 5]
    assert out.score == pytest.approx(
        sequence_log_prob(model, src, lengths, out.tokens, c, 4), abs=1e-5
    )
    enc = model.encode(src, lengths)
    state, prev = model.init_state(enc), torch.tensor([2])
    for t, tok in enumerate(out.tokens + [EOS_ID]):
        lp, _, state = model.step(prev, state, enc)
        lp = constrain(lp, t, None, torch.tensor([4]), 0, False, 0)
        if t >= 2:  # after the prefix: the most probable token
            assert int(lp.argmax()) == tok
        prev = torch.tensor([tok])


def test_a_prefix_longer_than_the_length_limit_is_kept_whole():
    """The limit grows to the prefix plus max_len_b free tokens; EOS never cuts it."""
    model = ToyModel(seed=2).eval()
    src, lengths = random_batch(2, 12, seed=1, max_len=3)
    prefix = [4, 5, 6, 7, 8, 9, 10, 11]  # the limit is 0 * len + 2
    for c in (
        cfg(beam_size=3, max_len_a=0.0, max_len_b=2),
        cfg(method="greedy", max_len_a=0.0, max_len_b=2),
    ):
        for hyps in search(model, src, lengths, c, prefixes=[prefix, prefix[:3]]):
            assert hyps[0].tokens[:3] == prefix[:3]
        long = search(model, src, lengths, c, prefixes=[prefix, []])[0][0]
        assert long.tokens[: len(prefix)] == prefix and len(long.tokens) <= len(prefix) + 2
        assert long.score == pytest.approx(
            sequence_log_prob(model, src[:1], lengths[:1], long.tokens, c, len(prefix) + 2),
            abs=1e-4,
        )


def test_rules_do_not_kill_a_prefix():
    """UNK suppression and n-gram blocking apply after the prefix, not inside it."""
    model = ToyModel(seed=8).eval()
    src, lengths = random_batch(2, 12, seed=9)
    c = cfg(beam_size=3, suppress_unk=True, no_repeat_ngram_size=1)
    prefix = [UNK_ID, 6, 6]
    for method in ("beam", "greedy"):
        c.method = method
        hyps = search(model, src, lengths, c, prefixes=[prefix, [4]])
        assert hyps[0][0].tokens[:3] == prefix and hyps[0][0].score > float("-inf")
        assert UNK_ID not in hyps[0][0].tokens[3:] and 6 not in hyps[0][0].tokens[3:]


def test_no_prefix_is_the_unchanged_search():
    model = ToyModel(seed=6).eval()
    src, lengths = random_batch(4, 12, seed=2)
    for c in (cfg(beam_size=4, n_best=2), cfg(method="greedy")):
        plain = search(model, src, lengths, c)
        empty = search(model, src, lengths, c, prefixes=[[], [], [], []])
        assert [[(h.tokens, h.score) for h in n] for n in plain] == [
            [(h.tokens, h.score) for h in n] for n in empty
        ]


def test_bad_prefixes_are_refused():
    model = ToyModel(seed=6).eval()
    src, lengths = random_batch(2, 12, seed=2)
    with pytest.raises(NMTError, match="one per sentence"):
        search(model, src, lengths, cfg(beam_size=2), prefixes=[[4]])
    with pytest.raises(NMTError, match="EOS"):
        search(model, src, lengths, cfg(beam_size=2), prefixes=[[4, EOS_ID], []])
    with pytest.raises(NMTError, match="one per sentence"):
        search(model, src, lengths, cfg(method="sample", n_best=3), prefixes=[[4]])


def test_every_sample_starts_with_its_prefix_and_top_k_one_is_greedy():
    """Each of a sentence's samples starts with its prefix (the samples are adjacent rows),
    then goes on at random; drawing among the single likeliest token is greedy search."""
    model = ToyModel(seed=5, sharp=1.0).eval()
    src, lengths = random_batch(3, 12, seed=4)
    prefixes = [[7], [], [9, 9, 4]]
    sampled = search(model, src, lengths, cfg(method="sample", n_best=6), prefixes=prefixes)
    for prefix, samples in zip(prefixes, sampled):
        assert len(samples) == 6 and all(h.tokens[: len(prefix)] == prefix for h in samples)
        assert len({tuple(h.tokens) for h in samples}) > 1  # still sampling after the prefix
    top_1 = search(model, src, lengths, cfg(method="sample", top_k=1), prefixes=prefixes)
    greedy = search(model, src, lengths, cfg(method="greedy"), prefixes=prefixes)
    assert [[h.tokens for h in n] for n in top_1] == [[h.tokens for h in n] for n in greedy]


@pytest.fixture(scope="module")
def checkpoint(tiny_tokenizer, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("prefix") / "best.pt", *[tiny_tokenizer] * 2)


def test_translator_and_cli_prefixes(checkpoint, tmp_path, capsys):
    """The prefix is target text (encoded without EOS): each translation's text starts with
    it and goes on; ``--prefix FILE`` gives one per input line, an empty line for none."""
    from nmt.cli import translate

    model, src_tok, tgt_tok, cfg = load_for_inference(checkpoint)
    lines = ["A man sleeps.", "", "Two dogs run on the grass.", "A woman."]
    prefixes = ["Un homme", "", "", "Une femme est"]
    out = Translator(model, src_tok, tgt_tok, cfg.decode).translate_nbest(lines, prefixes=prefixes)
    assert out[0][0].text.startswith("Un homme") and out[3][0].text.startswith("Une femme est")
    assert out[0][0].tokens[:2] == tgt_tok.encode("Un homme")[:2]
    assert len(out[0][0].tokens) > len(tgt_tok.encode("Un homme"))  # it goes on
    inp, pre = tmp_path / "in.en", tmp_path / "prefix.fr"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pre.write_text("\n".join(prefixes) + "\n", encoding="utf-8")
    args = [str(checkpoint), "-i", str(inp), "--quiet"]
    code, stdout, err = run_main(translate, [*args, "--prefix", str(pre)], capsys)
    assert code == 0, err
    assert stdout.splitlines() == [r[0].text if r else "" for r in out]
    code, stdout, err = run_main(translate, [*args, "--prefix", str(pre), "--greedy"], capsys)
    rows = stdout.splitlines()
    assert code == 0 and rows[0].startswith("Un homme") and rows[3].startswith("Une femme est")
    pre.write_text("Un homme\n\n", encoding="utf-8")
    code, stdout, err = run_main(translate, [*args, "--prefix", str(pre)], capsys)
    one_line_error(code, err, f"--prefix {pre} has 2 lines but the input has 4", out=stdout)
    pre.write_text("\n".join(prefixes) + "\n", encoding="utf-8")
    code, stdout, err = run_main(translate, [*args, "--prefix", str(pre), "--sample"], capsys)
    rows = stdout.splitlines()
    assert code == 0 and rows[0].startswith("Un homme") and rows[3].startswith("Une femme est")
    code, stdout, err = run_main(translate, [*args, "--prefix", str(pre), "--interactive"], capsys)
    one_line_error(code, err, "--prefix", "--interactive", out=stdout)
