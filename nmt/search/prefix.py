"""Target prefixes: each sentence's output starts with given tokens, then decoding is free.

While a row is inside its sentence's prefix, its next token is forced: every other token
gets -inf and the forced token keeps the model's log-probability (taken before
:func:`~nmt.search.constraints.constrain`, so UNK suppression or n-gram blocking cannot
kill a prefix), so the scores of prefixed hypotheses stay comparable log-probabilities.
EOS cannot be emitted inside a prefix, and a sentence's maximum length grows to leave room
after a long prefix (:meth:`Prefix.extend_max_lens`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.config import BOS_ID, EOS_ID, PAD_ID
from nmt.errors import NMTError
from nmt.search.constraints import NEG_INF


@dataclass
class Forcing:
    """The forced tokens of one step: ``inside (R,)`` rows still in their prefix, their
    ``token (R,)`` and its model log-probability ``log_prob (R, 1)``."""

    inside: Tensor
    token: Tensor
    log_prob: Tensor

    def apply(self, log_probs: Tensor) -> Tensor:
        """Rows inside their prefix may emit only their forced token (in place)."""
        inside = self.inside.unsqueeze(1)
        token = self.token.unsqueeze(1)
        log_probs.masked_fill_(inside, NEG_INF)
        now = log_probs.gather(1, token)
        log_probs.scatter_(1, token, torch.where(inside, self.log_prob, now))
        return log_probs


@dataclass
class Prefix:
    """The prefixes of a batch of ``B`` sentences: ``tokens (B, P)`` padded with PAD,
    ``lengths (B,)`` (0 = no prefix) and ``longest`` = P."""

    tokens: Tensor
    lengths: Tensor
    longest: int

    @staticmethod
    def of(prefixes: list[list[int]] | None, batch: int, device: torch.device) -> Prefix | None:
        """The batch's prefixes, or None when no sentence has one (the search then runs its
        unchanged, prefix-free path).

        Raises:
            NMTError: not one prefix per sentence, or a prefix holding PAD, BOS or EOS.
        """
        if prefixes is None or not any(prefixes):
            return None
        if len(prefixes) != batch:
            raise NMTError(
                f"got {len(prefixes)} prefixes for {batch} sentences: give one per sentence "
                "(an empty list for none)"
            )
        longest = max(len(p) for p in prefixes)
        tokens = torch.full((batch, longest), PAD_ID, dtype=torch.long)
        for i, prefix in enumerate(prefixes):
            if any(t in (PAD_ID, BOS_ID, EOS_ID) for t in prefix):
                raise NMTError(
                    f"the prefix of sentence {i + 1} holds a PAD, BOS or EOS id: a prefix is "
                    "target text encoded without them"
                )
            tokens[i, : len(prefix)] = torch.tensor(prefix, dtype=torch.long)
        lengths = torch.tensor([len(p) for p in prefixes], dtype=torch.long)
        return Prefix(tokens.to(device), lengths.to(device), longest)

    def extend_max_lens(self, max_lens: Tensor, room: int) -> Tensor:
        """``(B,)`` length limits that fit each prefix plus ``room`` (at least 1) free tokens."""
        return torch.maximum(max_lens, self.lengths + max(1, room))

    def forcing(self, step: int, row_sent: Tensor, log_probs: Tensor) -> Forcing | None:
        """The tokens forced at ``step`` for rows of sentences ``row_sent (R,)`` (their index
        in the batch), with their log-probabilities read from ``log_probs (R, V)`` before any
        rule masks them; None once every prefix is done."""
        if step >= self.longest:
            return None
        token = self.tokens[row_sent, step]
        return Forcing(
            inside=self.lengths[row_sent] > step,
            token=token,
            log_prob=log_probs.gather(1, token.unsqueeze(1)),
        )
