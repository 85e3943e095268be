"""Several trained models decoding as one: the average of their next-token probabilities.

:class:`Ensemble` offers the same ``encode / init_state / reorder_state / step`` contract as
``Seq2Seq``, so every search works with it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.errors import NMTError


@dataclass
class EnsembleEncoderOutput:
    """The members' encoder outputs; ``mask (B, S)`` is shared (same source tokenizer)."""

    outputs: list

    @property
    def mask(self) -> Tensor:
        return self.outputs[0].mask

    @property
    def memory(self) -> Tensor:
        return self.outputs[0].memory

    def index_select(self, index: Tensor) -> EnsembleEncoderOutput:
        return EnsembleEncoderOutput([o.index_select(index) for o in self.outputs])


class Ensemble(nn.Module):
    """``log(mean_m p_m(y | ...))`` over member models sharing both vocabularies."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise NMTError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)
        self._log_m = math.log(len(models))

    def encode(self, src: Tensor, src_lengths: Tensor) -> EnsembleEncoderOutput:
        return EnsembleEncoderOutput([m.encode(src, src_lengths) for m in self.members])

    def init_state(self, enc: EnsembleEncoderOutput) -> list:
        return [m.init_state(e) for m, e in zip(self.members, enc.outputs)]

    def reorder_state(self, state: list, index: Tensor) -> list:
        return [m.reorder_state(s, index) for m, s in zip(self.members, state)]

    def step(
        self, prev_tokens: Tensor, state: list, enc: EnsembleEncoderOutput
    ) -> tuple[Tensor, Tensor | None, list]:
        """One step of every member: ``(B, V)`` averaged log-probabilities, mean attention."""
        log_probs, attns, states = [], [], []
        for m, s, e in zip(self.members, state, enc.outputs):
            lp, a, s = m.step(prev_tokens, s, e)
            log_probs.append(lp.float())
            states.append(s)
            if a is not None:
                attns.append(a.float())
        mixed = torch.logsumexp(torch.stack(log_probs), dim=0) - self._log_m
        attn = torch.stack(attns).mean(dim=0) if attns else None
        return mixed, attn, states
