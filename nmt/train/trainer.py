"""The training loop: :class:`Trainer` (started by :func:`nmt.train.run.train`).

What is trained (the data, the model, the loss, validation) comes from a *task*
(:mod:`nmt.train.seq2seq_task` for translation, :mod:`nmt.train.lm_task` for the char LM);
this module owns everything around it: devices and precision, gradient accumulation,
clipping, schedules, the NaN guard, validation cadence, early stopping, checkpoints and
exact resuming, stopping on budgets or signals, logging, curves and the final summary.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from nmt.config import to_plain
from nmt.errors import NMTError, first_line
from nmt.train import checkpoint as ckpt
from nmt.train.distributed import (
    DistInfo,
    all_reduce,
    barrier,
    broadcast_object,
    wrap_ddp,
)
from nmt.train.ema import WeightAverage
from nmt.train.metrics import (
    Every,
    Interval,
    MetricsWriter,
    Progress,
    emit,
    improves,
    summary_lines,
)
from nmt.train.optim import LRSchedule, build_optimizer
from nmt.train.plots import plot_curves
from nmt.train.stopping import NonFiniteGuard, budget_reason, early_stop_reason, step_reason

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Trainer:
    """One training run; ``run()`` returns the best validation metric."""

    def __init__(self, cfg, task, out: Path, info: DistInfo, device: torch.device, stopper) -> None:
        self.cfg, self.tc, self.task, self.out = cfg, cfg.train, task, out
        self.info, self.device, self.stopper = info, device, stopper
        self.model = task.model.to(device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.objective = task.objective
        self.compiled = False
        if self.tc.compile:
            try:
                self.objective = torch.compile(self.objective)
                self.compiled = True
            except Exception as err:  # noqa: BLE001 - compile support varies by platform
                warnings.warn(f"torch.compile failed ({err}); training uncompiled", stacklevel=1)
        self.ddp = wrap_ddp(self.objective, device, info)
        self.optimizer = build_optimizer(self.params, self.tc)
        self.schedule = LRSchedule(self.optimizer, self.tc, self._total_steps())
        self.amp_dtype = AMP_DTYPES[self.tc.precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.tc.precision == "fp16")
        self.higher_better = task.higher_is_better
        # The moving average of the weights, which validation and best.pt use (nmt/train/ema.py).
        self.ema = WeightAverage(self.model, self.tc.ema_decay) if self.tc.ema_decay else None
        # Progress; everything here goes into last.pt.
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best: float | None = None
        self.bad_validations = 0
        self.elapsed_before = 0.0
        self.last_valid_step = -1
        self.stop_reason = ""
        self.tokens_total = 0  # target tokens trained on by this invocation (all ranks)
        self.valid_seconds = 0.0  # time spent validating in this invocation
        self.interval = Interval(device)
        self.non_finite = NonFiniteGuard(device)

    # --- setup -----------------------------------------------------------------------
    def _total_steps(self) -> int:
        if self.tc.max_steps:
            return self.tc.max_steps
        if self.tc.max_epochs:
            return self.tc.max_epochs * math.ceil(
                self.task.batches_per_epoch() / self.tc.accum_steps
            )
        return 0

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # --- one optimizer step ----------------------------------------------------------
    def train_step(self, items: list) -> None:
        """Forward/backward over ``items`` (micro-batches) and one optimizer update.

        Gradients are normalized by the target-token count of all accumulated micro-batches
        (on all ranks), so two batches of B accumulate to exactly one batch of 2B.
        """
        counts = [self.task.n_tokens(item) for item in items]
        n_tokens = sum(counts)
        total = n_tokens
        if self.info.enabled:
            t = torch.tensor([float(n_tokens)], device=self._flag_device())
            total = float(all_reduce(t, self.info).item())
        # DDP averages gradients over ranks: multiply back by the world size.
        scale = self.info.world_size / max(total, 1)
        for i, item in enumerate(items):
            last = i == len(items) - 1
            sync = contextlib.nullcontext() if last or not self.info.enabled else self.ddp.no_sync()
            with sync:
                with self._autocast():
                    loss_sum, nll_sum = self._forward(item)
                self.scaler.scale(loss_sum * scale).backward()
            self.interval.add(loss_sum, nll_sum, counts[i])
        self.scaler.unscale_(self.optimizer)
        max_norm = self.tc.clip_norm if self.tc.clip_norm > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.interval.add_grad_norm(norm)
        bad = ~torch.isfinite(loss_sum.detach())
        if self.tc.precision != "fp16":  # fp16 overflows are expected; the scaler skips them
            bad = bad | ~torch.isfinite(norm)
        self.non_finite.record(bad, self.step + 1)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.tokens_total += int(total)  # all ranks
        self.step += 1
        if self.device.type == "cpu":
            self.check_finite()  # free on CPU: stop at the very step

    def _forward(self, item):
        try:
            return self.task.forward(self.ddp, item)
        except Exception as err:
            if not self.compiled:
                raise
            warnings.warn(
                f"torch.compile failed at run time ({err}); training uncompiled", stacklevel=1
            )
            self.compiled = False
            self.objective = self.task.objective
            self.ddp = wrap_ddp(self.objective, self.device, self.info)
            return self.task.forward(self.ddp, item)

    def check_finite(self) -> None:
        """Stop with the step named if a loss or gradient went NaN/inf."""
        self.non_finite.check(self.out / ckpt.LAST)

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> float:
        tc = self.tc
        resume_rng = self.resume() if tc.resume else None
        self.metrics = MetricsWriter(self.out, self.info.is_main, self.step if tc.resume else None)
        self.progress = Progress(tc.max_steps, self.step, self.info.is_main)
        self.heartbeat = Every(tc.log_seconds)
        self.t0 = time.perf_counter()
        if self.info.is_main:
            self.progress.message(self.task.describe())
            coverage = getattr(self.task, "coverage", None)
            if coverage:  # each side's vectors and their coverage, for studies and reports
                text = json.dumps(coverage, indent=1) + "\n"
                (self.out / "embeddings.json").write_text(text, encoding="utf-8")
        try:
            self._loop(resume_rng)
        finally:
            self.progress.close()
        return self._finish()

    def _loop(self, resume_rng) -> None:
        tc = self.tc
        accum = max(1, tc.accum_steps)
        # A resumed run may already be complete (killed while finishing): no extra step.
        self.stop_reason = self._budget_reason()
        while not self.stop_reason:
            batches = self.task.epoch_batches(self.epoch)
            if resume_rng is not None:
                # Restore the generators only after the epoch's batch order is drawn, exactly
                # as the uninterrupted run had drawn it before this point.
                ckpt.set_rng_state(resume_rng)
                resume_rng = None
            if self.batch_in_epoch == 0:
                self.task.start_epoch()
            while self.batch_in_epoch < len(batches) and not self.stop_reason:
                group = batches[self.batch_in_epoch : self.batch_in_epoch + accum]
                self.train_step(group)
                self.batch_in_epoch += len(group)
                if self.step % tc.log_every == 0:
                    self.log_train()
                elif self.heartbeat.due():
                    self.log_progress()
                if tc.valid_every and self.step % tc.valid_every == 0:
                    self.validate_and_save()
                self._check_budgets()
            if self.stop_reason:
                break
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.last_valid_step != self.step:
                self.validate_and_save()
            self.stop_reason = self.stop_reason or self._budget_reason()
        if self.stop_reason.startswith("signal"):
            self.check_finite()
            self.save_last()
        elif self.last_valid_step != self.step:
            self.validate_and_save()

    def _check_budgets(self) -> None:
        tc = self.tc
        used = self.elapsed() / (tc.max_minutes * 60) if tc.max_minutes else 0.0
        signalled = self.stopper.received is not None
        if self.info.enabled:  # every rank must stop at the same step: any rank's reason counts
            flags = torch.tensor([used, float(signalled)], device=self._flag_device())
            all_reduce(flags, self.info, "max")
            used, signalled = float(flags[0]), bool(flags[1] > 0)
        if tc.decay_by_time:  # the same fraction on every rank, so their LRs agree
            self.schedule.set_time_progress(used)
        signal = (self.stopper.received or "") if signalled else None
        self.stop_reason = self.stop_reason or step_reason(tc, self.step, used, signal)

    def _flag_device(self) -> torch.device:
        # gloo reduces CPU tensors, NCCL only GPU tensors.
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    @property
    def epoch_number(self) -> int:
        """The 1-based epoch the current weights belong to: the one in progress, or at an
        epoch's end (``self.epoch`` already counts it) the one just finished."""
        return self.epoch + (self.batch_in_epoch > 0)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    # --- logging -----------------------------------------------------------------------
    def log_train(self) -> None:
        """The interval's averages: metrics.jsonl, TensorBoard, the progress line."""
        self.check_finite()
        tokens = torch.tensor([float(self.interval.tokens)], device=self._flag_device())
        all_reduce(tokens, self.info)
        values = {**self._interval_values(float(tokens.item())), "steps": self.tc.log_every}
        self.metrics.write("train", self.step, values)
        self.progress.update(self.step, values)
        self.interval.reset()
        self.non_finite.reset()
        self.heartbeat.reset()

    def log_progress(self) -> None:
        """A progress line between two ``log_every`` steps (console and train.log only: the
        interval keeps accumulating, so metrics.jsonl is the same on a fast or slow machine).
        No NaN check or collective here: ranks reach this line at different steps."""
        self.progress.update(
            self.step, self._interval_values(self.interval.tokens * self.info.world_size)
        )

    def _interval_values(self, tokens_all_ranks: float) -> dict[str, float]:
        values = self.interval.values(tokens_all_ranks)
        return {
            "epoch": self.epoch_number,
            **values,
            "lr": self.schedule.lr,
            "elapsed": self.elapsed(),
        }

    # --- validation, early stopping, checkpoints ---------------------------------------
    def validate_and_save(self) -> None:
        started = time.perf_counter()
        self._validate_and_save()
        self.interval.exclude(time.perf_counter() - started)

    def _validate_and_save(self) -> None:
        self.check_finite()
        self.last_valid_step = self.step
        result = None
        if self.info.is_main:
            state = ckpt.rng_state()  # validation must not change the training randomness
            start = time.perf_counter()
            self.progress.message(f"validating at step {self.step}: {self.task.valid_summary()}")
            with self._autocast():
                result = self.task.validate(self.evaluated_model(), self._valid_progress)
            result["valid_seconds"] = round(time.perf_counter() - start, 2)
            self.valid_seconds += result["valid_seconds"]
            ckpt.set_rng_state(state)
            self.heartbeat.reset()
        result = broadcast_object(result, self.info)
        metric = float(result[self.task.metric_name])
        self.schedule.on_validation(metric, self.higher_better)
        improved = improves(metric, self.best, self.higher_better)
        if improved:
            self.best, self.bad_validations = metric, 0
        else:
            self.bad_validations += 1
        if self.info.is_main:
            self.metrics.write("valid", self.step, {"epoch": self.epoch_number, **result})
            shown = " | ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float))
            mark = " (best)" if improved else ""
            self.progress.message(f"valid step {self.step} | {shown}{mark}")
            if improved:
                ckpt.save_checkpoint(self.out / ckpt.BEST, self.checkpoint(full=False))
            self.save_last()
            if self.tc.keep_last > 0:
                payload = self.checkpoint(full=False)
                ckpt.save_step_checkpoint(self.out, self.step, payload, self.tc.keep_last)
        self.stop_reason = self.stop_reason or early_stop_reason(
            self.tc, self.bad_validations, self.task.metric_name
        )

    def evaluated_model(self) -> torch.nn.Module:
        """What validation decodes and ``best.pt`` holds: the weight average if there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _valid_progress(self, done: int, total: int, what: str) -> None:
        """Called by the task during validation; a line at most every train.log_seconds."""
        if self.heartbeat.due():
            self.progress.message(f"  validation: {done}/{total} {what}")

    def _budget_reason(self) -> str:
        return budget_reason(
            self.tc, self.step, self.epoch, self.bad_validations, self.task.metric_name
        )

    def save_last(self) -> None:
        if self.info.is_main:
            ckpt.save_checkpoint(self.out / ckpt.LAST, self.checkpoint(full=True))

    # --- state: what a checkpoint holds, and resuming from it ------------------------------
    def checkpoint(self, full: bool) -> dict[str, Any]:
        """The payload of ``best.pt``/``step_*.pt`` (weights, config, vocabularies: enough to
        translate) or, with ``full``, of ``last.pt`` (everything to resume exactly)."""
        return {
            "format_version": ckpt.FORMAT_VERSION,
            "config": to_plain(self.cfg),
            **self.task.tokenizer_payload(),
            **self.state_dict(full),
        }

    def state_dict(self, full: bool = True) -> dict[str, Any]:
        """Weights and progress counters; with ``full`` also the optimizer, schedule, scaler,
        random generators, the position in the epoch (``epoch``, ``batch_in_epoch``: the
        one record of it) and the task's own state."""
        # best.pt and step_*.pt translate with the averaged weights; last.pt resumes training,
        # so it keeps the raw weights as "model" and the average beside them.
        weights = self.model if full else self.evaluated_model()
        state: dict[str, Any] = {
            "model": weights.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best": self.best,
        }
        if full:
            state.update(
                optimizer=self.optimizer.state_dict(),
                scheduler=self.schedule.state_dict(),
                scaler=self.scaler.state_dict(),
                rng=ckpt.rng_state(),
                batch_in_epoch=self.batch_in_epoch,
                bad_validations=self.bad_validations,
                elapsed=self.elapsed(),
                last_valid_step=self.last_valid_step,
                task_state=self.task.state_dict(),
            )
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """Restore :meth:`state_dict` (full); return its RNG state, which :meth:`_loop`
        restores only after drawing the epoch's batch order, where the uninterrupted run was."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.task.load_state_dict(state.get("task_state"), self.device)
        if self.ema is not None:
            if "ema" not in state:
                raise KeyError("no weight average (train.ema_decay) in it")
            self.ema.load_state_dict(state["ema"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best, self.bad_validations = state["best"], int(state["bad_validations"])
        self.elapsed_before = float(state["elapsed"])
        self.last_valid_step = int(state["last_valid_step"])
        return state["rng"]

    def resume(self) -> dict[str, Any]:
        """Load the run folder's ``last.pt`` (:meth:`load_state_dict`); return its RNG state."""
        path = self.out / ckpt.LAST
        data = ckpt.load_checkpoint(path, map_location="cpu")
        if "optimizer" not in data:
            raise NMTError(f"{path} has no training state: it cannot be resumed")
        try:  # the configs were compared first; this catches files whose config was edited
            rng = self.load_state_dict(data)
        except (RuntimeError, ValueError, KeyError) as err:
            raise NMTError(
                f"{path} does not match the model this config builds ({first_line(err, 120)}): "
                "resume with the run's own config (its .hydra/config.yaml) or start a new run"
            ) from None
        emit(f"resumed from {path} at step {self.step} (epoch {self.epoch + 1})")
        return rng

    # --- the end -----------------------------------------------------------------------
    def _finish(self) -> float:
        self.check_finite()
        if self.info.is_main:
            self.metrics.close()
            png = None
            try:
                png = plot_curves(self.metrics.path, self.out / "curves.png")
            except Exception as err:  # noqa: BLE001 - a plot must never lose a trained model
                emit(f"could not draw curves.png: {err}")
            # Throughput over the time spent training (validation excluded) in this process.
            train_seconds = time.perf_counter() - self.t0 - self.valid_seconds
            lines = summary_lines(
                self.stop_reason or "finished",
                steps=self.step,
                epochs=self.epoch_number,
                wall=self.elapsed(),
                tok_s=self.tokens_total / max(train_seconds, 1e-9),
                valid_seconds=self.valid_seconds,
                best=f"{self.task.metric_name} {self.best}",
                files={
                    "checkpoints": f"{self.out / ckpt.BEST} {self.out / ckpt.LAST}",
                    "curves": png,
                },
            )
            emit("\n".join(lines + self.task.finish(self.out)))
        barrier(self.info)
        return float(self.best) if self.best is not None else float("nan")
