"""Ancestral sampling (temperature, top-k, nucleus/top-p) through the same step loop as greedy."""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.config import DecodeConfig
from nmt.search.greedy import decode_rows, start, trim_attention
from nmt.search.hypothesis import Hypothesis
from nmt.search.prefix import Prefix


def filter_logits(log_probs: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """``(N, V)`` scores -> tempered, truncated logits to sample from (-inf = excluded)."""
    logits = log_probs / max(temperature, 1e-6)
    if 0 < top_k < logits.size(1):
        kth = logits.topk(top_k, dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=1, descending=True)
        cum = sorted_logits.softmax(dim=1).cumsum(dim=1)
        # Drop a token when the tokens ranked above it already reach top_p (the first stays).
        drop_sorted = (cum - sorted_logits.softmax(dim=1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.inference_mode()
def sample_search(
    model,
    src: Tensor,
    src_lengths: Tensor,
    cfg: DecodeConfig,
    return_attention: bool = False,
    generator: torch.Generator | None = None,
    prefixes: list[list[int]] | None = None,
) -> list[list[Hypothesis]]:
    """Draw ``cfg.n_best`` samples per sentence (best model score first) for a batch
    ``src (B, S)``, ``src_lengths (B,)``.

    The draw is reproducible: without an explicit ``generator`` one seeded with ``cfg.seed``
    is used. ``score`` is the untempered model log-probability (length-penalized as configured).
    ``prefixes`` (one token id list per sentence, ``[]`` for none) start every sample of
    their sentence (:mod:`nmt.search.prefix`); the samples' tokens include them.
    """
    if generator is None:
        generator = torch.Generator(device=src.device)
        generator.manual_seed(cfg.seed)
    n = max(1, cfg.n_best)

    def pick(log_probs: Tensor) -> Tensor:
        logits = filter_logits(log_probs, cfg.temperature, cfg.top_k, cfg.top_p)
        probs = logits.softmax(dim=1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    prefix = Prefix.of(prefixes, src.size(0), src.device)
    enc, state, max_lens = start(model, src, src_lengths, cfg, copies=n)
    if prefix is not None:  # the n samples of a sentence are adjacent rows: n copies each
        copies = (prefix.tokens.repeat_interleave(n, 0), prefix.lengths.repeat_interleave(n))
        prefix = Prefix(*copies, prefix.longest)
        max_lens = prefix.extend_max_lens(max_lens, cfg.max_len_b)
    hyps = decode_rows(model, enc, state, max_lens, cfg, pick, return_attention, prefix)
    if return_attention:
        trim_attention(hyps, src_lengths, copies=n)
    groups = [hyps[i * n : (i + 1) * n] for i in range(src.size(0))]
    return [sorted(g, key=lambda h: h.score, reverse=True) for g in groups]
