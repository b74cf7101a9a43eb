"""Output paths checked before the work: not an input, in a folder that exists and can be written, not inside a
run folder a ``pretrain`` is writing. A command that scores for an hour must not fail at the last line."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mdlm_dna.utils.errors import ConfigError, DataError
from mdlm_dna.utils.rundir import check_not_in_use

RUN_FILES = frozenset({"config.json", "config.yaml", "model.safetensors", "classifier.json", "classifier.safetensors",
                       "label_mapping.json", "metrics.json", "metrics.csv", "results.csv", "results.md", "README.md",
                       "vocab.json", "tokenizer_config.json", "special_tokens_map.json", ".lock"})
"""Files of a model or run folder its readers need (an export's own list is its manifest)."""


def _part_of(out: Path, folder: Path) -> bool:
    """Whether ``out`` is a file the model or run ``folder`` is made of: one of :data:`RUN_FILES`, a listed
    file of an export's manifest, a checkpoint, code or weights, or anything under ``checkpoints/``. An earlier
    output written there (``RUN/eval.json``, ``MODEL/variants.tsv``) is not, so a command can be run again."""
    import json

    from mdlm_dna.artifacts.export_folder import MANIFEST

    rel = out.resolve().relative_to(folder.resolve())
    if rel.name in RUN_FILES or rel.name == MANIFEST or rel.suffix in (".ckpt", ".safetensors", ".py"):
        return True
    if "checkpoints" in rel.parts[:-1]:
        return True
    try:
        listed = json.loads((folder / MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return False
    return str(rel) in {str(f) for f in listed}


def check_output_file(path: str | os.PathLike, key: str = "out", inputs: Iterable[str | os.PathLike] = (),
                      create_folder: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` if a file can be written there; else a ConfigError naming ``key`` and what is wrong.

    >>> check_output_file("scores.tsv", inputs=["seqs.fa"])
    PosixPath('scores.tsv')
    >>> check_output_file("seqs.fa", inputs=["seqs.fa"])           # doctest: +ELLIPSIS
    Traceback (most recent call last):
    mdlm_dna.utils.errors.ConfigError: out=seqs.fa: ...
    >>> check_output_file("run/classifier.json", inputs=["run"])   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    mdlm_dna.utils.errors.ConfigError: out=run/classifier.json: ...

    ``suffixes``: the output's allowed endings (``(".tsv", ".tsv.gz")``); another one is an error, so a table is
    not written under a ``.bw`` or ``.vcf`` name.
    """
    out = Path(path).expanduser()
    for given in inputs:
        src = Path(given).expanduser()
        if out.absolute() == src.absolute() or (out.exists() and src.exists() and out.samefile(src)):
            raise ConfigError(f"{key}={path}: is the input file; choose another output name")
        if src.is_dir() and out.is_file() and out.resolve().is_relative_to(src.resolve()) and _part_of(out, src):
            raise ConfigError(f"{key}={path}: is a file of the input folder {given} (a model or run it reads); "
                              f"choose another output name")
    if out.is_dir():
        raise ConfigError(f"{key}={path}: is a folder; give a file name")
    if suffixes and not str(path).lower().endswith(tuple(suffixes)):
        raise ConfigError(f"{key}={path}: must end with {' or '.join(suffixes)} (the file's format follows its name)")
    folder = out.absolute().parent
    check_not_in_use(out)
    if not folder.exists():
        if not create_folder:
            raise ConfigError(f"{key}={path}: the folder {folder} does not exist; create it or choose another")
        probe = folder
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}={path}: cannot create the folder {folder} ({probe} is not writable)")
        return out
    if not folder.is_dir():
        raise ConfigError(f"{key}={path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(f"{key}={path}: not writable (permissions of {folder}); write somewhere else")
    return out


def local_path(source: str | os.PathLike) -> list[Path]:
    """``[source]`` when it is a file or folder here (a model or run a command reads), else ``[]`` (a shipped
    name, a Hub id): the inputs :func:`check_output_file` protects.

    >>> local_path("ecoli")          # a shipped name, not a path here
    []
    """
    path = Path(source).expanduser()
    return [path] if path.exists() else []


def check_input_files(cfg: Any, *keys: str) -> None:
    """Each of ``cfg``'s ``keys`` names an existing file, checked before any model is loaded."""
    for key in keys:
        if not Path(getattr(cfg, key)).is_file():
            raise DataError(f"{key}={getattr(cfg, key)}: no such file")
