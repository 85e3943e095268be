"""The decoding rules (n-gram blocking, min length, UNK suppression) really constrain output."""

from __future__ import annotations

import torch
from test_search_beam import ToyModel, cfg, random_batch

from nmt.config import EOS_ID, UNK_ID
from nmt.search import search
from nmt.search.constraints import constrain


def _has_repeat(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


def _decode_all(model, src, lengths, **kw):
    out = []
    for method in ("beam", "greedy", "sample"):
        c = cfg(method=method, beam_size=3, max_len_a=2.0, max_len_b=8, **kw)
        out.append([h.tokens for hyps in search(model, src, lengths, c) for h in hyps])
    return out


def test_no_repeat_ngram_blocks_repeats():
    model = ToyModel(vocab=8, seed=2).eval()
    src, lengths = random_batch(8, 8, seed=5)
    for n in (1, 2, 3):
        free = _decode_all(model, src, lengths)
        blocked = _decode_all(model, src, lengths, no_repeat_ngram_size=n)
        assert any(_has_repeat(t, n) for method in free for t in method)
        assert not any(_has_repeat(t, n) for method in blocked for t in method)


def test_min_len_and_unk_suppression():
    model = ToyModel(vocab=10, seed=4).eval()
    with torch.no_grad():
        model.out[:, UNK_ID] += 2.0  # make UNK attractive
    src, lengths = random_batch(8, 10, seed=6)
    free = _decode_all(model, src, lengths)
    assert any(UNK_ID in t for method in free for t in method)
    assert any(len(t) < 6 for method in free for t in method)
    constrained = _decode_all(model, src, lengths, min_len=6, suppress_unk=True)
    for method in constrained:
        for t in method:
            assert UNK_ID not in t and len(t) >= 6


def test_constrain_forces_eos_at_max_length():
    lp = torch.randn(3, 7).log_softmax(1)
    out = constrain(lp.clone(), 4, None, torch.tensor([4, 5, 9]))
    assert torch.isinf(out[0]).sum() == 6 and out[0, EOS_ID] == lp[0, EOS_ID]
    assert torch.isfinite(out[1, 4:]).all() and torch.isfinite(out[2, 4:]).all()
