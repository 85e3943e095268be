"""Reading corpora: plain or gzip text, parallel files, TSV; UTF-8 only, CRLF tolerated.

Every failure is a :class:`~nmt.errors.DataError` naming the file (and line) and what to do.
Lines are split on ``\\n`` only (never ``str.splitlines``, which also splits on rare Unicode
separators such as U+2028 and would silently misalign parallel files).
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections import Counter
from pathlib import Path

from nmt.config_choices import BadUtf8
from nmt.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
BAD_UTF8_MODES = BadUtf8.values()  # the config's choices (nmt/config_choices.py)


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic bytes."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"data file {path} is a folder, not a file: give the file itself")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist: check the path")
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"{path} is a truncated or corrupt gzip file ({err}): download it again"
            ) from None
    return data


def decode_lines(
    data: bytes, name: str, on_bad_utf8: str = "error", stats: Counter | None = None
) -> list[str]:
    """Split UTF-8 ``data`` into lines (without ``\\n``/``\\r\\n``; a leading BOM is dropped).

    Args:
        name: shown in error messages (a path, or ``archive.zip:member``).
        on_bad_utf8: ``error`` raises naming the first bad line; ``replace`` puts U+FFFD in
            place of invalid bytes and counts the lines touched in ``stats["bad_utf8_lines"]``.
    """
    if on_bad_utf8 not in BAD_UTF8_MODES:
        raise DataError(
            f"data.on_bad_utf8={on_bad_utf8!r} is not one of {', '.join(BAD_UTF8_MODES)}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = data.count(b"\n", 0, err.start) + 1
        if on_bad_utf8 == "error":
            raise DataError(
                f"{name} line {line_no} is not valid UTF-8 (byte {data[err.start]:#04x}): "
                "convert the file to UTF-8 or set data.on_bad_utf8=replace"
            ) from None
        text, bad = _decode_replacing(data)
        if stats is not None:
            stats["bad_utf8_lines"] += bad
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another one
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _decode_replacing(data: bytes) -> tuple[str, int]:
    """Decode line by line with replacement; returns the text and the number of bad lines."""
    out, bad = [], 0
    for raw in data.split(b"\n"):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(raw.decode("utf-8", errors="replace"))
            bad += 1
    return "\n".join(out), bad


def read_lines(
    path: str | Path, on_bad_utf8: str = "error", stats: Counter | None = None
) -> list[str]:
    """All lines of a plain or gzip UTF-8 text file (gzip detected by its magic bytes)."""
    return decode_lines(read_bytes(path), str(path), on_bad_utf8, stats)


def read_parallel(
    src: str | Path, tgt: str | Path, on_bad_utf8: str = "error", stats: Counter | None = None
) -> tuple[list[str], list[str]]:
    """Two line-aligned files; unequal line counts are an error naming both files."""
    src_lines = read_lines(src, on_bad_utf8, stats)
    tgt_lines = read_lines(tgt, on_bad_utf8, stats)
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"parallel files differ in length: {src} has {len(src_lines)} lines but {tgt} has "
            f"{len(tgt_lines)}; they must be line-aligned"
        )
    return src_lines, tgt_lines


def split_tsv(lines: list[str], name: str) -> tuple[list[str], list[str]]:
    """``source<TAB>target[<TAB>more columns ignored]`` lines into two columns."""
    src, tgt = [], []
    for i, line in enumerate(lines, start=1):
        cols = line.split("\t")
        if len(cols) < 2:
            raise DataError(f"{name} line {i} has no tab: each line must be 'source<TAB>target'")
        src.append(cols[0])
        tgt.append(cols[1])
    return src, tgt


def read_tsv(
    path: str | Path, on_bad_utf8: str = "error", stats: Counter | None = None
) -> tuple[list[str], list[str]]:
    """A tab-separated file of ``source<TAB>target`` lines (plain or gzip)."""
    return split_tsv(read_lines(path, on_bad_utf8, stats), str(path))


def read_text_lines(path: str | None, what: str) -> list[str]:
    """Lines of a UTF-8 text file (or stdin when ``path`` is None), without newlines.

    Raises:
        DataError: the file is missing, unreadable, or not UTF-8 text.
    """
    try:
        if path is None:
            data = sys.stdin.buffer.read()
            name = "stdin"
        else:
            data = Path(path).read_bytes()
            name = path
    except OSError as err:
        raise DataError(f"cannot read {what} {path}: {err.strerror}") from None
    if b"\x00" in data:
        raise DataError(f"{what} {name} looks binary (NUL bytes): pass a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{what} {name} is not UTF-8 text (line {line}): convert it to UTF-8"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]
