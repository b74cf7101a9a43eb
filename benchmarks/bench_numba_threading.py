"""Numba's threading layer and torch in one process: the CPU scan's speed, and torch's speed after it.

    OMP_NUM_THREADS=1 python benchmarks/bench_numba_threading.py          # prints the table, writes the record

Numba's OpenMP layer, as it comes, spins its idle threads: beside torch's threads on our 2-core machine the scan
ran 10-18x and torch's matrix products afterwards up to 12x slower. Its workqueue layer does not spin, but the
scan is ~1.5-2x slower than OpenMP's on a quiet machine; OpenMP with passive waiting is fast when quiet but erratic
beside other busy processes (in two runs of this script its median was 3x workqueue's in one and below it in the
other). `mdlm_dna.models.cpu_scan` picks workqueue (robust on a shared
machine) unless the user set NUMBA_THREADING_LAYER (on a machine of your own: NUMBA_THREADING_LAYER=omp
OMP_WAIT_POLICY=PASSIVE). Each row is a fresh
process, measured twice: on the machine as it is, and with two busy-looping processes beside it (one per core
here) to show what a shared machine does. The record is benchmarks/numba_threading.md.
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


SETTINGS = (  # label, environment of the child
    ("omp, spinning (Numba's default here)", {"NUMBA_THREADING_LAYER": "omp"}),
    ("omp, passive (OMP_WAIT_POLICY=PASSIVE)", {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "PASSIVE"}),
    ("package default (workqueue)", {}),
)


def run(extra_env: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(repeats: int) -> list[tuple[str, dict]]:
    return [(label, run(env)) for _ in range(repeats) for label, env in SETTINGS]


def table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = ["| threading layer | layer used | scan ms | matmuls before scan s | matmuls after scan s | slowdown |",
             "|---|---|---:|---:|---:|---:|"]
    for label, r in rows:
        lines.append(f"| {label} | {r['layer']} | {r['scan_ms']:.1f} | {r['matmul_before_s']:.3f} | "
                     f"{r['matmul_after_s']:.3f} | {r['matmul_after_s'] / r['matmul_before_s']:.1f}x |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy-looping processes for the second table")
    args = ap.parse_args()
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    as_is = measure(args.repeats)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        busy = measure(args.repeats)
    finally:
        for h in hogs:
            h.kill()
    lines = [f"Load average before (1, 5, 15 min): {load_before}.", "",
             f"Threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; scan: batch 1, D 256, L 1024, "
             "N 16, forward + backward, median of 10; 200 matmuls 256 x 256, best of 3. Each row a fresh process.",
             "", "## The machine as it is", "", *table(as_is), "",
             f"## Beside {args.busy} busy-looping processes", "", *table(busy)]
    text = "\n".join(lines) + "\n"
    print(text)
    RECORD.write_text("# Numba threading layer beside torch\n\n`OMP_NUM_THREADS=1 python benchmarks/"
                      "bench_numba_threading.py` (2-core CPU development machine)\n\n" + text)


if __name__ == "__main__":
    main()
