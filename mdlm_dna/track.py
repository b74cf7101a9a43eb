"""Per-base genome tracks of a model's predictions over BED intervals, as bigWig or bedGraph.

    python -m mdlm_dna.track ckpt=ecoli fasta=genome.fa bed=regions.bed stat=surprisal out=surprisal.bw
    python -m mdlm_dna.track ckpt=ecoli fasta=genome.fa bed=genes.bed stat=entropy out=entropy.bedgraph

``stat``: surprisal (-log2 p(reference base), bits), entropy (bits) or logprob (ln p(reference base)), each base
masked alone in the window centred on it; see :mod:`mdlm_dna.analysis.tracks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import hydra
from omegaconf import DictConfig

from mdlm_dna.api import DiffusionLM
from mdlm_dna.cli.entry import command_config, user_errors
from mdlm_dna.cli.paths import check_input_files, check_output_file, local_path
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.validation import ModelCommandConfig, PositiveInt, Required, from_pretrained_kwargs, parse_config

register_resolvers()


class TrackConfig(ModelCommandConfig):
    """configs/track.yaml's keys, typed (the YAML holds the defaults and the documentation)."""

    fasta: Required
    bed: Required
    out: Required
    stat: Literal["surprisal", "entropy", "logprob"] = "surprisal"
    strands: Literal["forward", "reverse", "both"] = "forward"
    label: str | None = None
    batch_size: PositiveInt = 128
    progress: bool | None = None


def track(cfg: DictConfig | dict[str, Any]) -> Path:
    usage = "python -m mdlm_dna.track ckpt=MODEL fasta=GENOME.fa bed=REGIONS.bed out=TRACK.bw"
    cfg = command_config("track", cfg, {k: f"{k}= is required: {usage}" for k in ("ckpt", "fasta", "bed", "out")})
    cfg = parse_config(cfg, TrackConfig)
    check_input_files(cfg, "fasta", "bed")
    from mdlm_dna.analysis.tracks import merged_intervals, track, track_format
    from mdlm_dna.analysis.variants import open_fasta

    track_format(cfg.out)
    out = check_output_file(cfg.out, "out", [cfg.fasta, cfg.bed, *local_path(cfg.ckpt)])
    genome = open_fasta(cfg.fasta)
    spans = merged_intervals(cfg.bed, {name: len(genome[name]) for name in genome.keys()})  # checked before loading
    model = DiffusionLM.from_pretrained(str(cfg.ckpt), **from_pretrained_kwargs(cfg))
    path = track(model, cfg.fasta, cfg.bed, stat=cfg.stat, out=out, strands=cfg.strands, label=cfg.label,
                 batch_size=cfg.batch_size, progress=cfg.progress)
    print(f"{cfg.stat} over {sum(e - s for _, s, e in spans):,} bases in {len(spans)} intervals -> {path}")
    return path


@hydra.main(config_path=str(config_dir()), config_name="track", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    track(cfg)


if __name__ == "__main__":
    main()
