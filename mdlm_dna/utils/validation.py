"""Types with ranges for every command's config and every public function's arguments: one mechanism.

A command declares its keys once, as a pydantic model whose fields carry the type and the range; its YAML file
under ``configs/`` keeps the defaults and the comments users read. :func:`parse_config` checks a Hydra config
against the model before anything runs and turns the first violation into one :class:`ConfigError` line that
names the key, the value and what it must be::

    class ScoreConfig(CommandConfig):
        ckpt: Required
        t_samples: PositiveInt = 16

    cfg = parse_config(cfg, ScoreConfig)        # ScoreConfig(ckpt='ecoli', t_samples=16, ...)

Library functions get the same checks from :func:`checked` (``DiffusionLM.score(batch_size=-1)`` is a
``ConfigError`` naming ``batch_size``)::

    @checked
    def score(self, seqs, batch_size: PositiveInt = 64): ...

Models forbid keys they do not declare, so a new YAML key without a type fails the tests
(``tests/test_validation.py`` checks every command's YAML against its model).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, validate_call

from mdlm_dna.utils.errors import ConfigError

T = TypeVar("T", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("must be a number, not true/false")
    return v


def _not_missing(v: Any) -> Any:
    if v is None or (isinstance(v, str) and v.strip() in ("", "???")):
        raise ValueError("is required")
    return v


def _finite(v: Any) -> Any:
    """NaN and infinity (also as text) are refused before any range check, whose message would mislead."""
    if isinstance(v, bool):
        raise ValueError("must be a number, not true/false")
    probe = v
    if isinstance(v, str):
        try:
            probe = float(v)
        except ValueError:
            return v
    if isinstance(probe, float) and not math.isfinite(probe):
        raise ValueError("must be a finite number")
    return v


Int = Annotated[int, BeforeValidator(_not_bool)]
PositiveInt = Annotated[int, BeforeValidator(_not_bool), Field(gt=0)]
NonNegativeInt = Annotated[int, BeforeValidator(_not_bool), Field(ge=0)]
Float = Annotated[float, BeforeValidator(_finite), Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, BeforeValidator(_finite), Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, BeforeValidator(_finite), Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, BeforeValidator(_finite), Field(ge=0, le=1, allow_inf_nan=False)]
Fraction = Annotated[float, BeforeValidator(_finite), Field(gt=0, lt=1, allow_inf_nan=False)]


def _steps_or_unlimited(v: int) -> int:
    if v == 0 or v < -1:
        raise ValueError("must be a positive integer, or -1 for no limit")
    return v


StepsOrUnlimited = Annotated[int, BeforeValidator(_not_bool), AfterValidator(_steps_or_unlimited)]
"""A step or epoch limit: a positive integer, or -1 for none (0 would train nothing)."""
Seed = Annotated[int, BeforeValidator(_not_bool), Field(ge=0, lt=2**32)]
"""A random seed as ``lightning.seed_everything`` takes it: 0 <= seed < 2**32."""
Required = Annotated[str, BeforeValidator(_not_missing)]
"""A required text value (``???`` in the YAML): a path, a model source."""


def _device(v: Any) -> Any:
    """``auto``, or a device torch can parse and this machine has: a typo or a missing GPU fails before any work."""
    if not isinstance(v, str) or v == "auto":
        return v
    import torch

    try:
        dev = torch.device(v)
    except (RuntimeError, ValueError):
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError("no CUDA GPU is visible on this machine; use device=cpu (or auto)")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"this machine has {count} CUDA GPU(s): use cuda:0..cuda:{count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS (Apple GPU) is not available on this machine; use device=cpu (or auto)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
    return v


Device = Annotated[str, BeforeValidator(_device)]
"""A torch device for a command's ``device`` key: auto | cpu | cuda | cuda:N | mps, checked against this machine."""

NonEmptyStr = Annotated[str, AfterValidator(lambda v: _not_missing(v))]


class CommandConfig(BaseModel):
    """Base of a command's config model: unknown keys are errors, numbers given for text keys become text."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, validate_default=True)


class ModelCommandConfig(CommandConfig):
    """Base of a command that loads one model: the four keys every such command has, typed once."""

    ckpt: Required
    use_ema: bool = True
    device: Device = "auto"
    cache_dir: str | None = None


def from_pretrained_kwargs(cfg: Any) -> dict[str, Any]:
    """What ``DiffusionLM.from_pretrained(cfg.ckpt, **...)`` takes from a ModelCommandConfig's keys (``cfg``: the
    command's DictConfig or the model itself)."""
    return {"use_ema": bool(cfg.use_ema), "device": str(cfg.device), "cache_dir": getattr(cfg, "cache_dir", None)}


class Section(BaseModel):
    """A config group (``data``, ``optim``, ...) of which only some keys are checked; the rest pass through."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


def _what(error: Mapping[str, Any]) -> str:
    """pydantic's message as the end of 'key=value: must ...'."""
    msg = str(error.get("msg", "is invalid"))
    if msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    ctx = error.get("ctx") or {}
    kind = error.get("type", "")
    if kind == "greater_than":
        return f"must be > {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}"
    if kind == "less_than":
        return f"must be < {ctx.get('lt')}"
    if kind == "less_than_equal":
        return f"must be <= {ctx.get('le')}"
    if kind == "sequence_str":
        return "pass a list of sequences, not one string"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a setting of this command (check the spelling)"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if msg.startswith("Input should be"):
        return "must be" + msg.removeprefix("Input should be")
    return msg


def _key(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if not isinstance(part, int) or len(loc) == 1)


def describe(error: ValidationError, cli: bool = True, names: list[str] | None = None) -> str:
    """One line for the first violation: ``key=value: must be ...`` (with how to set it on the command line)."""
    first = error.errors()[0]
    loc = tuple(first.get("loc", ()))
    if names is not None and loc and isinstance(loc[0], int) and loc[0] < len(names):
        loc = (names[loc[0]], *loc[1:])
    if not loc:  # a rule across keys (a model validator): its message names them
        more = len(error.errors()) - 1
        return _what(first) + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
    key = _key(loc)
    value = first.get("input")
    shown = "" if first.get("type") == "missing" else f"={value!r}"
    line = f"{key}{shown}: {_what(first)}"
    if cli and first.get("type") != "extra_forbidden":
        line += f"; set it on the command line ({key}=...)"
    more = len(error.errors()) - 1
    if more:
        line += f" (and {more} more problem{'s' if more > 1 else ''})"
    return line


def parse_config(cfg: Any, model: type[T]) -> T:
    """A Hydra ``DictConfig`` (or a plain dict) checked against ``model``; a ConfigError names the first bad key."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    else:
        data = dict(cfg)
    data = {k: v for k, v in data.items() if k != "hydra"}
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e)) from None


def checked(func: F) -> F:
    """Check a function's annotated arguments (pydantic ``validate_call``); a bad one is a ConfigError naming it.

    Unannotated arguments pass unchanged; the return value is not checked."""
    validated = validate_call(config=ConfigDict(arbitrary_types_allowed=True, coerce_numbers_to_str=False))(func)
    names = [p for p in inspect.signature(func).parameters]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return validated(*args, **kwargs)
        except ValidationError as e:
            if e.title not in (func.__name__, func.__qualname__):
                raise  # raised inside the function by other pydantic code: not an argument error
            raise ConfigError(f"{func.__qualname__}(): {describe(e, cli=False, names=names)}") from None

    return wrapper  # type: ignore[return-value]
