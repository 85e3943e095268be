"""Shared glue for the Hydra entry points."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from nmt.config import check_known_keys, conf_dir, register_configs
from nmt.errors import NMTError

FULL_ERROR_ENV = "HYDRA_FULL_ERROR"


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


def config_error_line(err: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error (unknown key, wrong type, bad
    override syntax, unknown group option), naming the key."""
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None) or ""
        first = (getattr(cause, "msg", None) or str(cause)).strip().splitlines()[0]
        if isinstance(cause, ConfigKeyError | AttributeError) and " not in " in first:
            return f"unknown config key '{key}': check its spelling (see nmt/config.py)"
        return f"bad value for config key '{key}': {first}" if key else first
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = lines[0]
    if text.startswith("Error parsing override"):
        text += ": check its syntax (key=value; quote values that hold special characters)"
    if "Available options in" in str(err):  # an unknown group option: list the real ones
        options = []
        for line in lines[lines.index(next(x for x in lines if "Available options" in x)) + 1 :]:
            if line.startswith("Config search path"):
                break
            options.append(line)
        text += f"; available: {', '.join(options)}"
    return text


def hydra_app(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """Wrap ``task(cfg)`` as a console script driven by ``conf/config.yaml``.

    The returned ``main()`` registers the typed schema, lets Hydra compose the config
    from the command line, and returns ``task``'s value (the metric, for sweepers).
    A configuration mistake (unknown key, wrong type, bad override) is one line on stderr
    and exit code 2, like every other user error (``HYDRA_FULL_ERROR=1`` shows Hydra's
    full report instead).
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    @functools.wraps(task)
    def main() -> Any:
        register_configs()

        @hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
        def _entry(cfg: DictConfig) -> Any:
            run_guarded(check_known_keys, cfg)
            try:
                return run_guarded(task, cfg)
            except OmegaConfBaseException as err:  # e.g. a missing value read by the task
                fail(config_error_line(err))

        user_wants_full = os.environ.get(FULL_ERROR_ENV)
        # Let composition errors reach us instead of Hydra's multi-line report.
        os.environ[FULL_ERROR_ENV] = "1"
        try:
            return _entry()
        except (HydraException, OmegaConfBaseException) as err:
            if user_wants_full:
                raise
            fail(config_error_line(err))
        finally:
            if user_wants_full is None:
                os.environ.pop(FULL_ERROR_ENV, None)
            else:
                os.environ[FULL_ERROR_ENV] = user_wants_full

    return main
