"""Paired comparisons of models on the held-out E. coli test split: is one scoring below another by more than noise?

    OMP_NUM_THREADS=1 python benchmarks/paired_scores.py                # every comparison of COMPARISONS
    python benchmarks/paired_scores.py --table-only                     # the record from the kept scores, nothing run
    python benchmarks/paired_scores.py --pair ecoli_47k:L512:full ecoli_40k:L128:full   # one more, printed

Two test figures with standard errors of ~0.0035 bits/base each cannot tell apart models 0.005 apart: most of
that error is the window-to-window spread of the DNA itself, common to both. Scored on the same bases, the
per-window differences cancel it, and what is left is the NELBO's Monte-Carlo noise and the real difference.

A scoring is ``MODEL[:L<length>][:full][:both][:ctx<C>]``: a shipped model, run folder, ``.ckpt`` or export,
scored by ``recipe.score_test`` (the test split in ``length``-base windows, 16 noise draws per window, the
reference NELBO or the sampler's ``full`` bound, the forward strand or ``both``, and with C bases of context
read in order), or ``markov<K>``: the order-K chain fitted on train, exact, every base given the K before it.
Each window scores a block of ``length - C`` consecutive test bases starting at the split's first base, so two
scorings with other blocks are paired over blocks of their least common multiple (a 512-base window against
its four 128-base ones): the difference of the means over those blocks, and its standard error over them.

Per-window scores are kept in ``benchmarks/paired_windows/`` (a few kB each, committed: a fresh checkout
regenerates the table with ``--table-only``, and a rerun scores only what is missing); the table goes to
``benchmarks/paired_scores.md``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import ROOT, arg_parser, write_record
from recipe import chain_window_bits, paired_difference, score_test

WINDOWS = ROOT / "benchmarks" / "paired_windows"
RECORD = ROOT / "benchmarks" / "paired_scores.md"

# (what the comparison asks, scoring A, scoring B): A - B is reported
COMPARISONS: list[tuple[str, str, str]] = [
    ("512-base windows: ecoli_47k against ecoli_40k, same bases", "ecoli_47k:L512", "ecoli_40k:L128"),
    ("the same, full bounds", "ecoli_47k:L512:full", "ecoli_40k:L128:full"),
    ("ecoli_47k against the order-6 chain (full bound against exact)", "ecoli_47k:L512:full", "markov6"),
    ("ecoli_40k against the order-6 chain (full bound against exact)", "ecoli_40k:L128:full", "markov6"),
    ("both strands: ecoli_40k, reference bound", "ecoli_40k:L128:both", "ecoli_40k:L128"),
    ("both strands: ecoli_40k, full bound", "ecoli_40k:L128:full:both", "ecoli_40k:L128:full"),
    ("both strands: ecoli_47k, full bound", "ecoli_47k:L512:full:both", "ecoli_47k:L512:full"),
    ("256 bases of context, read in order: ecoli_47k, full bound", "ecoli_47k:L512:full:ctx256",
     "ecoli_47k:L512:full"),
]


@dataclass(frozen=True)
class Scoring:
    """One way of scoring one model on the test split."""

    model: str
    length: int = 128
    bound: str = "reference"
    strands: str = "forward"
    context: int = 0

    @property
    def block(self) -> int:
        """The test bases each window scores."""
        return self.length - self.context

    @property
    def chain_order(self) -> int | None:
        match = re.fullmatch(r"markov(\d+)", self.model)
        return int(match.group(1)) if match else None

    @property
    def key(self) -> str:
        """A file name for its per-window scores.

        >>> Scoring.parse("ecoli_47k:L512:full:ctx256").key
        'ecoli_47k_L512_full_forward_ctx256'
        """
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.model).strip("-")
        return f"{name}_L{self.length}_{self.bound}_{self.strands}" + (f"_ctx{self.context}" if self.context else "")

    @classmethod
    def parse(cls, text: str) -> Scoring:
        """``MODEL[:L<length>][:full][:both][:ctx<C>]``.

        >>> Scoring.parse("ecoli_40k:L128:full:both")
        Scoring(model='ecoli_40k', length=128, bound='full', strands='both', context=0)
        >>> Scoring.parse("ecoli:bogus")
        Traceback (most recent call last):
        ...
        ValueError: scoring 'ecoli:bogus': unknown option 'bogus' (L<length>, full, reference, both, forward, ctx<C>)
        """
        model, *options = text.split(":")
        fields: dict = {}
        for opt in options:
            if re.fullmatch(r"L\d+", opt):
                fields["length"] = int(opt[1:])
            elif opt in ("full", "reference"):
                fields["bound"] = opt
            elif opt in ("both", "forward"):
                fields["strands"] = opt
            elif re.fullmatch(r"ctx\d+", opt):
                fields["context"] = int(opt[3:])
            else:
                raise ValueError(f"scoring {text!r}: unknown option {opt!r} "
                                 "(L<length>, full, reference, both, forward, ctx<C>)")
        scoring = cls(model, **fields)
        if not 0 <= scoring.context < scoring.length:
            raise ValueError(f"scoring {text!r}: context {scoring.context} must be below the window {scoring.length}")
        return scoring


def blocks(bits: np.ndarray, block: int, size: int, count: int) -> np.ndarray:
    """Per-window bits/base (windows of ``block`` consecutive bases from the split's start) as means over the first
    ``count`` blocks of ``size`` bases (``size`` a multiple of ``block``); every window scores as many bases, so the
    mean of windows is the mean over bases.

    >>> blocks(np.array([1.0, 3.0, 5.0, 7.0, 9.0]), 128, 256, 2).tolist()
    [2.0, 6.0]
    """
    per = size // block
    return bits[: count * per].reshape(count, per).mean(1)


def paired(a: np.ndarray, block_a: int, b: np.ndarray, block_b: int) -> dict[str, float]:
    """Mean of A - B over the bases both scored (blocks of lcm(block_a, block_b)), its standard error over those
    blocks, and each side's mean over the same bases.

    >>> r = paired(np.array([2.0, 2.2]), 256, np.array([1.0, 1.2, 1.4, 1.6, 9.0]), 128)
    >>> round(r["difference"], 6), round(r["se"], 6), r["blocks"], r["bases"]
    (0.8, 0.1, 2, 512)
    """
    size = math.lcm(block_a, block_b)
    count = min(len(a) * block_a, len(b) * block_b) // size
    if count < 2:
        raise ValueError(f"{count} common block(s) of {size} bases: too few to pair")
    x, y = blocks(a, block_a, size, count), blocks(b, block_b, size, count)
    difference, se = paired_difference(x, y)
    return {"difference": difference, "se": se, "a": float(x.mean()), "b": float(y.mean()), "blocks": count,
            "bases": count * size}


def window_path(scoring: Scoring, t_samples: int) -> Path:
    return WINDOWS / f"{scoring.key}_t{t_samples}.npy"


def window_bits(scoring: Scoring, t_samples: int = 16, run: bool = True) -> np.ndarray | None:
    """A scoring's per-window test bits/base: kept, computed (and kept), or None when ``run`` is false and none is
    kept. A chain needs no draws and is not kept (it is exact and takes seconds)."""
    if scoring.chain_order is not None:
        return chain_window_bits(scoring.block, scoring.chain_order)
    path = window_path(scoring, t_samples)
    if path.exists():
        return np.load(path)
    if not run:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.process_time()
    res = score_test(scoring.model, t_samples, True, scoring.length, save=str(path), bound=scoring.bound,
                     strands=scoring.strands, context=scoring.context)
    print(f"{scoring.key}: {res['bits_per_base']:.4f} +- {res['se']:.4f} over {res['windows']} windows "
          f"({time.process_time() - t0:.0f} CPU-s)", flush=True)
    return np.load(path)


def compare(a: str, b: str, t_samples: int = 16, run: bool = True) -> dict | None:
    """``paired`` for two scoring texts (None when a side has no kept scores and ``run`` is false)."""
    sa, sb = Scoring.parse(a), Scoring.parse(b)
    xa, xb = window_bits(sa, t_samples, run), window_bits(sb, t_samples, run)
    if xa is None or xb is None:
        return None
    return paired(xa, sa.block, xb, sb.block)


def table(comparisons: list[tuple[str, str, str]], t_samples: int = 16, run: bool = True) -> str:
    """The Markdown table of ``comparisons`` (rows without kept scores say so when ``run`` is false)."""
    lines = ["| comparison | A | B | bases paired | A bits/base | B bits/base | A - B (paired) | +- SE | "
             "in SEs |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for what, a, b in comparisons:
        r = compare(a, b, t_samples, run)
        if r is None:
            lines.append(f"| {what} | `{a}` | `{b}` | not scored | | | | | |")
            continue
        lines.append(f"| {what} | `{a}` | `{b}` | {r['bases']:,} | {r['a']:.4f} | {r['b']:.4f} | "
                     f"{r['difference']:+.4f} | {r['se']:.4f} | {r['difference'] / r['se']:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--pair", nargs=2, metavar=("A", "B"), help="only this comparison, printed (A - B)")
    ap.add_argument("--t-samples", type=int, default=16, help="noise draws per test window")
    ap.add_argument("--table-only", action="store_true", help="the record from the kept scores; nothing scored")
    args = ap.parse_args(argv)
    if args.pair:
        print(table([("asked", *args.pair)], args.t_samples, run=not args.table_only))
        return
    body = table(COMPARISONS, args.t_samples, run=not args.table_only)
    print(body)
    write_record(RECORD, "Paired test comparisons (E. coli, last 5 %)", body,
                 note=f"{args.t_samples} noise draws per window, independent across windows and the same for every "
                      "model (a window's noise depends on its index); A and B over the same test bases; the "
                      "chain is exact. Per-window scores: `benchmarks/paired_windows/`.")


if __name__ == "__main__":
    main()
