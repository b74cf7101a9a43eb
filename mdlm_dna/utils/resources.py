"""Where the shipped configs and data live, in a source checkout or an installed wheel."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]  # the mdlm_dna package folder


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


def package_version() -> str:
    """The installed package's version (recorded in every export); ``0+unknown`` for a source tree never installed."""
    try:
        return version("mdlm-dna")
    except PackageNotFoundError:
        return "0+unknown"
