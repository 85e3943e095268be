"""Checkpoint I/O: atomic writes, safe loads, RNG round trips, the run-folder lock."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from nmt import inference
from nmt.errors import NMTError
from nmt.train import checkpoint as ckpt
from nmt.train.runfolder import LOCK_NAME, RunLock


def _payload(value: float = 1.0) -> dict:
    return {"format_version": 1, "model": {"w": torch.full((4,), value)}, "step": 3}


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "a.pt"
    ckpt.save_checkpoint(path, _payload(2.0))
    data = ckpt.load_checkpoint(path)
    assert torch.equal(data["model"]["w"], torch.full((4,), 2.0))
    assert data["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporaries left


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch, failing):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, _payload(1.0))

    def boom(*args, **kwargs):
        raise OSError("disk died")

    monkeypatch.setattr(ckpt.os, failing, boom)
    with pytest.raises(OSError, match="disk died"):
        ckpt.save_checkpoint(path, _payload(9.0))
    monkeypatch.undo()
    assert torch.equal(ckpt.load_checkpoint(path)["model"]["w"], torch.full((4,), 1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_write_killed_midway_keeps_previous_checkpoint(tmp_path):
    """A process SIGKILLed while writing a large checkpoint never damages the old one."""
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, _payload(1.0))
    code = (
        "import os, torch\n"
        "from nmt.train import checkpoint as c\n"
        "real = torch.save\n"
        "def slow(obj, f):\n"
        "    real(obj, f); f.flush(); os.kill(os.getpid(), 9)\n"  # die after bytes, before rename
        "torch.save = slow\n"
        f"c.save_checkpoint({str(path)!r}, {{'format_version': 1, 'model': {{'w': torch.zeros(100000)}}}})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    assert torch.equal(ckpt.load_checkpoint(path)["model"]["w"], torch.full((4,), 1.0))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": Evil()}, path)
    with pytest.raises(NMTError, match="refused for safety"):
        ckpt.load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "good.pt"
    ckpt.save_checkpoint(path, _payload())
    data = path.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(NMTError, match=r"cut\.pt \(\d+ bytes\) is incomplete or corrupt") as err:
        ckpt.load_checkpoint(bad)
    assert "PytorchStreamReader" not in str(err.value)  # torch's own text stays out
    assert "central directory" not in str(err.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(NMTError, match=r"junk\.pt"):
        ckpt.load_checkpoint(junk)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(NMTError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(NMTError, match="not an nmt checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(NMTError, match="has no best.pt or last.pt"):
        inference.resolve_checkpoint(tmp_path)


def test_resolve_prefers_best(tmp_path):
    ckpt.save_checkpoint(tmp_path / "last.pt", _payload())
    assert inference.resolve_checkpoint(tmp_path).name == "last.pt"
    ckpt.save_checkpoint(tmp_path / "best.pt", _payload())
    assert inference.resolve_checkpoint(tmp_path).name == "best.pt"


def test_rng_state_round_trip_through_a_file(tmp_path):
    ckpt.seed_everything(5)
    ckpt.save_checkpoint(
        tmp_path / "r.pt", {"format_version": 1, "model": {}, "rng": ckpt.rng_state()}
    )
    first = (random.random(), float(np.random.rand()), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(7)  # move every generator on
    ckpt.set_rng_state(ckpt.load_checkpoint(tmp_path / "r.pt")["rng"])
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_lock_refuses_live_owner_and_takes_over_stale(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    with pytest.raises(NMTError, match="in use by another nmt-train"):
        # A live foreign owner: pretend the lock belongs to our parent process.
        (tmp_path / LOCK_NAME).write_text(
            f'{{"pid": {os.getppid()}, "host": "{socket.gethostname()}"}}'
        )
        RunLock(tmp_path).acquire()
    # A dead owner: a finished subprocess's PID.
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / LOCK_NAME).write_text(
        f'{{"pid": {proc.stdout.strip()}, "host": "{socket.gethostname()}"}}'
    )
    second = RunLock(tmp_path)
    second.acquire()
    assert second.held
    second.release()
    assert not (tmp_path / LOCK_NAME).exists()
