"""Fill device_wheels/ with exactly what benchmarks/gpu_suite.sh installs on the device machine.

    .venv/bin/python scripts/fill_device_wheels.py            # then carry "device_wheels" in the device call

The device machine (an H200; Python 3.12, x86_64, no network) has PyTorch, Triton, Lightning, numpy,
PyYAML, packaging, setuptools, transformers and einops, but not hydra-core, omegaconf (and its
antlr4-python3-runtime), pyfaidx, biopython or mamba-ssm. This downloads, for CPython 3.12 on manylinux
x86_64:

- wheels of hydra-core, omegaconf, pyfaidx and biopython at the versions this environment has (the ones
  the tests ran with), and antlr4-python3-runtime, which PyPI has only as an sdist, built here into a
  pure-Python wheel;
- hatchling and its requirements (resolved by pip), so that ``pip install --no-index -e .`` can build the project there;
- mamba-ssm's sdist (its CUDA kernels are compiled on the device, for that GPU only: gpu_suite/environment.py patches
  setup.py). A prebuilt ``mamba_ssm-*.whl`` already in the folder (the suite puts one in its output when
  it is small enough) is kept, and the suite installs it instead of building.

Then it checks that every requirement of every wheel is either in the folder or on the device already,
and that the folder plus the rest of the working tree stay under the 64 MiB a device call may carry.
It empties the folder first (one version of each package: two stop pip there). Needs network (PyPI).
"""

from __future__ import annotations

import argparse
import email.parser
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64.0  # the device call's working tree, carried folders included
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
# name: version used when this environment does not have the package
WHEELS = {"hydra-core": "1.3.2", "omegaconf": "2.3.0", "pyfaidx": "0.8.1.3", "biopython": "1.84"}
# the editable install's build backend and everything it needs (resolved by pip): an isolated build there
# sees only the folder
BUILD = ["hatchling", "editables"]
SDIST_WHEELS = {"antlr4-python3-runtime": "4.9.3"}  # sdist-only on PyPI, pure Python: built into a wheel here
# 2.3.x: 2.2.x imports transformers.generation.GreedySearchDecoderOnlyOutput, gone in transformers 5 (the device
# has 5.17), so `import mamba_ssm` fails there. Installed with --no-deps: its tilelang / quack-kernels
# requirements serve Mamba-3 kernels, imported only if present; the selective scan needs none of them.
MAMBA = "mamba-ssm==2.3.2.post1"
# on the device already (KINDS.md's package list): requirements that need no wheel
ON_DEVICE = {"numpy", "pyyaml", "packaging", "setuptools", "torch", "triton", "ninja", "einops", "transformers",
             "typing-extensions", "importlib-metadata", "tomli", "wheel", "pip"}


def _pin(name: str, default: str | None) -> str:
    try:
        return f"{name}=={md.version(name)}"
    except md.PackageNotFoundError:
        return f"{name}=={default}" if default else name


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(wheel: Path) -> list[str]:
    """Requirement names of a wheel that apply on the device (CPython 3.12, Linux x86_64), extras left out."""
    from packaging.requirements import Requirement

    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    names = []
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            names.append(_norm(req.name))
    return names


def tree_mib(exclude: Path) -> float:
    """What else travels: tracked and untracked-not-ignored files of the checkout."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode().split("\0")
    total = 0
    for rel in filter(None, out):
        path = ROOT / rel
        if path.is_file() and exclude not in path.parents:
            total += path.stat().st_size
    return total / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", type=Path, default=ROOT / "device_wheels")
    ap.add_argument("--no-mamba", action="store_true", help="leave mamba-ssm out")
    a = ap.parse_args(argv)
    dest = a.dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    for f in dest.iterdir():  # one version of each package; a prebuilt mamba-ssm wheel is kept
        if f.is_file() and not (f.name.startswith("mamba_ssm-") and f.suffix == ".whl"):
            f.unlink()
    binary = ["download", "-q", "--only-binary=:all:", "--python-version", "3.12", "--implementation",
              "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none", "-d", str(dest)]
    for plat in PLATFORMS:
        binary += ["--platform", plat]
    _pip(*binary, "--no-deps", *[_pin(n, v) for n, v in WHEELS.items()])
    _pip(*binary, *BUILD)
    with tempfile.TemporaryDirectory() as tmp:
        for name, version in SDIST_WHEELS.items():
            _pip("wheel", "-q", "--no-deps", "-w", str(dest), _pin(name, version), "--cache-dir", tmp)
    if not a.no_mamba and not list(dest.glob("mamba_ssm-*.whl")):
        # pip reads an sdist's metadata by running its setup.py, which imports torch: skip the CUDA part and
        # use this environment's torch (nothing is compiled here)
        print("(MAMBA_SKIP_CUDA_BUILD=TRUE for the metadata only)")
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", "-d", str(dest), MAMBA]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**os.environ, "MAMBA_SKIP_CUDA_BUILD": "TRUE"})

    files = sorted(f for f in dest.iterdir() if f.is_file())
    have = {_norm(re.split(r"-\d", f.name, maxsplit=1)[0]) for f in files}
    missing = {}
    for f in files:
        if f.suffix == ".whl":
            need = [r for r in _requirements(f) if r not in have and r not in ON_DEVICE]
            if need:
                missing[f.name] = need
    size = sum(f.stat().st_size for f in files) / 2**20
    rest = tree_mib(dest)
    print(f"\n{dest}: {len(files)} files, {size:.1f} MiB")
    for f in files:
        print(f"  {f.stat().st_size / 2**20:6.2f} MiB  {f.name}")
    print(f"the rest of the working tree: {rest:.1f} MiB; together {size + rest:.1f} of {LIMIT_MIB:.0f} MiB")
    ok = True
    if missing:
        ok = False
        for name, need in missing.items():
            print(f"MISSING for {name}: {', '.join(need)} (neither in the folder nor on the device)")
    if size + rest > LIMIT_MIB:
        ok = False
        print("OVER the device call's 64 MiB: leave something out (e.g. --no-mamba)")
    if shutil.which("git") and subprocess.run(["git", "check-ignore", "-q", str(dest)], cwd=ROOT).returncode != 0:
        print(f"note: {dest} is not git-ignored, so it travels anyway; carry it explicitly only if it is ignored")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
