"""Which training recipe learns most per CPU-second? A sweep at a fixed wall-clock budget, scored on test.

    python benchmarks/recipe.py                       # measure step times, run every candidate, print the table
    python benchmarks/recipe.py --measure             # only: seconds/step of each shape at 2 threads, one job
    python benchmarks/recipe.py --run lr3e-3 lr6e-3   # only these candidates (2 at a time, 1 thread each)
    python benchmarks/recipe.py --table               # the table of every run so far (markdown)

Fairness on a shared 2-core machine: wall-clock is noisy, so each shape's seconds per optimizer step is
measured once at 2 threads on a single job (``--measure``), and every candidate gets
``budget / (seconds per step)`` steps, its warm-up and cosine schedule sized to them. The runs themselves
go at ``OMP_NUM_THREADS=1``, two at a time; their wall-clock is recorded but not used. Every candidate
validates once, at its end, and is scored on the whole test split (1,813 windows of 128 bases, 16 noise
draws each: ``python -m mdlm_dna.evaluate``), with its EMA weights and, where asked, its raw weights.
Rows go to ``benchmarks/recipe_runs.csv`` (one per evaluation); ``benchmarks/recipe_results.md`` has the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "recipe"
STEP_TIMES = ROOT / "benchmarks" / "recipe_step_times.csv"
RESULTS = ROOT / "benchmarks" / "recipe_runs.csv"
BUDGET_S = 90.0  # optimizer-step seconds at 2 threads; start-up and the final validation add ~20 s

# a shape: (d_model, n_layers, n_heads, seq_len, batch) -> what one optimizer step costs
Shape = tuple[int, int, int, int, int]
DEFAULT_SHAPE: Shape = (128, 4, 4, 128, 32)

# Every candidate pins these (so a later change of the package defaults does not change an old row), then
# changes some of them. The step count is the budget's unless a candidate fixes it (``trainer.max_steps``).
PINNED: dict[str, str] = {
    "optim.lr": "3e-3",
    "optim.min_lr_ratio": "0.1",
    "model.time_conditioning": "true",
    "objective.time_sampling": "lattice",
    "ema.decay": "0.9999",
    "ema.warmup": "true",
    "data.val_max_windows": "256",
    "eval.t_samples": "8",
}

# name -> (shape, changes to PINNED, evaluate the raw weights too)
CANDIDATES: dict[str, tuple[Shape, dict[str, str], bool]] = {
    # the learning rate, on the old default shape (raw and EMA weights)
    "lr1e-3": (DEFAULT_SHAPE, {"optim.lr": "1e-3"}, True),
    "lr3e-3": (DEFAULT_SHAPE, {}, True),
    "lr6e-3": (DEFAULT_SHAPE, {"optim.lr": "6e-3"}, True),
    # time conditioning and the time sampler
    "no_tc": (DEFAULT_SHAPE, {"model.time_conditioning": "false"}, False),
    "stratified": (DEFAULT_SHAPE, {"objective.time_sampling": "stratified"}, False),
    "iid": (DEFAULT_SHAPE, {"objective.time_sampling": "iid"}, False),
    "no_tc_stratified": (DEFAULT_SHAPE, {"model.time_conditioning": "false",
                                         "objective.time_sampling": "stratified"}, True),
    # the same tokens in 300 larger steps (the CPU trainer's default step count)
    "b48_300": ((128, 4, 4, 128, 48), {"model.time_conditioning": "false", "objective.time_sampling": "stratified",
                                       "trainer.max_steps": "300"}, True),
    # window length at the same tokens per step
    "L64_b64": ((128, 4, 4, 64, 64), {}, False),
    "L32_b128": ((128, 4, 4, 32, 128), {}, False),
    # model width / depth at the same wall-clock
    "d96": ((96, 4, 4, 128, 32), {}, False),
    "d192": ((192, 4, 4, 128, 32), {}, False),
    "n2": ((128, 2, 4, 128, 32), {}, False),
    "n6": ((128, 6, 4, 128, 32), {}, False),
    # batch size at the same wall-clock (fewer, larger steps or more, smaller ones)
    "b64": ((128, 4, 4, 128, 64), {}, False),
    "b16": ((128, 4, 4, 128, 16), {}, False),
    # the backbone: Caduceus-PS (pure-PyTorch scan on CPU)
    "caduceus": ((64, 4, 0, 128, 32), {"model": "caduceus_ps"}, False),
}


def shape_overrides(shape: Shape) -> list[str]:
    d, n, h, seq_len, batch = shape
    model = [f"model.d_model={d}", f"model.n_layers={n}"] + ([f"model.n_heads={h}"] if h else [])
    return model + [f"data.seq_len={seq_len}", f"data.batch_size={batch}"]


def model_of(name: str) -> str:
    return CANDIDATES[name][1].get("model", "dit_tiny")


def measure_shape(shape: Shape, model: str = "dit_tiny", steps: int = 10) -> float:
    """Median seconds of one optimizer step (MDLM loss, backward, AdamW, EMA), in this process."""
    import torch
    from omegaconf import OmegaConf

    from mdlm_dna.resources import config_dir, register_resolvers
    from mdlm_dna.train.lit_module import DiffusionModule

    register_resolvers()
    d, n, h, seq_len, batch = shape
    m = OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / f"{model}.yaml"))
    m.update(d_model=d, n_layers=n, **({"n_heads": h} if h else {}))
    base = OmegaConf.to_container(OmegaConf.load(config_dir() / "pretrain.yaml"))
    base.pop("defaults"), base.pop("hydra")
    base.update(model=m, noise={"name": "loglinear"}, objective={"name": "mdlm"},
                data={"seq_len": seq_len, "batch_size": batch, "tokenizer": {"name": "nucleotide"}})
    module = DiffusionModule(base)
    obj = module.objective
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-3)
    x = torch.randint(0, 4, (batch, seq_len))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = obj.nelbo(x, generator=torch.Generator().manual_seed(i)).per_token
        opt.zero_grad()
        loss.backward()
        opt.step()
        module.ema.update(obj)
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return times[len(times) // 2]


def measure(names: list[str], threads: int = 2) -> dict[str, float]:
    """Seconds per step of each candidate's shape at ``threads`` threads, one job at a time (cached in a CSV)."""
    known = load_step_times()
    for name in names:
        shape, model = CANDIDATES[name][0], model_of(name)
        key = f"{model}:{','.join(map(str, shape))}"
        if key in known:
            continue
        code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import recipe; "
                f"print(recipe.measure_shape({shape!r}, {model!r}))")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        known[key] = float(out.stdout.strip().splitlines()[-1])
        print(f"{key}: {known[key] * 1e3:.1f} ms/step at {threads} threads", flush=True)
        with STEP_TIMES.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["shape", "seconds_per_step_2_threads"])
            w.writerows(sorted(known.items()))
    return known


def load_step_times() -> dict[str, float]:
    if not STEP_TIMES.exists():
        return {}
    with STEP_TIMES.open() as fh:
        return {r["shape"]: float(r["seconds_per_step_2_threads"]) for r in csv.DictReader(fh)}


def steps_for(name: str, budget_s: float) -> int:
    shape, changes, _ = CANDIDATES[name]
    if "trainer.max_steps" in changes:
        return int(changes["trainer.max_steps"])
    return max(20, int(budget_s / load_step_times()[f"{model_of(name)}:{','.join(map(str, shape))}"]))


def run_timed(cmd: list[str], env: dict[str, str], log) -> float:
    """Run ``cmd`` to completion; returns its CPU seconds (user + system), which a busy machine inflates far
    less than wall-clock (at one thread, CPU seconds are roughly the wall-clock of an idle core)."""
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return usage.ru_utime + usage.ru_stime


def run_candidate(name: str, budget_s: float, t_samples: int = 16) -> list[dict]:
    """Train one candidate at one thread, then evaluate it on the test split; returns its CSV rows."""
    shape, changes, raw_too = CANDIDATES[name]
    steps = steps_for(name, budget_s)
    run_dir = RUNS / name
    settings = {**PINNED, "optim.warmup_steps": str(max(10, steps // 10)), **changes, "trainer.max_steps": str(steps)}
    group = [f"model={settings.pop('model')}"] if "model" in settings else []  # a group before its keys
    overrides = [*group, *shape_overrides(shape), *(f"{k}={v}" for k, v in settings.items())]
    cmd = [sys.executable, "-m", "mdlm_dna.pretrain", f"hydra.run.dir={run_dir}", *overrides,
           f"trainer.val_check_interval={steps}", f"checkpoint.every_n_train_steps={steps}",
           "trainer.enable_progress_bar=false", "resume=null"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with (RUNS / f"{name}.log").open("w") as log:
        train_cpu_s = run_timed(cmd, env, log)
    train_s = time.time() - t0
    rows = []
    for use_ema in ([True, False] if raw_too else [True]):
        out = run_dir / f"test_{'ema' if use_ema else 'raw'}.json"
        subprocess.run([sys.executable, "-m", "mdlm_dna.evaluate", f"ckpt={run_dir}/checkpoints/last.ckpt",
                        f"t_samples={t_samples}", f"use_ema={str(use_ema).lower()}", f"output={out}",
                        "trainer.enable_progress_bar=false"], env=env, check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res = json.loads(out.read_text())
        rows.append({
            "name": name, "overrides": " ".join(overrides), "steps": steps,
            "tokens": steps * shape[3] * shape[4], "weights": "EMA" if use_ema else "raw",
            "test_bpb": round(res["bits_per_base"], 4), "windows": res["windows"], "t_samples": res["t_samples"],
            "cpu_s": round(train_cpu_s, 1), "wall_s_1_thread": round(train_s, 1),
            "when": time.strftime("%Y-%m-%d %H:%M"),
        })
    with RESULTS.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if fh.tell() == 0:
            w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(f"{name:12s} {r['weights']:3s} steps={steps:4d} test bits/base {r['test_bpb']:.4f}", flush=True)
    return rows


def table() -> str:
    import pandas as pd

    df = pd.read_csv(RESULTS)
    return df.drop(columns=["when", "overrides"]).to_markdown(index=False, floatfmt=".4f")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--measure", action="store_true", help="only measure the step times")
    ap.add_argument("--run", nargs="*", default=None, help="candidates to run (default: all)")
    ap.add_argument("--table", action="store_true", help="only print the table")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="optimizer-step seconds at 2 threads")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (1 thread each)")
    ap.add_argument("--nice", type=int, default=0, help="run the candidates at this niceness (a shared machine)")
    args = ap.parse_args(argv)
    names = list(CANDIDATES) if not args.run else args.run
    if args.table:
        print(table())
        return
    measure(names)
    if args.measure:
        return
    if args.nice:
        os.nice(args.nice)  # inherited by every run
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda n: run_candidate(n, args.budget), names))
    print(table())


if __name__ == "__main__":
    main()
