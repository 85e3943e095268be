"""``train(cfg) -> best validation metric``: one training run from its config.

The device and precision, data-parallel set-up, the run folder (lock, acceptance, log file),
the task for the model's architecture, then the :class:`~nmt.train.trainer.Trainer` loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from nmt.config_checks import validate
from nmt.devices import resolve_device
from nmt.errors import NMTError
from nmt.train import checkpoint as ckpt
from nmt.train.distributed import barrier, cleanup, init_distributed
from nmt.train.lm_task import LMTask
from nmt.train.metrics import emit
from nmt.train.runfolder import (
    RunLock,
    StopSignal,
    accept_run_folder,
    remove_new_entries,
    resolve_out_dir,
    run_log,
)
from nmt.train.seq2seq_task import Seq2SeqTask
from nmt.train.trainer import Trainer


def train(cfg: DictConfig, out_dir: str | Path | None = None) -> float:
    """Train the configured model; return the best validation metric (for sweepers).

    ``out_dir`` defaults to Hydra's run folder. The metric is ``train.valid_metric`` (BLEU,
    chrF or loss) for translation and the validation loss (nats/char) for the char LM.
    """
    out = resolve_out_dir(out_dir)
    validate(cfg)  # every check that needs no data, so a bad value fails before anything else
    device = resolve_device(cfg.train.device, "train.device")
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
                task: Any = LMTask(cfg, info, device)
            else:
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
