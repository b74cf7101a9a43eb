"""Ancestral vs cached ancestral sampling: samples/s and network evaluations per sample, by number of steps T.

    OMP_NUM_THREADS=1 python benchmarks/bench_samplers.py [--length 128 --batch 8 --steps 128 512 1000]

The model is a tiny DiT without time conditioning (random weights: speed does not depend on training),
so the cache is exact and both samplers give the same samples. Once T exceeds the sequence length most
steps unmask nothing, and the cached sampler skips the network for them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mdlm_dna.diffusion.mdlm import MDLM  # noqa: E402
from mdlm_dna.diffusion.noise import LogLinear  # noqa: E402
from mdlm_dna.diffusion.samplers import AncestralSampler, CachedAncestralSampler, masked_init  # noqa: E402
from mdlm_dna.models.dit import DiT, DiTConfig  # noqa: E402
from mdlm_dna.tokenizers import NucleotideTokenizer  # noqa: E402


def tiny_model(d_model: int, n_layers: int) -> MDLM:
    torch.manual_seed(0)
    tok = NucleotideTokenizer()
    dit = DiT(DiTConfig(vocab_size=tok.vocab_size, d_model=d_model, n_layers=n_layers, n_heads=2, cond_dim=32,
                        time_conditioning=False))
    with torch.no_grad():
        for p in dit.parameters():
            p.normal_(0.0, 0.2)
    never = tok.special_ids_not_in_data
    return MDLM(dit, LogLinear(), mask_id=tok.mask_id, pad_id=tok.pad_id, never_predict=never).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, nargs="+", default=[128, 512, 1000])
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=2)
    args = ap.parse_args()
    model = tiny_model(args.d_model, args.n_layers)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny DiT ({n_params / 1e3:.0f} k parameters, no time conditioning), batch {args.batch} x {args.length} "
          f"bases, CPU, {torch.get_num_threads()} thread(s)\n")
    print(f"| {'T':>5} | {'sampler':<9} | {'samples/s':>9} | {'network calls':>13} | {'evals / sample':>14} | "
          f"{'speed-up':>8} | {'same samples':>12} |")
    print("|" + "|".join("-" * w for w in (7, 11, 11, 15, 16, 10, 14)) + "|")
    x = masked_init(args.batch, args.length, model.mask_id)
    for T in args.steps:
        res = {}
        for name, sampler in (("ancestral", AncestralSampler(T)), ("cached", CachedAncestralSampler(T))):
            t0 = time.perf_counter()
            out = sampler(model, x, torch.Generator().manual_seed(0))
            res[name] = (out, time.perf_counter() - t0)
        same = torch.equal(res["ancestral"][0].ids, res["cached"][0].ids)
        for name, (out, sec) in res.items():
            speed = res["ancestral"][1] / sec
            print(f"| {T:>5} | {name:<9} | {args.batch / sec:>9.2f} | {out.network_calls:>13} | "
                  f"{out.evals_per_sample:>14.1f} | {speed:>7.2f}x | {str(same) if name == 'cached' else '':>12} |")


if __name__ == "__main__":
    main()
