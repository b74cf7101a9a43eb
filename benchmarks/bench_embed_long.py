"""Embedding one long sequence: windows of the training length (what ``embed`` does) vs the whole sequence at once.

    OMP_NUM_THREADS=1 python benchmarks/bench_embed_long.py [--model ecoli] [--lengths 1000 4000 16000 100000]
        [--whole-max 16000] [--out benchmarks/embed_long.csv]

For each length, a random A/C/G/T sequence (seed 0) is embedded with ``DiffusionLM.embed`` (tiled: windows of the
training length overlapping by half) and, up to ``--whole-max``, by one backbone call over the whole sequence
(what ``embed`` did before: full attention, quadratic in the length). Seconds are the best of ``--repeats``
runs on this machine's CPU; the record (CSV) names the machine's thread count. The whole-sequence run also
reports how far its features are from the tiled ones (they differ: the network never saw such lengths).
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pandas as pd
import torch
from common import add_model_option, arg_parser, time_calls

from mdlm_dna import DiffusionLM


def main() -> None:
    ap = arg_parser(__doc__)
    add_model_option(ap)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1000, 4000, 16000, 100000])
    ap.add_argument("--whole-max", type=int, default=16000, help="longest sequence embedded whole")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/embed_long.csv")
    args = ap.parse_args()
    m = DiffusionLM.from_pretrained(args.model, device="cpu")
    rng = np.random.default_rng(0)
    rows = []
    for n in args.lengths:
        seq = "".join(rng.choice(list("ACGT"), n))
        tiled = time_calls(lambda s=seq: m.embed([s], pooling=None, progress=False)[0], args.repeats)
        row = {"model": args.model, "window": m.seq_len, "length": n, "tiled_s": round(tiled.best, 3),
               "whole_s": None, "whole_vs_tiled_max_abs": None}
        if n <= args.whole_max:
            ids = torch.tensor([m.encode(seq)])
            with torch.no_grad():
                whole = time_calls(lambda x=ids: m.backbone.hidden_states(x)[0].float().numpy(), args.repeats)
            row.update(whole_s=round(whole.best, 3),
                       whole_vs_tiled_max_abs=float(np.abs(whole.result - tiled.result).max()))
        row.update(threads=torch.get_num_threads(), omp=os.environ.get("OMP_NUM_THREADS"), cpu=platform.processor()
                   or platform.machine())
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
