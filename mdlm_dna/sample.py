"""Generate synthetic DNA (or text): FASTA (or .txt) out, plus a JSON report with cost and metrics, and plots.

    python -m mdlm_dna.sample ckpt=ecoli num_samples=64 length=1024 steps=256   # the shipped model
    python -m mdlm_dna.sample ckpt=RUN sampler=sar length=4096                  # beyond the training context
    python -m mdlm_dna.sample ckpt=RUN prefix=ATGAAACGC                         # prompt
    python -m mdlm_dna.sample ckpt=RUN infill=ACGT----ACGT                      # fill the '-' positions
    python -m mdlm_dna.sample ckpt=TEXT_RUN prefix="To be, or"                  # a text model: decoded text
    python -m mdlm_dna.sample ckpt=RUN label=yeast guidance.scale=2.0           # a class-conditional model (D-CFG)
    python -m mdlm_dna.sample ckpt=AR_RUN                                        # the AR baseline, left to right

``ckpt`` is any model source ``DiffusionLM.from_pretrained`` takes (shipped name, run folder, .ckpt,
exported folder, Hub id). The report is written before the plots, so a plotting failure loses nothing.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pydantic import model_validator

from mdlm_dna.api import DiffusionLM, reference_windows
from mdlm_dna.cli.entry import CKPT_REQUIRED, command_config, user_errors
from mdlm_dna.cli.paths import check_output_file
from mdlm_dna.data.seqio import write_fasta, write_text_samples
from mdlm_dna.diffusion.prompts import token_entropy
from mdlm_dna.diffusion.samplers import is_time_conditioned
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.validation import (
    CommandConfig,
    Int,
    ModelCommandConfig,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    from_pretrained_kwargs,
    parse_config,
)

log = logging.getLogger("mdlm_dna.sample")
register_resolvers()


class GuidanceConfig(CommandConfig):
    scale: NonNegativeFloat = 1.0
    classifier: str | None = None


class SampleConfig(ModelCommandConfig):
    """configs/sample.yaml's keys, typed (the YAML holds the defaults and the documentation)."""

    num_samples: PositiveInt = 64
    length: PositiveInt | None = None
    steps: PositiveInt = 256
    sampler: Literal["auto", "ancestral", "cached", "sar"] = "auto"
    sar_inner: Literal["ancestral", "cached"] = "ancestral"
    block_len: PositiveInt | None = None
    overlap: NonNegativeInt | None = None
    allow_time_conditioned_cache: bool = False
    prefix: str | None = None
    infill: str | None = None
    infill_n_is_mask: bool = False
    label: str | int | None = None
    guidance: GuidanceConfig = GuidanceConfig()
    dtype: Literal["float64", "float32"] = "float64"
    batch_size: PositiveInt = 16
    seed: Int = 0
    output: str | None = None
    metrics: bool = True
    reference_windows: PositiveInt = 512
    plots: bool = True
    genome_path: str | None = None
    progress: bool | None = None

    @model_validator(mode="after")
    def _sar(self) -> SampleConfig:
        if self.block_len is not None and self.overlap is not None and self.overlap >= self.block_len:
            raise ValueError(f"overlap={self.overlap} must be smaller than block_len={self.block_len} (the tokens "
                             "of each block kept as the next block's prefix)")
        return self


def _config(cfg: DictConfig | dict[str, Any]) -> DictConfig:
    """``cfg`` over the defaults of configs/sample.yaml (a partial dict from Python works too), checked."""
    cfg = command_config("sample", cfg, {"ckpt": CKPT_REQUIRED})
    parse_config(cfg, SampleConfig)
    return cfg


def _plots(ids, ref, stem: Path) -> list[str]:
    """k-mer spectra and GC distribution PNGs; skipped with one warning when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401

        from mdlm_dna.evaluation.metrics import plot_gc_distribution, plot_kmer_spectrum
    except ImportError:
        warnings.warn("matplotlib is not installed: no plots (pip install matplotlib)", stacklevel=2)
        return []
    return [
        str(plot_kmer_spectrum(ids, ref, 3, f"{stem}.kmer3.png")),
        str(plot_kmer_spectrum(ids, ref, 6, f"{stem}.kmer6.png")),
        str(plot_gc_distribution({"real (test)": ref, "generated": ids}, f"{stem}.gc.png")),
    ]


def generate(cfg: DictConfig | dict[str, Any], out_dir: str | Path = ".") -> dict[str, Any]:
    """Sample as ``cfg`` says; write the FASTA, the JSON report and plots; return the report."""
    cfg = _config(cfg)
    model = DiffusionLM.from_pretrained(str(cfg.ckpt), **from_pretrained_kwargs(cfg))
    out_dir = Path(out_dir)
    fasta = Path(cfg.output) if cfg.output else out_dir / ("samples.txt" if model.is_text else "samples.fa")
    check_output_file(fasta, "output", create_folder=True)  # before the work: a folder a pretrain writes is refused
    length = None if cfg.length is None else int(cfg.length)
    res = model.sample_ids(
        num_samples=int(cfg.num_samples), length=length, steps=int(cfg.steps), sampler=str(cfg.sampler),
        prefix=cfg.prefix, infill=cfg.infill, seed=int(cfg.seed), batch_size=int(cfg.batch_size),
        dtype=str(cfg.dtype), block_len=cfg.block_len, overlap=cfg.overlap, sar_inner=str(cfg.sar_inner),
        allow_time_conditioned_cache=bool(cfg.allow_time_conditioned_cache),
        infill_n_is_mask=bool(cfg.infill_n_is_mask), progress=cfg.get("progress"),
        label=cfg.get("label"), guidance_scale=float((cfg.get("guidance") or {}).get("scale", 1.0)),
        classifier=(cfg.get("guidance") or {}).get("classifier"),
    )
    n, length, seqs = len(res.sequences), res.settings["length"], res.sequences

    fasta.parent.mkdir(parents=True, exist_ok=True)
    if model.is_text:
        write_text_samples(fasta, seqs)
    else:
        guided = (f" label={cfg.label} guidance={res.settings['guidance']} guidance_scale="
                  f"{res.settings['guidance_scale']}") if cfg.get("label") else ""
        steps = "" if res.settings["sampler"] == "ar" else f" steps={cfg.steps}"  # AR: one step per base
        names = [f"sample_{i} sampler={res.settings['sampler']}{steps} seed={cfg.seed}{guided}" for i in range(n)]
        write_fasta(fasta, seqs, names)
    report: dict[str, Any] = {
        "ckpt": str(cfg.ckpt), "ema": model.loaded.ema, "fasta": str(fasta), **res.settings,
        "time_conditioned_model": is_time_conditioned(model.objective), "seconds": res.seconds,
        "samples_per_second": n / max(res.seconds, 1e-9), "network_calls": res.network_calls,
        "sequence_evals": res.sequence_evals, "sequence_evals_saved_by_cache": res.sequence_evals_saved,
        "network_evals_per_sample": res.evals_per_sample,
    }
    report_path = fasta.with_suffix(fasta.suffix + ".json")
    report["report"] = str(report_path)
    ref = None
    if model.is_text:
        report["token_entropy"] = token_entropy(res.ids)
        print("\n\n".join(f"[{i}] {t}" for i, t in enumerate(seqs[:4])))
    elif cfg.metrics:
        from mdlm_dna.evaluation.metrics import metrics_table

        if model.classes and cfg.get("label") is None and not cfg.genome_path:  # unconditional: every class's
            per = max(1, int(cfg.reference_windows or 512) // len(model.classes))
            ref = np.concatenate([reference_windows(model, length, per, None, cfg.cache_dir, label=c)
                                  for c in model.classes])
        else:  # the target class's held-out windows for a labelled model (classifier guidance: the model's own)
            ref = reference_windows(model, length, cfg.reference_windows, cfg.genome_path, cfg.cache_dir,
                                    label=None if res.settings.get("guidance") == "classifier" else cfg.get("label"))
        if len(ref) == 0:
            log.warning("the test split has no window of %d bases: no metrics", length)
            ref = None
        else:
            table = metrics_table({"generated": res.ids.numpy()}, ref, seed=int(cfg.seed))
            report["reference_windows"] = len(ref)
            report["metrics"] = json.loads(table.to_json(orient="index"))
            print(table.round(4).to_string())
    report_path.write_text(json.dumps(report, indent=1))  # before the plots: a plotting failure loses nothing
    if ref is not None and cfg.plots:
        plots = _plots(res.ids.numpy(), ref, fasta.with_suffix(""))
        if plots:
            report["plots"] = plots
            report_path.write_text(json.dumps(report, indent=1))
    unit = "tokens" if model.is_text else "bases"
    print(f"{n} samples x {length} {unit} -> {fasta} in {res.seconds:.1f} s ({report['samples_per_second']:.2f} "
          f"samples/s), {res.network_calls} network calls, {res.evals_per_sample:.1f} evaluations per sample "
          f"({res.sequence_evals_saved} saved by the cache)")
    return report


@hydra.main(config_path=str(config_dir()), config_name="sample", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    generate(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
