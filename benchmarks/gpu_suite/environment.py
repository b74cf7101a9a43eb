"""Step 0: the date, GPU and versions every row carries; the carried wheels installed; mamba-ssm built for this GPU."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from common import ROOT

from gpu_suite.framework import Suite, why

REQUIREMENTS = ["hydra-core", "omegaconf", "antlr4-python3-runtime", "pyfaidx", "biopython"]  # not on the device
IMPORTS = {"hydra-core": "hydra", "omegaconf": "omegaconf", "antlr4-python3-runtime": "antlr4",
           "pyfaidx": "pyfaidx", "biopython": "Bio"}


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


def step_setup(s: Suite, limit: float) -> None:
    title = "0 setup"
    if s.dry:
        s.add(title, "install carried wheels and the project", status="skipped",
              note="dry run: the environment already has the dependencies")
        s.add(title, "mamba-ssm build", status="skipped", note="dry run: no mamba-ssm")
        return
    wheels = Path(s.args.wheels)
    missing = [r for r in REQUIREMENTS if not importable(IMPORTS[r])]
    t0 = time.monotonic()
    figures: dict[str, Any] = {}
    notes = []
    if missing:
        if not wheels.is_dir():
            notes.append(f"{wheels} is missing: run scripts/fill_device_wheels.py and carry it")
        cmd = s.run(["python", "-m", "pip", "install", "-q", "--no-index", "--no-cache-dir", "--find-links",
                     str(wheels), *missing], timeout=min(limit, 120))
        if cmd.rc != 0:
            notes.append(f"pip install of {' '.join(missing)}: {why(cmd)}")
    if not importable("mdlm_dna", installed_only=True):
        cmd = s.run(["python", "-m", "pip", "install", "-q", "--no-index", "--no-cache-dir", "--find-links",
                     str(wheels), "--no-deps", "-e", "."], timeout=max(10.0, limit - (time.monotonic() - t0)))
        if cmd.rc != 0:
            notes.append("editable install failed: the steps import the checkout through PYTHONPATH")
    still = [r for r in REQUIREMENTS if not importable(IMPORTS[r])]
    figures["seconds"] = time.monotonic() - t0
    figures["installed"] = ", ".join(sorted(set(missing) - set(still))) or "nothing needed"
    if still:
        notes.append("still missing: " + " ".join(still))
    s.add(title, "install carried wheels and the project", figures, "fail" if still else "ok", "; ".join(notes),
          f"pip install --no-index --find-links {wheels} {' '.join(REQUIREMENTS)}; pip install --no-deps -e .")
    start_mamba_build(s, wheels)


def importable(module: str, installed_only: bool = False) -> bool:
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
    if importable("mamba_ssm.ops.selective_scan_interface"):
        s.add(title, "mamba-ssm build", {"build s": 0}, "ok", "already installed")
        s.facts["mamba_installed"] = True
        return
    prebuilt = sorted(wheels.glob("mamba_ssm-*.whl"))
    if prebuilt:
        cmd = s.run(["python", "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(prebuilt[-1])], 120)
        if cmd.rc == 0 and importable("mamba_ssm.ops.selective_scan_interface"):
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
