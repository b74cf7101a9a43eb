"""Generate synthetic DNA (or text) from a checkpoint: FASTA (or .txt) out, plus a JSON report with cost and metrics.

    python -m mdlm_dna.sample ckpt=RUN/checkpoints/last.ckpt num_samples=64 length=1024 steps=256
    python -m mdlm_dna.sample ckpt=... sampler=sar length=4096            # beyond the training context
    python -m mdlm_dna.sample ckpt=... prefix=ATGAAACGC                    # prompt
    python -m mdlm_dna.sample ckpt=... infill=ACGT----ACGT                 # fill the '-' positions
    python -m mdlm_dna.sample ckpt=TEXT_RUN/... prefix="To be, or"         # a text model: decoded text
    python -m mdlm_dna.sample ckpt=TEXT_RUN/... infill="the [MASK] [MASK] sat on the mat"
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mdlm_dna.diffusion.samplers import build_sampler, is_time_conditioned, masked_init
from mdlm_dna.resources import config_dir, register_resolvers
from mdlm_dna.tokenizers import BASES, NucleotideTokenizer, TextTokenizer

log = logging.getLogger("mdlm_dna.sample")
register_resolvers()

MASK_CHARS = "-?"
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def parse_prefix(text: str) -> torch.Tensor:
    """A prompt of A C G T N (any case) -> ids; anything else is an error naming the character."""
    text = str(text).strip()
    for i, ch in enumerate(text):
        if ch.upper() not in BASES:
            raise ValueError(f"prefix: invalid character {ch!r} at position {i}; expected A C G T N")
    return torch.tensor([BASES.index(c) for c in text.upper()], dtype=torch.long)


def parse_infill(text: str, n_is_mask: bool = False) -> torch.Tensor:
    """A template with '-' / '?' (and N with ``n_is_mask``) at the positions to generate -> ids with [MASK]."""
    text = str(text).strip()
    ids = []
    for i, ch in enumerate(text.upper()):
        if ch in MASK_CHARS or (n_is_mask and ch == "N"):
            ids.append(NucleotideTokenizer.mask_id)
        elif ch in BASES:
            ids.append(BASES.index(ch))
        else:
            raise ValueError(f"infill: invalid character {text[i]!r} at position {i}; expected A C G T N or - / ?")
    if not ids:
        raise ValueError("infill: empty template")
    if NucleotideTokenizer.mask_id not in ids:
        raise ValueError("infill: nothing to generate (mark the positions to fill with '-')")
    return torch.tensor(ids, dtype=torch.long)


def write_fasta(path: Path, seqs: list[str], names: list[str], width: int = 80) -> None:
    with open(path, "w") as fh:
        for name, s in zip(names, seqs):
            fh.write(f">{name}\n")
            for i in range(0, len(s), width):
                fh.write(s[i : i + width] + "\n")


def parse_text_prefix(text: str, tok: TextTokenizer) -> torch.Tensor:
    """A text prompt -> [BOS] + its ids: samples then read as the continuation of a document's start."""
    ids = tok.encode(str(text))
    if not ids:
        raise ValueError("prefix: empty text")
    return torch.tensor([tok.bos_id, *ids], dtype=torch.long)


def parse_text_infill(text: str, tok: TextTokenizer) -> torch.Tensor:
    """A text template with [MASK] tokens at the positions to generate -> [BOS] + ids + [EOS]."""
    ids = tok.hf(str(text), add_special_tokens=False)["input_ids"]  # here "[MASK]" is meant as the special token
    if tok.mask_id not in ids:
        raise ValueError(f"infill: nothing to generate (write {tok.hf.mask_token} where tokens are to be generated)")
    return torch.tensor([tok.bos_id, *ids, tok.eos_id], dtype=torch.long)


def write_text_samples(path: Path, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            fh.write(f"=== sample {i} ===\n{t}\n\n")


def token_entropy(ids: torch.Tensor) -> float:
    """Mean over samples of the entropy (nats) of each sample's token histogram: low values flag repetition."""
    out = []
    for row in ids:
        _, counts = torch.unique(row, return_counts=True)
        p = counts.double() / counts.sum()
        out.append(float(-(p * p.log()).sum()))
    return float(np.mean(out))


def reference_windows(config: dict[str, Any], length: int, max_windows: int | None, genome_path: str | None = None,
                      cache_dir: str | None = None) -> np.ndarray:
    """The run's held-out test windows of ``length`` bases (evenly spaced subset), as ids [N, length]."""
    from mdlm_dna.data.datamodule import load_split_genome
    from mdlm_dna.data.windows import TiledWindows

    g = dict(config["genome"])
    if genome_path:
        g["path"] = str(genome_path)
    genome, splits = load_split_genome(g, cache_dir)
    ds = TiledWindows(genome, splits["test"], seq_len=length, max_windows=max_windows,
                      max_n_fraction=float(config.get("data", {}).get("max_n_fraction", 0.5)))
    if len(ds) == 0:
        return np.zeros((0, length), dtype=np.int64)
    return np.stack([ds[i]["input_ids"].numpy() for i in range(len(ds))])


def _validate(cfg: DictConfig) -> None:
    if cfg.get("ckpt") in (None, "", "???"):
        raise ValueError("ckpt=PATH is required")
    if not Path(str(cfg.ckpt)).expanduser().exists():
        raise FileNotFoundError(f"checkpoint not found: {cfg.ckpt}")
    if cfg.infill is None and int(cfg.length) <= 0:
        raise ValueError(f"length must be positive, got {cfg.length}")
    if int(cfg.num_samples) <= 0 or int(cfg.batch_size) <= 0 or int(cfg.steps) <= 0:
        raise ValueError("num_samples, batch_size and steps must be positive")
    if str(cfg.dtype) not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {cfg.dtype!r}")
    if cfg.prefix is not None and cfg.infill is not None:
        raise ValueError("give either prefix or infill, not both")


def generate(cfg: DictConfig | dict[str, Any], out_dir: str | Path = ".") -> dict[str, Any]:
    """Sample as ``cfg`` says; write the FASTA, the JSON report and plots; return the report."""
    from mdlm_dna.evaluate import load_module

    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    _validate(cfg)
    module, ema = load_module(cfg.ckpt, use_ema=bool(cfg.use_ema))
    tok = module.tokenizer
    text = isinstance(tok, TextTokenizer)
    if text:
        prefix = parse_text_prefix(cfg.prefix, tok) if cfg.prefix is not None else None
        template = parse_text_infill(cfg.infill, tok) if cfg.infill is not None else None
    else:
        prefix = parse_prefix(cfg.prefix) if cfg.prefix is not None else None
        template = parse_infill(cfg.infill, bool(cfg.infill_n_is_mask)) if cfg.infill is not None else None
    length = len(template) if template is not None else int(cfg.length)
    if prefix is not None and len(prefix) >= length:
        raise ValueError(f"prefix ({len(prefix)} tokens) must be shorter than length ({length})")

    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          "cpu" if cfg.device == "auto" else cfg.device)
    model = module.objective.to(device).eval()
    config = module.config
    seq_len = int(config["data"]["seq_len"])
    if length > seq_len and cfg.sampler != "sar":
        log.warning("length %d is beyond the training context (%d): consider sampler=sar", length, seq_len)
    sampler = build_sampler(
        str(cfg.sampler), int(cfg.steps), DTYPES[str(cfg.dtype)], block_len=int(cfg.block_len or seq_len),
        overlap=cfg.overlap, allow_time_conditioned=bool(cfg.allow_time_conditioned_cache), inner=str(cfg.sar_inner),
    )

    gen = torch.Generator(device=device).manual_seed(int(cfg.seed))
    chunks, calls, evals, saved, seconds = [], 0, 0, 0, 0.0
    n = int(cfg.num_samples)
    for b0 in range(0, n, int(cfg.batch_size)):
        bs = min(int(cfg.batch_size), n - b0)
        if template is not None:
            x0 = template.to(device)[None].expand(bs, -1).clone()
        else:
            x0 = masked_init(bs, length, model.mask_id, prefix, device=device)
        res = sampler(model, x0, gen)
        chunks.append(res.ids.cpu())
        calls, evals, saved, seconds = calls + res.network_calls, evals + res.sequence_evals, \
            saved + res.sequence_evals_saved, seconds + res.seconds
    ids = torch.cat(chunks)
    seqs = [tok.decode(r) for r in ids]

    out_dir = Path(out_dir)
    fasta = Path(cfg.output) if cfg.output else out_dir / ("samples.txt" if text else "samples.fa")
    fasta.parent.mkdir(parents=True, exist_ok=True)
    if text:
        write_text_samples(fasta, seqs)
    else:
        names = [f"sample_{i} sampler={cfg.sampler} steps={cfg.steps} seed={cfg.seed}" for i in range(n)]
        write_fasta(fasta, seqs, names)
    report: dict[str, Any] = {
        "ckpt": str(cfg.ckpt), "ema": ema, "fasta": str(fasta), "num_samples": n, "length": length,
        "sampler": str(cfg.sampler), "steps": int(cfg.steps), "seed": int(cfg.seed), "dtype": str(cfg.dtype),
        "time_conditioned_model": is_time_conditioned(model), "seconds": seconds,
        "samples_per_second": n / max(seconds, 1e-9), "network_calls": calls, "sequence_evals": evals,
        "sequence_evals_saved_by_cache": saved, "network_evals_per_sample": evals / n,
        "prefix": cfg.prefix, "infill": cfg.infill,
    }
    if text:
        report["token_entropy"] = token_entropy(ids)
        print("\n\n".join(f"[{i}] {t}" for i, t in enumerate(seqs[:4])))
    elif cfg.metrics:
        from mdlm_dna.metrics import metrics_table, plot_gc_distribution, plot_kmer_spectrum

        ref = reference_windows(config, length, cfg.reference_windows, cfg.genome_path, cfg.cache_dir)
        if len(ref) == 0:
            log.warning("the test split has no window of %d bases: no metrics", length)
        else:
            table = metrics_table({"generated": ids.numpy()}, ref, seed=int(cfg.seed))
            report["reference_windows"] = len(ref)
            report["metrics"] = json.loads(table.to_json(orient="index"))
            print(table.round(4).to_string())
            if cfg.plots:
                stem = fasta.with_suffix("")
                report["plots"] = [
                    str(plot_kmer_spectrum(ids.numpy(), ref, 3, f"{stem}.kmer3.png")),
                    str(plot_kmer_spectrum(ids.numpy(), ref, 6, f"{stem}.kmer6.png")),
                    str(plot_gc_distribution({"real (test)": ref, "generated": ids.numpy()}, f"{stem}.gc.png")),
                ]
    report_path = fasta.with_suffix(fasta.suffix + ".json")
    report["report"] = str(report_path)
    report_path.write_text(json.dumps(report, indent=1))
    unit = "tokens" if text else "bases"
    rate = report["samples_per_second"]
    print(f"{n} samples x {length} {unit} -> {fasta} in {seconds:.1f} s ({rate:.2f} samples/s), "
          f"{calls} network calls, {evals / n:.1f} evaluations per sample ({saved} saved by the cache)")
    return report


@hydra.main(config_path=str(config_dir()), config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    generate(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
