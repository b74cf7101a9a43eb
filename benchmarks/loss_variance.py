"""How noisy is the training loss estimate? Repeated estimates at fixed weights, by time sampler and time grid.

    python benchmarks/loss_variance.py                         # the shipped model, 32 training windows, 300 draws
    python benchmarks/loss_variance.py --model RUN --batch 64 --repeats 500 --out table.md
    python benchmarks/loss_variance.py --model RUN --steps 1000 --samplers stratified --subs subs no-carry-over neither

One fixed batch of training windows (the first ``--batch`` windows of the training split, in a fresh order
for every draw), one fixed set of weights (the model's EMA weights), and ``--repeats`` independent noise draws
of the training objective, exactly as a training step draws them (``drawn_noise``: the time of each row and
its masking uniforms, keyed by a step number). What varies between rows of the table is only how the times are drawn:

- ``iid``: every row its own uniform time;
- ``lattice``: one uniform offset per batch, strided by 1/G (the MDLM paper's low-discrepancy sampler);
- ``stratified``: one time per stratum [r/G, (r+1)/G), each jittered on its own (the package's default);

in continuous time and with the discrete-time NELBO of T = 1000 steps (``objective.num_steps``). The mean is
the same objective for the three samplers (they are unbiased), so the standard deviation of the estimate is
what they change: the noise in every gradient step. ``--subs subs no-carry-over neither`` scores the same
weights (a model trained without zero masking) under SUBS's variants too (the MDLM paper's other ablation).
Prints a Markdown table (mean and standard deviation
of the per-token loss in nats, its standard error, and the variance relative to iid).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from common import add_model_option, arg_parser

from mdlm_dna import DiffusionLM
from mdlm_dna.api import reference_windows
from mdlm_dna.train.lit_module import TIME_SAMPLING, drawn_noise

# SUBS variants one set of weights can be scored under: (zero masking, carry-over). Weights trained without
# zero masking give all three (with it, x_theta is renormalised without [MASK]); SUBS-trained weights only "subs".
SUBS_VARIANTS = {"subs": (True, True), "no-carry-over": (True, False), "neither": (False, False)}


@contextmanager
def subs_parts(obj, zero_masking: bool, carry_over: bool):
    """Score the objective as if trained with these SUBS parts (the weights stay)."""
    saved = obj.zero_masking, obj.carry_over
    obj.set_subs_parts(zero_masking, carry_over)
    try:
        yield
    finally:
        obj.set_subs_parts(*saved)


def estimates(model: DiffusionLM, x0: torch.Tensor, mode: str, repeats: int, num_steps: int | None,
              key: int = 12345) -> np.ndarray:
    obj = model.objective
    saved = getattr(obj, "time_steps", None)
    obj.time_steps = num_steps
    out = []
    index = torch.arange(x0.shape[0])
    try:
        with torch.no_grad():
            for r in range(repeats):
                # the rows in a fresh order each time, as training windows arrive: with a fixed order the
                # stratified sampler would give row r's window only times in [r/G, (r+1)/G) (another mean)
                perm = torch.randperm(len(x0), generator=torch.Generator().manual_seed(r))
                noise = drawn_noise(index, x0.shape[1], x0.shape[0], mode, key=(key, 0), block_id=r)
                out.append(obj.nelbo(x0[perm], generator=noise).per_token.item())
    finally:
        obj.time_steps = saved
    return np.array(out)


def main(argv: list[str] | None = None) -> str:
    ap = arg_parser(__doc__)
    add_model_option(ap)
    ap.add_argument("--batch", type=int, default=32, help="G: rows of one training batch")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--steps", type=int, nargs="*", default=[0, 1000], help="0: continuous time; T: discrete")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--key", type=int, default=12345, help="seed of the noise draws")
    ap.add_argument("--samplers", nargs="+", default=["iid", "lattice", "stratified"], choices=TIME_SAMPLING,
                    help="the first is the variance ratio's reference")
    ap.add_argument("--subs", nargs="+", default=None, choices=list(SUBS_VARIANTS),
                    help="score the same weights under these SUBS variants (default: as trained)")
    a = ap.parse_args(argv)
    model = DiffusionLM.from_pretrained(a.model, device="cpu")
    if model.objective_name != "mdlm":
        raise SystemExit(f"{a.model}: an {model.objective_name} model; this benchmark is for MDLM")
    x0 = torch.as_tensor(reference_windows(model, model.seq_len, a.batch, split="train"))
    t0 = time.perf_counter()
    obj = model.objective
    trained = [p for p, on in (("zero masking", obj.zero_masking), ("carry-over", obj.carry_over)) if not on]
    if a.subs and obj.zero_masking and a.subs != ["subs"]:
        raise SystemExit(f"{a.model} was trained with zero masking: its [MASK] logit means nothing, so only "
                         "--subs subs applies")
    rows = []
    for variant in a.subs or ["as trained"]:
        parts = subs_parts(obj, *SUBS_VARIANTS[variant]) if variant in SUBS_VARIANTS else nullcontext()
        with parts:
            for steps in a.steps:
                base = None
                for mode in a.samplers:
                    e = estimates(model, x0, mode, a.repeats, steps or None, a.key)
                    base = base if base is not None else e.var(ddof=1)
                    rows.append((variant, ("continuous" if not steps else f"T = {steps}"), mode, e.mean(),
                                 e.std(ddof=1), e.std(ddof=1) / np.sqrt(len(e)), e.var(ddof=1) / base))
    head = (f"model {a.model} ({model.num_parameters / 1e6:.2f} M parameters, EMA weights), one fixed batch of "
            f"{len(x0)} training windows x {x0.shape[1]} bases, {a.repeats} independent noise draws per row; "
            f"{time.perf_counter() - t0:.0f} s on CPU, {torch.get_num_threads()} thread(s)")
    head += f"; trained with SUBS without {' and '.join(trained)}" if trained else "; trained with SUBS"
    lines = [head, "", "| objective | time | sampler | mean loss (nats/token) | sd of one estimate | se of the mean | "
             f"variance vs {a.samplers[0]} |", "|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {v} | {t} | {m} | {mu:.4f} | {sd:.4f} | {se:.4f} | {rel:.3f} |"
              for v, t, m, mu, sd, se, rel in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
