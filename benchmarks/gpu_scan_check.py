"""GPU-side correctness of the Triton selective scan: compiled kernels at real sizes, not the interpreter.

    python benchmarks/gpu_scan_check.py            # needs a CUDA device and triton; mamba-ssm optional
    TRITON_INTERPRET=1 python benchmarks/gpu_scan_check.py --device cpu --tiny   # smoke test (seconds)
    python benchmarks/gpu_scan_check.py --backends cuda --json rows.json   # mamba-ssm only; rows also as JSON

For each shape and dtype: output, last state and every input gradient of the Triton scan against the
chunked torch scan in float64 on the same GPU (itself checked against the sequential reference in
tests/test_selective_scan.py), with mamba-ssm's tolerances (float32 rtol 6e-4 / atol 2e-3, bfloat16
3e-2 / 5e-2) on the error relative to the largest entry of each tensor, and the same for mamba-ssm's kernel
when it imports. Prints a table; exits 1 if any row fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch
from common import arg_parser

from mdlm_dna.models.selective_scan import SCAN_KERNEL, selective_scan

TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}
SHAPES = [  # batch, D, L, N, groups
    (2, 64, 1, 16, None),
    (2, 96, 1000, 16, None),  # L not a multiple of any tile
    (2, 128, 4099, 4, None),
    (1, 64, 2048, 64, None),
    (2, 128, 1024, 16, 4),  # grouped B/C
    (8, 1536, 1024, 16, None),  # the benchmark's shapes
    (1, 512, 131072, 16, None),
]
TINY_SHAPES = [(1, 4, 37, 4, None), (2, 4, 20, 4, 2)]  # what the Triton interpreter runs in seconds


def inputs(b, d, L, n, groups, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=torch.float32)

    bc = (b, n, L) if groups is None else (b, groups, n, L)
    x = {"u": r(b, d, L), "delta": r(b, d, L) - 2.0, "A": -(torch.rand(d, n, generator=g, device=device) * 3 + 0.1),
         "B": r(*bc), "C": r(*bc), "D": r(d), "z": r(b, d, L), "delta_bias": r(d) * 0.5}
    for k in ("u", "delta", "B", "C", "z"):
        x[k] = x[k].to(dtype)
    return x


def run(x, scan):
    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    y = scan(leaves)
    w = torch.randn(y.shape, generator=torch.Generator(device=y.device).manual_seed(1), device=y.device)
    grads = torch.autograd.grad((y.float() * w).sum(), list(leaves.values()))
    return {"out": y.detach(), **{f"d{k}": g for k, g in zip(leaves, grads)}}


def max_rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def check(device: str = "cuda", max_elements: float = 2e8, backends: list[str] | None = None,
          shapes: list[tuple] = SHAPES) -> list[dict]:
    """One row per (backend, shape, dtype): the worst tensor's error and whether every tensor is within tolerance.

    ``backends`` defaults to triton, plus cuda (mamba-ssm) when its kernel imports; asking for cuda without
    the kernel gives a single failed row saying so, so that a caller's table shows it."""
    from mdlm_dna.models.triton_scan import selective_scan_fn

    fns = {"triton": lambda v: selective_scan_fn(**v, delta_softplus=True),
           "cuda": lambda v: selective_scan(**v, delta_softplus=True, backend="cuda")}
    if backends is None:
        backends = ["triton"] + (["cuda"] if SCAN_KERNEL.get() is not None else [])
    rows: list[dict] = []
    if "cuda" in backends and SCAN_KERNEL.get() is None:
        rows.append({"backend": "cuda", "ok": False, "error": "mamba_ssm's selective_scan_fn does not import"})
        backends = [b for b in backends if b != "cuda"]
    for b, d, L, n, groups in shapes:
        if b * d * L > max_elements:
            continue
        for dtype in (torch.float32, torch.bfloat16):
            x = inputs(b, d, L, n, groups, dtype, device)
            ref = run({k: v.double() for k, v in x.items()},
                      lambda v: selective_scan(**v, delta_softplus=True, backend="torch"))
            rtol, atol = TOL[dtype]
            for name in backends:
                got = run(x, fns[name])
                errs = {k: max_rel_err(got[k], ref[k]) for k in ref}
                # the upstream test's criterion |got - ref| <= atol + rtol |ref|, elementwise
                ok = all(torch.allclose(got[k].double(), ref[k], rtol=rtol, atol=atol) for k in ref)
                worst = max(errs, key=errs.get)
                rows.append({"backend": name, "B": b, "D": d, "L": L, "N": n, "G": groups or 1,
                             "dtype": str(dtype).removeprefix("torch."), "worst": worst,
                             "max rel err": errs[worst], "ok": ok})
                print(rows[-1], file=sys.stderr, flush=True)
            del x, ref
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--max-elements", type=float, default=2e8, help="skip shapes with more B*D*L than this")
    ap.add_argument("--device", default="cuda", help="cpu only under TRITON_INTERPRET=1, at tiny sizes")
    ap.add_argument("--backends", nargs="+", choices=["triton", "cuda"], default=None,
                    help="default: triton, and cuda when mamba-ssm imports")
    ap.add_argument("--tiny", action="store_true", help="two tiny shapes instead of the real ones (interpreter runs)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    rows = check(a.device, a.max_elements, a.backends, TINY_SHAPES if a.tiny else SHAPES)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    df = pd.DataFrame(rows)
    where = torch.cuda.get_device_name() if a.device == "cuda" else "CPU (Triton interpreter)"
    print(f"selective scan kernels vs float64 torch scan on {where}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.2e}"))
    return 0 if rows and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
