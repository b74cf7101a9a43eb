"""Splits of a genome into train / validation / test intervals, and the windows drawn from them.

Splits come from a BED file of labelled intervals (:func:`bed_splits`), from whole records
(chromosome-level), or from the end of every record (:func:`split_genome`).

Training windows are drawn at random positions, but "random" is a pure function
of (seed, sample index): any sample can be recomputed, by any worker or rank,
and a resumed run sees exactly the samples an uninterrupted run would have.
Validation and test windows tile their intervals deterministically.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mdlm_dna.data.bed import BedError, BedInterval, assign_splits, check_against_genome, read_bed
from mdlm_dna.data.fasta import Genome
from mdlm_dna.data.tokenizers import SOFT_MASK_BIT, NucleotideTokenizer, strip_soft_mask
from mdlm_dna.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Interval:
    """Half-open [start, end) on the flat id array of a genome, inside one record."""

    record: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def split_genome(
    genome: Genome,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    val_records: Sequence[str] = (),
    test_records: Sequence[str] = (),
) -> dict[str, list[Interval]]:
    """Non-overlapping train / validation / test intervals.

    With ``val_records`` / ``test_records`` the split is by record (chromosome).
    Otherwise every record is cut in three consecutive pieces: the first
    ``1 - val - test`` for training, then validation, then test (for E. coli:
    90 % / 5 % / 5 %).
    """
    out: dict[str, list[Interval]] = {s: [] for s in SPLITS}
    if val_records or test_records:
        names = {r.name for r in genome.records}
        for n in [*val_records, *test_records]:
            if n not in names:
                raise DataError(f"{genome.path}: genome.val_records / test_records name {n!r}, not in the file")
        if both := set(val_records) & set(test_records):
            raise ConfigError(f"records in both genome.val_records and genome.test_records: {sorted(both)}")
        for r in genome.records:
            split = "validation" if r.name in val_records else "test" if r.name in test_records else "train"
            out[split].append(Interval(r.name, r.offset, r.offset + r.length))
        return out
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"genome.val_fraction={val_fraction} and genome.test_fraction={test_fraction}: each must be in [0, 1) "
            "and their sum below 1"
        )
    for r in genome.records:
        a = r.offset + int(round(r.length * (1 - val_fraction - test_fraction)))
        b = r.offset + int(round(r.length * (1 - test_fraction)))
        end = r.offset + r.length
        for split, (s, e) in zip(SPLITS, [(r.offset, a), (a, b), (b, end)]):
            if e > s:
                out[split].append(Interval(r.name, s, e))
    return out


SPLIT_OVERLAP_RULES = ("error", "subtract")


def bed_splits(
    genome: Genome,
    bed_path: str | os.PathLike,
    split_map: Mapping[str, str] | None = None,
    default_split: str | None = None,
    missing_chroms: str = "error",
    merge: bool = True,
    split_overlaps: str = "error",
) -> dict[str, list[Interval]]:
    """Train / validation / test intervals from a BED file (HyenaDNA / Caduceus / Borzoi style).

    The 4th column is mapped to a split (see :mod:`mdlm_dna.data.bed`); every interval is
    checked against its chromosome's length. With ``merge`` (default), overlapping or touching
    intervals of the same split are merged: Borzoi's 196 kb windows overlap each other (10.9 Gb of
    intervals on a 3.1 Gb genome), and unmerged, bases covered by several intervals would be
    drawn several times as often and tiled several times for validation. Bases in intervals of two
    splits would be trained on and then measured as held out: ``split_overlaps="error"`` (default)
    refuses such a file, naming two of its lines; ``"subtract"`` removes the held-out bases from
    train (and test bases from validation) and says how many. Intervals are on the genome's flat id
    array: sorted by position when merged, in file order otherwise.
    """
    if split_overlaps not in SPLIT_OVERLAP_RULES:
        raise ConfigError(f"genome.split_overlaps must be one of {SPLIT_OVERLAP_RULES}, got {split_overlaps!r}")
    bed = check_against_genome(read_bed(bed_path), bed_path, genome.lengths(), missing_chroms)
    offsets = {r.name: r.offset for r in genome.records}
    by_split = assign_splits(bed, bed_path, split_map, default_split)
    out = {
        split: [Interval(iv.chrom, offsets[iv.chrom] + iv.start, offsets[iv.chrom] + iv.end) for iv in ivs]
        for split, ivs in by_split.items()
    }
    merged = {split: merge_intervals(ivs) for split, ivs in out.items()}
    if shared := cross_split_overlap(merged):
        a, b = first_cross_split_pair(by_split)
        if split_overlaps == "error":
            raise BedError(
                f"{bed_path}: line {a.line} ({a.chrom}:{a.start}-{a.end}, {a.split}) and line {b.line} "
                f"({b.chrom}:{b.start}-{b.end}, {b.split}) overlap by {min(a.end, b.end) - b.start:,} bp; in all "
                f"{shared:,} bp are in intervals of more than one split, so held-out figures would be measured on "
                "training data. Fix the file, or set genome.split_overlaps=subtract to remove the held-out bases "
                "from train (and the test bases from validation)"
            )
        before = {split: sum(map(len, ivs)) for split, ivs in merged.items()}
        out["validation"] = subtract_intervals(out["validation"], merged["test"])
        out["train"] = subtract_intervals(out["train"], merged["validation"] + merged["test"])
        merged = {split: merge_intervals(ivs) for split, ivs in out.items()}
        log.warning(
            "%s: %s bp were in intervals of more than one split; split_overlaps=subtract removed %s bp from train "
            "and %s bp from validation", bed_path, f"{shared:,}",
            f"{before['train'] - sum(map(len, merged['train'])):,}",
            f"{before['validation'] - sum(map(len, merged['validation'])):,}",
        )  # fmt: skip
    if merge:
        out = merged
    log.info(
        "%s: %s", bed_path, ", ".join(f"{k} {len(v):,} intervals, {sum(map(len, v)):,} bp" for k, v in out.items())
    )
    return out


def merge_intervals(intervals: Sequence[Interval]) -> list[Interval]:
    """Overlapping or touching intervals of one record merged into one; sorted by position."""
    out: list[Interval] = []
    for iv in sorted(intervals, key=lambda iv: (iv.start, iv.end)):
        if out and out[-1].record == iv.record and iv.start <= out[-1].end:
            if iv.end > out[-1].end:
                out[-1] = Interval(iv.record, out[-1].start, iv.end)
        else:
            out.append(iv)
    return out


def subtract_intervals(intervals: Sequence[Interval], remove: Sequence[Interval]) -> list[Interval]:
    """The parts of ``intervals`` outside every interval of ``remove`` (flat coordinates), in the same order."""
    cuts = merge_intervals(remove)
    starts = [c.start for c in cuts]
    out = []
    for iv in intervals:
        pos = iv.start
        for c in cuts[max(0, bisect.bisect_right(starts, iv.start) - 1) :]:
            if c.start >= iv.end:
                break
            if c.end > pos:
                if c.start > pos:
                    out.append(Interval(iv.record, pos, c.start))
                pos = c.end
        if pos < iv.end:
            out.append(Interval(iv.record, pos, iv.end))
    return out


@dataclass(frozen=True)
class _Labelled:
    chrom: str
    start: int
    end: int
    split: str
    line: int


def first_cross_split_pair(by_split: Mapping[str, Sequence[BedInterval]]) -> tuple[_Labelled, _Labelled]:
    """Two BED lines of different splits that overlap (the first by position), for the error message."""
    items = sorted(
        (_Labelled(iv.chrom, iv.start, iv.end, split, iv.line) for split, ivs in by_split.items() for iv in ivs),
        key=lambda x: (x.chrom, x.start, x.end),
    )
    reach: dict[str, _Labelled] = {}  # per split, the interval reaching furthest on this chromosome so far
    for x in items:
        if reach and next(iter(reach.values())).chrom != x.chrom:
            reach = {}
        for split, prev in reach.items():
            if split != x.split and prev.end > x.start:
                return prev, x
        if x.split not in reach or x.end > reach[x.split].end:
            reach[x.split] = x
    raise ValueError("no two splits overlap")


def cross_split_overlap(splits: Mapping[str, Sequence[Interval]]) -> int:
    """Bases that lie in intervals of two or more splits (each split's intervals already merged)."""
    events = sorted((p, d) for ivs in splits.values() for iv in ivs for p, d in ((iv.start, 1), (iv.end, -1)))
    shared, depth, last = 0, 0, 0
    for pos, d in events:
        if depth >= 2:
            shared += pos - last
        depth, last = depth + d, pos
    return shared


SHORT_INTERVAL_RULES = ("drop", "expand")


def fit_intervals(genome: Genome, intervals: Sequence[Interval], seq_len: int, rule: str = "drop") -> list[Interval]:
    """Apply the rule for intervals shorter than ``seq_len``; longer ones are kept as they are.

    ``drop``: leave them out (windows never leave their interval; the default).
    ``expand``: grow them to exactly ``seq_len`` around their centre, shifted to stay inside the
    chromosome (HyenaDNA's rule, without its padding); the extra bases may belong to a
    neighbouring interval of another split. Intervals on a chromosome shorter than
    ``seq_len`` are dropped under either rule.
    """
    if rule not in SHORT_INTERVAL_RULES:
        raise ConfigError(f"genome.short_intervals must be one of {SHORT_INTERVAL_RULES}, got {rule!r}")
    recs = {r.name: r for r in genome.records}
    out, dropped = [], 0
    for iv in intervals:
        if len(iv) >= seq_len:
            out.append(iv)
            continue
        r = recs[iv.record]
        if rule == "drop" or r.length < seq_len:
            dropped += 1
            continue
        start = iv.start - (seq_len - len(iv)) // 2
        start = min(max(start, r.offset), r.offset + r.length - seq_len)
        out.append(Interval(iv.record, start, start + seq_len))
    if dropped:
        log.warning("%d interval(s) shorter than seq_len=%d left out (short_intervals=%s)", dropped, seq_len, rule)
    return out


def evenly_spaced(n: int, k: int | None) -> list[int] | range:
    """``k`` evenly spaced indices of ``range(n)`` (all of them when ``k`` is None or at least ``n``)."""
    if not k or k >= n:
        return range(n)
    return np.linspace(0, n - 1, int(k)).round().astype(np.int64).tolist()


def _n_fraction(window: np.ndarray) -> float:
    return float(np.count_nonzero(strip_soft_mask(window) == NucleotideTokenizer.N)) / max(1, len(window))


class RandomWindows(Dataset):
    """``num_samples`` windows of ``seq_len`` at random positions of the training intervals.

    Sample ``i`` depends only on ``(seed, i)``. Positions are uniform over all
    valid window starts (intervals weighted by their number of starts);
    windows with more than ``max_n_fraction`` N are redrawn; each window is
    reverse-complemented with probability ``rc_prob``.
    """

    def __init__(
        self,
        genome: Genome,
        intervals: Sequence[Interval],
        seq_len: int,
        num_samples: int,
        seed: int = 0,
        rc_prob: float = 0.0,
        max_n_fraction: float = 0.5,
        keep_soft_mask: bool = False,
    ):
        usable = [iv for iv in intervals if len(iv) >= seq_len]
        if not usable:
            longest = max((len(iv) for iv in intervals), default=0)
            raise DataError(
                f"{genome.path}: no training interval is at least seq_len={seq_len} bases long "
                f"(longest: {longest}); use a shorter data.seq_len or a larger genome"
            )
        if len(usable) < len(intervals):
            log.warning(
                "%d training interval(s) shorter than seq_len=%d are not used", len(intervals) - len(usable), seq_len
            )
        self.genome, self.seq_len, self.num_samples = genome, seq_len, num_samples
        self.seed, self.rc_prob, self.max_n_fraction = seed, rc_prob, max_n_fraction
        self.keep_soft_mask = keep_soft_mask
        self.starts = np.array([iv.start for iv in usable], dtype=np.int64)
        n_starts = np.array([len(iv) - seq_len + 1 for iv in usable], dtype=np.int64)
        self.cum = np.cumsum(n_starts)
        self.tokenizer = NucleotideTokenizer()

    def __len__(self) -> int:
        return self.num_samples

    def _draw(self, i: int) -> tuple[int, bool, np.ndarray]:
        rng = np.random.default_rng((self.seed, int(i)))
        for _ in range(100):
            k = int(rng.integers(self.cum[-1]))
            j = int(np.searchsorted(self.cum, k, side="right"))
            pos = int(self.starts[j] + k - (self.cum[j - 1] if j else 0))
            window = np.asarray(self.genome.ids[pos : pos + self.seq_len])
            if _n_fraction(window) <= self.max_n_fraction:
                break
        else:
            raise DataError(
                f"{self.genome.path}: 100 random training windows in a row had more than data.max_n_fraction="
                f"{self.max_n_fraction} N; the training intervals are (almost) all N: check the file, or raise "
                "data.max_n_fraction"
            )
        return pos, bool(rng.random() < self.rc_prob), window

    def position(self, i: int) -> tuple[int, bool]:
        """Where sample ``i`` starts on the flat id array, and whether it is reverse-complemented."""
        pos, rc, _ = self._draw(i)
        return pos, rc

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        _, rc, window = self._draw(i)
        return _to_item(window, rc, self.keep_soft_mask)


class TiledWindows(Dataset):
    """Non-overlapping windows tiling the intervals, mostly-N windows left out.

    A trailing piece shorter than ``seq_len`` is dropped. ``max_windows`` keeps
    an evenly spaced subset, so validation cost is bounded and still the same
    windows every run.
    """

    def __init__(
        self,
        genome: Genome,
        intervals: Sequence[Interval],
        seq_len: int,
        max_windows: int | None = None,
        max_n_fraction: float = 0.5,
        keep_soft_mask: bool = False,
    ):
        starts = []
        self.mostly_n = 0  # whole windows left out for their N (to tell "all N" from "too short")
        for iv in intervals:
            k = len(iv) // seq_len  # whole windows in this interval, read at once (hg38: ~1 GB per split)
            if k == 0:
                continue
            tiles = strip_soft_mask(np.asarray(genome.ids[iv.start : iv.start + k * seq_len])).reshape(k, seq_len)
            n_frac = np.count_nonzero(tiles == NucleotideTokenizer.N, axis=1) / seq_len
            keep = np.flatnonzero(n_frac <= max_n_fraction)
            self.mostly_n += k - len(keep)
            starts.extend((iv.start + seq_len * keep).tolist())
        starts = [starts[i] for i in evenly_spaced(len(starts), max_windows)]
        self.genome, self.seq_len, self.keep_soft_mask = genome, seq_len, keep_soft_mask
        self.starts = np.array(starts, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        return _to_item(np.asarray(self.genome.ids[s : s + self.seq_len]), False, self.keep_soft_mask)


_COMPLEMENT = np.array(NucleotideTokenizer.complement_ids, dtype=np.uint8)


def _to_item(window: np.ndarray, rc: bool, keep_soft_mask: bool) -> dict[str, torch.Tensor]:
    ids = strip_soft_mask(window)
    soft = (window & SOFT_MASK_BIT) != 0
    if rc:
        ids, soft = _COMPLEMENT[ids][::-1], soft[::-1]
    item = {"input_ids": torch.from_numpy(ids.astype(np.int64))}
    if keep_soft_mask:
        item["soft_mask"] = torch.from_numpy(np.ascontiguousarray(soft))
    return item


class ResumableSampler(Sampler[int]):
    """Sequential indices into :class:`RandomWindows`, sharded across ranks, that skips what was consumed.

    Epoch ``e`` covers sample indices ``[e * n, (e + 1) * n)``. When an
    iterator is created it asks ``progress()`` how many samples (over all
    ranks) this epoch has already consumed, so that a run resumed mid-epoch
    continues with the next unseen batch instead of starting the epoch over.
    """

    def __init__(
        self,
        num_samples: int,
        rank: int = 0,
        world_size: int = 1,
        progress: Callable[[int], int] | None = None,
    ):
        self.n, self.rank, self.world = num_samples, rank, world_size
        self.progress = progress
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _start(self) -> int:
        done = self.progress(self.epoch) if self.progress else 0
        return min(max(0, done), self.n)

    def __iter__(self) -> Iterator[int]:
        base = self.epoch * self.n
        start = self._start()
        return iter(range(base + start + self.rank, base + self.n, self.world))

    def __len__(self) -> int:
        # the whole epoch's share, also when resuming: Lightning keeps counting batches from where it stopped
        return len(range(self.rank, self.n, self.world))
