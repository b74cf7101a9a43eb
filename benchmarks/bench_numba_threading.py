"""Numba's threading layer and torch in one process: the CPU scan's speed, and torch's speed after it.

    OMP_NUM_THREADS=1 python benchmarks/bench_numba_threading.py          # prints the table, writes the record

Numba's OpenMP layer left torch's matrix products ~20x slower for the rest of the process on our 2-core machine
(its threads keep spinning beside torch's); `mdlm_dna.models.cpu_scan` therefore picks Numba's workqueue layer
unless NUMBA_THREADING_LAYER is set. Each row is a fresh process; the record is benchmarks/numba_threading.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RECORD = Path(__file__).with_name("numba_threading.md")

CHILD = r"""
import json, time, torch
from mdlm_dna.models.selective_scan import selective_scan
import numba
torch.manual_seed(0)
a = torch.randn(256, 256)
def matmuls():
    t = time.perf_counter()
    for _ in range(200):
        a @ a
    return time.perf_counter() - t
before = min(matmuls() for _ in range(3))
B, D, L, N = 1, 256, 1024, 16
args = [torch.randn(B, D, L, requires_grad=True), torch.randn(B, D, L, requires_grad=True),
        (-torch.rand(D, N)).requires_grad_(), torch.randn(B, N, L, requires_grad=True),
        torch.randn(B, N, L, requires_grad=True)]
def step():
    y = selective_scan(*args, backend="numba")
    (y[0] if isinstance(y, tuple) else y).sum().backward()
step(); step()
times = []
for _ in range(10):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
after = min(matmuls() for _ in range(3))
print(json.dumps({"layer": numba.threading_layer(), "scan_ms": 1e3 * sorted(times)[len(times) // 2],
                  "matmul_before_s": before, "matmul_after_s": after}))
"""


def run(layer: str | None) -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for _ in range(args.repeats):
        for layer, label in (("omp", "omp (Numba's default here)"), (None, "package default")):
            r = run(layer)
            rows.append((label, r))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"Load average at the end (1, 5, 15 min): {load} (other jobs were running: compare rows, not machines).",
             "", f"Threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
             "scan: batch 1, D 256, L 1024, "
             "N 16, forward + backward, median of 10; 200 matmuls 256 x 256, best of 3. Each row a fresh process.",
             "", "| threading layer | layer used | scan ms | matmuls before scan s | matmuls after scan s | slowdown |",
             "|---|---|---:|---:|---:|---:|"]
    for label, r in rows:
        lines.append(f"| {label} | {r['layer']} | {r['scan_ms']:.1f} | {r['matmul_before_s']:.3f} | "
                     f"{r['matmul_after_s']:.3f} | {r['matmul_after_s'] / r['matmul_before_s']:.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    RECORD.write_text("# Numba threading layer beside torch\n\n`OMP_NUM_THREADS=1 python benchmarks/"
                      "bench_numba_threading.py` (2-core CPU development machine)\n\n" + text)


if __name__ == "__main__":
    main()
