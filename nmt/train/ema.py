"""Exponential moving average of the weights (Marian's "exponential smoothing").

Validation, ``best.pt`` and the ``step_*.pt`` checkpoints use the averaged weights, which
are smoother than the last update's; the optimizer keeps training the raw ones, and
``last.pt`` holds both, so a resumed run continues the same average bit for bit.

The average starts as a copy of the first update's weights and then follows
``avg = d * avg + (1 - d) * weights`` with ``d = min(decay, (1 + n) / (10 + n))`` after
``n`` updates: early on, when the weights move fast and the start is random, it forgets
quickly (d = 0.18 after one update, 0.9 after 80), and it reaches ``decay`` only after
``(10 decay - 1) / (1 - decay)`` updates (8,991 for 0.999), so short CPU runs are averaged
over roughly their last tenth rather than dominated by their first updates.
torch's :class:`~torch.optim.swa_utils.AveragedModel` keeps the copy and does the update.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def warmed_decay(decay: float, updates: int) -> float:
    """The decay used for the ``updates``-th average (1-based): ``min(decay, (1+n)/(10+n))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """The moving average of ``model``'s parameters (buffers are copied, not averaged).

    ``module`` is the averaged copy of the model: validate and save it; call
    :meth:`update` after every optimizer step.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=False)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def _lerp(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _n) -> None:
        # AveragedModel counts on the device; the decay comes from the host-side count, so
        # a GPU step never waits to read it.
        weight = 1.0 - warmed_decay(self.decay, self.updates)
        torch._foreach_lerp_(averaged, current, weight)

    def update(self, model: nn.Module) -> None:
        """Fold the weights of ``model`` (after an optimizer step) into the average."""
        self.updates += 1
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "weights": self.averaged.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.averaged.load_state_dict(state["weights"])
