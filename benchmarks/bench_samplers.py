"""Ancestral vs cached ancestral sampling: samples/s and network evaluations per sample, by number of steps T.

    OMP_NUM_THREADS=1 python benchmarks/bench_samplers.py [--length 128 --batch 8 --steps 128 512 1000]
    python benchmarks/bench_samplers.py --device cuda --bf16 --length 1024 --batch 64 --steps 1000 10000 \\
        --d-model 256 --n-layers 4 --n-heads 4 --budget 60 --json rows.json      # what gpu_suite/sampling.py runs

The model is a DiT without time conditioning (random weights: speed does not depend on training),
so the cache is exact and both samplers give the same samples (on a GPU under bf16, a forward pass over a
subset of the rows may round differently, so "same samples" can be false there without a bug). Once T
exceeds the sequence length most steps unmask nothing, and the cached sampler skips the network for them.

``expected``: the cached sampler's network evaluations per sample that the loop should make, from the
schedule alone: 1 + (T - 1) (1 - (1 - 1/T)^L) (the first step, plus every later step whose predecessor
unmasked at least one of the L tokens; under the log-linear schedule each token unmasks in each step with
probability ~1/T). The measured column must agree within sampling noise (MDLM paper, section on caching).
With ``--budget``, an ancestral run whose predicted time (its per-step time at a smaller T, times T) would
overrun what is left is not started; its row gives the prediction, and the cached row a predicted speed-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
from common import sync_device

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.mdlm import MDLM
from mdlm_dna.diffusion.noise import LogLinear
from mdlm_dna.diffusion.samplers import AncestralSampler, CachedAncestralSampler, masked_init
from mdlm_dna.models.dit import DiT, DiTConfig


def tiny_model(d_model: int, n_layers: int, n_heads: int = 2) -> MDLM:
    torch.manual_seed(0)
    tok = NucleotideTokenizer()
    dit = DiT(DiTConfig(vocab_size=tok.vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads, cond_dim=32,
                        time_conditioning=False))
    with torch.no_grad():
        for p in dit.parameters():
            p.normal_(0.0, 0.2)
    never = tok.special_ids_not_in_data
    return MDLM(dit, LogLinear(), mask_id=tok.mask_id, pad_id=tok.pad_id, never_predict=never).eval()


def expected_cached_evals(T: int, L: int) -> float:
    """Expected network evaluations per sample of the cached sampler: 1 + (T - 1)(1 - (1 - 1/T)^L)."""
    return 1.0 + (T - 1) * (1.0 - (1.0 - 1.0 / T) ** L)


def measure(model: MDLM, length: int, batch: int, steps: list[int], device: torch.device, bf16: bool = False,
            budget: float | None = None, on_row=None) -> list[dict]:
    """Both samplers at each T, the same seed for both; one row per (T, sampler)."""
    x = masked_init(batch, length, model.mask_id).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    start, per_step, rows = time.perf_counter(), {}, []
    for T in steps:
        res, pair = {}, {}
        # the cached sampler first: it is the cheaper one, and the ancestral time is the easier to predict
        for name, sampler in (("cached", CachedAncestralSampler(T)), ("ancestral", AncestralSampler(T))):
            row = pair[name] = {"T": T, "sampler": name, "batch": batch, "L": length}
            left = None if budget is None else budget - (time.perf_counter() - start)
            # an ancestral step costs the same at any T; a cached one gets cheaper as T grows, so only
            # the ancestral prediction is tight enough to skip a run on
            predicted = per_step[name] * T if name == "ancestral" and name in per_step else None
            if left is not None and (left <= 0 or (predicted is not None and predicted > left)):
                row["error"] = f"skipped: predicted {predicted or float('nan'):.0f} s, {max(left, 0):.0f} s left"
                row["predicted s"] = predicted
                continue
            g = torch.Generator(device=device).manual_seed(0)
            sync_device(device)
            t0 = time.perf_counter()
            with autocast:
                out = sampler(model, x, g)
            sync_device(device)
            sec = time.perf_counter() - t0
            per_step[name] = sec / T
            res[name] = (out.ids, sec)
            row.update({"seconds": sec, "samples/s": batch / sec, "network calls": out.network_calls,
                        "evals/sample": out.evals_per_sample,
                        "expected": expected_cached_evals(T, length) if name == "cached" else float(T)})
        if len(res) == 2:
            pair["cached"].update({"speed-up": res["ancestral"][1] / res["cached"][1],
                                   "same samples": torch.equal(res["ancestral"][0], res["cached"][0])})
        elif "cached" in res and pair["ancestral"].get("predicted s"):
            pair["cached"]["speed-up (predicted)"] = pair["ancestral"]["predicted s"] / res["cached"][1]
        rows += [pair["ancestral"], pair["cached"]]
        if on_row:
            on_row(rows)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, nargs="+", default=[128, 512, 1000])
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--n-heads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the network")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole table (see above)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here (after every T)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    model = tiny_model(args.d_model, args.n_layers, args.n_heads).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"DiT ({n_params / 1e6:.2f} M parameters, no time conditioning, random weights), batch {args.batch} x "
          f"{args.length} bases, {where}{', bf16 autocast' if args.bf16 else ''}\n")

    def save(rows: list[dict]) -> None:
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))

    rows = measure(model, args.length, args.batch, args.steps, device, args.bf16, args.budget, on_row=save)
    save(rows)
    print(f"| {'T':>5} | {'sampler':<9} | {'samples/s':>9} | {'network calls':>13} | {'evals / sample':>14} | "
          f"{'expected':>8} | {'speed-up':>8} | {'same samples':>12} |")
    print("|" + "|".join("-" * w for w in (7, 11, 11, 15, 16, 10, 10, 14)) + "|")
    for r in rows:
        if "error" in r:
            print(f"| {r['T']:>5} | {r['sampler']:<9} | {r['error']} |")
            continue
        speed = (f"{r['speed-up']:>7.2f}x" if "speed-up" in r else
                 f"~{r['speed-up (predicted)']:>6.2f}x" if "speed-up (predicted)" in r else f"{'':>8}")
        same = str(r["same samples"]) if "same samples" in r else ""
        print(f"| {r['T']:>5} | {r['sampler']:<9} | {r['samples/s']:>9.2f} | {r['network calls']:>13} | "
              f"{r['evals/sample']:>14.1f} | {r['expected']:>8.1f} | {speed} | {same:>12} |")
    return rows


if __name__ == "__main__":
    main()
