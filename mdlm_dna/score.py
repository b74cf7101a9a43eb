"""Score sequences under a model: per-sequence NELBO and bits per base (text: per token), FASTA or table in, TSV out.

    python -m mdlm_dna.score ckpt=ecoli input=candidates.fa out=scores.tsv
    python -m mdlm_dna.score ckpt=RUN input=table.csv column=sequence t_samples=32
    python -m mdlm_dna.score ckpt=ecoli_40k input=reads.fa context=64 strands=both   # -log p(rest | first 64)

For diffusion objectives the NELBO is a Monte-Carlo estimate of an upper bound on -log p(x) (``t_samples``
noise draws per window); for AR it is the exact negative log-likelihood.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import hydra
import pandas as pd
from omegaconf import DictConfig

from mdlm_dna.api import DiffusionLM
from mdlm_dna.cli.entry import command_config, user_errors
from mdlm_dna.cli.paths import check_output_file
from mdlm_dna.data.seqio import read_sequences
from mdlm_dna.data.tokenizers import TokenizerError
from mdlm_dna.utils.errors import DataError
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.validation import (
    Int,
    ModelCommandConfig,
    NonNegativeInt,
    PositiveInt,
    Required,
    from_pretrained_kwargs,
    parse_config,
)

register_resolvers()


def _suffixless(path: Path) -> Path:
    name = path.name
    for suffix in (".gz", ".fa", ".fasta", ".fna", ".csv", ".tsv", ".txt"):
        name = name.removesuffix(suffix)
    return path.with_name(name)


class ScoreConfig(ModelCommandConfig):
    """configs/score.yaml's keys, typed (the YAML holds the defaults and the documentation)."""

    input: Required
    column: str = "sequence"
    out: str | None = None
    t_samples: PositiveInt = 16
    batch_size: PositiveInt = 64
    seed: Int = 0
    common_noise: bool = True
    count_n: bool | None = None
    bound: Literal["reference", "full"] = "reference"
    strands: Literal["forward", "both"] = "forward"
    context: NonNegativeInt = 0
    progress: bool | None = None


def score(cfg: DictConfig | dict[str, Any]) -> pd.DataFrame:
    usage = "python -m mdlm_dna.score ckpt=MODEL input=SEQS.fa"
    cfg = command_config("score", cfg, {key: f"{key}= is required: {usage}" for key in ("ckpt", "input")})
    cfg = parse_config(cfg, ScoreConfig)
    out = Path(cfg.out) if cfg.out else Path(f"{_suffixless(Path(str(cfg.input)))}.scores.tsv")
    check_output_file(out, "out", inputs=[str(cfg.input)])  # before the work: not the input, a writable folder
    names, seqs = read_sequences(str(cfg.input), column=str(cfg.column))
    model = DiffusionLM.from_pretrained(str(cfg.ckpt), **from_pretrained_kwargs(cfg))
    if not model.is_text:  # a bad character names the file and the record, before any scoring
        for name, seq in zip(names, seqs):
            try:
                model.tokenizer.encode(seq, where=f"{cfg.input}: record {name!r}")
            except TokenizerError as e:
                raise DataError(str(e)) from None
    table = model.score(seqs, t_samples=cfg.t_samples, batch_size=cfg.batch_size, seed=cfg.seed,
                        progress=cfg.progress, count_n=cfg.count_n, common_noise=cfg.common_noise,
                        bound=cfg.bound, strands=cfg.strands, context=cfg.context)
    table.insert(0, "name", names)
    table.to_csv(out, sep="\t", index=False)
    unit = f"bits_per_{model.unit}"
    print(f"{len(table)} sequences scored -> {out} (median {table[unit].median():.4f} {unit.replace('_', ' ')})")
    return table


@hydra.main(config_path=str(config_dir()), config_name="score", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    score(cfg)


if __name__ == "__main__":
    main()
