"""Shared glue for the Hydra entry points."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from nmt.config import check_known_keys, conf_dir, register_configs, unknown_key_message
from nmt.errors import NMTError, first_line
from nmt.logs import log_handler
from nmt.outputs import check_output_folder, missing_folders

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
    """One line for a Hydra/OmegaConf composition error (unknown key, wrong type, a name
    outside a key's choices, a missing value, bad override syntax, unknown group option),
    naming the key. Read from the exceptions' fields (``full_key``, the Enum of the node,
    ``override``, ``options``), not from their English text."""
    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    if isinstance(cause, OmegaConfBaseException):
        return _omegaconf_error_line(cause)
    if isinstance(err, OverrideParseException):
        return (
            f"cannot parse the override '{err.override}': check its syntax (key=value; quote "
            "values that hold special characters)"
        )
    if isinstance(err, MissingConfigException) and err.options is not None:
        group, _, option = (err.missing_cfg_file or "").rpartition("/")
        wrong = f"{group}={option}" if group else repr(err.missing_cfg_file)
        return f"{wrong} is unknown: use one of {', '.join(err.options)}"
    return first_line(err, limit=400)


def _omegaconf_error_line(err: Any) -> str:
    key = err.full_key or ""
    if isinstance(err, ConfigKeyError | ConfigAttributeError):
        return unknown_key_message(key)
    if isinstance(err, MissingMandatoryValue) and key:
        return f"config key '{key}' has no value: set {key}=VALUE"
    choices = getattr(err.child_node, "enum_type", None)
    if key and isinstance(choices, type) and issubclass(choices, Enum):
        names = ", ".join(m.name for m in choices)
        return f"{key}={err.value!r} is unknown: use one of {names}"
    lines = (err.msg or str(err)).strip().splitlines()
    first = lines[0] if lines else type(err).__name__
    return f"bad value for config key '{key}': {first}" if key else first


# --- the run folder: checked before Hydra makes it, removed again when nothing was kept ---

# Folders this process is about to create for ``hydra.run.dir`` (outermost first), set by
# RunFolderGuard before Hydra makes them: only these are ever removed again.
_created_run_folders: list[Path] = []


class RunFolderGuard(Callback):
    """Hydra callback (conf/config.yaml): before Hydra creates ``hydra.run.dir``, check that
    it can be created and written (one line otherwise), and remember which folders are new."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.run.dir)).absolute()
        try:
            check_output_folder(folder, "hydra.run.dir")
        except NMTError as err:
            fail(str(err))  # a callback's exceptions are only warned about: exit here
        _created_run_folders[:] = missing_folders(folder)


def remove_empty_created_folders() -> None:
    """Leave nothing behind that this command made and did not fill: the new folders that
    are still empty go (a training run that failed before its first checkpoint has already
    removed what it wrote: nmt.train.runfolder.remove_new_entries)."""
    for folder in reversed(_created_run_folders):  # innermost first
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    _created_run_folders.clear()


@contextlib.contextmanager
def console_logging() -> Any:
    """INFO lines of nmt's loggers on stdout for the length of a command (Hydra's own job
    logging is off: it would create a log file in every run folder, even for refused runs;
    nmt-train writes RUN/train.log itself once the run is accepted)."""
    root = logging.getLogger()
    handler = log_handler(sys.stdout)
    # Hydra's own handler (its "[HYDRA]" lines) steps aside while the command runs.
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def command_help(prog: str, doc: str) -> str:
    """``--help`` of a Hydra command: what it does, examples, and how to set its config."""
    groups = sorted(p for p in conf_dir().iterdir() if p.is_dir())
    lines = [doc.strip(), "", "Config groups (GROUP=OPTION):"]
    for group in groups:
        options = sorted(f.stem for f in group.glob("*.yaml"))
        lines.append(f"  {group.name:<11} {', '.join(options)}")
    lines += [
        "",
        "Any key can be set with KEY=VALUE (train.lr=5e-4, model.hidden_dim=512); every key",
        "and its default is in nmt/config.py. The folder of the run: hydra.run.dir=PATH.",
        f"  {prog} --cfg job     print the composed config and exit",
        f"  {prog} -m A=1,2      one run per value (Hydra multirun)",
        f"  {prog} --hydra-help  Hydra's own options",
    ]
    return "\n".join(lines)


def hydra_app(task: Callable[[DictConfig], Any], prog: str) -> Callable[[], Any]:
    """Wrap ``task(cfg)`` as the console script ``prog`` driven by ``conf/config.yaml``.

    The returned ``main()`` registers the typed schema, lets Hydra compose the config
    from the command line, and returns ``task``'s value (the metric, for sweepers).
    A configuration mistake (unknown key, wrong type, bad override) is one line on stderr
    and exit code 2, like every other user error (``HYDRA_FULL_ERROR=1`` shows Hydra's
    full report instead). ``--help`` prints the task module's docstring (what the command
    does, with examples) and the config groups. A folder Hydra created for this command is
    removed again when the command leaves it empty.
    """
    doc = sys.modules[task.__module__].__doc__ or prog

    @functools.wraps(task)
    def main() -> Any:
        if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
            print(command_help(prog, doc))
            sys.exit(0)
        register_configs()

        @hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")
        def _entry(cfg: DictConfig) -> Any:
            try:
                with console_logging():
                    run_guarded(check_known_keys, cfg)
                    try:
                        return run_guarded(task, cfg)
                    except OmegaConfBaseException as err:  # e.g. a missing value read by the task
                        fail(config_error_line(err))
            finally:
                remove_empty_created_folders()

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
            _created_run_folders.clear()
            if user_wants_full is None:
                os.environ.pop(FULL_ERROR_ENV, None)
            else:
                os.environ[FULL_ERROR_ENV] = user_wants_full

    return main
