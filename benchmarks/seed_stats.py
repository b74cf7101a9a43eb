"""Runs over seeds: means with 95 % Student-t intervals (their CSV record: ``common.read_runs`` / ``append_run``)."""

from __future__ import annotations

import math
import statistics

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


def mean_sd_text(values: list[float]) -> tuple[str, str]:
    """A table's two cells for runs over seeds: "mean ± sd" (the mean alone for one run) and the 95 % t-interval
    ("-" for one run).

    >>> mean_sd_text([0.5, 0.7])
    ('0.600 ± 0.141', '-0.671 .. 1.871')
    >>> mean_sd_text([0.5])
    ('0.500', '-')
    """
    mean, sd, half = interval(values)
    spread = "" if math.isnan(sd) else f" ± {sd:.3f}"
    span = "-" if math.isnan(half) else f"{mean - half:.3f} .. {mean + half:.3f}"
    return f"{mean:.3f}{spread}", span
