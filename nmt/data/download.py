"""Verified, atomic downloads, and a local mirror folder that replaces the network.

``fetch`` returns a path to a file whose SHA-256 matches the expected one, or raises
:class:`~nmt.errors.DataError`. A download goes to a temporary file in the target folder,
is hashed while it streams, fsync'ed, and only then renamed into place: a broken, partial or
mismatching download never sits where a good file is expected.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from nmt.errors import DataError
from nmt.outputs import replacing

MIRROR_ENV = "NMT_DATA_MIRROR"
CHUNK = 1 << 20
TIMEOUT_S = 60.0
RETRY_WAIT_S = 1.0


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_mirror(mirror: str | Path | None) -> Path | None:
    """``mirror`` if given, else ``$NMT_DATA_MIRROR``; None when neither is set.

    Raises:
        DataError: the folder does not exist.
    """
    source = "data.mirror"
    if not mirror:
        mirror, source = os.environ.get(MIRROR_ENV) or None, MIRROR_ENV
    if not mirror:
        return None
    path = Path(mirror).expanduser()
    if not path.is_dir():
        raise DataError(
            f"data mirror folder {path} (from {source}) does not exist: point {source} at a "
            "folder laid out like the data mirror (multi30k/, tatoeba/, tinyshakespeare/)"
        )
    return path


def fetch(
    relpath: str,
    url: str,
    sha256: str,
    cache_dir: str | Path,
    mirror: str | Path | None = None,
    download: Callable[[Path], None] | None = None,
    kind: str = "file",
) -> Path:
    """A verified local copy of ``url``.

    Args:
        relpath: path under the mirror and under ``<cache_dir>/downloads`` (``multi30k/val.en.gz``).
        sha256: expected hex digest of the file.
        mirror: folder replacing the network (default ``$NMT_DATA_MIRROR``); its files are
            verified and copied into the cache (never modified), so what was prepared from
            a mirror stays usable without it. A verified cached copy is used first.
        download: writes the file to the path it is given, instead of fetching ``url`` over
            HTTP (e.g. ``pip download`` for a wheel); the result is verified all the same.
        kind: what the file is, in messages ("file", "wheel").
    """
    mirror_dir = resolve_mirror(mirror)
    target = Path(cache_dir) / "downloads" / relpath
    if target.is_file():
        if sha256_file(target) == sha256:
            return target
        target.unlink()  # a stale or damaged copy is never trusted; fetch again
    target.parent.mkdir(parents=True, exist_ok=True)
    if mirror_dir is not None:
        _copy_from_mirror(mirror_dir, relpath, url, target, sha256, kind)
        return target
    if download is not None:
        _download_with(download, target, sha256, kind)
        return target
    try:
        _download(url, target, sha256, relpath)
    except _Transient:
        time.sleep(RETRY_WAIT_S)
        try:
            _download(url, target, sha256, relpath)
        except _Transient as err:
            raise DataError(
                f"could not download {url} ({err}); set {MIRROR_ENV}=/path/to/mirror "
                f"or data.mirror=... to a folder holding {relpath}"
            ) from None
    return target


def _copy_from_mirror(
    mirror_dir: Path, relpath: str, url: str, target: Path, sha256: str, kind: str
) -> None:
    """Copy ``mirror_dir/relpath`` to ``target``, hashing while copying; renamed into place
    only when the hash matches."""
    source = mirror_dir / relpath
    if not source.is_file():
        raise DataError(
            f"data mirror {mirror_dir} has no {relpath}: copy the {kind} there (from {url}) "
            f"or unset data.mirror/{MIRROR_ENV} to download it"
        )
    digest = hashlib.sha256()
    with replacing(target) as dst, open(source, "rb") as src:
        for block in iter(lambda: src.read(CHUNK), b""):
            digest.update(block)
            dst.write(block)
        if digest.hexdigest() != sha256:
            raise DataError(
                f"mirror {kind} {source} has SHA-256 {digest.hexdigest()[:12]}..., expected "
                f"{sha256[:12]}...: replace it with the published {kind}"
            )


def _download_with(download: Callable[[Path], None], target: Path, sha256: str, kind: str) -> None:
    """``download`` writes a temporary file beside ``target``; verified, then renamed."""
    with replacing(target, suffix=".part") as f:
        download(Path(f.name))  # writes the temporary by its name
        got = sha256_file(f.name)
        if got != sha256:
            raise DataError(
                f"downloaded {kind} {target.name} has SHA-256 {got[:12]}..., expected "
                f"{sha256[:12]}...: it changed upstream or the transfer was corrupted; use a "
                f"mirror ({MIRROR_ENV})"
            )


class _Transient(Exception):
    """A network failure worth one retry."""


def _download(url: str, target: Path, sha256: str, relpath: str) -> None:
    digest = hashlib.sha256()
    with replacing(target, suffix=".part") as out:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                expected = response.headers.get("Content-Length")
                received = 0
                for block in iter(lambda: response.read(CHUNK), b""):
                    digest.update(block)
                    out.write(block)
                    received += len(block)
            # A connection that closes early just ends the reads: compare the length.
            if expected and expected.isdigit() and received < int(expected):
                raise _Transient(f"transfer cut after {received} of {expected} bytes")
        except urllib.error.HTTPError as err:
            if err.code >= 500 or err.code == 429:
                raise _Transient(f"HTTP {err.code}") from err
            raise DataError(
                f"could not download {url} (HTTP {err.code} {err.reason}); set {MIRROR_ENV}"
                f"=/path/to/mirror or data.mirror=... to a folder holding {relpath}"
            ) from None
        except (
            TimeoutError,
            urllib.error.URLError,
            ConnectionError,
            http.client.HTTPException,
        ) as err:
            raise _Transient(str(getattr(err, "reason", err))) from err
        got = digest.hexdigest()
        if got != sha256:
            raise DataError(
                f"download of {url} has SHA-256 {got[:12]}..., expected {sha256[:12]}...: the file "
                f"changed upstream or the transfer was corrupted; use a mirror ({MIRROR_ENV})"
            )
