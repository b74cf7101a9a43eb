"""Splits of a genome into train / validation / test intervals, and the windows drawn from them.

Training windows are drawn at random positions, but "random" is a pure function
of (seed, sample index): any sample can be recomputed, by any worker or rank,
and a resumed run sees exactly the samples an uninterrupted run would have.
Validation and test windows tile their intervals deterministically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mdlm_dna.data.fasta import Genome
from mdlm_dna.tokenizers import SOFT_MASK_BIT, NucleotideTokenizer, strip_soft_mask

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
                raise ValueError(f"{genome.path}: split names record {n!r}, which is not in the file")
        if set(val_records) & set(test_records):
            raise ValueError(f"records in both validation and test: {set(val_records) & set(test_records)}")
        for r in genome.records:
            split = "validation" if r.name in val_records else "test" if r.name in test_records else "train"
            out[split].append(Interval(r.name, r.offset, r.offset + r.length))
        return out
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"bad split fractions: validation {val_fraction}, test {test_fraction}")
    for r in genome.records:
        a = r.offset + int(round(r.length * (1 - val_fraction - test_fraction)))
        b = r.offset + int(round(r.length * (1 - test_fraction)))
        end = r.offset + r.length
        for split, (s, e) in zip(SPLITS, [(r.offset, a), (a, b), (b, end)]):
            if e > s:
                out[split].append(Interval(r.name, s, e))
    return out


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
            raise ValueError(
                f"{genome.path}: no training interval is at least seq_len={seq_len} bases long "
                f"(longest: {longest}); use a shorter seq_len or a larger genome"
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

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, int(i)))
        for _ in range(100):
            k = int(rng.integers(self.cum[-1]))
            j = int(np.searchsorted(self.cum, k, side="right"))
            pos = self.starts[j] + k - (self.cum[j - 1] if j else 0)
            window = np.asarray(self.genome.ids[pos : pos + self.seq_len])
            if _n_fraction(window) <= self.max_n_fraction:
                break
        else:
            raise RuntimeError(f"{self.genome.path}: 100 draws in a row were mostly N; is the genome mostly N?")
        rc = rng.random() < self.rc_prob
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
        for iv in intervals:
            for s in range(iv.start, iv.end - seq_len + 1, seq_len):
                if _n_fraction(np.asarray(genome.ids[s : s + seq_len])) <= max_n_fraction:
                    starts.append(s)
        if max_windows is not None and len(starts) > max_windows:
            pick = np.linspace(0, len(starts) - 1, max_windows).round().astype(np.int64)
            starts = [starts[i] for i in pick]
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
