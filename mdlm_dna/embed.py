"""Embed sequences with a model's backbone: FASTA or table in, a NumPy array out.

    python -m mdlm_dna.embed ckpt=ecoli input=seqs.fa out=emb.npy                 # [N, d_model], mean pooling
    python -m mdlm_dna.embed ckpt=ecoli input=seqs.fa pooling=center:100 rc=mean layer=-2
    python -m mdlm_dna.embed ckpt=caduceus-folder input=seqs.fa pooling=null       # per position, .npz

The output is written exactly where ``out`` says (a name without extension gets .npy, or .npz per position), and
the names go to ``<out>.names.txt``; both are checked before the model is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import hydra
import numpy as np
from omegaconf import DictConfig

from mdlm_dna.analysis.embedding import parse_pooling
from mdlm_dna.api import DiffusionLM
from mdlm_dna.cli.entry import command_config, user_errors
from mdlm_dna.data.seqio import read_sequences
from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.validation import (
    Int,
    ModelCommandConfig,
    PositiveInt,
    Required,
    from_pretrained_kwargs,
    parse_config,
)

register_resolvers()
INPUT_SUFFIXES = (".gz", ".fa", ".fasta", ".fna", ".csv", ".tsv", ".txt")


class EmbedConfig(ModelCommandConfig):
    """configs/embed.yaml's keys, typed (the YAML holds the defaults and the documentation)."""

    input: Required
    column: str = "sequence"
    out: str | None = None
    pooling: str | None = "mean"
    layer: Int | None = None
    rc: Literal["mean"] | None = None
    batch_size: PositiveInt = 64
    progress: bool | None = None


def output_path(input_path: str, out: str | None, per_position: bool) -> Path:
    """Where the array goes: ``out`` (a missing extension added), else ``<input without its suffixes>.embeddings``.

    ``rep.1.fa`` and ``rep.2.fa`` give ``rep.1.embeddings.npy`` and ``rep.2.embeddings.npy``; a wrong extension
    (``.npy`` for per-position features, which need one array per sequence) is a ConfigError."""
    suffix = ".npz" if per_position else ".npy"
    if out is None:
        name = Path(input_path).name
        for s in INPUT_SUFFIXES:
            name = name.removesuffix(s)
        return Path(input_path).with_name(f"{name}.embeddings{suffix}")
    path = Path(out).expanduser()
    if path.suffix in (".npy", ".npz") and path.suffix != suffix:
        raise ConfigError(f"out={out}: pooling={'null' if per_position else 'set'} writes {suffix} "
                          f"({'one array per sequence' if per_position else 'one [N, d_model] array'}); "
                          f"name it {path.with_suffix(suffix).name}")
    return path if path.suffix == suffix else path.with_name(path.name + suffix)


def check_output(out: Path, input_path: str) -> None:
    """Before any work: not the input, in an existing writable folder, not a folder itself."""
    if out.resolve() == Path(input_path).expanduser().resolve():
        raise ConfigError(f"out={out}: is the input file; choose another name")
    if out.is_dir():
        raise ConfigError(f"out={out}: is a folder; give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"out={out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"out={out}: folder {parent} is not writable")


def embed(cfg: DictConfig | dict[str, Any]) -> Path:
    usage = "python -m mdlm_dna.embed ckpt=MODEL input=SEQS.fa"
    cfg = command_config("embed", cfg, {key: f"{key}= is required: {usage}" for key in ("ckpt", "input")})
    cfg = parse_config(cfg, EmbedConfig)
    kind, _ = parse_pooling(cfg.pooling)
    pooling = None if kind is None else str(cfg.pooling)
    out = output_path(cfg.input, cfg.out, per_position=pooling is None)
    check_output(out, cfg.input)
    names, seqs = read_sequences(str(cfg.input), column=str(cfg.column))
    model = DiffusionLM.from_pretrained(str(cfg.ckpt), **from_pretrained_kwargs(cfg))
    features = model.embed(seqs, pooling=pooling, batch_size=cfg.batch_size, progress=cfg.progress,
                           layer=cfg.layer, rc=cfg.rc)
    with open(out, "wb") as fh:  # a file handle: numpy adds no extension of its own
        if pooling:
            np.save(fh, features)
            shape = f"[{features.shape[0]}, {features.shape[1]}]"
        else:
            np.savez(fh, *features)
            shape = f"{len(features)} arrays [L_i, {features[0].shape[1]}]"
    Path(f"{out}.names.txt").write_text("\n".join(names) + "\n")
    print(f"{len(seqs)} sequences -> {out} ({shape}, pooling={pooling}, layer={cfg.layer}, rc={cfg.rc}); "
          f"names -> {out}.names.txt")
    return out


@hydra.main(config_path=str(config_dir()), config_name="embed", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    embed(cfg)


if __name__ == "__main__":
    main()
