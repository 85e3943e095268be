"""When training stops: its step, epoch and time budgets, early stopping, and signals.

Each rule returns the reason the run's summary prints (``""``: go on); the
:class:`~nmt.train.trainer.Trainer` asks them at the points where each can change and keeps
the first reason it gets.
"""

from __future__ import annotations

from typing import Any


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
