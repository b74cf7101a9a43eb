"""BED interval files that say which parts of a genome are train, validation and test.

The HyenaDNA / Caduceus human setup reads ``chrom start end split`` lines (Basenji's
``sequences_human.bed``: labels ``train`` / ``valid`` / ``test``); Borzoi's
``sequences_human.bed.gz`` has the same columns with folds ``fold0`` .. ``fold7`` in the 4th
column. A label is mapped to a split by ``split_map`` (e.g. ``{fold3: test, fold4: validation}``),
then by the usual names (``train``, ``valid``/``val``/``validation``, ``test``), then by
``default_split``; a label none of these covers is an error naming the line, never silently
dropped data. Coordinates are 0-based, half-open, as in every BED file.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mdlm_dna.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_STANDARD = {"train": "train", "training": "train", "valid": "validation", "val": "validation"}
_STANDARD |= {"validation": "validation", "test": "test"}


class BedError(DataError):
    """A BED file cannot be used; the message names the file and, where it applies, the line."""


@dataclass(frozen=True)
class BedInterval:
    chrom: str
    start: int
    end: int
    label: str | None
    line: int  # 1-based line number in the file, for messages

    def __len__(self) -> int:
        return self.end - self.start


def _open(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gz else open(path, encoding="utf-8", errors="replace")


def read_bed(path: str | os.PathLike) -> list[BedInterval]:
    """All intervals of a (gzipped) BED file; ``#``, ``track`` and ``browser`` lines and blank lines are skipped."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"BED file not found: {path}")
    out: list[BedInterval] = []
    try:
        with _open(path) as fh:
            for n, line in enumerate(fh, 1):
                s = line.strip()
                if not s or s.startswith(("#", "track", "browser")):
                    continue
                cols = s.split("\t") if "\t" in s else s.split()
                if len(cols) < 3:
                    raise BedError(f"{path}, line {n}: expected at least 3 columns (chrom start end), got {s[:80]!r}")
                chrom = cols[0].strip()
                try:
                    start, end = int(cols[1]), int(cols[2])
                except ValueError:
                    raise BedError(f"{path}, line {n}: start and end must be integers, got {s[:80]!r}") from None
                if start < 0 or end <= start:
                    raise BedError(f"{path}, line {n}: need 0 <= start < end, got start={start}, end={end}")
                label = cols[3].strip() if len(cols) > 3 and cols[3].strip() else None
                out.append(BedInterval(chrom, start, end, label, n))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise BedError(f"{path}: cannot be read as (gzipped) text: {e}") from None
    if not out:
        raise BedError(f"{path}: no intervals (the file is empty or only comments)")
    return out


def split_of(label: str | None, split_map: Mapping[str, str] | None, default_split: str | None) -> str | None:
    """The split a label belongs to, or None when nothing maps it."""
    if label is not None and split_map and label in split_map:
        return split_map[label]
    if label is not None and label.lower() in _STANDARD:
        return _STANDARD[label.lower()]
    return default_split


def assign_splits(
    intervals: list[BedInterval],
    path: str | os.PathLike,
    split_map: Mapping[str, str] | None = None,
    default_split: str | None = None,
) -> dict[str, list[BedInterval]]:
    """Group intervals by split. An interval no rule maps is an error that names its line."""
    for target in [*(split_map or {}).values(), default_split]:
        if target is not None and target not in SPLITS:
            raise BedError(f"{path}: split_map / default_split name {target!r}; splits are {SPLITS}")
    out: dict[str, list[BedInterval]] = {s: [] for s in SPLITS}
    for iv in intervals:
        split = split_of(iv.label, split_map, default_split)
        if split is None:
            what = f"label {iv.label!r}" if iv.label is not None else "no 4th column (split label)"
            raise BedError(
                f"{path}, line {iv.line}: {what} is not mapped to a split; add it to genome.split_map "
                f"(e.g. {{{iv.label or 'LABEL'}: train}}) or set genome.default_split"
            )
        out[split].append(iv)
    return out


def check_against_genome(
    intervals: list[BedInterval],
    path: str | os.PathLike,
    lengths: Mapping[str, int],
    missing_chroms: str = "error",
) -> list[BedInterval]:
    """Intervals that lie on the genome's records; ``missing_chroms``: ``error`` or ``skip`` (with a warning)."""
    if missing_chroms not in ("error", "skip"):
        raise ConfigError(f"genome.missing_chroms must be 'error' or 'skip', got {missing_chroms!r}")
    kept, skipped = [], {}
    for iv in intervals:
        n = lengths.get(iv.chrom)
        if n is None:
            if missing_chroms == "error":
                raise BedError(
                    f"{path}, line {iv.line}: chromosome {iv.chrom!r} is not in the genome "
                    f"(records: {sorted(lengths)[:10]}...); set genome.missing_chroms=skip to leave such lines out"
                )
            skipped[iv.chrom] = skipped.get(iv.chrom, 0) + 1
            continue
        if iv.end > n:
            raise BedError(
                f"{path}, line {iv.line}: {iv.chrom}:{iv.start}-{iv.end} ends past the chromosome ({n:,} bp)"
            )
        kept.append(iv)
    if skipped:
        log.warning(
            "%s: %d interval(s) on chromosomes not in the genome left out: %s", path, sum(skipped.values()), skipped
        )
    if not kept:
        raise BedError(f"{path}: no interval lies on a chromosome of the genome ({sorted(lengths)[:10]})")
    return kept
