"""How long the order-k chain's posterior (``model.markov_order``) takes on a CPU: the Numba kernel over the states
the visible bases allow against the dense torch path over all 4**k states, by masking rate.

    OMP_NUM_THREADS=1 python benchmarks/bench_chain_posterior.py [--order 6 --repeats 5]

Every training step, validation batch and scoring draw of a chain model computes this for its whole batch (the
training batches' masking rates follow the noise schedule: "uniform" draws one rate per row from U(0, 1), as the
MDLM objective's times do). Random chain and bases (the work does not depend on them); the two backends' outputs are
checked to agree. Writes benchmarks/chain_posterior_cpu.md and prints the table: seconds per batch, the best of
``--repeats`` calls (the least disturbed on a shared machine) and the median.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from common import arg_parser, time_calls, write_record

from mdlm_dna.models.markov_prior import MarkovPosterior

RECORD = Path(__file__).with_name("chain_posterior_cpu.md")
SHAPES = ((32, 128), (8, 512), (64, 128))  # a default training batch, the 512-base recipe's, an evaluation batch
RATES = ("0.1", "0.5", "0.9", "uniform")


def masked_batch(rows: int, length: int, rate: str, rng: np.random.Generator) -> torch.Tensor:
    """Random bases with a fraction ``rate`` masked (id 5), or each row's own U(0, 1) fraction."""
    ids = rng.integers(0, 4, (rows, length))
    frac = rng.random((rows, 1)) if rate == "uniform" else np.full((rows, 1), float(rate))
    ids[rng.random((rows, length)) < frac] = 5
    return torch.tensor(ids)


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--order", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    prior = MarkovPosterior(args.order)
    prior.load_chain(rng.dirichlet(np.ones(4), size=4**args.order), rng.integers(1, 100, 4**args.order), alpha=1.0)
    lines = ["| batch x bases | masked | torch, dense (s) best / median | numba (s) best / median | speed-up (best) |",
             "| --- | --- | ---: | ---: | ---: |"]
    for rows, length in SHAPES:
        for rate in RATES:
            ids = masked_batch(rows, length, rate, rng)
            times = {}
            for backend in ("torch", "numba"):
                prior.backend = backend
                times[backend] = time_calls(lambda ids=ids: prior(ids), repeats=args.repeats, warmup=1)
            dense, sparse = times["torch"].result.exp(), times["numba"].result.exp()
            if not torch.allclose(dense, sparse, atol=1e-5):
                raise SystemExit(f"backends disagree at {rows} x {length}, masked {rate}")
            d, s = times["torch"], times["numba"]
            lines.append(f"| {rows} x {length} | {rate} | {min(d.seconds):.4f} / {d.middle:.4f} | "
                         f"{min(s.seconds):.4f} / {s.middle:.4f} | {min(d.seconds) / min(s.seconds):.1f}x |")
    body = "\n".join(lines)
    write_record(RECORD, f"The order-{args.order} chain's posterior on a CPU, per batch",
                 body, note=f"torch threads: {torch.get_num_threads()}.")
    print(body)


if __name__ == "__main__":
    main()
