"""Step 0: the bf16 matmul rate and the device copy bandwidth, the ceilings MFU and bandwidth are read against."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gpu_suite.framework import Suite, read_json, status_of, why


def step_ceiling(s: Suite, limit: float) -> None:
    title = "0 ceiling"
    out = s.work / "ceiling.json"
    cmd = s.run(["python", "benchmarks/gpu_suite", "--_step", "matmul", "--json", str(out)]
                + (["--dry-run"] if s.dry else []), limit)
    data = read_json(out) or []
    for r in data:
        s.add(title, r.pop("what"), r, status_of(cmd), "" if cmd.rc == 0 else why(cmd), cmd.shown)
        if "TFLOP/s" in r:
            s.facts["peak_tflops"] = r["TFLOP/s"]
    if not data:
        s.add(title, "bf16 matmul", status=status_of(cmd, False), note=why(cmd), command=cmd.shown)


def inner_matmul(dry: bool) -> list[dict]:
    """bf16 matmul rate on random data (KINDS.md: zeros run faster) and device copy bandwidth, median of events."""
    import torch

    if dry:
        n, dev, dtype = 256, torch.device("cpu"), torch.float32
    else:
        n, dev, dtype = 8192, torch.device("cuda"), torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=dev, dtype=dtype, generator=g)

    def timed(fn: Callable[[], Any], reps: int) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(reps):
            if dev.type == "cuda":
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    t = timed(lambda: a @ b, 20)
    rows = [{"what": f"{str(dtype).removeprefix('torch.')} matmul {n}^3 ({dev.type}, random data)",
             "TFLOP/s": 2 * n**3 / t / 1e12, "ms": t * 1e3}]
    nbytes = (8 if dry else 4096) * 2**20
    x = torch.randn(nbytes // 4, device=dev, generator=g)
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x), 20)
    rows.append({"what": f"copy {nbytes / 2**30:g} GiB ({dev.type}), bytes read + written",
                 "TB/s": 2 * nbytes / t / 1e12, "ms": t * 1e3})
    return rows
