"""Forward + backward throughput and peak memory of the selective scan backends.

    python benchmarks/bench_selective_scan.py                       # CPU, L = 1k, 8k, 131k
    python benchmarks/bench_selective_scan.py --device cuda --batch 8 --lengths 1024 8192 131072

Each (backend, L) runs in fresh subprocesses so that its peak memory is its own: on CUDA
torch.cuda.max_memory_allocated, on CPU the growth of the process's peak resident set over the inputs,
with large allocations mmap'd so that freed tensors leave it (tracemalloc cannot see tensor memory).
Default sizes are one layer of the Caduceus paper's models:
d_model 256, expand 2 (D = 512 channels), N = 16. The sequential reference is skipped past
--reference-max-len (one Python step per position).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mdlm_dna.models.selective_scan import SCAN_KERNEL, selective_scan  # noqa: E402

VARIANTS = {  # row name -> selective_scan arguments
    "reference": {"backend": "reference"},
    "torch[scan]": {"backend": "torch", "intra_chunk": "scan"},
    "torch[segsum]": {"backend": "torch", "intra_chunk": "segsum"},
    "cuda": {"backend": "cuda"},
}


def _inputs(batch, dim, n, length, device, dtype):
    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=dtype)

    return {
        "u": r(batch, dim, length), "delta": r(batch, dim, length) - 3.0,
        "A": -torch.arange(1, n + 1, device=device, dtype=torch.float32).repeat(dim, 1),
        "B": r(batch, n, length), "C": r(batch, n, length), "D": torch.ones(dim, device=device),
        "z": r(batch, dim, length), "delta_bias": torch.zeros(dim, device=device),
    }


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _measure(args: dict, out: mp.Queue) -> None:
    torch.set_num_threads(args["threads"])
    device, cuda = torch.device(args["device"]), args["device"].startswith("cuda")
    dtype = getattr(torch, args["dtype"])
    kw = dict(VARIANTS[args["variant"]])
    if args["chunk_size"] and kw["backend"] == "torch":
        kw["chunk_size"] = args["chunk_size"]
    x = _inputs(args["batch"], args["dim"], args["n"], args["length"], device, dtype)
    leaves = {k: v.requires_grad_() for k, v in x.items()}

    def step():
        for v in leaves.values():
            v.grad = None
        y = selective_scan(**leaves, delta_softplus=True, **kw)
        y.float().square().mean().backward()
        if cuda:
            torch.cuda.synchronize()

    try:
        if args["memory"]:  # one step; peak growth over the inputs
            base = torch.cuda.memory_allocated() if cuda else _peak_rss_bytes()
            step()
            peak = torch.cuda.max_memory_allocated() - base if cuda else _peak_rss_bytes() - base
            out.put({"peak_mib": peak / 2**20})
            return
        step()  # warm-up (and kernel import)
        times = []
        for _ in range(args["repeats"]):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        t = min(times)
        out.put({"tokens_per_s": args["batch"] * args["length"] / t, "seconds": t})
    except Exception as err:  # out of memory, or the CUDA kernel missing
        out.put({"error": f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"})


def _spawn(args: dict, timeout: float, env: dict[str, str]) -> dict:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # a spawned interpreter reads its environment at start-up
    try:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_measure, args=(args, q), daemon=True)
        p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        return {"error": f"over {timeout:.0f} s"}
    return q.get() if not q.empty() else {"error": f"exit code {p.exitcode}"}


def run_one(args: dict, timeout: float) -> dict:
    """Time in one process, memory in another: for the memory run glibc serves every allocation over
    128 KiB by mmap, so that freed tensors leave the resident set (but allocation gets slower)."""
    res = _spawn({**args, "memory": False}, timeout, {})
    if "error" in res:
        return res
    mem = _spawn({**args, "memory": True}, timeout, {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)})
    return {**res, **mem} if "error" not in mem else {**res, "note": "memory: " + mem["error"]}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 8192, 131072])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dim", type=int, default=512, help="channels D (d_model * expand)")
    ap.add_argument("--state", type=int, default=16, help="state size N")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--chunk-size", type=int, default=None, help="torch backend chunk (default: its own)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    ap.add_argument("--reference-max-len", type=int, default=8192)
    ap.add_argument("--segsum-cpu-max-len", type=int, default=8192)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = ap.parse_args(argv)

    rows = []
    for variant in a.variants:
        if variant == "cuda" and not a.device.startswith("cuda"):
            continue
        if variant == "cuda" and SCAN_KERNEL.get() is None:
            rows.append({"backend": variant, "L": None, "note": "mamba_ssm kernel unavailable"})
            continue
        for length in a.lengths:
            row = {"backend": variant, "L": length}
            if variant == "reference" and length > a.reference_max_len:
                rows.append({**row, "note": f"skipped: a Python step per position (> {a.reference_max_len})"})
                continue
            if variant == "torch[segsum]" and a.device == "cpu" and length > a.segsum_cpu_max_len:
                note = f"skipped: T times the work of [scan], a GPU path (> {a.segsum_cpu_max_len})"
                rows.append({**row, "note": note})
                continue
            args = {"variant": variant, "length": length, "batch": a.batch, "dim": a.dim, "n": a.state,
                    "device": a.device, "dtype": a.dtype, "chunk_size": a.chunk_size, "repeats": a.repeats,
                    "threads": a.threads}
            res = run_one(args, a.timeout)
            rows.append({**row, **({"note": res["error"]} if "error" in res else res)})
            print(rows[-1], file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    print(f"selective scan, forward + backward: batch {a.batch}, D {a.dim}, N {a.state}, {a.dtype}, "
          f"device {a.device}" + (f", {a.threads} CPU threads" if a.device == "cpu" else ""))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False, float_format=lambda v: f"{v:,.1f}", na_rep=""))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return df


if __name__ == "__main__":
    main()
