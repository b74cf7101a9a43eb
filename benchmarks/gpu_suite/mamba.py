"""Step 1 again once mamba-ssm has built: its kernel against the same reference."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from gpu_suite.environment import importable
from gpu_suite.framework import Suite, kill_group
from gpu_suite.scan import scan_rows


def step_mamba(s: Suite, limit: float) -> None:
    title = "1 correctness"
    if s.dry:
        s.add(title, "mamba-ssm selective scan vs float64 torch scan", status="skipped", note="dry run: no mamba-ssm")
        return
    if s.build is not None:
        wait = max(1.0, limit - 30)
        s.say(f"waiting up to {wait:.0f} s for the mamba-ssm build")
        try:
            s.build.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            kill_group(s.build)
        log = s.facts["mamba_build_log"]
        with open(s.log_path, "a") as f:
            f.write(f"--- mamba-ssm build log\n{Path(log).read_text()[-20000:]}\n")
        seconds = time.monotonic() - s.build_started
        rc = s.build.returncode
        s.build = None
        ok = rc == 0 and importable("mamba_ssm.ops.selective_scan_interface")
        figures = {"build s": seconds, "arch": s.facts.get("mamba_arch")}
        note = ""
        if ok:
            built = sorted((s.work / "mamba_wheel").glob("mamba_ssm-*.whl"))
            if built:
                size = built[-1].stat().st_size
                figures["wheel MiB"] = size / 2**20
                if size < 16 * 2**20:  # what comes back from $OUT: carry it next time, no build
                    shutil.copy(built[-1], s.out / built[-1].name)
                    note = f"{built[-1].name} is in the output folder: put it in device_wheels/ to skip the build"
        else:
            note = "still building: killed" if rc is not None and rc < 0 else "did not build: see gpu_suite.log"
        s.add("0 setup", "mamba-ssm build (background, niced)", figures, "ok" if ok else "fail", note,
              s.facts.get("mamba_build_cmd", ""))
        s.facts["mamba_installed"] = ok
    if not s.facts.get("mamba_installed"):
        s.add(title, "mamba-ssm selective scan vs float64 torch scan", status="skipped", note="mamba-ssm not installed")
        return
    scan_rows(s, "cuda", ["python", "benchmarks/gpu_scan_check.py", "--backends", "cuda"], max(10.0, limit - 10))
