"""Is generated DNA like real DNA? A model's samples beside order-k Markov chains, uniform random and real DNA.

    python benchmarks/sample_quality.py                                   # the shipped model `ecoli`
    python benchmarks/sample_quality.py --model RUN/checkpoints/last.ckpt --steps 128 --out /tmp/sq
    python benchmarks/sample_quality.py --samples samples.fa              # samples generated elsewhere
    python benchmarks/sample_quality.py --model markov5                   # a baseline as the "model" (no torch)

Every set (256 samples x 1024 bases by default) is compared with the same real reference: 256 windows of
the test split (the last 5 % of E. coli, 232 kb, so evenly spaced windows of 1024 overlap their neighbours
by ~118 bases). Rows:

- the model;
- order-k Markov chains (k = 0..5) fitted on the training split, and uniform random sequence: what
  short-range statistics alone give (a chain of order k matches k+1-mers and nothing longer);
- ``real (train windows)``: as many random non-overlapping windows of the training split: what a perfect sampler of the
  training distribution reaches on the distance columns (and what copying looks like in the novelty ones);
- ``real (validation)``: as many windows of the validation split (never trained on): held-out real DNA
  of another region, so its distances add regional variation to counting noise;
- ``real: test half vs half``: the first 128 test windows against the last 128, the noise between two
  independent real sets (of half the size) for every column;
- ``counting noise (expected)``: the JS distance two samples of this size from one and the same k-mer
  distribution have on average; the k = 5, 6 columns cannot resolve sets closer than this;
- ``real (test, the reference)``: the reference's own values (distances 0 by construction).

Real windows are reverse-complemented with probability ``--rc-prob`` (default 0.5, as in training, whose
windows are flipped with data.rc_prob = 0.5), and the Markov chains are then fitted on both strands.
Novelty compares each sample with the training split (both strands); the diversity columns of the real
rows use the windows without their overlap. Prints Markdown tables, writes table.csv / table.json (with
the column glossary and the settings) and, with ``--plots``, k=3 spectrum, ORF length and GC plots to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from common import MODEL_HELP, add_model_option, arg_parser

from mdlm_dna.evaluation.markov import MarkovChain, ecoli_splits, ids_to_strings
from mdlm_dna.evaluation.metrics import (
    KS,
    LONG_ORF_CODONS,
    MIN_ORF_CODONS,
    QUALITY_COLUMNS,
    GenomeIndex,
    js_counting_noise,
    orf_stats,
    plot_gc_distribution,
    plot_kmer_spectra,
    plot_orf_lengths,
    reverse_complement_ids,
    sample_quality_row,
    to_ids,
    uniform_random,
)

TABLES = {  # two Markdown tables: a single 20-column one does not fit a page
    "k-mer spectrum and composition": [*(f"js_k{k}" for k in KS), "gc_mean", "gc_sd", "homopolymer_js",
                                       "longest_homopolymer"],
    "coding signal, novelty and diversity": ["orf_per_kb", "orf_mean_codons", "orf_coverage", "orf_len_ks",
                                             "orf100_coverage", "codon_js", "match_median", "match_max", "id32",
                                             "distinct32", "pairwise_js4"],
}
FMT = {"longest_homopolymer": "{:.0f}", "match_median": "{:.0f}", "match_max": "{:.0f}", "orf_mean_codons": "{:.0f}",
       "orf_per_kb": "{:.2f}", "gc_mean": "{:.3f}", "gc_sd": "{:.3f}"}


def windows(split: np.ndarray, num: int, length: int) -> tuple[np.ndarray, int]:
    """``num`` evenly spaced windows of ``length`` bases of one split [num, length], and their stride."""
    if len(split) < length:
        raise ValueError(f"the split ({len(split)} bases) is shorter than one window ({length})")
    starts = np.linspace(0, len(split) - length, num).round().astype(np.int64)
    stride = int(np.diff(starts).min()) if num > 1 else length
    return np.stack([np.asarray(split[s : s + length], dtype=np.int64) for s in starts]), stride


def reverse_complement_some(ids: np.ndarray, prob: float, seed: int) -> np.ndarray:
    """Each row reverse-complemented with probability ``prob`` (the training windows' augmentation)."""
    flip = np.random.default_rng(seed).random(len(ids)) < prob
    out = ids.copy()
    out[flip] = reverse_complement_ids(ids[flip])  # N stays N (3 - N would be -1)
    return out


def model_sampler(spec: str, train: np.ndarray, both_strands: bool,
                  batch_size: int = 16) -> Callable[..., list[str] | np.ndarray]:
    """``spec`` -> f(num, length, steps, sampler, seed): markovK / uniform, else a model by name or path."""
    if spec == "uniform":
        return lambda num, length, steps, sampler, seed: uniform_random(num, length, seed)
    if spec.startswith("markov") and spec[6:].isdigit():
        chain = MarkovChain.fit([train, 3 - train[::-1]] if both_strands else train, int(spec[6:]))
        return lambda num, length, steps, sampler, seed: chain.sample(num, length, seed)
    try:
        from mdlm_dna import DiffusionLM

        model = DiffusionLM.from_pretrained(spec)

        def sample(num, length, steps, sampler, seed):
            return model.sample(num_samples=num, length=length, steps=steps, sampler=sampler, seed=seed,
                                batch_size=batch_size)

        return sample
    except ImportError:  # an older package: sample a checkpoint through the CLI's code
        return lambda num, length, steps, sampler, seed: _sample_ckpt(spec, num, length, steps, sampler, seed,
                                                                      batch_size)


def _sample_ckpt(ckpt: str, num: int, length: int, steps: int, sampler: str, seed: int,
                 batch_size: int = 16) -> list[str]:
    import tempfile

    from omegaconf import OmegaConf

    from mdlm_dna.sample import generate
    from mdlm_dna.utils.resources import config_dir

    cfg = OmegaConf.load(config_dir() / "sample.yaml")
    cfg.pop("hydra", None)
    sampler = "ancestral" if sampler == "auto" else sampler
    with tempfile.TemporaryDirectory() as tmp:
        cfg.merge_with({"ckpt": ckpt, "num_samples": num, "length": length, "steps": steps, "sampler": sampler,
                        "seed": seed, "batch_size": batch_size, "metrics": False, "plots": False,
                        "output": f"{tmp}/samples.fa"})
        report = generate(cfg, tmp)
        return read_fasta(report["fasta"])


def read_fasta(path: str | Path) -> list[str]:
    seqs, cur = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith(">"):
            if cur:
                seqs.append("".join(cur))
            cur = []
        elif line.strip():
            cur.append(line.strip())
    if cur:
        seqs.append("".join(cur))
    return seqs


def to_markdown(table: pd.DataFrame, columns: list[str]) -> str:
    lines = ["| set | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, r in table.iterrows():
        cells = ["" if pd.isna(r[c]) else FMT.get(c, "{:.4f}").format(r[c]) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    splits = ecoli_splits(args.cache_dir)
    train = np.asarray(splits["train"], dtype=np.int64)
    both = args.rc_prob > 0
    n, length = args.num_samples, args.length

    # real sets: the reference (test), the floor (validation), and the two halves of the reference
    test, stride = windows(splits["test"], n, length)
    val, val_stride = windows(splits["validation"], n, length)
    test = reverse_complement_some(test, args.rc_prob, args.seed + 1)
    val = reverse_complement_some(val, args.rc_prob, args.seed + 2)
    tiles = np.random.default_rng(args.seed + 3).choice(len(train) // length, n, replace=False)  # no overlaps
    starts = np.sort(tiles) * length
    train_win = reverse_complement_some(np.stack([train[a : a + length] for a in starts]), args.rc_prob, args.seed + 4)
    half = n // 2

    sets: dict[str, np.ndarray | list] = {}
    seconds: dict[str, float] = {}
    if args.samples:
        sets[f"samples ({Path(args.samples).name})"] = read_fasta(args.samples)[:n]
    elif args.model:
        t0 = time.perf_counter()
        sampler = model_sampler(args.model, train, both, args.batch_size)
        sets[f"model ({args.model})"] = sampler(n, length, args.steps, args.sampler, args.seed)
        seconds["model sampling"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(args.max_markov + 1):
        chain = MarkovChain.fit([train, 3 - train[::-1]] if both else train, k)
        sets[f"markov order {k}"] = chain.sample(n, length, args.seed + 10 + k)
    sets["uniform random"] = uniform_random(n, length, args.seed + 20)
    seconds["baseline sampling"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = GenomeIndex([train], k=32)
    seconds["genome index"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    no_overlap = lambda w, s: w[:, : min(s, length)]  # noqa: E731  real windows without their neighbours' bases
    orf_args = {"min_orf_codons": args.min_orf_codons, "long_orf_codons": args.long_orf_codons}
    ref_orfs = orf_stats(test, args.min_orf_codons)
    rows = {name: sample_quality_row(seqs, test, index, ref_orfs=ref_orfs, **orf_args) for name, seqs in sets.items()}
    rows["real (train windows)"] = sample_quality_row(train_win, test, index, ref_orfs=ref_orfs, **orf_args)
    rows["real (validation)"] = sample_quality_row(val, test, index, ref_orfs=ref_orfs, **orf_args,
                                                   diversity_seqs=no_overlap(val, val_stride))
    rows["real: test half vs half"] = sample_quality_row(test[:half], test[half:], index, **orf_args,
                                                         diversity_seqs=no_overlap(test[:half], stride))
    kmers = lambda k, m: m * (length - k + 1)  # noqa: E731
    rows["counting noise (expected)"] = {f"js_k{k}": js_counting_noise(k, kmers(k, n), kmers(k, n)) for k in KS}
    rows["real (test, the reference)"] = sample_quality_row(test, test, index, ref_orfs=ref_orfs, **orf_args,
                                                            diversity_seqs=no_overlap(test, stride))
    seconds["metrics"] = time.perf_counter() - t0
    table = pd.DataFrame.from_dict(rows, orient="index")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if args.plots:
        model_rows = [k for k in sets if k.startswith(("model", "samples"))]
        shown = {name: sets[name] for name in [*model_rows, "markov order 5", "markov order 2", "uniform random"]
                 if name in sets}
        plots = [
            plot_kmer_spectra(shown, test, 3, out / "kmer3.png"),
            plot_orf_lengths({"real (test)": test, **shown}, out / "orf_length.png", args.min_orf_codons),
            plot_gc_distribution({"real (test)": test, **shown}, out / "gc.png"),
        ]
    seconds["total (without model sampling)"] = time.perf_counter() - t_start - seconds.get("model sampling", 0.0)

    settings = {
        "model": args.model, "samples": args.samples, "num_samples": n, "length": length, "steps": args.steps,
        "sampler": args.sampler, "seed": args.seed, "rc_prob": args.rc_prob, "min_orf_codons": args.min_orf_codons,
        "long_orf_codons": args.long_orf_codons,
        "reference": f"{n} windows x {length} of the test split ({len(splits['test']):,} bases), stride {stride}",
        "floor": f"{n} windows x {length} of the validation split ({len(splits['validation']):,} bases), "
                 f"stride {val_stride}",
        "noise": f"test windows 0..{half - 1} against {half}..{n - 1}",
    }
    md = [f"## {title}\n\n{to_markdown(table, cols)}" for title, cols in TABLES.items()]
    text = "\n\n".join(md)
    (out / "table.md").write_text(text + "\n")
    table.to_csv(out / "table.csv")
    result = {"settings": settings, "seconds": seconds, "columns": QUALITY_COLUMNS,
              "table": json.loads(table.to_json(orient="index")), "plots": [str(p) for p in plots]}
    (out / "table.json").write_text(json.dumps(result, indent=1))
    if args.save_samples:
        for name, seqs in sets.items():
            fname = out / ("samples_" + "".join(c if c.isalnum() else "_" for c in name) + ".fa")
            strs = ids_to_strings(to_ids(seqs))
            fname.write_text("".join(f">{name} {i}\n{s}\n" for i, s in enumerate(strs)))
    print(text)
    print("\n" + "; ".join(f"{k}: {v:.1f} s" for k, v in seconds.items()))
    print(f"reference: {settings['reference']}; floor: {settings['floor']}; noise: {settings['noise']}; "
          f"ORFs of >= {args.min_orf_codons} codons; written to {out}")
    return result


def main() -> None:
    ap = arg_parser(__doc__)
    add_model_option(ap, help_=f"{MODEL_HELP}; or markovK / uniform")
    ap.add_argument("--samples", help="a FASTA of samples to judge instead of sampling --model")
    ap.add_argument("--num-samples", type=int, default=256)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--sampler", default="auto", help="auto | ancestral | cached | sar")
    ap.add_argument("--batch-size", type=int, default=16, help="samples per network call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-markov", type=int, default=5, help="Markov baseline rows of order 0..K")
    ap.add_argument("--min-orf-codons", type=int, default=MIN_ORF_CODONS)
    ap.add_argument("--long-orf-codons", type=int, default=LONG_ORF_CODONS)
    ap.add_argument("--rc-prob", type=float, default=0.5, help="real windows reverse-complemented with this chance")
    ap.add_argument("--out", default="outputs/sample_quality")
    ap.add_argument("--plots", action="store_true")
    ap.add_argument("--save-samples", action="store_true", help="write every set as FASTA to --out")
    ap.add_argument("--cache-dir", help="token cache of the genome (default: the package's)")
    run(ap.parse_args())


if __name__ == "__main__":
    main()
