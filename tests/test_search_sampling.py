"""Sampling (top-k, top-p, temperature, seeds) and ensembles."""

from __future__ import annotations

import math

import torch
from test_search_beam import ToyModel, cfg, random_batch

from nmt.search import greedy_search, sample_search
from nmt.search.ensemble import Ensemble
from nmt.search.sampling import filter_logits


def test_top_k_one_equals_greedy():
    model = ToyModel(seed=1).eval()
    src, lengths = random_batch(8, 12, seed=2)
    c = cfg(method="sample", top_k=1, temperature=1.7)
    greedy = [h[0].tokens for h in greedy_search(model, src, lengths, c)]
    sampled = [h[0].tokens for h in sample_search(model, src, lengths, c)]
    assert greedy == sampled


def test_seeded_sampling_is_reproducible():
    model = ToyModel(seed=1, sharp=1.0).eval()
    src, lengths = random_batch(8, 12, seed=2)
    c = cfg(method="sample", n_best=3, seed=7, max_len_b=6)
    a = sample_search(model, src, lengths, c)
    b = sample_search(model, src, lengths, c)
    assert [[h.tokens for h in x] for x in a] == [[h.tokens for h in x] for x in b]
    assert all(len(x) == 3 and x[0].score >= x[-1].score for x in a)
    c.seed = 8
    other = sample_search(model, src, lengths, c)
    assert [[h.tokens for h in x] for x in a] != [[h.tokens for h in x] for x in other]


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(filter_logits(probs.log(), 1.0, 0, 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(probs.log(), 1.0, 0, 0.85))
    assert kept.tolist() == [[True, True, True, False]]
    kept = torch.isfinite(filter_logits(probs.log(), 1.0, 3, 1.0))
    assert kept.tolist() == [[True, True, True, False]]


@torch.inference_mode()
def test_ensemble_averages_probabilities():
    m1, m2 = ToyModel(seed=1).eval(), ToyModel(seed=2).eval()
    src, lengths = random_batch(4, 12, seed=3)
    ens = Ensemble([m1, m2])
    enc = ens.encode(src, lengths)
    prev = torch.full((4,), 2)
    lp, attn, _ = ens.step(prev, ens.init_state(enc), enc)
    p1 = m1.step(prev, m1.init_state(enc.outputs[0]), enc.outputs[0])[0].exp()
    p2 = m2.step(prev, m2.init_state(enc.outputs[1]), enc.outputs[1])[0].exp()
    assert torch.allclose(lp, ((p1 + p2) / 2).log(), atol=1e-5)
    assert attn.shape == (4, src.size(1))
    # A one-member ensemble decodes exactly like its model.
    single = Ensemble([m1])
    c = cfg(beam_size=3)
    from nmt.search import beam_search

    a, b = beam_search(m1, src, lengths, c), beam_search(single, src, lengths, c)
    assert [x[0].tokens for x in a] == [x[0].tokens for x in b]
    assert math.isclose(a[0][0].score, b[0][0].score, abs_tol=1e-5)
