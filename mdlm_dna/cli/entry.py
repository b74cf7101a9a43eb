"""What every command line shares: user errors as one ``error:`` line (exit status 2), start-up config checks.

A Hydra entry point gets both with one decorator, placed *under* ``@hydra.main`` (Hydra catches
exceptions itself and prints a traceback, so ours must be caught inside the task function)::

    @hydra.main(config_path=..., config_name="pretrain", version_base="1.3")
    @user_errors
    def main(cfg): ...

A user error is a :class:`~mdlm_dna.utils.errors.UserError` (raised by our validation code) or a known
foreign exception that can only come from the input: a missing file, a full or read-only disk, a
missing mandatory config value. Everything else is a bug and keeps its traceback, and so does
everything under ``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mdlm_dna.utils.errors import ConfigError, UserError

USER_ERROR_EXIT_CODE = 2
_STARTED = time.time()  # what Hydra made for this process is not older than this
F = TypeVar("F", bound=Callable[..., Any])


def full_error() -> bool:
    """``HYDRA_FULL_ERROR=1``: the user asked for complete tracebacks."""
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0")


def _foreign_user_error_types() -> tuple[type[BaseException], ...]:
    """Our modules' input errors that predate :class:`UserError` (imported lazily: this module stays light)."""
    types: list[type[BaseException]] = []
    for module, name in (
        ("mdlm_dna.data.tokenizers", "TokenizerError"),
        ("mdlm_dna.data.text", "TextDataError"),
        ("mdlm_dna.artifacts.checkpoints", "CheckpointError"),
    ):
        mod = sys.modules.get(module)  # only if loaded: an error of a module never imported cannot have happened
        if mod is not None and isinstance(getattr(mod, name, None), type):
            types.append(getattr(mod, name))
    return tuple(types)


def _worker_message(message: str) -> str:
    """An exception re-raised from a DataLoader worker carries the worker's traceback: keep its last line."""
    if "Original Traceback" not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last else last


def user_message(e: BaseException) -> str | None:
    """The one-line message for a user error, or None when ``e`` is a bug (keep the traceback)."""
    if isinstance(e, UserError) or isinstance(e, _foreign_user_error_types()):
        return _worker_message(str(e))
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        if e.errno == errno.ENOSPC:
            return f"no space left on the device{where}; free some space or write to another folder"
        if e.errno == errno.EROFS:
            return f"read-only file system{where}; write to another folder"
        if isinstance(e, PermissionError):
            return f"permission denied{where}; check the folder's permissions or write to another folder"
        if isinstance(e, (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)):
            return f"{e.strerror}{where}" if e.filename else str(e)
        return None
    try:
        from omegaconf.errors import MissingMandatoryValue
    except ImportError:  # pragma: no cover
        return None
    if isinstance(e, MissingMandatoryValue):
        key = getattr(e, "full_key", "") or str(e).splitlines()[0]
        return f"{key} has no value: set it on the command line ({key}=...)"
    return None


def report_user_error(e: BaseException) -> int | None:
    """Print ``error: MESSAGE`` for a user error and return the exit status; None for a bug (re-raise it)."""
    message = None if full_error() else user_message(e)
    if message is None:
        return None
    print(f"error: {' '.join(message.split())}", file=sys.stderr)  # one line, also when a library's text has more
    return USER_ERROR_EXIT_CODE


def remove_empty_run_folder() -> Path | None:
    """A refused command leaves no folder behind: Hydra creates the run folder (and its log file) before the
    start-up checks run. Removed only when it holds nothing but what Hydra wrote in this process (``.hydra/``,
    ``<command>.log``); never the current folder. Returns the folder removed, if any."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        from omegaconf import OmegaConf

        hydra_cfg = HydraConfig.get()
        # a config composed in-process (tests, notebooks) has no run folder: nothing to clean
        output_dir = OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None, throw_on_missing=False)
        if output_dir is None:
            return None
        out = Path(str(output_dir))
        if not out.is_dir() or out.is_symlink() or out.resolve() == Path.cwd().resolve():
            return None
        entries = list(out.iterdir())
        ours = {".hydra", f"{hydra_cfg.job.name}.log"}
        if not entries or any(p.name not in ours or p.is_symlink() for p in entries):
            return None  # an empty folder may be the user's own; anything else is not Hydra's
        if any(p.stat().st_mtime < _STARTED - 1 for p in entries):
            return None  # older than this process: an earlier run's
        for p in entries:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        out.rmdir()
        return out
    except OSError:  # cleaning up must never hide the user's error
        return None


def user_errors(main: F) -> F:
    """Decorator for an entry point: a user error exits with status 2 and one ``error:`` line."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as e:
            status = report_user_error(e)
            if status is None:
                raise
            remove_empty_run_folder()
            sys.exit(status)

    return wrapper  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------
# start-up checks: each command's typed config model (mdlm_dna.utils.validation) is checked by parse_config


def check_infill_length(length: Any, infill_length: int) -> None:
    """``infill`` fixes the sample length: an explicit ``length`` that disagrees is an error, not overridden."""
    if length is not None and length != infill_length:
        raise ConfigError(
            f"length={length!r} but infill has {infill_length} positions: the template sets the length; "
            "drop length= or make it match"
        )


CKPT_REQUIRED = "ckpt=SOURCE is required (a shipped name, run folder, .ckpt, exported folder or Hub id)"


def command_config(name: str, cfg: Any, required: Mapping[str, str]) -> Any:
    """``cfg`` (Hydra's config, or a partial dict from Python) over the defaults of configs/<name>.yaml, so a
    notebook can pass only what it changes; each key of ``required`` left unset raises its message."""
    from omegaconf import OmegaConf

    from mdlm_dna.utils.resources import config_dir

    base = OmegaConf.load(config_dir() / f"{name}.yaml")
    base.pop("hydra", None)
    cfg = OmegaConf.merge(base, OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg)
    for key, message in required.items():
        if cfg.get(key) in (None, "", "???"):
            raise ConfigError(message)
    return cfg
