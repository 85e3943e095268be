"""nmt's log lines: one format for the console and a run's ``train.log``.

Kept apart from :mod:`nmt.train.metrics` (which needs torch) so that commands that never
train, such as ``nmt-score``, set up logging without importing torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def log_handler(target: Any) -> logging.Handler:
    """A handler in nmt's log format: to a stream (console) or, given a path, to that file
    (appended)."""
    if isinstance(target, (str, Path)):
        handler: logging.Handler = logging.FileHandler(target, encoding="utf-8")
    else:
        handler = logging.StreamHandler(target)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    return handler
