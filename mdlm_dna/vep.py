"""Score variants under a model: VCF (plain or bgzipped) or table in, TSV (and optionally a scored VCF) out.

    python -m mdlm_dna.vep ckpt=ecoli vcf=variants.vcf.gz fasta=genome.fa out=scores.tsv
    python -m mdlm_dna.vep ckpt=ecoli vcf=variants.vcf.gz fasta=genome.fa vcf_out=scored.vcf.gz strands=both

llr = log p(ALT) / p(REF) (natural log): SNVs with the site masked alone, multi-base substitutions and indels by
the window's NELBO difference (exact for AR models). Every ALT allele gets a row and a status; see
:mod:`mdlm_dna.analysis.variants`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import hydra
import pandas as pd
from omegaconf import DictConfig

from mdlm_dna.api import DiffusionLM
from mdlm_dna.cli.entry import command_config, user_errors
from mdlm_dna.cli.paths import check_input_files, check_output_file, local_path
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
TSV_SUFFIXES = (".tsv", ".tsv.gz", ".txt", ".txt.gz", ".tab")
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz")


class VepConfig(ModelCommandConfig):
    """configs/vep.yaml's keys, typed (the YAML holds the defaults and the documentation)."""

    vcf: Required
    fasta: Required
    out: str | None = None
    vcf_out: str | None = None
    strands: Literal["forward", "reverse", "both"] = "forward"
    on_mismatch: Literal["error", "drop"] = "error"
    t_samples: PositiveInt = 16
    seed: Int = 0
    label: str | None = None
    batch_size: PositiveInt = 128
    progress: bool | None = None


def default_out(vcf: str) -> Path:
    """variants.vcf.gz -> variants.vep.tsv, next to the input."""
    path = Path(vcf)
    name = path.name
    for suffix in (".gz", ".bgz", ".vcf", ".csv", ".tsv", ".txt"):
        name = name.removesuffix(suffix)
    return path.with_name(f"{name}.vep.tsv")


def vep(cfg: DictConfig | dict[str, Any]) -> pd.DataFrame:
    usage = "python -m mdlm_dna.vep ckpt=MODEL vcf=VARIANTS.vcf.gz fasta=GENOME.fa"
    cfg = command_config("vep", cfg, {key: f"{key}= is required: {usage}" for key in ("ckpt", "vcf", "fasta")})
    cfg = parse_config(cfg, VepConfig)
    check_input_files(cfg, "vcf", "fasta")
    inputs = [cfg.vcf, cfg.fasta, *local_path(cfg.ckpt)]
    out = check_output_file(cfg.out or default_out(cfg.vcf), "out", inputs, suffixes=TSV_SUFFIXES)
    vcf_out = check_output_file(cfg.vcf_out, "vcf_out", [*inputs, out], suffixes=VCF_SUFFIXES) if cfg.vcf_out else None
    from mdlm_dna.analysis.vcf import read_variants, write_vcf

    table = read_variants(cfg.vcf)
    model = DiffusionLM.from_pretrained(str(cfg.ckpt), **from_pretrained_kwargs(cfg))
    scores = model.variant_effects(table, cfg.fasta, strands=cfg.strands, on_mismatch=cfg.on_mismatch,
                                   t_samples=cfg.t_samples, seed=cfg.seed, label=cfg.label,
                                   batch_size=cfg.batch_size, progress=cfg.progress)
    scores.to_csv(out, sep="\t", index=False, float_format="%.6g")
    if vcf_out is not None:
        extra = table[["qual", "filter", "info"]].reset_index(drop=True)
        write_vcf(pd.concat([scores.reset_index(drop=True), extra], axis=1), vcf_out, table.attrs["vcf_header"])
    counts = scores["status"].value_counts()
    unscored = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "scored")
    print(f"{int(counts.get('scored', 0))} of {len(scores)} alleles scored -> {out}"
          + (f" and {vcf_out}" if vcf_out else "") + (f" (not scored: {unscored})" if unscored else ""))
    return scores


@hydra.main(config_path=str(config_dir()), config_name="vep", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    vep(cfg)


if __name__ == "__main__":
    main()
