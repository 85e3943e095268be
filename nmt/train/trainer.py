"""The training loop: ``train(cfg) -> best validation metric``.

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
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from nmt.config import check_values
from nmt.devices import resolve_device
from nmt.errors import ConfigError, NMTError
from nmt.train import checkpoint as ckpt
from nmt.train.distributed import (
    DistInfo,
    all_reduce,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    wrap_ddp,
)
from nmt.train.metrics import Every, MetricsWriter, Progress, emit, format_seconds, safe_exp
from nmt.train.optim import LRSchedule, build_optimizer
from nmt.train.plots import plot_curves
from nmt.train.runfolder import (
    RunLock,
    StopSignal,
    accept_run_folder,
    remove_new_entries,
    resolve_out_dir,
    run_log,
)

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_config(cfg: DictConfig) -> None:
    """Every check that needs no data, so a bad value fails before anything is prepared."""
    from nmt.models.builder import check_model_config

    check_values(cfg)
    # The vocabulary sizes are not known yet: large placeholders pass the size checks,
    # which run again (with the real sizes) when the model is built.
    check_model_config(cfg.model, 1 << 20, 1 << 20)


def train(cfg: DictConfig, out_dir: str | Path | None = None) -> float:
    """Train the configured model; return the best validation metric (for sweepers).

    ``out_dir`` defaults to Hydra's run folder. The metric is ``train.valid_metric`` (BLEU,
    chrF or loss) for translation and the validation loss (nats/char) for the char LM.
    """
    out = resolve_out_dir(out_dir)
    check_config(cfg)
    device = resolve_device(cfg.train.device, "train.device")
    if cfg.train.precision not in AMP_DTYPES:
        raise ConfigError(
            f"train.precision={cfg.train.precision!r} is unknown: use fp32, bf16 or fp16"
        )
    info = init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank if info.enabled else 0)
    else:
        torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
    lock, stopper = RunLock(out), StopSignal()
    changes: list[str] = []
    before: set[Path] | None = None  # the folder's entries before this run wrote any
    try:
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            before = set(out.iterdir())
            changes = accept_run_folder(cfg, out)
        barrier(info)
        if cfg.train.resume and not (out / ckpt.LAST).exists():
            raise NMTError(
                f"train.resume=true but {out / ckpt.LAST} does not exist: nothing to resume"
            )
        with run_log(out if info.is_main else None):
            for change in changes:
                emit(f"resuming with a changed setting: {change}")
            stopper.install()
            ckpt.seed_everything(cfg.train.seed)
            if cfg.model.arch == "char_lm":
                from nmt.train.lm_task import LMTask

                task: Any = LMTask(cfg, info, device)
            else:
                from nmt.train.seq2seq_task import Seq2SeqTask

                task = Seq2SeqTask(cfg, info, device)
            return Trainer(cfg, task, out, info, device, stopper).run()
    except BaseException:
        if before is not None and not (out / ckpt.LAST).exists():
            remove_new_entries(out, before | {lock.path})  # failed before any checkpoint
        raise
    finally:
        stopper.restore()
        lock.release()
        if info.enabled:
            cleanup()


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
        # Progress; everything here goes into last.pt.
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best: float | None = None
        self.bad_validations = 0
        self.elapsed_before = 0.0
        self.last_valid_step = -1
        self.stop_reason = ""
        self.tokens_total = 0  # target tokens trained on by this invocation (all ranks)
        self.valid_seconds = 0.0  # time spent validating in this invocation
        self._reset_interval()

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

    def _reset_interval(self) -> None:
        self.acc_loss = torch.zeros((), device=self.device)
        self.acc_nll = torch.zeros((), device=self.device)
        self.acc_tokens = 0
        self.interval_start = time.perf_counter()
        # Step of the first non-finite loss/gradient, checked at sync points only (on GPU
        # a check per step would stall the launch queue).
        self.first_bad = torch.full((), math.inf, device=self.device)

    # --- one optimizer step ----------------------------------------------------------
    def train_step(self, items: list) -> None:
        """Forward/backward over ``items`` (micro-batches) and one optimizer update.

        Gradients are normalized by the target-token count of all accumulated micro-batches
        (on all ranks), so two batches of B accumulate to exactly one batch of 2B.
        """
        n_tokens = sum(self.task.n_tokens(item) for item in items)
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
            self.acc_loss += loss_sum.detach()
            self.acc_nll += nll_sum.detach()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.tc.clip_norm if self.tc.clip_norm > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        bad = ~torch.isfinite(loss_sum.detach())
        if self.tc.precision != "fp16":  # fp16 overflows are expected; the scaler skips them
            bad = bad | ~torch.isfinite(norm)
        self.first_bad = torch.where(
            bad & (self.first_bad == math.inf), float(self.step + 1), self.first_bad
        )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        self.acc_tokens += n_tokens
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
        """Stop with the step named if a loss or gradient went NaN/inf (no checkpoint is
        written after it, so the last one on disk is the last good state)."""
        bad = float(self.first_bad.item())
        if math.isfinite(bad):
            raise NMTError(
                f"loss or gradient became NaN/inf at step {int(bad)}: training stopped, the last "
                f"good checkpoint is {self.out / ckpt.LAST}; lower train.lr or use train.clip_norm"
            )

    # --- the loop ----------------------------------------------------------------------
    def run(self) -> float:
        tc = self.tc
        resume_rng = ckpt.resume_trainer(self) if tc.resume else None
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
        if tc.max_steps and self.step >= tc.max_steps:
            self.stop_reason = f"reached train.max_steps={tc.max_steps}"
        if tc.max_epochs and self.epoch >= tc.max_epochs and not self.stop_reason:
            self.stop_reason = f"reached train.max_epochs={tc.max_epochs}"
        if tc.patience and self.bad_validations >= tc.patience and not self.stop_reason:
            self.stop_reason = f"early stopping: no {self.task.metric_name} improvement in {tc.patience} validations"
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
            if tc.max_epochs and self.epoch >= tc.max_epochs and not self.stop_reason:
                self.stop_reason = f"reached train.max_epochs={tc.max_epochs}"
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
        time_up = bool(tc.max_minutes) and used >= 1.0
        if tc.decay_by_time:  # the same fraction on every rank, so their LRs agree
            self.schedule.set_time_progress(used)
        if self.stop_reason:
            return
        if tc.max_steps and self.step >= tc.max_steps:
            self.stop_reason = f"reached train.max_steps={tc.max_steps}"
        elif time_up:
            self.stop_reason = f"reached train.max_minutes={tc.max_minutes:g}"
        elif signalled:
            self.stop_reason = (
                f"signal {self.stopper.received or 'from another rank'}: checkpoint saved"
            )

    def _flag_device(self) -> torch.device:
        # gloo reduces CPU tensors, NCCL only GPU tensors.
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    # --- logging -----------------------------------------------------------------------
    def log_train(self) -> None:
        """The interval's averages: metrics.jsonl, TensorBoard, the progress line."""
        self.check_finite()
        tokens = torch.tensor([float(self.acc_tokens)], device=self._flag_device())
        all_reduce(tokens, self.info)
        values = {**self._interval_values(float(tokens.item())), "steps": self.tc.log_every}
        self.metrics.write("train", self.step, values)
        self.progress.update(self.step, values)
        self._reset_interval()
        self.heartbeat.reset()

    def log_progress(self) -> None:
        """A progress line between two ``log_every`` steps (console and train.log only: the
        interval keeps accumulating, so metrics.jsonl is the same on a fast or slow machine).
        No NaN check or collective here: ranks reach this line at different steps."""
        self.progress.update(
            self.step, self._interval_values(self.acc_tokens * self.info.world_size)
        )

    def _interval_values(self, tokens_all_ranks: float) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.interval_start, 1e-9)
        n = max(self.acc_tokens, 1)
        nll = float(self.acc_nll.item()) / n
        return {
            "epoch": self.epoch + 1,
            "loss": float(self.acc_loss.item()) / n,
            "nll": nll,
            "ppl": safe_exp(nll),
            "lr": self.schedule.lr,
            "tgt_tok_s": tokens_all_ranks / seconds,
            "elapsed": self.elapsed(),
        }

    # --- validation, early stopping, checkpoints ---------------------------------------
    def validate_and_save(self) -> None:
        started = time.perf_counter()
        self._validate_and_save()
        # Keep validation and checkpoint time out of the next throughput reading.
        self.interval_start += time.perf_counter() - started

    def _validate_and_save(self) -> None:
        self.check_finite()
        self.last_valid_step = self.step
        result = None
        if self.info.is_main:
            state = ckpt.rng_state()  # validation must not change the training randomness
            start = time.perf_counter()
            self.progress.message(f"validating at step {self.step}: {self.task.valid_summary()}")
            with self._autocast():
                result = self.task.validate(self.model, self._valid_progress)
            result["valid_seconds"] = round(time.perf_counter() - start, 2)
            self.valid_seconds += result["valid_seconds"]
            ckpt.set_rng_state(state)
            self.heartbeat.reset()
        result = broadcast_object(result, self.info)
        metric = float(result[self.task.metric_name])
        self.schedule.on_validation(metric, self.higher_better)
        improved = self.best is None or (
            metric > self.best if self.higher_better else metric < self.best
        )
        if improved:
            self.best, self.bad_validations = metric, 0
        else:
            self.bad_validations += 1
        if self.info.is_main:
            self.metrics.write("valid", self.step, {"epoch": self.epoch + 1, **result})
            shown = " | ".join(f"{k} {v:.4g}" for k, v in result.items() if isinstance(v, float))
            mark = " (best)" if improved else ""
            self.progress.message(f"valid step {self.step} | {shown}{mark}")
            if improved:
                ckpt.save_checkpoint(self.out / ckpt.BEST, ckpt.trainer_payload(self, full=False))
            self.save_last()
            self._save_step_checkpoint()
        if self.tc.patience and self.bad_validations >= self.tc.patience and not self.stop_reason:
            self.stop_reason = f"early stopping: no {self.task.metric_name} improvement in {self.tc.patience} validations"

    def _valid_progress(self, done: int, total: int, what: str) -> None:
        """Called by the task during validation; a line at most every train.log_seconds."""
        if self.heartbeat.due():
            self.progress.message(f"  validation: {done}/{total} {what}")

    def save_last(self) -> None:
        if self.info.is_main:
            ckpt.save_checkpoint(self.out / ckpt.LAST, ckpt.trainer_payload(self, full=True))

    def _save_step_checkpoint(self) -> None:
        if self.tc.keep_last <= 0:
            return
        ckpt.save_checkpoint(
            self.out / f"step_{self.step:08d}.pt", ckpt.trainer_payload(self, full=False)
        )
        old = sorted(self.out.glob("step_*.pt"))[: -self.tc.keep_last]
        for path in old:
            path.unlink(missing_ok=True)

    # --- the end -----------------------------------------------------------------------
    def _finish(self) -> float:
        self.check_finite()
        wall = self.elapsed()
        if self.info.is_main:
            self.metrics.close()
            png = None
            try:
                png = plot_curves(self.metrics.path, self.out / "curves.png")
            except Exception as err:  # noqa: BLE001 - a plot must never lose a trained model
                emit(f"could not draw curves.png: {err}")
            # Throughput over the time spent training (validation excluded) in this process.
            train_seconds = time.perf_counter() - self.t0 - self.valid_seconds
            tok_s = self.tokens_total / max(train_seconds, 1e-9)
            lines = [
                f"done: {self.stop_reason or 'finished'}",
                f"  steps {self.step} | epochs {self.epoch + (self.batch_in_epoch > 0)} | "
                f"wall {format_seconds(wall)} | train tgt tok/s {tok_s:.0f} "
                f"(validation {format_seconds(self.valid_seconds)})",
                f"  best {self.task.metric_name} {self.best}",
                f"  checkpoints {self.out / ckpt.BEST} {self.out / ckpt.LAST}",
            ]
            if png:
                lines.append(f"  curves {png}")
            lines += self.task.finish(self.out)
            emit("\n".join(lines))
        barrier(self.info)
        return float(self.best) if self.best is not None else float("nan")
