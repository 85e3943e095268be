"""When training stops: its step, epoch and time budgets, early stopping, signals, and a
NaN/inf loss or gradient (:class:`NonFiniteGuard`).

Each rule returns the reason the run's summary prints (``""``: go on); the
:class:`~nmt.train.trainer.Trainer` asks them at the points where each can change and keeps
the first reason it gets.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from nmt.errors import NMTError


def budget_reason(tc: Any, step: int, epoch: int, bad_validations: int, metric: str) -> str:
    """A step or epoch budget, or early stopping, already reached (at the start of a resumed
    run that was killed while finishing, or at the end of an epoch)."""
    if tc.max_steps and step >= tc.max_steps:
        return f"reached train.max_steps={tc.max_steps}"
    if tc.max_epochs and epoch >= tc.max_epochs:
        return f"reached train.max_epochs={tc.max_epochs}"
    return early_stop_reason(tc, bad_validations, metric)


def early_stop_reason(tc: Any, bad_validations: int, metric: str) -> str:
    """``train.patience`` validations in a row without improvement (0: never)."""
    if tc.patience and bad_validations >= tc.patience:
        return f"early stopping: no {metric} improvement in {tc.patience} validations"
    return ""


def step_reason(tc: Any, step: int, time_used: float, signal: str | None) -> str:
    """After an optimizer step: ``train.max_steps``, ``train.max_minutes`` (``time_used`` is
    the fraction of it spent) or a signal (its name; ``""`` when another rank got it)."""
    if tc.max_steps and step >= tc.max_steps:
        return f"reached train.max_steps={tc.max_steps}"
    if tc.max_minutes and time_used >= 1.0:
        return f"reached train.max_minutes={tc.max_minutes:g}"
    if signal is not None:
        return f"signal {signal or 'from another rank'}: checkpoint saved"
    return ""


class NonFiniteGuard:
    """Remembers the first step whose loss or gradient was NaN/inf, on the device: a check at
    every step would sync the GPU, so :meth:`check` runs at sync points (every step on the
    CPU, where it is free) and stops training with the step named."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.first_bad = torch.full((), math.inf, device=self.device)

    def record(self, bad: torch.Tensor, step: int) -> None:
        """``bad``: a 0-d bool tensor for ``step`` (kept only if no earlier step was bad)."""
        self.first_bad = torch.where(
            bad & (self.first_bad == math.inf), float(step), self.first_bad
        )

    def check(self, last_good: Path) -> None:
        """Raise if a step went bad; no checkpoint is written after it, so ``last_good`` (the
        run's last.pt) is the last good state."""
        bad = float(self.first_bad.item())
        if math.isfinite(bad):
            raise NMTError(
                f"loss or gradient became NaN/inf at step {int(bad)}: training stopped, the last "
                f"good checkpoint is {last_good}; lower train.lr or use train.clip_norm"
            )
