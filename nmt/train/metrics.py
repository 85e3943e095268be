"""Seeing training: metrics.jsonl, TensorBoard (when installed), a progress bar or log lines."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

log = logging.getLogger("nmt.train")

METRICS_NAME = "metrics.jsonl"


class MetricsWriter:
    """Appends one JSON object per event to ``metrics.jsonl`` and mirrors scalars to
    TensorBoard. Disabled (does nothing) on ranks other than 0."""

    def __init__(self, out_dir: Path, enabled: bool = True, resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_NAME
        self.tb = None
        if not enabled:
            return
        if resume_step is not None:
            truncate_after(self.path, resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))
        except Exception:  # tensorboard is an optional extra: skip silently
            self.tb = None

    def write(self, split: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"split": split, "step": step, "time": round(time.time(), 3), **values}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def truncate_after(path: Path, step: int) -> None:
    """Drop records newer than ``step`` (a killed run logged past its last checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:
            continue  # a line cut by the kill
    path.write_text("".join(s + "\n" for s in kept), encoding="utf-8")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class Interval:
    """The training loss, NLL and target tokens since the last logged line, the mean gradient
    norm of its updates (before clipping), and the time they took (validation excluded): what
    a progress line and a ``train`` record average."""

    def __init__(self, device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        # Device tensors: summing on the host would sync the GPU at every micro-batch.
        self.loss = torch.zeros((), device=self.device)
        self.nll = torch.zeros((), device=self.device)
        self.tokens = 0
        self.grad_norm = torch.zeros((), device=self.device)
        self.updates = torch.zeros((), device=self.device)
        self.start = time.perf_counter()

    def add(self, loss_sum, nll_sum, tokens: int) -> None:
        """One micro-batch: its summed loss and NLL (tensors) and its target tokens."""
        self.loss += loss_sum.detach()
        self.nll += nll_sum.detach()
        self.tokens += tokens

    def add_grad_norm(self, norm: Tensor) -> None:
        """One update's total gradient norm before clipping (the vanishing/exploding-gradient
        curve); non-finite norms (skipped fp16 steps) are left out."""
        finite = torch.isfinite(norm)
        self.grad_norm += torch.where(finite, norm.detach().float(), 0.0)
        self.updates += finite.float()

    def exclude(self, seconds: float) -> None:
        """Keep time spent elsewhere (validation, checkpoints) out of the throughput."""
        self.start += seconds

    def values(self, tokens_all_ranks: float) -> dict[str, float]:
        """Per-token loss and NLL of this rank, perplexity, and target tokens/s of all ranks."""
        seconds = max(time.perf_counter() - self.start, 1e-9)
        n = max(self.tokens, 1)
        nll = float(self.nll.item()) / n
        values = {
            "loss": float(self.loss.item()) / n,
            "nll": nll,
            "ppl": safe_exp(nll),
            "tgt_tok_s": tokens_all_ranks / seconds,
        }
        updates = float(self.updates.item())
        if updates:
            values["grad_norm"] = float(self.grad_norm.item()) / updates
        return values


class Progress:
    """A tqdm bar on a terminal, plain log lines (every ``log_every`` steps) otherwise."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(
                total=total_steps or None, initial=start_step, unit="step", dynamic_ncols=True
            )

    def update(self, step: int, values: dict[str, Any]) -> None:
        """Called at log intervals with the interval's averages."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(
                loss=f"{values['loss']:.3f}",
                lr=f"{values['lr']:.2e}",
                tok_s=f"{values['tgt_tok_s']:.0f}",
                refresh=False,
            )
            self.bar.refresh()
            return
        line = (
            f"step {step} | epoch {values['epoch']} | loss {values['loss']:.4f} | "
            f"ppl {values['ppl']:.2f} | lr {values['lr']:.2e} | "
            f"tgt tok/s {values['tgt_tok_s']:.0f} | elapsed {format_seconds(values['elapsed'])}"
        )
        if "grad_norm" in values:
            line += f" | grad norm {values['grad_norm']:.3g}"
        emit(line)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            emit(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Every:
    """True at most once per ``seconds`` (0 = never): time-based progress lines, so a run that
    logs to a file is never silent for long, whatever its speed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.perf_counter()

    def due(self) -> bool:
        if self.seconds <= 0 or time.perf_counter() - self.last < self.seconds:
            return False
        self.reset()
        return True

    def reset(self) -> None:
        self.last = time.perf_counter()


def improves(metric: float, best: float | None, higher_is_better: bool) -> bool:
    """True when ``metric`` beats ``best`` (None: nothing yet), the one comparison early
    stopping, best.pt and the plateau schedule share."""
    if best is None:
        return True
    return metric > best if higher_is_better else metric < best


def emit(text: str) -> None:
    """A log line: through ``logging`` when it is configured (console, RUN/train.log), else
    stderr."""
    if logging.getLogger().handlers:
        log.info(text)
    else:
        print(text, file=sys.stderr, flush=True)


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def safe_exp(x: float) -> float:
    return math.exp(x) if x < 100 else float("inf")


def summary_lines(
    reason: str,
    steps: int,
    epochs: int,
    wall: float,
    tok_s: float,
    valid_seconds: float,
    best: str,
    files: dict[str, Any],
) -> list[str]:
    """The end-of-run summary: why it stopped, how far and fast it went, the best metric,
    and the files it wrote (entries whose value is None are left out)."""
    lines = [
        f"done: {reason}",
        f"  steps {steps} | epochs {epochs} | wall {format_seconds(wall)} | "
        f"train tgt tok/s {tok_s:.0f} (validation {format_seconds(valid_seconds)})",
        f"  best {best}",
    ]
    return lines + [f"  {name} {value}" for name, value in files.items() if value]
