"""The suite's machinery: a step, a command's outcome, and the run that holds the rows and the budget."""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ROOT, children_cpu_s


@dataclass
class Step:
    """One step: its key (for --only), what the table calls it, and its time caps on the device and on a CPU."""

    key: str
    title: str
    cap_s: float
    dry_cap_s: float
    expect_s: float  # what it should take on the H200: the budget printed at the start
    run: Callable[[Suite, float], None]


@dataclass
class Cmd:
    shown: str
    rc: int | None
    seconds: float
    timed_out: bool


@dataclass
class Suite:
    args: argparse.Namespace
    out: Path
    work: Path
    start: float = field(default_factory=time.monotonic)
    rows: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    env_info: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # figures later steps need: ceiling, tokens/s, ...
    build: subprocess.Popen | None = None
    build_started: float = 0.0
    current: dict | None = None
    selected: list[str] = field(default_factory=list)
    plan: list[Step] = field(default_factory=list)  # every step, in order: the budget the JSON lists

    @property
    def dry(self) -> bool:
        return bool(self.args.dry_run)

    @property
    def log_path(self) -> Path:
        return self.out / "gpu_suite.log"

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.args.budget_s - self.elapsed()

    def say(self, text: str) -> None:
        line = f"[{self.elapsed():5.0f} s] {text}"
        print(line, flush=True)
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.update(PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="1", MDLM_DNA_CACHE=str(self.work / "cache"))
        if self.dry:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path, also on a machine with a GPU
            env.setdefault("OMP_NUM_THREADS", "1")
        env.update(extra or {})
        return env

    def run(self, argv: list[str], timeout: float, env: dict[str, str] | None = None,
            capture: Path | None = None) -> Cmd:
        """Run ``argv`` (``python`` means this interpreter) from the repository root, its output into the log
        (and into ``capture`` too, if given); past ``timeout`` its whole process group is killed (spawned
        workers included)."""
        cmd = [sys.executable if a == "python" else a for a in argv]
        shown = shlex.join(argv)
        if self.current is not None:
            self.current["commands"].append(shown)
        self.say(f"$ {shown}   (limit {timeout:.0f} s)")
        t0, cpu0 = time.monotonic(), children_cpu_s()
        with open(capture or self.log_path, "a") as log:
            p = subprocess.Popen(cmd, cwd=ROOT, env=self.child_env(env), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            try:
                rc: int | None = p.wait(timeout=max(1.0, timeout))
            except subprocess.TimeoutExpired:
                kill_group(p)
                rc = None
        if capture is not None:
            with open(self.log_path, "a") as log:
                log.write(capture.read_text(errors="replace"))
        res = Cmd(shown, rc, time.monotonic() - t0, rc is None)
        self.say(f"  -> {'timed out' if rc is None else f'exit {rc}'} after {res.seconds:.1f} s "
                 f"({children_cpu_s() - cpu0:.1f} CPU s)")
        return res

    def add(self, step: str, what: str, figures: dict[str, Any] | None = None, status: str = "ok", note: str = "",
            command: str = "") -> dict:
        row = {"step": step, "what": what, "status": status, "figures": figures or {}, "note": note,
               "command": command, **{k: self.env_info.get(k, "?") for k in ("date", "gpu", "torch", "cuda",
                                                                               "triton")}}
        self.rows.append(row)
        return row


def kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def printed_rows(path: Path) -> list[dict]:
    """The rows a benchmark printed one by one (a dict per line), for when it was stopped before its JSON."""

    rows = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if line.startswith("{") and line.endswith("}"):
            try:
                rows.append(ast.literal_eval(line))
            except (ValueError, SyntaxError):
                pass
    return rows


def status_of(cmd: Cmd, ok: bool = True) -> str:
    if cmd.timed_out:
        return "timeout"
    return "ok" if cmd.rc == 0 and ok else "fail"


def why(cmd: Cmd) -> str:
    return "over its time limit" if cmd.timed_out else f"exit code {cmd.rc}: see gpu_suite.log"


def number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
