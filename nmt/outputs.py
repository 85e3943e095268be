"""Writing what a command produces without ever losing what was there.

Two rules, shared by every command that writes files (translations, n-best lists, evaluation
files, averaged checkpoints, plots, prepared data):

1. Check the destination *before* any work: a missing or read-only folder, a folder where a
   file is expected, or an output that is one of the inputs is one clear line at once, not a
   traceback after a whole translation.
2. Write through a temporary file in the destination's folder and rename it over the target
   at the end, so an interrupted or failed command leaves the previous file intact (never a
   half-written or emptied one) and no temporary behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from nmt.errors import NMTError


def check_output_file(path: str | Path, option: str, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse (one line naming ``option``) an output file that cannot be written or that is
    one of ``inputs`` (also through a symlink or another spelling of the path)."""
    target = Path(path)
    if target.is_dir():
        raise NMTError(f"{option} {target} is a folder: give the path of a file to write")
    for source in inputs:
        if _same_file(target, Path(source)):
            raise NMTError(
                f"{option} {target} is the input file {source}: writing it would replace the "
                "input; choose another output file"
            )
    _check_writable_folder(target.parent, option, target)
    return target


def check_output_folder(path: str | Path, option: str) -> Path:
    """Refuse (one line naming ``option``) a folder that is a file, or that cannot be created
    or written. Nothing is created here."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NMTError(f"{option} {folder} is a file, not a folder: give a folder path")
    missing = missing_folders(folder)
    existing = missing[0].parent if missing else folder  # where the first one would be made
    if not existing.is_dir():
        raise NMTError(f"{option} {folder}: {existing} is a file, so the folder cannot be made")
    _check_writable_folder(existing, option, folder)
    return folder


def missing_folders(path: str | Path) -> list[Path]:
    """The folders ``path.mkdir(parents=True)`` would create, outermost first."""
    folder, missing = Path(path).absolute(), []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_writable_folder(folder: Path, option: str, target: Path) -> None:
    if not folder.is_dir():
        raise NMTError(
            f"{option} {target}: folder {folder} does not exist; create it or choose another path"
        )
    try:  # the real test: permissions, read-only file systems and root all answer truthfully
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise NMTError(
            f"{option} {target}: cannot write in folder {folder} ({err.strerror}); "
            "choose another path"
        ) from None


@contextmanager
def replacing(path: str | Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Yield a binary file opened on a temporary beside ``path`` (``.name`` is its path);
    when the block succeeds the file is flushed, fsync'ed and renamed over ``path`` in one
    step; when it fails the temporary is removed and ``path`` is untouched. This is the
    toolkit's one atomic-write helper (checkpoints, downloads, outputs)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.raw.name = tmp_name  # type: ignore[attr-defined]  # the path, not the fd number
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)  # no-op after a successful rename


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes through a temporary file in the same folder (made if missing), rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str, what: str = "output file") -> None:
    """:func:`write_atomic` of UTF-8 text; a failed write (disk full) is one line naming
    the file, and the previous file is kept."""
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as err:
        raise NMTError(
            f"cannot write {what} {path} ({err.strerror or err}): the previous file, if any, "
            "is unchanged; free space or choose another path"
        ) from None
