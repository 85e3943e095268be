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

ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general", "luong_concat")


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
        """Source-only part of the score: ``(batch, src_len, memory)`` -> keys
        ``(batch, src_len, attn_dim | query_dim | memory_dim)``."""
        if self.kind == "luong_dot":
            return memory
        if self.additive:
            # Kept doubled for the sigmoid form of the scores (see additive_scores): doubled
            # once per sentence here, not at every decoder step.
            return self.key_proj(memory) * 2.0
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
            q2 = self.query_proj(query) * 2.0  # (B, T, A), doubled like the keys
            v = self.v.weight.view(-1).to(q2.dtype)
            scores = additive_scores(q2, keys.to(q2.dtype), v, doubled=True)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.to(memory.dtype), memory)  # (B, T, memory_dim)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights


def additive_scores(
    q: Tensor, keys: Tensor, v: Tensor, chunk_elements: int = 1 << 17, doubled: bool = False
) -> Tensor:
    """``scores[b, t, s] = v . tanh(q[b, t] + keys[b, s])`` without keeping the 4-d tensor.

    Args:
        q: ``(batch, tgt_len, attn_dim)``; keys: ``(batch, src_len, attn_dim)``; v: ``(attn_dim,)``.
        chunk_elements: size of the ``(rows, tgt_len, src_len, attn_dim)`` slice worked on at
            once (512 KiB of fp32 by default: a core's L2 cache). On a GPU the whole batch is
            one slice (its memory is fast; the loop would only add kernel launches).
        doubled: ``q`` and ``keys`` are given as ``2 q`` and ``2 keys`` (as
            :class:`Attention` keeps them), the form the sigmoid computation needs.
    Returns:
        ``(batch, tgt_len, src_len)``.
    """
    if not doubled:
        q, keys = q * 2.0, keys * 2.0
    B, T, A = q.shape
    if q.device.type == "cpu":
        rows = max(1, chunk_elements // max(1, T * keys.size(1) * A))
    else:
        rows = B
    return _AdditiveScores.apply(q, keys, v, rows)


def _sigmoid_slice(q2: Tensor, k2: Tensor, b: int, rows: int) -> Tensor:
    """``sigmoid(q2 + k2)`` for batch rows ``b : b + rows``: ``(rows, T, S, A)``, one buffer."""
    return (q2[b : b + rows].unsqueeze(2) + k2[b : b + rows].unsqueeze(1)).sigmoid_()


class _AdditiveScores(torch.autograd.Function):
    """Forward and backward of :func:`additive_scores` over slices of ``rows`` batch rows.

    ``tanh(x) = 2 sigmoid(2x) - 1``, and torch's CPU sigmoid is much faster than its tanh
    (120 against 419 us per 131,072 floats on the bench's AMD EPYC, 1 thread), so with
    ``e = sigmoid(2q + 2k)`` the scores are ``e . 2v - sum(v)``. Takes ``2q`` and ``2k``,
    saves only them: backward recomputes ``e`` per slice and forms the gradient of ``2q + 2k``,
    ``grad * v * 2 e (1 - e)``, in place; summed over the source axis it is that of ``2q``,
    over the target axis that of ``2k``.
    """

    @staticmethod
    def forward(ctx, q2, k2, v, rows):  # noqa: D102
        B, T, _ = q2.shape
        scores = q2.new_empty(B, T, k2.size(1))
        v2 = v * 2.0
        for b in range(0, B, rows):
            torch.matmul(_sigmoid_slice(q2, k2, b, rows), v2, out=scores[b : b + rows])
        scores.sub_(v.sum())
        ctx.save_for_backward(q2, k2, v)
        ctx.rows = rows
        return scores

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        q2, k2, v = ctx.saved_tensors
        rows, A = ctx.rows, q2.size(2)
        grad = grad.contiguous()
        gq, gk = torch.empty_like(q2), torch.empty_like(k2)
        gv = torch.zeros_like(v)
        v2 = v * 2.0
        for b in range(0, q2.size(0), rows):
            e = _sigmoid_slice(q2, k2, b, rows)
            g = grad[b : b + rows]  # (rows, T, S)
            gv.addmv_(e.reshape(-1, A).t(), g.reshape(-1), alpha=2.0)  # tanh = 2e - 1 ...
            e.addcmul_(e, e, value=-1.0).mul_(g.unsqueeze(-1)).mul_(v2)  # d loss / d (2q + 2k)
            torch.sum(e, dim=2, out=gq[b : b + rows])
            torch.sum(e, dim=1, out=gk[b : b + rows])
        gv.sub_(grad.sum())  # ... the -1 of every tanh
        return gq, gk, gv, None
