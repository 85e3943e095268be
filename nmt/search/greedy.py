"""Greedy decoding, and the one-token-per-row loop that sampling shares.

Every row advances through ``model.step`` in one batched call per time step; a row that emits
EOS leaves the batch at once (its encoder memory and decoder state are dropped with
``index_select`` / ``reorder_state``), so finished sentences cost nothing afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nmt.config import BOS_ID, EOS_ID, PAD_ID, DecodeConfig
from nmt.search.constraints import constrain
from nmt.search.hypothesis import Hypothesis, length_penalty, max_output_lengths
from nmt.search.prefix import Prefix

# Chooses the next token of every row from its constrained ``(N, V)`` log-probabilities.
Picker = Callable[[Tensor], Tensor]


def decode_rows(
    model,
    enc,
    state,
    max_lens: Tensor,
    cfg: DecodeConfig,
    pick: Picker,
    return_attention: bool = False,
    prefix: Prefix | None = None,
) -> list[Hypothesis]:
    """Emit one token per row per step with ``pick`` until every row has ended.

    Args:
        enc, state: the encoder output and decoder state of N rows.
        max_lens: ``(N,)`` most tokens per row before the forced EOS.
        prefix: tokens forced at the start of row ``i`` (its sentence ``i``), or None.
    Returns:
        N hypotheses in row order; ``score`` is the model's log-probability of the tokens
        (EOS included), divided by the length penalty of ``cfg``.
    """
    n_rows = max_lens.size(0)
    device = max_lens.device
    max_steps = int(max_lens.max()) + 1
    # Results live in row-indexed buffers, written by tensor indexing (no per-row Python).
    out_tokens = torch.full((n_rows, max_steps), PAD_ID, dtype=torch.long, device=device)
    out_scores = torch.zeros(n_rows, device=device)
    out_lengths = torch.full((n_rows,), max_steps, dtype=torch.long, device=device)
    out_attn = None
    rows = torch.arange(n_rows, device=device)  # original row of each active row
    prev = torch.full((n_rows,), BOS_ID, dtype=torch.long, device=device)
    history = None  # (active, t): needed by the n-gram rule only
    for t in range(max_steps):
        log_probs, attn, state = model.step(prev, state, enc)
        log_probs = log_probs.float()
        forcing = prefix.forcing(t, rows, log_probs) if prefix is not None else None
        log_probs = constrain(
            log_probs,
            t,
            history,
            max_lens,
            cfg.min_len,
            cfg.suppress_unk,
            cfg.no_repeat_ngram_size,
        )
        if forcing is not None:
            forcing.apply(log_probs)
        tokens = pick(log_probs)
        out_tokens[rows, t] = tokens
        out_scores[rows] += log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1)
        if return_attention and attn is not None:
            if out_attn is None:
                out_attn = torch.zeros(n_rows, max_steps, attn.size(1), device=device)
            out_attn[rows, t] = attn.float()
        if cfg.no_repeat_ngram_size > 0:
            step_tokens = tokens.unsqueeze(1)
            history = step_tokens if history is None else torch.cat([history, step_tokens], 1)
        ended = tokens == EOS_ID
        if bool(ended.any()):
            out_lengths[rows[ended]] = t + 1
            keep = (~ended).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            rows, tokens, max_lens = rows[keep], tokens[keep], max_lens[keep]
            enc = enc.index_select(keep)
            state = model.reorder_state(state, keep)
            if history is not None:
                history = history[keep]
        prev = tokens
    return _collect(out_tokens, out_scores, out_lengths, out_attn, cfg)


def _collect(
    out_tokens: Tensor,
    out_scores: Tensor,
    out_lengths: Tensor,
    out_attn: Tensor | None,
    cfg: DecodeConfig,
) -> list[Hypothesis]:
    """Turn the row buffers into hypotheses (one host transfer per buffer)."""
    lp = length_penalty(out_lengths, cfg.length_penalty, cfg.length_normalize)
    scores = (out_scores / lp).tolist()
    lengths = out_lengths.tolist()
    token_rows = out_tokens.tolist()
    hyps = []
    for i, (n, toks) in enumerate(zip(lengths, token_rows)):
        body = toks[: n - 1] if toks[n - 1] == EOS_ID else toks[:n]
        attention = out_attn[i, :n].cpu() if out_attn is not None else None
        hyps.append(Hypothesis(tokens=body, score=scores[i], attention=attention))
    return hyps


def start(model, src: Tensor, src_lengths: Tensor, cfg: DecodeConfig, copies: int = 1):
    """Encode, build the first decoder state and the per-row length limits.

    With ``copies > 1`` every sentence is repeated that many times (adjacent rows).
    """
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    max_lens = max_output_lengths(src_lengths, cfg.max_len_a, cfg.max_len_b)
    max_lens = max_lens.clamp(min=cfg.min_len)
    if copies > 1:
        index = torch.arange(src.size(0), device=src.device).repeat_interleave(copies)
        enc = enc.index_select(index)
        state = model.reorder_state(state, index)
        max_lens = max_lens[index]
    return enc, state, max_lens


@torch.inference_mode()
def greedy_search(
    model,
    src: Tensor,
    src_lengths: Tensor,
    cfg: DecodeConfig,
    return_attention: bool = False,
    prefixes: list[list[int]] | None = None,
) -> list[list[Hypothesis]]:
    """The most probable token at every step, for a batch ``src (B, S)``, ``src_lengths (B,)``.

    ``prefixes`` (one token id list per sentence, ``[]`` for none) are forced first
    (:mod:`nmt.search.prefix`); the hypotheses' tokens include them.

    Returns:
        ``B`` one-element lists (the same shape as beam search's n-best lists).
    """
    prefix = Prefix.of(prefixes, src.size(0), src.device)
    enc, state, max_lens = start(model, src, src_lengths, cfg)
    if prefix is not None:
        max_lens = prefix.extend_max_lens(max_lens, cfg.max_len_b)
    hyps = decode_rows(model, enc, state, max_lens, cfg, _argmax, return_attention, prefix)
    if return_attention:
        trim_attention(hyps, src_lengths)
    return [[h] for h in hyps]


def _argmax(log_probs: Tensor) -> Tensor:
    return log_probs.argmax(dim=1)


def trim_attention(hyps: list[Hypothesis], src_lengths: Tensor, copies: int = 1) -> None:
    """Cut each attention matrix to its sentence's real source tokens."""
    lengths = src_lengths.tolist()
    for i, h in enumerate(hyps):
        if h.attention is not None:
            h.attention = h.attention[:, : lengths[i // copies]]
