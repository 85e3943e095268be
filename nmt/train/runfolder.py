"""The run folder: where it is, who owns it (lock file), and stopping on signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from pathlib import Path

from nmt.errors import NMTError

LOCK_NAME = "train.lock"


def resolve_out_dir(out_dir: str | Path | None) -> Path:
    """``out_dir`` if given, else Hydra's run folder (a job folder under ``-m``)."""
    if out_dir is not None:
        return Path(out_dir)
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ImportError, ValueError):
        raise NMTError(
            "no output folder: run through nmt-train (Hydra) or call train(cfg, out_dir=...)"
        ) from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class RunLock:
    """``train.lock`` in the run folder: one training process per folder.

    A lock left by a dead process (same host, PID gone) is taken over; a live one is refused.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and self._live(owner):
                    raise NMTError(
                        f"run folder {self.path.parent} is in use by another nmt-train "
                        f"(pid {owner.get('pid')} on {owner.get('host')}): wait for it, stop it, "
                        "or choose another hydra.run.dir"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise NMTError(f"could not take the lock {self.path}: remove it if no run is using it")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None  # unreadable lock (half-written): treat as stale

    @staticmethod
    def _live(owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return True  # cannot check another machine's processes: assume alive
        pid = int(owner.get("pid", -1))
        return pid == os.getpid() or (pid > 0 and _pid_alive(pid))

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class StopSignal:
    """Turn SIGINT/SIGTERM into a flag the training loop checks at each step boundary.

    A second SIGINT restores the default behaviour, so Ctrl-C twice still kills at once.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled in the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
