"""Attention over the encoder memory: Bahdanau (additive) and Luong's dot / general / concat.

One module serves a single decoder step (query ``(batch, hidden)``) and all target steps at
once (query ``(batch, tgt_len, hidden)``, the fast training path): scores are batched matmuls
either way, never a loop over time. The part of the score that depends only on the source
(the "keys") is computed once per sentence by :meth:`Attention.precompute` and reused by every
decoder step (search calls ``step`` dozens of times per sentence).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.config_choices import AttentionKind
from nmt.ops import additive_scores

ATTENTIONS = AttentionKind.values()  # the config's choices (nmt/config_choices.py)


class Attention(nn.Module):
    """``score(query, source) -> softmax over real source tokens -> context``.

    * ``bahdanau``: ``v^T tanh(W_q q + W_k m)`` (additive, an MLP with ``attn_dim`` units)
    * ``luong_concat``: ``v^T tanh(W [q; m])`` -- the same function written as one matrix on
      the concatenation; kept under Luong's name because configs and papers use it
    * ``luong_general``: ``q^T W m``
    * ``luong_dot``: ``q^T m`` (needs ``query_dim == memory_dim``)

    The query is always the decoder's *current* top hidden state (Luong order: the RNN steps
    first, then attends).
    """

    def __init__(self, kind: str, query_dim: int, memory_dim: int, attn_dim: int) -> None:
        super().__init__()
        if kind not in ATTENTIONS or kind == "none":
            raise ValueError(f"unknown attention {kind!r}")
        if kind == "luong_dot" and query_dim != memory_dim:
            raise ValueError("luong_dot attention needs equal query and memory sizes")
        self.kind = kind
        self.additive = kind in ("bahdanau", "luong_concat")
        if self.additive:
            # The bias lives on the key side so that it is precomputed with the keys.
            self.key_proj = nn.Linear(memory_dim, attn_dim, bias=True)
            self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
            self.v = nn.Linear(attn_dim, 1, bias=False)
        elif kind == "luong_general":
            self.key_proj = nn.Linear(memory_dim, query_dim, bias=False)

    def precompute(self, memory: Tensor) -> Tensor:
        """The source side of the score, once per sentence: ``(batch, src_len, memory)`` ->
        keys ``(batch, src_len, attn_dim | query_dim | memory_dim)``, what the (projected)
        query is compared with: ``W_k m + b`` (additive), ``W m`` (general), ``m`` (dot)."""
        if self.kind == "luong_dot":
            return memory
        return self.key_proj(memory)

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Attend.

        Args:
            query: ``(batch, query_dim)`` or ``(batch, tgt_len, query_dim)``.
            keys: from :meth:`precompute`; memory ``(batch, src_len, memory_dim)``;
            mask: ``(batch, src_len)`` True for real tokens (padding gets zero weight).
        Returns:
            context ``(batch, [tgt_len,] memory_dim)`` and weights ``(batch, [tgt_len,] src_len)``.
        """
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)
        if self.additive:
            q = self.query_proj(query)  # (B, T, A)
            v = self.v.weight.view(-1).to(q.dtype)
            scores = additive_scores(q, keys.to(q.dtype), v)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.to(memory.dtype), memory)  # (B, T, memory_dim)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights
