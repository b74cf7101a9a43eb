"""Where the shipped configs and data live, in a source checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

_PKG = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"none of {[str(c) for c in candidates]} exists; is the package installed correctly?")


def config_dir() -> Path:
    """configs/ at the repository root (editable install) or mdlm_dna/configs (wheel)."""
    return _first_existing(_PKG.parent / "configs", _PKG / "configs")


def data_dir() -> Path:
    """data/ at the repository root (editable install) or mdlm_dna/data_files (wheel)."""
    return _first_existing(_PKG.parent / "data", _PKG / "data_files")


def data_file(name: str) -> str:
    path = data_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"shipped data file {name!r} not found in {data_dir()}")
    return str(path)


def command_help(name: str) -> str:
    """``--help`` of ``python -m mdlm_dna.NAME``, built from the comments of ``configs/NAME.yaml``."""
    from mdlm_dna.config_docs import help_text  # lazy: only --help needs it

    return help_text(name)


def register_resolvers() -> None:
    """``${data_file:NAME}`` in configs points at a file shipped with the package; ``${command_help:NAME}``
    is a command's help text (each command YAML sets ``hydra.help.template`` to it)."""
    if not OmegaConf.has_resolver("data_file"):
        OmegaConf.register_new_resolver("data_file", data_file)
    if not OmegaConf.has_resolver("command_help"):
        OmegaConf.register_new_resolver("command_help", command_help)
