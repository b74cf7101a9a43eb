"""Every GPU figure of mdlm-dna from one command (issue 19): correctness first, then the measurements.

    bash benchmarks/gpu_suite.sh                          # the device machine: writes $OUT/gpu_suite.{md,json,log}
    bash benchmarks/gpu_suite.sh --dry-run --out DIR      # a CPU at tiny sizes, about a minute (what CI tests)
    bash benchmarks/gpu_suite.sh --only dit sampling      # some steps again, inside the same lease

Only about one task in ten is lent the H200, for 15 minutes of device time in all and at most 10 minutes a
command, on a bare machine with no network. So this script is the whole device session: it installs what
travels in ``device_wheels/`` (scripts/fill_device_wheels.py fills it), starts building mamba-ssm for this
GPU in the background, and runs each step in its own subprocess with its own time limit, so that a step
that fails or overruns (mamba-ssm not building, an out-of-memory, a hang) costs its own budget and nothing
else. The whole run is held to ``--budget-s`` (540 s): the steps run in this order with these caps, and the
6-minute-ish total leaves the last step, the pretraining run, whatever time is left up to 3 minutes:

    setup     install the carried wheels and the project; mamba-ssm builds in the background (sm_90 only)
    ceiling   bf16 matmul and device copy: the ceilings that MFU and bandwidth figures are read against
    scan      1. the Triton selective scan against a float64 reference at the sizes the models use
    losses    1. DiT-small and Caduceus-PS losses and gradients on the GPU against the CPU, same weights
    dit       2. DiT-small training steps at L = 1k and 8k (activation checkpointing), eager and compiled, bf16
    mamba     1. mamba-ssm's kernel against the same reference, once its build is done
    caduceus  3. Caduceus-PS training steps (the paper's 1k and 131k sizes) on the Triton, mamba-ssm, torch scans
    sampling  4. ancestral vs cached sampling, T = 1k and 10k, L = 1024, batch 64
    loader    5. the loader's bases/s against the training tokens/s measured in steps 2 and 3
    pretrain  6. a ~3-minute `python -m mdlm_dna.pretrain` of DiT-small on E. coli in bf16, then evaluate

Every row of the table carries the date, GPU, torch / CUDA / Triton versions and the exact command; the JSON
holds every figure (and each step's raw rows). ``--dry-run`` runs the same steps on the CPU at tiny sizes
(Triton under TRITON_INTERPRET=1, no mamba-ssm, no installs, no torch.compile), so the script cannot rot
between the rare sessions that have the device; tests/test_gpu_suite.py runs it.

This file imports only the standard library at the top: it has to start before anything is installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ECOLI = "data/GCF_000005845.2_ASM584v2_genomic.fna.gz"
REQUIREMENTS = ["hydra-core", "omegaconf", "antlr4-python3-runtime", "pyfaidx", "biopython"]  # not on the device
IMPORTS = {"hydra-core": "hydra", "omegaconf": "omegaconf", "antlr4-python3-runtime": "antlr4",
           "pyfaidx": "pyfaidx", "biopython": "Bio"}
KINDS_MATMUL_TFLOPS = 790.0  # KINDS.md: 769-798 TFLOP/s bf16 on this workplace's H200s, if our own run fails
PRETRAIN_MIN_S = 60.0  # less training than this shows no learning curve: then the step is skipped
PRETRAIN_OVERHEAD_S = 55.0  # start-up, validations, the last checkpoint, and the evaluate run after it
README_REFERENCE = "README (E. coli, last 10 %): order-6 Markov 1.934, order-0 2.000 bits/base"


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
        t0, cpu0 = time.monotonic(), _children_cpu_s()
        with open(capture or self.log_path, "a") as log:
            p = subprocess.Popen(cmd, cwd=ROOT, env=self.child_env(env), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            try:
                rc: int | None = p.wait(timeout=max(1.0, timeout))
            except subprocess.TimeoutExpired:
                _kill_group(p)
                rc = None
        if capture is not None:
            with open(self.log_path, "a") as log:
                log.write(capture.read_text(errors="replace"))
        res = Cmd(shown, rc, time.monotonic() - t0, rc is None)
        self.say(f"  -> {'timed out' if rc is None else f'exit {rc}'} after {res.seconds:.1f} s "
                 f"({_children_cpu_s() - cpu0:.1f} CPU s)")
        return res

    def add(self, step: str, what: str, figures: dict[str, Any] | None = None, status: str = "ok", note: str = "",
            command: str = "") -> dict:
        row = {"step": step, "what": what, "status": status, "figures": figures or {}, "note": note,
               "command": command, **{k: self.env_info.get(k, "?") for k in ("date", "gpu", "torch", "cuda",
                                                                               "triton")}}
        self.rows.append(row)
        return row


def _children_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _printed_rows(path: Path) -> list[dict]:
    """The rows a benchmark printed one by one (a dict per line), for when it was stopped before its JSON."""
    import ast

    rows = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if line.startswith("{") and line.endswith("}"):
            try:
                rows.append(ast.literal_eval(line))
            except (ValueError, SyntaxError):
                pass
    return rows


def _status(cmd: Cmd, ok: bool = True) -> str:
    if cmd.timed_out:
        return "timeout"
    return "ok" if cmd.rc == 0 and ok else "fail"


def _why(cmd: Cmd) -> str:
    return "over its time limit" if cmd.timed_out else f"exit code {cmd.rc}: see gpu_suite.log"


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


# --------------------------------------------------------------------------------------------------- steps


def step_setup(s: Suite, limit: float) -> None:
    title = "0 setup"
    if s.dry:
        s.add(title, "install carried wheels and the project", status="skipped",
              note="dry run: the environment already has the dependencies")
        s.add(title, "mamba-ssm build", status="skipped", note="dry run: no mamba-ssm")
        return
    wheels = Path(s.args.wheels)
    missing = [r for r in REQUIREMENTS if not _importable(IMPORTS[r])]
    t0 = time.monotonic()
    figures: dict[str, Any] = {}
    notes = []
    if missing:
        if not wheels.is_dir():
            notes.append(f"{wheels} is missing: run scripts/fill_device_wheels.py and carry it")
        cmd = s.run(["python", "-m", "pip", "install", "-q", "--no-index", "--no-cache-dir", "--find-links",
                     str(wheels), *missing], timeout=min(limit, 120))
        if cmd.rc != 0:
            notes.append(f"pip install of {' '.join(missing)}: {_why(cmd)}")
    if not _importable("mdlm_dna", installed_only=True):
        cmd = s.run(["python", "-m", "pip", "install", "-q", "--no-index", "--no-cache-dir", "--find-links",
                     str(wheels), "--no-deps", "-e", "."], timeout=max(10.0, limit - (time.monotonic() - t0)))
        if cmd.rc != 0:
            notes.append("editable install failed: the steps import the checkout through PYTHONPATH")
    still = [r for r in REQUIREMENTS if not _importable(IMPORTS[r])]
    figures["seconds"] = time.monotonic() - t0
    figures["installed"] = ", ".join(sorted(set(missing) - set(still))) or "nothing needed"
    if still:
        notes.append("still missing: " + " ".join(still))
    s.add(title, "install carried wheels and the project", figures, "fail" if still else "ok", "; ".join(notes),
          f"pip install --no-index --find-links {wheels} {' '.join(REQUIREMENTS)}; pip install --no-deps -e .")
    start_mamba_build(s, wheels)


def _importable(module: str, installed_only: bool = False) -> bool:
    """Whether ``module`` imports in a fresh interpreter (without the checkout on the path if installed_only)."""
    code = f"import {module}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], cwd="/" if installed_only else ROOT, env=env,
                       capture_output=True, timeout=120)
    return r.returncode == 0


def start_mamba_build(s: Suite, wheels: Path) -> None:
    """mamba-ssm: a carried wheel of it is installed; else its sdist is built for this GPU's architecture only
    (setup.py patched: about a ninth of the full build), niced, in the background while steps 0-2 run."""
    title = "0 setup"
    wanted = any(k in s.selected for k in ("mamba", "caduceus"))
    if s.args.no_mamba or not wanted:
        s.add(title, "mamba-ssm build", status="skipped", note="--no-mamba" if s.args.no_mamba else "not needed")
        return
    if _importable("mamba_ssm.ops.selective_scan_interface"):
        s.add(title, "mamba-ssm build", {"build s": 0}, "ok", "already installed")
        s.facts["mamba_installed"] = True
        return
    prebuilt = sorted(wheels.glob("mamba_ssm-*.whl"))
    if prebuilt:
        cmd = s.run(["python", "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(prebuilt[-1])], 120)
        if cmd.rc == 0 and _importable("mamba_ssm.ops.selective_scan_interface"):
            s.add(title, "mamba-ssm build", {"build s": 0}, "ok", f"carried wheel {prebuilt[-1].name}", cmd.shown)
            s.facts["mamba_installed"] = True
            return
        s.say("the carried mamba-ssm wheel does not import here: building from the sdist")
    sdists = sorted(wheels.glob("mamba_ssm-*.tar.gz"))
    if not sdists:
        s.add(title, "mamba-ssm build", status="skipped", note=f"no mamba_ssm sdist or wheel in {wheels}")
        return
    src = s.work / "mamba_src"
    with tarfile.open(sdists[-1]) as tf:
        tf.extractall(src, filter="data")
    setup_py = next(src.glob("*/setup.py"))
    arch = s.env_info.get("capability", "90")
    patched = patch_mamba_setup(setup_py)
    jobs = max(1, (os.cpu_count() or 4) - 2)
    env = {"MAX_JOBS": str(jobs), "MAMBA_FORCE_BUILD": "TRUE", "NVCC_THREADS": "2",
           "TORCH_CUDA_ARCH_LIST": f"{arch[:-1]}.{arch[-1]}",
           "MDLM_GENCODE": f"arch=compute_{arch},code=sm_{arch}" if patched else ""}
    wheel_dir = s.work / "mamba_wheel"
    py, wd = shlex.quote(sys.executable), shlex.quote(str(wheel_dir))
    script = (f"nice -n 10 {py} -m pip wheel -q --no-build-isolation --no-deps --no-index -w {wd} "
              f"{shlex.quote(str(setup_py.parent))} && {py} -m pip install -q --no-index --no-deps {wd}/*.whl")
    s.facts["mamba_build_log"] = s.work / "mamba_build.log"
    s.facts["mamba_build_cmd"] = (f"MAX_JOBS={jobs} MAMBA_FORCE_BUILD=TRUE pip wheel --no-build-isolation "
                                  f"{sdists[-1].name}" + (f" (setup.py patched: sm_{arch} only)" if patched else ""))
    s.facts["mamba_arch"] = f"sm_{arch}" if patched else "all of setup.py's"
    s.say(f"building {sdists[-1].name} in the background: {s.facts['mamba_build_cmd']}")
    with open(s.facts["mamba_build_log"], "w") as log:
        s.build = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=s.child_env(env), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    s.build_started = time.monotonic()


def patch_mamba_setup(setup_py: Path) -> bool:
    """Make mamba-ssm's setup.py build only $MDLM_GENCODE (when set) instead of its nine architectures."""
    text = setup_py.read_text()
    if "+ cc_flag" not in text:
        return False
    helper = ("\ndef _mdlm_gencode(flags):\n    import os\n    only = os.environ.get('MDLM_GENCODE')\n"
              "    return ['-gencode', only] if only else flags\n\n")
    text = text.replace("+ cc_flag", "+ _mdlm_gencode(cc_flag)")
    lines = text.splitlines(keepends=True)
    at = 0  # at the top, after any __future__ import (which must come first)
    for i, line in enumerate(lines):
        if line.startswith("from __future__"):
            at = i + 1
    setup_py.write_text("".join(lines[:at]) + helper + "".join(lines[at:]))
    return True


def step_ceiling(s: Suite, limit: float) -> None:
    title = "0 ceiling"
    out = s.work / "ceiling.json"
    cmd = s.run(["python", "benchmarks/gpu_suite.py", "--_step", "matmul", "--json", str(out)]
                + (["--dry-run"] if s.dry else []), limit)
    data = _read_json(out) or []
    for r in data:
        s.add(title, r.pop("what"), r, _status(cmd), "" if cmd.rc == 0 else _why(cmd), cmd.shown)
        if "TFLOP/s" in r:
            s.facts["peak_tflops"] = r["TFLOP/s"]
    if not data:
        s.add(title, "bf16 matmul", status=_status(cmd, False), note=_why(cmd), command=cmd.shown)


def step_scan(s: Suite, limit: float) -> None:
    argv = ["python", "benchmarks/gpu_scan_check.py", "--backends", "triton"]
    env = None
    if s.dry:
        argv += ["--device", "cpu", "--tiny"]
        env = {"TRITON_INTERPRET": "1"}
    _scan_rows(s, "triton", argv, limit, env)


def _scan_rows(s: Suite, backend: str, argv: list[str], limit: float, env: dict[str, str] | None = None) -> None:
    out, printed = s.work / f"scan_{backend}.json", s.work / f"scan_{backend}.out"
    cmd = s.run([*argv, "--json", str(out)], limit, env, capture=printed)
    rows = [r for r in (_read_json(out) or _printed_rows(printed)) if r.get("backend") == backend]
    name = {"triton": "Triton selective scan", "cuda": "mamba-ssm selective scan"}[backend]
    what = f"{name} vs float64 torch scan (output, last state, all gradients)"
    errors = [r["error"] for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    if not rows:
        s.add("1 correctness", what, status=_status(cmd, False), note="; ".join(errors) or _why(cmd),
              command=cmd.shown)
        return
    worst = max(rows, key=lambda r: r["max rel err"])
    bad = [r for r in rows if not r["ok"]]
    figures = {"checks": len(rows), "within tolerance": len(rows) - len(bad), "worst rel err": worst["max rel err"],
               "worst at": f"{worst['worst']} B={worst['B']} D={worst['D']} L={worst['L']} N={worst['N']} "
                           f"{worst['dtype']}", "largest L": max(r["L"] for r in rows)}
    note = "; ".join(f"FAILS {r['dtype']} B={r['B']} D={r['D']} L={r['L']}: {r['worst']} {r['max rel err']:.2e}"
                     for r in bad[:3])
    if cmd.timed_out:
        note = "; ".join(filter(None, [note, "ran out of time before every shape was checked"]))
    s.add("1 correctness", what, figures, "fail" if bad else _status(cmd), note, cmd.shown)


def step_losses(s: Suite, limit: float) -> None:
    out = s.work / "losses.json"
    cmd = s.run(["python", "benchmarks/gpu_suite.py", "--_step", "losses", "--json", str(out)]
                + (["--dry-run"] if s.dry else []), limit)
    data = _read_json(out) or []
    for r in data:
        ok = r.pop("ok")
        s.add("1 correctness", r.pop("what"), r, "ok" if ok else "fail", "" if ok else "outside tolerance",
              cmd.shown)
    if not data:
        s.add("1 correctness", "DiT and Caduceus losses, GPU vs CPU", status=_status(cmd, False), note=_why(cmd),
              command=cmd.shown)


def step_dit(s: Suite, limit: float) -> None:
    title = "2 DiT training"
    out = s.work / "dit.json"
    peak = s.facts.get("peak_tflops") or (1.0 if s.dry else KINDS_MATMUL_TFLOPS)
    if s.dry:
        # one row, with activation checkpointing (tests/test_scale.py times the plain eager row)
        argv = ["python", "benchmarks/train_throughput.py", "--tiny", "--device", "cpu", "--models", "dit_tiny",
                "--lengths", "64", "--checkpointing-from", "64", "--modes", "eager", "--steps", "1", "--warmup", "1"]
    else:
        argv = ["python", "benchmarks/train_throughput.py", "--models", "dit_small", "--lengths", "1024", "8192",
                "--checkpointing-from", "8192", "--modes", "eager", "compiled", "--steps", "15", "--warmup", "4"]
    argv += ["--peak-tflops", f"{peak:.1f}", "--timeout", f"{min(100.0, limit * 0.6):.0f}",
             "--budget", f"{max(1.0, limit - 25):.0f}", "--json", str(out)]
    cmd = s.run(argv, limit)
    rows = _read_json(out) or []
    tps = s.facts.setdefault("train_tps", {})
    for r in rows:
        what = f"{r.get('model')} L={r.get('L')} {r.get('mode')}"
        if "error" in r:
            status = "skipped" if str(r["error"]).startswith("skipped") else "fail"
            s.add(title, what, status=status, note=str(r["error"]), command=cmd.shown)
            continue
        figures = {k: r.get(k) for k in ("batch", "step ms", "tokens/s", "peak GiB", "MFU %", "TFLOP/s",
                                         "warm-up s")}
        figures["MFU against TFLOP/s"] = peak
        s.add(title, what, figures, "ok", "" if "peak_tflops" in s.facts else "MFU against KINDS.md's 790 TFLOP/s",
              cmd.shown)
        L = int(r["L"])
        if r.get("tokens/s") and r["tokens/s"] > tps.get(L, (0, ""))[0]:
            tps[L] = (r["tokens/s"], f"{r['model']} {r['mode']}")
        if r.get("model") == "dit_small" and L == 1024:
            s.facts["dit_1k_tps"] = max(s.facts.get("dit_1k_tps", 0.0), r["tokens/s"])
            s.facts["dit_1k_mfu"] = max(s.facts.get("dit_1k_mfu", 0.0), r.get("MFU %") or 0.0)
            if r.get("mode") == "eager":
                s.facts["dit_1k_eager_tps"] = r["tokens/s"]
    if s.dry:
        s.add(title, "dit_tiny compiled", status="skipped", note="dry run: torch.compile is not timed on a CPU")
    if not rows:
        s.add(title, "dit_small training steps", status=_status(cmd, False), note=_why(cmd), command=cmd.shown)


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
            _kill_group(s.build)
        log = s.facts["mamba_build_log"]
        with open(s.log_path, "a") as f:
            f.write(f"--- mamba-ssm build log\n{Path(log).read_text()[-20000:]}\n")
        seconds = time.monotonic() - s.build_started
        rc = s.build.returncode
        s.build = None
        ok = rc == 0 and _importable("mamba_ssm.ops.selective_scan_interface")
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
    _scan_rows(s, "cuda", ["python", "benchmarks/gpu_scan_check.py", "--backends", "cuda"], max(10.0, limit - 10))


def step_caduceus(s: Suite, limit: float) -> None:
    title = "3 Caduceus-PS training"
    variants = ["triton", "cuda", "torch[segsum]"] if s.facts.get("mamba_installed") else ["triton", "torch[segsum]"]
    if s.dry:
        configs = [("1k size (d_model 4, 1 layer, tiny)", ["--device", "cpu", "--shapes", "1,4,32,4", "--model-shapes",
                                                          "1,32", "--model-set", "d_model=4", "n_layers=1",
                                                          "d_state=4", "--repeats", "1", "--threads", "1"], 1.0)]
        variants = ["torch[segsum]"]  # the Triton interpreter takes ~10 s a model step; step 1 covers Triton
    else:
        # the paper's 1k model (d_model 118, 4 layers: 471k parameters) at 32 x 1k tokens a step, and its 131k
        # model (configs/model/caduceus_ps_paper.yaml) at one 131k window; one scan shape of each's layers
        configs = [("paper 1k (d_model 118, 4 layers)", ["--shapes", "32,236,1024,16", "--model-shapes", "32,1024",
                                                         "--model-set", "d_model=118", "n_layers=4",
                                                         "--timeout", "60"], 0.45),
                   ("paper 131k (d_model 256, 16 layers)", ["--shapes", "1,512,131072,16", "--model-shapes",
                                                            "1,131072", "--timeout", "90"], 1.0)]
    t0 = time.monotonic()
    tps = s.facts.setdefault("train_tps", {})
    for i, (name, extra, share) in enumerate(configs):
        left = limit - (time.monotonic() - t0)
        out, printed = s.work / f"caduceus_{i}.json", s.work / f"caduceus_{i}.out"
        argv = ["python", "benchmarks/bench_selective_scan.py", *extra, "--variants", *variants,
                "--dtype", "bfloat16", "--json", str(out)]
        cmd = s.run(argv, max(5.0, left * share), capture=printed)
        data = _read_json(out)
        if data is None:  # stopped before its JSON: the rows it printed as it went (scan rows have a D)
            done = _printed_rows(printed)
            data = {"model": [r for r in done if "D" not in r], "scan": [r for r in done if "D" in r]}
        model_rows, scan_rows = data.get("model", []), data.get("scan", [])
        for kind, rows in (("training step", model_rows), ("scan fwd+bwd", scan_rows)):
            ms = {r.get("backend"): r.get("ms") for r in rows if r.get("ms")}
            for r in rows:
                shape = (f"B={r['B']} L={r['L']}" if kind == "training step"
                         else f"B={r.get('B')} D={r.get('D')} L={r.get('L')} N={r.get('N')}")
                what = f"{name}: {kind} {shape}, {r.get('backend')} scan"
                if not r.get("ms"):
                    s.add(title, what, status="fail", note=str(r.get("note", "no timing")), command=cmd.shown)
                    continue
                figures = {"ms": r["ms"], "tokens/s": r.get("tokens_per_s"), "peak MiB": r.get("peak_mib")}
                cuda_ms = ms.get("cuda")
                if cuda_ms and r.get("backend") != "cuda":
                    figures["speed vs mamba-ssm"] = cuda_ms / r["ms"]  # >= 0.8 is the goal for triton
                s.add(title, what, figures, "ok", str(r.get("note", "")), cmd.shown)
                if kind == "training step":
                    L = int(r["L"])
                    if (r.get("tokens_per_s") or 0) > tps.get(L, (0, ""))[0]:
                        tps[L] = (r["tokens_per_s"], f"caduceus_ps {r.get('backend')}")
                    if r.get("backend") == "triton" and cuda_ms:
                        s.facts.setdefault("triton_vs_cuda", []).append((name, cuda_ms / r["ms"]))
        if not model_rows and not scan_rows:
            s.add(title, f"{name}: training step", status=_status(cmd, False), note=_why(cmd), command=cmd.shown)
    if s.dry:
        s.add(title, "Triton and mamba-ssm scans", status="skipped", note="dry run: interpreter too slow; no mamba-ssm")
        s.add(title, "paper 131k (d_model 256, 16 layers)", status="skipped", note="dry run: a GPU size")


def step_sampling(s: Suite, limit: float) -> None:
    title = "4 sampling"
    out = s.work / "sampling.json"
    if s.dry:
        argv = ["python", "benchmarks/bench_samplers.py", "--length", "32", "--batch", "2", "--steps", "16", "64"]
    else:
        argv = ["python", "benchmarks/bench_samplers.py", "--device", "cuda", "--bf16", "--length", "1024", "--batch",
                "64", "--steps", "1000", "10000", "--d-model", "256", "--n-layers", "4", "--n-heads", "4"]
    cmd = s.run([*argv, "--budget", f"{max(1.0, limit - 20):.0f}", "--json", str(out)], limit)
    rows = _read_json(out) or []
    for r in rows:
        what = f"T={r['T']} {r['sampler']}, batch {r['batch']} x L={r['L']}"
        if "error" in r:
            figures = {"predicted s": r["predicted s"]} if r.get("predicted s") else {}
            s.add(title, what, figures, "skipped", r["error"], cmd.shown)
            continue
        figures = {k: r[k] for k in ("seconds", "samples/s", "network calls", "evals/sample", "speed-up",
                                     "speed-up (predicted)", "same samples") if k in r}
        s.add(title, what, figures, "ok", "", cmd.shown)
        speed = r.get("speed-up") or r.get("speed-up (predicted)")
        if speed and r["sampler"] == "cached":
            s.facts["cached_speedup"] = (r["T"], speed, "speed-up" not in r)
    if not rows:
        s.add(title, "ancestral vs cached", status=_status(cmd, False), note=_why(cmd), command=cmd.shown)


def step_loader(s: Suite, limit: float) -> None:
    title = "5 loader head-room"
    out = s.work / "loader.json"
    tps: dict[int, tuple[float, str]] = s.facts.get("train_tps", {})
    measured = [f"{L}={v:.0f}" for L, (v, _) in sorted(tps.items())]
    lengths = [str(L) for L in sorted(tps)] or (["64"] if s.dry else ["1024", "8192", "131072"])
    if s.dry:
        lengths = lengths[-1:]
    argv = ["python", "benchmarks/bench_loader.py", "--fasta", ECOLI, "--paths", "array", "--lengths", *lengths]
    argv += ["--workers", "0", "--seconds", "0.3"] if s.dry else ["--workers", "0", "4", "--seconds", "1"]
    if measured:
        argv += ["--gpu-tokens-per-s", *measured]
    cmd = s.run([*argv, "--json", str(out)], limit)
    rows = _read_json(out) or []
    for r in rows:
        who = tps.get(int(r["L"]), (None, "an estimate (no training tokens/s measured)"))[1]
        figures = {"bases/s": r["bases/s"], "training tokens/s": r["GPU tokens/s"], "head-room": r["head-room"],
                   "fastest consumer": who}
        s.add(title, f"L={r['L']} {r['path']} path, {r['workers']} workers", figures, "ok",
              "" if r.get("GPU tokens/s measured") else "against an ESTIMATE", cmd.shown)
    if not rows:
        s.add(title, "genome loader", status=_status(cmd, False), note=_why(cmd), command=cmd.shown)


def step_pretrain(s: Suite, limit: float) -> None:
    title = "6 pretrain"
    run_dir = s.work / "pretrain"
    if s.dry:
        train_s, steps = 60.0, 4
        argv = ["python", "-m", "mdlm_dna.pretrain", "model=dit_tiny", "trainer=cpu", "model.d_model=32",
                "model.n_layers=2", "model.n_heads=2", "model.cond_dim=32", "data.seq_len=64", "data.batch_size=8",
                "data.val_max_windows=8", f"trainer.max_steps={steps}", "trainer.val_check_interval=2",
                "trainer.log_every_n_steps=1", "eval.t_samples=1"]
    else:
        train_s = min(float(s.args.pretrain_s), limit - PRETRAIN_OVERHEAD_S)
        # steps for train_s at the measured eager rate (the run is eager); max_time stops it if that was optimistic
        tps = s.facts.get("dit_1k_eager_tps") or s.facts.get("dit_1k_tps")
        steps = int(train_s * tps / (64 * 1024) * 0.9) if tps else 2000
        argv = ["python", "-m", "mdlm_dna.pretrain", "model=dit_small", "trainer=gpu", "data.seq_len=1024",
                "data.batch_size=64", f"trainer.max_steps={steps}",
                f"trainer.val_check_interval={max(50, steps // 5)}", "trainer.log_every_n_steps=25",
                "optim.lr=3e-4", "optim.warmup_steps=100"]
    if train_s < (1 if s.dry else PRETRAIN_MIN_S):
        s.add(title, "dit_small pretrain on E. coli", status="skipped", note=f"{limit:.0f} s left is too little")
        return
    secs = int(train_s)
    argv += [f"+trainer.max_time=00:00:{secs // 60:02d}:{secs % 60:02d}", "checkpoint.every_n_train_steps=1000000",
             "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", f"cache_dir={s.work / 'cache'}"]
    t0 = time.monotonic()
    cmd = s.run(argv, limit - 25)  # the rest is evaluate's; max_time ends the training well before this
    wall = time.monotonic() - t0
    curve, last_step = _val_curve(run_dir / "metrics.csv")
    last = run_dir / "checkpoints" / "last.ckpt"
    model = "dit_tiny" if s.dry else "dit_small"
    figures: dict[str, Any] = {"wall s": wall, "max s of training": train_s, "last logged step": last_step,
                               "val bits/base": curve[-1][1] if curve else None}
    if last_step:
        batch, length = (8, 64) if s.dry else (64, 1024)
        figures["tokens (M, approx.)"] = last_step * batch * length / 1e6
    figures["val curve (step, bits/base)"] = curve
    if not last.exists():
        s.add(title, f"{model} pretrain on E. coli, then test bits/base", figures, _status(cmd, False),
              _why(cmd), cmd.shown)
        return
    out = s.work / "evaluate.json"
    ev = ["python", "-m", "mdlm_dna.evaluate", f"ckpt={last}", f"output={out}", f"hydra.run.dir={s.work / 'eval'}",
          f"cache_dir={s.work / 'cache'}", "trainer.enable_progress_bar=false"]
    ev += ["max_windows=8", "t_samples=1"] if s.dry else ["trainer.accelerator=gpu"]
    left = limit - (time.monotonic() - t0)
    evc = s.run(ev, max(10.0, left))
    result = _read_json(out) or {}
    figures["test bits/base"] = result.get("bits_per_base")
    figures["test windows"] = result.get("windows")
    ok = cmd.rc == 0 and evc.rc == 0 and figures["test bits/base"] is not None
    note = README_REFERENCE if ok else f"pretrain {_why(cmd)}; evaluate {_why(evc)}"
    precision = "fp32" if s.dry else "bf16"
    s.add(title, f"{model} pretrain on E. coli ({precision}), then test bits/base", figures,
          "ok" if ok else "fail", note, f"{cmd.shown} && {evc.shown}")


def _val_curve(metrics_csv: Path) -> tuple[list[tuple[int, float]], int | None]:
    """(step, validation bits/base) pairs from the run's CSV log, and the last step logged."""
    import csv

    if not metrics_csv.exists():
        return [], None
    curve, last = [], None
    with open(metrics_csv) as f:
        for rec in csv.DictReader(f):
            bpb, step = _num(rec.get("val/bpb")), _num(rec.get("step"))
            if step is not None:
                last = max(last or 0, int(step))
                if bpb is not None:
                    curve.append((int(step), bpb))
    return curve, last


def goal_rows(s: Suite) -> None:
    """The issue's goals next to what this run measured."""
    def add(goal: str, value: float | None, target: float, unit: str, note: str = "") -> None:
        if s.dry:
            status = "n/a"
            note = "dry run: tiny CPU sizes say nothing about the goal"
        else:
            status = "no data" if value is None else ("met" if value >= target else "not met")
        s.add("goals", goal, {"measured": value, "goal": target, "unit": unit}, status, note)

    add("MFU of DiT-small at L = 1024 >= 45 %", s.facts.get("dit_1k_mfu"), 45.0, "%",
        "best of eager / compiled")
    ratios = s.facts.get("triton_vs_cuda", [])
    add("Triton scan >= 0.8x mamba-ssm's kernel on the Caduceus-PS training step",
        min((r for _, r in ratios), default=None), 0.8, "x (mamba-ssm time / Triton time)",
        "; ".join(f"{n}: {r:.2f}x" for n, r in ratios))
    T, speed, predicted = s.facts.get("cached_speedup", (None, None, False))
    add("cached sampling >= 8x faster than ancestral at T = 10k", speed if T == 10000 else None, 8.0, "x",
        "ancestral time predicted from its T = 1k per-step time" if predicted else "")


STEPS = [
    Step("setup", "0 setup", 150, 10, 20, step_setup),
    Step("ceiling", "0 ceiling", 60, 60, 8, step_ceiling),
    Step("scan", "1 correctness", 100, 120, 40, step_scan),
    Step("losses", "1 correctness", 60, 120, 15, step_losses),
    Step("dit", "2 DiT training", 160, 150, 110, step_dit),
    Step("mamba", "1 correctness", 90, 10, 15, step_mamba),
    Step("caduceus", "3 Caduceus-PS training", 150, 150, 90, step_caduceus),
    Step("sampling", "4 sampling", 70, 60, 35, step_sampling),
    Step("loader", "5 loader head-room", 45, 60, 15, step_loader),
    Step("pretrain", "6 pretrain", 180 + PRETRAIN_OVERHEAD_S, 240, 235, step_pretrain),
]


# ------------------------------------------------------------------------------------------ the whole run


def probe_env(s: Suite) -> None:
    """Date, GPU, versions: every row carries them."""
    code = (
        "import json, platform, torch\n"
        "info = {'torch': torch.__version__, 'cuda': torch.version.cuda or 'none',\n"
        "        'python': platform.python_version()}\n"
        "try:\n    import triton; info['triton'] = triton.__version__\nexcept Exception: info['triton'] = 'none'\n"
        "if torch.cuda.is_available():\n"
        "    p = torch.cuda.get_device_properties(0)\n"
        "    info.update(gpu=p.name, capability=f'{p.major}{p.minor}', gpu_mib=p.total_memory // 2**20)\n"
        "else:\n    info['gpu'] = 'none (CPU)'\n"
        "print(json.dumps(info))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=s.child_env(), capture_output=True, text=True,
                       timeout=120)
    try:
        s.env_info.update(json.loads(r.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        s.say(f"could not read the versions: {r.stderr[-500:]}")
    if s.dry:
        s.env_info["gpu"] = "none (CPU dry run)"
    s.env_info["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    s.env_info["cpus"] = os.cpu_count()
    s.env_info["host"] = os.uname().nodename


def run_suite(args: argparse.Namespace) -> int:
    out = Path(args.out or os.environ.get("OUT") or Path(tempfile.gettempdir()) / "gpu_suite").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("gpu_suite.md", "gpu_suite.json", "gpu_suite.log"):
        (out / name).unlink(missing_ok=True)
    s = Suite(args=args, out=out, work=Path(tempfile.mkdtemp(prefix="gpu_suite_")))
    only = set(args.only or [st.key for st in STEPS]) | {"setup"}
    if "caduceus" in only:
        only.add("mamba")  # where the background build is waited for
    s.selected = [st.key for st in STEPS if st.key in only]
    probe_env(s)
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
            _kill_group(s.build)
        goal_rows(s)
        write_outputs(s)
        shutil.rmtree(s.work, ignore_errors=True)
    print(render_table(s), flush=True)
    s.say(f"done in {s.elapsed():.0f} s; {out / 'gpu_suite.md'}, {out / 'gpu_suite.json'}, {out / 'gpu_suite.log'}")
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    return str(v)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(s: Suite) -> str:
    """One Markdown table: a row per figure group, each with its date, GPU, versions and command."""
    head = ["step", "what", "result", "status", "note", "date", "GPU", "torch", "CUDA", "Triton", "command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in s.rows:
        result = "; ".join(f"{k} {_fmt(v)}" for k, v in r["figures"].items()
                           if v is not None and not isinstance(v, list | dict))
        cells = [r["step"], r["what"], result, r["status"], r["note"], r["date"], r["gpu"], r["torch"], r["cuda"],
                 r["triton"], f"`{r['command']}`" if r["command"] else ""]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(s: Suite) -> None:
    (s.out / "gpu_suite.md").write_text(render_table(s))
    doc = {
        "suite": {**s.env_info, "dry_run": s.dry, "budget_s": s.args.budget_s, "elapsed_s": s.elapsed(),
                  "command": shlex.join(["bash", "benchmarks/gpu_suite.sh", *s.args.argv])},
        "budget": [{"step": st.key, "title": st.title, "cap_s": st.dry_cap_s if s.dry else st.cap_s,
                    "expected_h200_s": st.expect_s} for st in STEPS],
        "steps": s.steps,
        "rows": s.rows,
    }
    (s.out / "gpu_suite.json").write_text(json.dumps(doc, indent=1, default=str))


# ---------------------------------------------------------------- the two steps that are code of their own


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


def inner_losses(dry: bool) -> list[dict]:
    """The same weights, tokens and diffusion noise on the GPU and the CPU: the loss and gradients must agree.

    The CPU side runs float32 with the torch scan; the GPU side float32 and bf16 autocast with our Triton scan
    for Caduceus. On a dry run the "GPU" is the CPU again (same numbers: it checks the plumbing)."""
    import copy

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_throughput import config_for

    from mdlm_dna.diffusion.mdlm import DrawnNoise
    from mdlm_dna.train.lit_module import DiffusionModule

    dev = torch.device("cpu" if dry else "cuda")
    batch, length = (2, 64) if dry else (4, 1024)
    rows = []
    for model in (["dit_tiny", "caduceus_ps"] if dry else ["dit_small", "caduceus_ps"]):
        cfg = config_for(model, length, batch, tiny=dry)
        if model.startswith("caduceus"):
            cfg["model"]["scan_backend"] = "torch"
        torch.manual_seed(0)
        ref = DiffusionModule(cfg).objective.eval()
        cfg_dev = copy.deepcopy(cfg)
        if model.startswith("caduceus") and not dry:
            cfg_dev["model"]["scan_backend"] = "triton"
        other = DiffusionModule(cfg_dev).objective.eval()
        other.load_state_dict(ref.state_dict())
        other.to(dev)
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, 4, (batch, length), generator=g)
        noise = DrawnNoise(t_uniform=torch.rand(batch, generator=g),
                           mask_uniform=torch.rand(batch, length, generator=g))

        def loss_and_grads(obj, device, bf16: bool, x=x, noise=noise) -> tuple[float, list[torch.Tensor]]:
            obj.zero_grad(set_to_none=True)
            nz = DrawnNoise(noise.t_uniform.to(device), noise.mask_uniform.to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = obj.nelbo(x.to(device), generator=nz).per_token
            loss.backward()
            return loss.item(), [p.grad.detach().float().cpu() if p.grad is not None else torch.zeros(p.shape)
                                 for p in obj.parameters()]

        l_ref, g_ref = loss_and_grads(ref, torch.device("cpu"), False)
        l32, g32 = loss_and_grads(other, dev, False)
        l16, _ = loss_and_grads(other, dev, True)
        flat_ref, flat32 = torch.cat([t.flatten() for t in g_ref]), torch.cat([t.flatten() for t in g32])
        grad_err = ((flat32 - flat_ref).norm() / flat_ref.norm().clamp_min(1e-30)).item()
        err32, err16 = abs(l32 - l_ref) / abs(l_ref), abs(l16 - l_ref) / abs(l_ref)
        # float32 on a GPU: other reduction orders (and TF32 where enabled), far under 1e-3; bf16 activations ~1e-2
        ok = err32 < 2e-3 and grad_err < 1e-2 and err16 < 3e-2
        side = "CPU again (dry run)" if dry else "GPU"
        scan = " (GPU: Triton scan; CPU: torch scan)" if model.startswith("caduceus") and not dry else ""
        rows.append({"what": f"{model} loss and gradients, {side} vs CPU, same weights{scan}", "ok": ok,
                     "CPU loss": l_ref, "fp32 loss rel err": err32, "bf16 loss rel err": err16,
                     "fp32 grad rel err": grad_err, "B x L": f"{batch} x {length}"})
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        rows = inner_matmul(args.dry_run) if args._step == "matmul" else inner_losses(args.dry_run)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0 if all(r.get("ok", True) for r in rows) else 1
    return run_suite(args)


if __name__ == "__main__":
    sys.exit(main())
