"""What every command line shares: user errors as one ``error:`` line (exit status 2), start-up config checks.

A Hydra entry point gets both with one decorator, placed *under* ``@hydra.main`` (Hydra catches
exceptions itself and prints a traceback, so ours must be caught inside the task function)::

    @hydra.main(config_path=..., config_name="pretrain", version_base="1.3")
    @user_errors
    def main(cfg): ...

A user error is a :class:`~mdlm_dna.errors.UserError` (raised by our validation code) or a known
foreign exception that can only come from the input: a missing file, a full or read-only disk, a
missing mandatory config value. Everything else is a bug and keeps its traceback, and so does
everything under ``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mdlm_dna.errors import ConfigError, UserError

USER_ERROR_EXIT_CODE = 2
F = TypeVar("F", bound=Callable[..., Any])


def full_error() -> bool:
    """``HYDRA_FULL_ERROR=1``: the user asked for complete tracebacks."""
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0")


def _foreign_user_error_types() -> tuple[type[BaseException], ...]:
    """Our modules' input errors that predate :class:`UserError` (imported lazily: this module stays light)."""
    types: list[type[BaseException]] = []
    for module, name in (
        ("mdlm_dna.tokenizers", "TokenizerError"),
        ("mdlm_dna.data.text", "TextDataError"),
        ("mdlm_dna.checkpoints", "CheckpointError"),
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
    print(f"error: {message}", file=sys.stderr)
    return USER_ERROR_EXIT_CODE


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
            sys.exit(status)

    return wrapper  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------
# start-up checks of config values: before anything is written, naming the key


def _get(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(v: Any) -> bool:
    return _is_int(v) and v >= 1


def _non_negative_int(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _probability(v: Any) -> bool:
    return _is_number(v) and 0 <= v <= 1


def _positive_number(v: Any) -> bool:
    return _is_number(v) and v > 0


def _steps_or_unlimited(v: Any) -> bool:
    return _is_int(v) and (v >= 1 or v == -1)


def _val_interval(v: Any) -> bool:
    return v is None or _positive_int(v) or (_is_number(v) and 0 < v <= 1)


# key -> (test, what the value must be). A key absent from the config is not checked (text runs have no rc_prob).
PRETRAIN_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_is_int, "an integer"),
    "data.seq_len": (_positive_int, "a positive integer (bases or tokens per window)"),
    "data.batch_size": (_positive_int, "a positive integer"),
    "data.eval_batch_size": (lambda v: v is None or _positive_int(v), "a positive integer or null"),
    "data.global_batch_size": (lambda v: v is None or _positive_int(v), "a positive integer or null"),
    "data.num_workers": (_non_negative_int, "an integer >= 0"),
    "data.rc_prob": (_probability, "a probability in [0, 1]"),
    "data.max_n_fraction": (_probability, "a fraction in [0, 1]"),
    "data.train_samples_per_epoch": (lambda v: v is None or _positive_int(v), "a positive integer or null"),
    "data.val_max_windows": (lambda v: v is None or _positive_int(v), "a positive integer or null"),
    "data.test_max_windows": (lambda v: v is None or _positive_int(v), "a positive integer or null"),
    "optim.lr": (_positive_number, "a positive number (e.g. 3e-4)"),
    "optim.weight_decay": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "optim.warmup_steps": (_non_negative_int, "an integer >= 0"),
    "optim.min_lr_ratio": (_probability, "a fraction in [0, 1]"),
    "ema.decay": (_probability, "a number in [0, 1] (e.g. 0.9999)"),
    "eval.t_samples": (_positive_int, "a positive integer"),
    "checkpoint.every_n_train_steps": (_positive_int, "a positive integer (steps between saves of last.ckpt)"),
    "trainer.max_steps": (_steps_or_unlimited, "a positive integer, or -1 to train by epochs"),
    "trainer.val_check_interval": (_val_interval, "a positive integer (steps) or a fraction of an epoch in (0, 1]"),
    "trainer.log_every_n_steps": (_positive_int, "a positive integer"),
    "trainer.accumulate_grad_batches": (_positive_int, "a positive integer"),
}


def check_config(config: Mapping[str, Any], checks: Mapping[str, tuple[Callable[[Any], bool], str]]) -> None:
    """Raise a :class:`ConfigError` naming the first key whose value fails its check."""
    for key, (ok, want) in checks.items():
        value = _get(config, key)
        if value is _MISSING:
            continue
        if not ok(value):
            raise ConfigError(f"{key}={value!r}: must be {want}; set it on the command line ({key}=...)")


def check_pretrain_config(config: Mapping[str, Any]) -> None:
    """Start-up checks of a pretraining config (resolved to plain containers), before any file is written."""
    check_config(config, PRETRAIN_CHECKS)
    max_steps, epochs = _get(config, "trainer.max_steps"), _get(config, "trainer.max_epochs")
    if max_steps == -1 and (epochs is _MISSING or epochs in (None, -1)):
        raise ConfigError("trainer.max_steps=-1 and trainer.max_epochs is not set: the run would never end; set one")


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

    from mdlm_dna.resources import config_dir

    base = OmegaConf.load(config_dir() / f"{name}.yaml")
    base.pop("hydra", None)
    cfg = OmegaConf.merge(base, OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg)
    for key, message in required.items():
        if cfg.get(key) in (None, "", "???"):
            raise ConfigError(message)
    return cfg
