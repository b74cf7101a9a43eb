"""The run as a whole: the steps in order within the budget, and the command line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

import gpu_suite
from gpu_suite import caduceus, ceiling, chain, dit, environment, loader, losses, mamba, pretrain, sampling, scan
from gpu_suite.framework import Step, Suite, kill_group
from gpu_suite.goals import goal_rows
from gpu_suite.pretrain import PRETRAIN_MIN_S, PRETRAIN_OVERHEAD_S
from gpu_suite.report import render_table, write_outputs

STEPS = [
    Step("setup", "0 setup", 150, 10, 20, environment.step_setup),
    Step("ceiling", "0 ceiling", 60, 60, 8, ceiling.step_ceiling),
    Step("scan", "1 correctness", 100, 120, 40, scan.step_scan),
    Step("losses", "1 correctness", 60, 120, 15, losses.step_losses),
    Step("dit", "2 DiT training", 160, 150, 110, dit.step_dit),
    Step("chain", "2b chain on GPU", 70, 90, 45, chain.step_chain),
    Step("mamba", "1 correctness", 90, 10, 15, mamba.step_mamba),
    Step("caduceus", "3 Caduceus-PS training", 150, 150, 90, caduceus.step_caduceus),
    Step("sampling", "4 sampling", 70, 60, 35, sampling.step_sampling),
    Step("loader", "5 loader head-room", 45, 60, 15, loader.step_loader),
    Step("pretrain", "6 pretrain", 180 + PRETRAIN_OVERHEAD_S, 240, 235, pretrain.step_pretrain),
]


def run_suite(args: argparse.Namespace) -> int:
    out = Path(args.out or os.environ.get("OUT") or Path(tempfile.gettempdir()) / "gpu_suite").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("gpu_suite.md", "gpu_suite.json", "gpu_suite.log"):
        (out / name).unlink(missing_ok=True)
    s = Suite(args=args, out=out, work=Path(tempfile.mkdtemp(prefix="gpu_suite_")), plan=STEPS)
    only = set(args.only or [st.key for st in STEPS]) | {"setup"}
    if "caduceus" in only:
        only.add("mamba")  # where the background build is waited for
    s.selected = [st.key for st in STEPS if st.key in only]
    environment.probe_env(s)
    mode = "DRY RUN on the CPU at tiny sizes" if s.dry else f"on {s.env_info.get('gpu')}"
    s.say(f"gpu_suite {mode}; torch {s.env_info.get('torch')}, CUDA {s.env_info.get('cuda')}, "
          f"Triton {s.env_info.get('triton')}; output in {out}")
    s.say(f"budget: {args.budget_s:.0f} s in all; per step, the cap (a step past it is killed) and what it should "
          f"take on an H200:")
    for st in STEPS:
        if st.key in s.selected:
            cap = st.dry_cap_s if s.dry else st.cap_s
            s.say(f"  {st.key:<9} cap {cap:4.0f} s, expected {st.expect_s:4.0f} s   ({st.title})")
    s.say("  (mamba-ssm builds in the background from setup to the mamba step; pretrain trains for what is left, "
          f"at most {args.pretrain_s:.0f} s)")
    try:
        for st in STEPS:
            if st.key not in s.selected:
                continue
            cap = st.dry_cap_s if s.dry else st.cap_s
            # keep time for the pretraining run, which comes last and takes what the others leave
            reserve = 0.0 if st.key == "pretrain" or "pretrain" not in s.selected else PRETRAIN_MIN_S + \
                PRETRAIN_OVERHEAD_S
            limit = cap if s.dry else min(cap, s.left() - reserve)
            record = {"key": st.key, "title": st.title, "limit_s": limit, "commands": [], "rows_from": len(s.rows)}
            s.steps.append(record)
            s.current = record
            if limit < 5:
                s.add(st.title, st.key, status="skipped", note=f"the suite's {args.budget_s:.0f} s are spent")
                record.update(status="skipped", seconds=0.0)
                continue
            s.say(f"== step {st.key}: {st.title} (limit {limit:.0f} s)")
            t0 = time.monotonic()
            try:
                st.run(s, limit)
                record["status"] = "done"
            except Exception as e:  # a bug in one step's parsing must not cost the other steps
                record["status"] = "error"
                s.add(st.title, st.key, status="error", note=f"{type(e).__name__}: {e}")
                import traceback

                with open(s.log_path, "a") as f:
                    traceback.print_exc(file=f)
            record["seconds"] = time.monotonic() - t0
            record["rows"] = len(s.rows) - record.pop("rows_from")
            s.current = None
            write_outputs(s)  # after every step: a run stopped from outside still leaves its table
    finally:
        if s.build is not None:
            kill_group(s.build)
        goal_rows(s)
        write_outputs(s)
        shutil.rmtree(s.work, ignore_errors=True)
    print(render_table(s), flush=True)
    s.say(f"done in {s.elapsed():.0f} s; {out / 'gpu_suite.md'}, {out / 'gpu_suite.json'}, {out / 'gpu_suite.log'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=gpu_suite.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, no installs (what CI runs)")
    ap.add_argument("--out", default=None, help="output folder (default: $OUT, else /tmp/gpu_suite)")
    ap.add_argument("--only", nargs="+", choices=[st.key for st in STEPS], default=None,
                    help="run these steps (setup always runs; it is quick once installed)")
    ap.add_argument("--budget-s", type=float, default=540.0, help="the whole run, in seconds (9 minutes)")
    ap.add_argument("--pretrain-s", type=float, default=180.0, help="at most this much pretraining")
    ap.add_argument("--wheels", default=str(ROOT / "device_wheels"), help="the carried wheel folder")
    ap.add_argument("--no-mamba", action="store_true", help="do not install or build mamba-ssm")
    ap.add_argument("--_step", choices=["matmul", "losses"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = argv
    if args._step:
        rows = ceiling.inner_matmul(args.dry_run) if args._step == "matmul" else losses.inner_losses(args.dry_run)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0 if all(r.get("ok", True) for r in rows) else 1
    return run_suite(args)

