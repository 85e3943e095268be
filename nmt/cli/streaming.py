"""Line-by-line translation for ``nmt-translate --interactive`` (the default on a terminal).

Each input line is read as soon as its newline arrives, translated alone, and its output rows
are written and flushed before the next line is read: a producer that waits for each answer
before writing the next line (a terminal, a co-process, a pipe in a script) gets it at once.
Files given with ``-o`` or ``--alignments FILE`` are written through a temporary renamed at
the end (:func:`nmt.outputs.replacing`), as in batch mode: never a half-written file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from nmt.cli.translate_rows import APPEND, line_rows
from nmt.errors import DataError
from nmt.outputs import replacing
from nmt.search.translator import Translation, Translator

RowWriter = Callable[[list[str]], None]
# (0-based line number, input line) -> (output rows, alignment rows for a separate file)
LineTranslator = Callable[[int, str], tuple[list[str], list[str]]]


def stdin_is_terminal() -> bool:
    """True when a person types the input (no ``-i``, stdin a terminal)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):  # closed, or replaced by a test runner
        return False


def incoming_lines(path: str | None) -> Iterator[str]:
    """The lines of ``path`` (stdin when None), each as soon as it is complete, without its
    newline.

    Raises:
        DataError: a line that holds NUL bytes or is not UTF-8 (naming its number).
    """
    name = path or "stdin"
    with contextlib.ExitStack() as stack:
        stream: BinaryIO
        if path is None:
            stream = sys.stdin.buffer
        else:
            try:
                stream = stack.enter_context(open(path, "rb"))  # noqa: SIM115 (closed by the stack)
            except OSError as err:
                raise DataError(f"cannot read input file {path}: {err.strerror}") from None
        for number, raw in enumerate(iter(stream.readline, b""), start=1):
            yield _decode_line(raw, name, number)


def _decode_line(raw: bytes, name: str, number: int) -> str:
    if b"\x00" in raw:
        raise DataError(f"input {name} line {number} holds NUL bytes: pass UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(
            f"input {name} line {number} is not UTF-8 text: convert it to UTF-8"
        ) from None
    return text.removesuffix("\n").rstrip("\r")


class ReaderLeft(Exception):
    """The reader of stdout went away (``| head``): not an error, the translation just ends."""


@contextlib.contextmanager
def row_writer(path: str | None) -> Iterator[RowWriter]:
    """A function writing rows (one line each) to ``path`` (stdout when None), flushed at once.

    Raises (from the function):
        ReaderLeft: stdout's reader left; stdout now points at /dev/null, so the
            interpreter's last flush does not complain either.
    """
    if path is None:
        yield _write_stdout
        return
    with replacing(Path(path)) as handle:

        def write(rows: list[str]) -> None:
            handle.write("".join(row + "\n" for row in rows).encode("utf-8"))
            handle.flush()

        yield write


def _write_stdout(rows: list[str]) -> None:
    try:
        sys.stdout.write("".join(row + "\n" for row in rows))
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise ReaderLeft from None


def stream_translations(
    lines: Iterator[str],
    translate_line: LineTranslator,
    output: str | None,
    alignments_file: str | None,
) -> int:
    """Translate ``lines`` one at a time, writing (and flushing) each one's rows before the
    next line is read; alignment rows go to ``alignments_file`` when given. Returns the
    number of lines translated (up to the one stdout's reader left at)."""
    count = 0
    with contextlib.ExitStack() as stack:
        write = stack.enter_context(row_writer(output))
        write_links = stack.enter_context(row_writer(alignments_file)) if alignments_file else None
        try:
            for position, line in enumerate(lines):
                rows, links = translate_line(position, line)
                if write_links is not None:
                    write_links(links)
                write(rows)
                count += 1
        except ReaderLeft:
            pass
    return count


@dataclass
class Done:
    """What a translation pass did: lines, best-translation tokens, seconds spent
    translating, and the first ``--plot-count`` lines with their translations (attention)."""

    lines: int = 0
    tokens: int = 0
    seconds: float = 0.0
    plot_lines: list[str] = field(default_factory=list)
    plot_results: list[list[Translation]] = field(default_factory=list)


def translate_streaming(args: argparse.Namespace, translator: Translator) -> Done:
    """Each line translated as it arrives, its rows flushed before the next is read."""
    done = Done()
    if args.input is None and stdin_is_terminal() and not args.quiet:
        print("nmt: ready: type a sentence and press Enter (Ctrl-D ends)", file=sys.stderr)

    def translate_line(position: int, line: str) -> tuple[list[str], list[str]]:
        plot = bool(args.attention_plot) and position < args.plot_count
        start = time.perf_counter()
        with torch.inference_mode():
            result = translator.translate_nbest(
                [line], bool(args.alignments) or plot, first_line=position + 1
            )[0]
        done.seconds += time.perf_counter() - start
        done.tokens += len(result[0].tokens) if result else 0
        if plot:
            done.plot_lines.append(line)
            done.plot_results.append(result)
        return line_rows(translator, position, line, result, translator.cfg.n_best, args.alignments)

    links_file = args.alignments if args.alignments not in (None, APPEND) else None
    done.lines = stream_translations(
        incoming_lines(args.input), translate_line, args.output, links_file
    )
    return done
