"""Shared glue for the Hydra entry points."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from nmt.config import check_known_keys, conf_dir, register_configs
from nmt.errors import NMTError


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit (for expected user mistakes)."""
    print(f"nmt: error: {message}", file=sys.stderr)
    sys.exit(code)


def run_guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; turn an :class:`NMTError` into one line on stderr and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except NMTError as err:
        fail(str(err))
    except KeyboardInterrupt:
        fail("interrupted", code=130)


def hydra_app(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Wrap ``task(cfg)`` as a console script driven by ``conf/config.yaml``.

    The returned ``main()`` registers the typed schema, lets Hydra compose the config
    from the command line, and returns ``task``'s value (the metric, for sweepers).
    """

    @functools.wraps(task)
    def main() -> Any:
        register_configs()

        @hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
        def _entry(cfg: DictConfig) -> Any:
            run_guarded(check_known_keys, cfg)
            return run_guarded(task, cfg)

        return _entry()

    return main
