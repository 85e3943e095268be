"""User-facing errors: one clear sentence, no traceback."""

from __future__ import annotations


class NMTError(Exception):
    """An expected mistake (bad file, bad config, missing data) explained in one sentence.

    Entry points catch it, print ``nmt: error: <message>`` on stderr and exit with code 2.
    """


class ConfigError(NMTError):
    """An impossible or inconsistent configuration."""


class DataError(NMTError):
    """A corpus or file that cannot be read as asked."""


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an exception's text (at most ``limit`` characters), or its type."""
    text = str(err).strip().splitlines()
    return text[0][:limit] if text else type(err).__name__
