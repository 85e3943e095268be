"""Rules applied to each step's log-probabilities before a search chooses tokens.

All searches (greedy, beam, sampling) call :func:`constrain` on the ``(N, V)`` output of
``model.step`` so that they obey the same rules: PAD and BOS are never emitted, UNK can be
suppressed, EOS is forbidden before ``min_len`` and forced at the row's maximum length, and
repeated n-grams can be blocked. Everything is vectorized over the N rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID

NEG_INF = float("-inf")


def constrain(
    log_probs: Tensor,
    step: int,
    history: Tensor | None,
    max_lens: Tensor,
    min_len: int = 0,
    suppress_unk: bool = False,
    no_repeat_ngram_size: int = 0,
) -> Tensor:
    """Mask forbidden tokens with -inf (in place) and return ``log_probs``.

    Args:
        log_probs: ``(N, V)`` scores of the next token.
        step: how many tokens each row has emitted so far (the same for all rows).
        history: ``(N, step)`` the emitted tokens (no BOS), or None when ``step == 0``.
        max_lens: ``(N,)`` the most tokens a row may emit before its EOS.
    """
    log_probs[:, PAD_ID] = NEG_INF
    log_probs[:, BOS_ID] = NEG_INF
    if suppress_unk:
        log_probs[:, UNK_ID] = NEG_INF
    if step < min_len:
        log_probs[:, EOS_ID] = NEG_INF
    if no_repeat_ngram_size > 0 and history is not None and step >= no_repeat_ngram_size:
        block_repeated_ngrams(log_probs, history, no_repeat_ngram_size)
    at_max = max_lens <= step
    if bool(at_max.any()):
        # Rows at their length limit may only end: keep EOS' score, forbid everything else.
        eos = log_probs[:, EOS_ID].clone()
        log_probs.masked_fill_(at_max.unsqueeze(1), NEG_INF)
        log_probs[:, EOS_ID] = torch.where(at_max, eos.nan_to_num(neginf=0.0), eos)
    return log_probs


def block_repeated_ngrams(log_probs: Tensor, history: Tensor, n: int) -> None:
    """Forbid every token that would complete an n-gram already present in the row's history.

    Vectorized: compare the row's last ``n - 1`` tokens with every earlier window of
    ``n - 1`` tokens; where they match, the token that followed that window is banned.
    """
    windows = history.unfold(1, n, 1)  # (N, W, n): every n-gram emitted so far
    if n == 1:
        banned = windows[:, :, 0]
        log_probs.scatter_(1, banned, NEG_INF)
        return
    last = history[:, history.size(1) - (n - 1) :]  # (N, n-1)
    match = (windows[:, :, :-1] == last.unsqueeze(1)).all(dim=2)  # (N, W)
    # Non-matching windows point at PAD, which is banned anyway, so one scatter does it all.
    banned = torch.where(match, windows[:, :, -1], torch.full_like(match, PAD_ID, dtype=torch.long))
    log_probs.scatter_(1, banned, NEG_INF)
