"""Checkpoints as bytes: atomic writes, safe and verified loads, RNG state as plain data.

What a run saves is :meth:`nmt.train.trainer.Trainer.checkpoint`; loading a model for
translation is :mod:`nmt.inference`.

A checkpoint is a plain dict (see docs/architecture.md) saved with ``torch.save`` and loaded
with ``torch.load(weights_only=True)`` only, so a crafted file can never run code.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nmt.errors import NMTError, first_line
from nmt.outputs import replacing

FORMAT_VERSION = 1
BEST, LAST = "best.pt", "last.pt"


class CheckpointWriteError(NMTError, OSError):
    """Saving failed (disk full, I/O error); the previous file at the path is untouched."""


RESUME_HINT = "then run again (training continues with train.resume=true)"


def save_checkpoint(
    path: str | Path, payload: dict[str, Any], retry_hint: str = RESUME_HINT
) -> None:
    """Write ``payload`` to ``path`` atomically: a crash mid-write leaves the old file intact.

    The bytes go to a temporary file in the same folder, are flushed and fsync'ed, and the
    temporary file then replaces ``path`` in one ``os.replace``; the folder is fsync'ed so the
    rename itself survives a power cut. A failed write is a :class:`CheckpointWriteError`
    whose message ends with ``retry_hint`` (what to do next).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as f:
            torch.save(payload, f)
    except BaseException as err:
        os_err = _os_error(err)
        if os_err is not None:  # the temporary is gone; the previous checkpoint is untouched
            kept = f"the previous {path.name} is intact" if path.is_file() else "nothing was saved"
            raise CheckpointWriteError(
                f"could not write checkpoint {path} ({first_line(os_err)}): {kept}; free disk "
                f"space or choose another folder, {retry_hint}"
            ) from err
        raise
    _fsync_dir(path.parent)


def save_step_checkpoint(out: Path, step: int, payload: dict[str, Any], keep: int) -> None:
    """``out/step_XXXXXXXX.pt``, keeping the newest ``keep`` of them (0: none is written)."""
    if keep <= 0:
        return
    save_checkpoint(out / f"step_{step:08d}.pt", payload)
    for path in sorted(out.glob("step_*.pt"))[:-keep]:
        path.unlink(missing_ok=True)


def _os_error(err: BaseException | None) -> OSError | None:
    """The OSError behind ``err``: torch.save reports a failed write (disk full) as a
    RuntimeError whose context is the OSError."""
    for _ in range(8):
        if err is None or isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises:
        NMTError: the file is missing, truncated/corrupt (the zip records' CRC-32s are
            checked), holds objects other than plain data (a pickle that would run code is
            refused before anything runs), or is not a checkpoint of this toolkit.
    """
    path = Path(path)
    if not path.is_file():
        raise NMTError(f"checkpoint {path} does not exist: check the path or the run folder")
    _verify_checksums(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter from foreign files
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):
            raise NMTError(
                f"checkpoint {path} contains objects other than tensors and plain data and was "
                "refused for safety: only load checkpoints written by nmt-train"
            ) from None
        raise _damaged(path, err) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise _damaged(path, err) from None
    if not isinstance(payload, dict) or "model" not in payload or "format_version" not in payload:
        raise NMTError(f"{path} is not an nmt checkpoint (no 'model'/'format_version' entry)")
    if not isinstance(payload["format_version"], int) or not isinstance(payload["model"], dict):
        raise NMTError(f"{path} is not an nmt checkpoint (malformed 'model'/'format_version')")
    if payload["format_version"] > FORMAT_VERSION:
        raise NMTError(
            f"checkpoint {path} has format_version {payload['format_version']}, newer than this "
            f"nmt ({FORMAT_VERSION}): upgrade nmt"
        )
    return payload


def _verify_checksums(path: Path) -> None:
    """Check the CRC-32 of every record of a zip-format checkpoint (what ``torch.save``
    writes): ``torch.load`` itself does not, so a flipped bit would load silently.
    Files in torch's legacy (non-zip) format have no checksums and are not checked."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as err:
        raise _damaged(path, err) from None
    if bad is not None:
        raise NMTError(
            f"checkpoint {path} is corrupt (checksum mismatch in {bad}): use another checkpoint "
            "(e.g. last.pt or best.pt of the same run)"
        )


def _damaged(path: Path, err: BaseException) -> NMTError:
    """The error for a checkpoint that cannot be read, in our words (torch's and zipfile's
    texts, e.g. "PytorchStreamReader failed reading zip archive", mean nothing to users)."""
    if isinstance(err, PermissionError) or (isinstance(err, OSError) and err.errno == errno.EIO):
        # The file system refused (permissions, a failing disk): the bytes may well be fine.
        return NMTError(f"cannot read checkpoint {path} ({err.strerror}): check the file")
    try:
        size = f" ({path.stat().st_size} bytes)"
    except OSError:
        size = ""
    return NMTError(
        f"checkpoint {path}{size} is incomplete or corrupt (cut short, damaged, or not a "
        "checkpoint at all): use another checkpoint (e.g. last.pt or best.pt of the same run)"
    )


# --- RNG state ---------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (and CUDA) generator states as weights_only-safe data."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
