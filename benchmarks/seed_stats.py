"""Runs over seeds: their CSV record (one row per finished run, so an interrupted table resumes) and means
with 95 % Student-t intervals."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

# two-sided 95 % Student-t quantiles by degrees of freedom (df > 30: normal)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (the nearest tabulated df below)."""
    known = [d for d in T975 if d <= df]
    return T975[max(known)] if df <= 30 else 1.960


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean, standard deviation and the half-width of the 95 % t-interval (nan with one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    sd = statistics.stdev(values)
    return mean, sd, t_quantile(len(values) - 1) * sd / math.sqrt(len(values))


def read_runs(path: Path) -> list[dict]:
    """The recorded runs (values as strings); none when the file does not exist yet."""
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def append_run(path: Path, row: dict, fields: list[str]) -> None:
    """Record one finished run; the header goes in with the first row."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow(row)
