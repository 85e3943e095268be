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
