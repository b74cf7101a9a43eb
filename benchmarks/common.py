"""What the benchmark scripts do alike: their command line, the configs they build, timing, and their records.

Importing this module puts the repository root on ``sys.path``, so that a script run as
``python benchmarks/X.py`` imports the checkout's ``mdlm_dna`` without installing it (Python puts only
``benchmarks/`` there). It imports nothing but the standard library at the top: ``gpu_suite`` uses it on a bare
machine before anything is installed, and the docs build reads the table functions of the scripts without torch.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing


# The CPU pretraining defaults before the chain became one (2026-12): 128-base windows, batch 32, 300 steps, warm-up
# 50, no chain. Scripts whose recorded rows were trained so pin them (a caller's own overrides come after and win).
OLD_CPU_DEFAULTS = ["data.seq_len=128", "data.batch_size=32", "data.val_max_windows=256", "optim.warmup_steps=50",
                    "model.markov_order=0"]


# ----- the command line ----------------------------------------------------------------------------------------
def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows the script's docstring as written (its usage lines keep their layout).

    >>> "\\n    python x.py --n 2\\n" in arg_parser("Title.\\n\\n    python x.py --n 2").format_help()
    True
    """
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


MODEL_HELP = "shipped model name, run folder, .ckpt or export folder"


def add_model_option(ap: argparse.ArgumentParser, default: str | None = "ecoli", help_: str = MODEL_HELP) -> None:
    """``--model``: what ``DiffusionLM.from_pretrained`` loads, so every script names its sources alike.

    >>> ap = arg_parser(None); add_model_option(ap); ap.parse_args([]).model
    'ecoli'
    """
    ap.add_argument("--model", default=default, help=help_)


# ----- configs -------------------------------------------------------------------------------------------------
def compose_config(name: str, overrides: list[str]) -> Any:
    """The package's Hydra config ``configs/NAME.yaml`` with ``overrides``, as its command composes it: a run
    started here trains, fine-tunes or scores exactly like ``python -m mdlm_dna.NAME``."""
    from hydra import compose, initialize_config_dir

    from mdlm_dna.utils.resources import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def model_config(name: str) -> dict:
    """``configs/model/NAME.yaml`` as a plain dict, to size or build a backbone without composing a run."""
    from omegaconf import OmegaConf

    from mdlm_dna.utils.resources import config_dir

    return OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / f"{name}.yaml"))


def pretrain_config(model: str, seq_len: int, batch: int, **model_fields: Any) -> dict:
    """The pretrain config (a dict) of ``model``, its fields updated by ``model_fields``, at this window length and
    batch: MDLM, log-linear noise, nucleotide tokens. What a timed training step builds ``DiffusionModule`` from."""
    from omegaconf import OmegaConf

    from mdlm_dna.utils.resolvers import register_resolvers
    from mdlm_dna.utils.resources import config_dir

    register_resolvers()
    model_cfg = model_config(model)
    model_cfg.update(model_fields)
    base = OmegaConf.to_container(OmegaConf.load(config_dir() / "pretrain.yaml"))
    base.pop("defaults", None)
    base.pop("hydra", None)
    base.update(model=model_cfg, noise={"name": "loglinear"}, objective={"name": "mdlm"},
                data={"seq_len": seq_len, "batch_size": batch, "tokenizer": {"name": "nucleotide"}})
    return base


# ----- timing ----------------------------------------------------------------------------------------------------
def sync_device(device: Any) -> None:
    """Wait for a CUDA device's queued work, so that a wall-clock time covers it (a no-op on a CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass
class Timings:
    """Wall-clock and process-CPU seconds of repeated calls, and the last call's result."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def best(self) -> float:
        """The least disturbed call: on a shared machine, the closest to what the work itself costs."""
        return min(self.seconds)

    @property
    def median(self) -> float:
        """The median call (the mean of the middle two for an even count)."""
        return statistics.median(self.seconds)

    @property
    def middle(self) -> float:
        """The middle call of the sorted times (the upper of the middle two for an even count): a time one call
        actually took.

        >>> Timings(seconds=[4.0, 1.0, 3.0, 2.0]).middle
        3.0
        """
        return sorted(self.seconds)[len(self.seconds) // 2]


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 0, device: Any = "cpu") -> Timings:
    """Call ``fn`` ``warmup`` times untimed (compilation, caches), then ``repeats`` times timed one by one; on a
    CUDA ``device`` each time waits for the device's work.

    >>> t = time_calls(lambda: 42, repeats=3, warmup=1)
    >>> len(t.seconds), t.result
    (3, 42)
    """
    for _ in range(warmup):
        fn()
    out = Timings()
    for _ in range(repeats):
        with Stopwatch() as watch:
            out.result = fn()
            sync_device(device)
        out.seconds.append(watch.seconds)
        out.cpu_seconds.append(watch.cpu_seconds)
    return out


class Stopwatch:
    """Wall-clock and CPU seconds of this process over a ``with`` block: on a busy machine the CPU time is the
    steadier figure.

    >>> with Stopwatch() as w:
    ...     _ = sum(range(1000))
    >>> w.seconds >= 0 and w.cpu_seconds >= 0
    True
    """

    def __enter__(self) -> Stopwatch:
        self.seconds = self.cpu_seconds = 0.0
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu


def children_cpu_s() -> float:
    """CPU seconds (user + system) of every finished child process waited for: what a run of subprocesses cost.

    >>> children_cpu_s() >= 0
    True
    """
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def peak_rss_bytes() -> int:
    """This process's peak resident set in bytes (Linux reports KiB): Python, torch and the data included.

    >>> peak_rss_bytes() > 0
    True
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----- records ---------------------------------------------------------------------------------------------------
def machine_line() -> str:
    """CPU count, platform and the 1-minute load average: timings taken beside other jobs say so.

    >>> "load average" in machine_line()
    True
    """
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    busy = "shared and busy" if load > 0.5 * (os.cpu_count() or 1) else "quiet"
    return (f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {busy}: load average "
            f"{load:.1f} when the record was written")


def write_record(path: Path, title: str, body: str, note: str = "") -> None:
    """Write ``body`` (Markdown tables) under a header naming the command (this process's argv) and the machine:
    a figure in the repository says how to make it again and what it was measured on."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"# {title}\n\nRegenerate: `{command}`\n\nMeasured {when}; machine: {machine_line()}."
            + (f" {note}" if note else "") + "\n\n" + body.rstrip() + "\n")
    Path(path).write_text(text)


def read_runs(path: Path) -> list[dict]:
    """The recorded runs of a CSV record (values as strings); none when the file does not exist yet."""
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def append_run(path: Path, row: dict, fields: list[str]) -> None:
    """Record one finished run at once (an interrupted table resumes); the header goes in with the first row.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "runs.csv"
    >>> append_run(p, {"seed": 1, "bpb": 1.9}, ["seed", "bpb"]); read_runs(p)
    [{'seed': '1', 'bpb': '1.9'}]
    """
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow(row)
