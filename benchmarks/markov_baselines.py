"""Test bits/base of order-k Markov chains on the default E. coli split: the bar a DNA model has to clear.

    python benchmarks/markov_baselines.py                 # k = 0..8, Markdown table, ~15 s on one core
    python benchmarks/markov_baselines.py --max-order 6 --out /tmp/markov.csv

Each chain is fitted on the training split (first 90 % of the record), its add-alpha smoothing is chosen on
the validation split (next 5 %) and it is scored on the test split (last 5 %), the same split as
``python -m mdlm_dna.evaluate``. Compare a model's test bits/base with these rows: the NELBO is an upper bound on
its negative log-likelihood, so a model below a row has provably learned more than that chain.
"""

from __future__ import annotations

import time

import pandas as pd
from common import arg_parser

from mdlm_dna.evaluation.markov import ALPHAS, MarkovChain, ecoli_splits

# issue 16's figures for the same split, for a side-by-side check
REFERENCE = {0: 2.0001, 1: 1.9833, 2: 1.9664, 3: 1.9542, 6: 1.9378}


def markov_table(max_order: int = 8, cache_dir: str | None = None) -> pd.DataFrame:
    """One row per order k = 0..max_order: smoothing alpha, validation and test bits/base, parameter count."""
    splits = ecoli_splits(cache_dir)
    rows = []
    for k in range(max_order + 1):
        t0 = time.perf_counter()
        chain, val = MarkovChain.fit_select_alpha(splits["train"], splits["validation"], k, ALPHAS)
        rows.append({
            "order": k, "alpha": chain.alpha, "validation_bits": val[chain.alpha],
            "test_bits": chain.score(splits["test"]), "reference_test_bits": REFERENCE.get(k, float("nan")),
            "parameters": 3 * 4**k, "seconds": time.perf_counter() - t0,
        })
    table = pd.DataFrame(rows).set_index("order")
    table["best_on_validation"] = table.index == table["validation_bits"].idxmin()
    return table


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["| order k | alpha | validation bits/base | test bits/base | issue 16 | parameters |",
             "|---|---|---|---|---|---|"]
    for k, r in table.iterrows():
        ref = "" if pd.isna(r.reference_test_bits) else f"{r.reference_test_bits:.4f}"
        best = " (best on validation)" if r.best_on_validation else ""
        lines.append(f"| {k}{best} | {r.alpha:g} | {r.validation_bits:.4f} | {r.test_bits:.4f} | {ref} | "
                     f"{r.parameters:,} |")
    return "\n".join(lines)


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--max-order", type=int, default=8)
    ap.add_argument("--out", help="also write the table as CSV here")
    ap.add_argument("--cache-dir", help="token cache of the genome (default: the package's)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    table = markov_table(args.max_order, args.cache_dir)
    print(to_markdown(table))
    best_test = int(table["test_bits"].idxmin())
    print(f"\nbest on test: order {best_test} ({table.loc[best_test, 'test_bits']:.4f} bits/base); "
          f"train = first 90 %, validation = next 5 %, test = last 5 % of NC_000913.3; "
          f"alpha from {ALPHAS}; {time.perf_counter() - t0:.0f} s")
    if args.out:
        table.to_csv(args.out)


if __name__ == "__main__":
    main()
