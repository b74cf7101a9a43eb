"""Sequence-quality metrics for generated DNA, compared with real held-out windows.

All functions take sequences as a list of strings or an integer id array [N, L] (A=0 C=1 G=2 T=3 N=4).
Distances between distributions are Jensen-Shannon distances (base 2, in [0, 1]): 0 for identical
spectra, 1 for disjoint ones. The baselines (uniform random sequence, real sequence with its bases
shuffled) put a number on "far": a model should beat uniform on every k, and beat shuffled on k >= 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mdlm_dna.tokenizers import NucleotideTokenizer

KS = (1, 2, 3, 4, 5, 6)
MAX_RUN = 20  # homopolymer runs longer than this are counted as MAX_RUN

SeqsLike = Sequence[str] | np.ndarray


def to_ids(seqs: SeqsLike) -> list[np.ndarray]:
    """Sequences -> list of int64 id arrays (strings are tokenized: lower case, IUPAC -> N)."""
    if isinstance(seqs, np.ndarray):
        return [np.asarray(r, dtype=np.int64) for r in (seqs if seqs.ndim == 2 else seqs[None])]
    tok = NucleotideTokenizer()
    out = []
    for s in seqs:
        out.append(np.asarray(tok.encode(s) if isinstance(s, str) else s, dtype=np.int64))
    return out


def gc_content(seqs: SeqsLike) -> np.ndarray:
    """Per-sequence G+C fraction among the A/C/G/T bases (N excluded); NaN for a sequence without bases."""
    out = []
    for r in to_ids(seqs):
        acgt = r[r < 4]
        out.append(np.isin(acgt, (1, 2)).mean() if acgt.size else np.nan)
    return np.asarray(out, dtype=np.float64)


def n_fraction(seqs: SeqsLike) -> float:
    """Fraction of positions that are not A/C/G/T (N, or anything else) over all sequences."""
    ids = to_ids(seqs)
    total = sum(len(r) for r in ids)
    return float(sum(int((r >= 4).sum()) for r in ids) / max(1, total))


def kmer_counts(seqs: SeqsLike, k: int) -> np.ndarray:
    """Counts of the 4^k k-mers (base-4 codes, A=0 ... T=3) over all sequences; k-mers with N are skipped."""
    counts = np.zeros(4**k, dtype=np.int64)
    for r in to_ids(seqs):
        if len(r) < k:
            continue
        ok = r < 4
        code = np.zeros(len(r) - k + 1, dtype=np.int64)
        valid = np.ones(len(r) - k + 1, dtype=bool)
        for j in range(k):
            code = code * 4 + np.where(ok, r, 0)[j : len(r) - k + 1 + j]
            valid &= ok[j : len(r) - k + 1 + j]
        counts += np.bincount(code[valid], minlength=4**k)
    return counts


def kmer_spectrum(seqs: SeqsLike, k: int) -> np.ndarray:
    """k-mer frequencies (sum to 1; uniform if there is no valid k-mer)."""
    c = kmer_counts(seqs, k).astype(np.float64)
    return c / c.sum() if c.sum() else np.full(len(c), 1.0 / len(c))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2: sqrt(JSD) in [0, 1]."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return float(np.sqrt(max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))))


def homopolymer_runs(seqs: SeqsLike, max_run: int = MAX_RUN) -> np.ndarray:
    """Distribution of maximal same-base run lengths (A/C/G/T only): counts[n] = runs of length n, n = 1..max_run."""
    counts = np.zeros(max_run + 1, dtype=np.int64)
    for r in to_ids(seqs):
        if not len(r):
            continue
        change = np.flatnonzero(np.diff(r) != 0) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [len(r)]]))
        bases = r[starts]
        counts += np.bincount(np.minimum(lengths[bases < 4], max_run), minlength=max_run + 1)
    return counts


def uniform_random(num: int, length: int, seed: int = 0) -> np.ndarray:
    """Baseline: i.i.d. uniform A/C/G/T."""
    return np.random.default_rng(seed).integers(0, 4, size=(num, length))


def shuffled(seqs: SeqsLike, seed: int = 0) -> list[np.ndarray]:
    """Baseline: each sequence's own bases in random order (same composition, no k-mer structure for k >= 2)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(r) for r in to_ids(seqs)]


def sequence_metrics(generated: SeqsLike, reference: SeqsLike, ks: Sequence[int] = KS) -> dict[str, float]:
    """One table row: composition of ``generated`` and its distances to ``reference``."""
    gen_gc, ref_gc = gc_content(generated), gc_content(reference)
    has_gc = bool(np.isfinite(gen_gc).any()) and bool(np.isfinite(ref_gc).any())
    row = {
        "num": len(to_ids(generated)),
        "gc_mean": float(np.nanmean(gen_gc)) if has_gc else float("nan"),
        "gc_std": float(np.nanstd(gen_gc)) if has_gc else float("nan"),
        "gc_abs_diff": abs(float(np.nanmean(gen_gc)) - float(np.nanmean(ref_gc))) if has_gc else float("nan"),
        "n_fraction": n_fraction(generated),
    }
    for k in ks:
        row[f"js_k{k}"] = js_distance(kmer_spectrum(generated, k), kmer_spectrum(reference, k))
    g, r = homopolymer_runs(generated)[1:], homopolymer_runs(reference)[1:]
    row["homopolymer_js"] = js_distance(g + 1e-12, r + 1e-12) if g.sum() and r.sum() else float("nan")
    row["homopolymer_mean"] = float((np.arange(1, len(g) + 1) * g).sum() / max(1, g.sum()))
    row["longest_homopolymer"] = float(max((np.flatnonzero(g)[-1] + 1) if g.sum() else 0, 0))
    return row


def metrics_table(generated: dict[str, SeqsLike], reference: SeqsLike, ks: Sequence[int] = KS,
                  baselines: bool = True, seed: int = 0) -> pd.DataFrame:
    """Rows: each generated set and, with ``baselines``, reference rows of the same size as the first set.

    JS distances between k-mer spectra shrink with the number of sequences (sparse 5- and 6-mer counts), so the
    baselines have as many sequences as the (first) generated set: ``real (held-out subset)``, that many real
    windows against the remaining ones (the floor a perfect generator reaches), ``uniform random`` and
    ``shuffled real`` (composition right, no k-mer structure). ``real (reference itself)`` is 0 by construction.
    """
    ref = to_ids(reference)
    rows = {name: sequence_metrics(seqs, ref, ks) for name, seqs in generated.items()}
    if baselines:
        n = len(to_ids(next(iter(generated.values())))) if generated else len(ref) // 2
        n = max(1, min(n, len(ref) // 2))
        length = int(np.median([len(r) for r in ref]))
        pick = np.random.default_rng(seed).permutation(len(ref))
        held, rest = [ref[i] for i in pick[:n]], [ref[i] for i in pick[n:]]
        rows["real (reference itself)"] = sequence_metrics(ref, ref, ks)
        if rest:
            rows["real (held-out subset)"] = sequence_metrics(held, rest, ks)
        rows["uniform random"] = sequence_metrics(uniform_random(n, length, seed), ref, ks)
        rows["shuffled real"] = sequence_metrics(shuffled(held, seed), ref, ks)
    return pd.DataFrame.from_dict(rows, orient="index")


def plot_kmer_spectrum(generated: SeqsLike, reference: SeqsLike, k: int, path: str | Path, label: str = "generated"):
    """Scatter of k-mer frequencies, real (x) vs generated (y); on the diagonal is perfect."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, safe in scripts and notebooks

    r, g = kmer_spectrum(reference, k), kmer_spectrum(generated, k)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.scatter(r, g, s=6, alpha=0.6)
    hi = max(r.max(), g.max()) * 1.05
    ax.plot([0, hi], [0, hi], "k--", lw=0.8)
    ax.set(xlabel=f"real {k}-mer frequency", ylabel=f"{label} {k}-mer frequency",
           title=f"{k}-mer spectrum (JS distance {js_distance(g, r):.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_gc_distribution(sets: dict[str, SeqsLike], path: str | Path, bins: int = 30):
    """Histograms of per-sequence GC content of each named set."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, safe in scripts and notebooks

    fig = Figure(figsize=(5.5, 3.5))
    ax = fig.add_subplot()
    for name, seqs in sets.items():
        gc = gc_content(seqs)
        ax.hist(gc[np.isfinite(gc)], bins=bins, range=(0, 1), alpha=0.5, density=True, label=name)
    ax.set(xlabel="GC content", ylabel="density", title="GC content per sequence")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
