"""The run folder: where it is, who owns it (lock file), stopping on signals, and what it
records (the config it trained with, resume compatibility, the log file)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from nmt.config import to_plain, upgrade_plain
from nmt.errors import NMTError
from nmt.logs import log_handler
from nmt.outputs import write_text
from nmt.train import checkpoint as ckpt

LOCK_NAME = "train.lock"
LOG_NAME = "train.log"


def resolve_out_dir(out_dir: str | Path | None) -> Path:
    """``out_dir`` if given, else Hydra's run folder (a job folder under ``-m``)."""
    if out_dir is not None:
        return Path(out_dir)
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not running under Hydra
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


# --- what a run folder records: its config and its log ----------------------------------

# Keys that may change when a run is resumed: budgets, logging, hardware and data locations,
# and the decode settings of translation after training. Any other change (the model's
# shape, the data, the optimizer) would not continue the same run.
RESUMABLE_KEYS = (
    "train.max_steps",
    "train.max_epochs",
    "train.max_minutes",
    "train.resume",
    "train.patience",
    "train.log_every",
    "train.log_seconds",
    "train.keep_last",
    "train.threads",
    "train.device",
    "train.compile",
    "data.mirror",
    "data.cache_dir",
    "data.test_splits",
    "name",
    "decode.",
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(
            _flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}")
        )
    return flat


def config_changes(saved: dict, requested: dict) -> tuple[list[str], list[str]]:
    """``(allowed, refused)``: each ``key old -> new`` where the requested config differs from
    the one a run was trained with, split by :data:`RESUMABLE_KEYS`."""
    old, new = _flatten(saved), _flatten(requested)
    allowed, refused = [], []
    for key in sorted(old.keys() | new.keys()):
        if old.get(key, "<unset>") == new.get(key, "<unset>"):
            continue
        change = f"{key} {old.get(key, '<unset>')} -> {new.get(key, '<unset>')}"
        ok = any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)
        (allowed if ok else refused).append(change)
    return allowed, refused


def check_resume_config(checkpoint: Path, saved: dict, requested: dict) -> list[str]:
    """Refuse to resume ``checkpoint`` (trained with ``saved``) under a config that would not
    continue the same run; return the allowed changes (to log).

    Raises:
        NMTError: one line naming the differing keys with their old and new values.
    """
    # A run trained before keys moved (nmt.config.MOVED_KEYS) is compared at the new places.
    allowed, refused = config_changes(upgrade_plain(saved), requested)
    if refused:
        shown = "; ".join(refused[:6]) + (
            f"; and {len(refused) - 6} more" if len(refused) > 6 else ""
        )
        raise NMTError(
            f"train.resume=true but {checkpoint} was trained with another config ({shown}): "
            "resume with the run's values (see its .hydra/config.yaml) or start a new run in "
            "another hydra.run.dir"
        )
    return allowed


def record_config(out: Path, plain_config: dict, overrides: list[str] | None) -> None:
    """``.hydra/config.yaml`` (the resolved config this run trains with) and
    ``.hydra/overrides.yaml`` (the command line's overrides), written only once the run is
    accepted, so a refused command never rewrites the record of the run in the folder."""
    folder = out / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(plain_config)))
    if overrides is not None:
        write_text(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))


def accept_run_folder(cfg: Any, out: Path) -> list[str]:
    """Refuse a run folder that holds another run (or one trained with a config this run
    cannot continue); then record this run's config in it. Nothing in the folder is written
    before every check has passed. Returns the settings a resumed run changes."""
    last = out / ckpt.LAST
    if cfg.train.resume and not last.exists():
        raise NMTError(f"train.resume=true but {last} does not exist: nothing to resume")
    if last.exists() and not cfg.train.resume:
        raise NMTError(
            f"run folder {out} already holds a run ({ckpt.LAST}): set train.resume=true "
            "to continue it, or choose another hydra.run.dir"
        )
    requested = to_plain(cfg)
    changes: list[str] = []
    if cfg.train.resume and last.exists():
        saved = ckpt.load_checkpoint(last).get("config")
        if isinstance(saved, dict):
            changes = check_resume_config(last, saved, requested)
    record_config(out, requested, hydra_overrides())
    return changes


def remove_new_entries(folder: Path, keep: set[Path]) -> None:
    """Remove what a run that failed before its first checkpoint wrote into ``folder``
    (its config record, log, metrics): a failed command leaves nothing behind."""
    for entry in folder.iterdir():
        if entry in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def hydra_overrides() -> list[str] | None:
    """The command line's overrides when running under Hydra, else None."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not running under Hydra
        return None


@contextlib.contextmanager
def run_log(out: Path | None) -> Iterator[None]:
    """Log lines (INFO of nmt's loggers) to ``out/train.log`` (appended, so a resumed run
    continues it) and, when nothing else shows them, to stderr."""
    root = logging.getLogger()
    added: list[logging.Handler] = []
    if not root.handlers:  # called as a library: no console configured
        added.append(log_handler(sys.stderr))
    if out is not None:
        added.append(log_handler(out / LOG_NAME))
    level = root.level
    for handler in added:
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        for handler in added:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
