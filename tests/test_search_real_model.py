"""The searches on the real ``build_model`` network (tiny dims, random weights)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from nmt.config import PAD_ID, DecodeConfig, ModelConfig
from nmt.models.builder import build_model
from nmt.search import beam_search, greedy_search, sample_search
from nmt.search.ensemble import Ensemble


def tiny_model(cell: str = "gru", attention: str = "bahdanau", seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = OmegaConf.structured(
        ModelConfig(
            cell=cell,
            attention=attention,
            emb_dim=12,
            hidden_dim=16,
            dropout=0.0,
            init_scale=1.0,
            **kw,
        )
    )
    return build_model(cfg, 23, 19).eval()


def batch(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (n,), generator=g)
    src = torch.full((n, int(lengths.max())), PAD_ID, dtype=torch.long)
    for i, k in enumerate(lengths.tolist()):
        src[i, :k] = torch.randint(4, 23, (k,), generator=g)
    return src, lengths


@pytest.mark.parametrize(
    "cell,attention,extra",
    [
        ("gru", "bahdanau", {}),
        ("lstm", "luong_general", {"input_feeding": True, "layers": 2}),
        ("rnn", "none", {}),
    ],
)
def test_real_model_beam_greedy_and_batching(cell, attention, extra):
    model = tiny_model(cell, attention, **extra)
    src, lengths = batch()
    c = DecodeConfig(beam_size=1, length_penalty=0.0, max_len_a=1.0, max_len_b=4)
    greedy = greedy_search(model, src, lengths, c)
    assert [h[0].tokens for h in greedy] == [
        h[0].tokens for h in beam_search(model, src, lengths, c)
    ]
    c.beam_size, c.n_best = 4, 2
    batched = beam_search(model, src, lengths, c, return_attention=True)
    for i in range(src.size(0)):
        alone = beam_search(model, src[i : i + 1, : lengths[i]], lengths[i : i + 1], c, True)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[i]]
        assert alone[0].score == pytest.approx(batched[i][0].score, abs=1e-4)
        if attention != "none":
            assert batched[i][0].attention.shape == (len(batched[i][0].tokens) + 1, lengths[i])
            assert torch.allclose(batched[i][0].attention.sum(1), torch.ones(1), atol=1e-4)
        else:
            assert batched[i][0].attention is None
    # Beam 4 never scores worse than greedy under the raw log-probability.
    for g, b in zip(greedy, batched):
        assert b[0].score >= g[0].score - 1e-5


def test_real_model_sampling_and_ensemble():
    m1, m2 = tiny_model(seed=1), tiny_model(seed=2)
    src, lengths = batch(seed=3)
    c = DecodeConfig(method="sample", top_k=1, max_len_b=5)
    assert [h[0].tokens for h in sample_search(m1, src, lengths, c)] == [
        h[0].tokens for h in greedy_search(m1, src, lengths, c)
    ]
    out = beam_search(Ensemble([m1, m2]), src, lengths, DecodeConfig(beam_size=3, max_len_b=5))
    assert len(out) == src.size(0) and all(len(h) == 1 for h in out)
