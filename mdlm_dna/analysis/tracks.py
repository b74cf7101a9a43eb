"""Genome tracks of what the model predicts at every base of BED intervals, as bigWig or bedGraph.

Statistics, from the masked-site conditionals p_i (:mod:`.probs`; each base masked alone in the window of the
training length centred on it, the genome around the interval as context):

- ``surprisal``: -log2 p_i(reference base), bits (high: the model did not expect this base);
- ``entropy``: -sum_b p_i(b) log2 p_i(b), bits (low: the model is sure what belongs here, whatever is there);
- ``logprob``: ln p_i(reference base), nats.

Overlapping intervals are merged (a bigWig holds one value per base); N bases get no value. The format follows
the output's suffix: ``.bw`` / ``.bigwig`` (pyBigWig) or ``.bedgraph`` / ``.bg``.

    >>> from pathlib import Path
    >>> from mdlm_dna import DiffusionLM
    >>> model = DiffusionLM.from_pretrained("ecoli")
    >>> _ = Path("genome.fa").write_text(">chr1\\n" + "TTGACAATTAATCATCGGCTCGTATAATGTGTGG" * 8 + "\\n")
    >>> _ = Path("genes.bed").write_text("chr1\\t10\\t60\\tgeneA\\n")
    >>> track(model, "genome.fa", "genes.bed", stat="surprisal", out="surprisal.bedgraph")
    PosixPath('surprisal.bedgraph')
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mdlm_dna.analysis.probs import Strands, positions_log_probs
from mdlm_dna.analysis.variants import _ids, match_chromosomes, open_fasta
from mdlm_dna.utils.errors import ConfigError, DataError
from mdlm_dna.utils.protocols import LanguageModel
from mdlm_dna.utils.validation import PositiveInt, checked

Stat = Literal["surprisal", "entropy", "logprob"]
STATS = ("surprisal", "entropy", "logprob")
BIGWIG = (".bw", ".bigwig")
BEDGRAPH = (".bedgraph", ".bg")


def statistic(log_probs: np.ndarray, ref_ids: np.ndarray, stat: str) -> np.ndarray:
    """[P] values of ``stat`` from [P, 4] natural log-probabilities (NaN where the reference is not A/C/G/T).

    >>> statistic(np.log(np.full((1, 4), 0.25)), np.array([0]), "surprisal")
    array([2.])
    """
    if stat == "entropy":
        p = np.exp(log_probs)
        return -(p * log_probs).sum(axis=1) / math.log(2.0)
    out = np.full(len(ref_ids), np.nan)
    known = ref_ids < 4
    ref_lp = log_probs[np.flatnonzero(known), ref_ids[known]]
    out[known] = -ref_lp / math.log(2.0) if stat == "surprisal" else ref_lp
    return out


def merged_intervals(bed: str | os.PathLike, contigs: dict[str, int]) -> list[tuple[str, int, int]]:
    """BED intervals as FASTA contig names (``chr`` prefixes matched), sorted in FASTA order, overlaps merged;
    a chromosome not in the FASTA or an end past the contig: one error naming the line."""
    from mdlm_dna.data.bed import read_bed

    intervals = read_bed(bed)
    names = match_chromosomes(sorted({iv.chrom for iv in intervals}), list(contigs))
    order = {c: k for k, c in enumerate(contigs)}
    spans = []
    for iv in intervals:
        contig = names[iv.chrom]
        if contig is None:
            raise DataError(f"{bed}, line {iv.line}: chromosome {iv.chrom!r} is not in the FASTA")
        if iv.end > contigs[contig]:
            raise DataError(f"{bed}, line {iv.line}: end {iv.end:,} is past the end of {contig} "
                            f"(length {contigs[contig]:,})")
        spans.append((order[contig], iv.start, iv.end))
    merged: list[list[int]] = []
    for c, s, e in sorted(spans):
        if merged and merged[-1][0] == c and s <= merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], e)
        else:
            merged.append([c, s, e])
    by_order = list(contigs)
    return [(by_order[c], s, e) for c, s, e in merged]


def track_values(model: LanguageModel, fasta: str | os.PathLike, bed: str | os.PathLike, stat: Stat = "surprisal",
                 strands: Strands = "forward", label: str | int | None = None, batch_size: int = 128,
                 progress: bool | None = None) -> list[tuple[str, int, np.ndarray]]:
    """(contig, start, values [end - start]) per merged interval; NaN at N bases."""
    if stat not in STATS:
        raise ConfigError(f"stat must be one of {', '.join(STATS)}, got {stat!r}")
    genome = open_fasta(fasta)
    contigs = {name: len(genome[name]) for name in genome.keys()}
    out = []
    for contig, s, e in merged_intervals(bed, contigs):
        a, b = max(0, s - model.seq_len), min(contigs[contig], e + model.seq_len)  # context on both sides
        ids = _ids(genome[contig][a:b])
        pos = np.arange(s - a, e - a)
        lp = positions_log_probs(model, ids, pos, strands, label, batch_size, progress)
        out.append((contig, s, statistic(lp, ids[pos], stat)))
    return out


def track_format(out: str | os.PathLike) -> str:
    """The output's suffix, checked: .bw / .bigwig (bigWig) or .bedgraph / .bg (bedGraph)."""
    suffix = Path(out).suffix.lower()
    if suffix not in BIGWIG + BEDGRAPH:
        raise ConfigError(f"out={out}: the track format follows the suffix: .bw / .bigwig or .bedgraph / .bg")
    return suffix


def write_track(values: list[tuple[str, int, np.ndarray]], out: str | os.PathLike, contigs: dict[str, int]) -> Path:
    """bigWig or bedGraph (by suffix) of per-base values; NaN bases are left out."""
    path = Path(out)
    suffix = track_format(path)
    runs = []
    for contig, start, v in values:
        ok = np.isfinite(v)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
        for r0, r1 in zip(edges[::2], edges[1::2]):
            runs.append((contig, start + int(r0), v[r0:r1]))
    if suffix in BIGWIG:
        import pyBigWig

        bw = pyBigWig.open(str(path), "w")
        try:
            bw.addHeader([(c, int(n)) for c, n in contigs.items()])
            for contig, s, v in runs:
                bw.addEntries(contig, s, values=[float(x) for x in v], span=1, step=1)
        finally:
            bw.close()
    else:
        with open(path, "w") as fh:
            for contig, s, v in runs:
                fh.writelines(f"{contig}\t{s + k}\t{s + k + 1}\t{x:.6g}\n" for k, x in enumerate(v))
    return path


@checked
def track(model: Any, fasta: str | os.PathLike, bed: str | os.PathLike, stat: Stat = "surprisal",
          out: str | os.PathLike = "track.bw", strands: Strands = "forward", label: str | int | None = None,
          batch_size: PositiveInt = 128, progress: bool | None = None) -> Path:
    """Compute ``stat`` over the BED intervals of ``fasta`` and write it to ``out`` (bigWig or bedGraph); the
    arguments and ``out`` (its suffix, its folder, not an input) are checked before any work."""
    from mdlm_dna.cli.paths import check_output_file

    if not isinstance(model, LanguageModel):
        raise ConfigError(f"track(): model must be a DiffusionLM (DiffusionLM.from_pretrained(...)), "
                          f"got {type(model).__name__}")
    track_format(out)
    check_output_file(out, "out", [fasta, bed])
    values = track_values(model, fasta, bed, stat, strands, label, batch_size, progress)
    genome = open_fasta(fasta)
    return write_track(values, out, {name: len(genome[name]) for name in genome.keys()})
