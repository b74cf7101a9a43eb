"""Sequence-quality metrics for generated DNA, compared with real held-out windows.

All functions take sequences as a list of strings or an integer id array [N, L] (A=0 C=1 G=2 T=3 N=4).
Distances between distributions are Jensen-Shannon distances (base 2, in [0, 1]): 0 for identical
spectra, 1 for disjoint ones. The baselines (uniform random sequence, real sequence with its bases
shuffled) put a number on "far": a model should beat uniform on every k, and beat shuffled on k >= 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mdlm_dna.data.tokenizers import SOFT_MASK_BIT, NucleotideTokenizer

KS = (1, 2, 3, 4, 5, 6)
MAX_RUN = 20  # homopolymer runs longer than this are counted as MAX_RUN

SeqLike = str | np.ndarray
SeqsLike = Sequence[SeqLike] | np.ndarray


def to_ids(seqs: SeqLike | SeqsLike) -> list[np.ndarray]:
    """One sequence or many (strings, id arrays, an [N, L] array) -> list of int64 id arrays. Strings are tokenized
    (lower case, IUPAC -> N); the soft-mask bit of cached uint8 genome ids is cleared.

    >>> [r.tolist() for r in to_ids("ACGn")], len(to_ids(np.zeros((3, 5), dtype=np.int64)))
    ([[0, 1, 2, 4]], 3)
    """
    if isinstance(seqs, str) or (isinstance(seqs, np.ndarray) and seqs.ndim == 1):
        seqs = [seqs]
    tok = NucleotideTokenizer()
    out = []
    for s in seqs:
        if isinstance(s, str):
            out.append(np.asarray(tok.encode(s), dtype=np.int64))
            continue
        a = np.asarray(s)
        if a.dtype == np.uint8:
            a = a & ~np.uint8(SOFT_MASK_BIT)
        out.append(a.astype(np.int64))
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


# ---------------------------------------------------------------------------------------------------------------
# Coding signal: open reading frames and codon usage. E. coli is ~88 % coding: real windows hold long ORFs with a
# skewed codon usage, which a low-order Markov chain cannot produce (a stop codon every ~21 codons at random).
# ---------------------------------------------------------------------------------------------------------------

CODONS = tuple(a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT")  # index = base-4 code, A=0 ... T=3
START_CODON = CODONS.index("ATG")
STOP_CODONS = tuple(CODONS.index(c) for c in ("TAA", "TAG", "TGA"))  # standard genetic code (NCBI table 1)
MIN_ORF_CODONS = 30
LONG_ORF_CODONS = 100  # at random a stop comes every ~21 codons: ORFs this long are mostly genes
_COMPLEMENT_IDS = np.array([3, 2, 1, 0, 4], dtype=np.int64)


@dataclass(frozen=True)
class Orf:
    """An open reading frame: ATG .. first in-frame stop, on either strand.

    ``start``/``end`` are half-open forward-strand coordinates, stop codon included when ``complete``;
    ``frame`` is the start's offset modulo 3 counted from the 5' end of its own strand; a partial ORF
    (``complete=False``) runs from its ATG to the end of the sequence without a stop (whole codons only).
    """

    start: int
    end: int
    strand: str
    frame: int
    complete: bool = True

    @property
    def codons(self) -> int:
        """Length in codons, ATG and stop codon included."""
        return (self.end - self.start) // 3


def _codon_codes(r: np.ndarray, frame: int) -> np.ndarray:
    """Codon codes (0..63) of ``r`` read from ``frame``; -1 for a codon with N."""
    n = (len(r) - frame) // 3
    c = r[frame : frame + 3 * n].reshape(n, 3)
    code = c[:, 0] * 16 + c[:, 1] * 4 + c[:, 2]
    return np.where((c < 4).all(axis=1), code, -1)


def _orfs_one_strand(r: np.ndarray, include_partial: bool) -> list[tuple[int, int, int, bool, np.ndarray]]:
    """(frame, first codon, end codon (exclusive), complete, codon codes of the frame) per ORF of one strand.

    Per stop codon, the ORF starts at the first ATG after the previous in-frame stop: the longest ORF
    ending at that stop; ATGs inside it (nested starts) do not make further ORFs.
    """
    out = []
    for f in range(3):
        cod = _codon_codes(r, f)
        if not len(cod):
            continue
        starts = np.flatnonzero(cod == START_CODON)
        stops = np.flatnonzero(np.isin(cod, STOP_CODONS))
        if not len(starts):
            continue
        prev = np.concatenate([[-1], stops[:-1]]).astype(np.int64)
        j = np.searchsorted(starts, prev + 1)
        a = starts[np.minimum(j, len(starts) - 1)]
        ok = (j < len(starts)) & (a < stops)
        out.extend((f, int(s), int(e) + 1, True, cod) for s, e in zip(a[ok], stops[ok]))
        if include_partial:
            last = stops[-1] if len(stops) else -1
            j = np.searchsorted(starts, last + 1)
            if j < len(starts):
                out.append((f, int(starts[j]), len(cod), False, cod))
    return out


def _orf_scan(r: np.ndarray, include_partial: bool = False):
    """Both strands of one id array -> [(Orf, codon codes of the ORF on its strand)]."""
    L = len(r)
    rc = reverse_complement_ids(r)
    out = []
    for strand, seq in (("+", r), ("-", rc)):
        for f, a, e, complete, cod in _orfs_one_strand(seq, include_partial):
            s0, s1 = f + 3 * a, f + 3 * e  # on this strand
            start, end = (s0, s1) if strand == "+" else (L - s1, L - s0)
            out.append((Orf(start, end, strand, f, complete), cod[a:e]))
    return out


def find_orfs(seq: str | np.ndarray, min_codons: int = 1, include_partial: bool = False) -> list[Orf]:
    """ORFs (ATG .. TAA/TAG/TGA) of at least ``min_codons`` codons in all six frames, sorted by start.

    ``include_partial`` adds, per frame, the ORF that starts after the last stop and runs off the end.
    """
    r = to_ids([seq])[0]
    orfs = [o for o, _ in _orf_scan(r, include_partial) if o.codons >= min_codons]
    return sorted(orfs, key=lambda o: (o.start, o.end, o.strand))


def orf_stats(seqs: SeqsLike, min_codons: int = MIN_ORF_CODONS, include_partial: bool = False) -> dict:
    """ORFs of >= ``min_codons`` codons over a set of sequences.

    Returns ``lengths`` (codons, one per ORF), ``codon_counts`` (64 counts of the codons inside those
    ORFs, read on their own strand, ATG and stop included), ``per_kb`` (ORFs per 1,000 bases),
    ``mean_codons`` and ``coverage`` (fraction of bases inside at least one ORF, either strand).
    """
    lengths, counts = [], np.zeros(64, dtype=np.int64)
    covered = total = 0
    for r in to_ids(seqs):
        diff = np.zeros(len(r) + 1, dtype=np.int64)
        for o, cod in _orf_scan(r, include_partial):
            if o.codons < min_codons:
                continue
            lengths.append(o.codons)
            counts += np.bincount(cod[cod >= 0], minlength=64)
            diff[o.start] += 1
            diff[o.end] -= 1
        covered += int((np.cumsum(diff[:-1]) > 0).sum())
        total += len(r)
    lengths = np.asarray(lengths, dtype=np.int64)
    return {
        "lengths": lengths, "codon_counts": counts, "per_kb": 1000 * len(lengths) / max(1, total),
        "mean_codons": float(lengths.mean()) if len(lengths) else float("nan"), "coverage": covered / max(1, total),
    }


def codon_usage(seqs: SeqsLike, min_codons: int = MIN_ORF_CODONS) -> np.ndarray:
    """Codon frequencies (64, sum 1) inside the ORFs of >= ``min_codons`` codons; uniform if there is none."""
    c = orf_stats(seqs, min_codons)["codon_counts"].astype(np.float64)
    return c / c.sum() if c.sum() else np.full(64, 1 / 64)


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs, in [0, 1]."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if not len(a) or not len(b):
        return float("nan")
    x = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, x, "right") / len(a) - np.searchsorted(b, x, "right") / len(b)).max())


# ---------------------------------------------------------------------------------------------------------------
# Novelty (does a sample copy the training genome?) and diversity (do samples copy each other?)
# ---------------------------------------------------------------------------------------------------------------


def reverse_complement_ids(r: np.ndarray) -> np.ndarray:
    """The reverse complement of base ids 0..4 (A<->T, C<->G, N stays N) along the last axis (rows of a 2-D array)."""
    return _COMPLEMENT_IDS[np.minimum(r[..., ::-1], 4)]


def _kmer_codes(r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """uint64 codes (first base most significant, 2 bits a base) of the k-mer at every position of ``r``, read
    with A past the end and for N; and whether that k-mer is whole (inside ``r``) and free of N."""
    n = len(r)
    bad = np.concatenate([r >= 4, np.ones(k - 1, dtype=bool)])
    pad = np.concatenate([np.where(r >= 4, 0, r), np.zeros(k - 1, dtype=np.int64)]).astype(np.uint64)
    code = np.zeros(n, dtype=np.uint64)
    invalid = np.zeros(n, dtype=bool)
    for j in range(k):
        code = (code << np.uint64(2)) | pad[j : j + n]
        invalid |= bad[j : j + n]
    return code, ~invalid


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of uint64 values (0 for 0), exact: frexp of each 32-bit half (exact in float64)."""
    hi = np.frexp((x >> np.uint64(32)).astype(np.float64))[1]
    lo = np.frexp((x & np.uint64(0xFFFFFFFF)).astype(np.float64))[1]
    return np.where(hi > 0, 32 + hi, lo).astype(np.int64)


class GenomeIndex:
    """Sorted k-mer codes (k <= 32) of a genome's both strands: longest exact matches of query sequences.

    The longest common prefix of a query k-mer with any genome k-mer is that with one of its two
    neighbours in sorted order, so one binary search gives every query position's match length up
    to k; matches of k or more are then extended base by base from their left-maximal hits (as many
    occurrences per k-mer as ``max_hits``). K-mers of the genome that contain N are not indexed.
    Building the index for E. coli's 4.2 Mb training split (8.4 M k-mers) takes a few seconds.
    """

    def __init__(self, seqs: SeqsLike, k: int = 32, both_strands: bool = True, max_hits: int = 64):
        if not 1 <= k <= 32:
            raise ValueError(f"k must be in 1..32, got {k}")
        parts = [np.asarray(r, dtype=np.int64) & 0x7F for r in to_ids(seqs)]  # soft-mask bit off
        if both_strands:
            parts += [reverse_complement_ids(r) for r in parts]
        sep = np.full(1, 4, dtype=np.int64)  # an N between parts: no match runs across
        self.text = np.concatenate([x for r in parts for x in (r, sep)]).astype(np.uint8)
        self.k, self.max_hits = k, max_hits
        codes, valid = _kmer_codes(self.text.astype(np.int64), k)
        pos = np.flatnonzero(valid)
        order = np.argsort(codes[pos], kind="stable")
        self.codes, self.pos = codes[pos][order], pos[order]

    def matching_statistics(self, seq: str | np.ndarray) -> np.ndarray:
        """For every position i, the length of the longest prefix of seq[i:] found in the genome, capped at k."""
        r = to_ids([seq])[0]
        n, k = len(r), self.k
        if not n or not len(self.codes):
            return np.zeros(n, dtype=np.int64)
        code, _ = _kmer_codes(r, k)
        j = np.searchsorted(self.codes, code)
        best = np.zeros(n, dtype=np.int64)
        for nb in (np.maximum(j - 1, 0), np.minimum(j, len(self.codes) - 1)):
            best = np.maximum(best, (2 * k - _bit_length(code ^ self.codes[nb])) // 2)
        # no match runs past the end of the query or through an N
        nxt_n = np.minimum.accumulate(np.where(r >= 4, np.arange(n), n)[::-1])[::-1]
        return np.minimum(best, np.minimum(n - np.arange(n), nxt_n - np.arange(n)))

    def longest_match(self, seq: str | np.ndarray) -> int:
        """Length of the longest substring of ``seq`` that occurs in the genome (either strand)."""
        r = to_ids([seq])[0]
        return self._longest(r, self.matching_statistics(r))

    def _longest(self, r: np.ndarray, ms: np.ndarray) -> int:
        best = int(ms.max()) if len(ms) else 0
        if best < self.k:
            return best
        hits = np.flatnonzero(ms == self.k)
        code, _ = _kmer_codes(r, self.k)
        lo = np.searchsorted(self.codes, code[hits], "left")
        cnt = np.minimum(np.searchsorted(self.codes, code[hits], "right") - lo, self.max_hits)
        hit = np.repeat(hits, cnt)
        p = self.pos[np.repeat(lo, cnt) + np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)]
        left_max = (hit == 0) | (p == 0) | (self.text[np.maximum(p - 1, 0)] != r[np.maximum(hit - 1, 0)])
        for i, q in zip(hit[left_max], p[left_max]):
            m = min(len(r) - i, len(self.text) - q)
            ne = np.flatnonzero(self.text[q : q + m] != r[i : i + m])
            best = max(best, int(ne[0]) if len(ne) else m)
        return best

    def novelty(self, seqs: SeqsLike) -> tuple[np.ndarray, np.ndarray]:
        """Per sequence: the longest exact match to the genome, and the fraction of its N-free k-mers found in
        the genome (1 for a copy, ~0 for novel DNA; NaN for a sequence shorter than k)."""
        longest, identity = [], []
        for r in to_ids(seqs):
            ms = self.matching_statistics(r)
            longest.append(self._longest(r, ms))
            n = len(r) - self.k + 1
            _, whole = _kmer_codes(r, self.k)
            ok = whole[: max(n, 0)]
            identity.append((ms[: max(n, 0)][ok] == self.k).mean() if ok.any() else np.nan)
        return np.asarray(longest, dtype=np.int64), np.asarray(identity, dtype=np.float64)


def distinct_kmer_fraction(seqs: SeqsLike, k: int = 32) -> float:
    """Distinct k-mers / all k-mers over the set: 1 when no k-mer repeats within or across samples."""
    codes = []
    for r in to_ids(seqs):
        c, ok = _kmer_codes(r, k)
        codes.append(c[ok])
    allc = np.concatenate(codes) if codes else np.zeros(0, dtype=np.uint64)
    return len(np.unique(allc)) / len(allc) if len(allc) else float("nan")


def pairwise_kmer_distance(seqs: SeqsLike, k: int = 4, max_pairs: int = 8192, seed: int = 0) -> float:
    """Mean JS distance between the k-mer spectra of two samples of the set (all pairs, or ``max_pairs`` at random).

    Low values flag a generator whose samples all look alike (mode collapse); compare with the real rows.
    """
    spec = np.stack([kmer_spectrum([r], k) for r in to_ids(seqs)])
    n = len(spec)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, 1)
    if len(i) > max_pairs:
        pick = np.random.default_rng(seed).choice(len(i), max_pairs, replace=False)
        i, j = i[pick], j[pick]
    p, q = spec[i], spec[j]
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda a: np.where(a > 0, a * np.log2(a / m), 0.0).sum(axis=1)
        jsd = 0.5 * kl(p) + 0.5 * kl(q)
    return float(np.sqrt(np.maximum(jsd, 0)).mean())


# ---------------------------------------------------------------------------------------------------------------
# The sample-quality table (benchmarks/sample_quality.py, the notebook)
# ---------------------------------------------------------------------------------------------------------------

QUALITY_COLUMNS = {
    **{f"js_k{k}": f"JS distance of the {k}-mer spectrum to the real test windows (0 = identical)" for k in KS},
    "gc_mean": "mean GC content per sample",
    "gc_sd": "spread (standard deviation) of GC content between samples",
    "homopolymer_js": "JS distance of the homopolymer run-length distribution to the real test windows",
    "longest_homopolymer": "longest single-base run in the set (capped at 20)",
    "orf_per_kb": "open reading frames (ATG..stop, 6 frames) of at least the minimum length per 1,000 bases",
    "orf_mean_codons": "mean length of those ORFs, in codons",
    "orf_coverage": "fraction of bases inside such an ORF on either strand (E. coli is ~88 % coding)",
    "orf100_coverage": "fraction of bases inside an ORF of at least 100 codons (mostly real genes)",
    "orf_len_ks": "Kolmogorov-Smirnov distance between the ORF length distribution and the real one",
    "codon_js": "JS distance of codon usage inside those ORFs to codon usage in real ORFs",
    "match_median": "median over samples of the longest exact match to the training genome (either strand)",
    "match_max": "longest exact match of any sample to the training genome",
    "id32": "fraction of the samples' 32-mers found in the training genome (1 = copied)",
    "distinct32": "distinct 32-mers / all 32-mers in the set (below 1: samples repeat themselves or each other)",
    "pairwise_js4": "mean JS distance between two samples' 4-mer spectra (low = samples all alike)",
}


def sample_quality_row(generated: SeqsLike, reference: SeqsLike, index: GenomeIndex | None = None,
                       min_orf_codons: int = MIN_ORF_CODONS, ref_orfs: dict | None = None,
                       diversity_seqs: SeqsLike | None = None,
                       long_orf_codons: int = LONG_ORF_CODONS) -> dict[str, float]:
    """One row of the sample-quality table: ``generated`` against the real ``reference`` set.

    ``index`` (the training genome) adds the novelty columns; ``ref_orfs`` is ``orf_stats(reference)``
    when already computed; ``diversity_seqs`` replaces ``generated`` for the diversity columns (real
    windows that overlap their neighbours are passed without the overlap).
    """
    gen = to_ids(generated)
    base = sequence_metrics(gen, reference)
    row = {"num": base["num"], **{f"js_k{k}": base[f"js_k{k}"] for k in KS}, "gc_mean": base["gc_mean"],
           "gc_sd": base["gc_std"], "homopolymer_js": base["homopolymer_js"],
           "longest_homopolymer": base["longest_homopolymer"]}
    ro = ref_orfs if ref_orfs is not None else orf_stats(reference, min_orf_codons)
    go = orf_stats(gen, min_orf_codons)
    row.update({
        "orf_per_kb": go["per_kb"], "orf_mean_codons": go["mean_codons"], "orf_coverage": go["coverage"],
        "orf100_coverage": orf_stats(gen, long_orf_codons)["coverage"],
        "orf_len_ks": ks_distance(go["lengths"], ro["lengths"]),
        "codon_js": js_distance(go["codon_counts"], ro["codon_counts"]) if go["codon_counts"].sum() else float("nan"),
    })
    if index is not None:
        lm, ident = index.novelty(gen)
        row.update({"match_median": float(np.median(lm)), "match_max": float(lm.max()),
                    "id32": float(np.nanmean(ident)) if index.k == 32 else float("nan")})
    div = gen if diversity_seqs is None else to_ids(diversity_seqs)
    row.update({"distinct32": distinct_kmer_fraction(div, 32), "pairwise_js4": pairwise_kmer_distance(div, 4)})
    return row


def js_counting_noise(k: int, n1: int, n2: int) -> float:
    """Expected JS distance between the k-mer spectra of two samples of n1 and n2 k-mers from one distribution.

    Second-order expansion: JSD ~ sum_i (p_i - q_i)^2 / (8 m_i) nats, whose mean is (4^k - 1)(1/n1 + 1/n2) / 8;
    a set closer than this to the reference cannot be told apart from it by this column.
    """
    return float(np.sqrt((4**k - 1) * (1 / n1 + 1 / n2) / (8 * np.log(2))))


def plot_kmer_spectra(sets: dict[str, SeqsLike], reference: SeqsLike, k: int, path: str | Path):
    """Scatter of k-mer frequencies of each named set (y) against the real reference (x); the diagonal is perfect."""
    from matplotlib.figure import Figure

    r = kmer_spectrum(reference, k)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    hi = r.max()
    for name, seqs in sets.items():
        g = kmer_spectrum(seqs, k)
        hi = max(hi, g.max())
        ax.scatter(r, g, s=8, alpha=0.6, label=f"{name} (JS {js_distance(g, r):.3f})")
    ax.plot([0, hi * 1.05], [0, hi * 1.05], "k--", lw=0.8)
    ax.set(xlabel=f"real {k}-mer frequency (test split)", ylabel=f"{k}-mer frequency in the set",
           title=f"{k}-mer spectrum against real DNA")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_orf_lengths(sets: dict[str, SeqsLike], path: str | Path, min_codons: int = MIN_ORF_CODONS):
    """Survival curves of ORF length (ORFs per kb at least that long): long ORFs are what random DNA lacks."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    for name, seqs in sets.items():
        ids = to_ids(seqs)
        st = orf_stats(ids, min_codons)
        kb = sum(len(r) for r in ids) / 1000
        x = np.sort(st["lengths"])
        ax.step(x, (len(x) - np.arange(len(x))) / kb, where="post", label=name)
    ax.set(xlabel="ORF length (codons)", ylabel="ORFs per kb at least this long", yscale="log",
           title=f"ORF length (ATG..stop, both strands, >= {min_codons} codons)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
