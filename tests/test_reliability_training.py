"""Faults during training: kill -9 at random moments and inside checkpoint writes, a full
disk, a second run on a live folder, a non-finite gradient.

Every interrupted run must resume from its last complete checkpoint and end with weights
bit-identical to an uninterrupted run (CPU, one thread). Runs are forked from this process
(already imported, data already prepared), so a trial costs a training run, not a start-up.
tests/test_train_loop.py covers the NaN loss, SIGTERM, a faked live lock and one kill -9
right after a checkpoint; this file does not repeat them.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from nmt import outputs
from nmt.config import conf_dir, register_configs
from nmt.errors import NMTError
from nmt.train import checkpoint as ckpt
from nmt.train.metrics import read_metrics
from nmt.train.run import train
from nmt.train.runfolder import LOCK_NAME
from nmt.train.trainer import Trainer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

STEPS, VALID_EVERY = 12, 3  # checkpoints at steps 3, 6, 9, 12


@pytest.fixture(scope="module")
def run(tiny_parallel, tmp_path_factory):
    """The config maker and the uninterrupted reference run."""
    cache = tmp_path_factory.mktemp("fault_cache")
    p = tiny_parallel
    base = ["data=local", f"data.cache_dir={cache}", "data.test_splits=[]"]
    base += [f"data.local.{k}={p[k]}" for k in ("train_src", "train_tgt", "valid_src", "valid_tgt")]
    base += ["tokenizer.vocab_size=200", "model.emb_dim=16", "model.hidden_dim=16"]
    base += ["model.dropout=0.1", "train.threads=1", "train.max_tokens=500", "train.lr=3e-3"]
    base += [f"train.max_steps={STEPS}", f"train.valid_every={VALID_EVERY}", "train.keep_last=1"]
    base += ["train.log_every=3", "train.valid_max_sentences=2", "decode=greedy"]
    base += ["decode.max_len_a=0.0", "decode.max_len_b=6"]

    def cfg(*extra: str):
        register_configs()
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose("config", overrides=base + list(extra))

    reference = tmp_path_factory.mktemp("reference")
    train(cfg(), out_dir=reference)  # also imports and warms up all a run uses
    weights = ckpt.load_checkpoint(reference / "last.pt")["model"]
    # A forked run, timed like the trials' runs (and as exact as the in-process one).
    forked = tmp_path_factory.mktemp("forked")
    start = time.perf_counter()
    pid = _fork_train(cfg(), forked)
    assert os.waitpid(pid, 0)[1] == 0
    seconds = time.perf_counter() - start
    for name, value in ckpt.load_checkpoint(forked / "last.pt")["model"].items():
        assert torch.equal(value, weights[name]), name
    return {
        "cfg": cfg,
        "seconds": seconds,
        "weights": weights,
        "losses": _losses(reference),
        "folder": reference,
    }


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """curves.png is not under test here and costs a good part of these tiny runs."""
    monkeypatch.setattr("nmt.train.trainer.plot_curves", lambda *args, **kwargs: None)


def _losses(folder: Path) -> dict[int, float]:
    records = read_metrics(folder / "metrics.jsonl")
    return {r["step"]: r["loss"] for r in records if r["split"] == "train"}


def _fork_train(cfg, out: Path, hook=None) -> int:
    """Train in a forked child (output silenced); returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            if hook is not None:
                hook()
            train(cfg, out_dir=out)
            code = 0
        finally:
            os._exit(code)
    return pid


def _die_in_save(n: int, stage: str):
    """A child hook: SIGKILL itself during the n-th checkpoint write, at ``stage``."""

    def hook() -> None:
        real_save, real_sync = torch.save, ckpt._fsync_dir
        calls = {"save": 0, "sync": 0}

        def save(obj, f, *args, **kwargs):
            calls["save"] += 1
            if calls["save"] == n and stage == "mid_write":
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[: buf.tell() // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real_save(obj, f, *args, **kwargs)
            if calls["save"] == n and stage == "before_rename":
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        def sync(folder):  # called right after the rename
            calls["sync"] += 1
            if calls["sync"] == n and stage == "after_rename":
                os.kill(os.getpid(), signal.SIGKILL)
            real_sync(folder)

        torch.save = save
        ckpt._fsync_dir = sync

    return hook


def _resume_and_compare(run, out: Path, monkeypatch) -> int | None:
    """Check the folder a killed run left, resume it, compare with the reference.

    Returns the step the run resumed from (None: killed before its first checkpoint).
    """
    for path in out.glob("*.pt"):  # a visible checkpoint is always a complete one
        ckpt.load_checkpoint(path)
    last = out / ckpt.LAST
    saved = ckpt.load_checkpoint(last)["step"] if last.exists() else None
    resumed: list[int] = []
    real = Trainer.resume

    def spy(trainer):
        state = real(trainer)
        resumed.append(trainer.step)
        return state

    monkeypatch.setattr(Trainer, "resume", spy)
    if saved is None:
        train(run["cfg"](), out_dir=out)  # nothing to resume: a fresh run takes the folder
    else:
        with pytest.raises(NMTError, match="train.resume=true"):
            train(run["cfg"](), out_dir=out)  # the folder is never silently overwritten
        train(run["cfg"]("train.resume=true"), out_dir=out)
        assert resumed == [saved]  # from the last complete checkpoint
    monkeypatch.undo()
    final = ckpt.load_checkpoint(last)
    assert final["step"] == STEPS
    for name, value in run["weights"].items():
        assert torch.equal(value, final["model"][name]), name
    if saved is not None:
        assert _losses(out) == run["losses"]
    assert not (out / LOCK_NAME).exists()
    return saved


def _kill_trials(run, tmp_path, monkeypatch, plan) -> list[int | None]:
    """Run, kill -9 (after ``delay`` s, or from inside by the hook), resume, compare.

    Returns per trial the step resumed from (None: killed before the first checkpoint).
    A timed kill that comes after the run has finished (a busy machine's timing is noisy)
    is tried again with half the delay, so every trial really is a kill.
    """
    froms: list[int | None] = []
    for i, (delay, hook) in enumerate(plan):
        for attempt in range(5):
            out = tmp_path / f"trial{i}_{attempt}"
            pid = _fork_train(run["cfg"](), out, hook)
            if delay is not None:
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            if not (delay is not None and status == 0):
                break
            delay /= 2
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (i, status)
        froms.append(_resume_and_compare(run, out, monkeypatch))
    return froms


# (n, stage): die while writing the n-th checkpoint file. Validation k writes best.pt (when
# it improved; always at the first), last.pt, step_XXXXXXXX.pt: writes 1-3 are step 3's.
WRITE_KILLS = [(4, "mid_write"), (2, "before_rename"), (5, "after_rename"), (3, "mid_write")]


def test_kill_9_three_trials_resume_to_identical_weights(run, tmp_path, monkeypatch):
    plan = [(0.5 * run["seconds"], None)]
    plan += [(None, _die_in_save(n, stage)) for n, stage in WRITE_KILLS[:2]]
    froms = _kill_trials(run, tmp_path, monkeypatch, plan)
    assert froms[1] == VALID_EVERY  # died writing a file of the 2nd validation
    assert froms[2] is None  # died writing the first last.pt: nothing to resume, a fresh run


@pytest.mark.slow  # 12 trials: about 12 training runs
def test_kill_9_at_random_moments_and_inside_writes(run, tmp_path, monkeypatch):
    rng = random.Random(8)
    plan = [(rng.uniform(0.05, 0.95) * run["seconds"], None) for _ in range(8)]
    plan += [(None, _die_in_save(n, stage)) for n, stage in WRITE_KILLS]
    froms = _kill_trials(run, tmp_path, monkeypatch, plan)
    assert len(froms) == 12 and len(set(froms)) >= 3  # killed at several different points


def test_second_run_on_a_live_folder_is_refused_even_with_resume(run, tmp_path, monkeypatch):
    out, ready = tmp_path / "run", tmp_path / "ready"

    def hang_after_checkpoint() -> None:
        real = Trainer.validate_and_save

        def validate_then_hang(self):
            real(self)
            ready.write_text(str(self.step))
            time.sleep(120)  # the parent kills us long before

        Trainer.validate_and_save = validate_then_hang

    pid = _fork_train(run["cfg"](), out, hang_after_checkpoint)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the first run never reached its checkpoint"
        for extra in ([], ["train.resume=true"]):
            with pytest.raises(NMTError, match=rf"in use by another nmt-train \(pid {pid} "):
                train(run["cfg"](*extra), out_dir=out)
        assert f'"pid": {pid}' in (out / LOCK_NAME).read_text()  # its lock was left alone
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert _resume_and_compare(run, out, monkeypatch) == VALID_EVERY


def test_resuming_a_finished_run_trains_no_extra_step(run, tmp_path, monkeypatch):
    """What a kill after the final last.pt (while finishing) leaves behind."""
    out = tmp_path / "done"
    shutil.copytree(run["folder"], out)
    assert _resume_and_compare(run, out, monkeypatch) == STEPS


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_while_saving_keeps_the_previous_checkpoint(run, tmp_path, monkeypatch):
    """The 2nd write of last.pt goes to /dev/full: the kernel answers ENOSPC."""
    real_mkstemp = outputs.tempfile.mkstemp
    last_saves = []

    def full_mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        if kwargs.get("prefix") == ".last.pt.":
            last_saves.append(name)
            if len(last_saves) == 2:
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
        return fd, name

    monkeypatch.setattr(outputs.tempfile, "mkstemp", full_mkstemp)
    out = tmp_path / "run"
    with pytest.raises(NMTError) as err:
        train(run["cfg"](), out_dir=out)
    message = str(err.value)
    assert message.startswith(f"could not write checkpoint {out / 'last.pt'} ([Errno 28] ")
    assert "the previous last.pt is intact" in message and "train.resume=true" in message
    assert "\n" not in message
    monkeypatch.undo()
    assert ckpt.load_checkpoint(out / "last.pt")["step"] == VALID_EVERY
    assert not list(out.glob(".*.tmp"))  # the failed temporary file was removed
    assert not (out / LOCK_NAME).exists()
    assert _resume_and_compare(run, out, monkeypatch) == VALID_EVERY


def test_infinite_gradient_stops_naming_the_step(run, tmp_path, monkeypatch):
    """A gradient (not the loss) turns inf at step 5: stop there, last.pt stays at step 3."""
    from nmt.models import builder
    from nmt.train import seq2seq_task

    real_build = builder.build_model
    backward_calls = {"n": 0}

    def poison(grad):
        backward_calls["n"] += 1
        return grad * float("inf") if backward_calls["n"] == 5 else grad

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        next(iter(model.parameters())).register_hook(poison)
        return model

    monkeypatch.setattr(seq2seq_task, "build_model", build)  # where the task looks it up
    out = tmp_path / "run"
    with pytest.raises(NMTError, match=r"NaN/inf at step 5: training stopped, the last good"):
        train(run["cfg"](), out_dir=out)
    assert ckpt.load_checkpoint(out / "last.pt")["step"] == VALID_EVERY
    weights = ckpt.load_checkpoint(out / "last.pt")["model"].values()
    assert all(torch.isfinite(w).all() for w in weights)
    assert not (out / LOCK_NAME).exists()
