"""benchmarks/gpu_suite.sh, the one command a session with the GPU runs: its dry run on the CPU, end to end.

Sessions with the device are rare (about one task in ten), so the suite must not rot in between: this runs
the same script at tiny sizes on the CPU and checks that every step produced its rows, in the Markdown
table and in the JSON, with the fields the issue asks for (date, GPU, versions, command) and real figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the suite is the package gpu_suite there, beside common.py

from gpu_suite.environment import patch_mamba_setup  # noqa: E402
from gpu_suite.framework import Suite  # noqa: E402
from gpu_suite.report import render_table  # noqa: E402

NEEDS_TRITON = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
COLUMNS = ["step", "what", "result", "status", "note", "date", "GPU", "torch", "CUDA", "Triton", "command"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, float]:
    out = tmp_path_factory.mktemp("suite")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--dry-run", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=840)
    return out, proc, time.monotonic() - t0


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "gpu_suite.json").read_text())["rows"]


def _find(rows: list[dict], step: str, *words: str) -> list[dict]:
    return [r for r in rows if r["step"] == step and all(w in r["what"] for w in words)]


@NEEDS_TRITON
def test_dry_run_writes_table_and_json(dry_run):
    out, proc, _ = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "gpu_suite.json").read_text())
    assert doc["suite"]["dry_run"] is True
    assert doc["suite"]["torch"] not in ("", "?") and doc["suite"]["date"]
    assert {s["key"] for s in doc["steps"]} == {"setup", "ceiling", "scan", "losses", "dit", "chain", "mamba",
                                                 "caduceus", "sampling", "loader", "pretrain"}
    assert all(s["status"] == "done" for s in doc["steps"]), doc["steps"]
    assert [b["step"] for b in doc["budget"]][-1] == "pretrain"  # it takes what the others leave
    rows = doc["rows"]
    for r in rows:
        for key in ("step", "what", "status", "figures", "note", "command", "date", "gpu", "torch", "cuda", "triton"):
            assert key in r, (key, r)
        assert r["date"] == doc["suite"]["date"] and r["torch"] == doc["suite"]["torch"]
        assert r["status"] in ("ok", "skipped", "n/a"), r  # nothing failed, errored or timed out
        if r["status"] == "ok" and r["step"] != "goals":
            assert r["command"], r
    # the Markdown table: one header, the same rows, every row the full set of columns
    lines = (out / "gpu_suite.md").read_text().strip().splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    body = lines[2:]
    assert len(body) == len(rows)
    for line in body:
        cells = [c for c in line.replace("\\|", "").split("|")[1:-1]]
        assert len(cells) == len(COLUMNS), line
        assert "none (CPU dry run)" in line
    assert proc.stdout.rstrip().splitlines()[-1].startswith("[")  # the table is printed last, then "done"
    assert lines[0] in proc.stdout


@NEEDS_TRITON
def test_dry_run_figures(dry_run):
    out, _, _ = dry_run
    rows = _rows(out)
    (matmul,) = _find(rows, "0 ceiling", "matmul")
    assert matmul["status"] == "ok" and matmul["figures"]["TFLOP/s"] > 0
    (scan,) = _find(rows, "1 correctness", "Triton selective scan")
    assert scan["status"] == "ok" and scan["figures"]["checks"] >= 4
    assert scan["figures"]["within tolerance"] == scan["figures"]["checks"]
    assert scan["figures"]["worst rel err"] < 3e-2
    losses = _find(rows, "1 correctness", "loss and gradients")
    assert len(losses) == 2 and all(r["status"] == "ok" for r in losses)
    assert all(1.0 < r["figures"]["CPU loss"] < 3.0 for r in losses)  # ~ln 4 nats for random DNA
    (mamba,) = _find(rows, "1 correctness", "mamba-ssm")
    assert mamba["status"] == "skipped"
    (dit,) = [r for r in _find(rows, "2 DiT training", "dit_tiny") if r["status"] == "ok"]
    assert "ckpt" in dit["what"] and dit["figures"]["tokens/s"] > 0 and dit["figures"]["MFU %"] > 0
    assert dit["figures"]["MFU against TFLOP/s"] == pytest.approx(matmul["figures"]["TFLOP/s"], rel=1e-2)
    chain = _find(rows, "2b chain on GPU")
    assert [r["status"] for r in chain] == ["ok", "ok"], chain
    plain, with_chain = chain
    assert "no chain" in plain["what"] and "order-3 chain" in with_chain["what"]
    assert with_chain["figures"]["step time vs no chain"] == pytest.approx(
        with_chain["figures"]["step ms"] / plain["figures"]["step ms"])
    assert with_chain["figures"]["150 steps, s"] == pytest.approx(0.15 * with_chain["figures"]["step ms"])
    cad = [r for r in _find(rows, "3 Caduceus-PS training", "training step") if r["status"] == "ok"]
    assert cad and all(r["figures"]["tokens/s"] > 0 for r in cad)
    sampling = _find(rows, "4 sampling")
    assert len(sampling) == 4 and all(r["status"] == "ok" for r in sampling)
    cached = [r for r in sampling if "cached" in r["what"]]
    assert all(r["figures"]["same samples"] is True for r in cached)  # the cache is exact without time conditioning
    assert all(r["figures"]["network calls"] <= 64 for r in sampling)
    (loader,) = _find(rows, "5 loader head-room")
    assert loader["status"] == "ok" and loader["figures"]["head-room"] > 0
    assert loader["note"] == ""  # against a measured training rate, not the estimate
    (pre,) = _find(rows, "6 pretrain")
    assert pre["status"] == "ok", pre
    assert 1.0 < pre["figures"]["test bits/base"] < 3.0 and pre["figures"]["last logged step"] >= 1
    assert pre["figures"]["val curve (step, bits/base)"]
    goals = _find(rows, "goals")
    assert len(goals) == 3 and all(r["status"] == "n/a" for r in goals)


@NEEDS_TRITON
def test_dry_run_is_quick(dry_run):
    """Well under two minutes of CPU on a 2-core machine; the wall-clock bound allows for a shared one."""
    _, proc, wall = dry_run
    assert wall < 600, wall
    assert "budget:" in proc.stdout and "pretrain" in proc.stdout  # the budget is printed first


def test_a_step_past_its_limit_is_killed_with_its_children(tmp_path):
    args = argparse.Namespace(dry_run=True, budget_s=60.0)
    s = Suite(args=args, out=tmp_path, work=tmp_path)
    t0 = time.monotonic()
    # a child that starts a grandchild: both must go when the limit is hit
    pid_file = tmp_path / "grandchild.pid"
    res = s.run(["bash", "-c", f"sleep 30 & echo $! > {pid_file}; wait; echo finished"], timeout=1.0)
    assert res.timed_out and res.rc is None
    assert time.monotonic() - t0 < 10
    assert "finished" not in (tmp_path / "gpu_suite.log").read_text().splitlines()
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed process whose parent died waits a moment to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_table_cells_are_escaped(tmp_path):
    s = Suite(args=argparse.Namespace(dry_run=True, budget_s=60.0), out=tmp_path, work=tmp_path)
    s.add("x", "a | b", {"n": 1234567.0, "ok": True, "curve": [(1, 2.0)], "missing": None}, note="line\nbreak")
    table = render_table(s)
    row = table.strip().splitlines()[-1]
    assert "a \\| b" in row and "n 1,234,567; ok yes" in row and "curve" not in row and "line break" in row


def test_mamba_setup_patch_builds_one_architecture(tmp_path, monkeypatch):
    setup = tmp_path / "setup.py"
    setup.write_text(
        "from __future__ import annotations\nimport os\n\ncc_flag = ['-gencode', 'arch=compute_75,code=sm_75',"
        " '-gencode', 'arch=compute_90,code=sm_90']\nnvcc = ['-O3'] + cc_flag\n"
    )
    assert patch_mamba_setup(setup)
    code = compile(setup.read_text(), str(setup), "exec")  # the __future__ import still comes first
    monkeypatch.setenv("MDLM_GENCODE", "arch=compute_90,code=sm_90")
    ns: dict = {}
    exec(code, ns)
    assert ns["nvcc"] == ["-O3", "-gencode", "arch=compute_90,code=sm_90"]
    monkeypatch.delenv("MDLM_GENCODE")
    ns = {}
    exec(code, ns)
    assert len(ns["nvcc"]) == 5  # unset: setup.py's own list
    other = tmp_path / "other.py"
    other.write_text("flags = []\n")
    assert not patch_mamba_setup(other)  # an unknown setup.py is left alone (the full build runs)
