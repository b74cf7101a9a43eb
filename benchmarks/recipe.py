"""Which training recipe learns most per CPU-second? A sweep at a fixed wall-clock budget, scored on test.

    python benchmarks/recipe.py                       # measure step times, run every candidate, print the table
    python benchmarks/recipe.py --measure             # only: seconds/step of each shape at 2 threads, one job
    python benchmarks/recipe.py --run lr3e-3 lr6e-3   # only these candidates (2 at a time, 1 thread each)
    python benchmarks/recipe.py --table               # the table of every run so far (markdown)
    python benchmarks/recipe.py --plot                # bits/base against training FLOPs: benchmarks/recipe_flops.png
    python benchmarks/recipe.py --run ecoli_cont30k --jobs 1 --stop-after 120 --bounds reference full
                                                      # a long run in segments of 2 hours: the same command continues it
                                                      # (--threads 2: a segment alone on the machine)

Fairness on a shared 2-core machine: wall-clock is noisy, so each shape's seconds per optimizer step is
measured once on a single job (``--measure``; the committed CSV holds figures taken while the machine was
idle) and every candidate gets the optimizer-step seconds of the default's 300 steps: 300 x (default step
time / its step time) steps, its cosine schedule sized to them. The runs themselves go at
``OMP_NUM_THREADS=1``, two at a time; their CPU seconds and wall-clock are recorded, not used. Every candidate
validates once, at its end, and is scored on the whole test split (1,813 windows of 128 bases, 16 noise
draws each: ``python -m mdlm_dna.evaluate``), with its EMA weights and, where asked, its raw weights.
Rows go to ``benchmarks/recipe_runs.csv`` (one per evaluation); ``benchmarks/recipe_results.md`` has the table.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from common import ROOT, arg_parser, model_config, pretrain_config, read_runs, time_calls, write_record

RUNS = ROOT / "runs" / "recipe"
WINDOWS = ROOT / "benchmarks" / "paired_windows" / "recipe"  # per-window test scores (window_scores)
STEP_TIMES = ROOT / "benchmarks" / "recipe_step_times.csv"
RESULTS = ROOT / "benchmarks" / "recipe_runs.csv"

# a shape: (d_model, n_layers, n_heads, seq_len, batch) -> what one optimizer step costs
Shape = tuple[int, int, int, int, int]
DEFAULT_SHAPE: Shape = (128, 4, 4, 128, 32)

# Every candidate pins these (so a later change of the package defaults does not change an old row), then
# changes some of them. Steps: 300 (the CPU trainer's default) for the default shape, scaled by the measured
# step cost for other shapes so that every candidate gets the same optimizer-step seconds.
PINNED: dict[str, str] = {
    "optim.lr": "2e-3",
    "optim.warmup_steps": "50",
    "optim.min_lr_ratio": "0.1",
    "model.time_conditioning": "false",
    "model.conv_kernel": "0",
    "objective.time_sampling": "stratified",
    "ema.decay": "0.9999",
    "ema.warmup": "true",
    "data.val_max_windows": "256",
    "eval.t_samples": "4",
    "model.markov_order": "0",  # pretraining's default became auto (a chain on CPUs): the chain rows say so
}
DEFAULT_STEPS = 300
CONV5 = {"model.conv_kernel": "5"}  # the default since local mixing (recipe_results.md)
AR = {"objective": "ar", "model.causal": "true", "model.conv_kernel": "5"}
N2_B16 = {**CONV5, "trainer.max_steps": "1313"}  # depth 2 + batch 16: its step count, derived below
CHAIN6_FWD = {**CONV5, "model.markov_order": "6", "model.markov_strands": "forward"}  # see CANDIDATES
CHAIN6_BOTH = {**CHAIN6_FWD, "model.markov_strands": "both"}
CHAIN6 = "MDLM + order-6 chain (model.markov_order=6)"  # a curve of its own in the plot
CHAIN6_RUNS = ("c5_mk6", "c5_mk6_1200")  # its runs (seeds of one recipe share a name up to _sN)
# a candidate key: start from the last checkpoint of that candidate's run, or from a shipped model by its name
# (``pretrain init_from``); its training FLOPs count the source's
SOURCE = "_init_from"
CONTINUED = "shipped ecoli trained further (MDLM: ecoli_40k, then ecoli_47k on 512-base windows)"
# a candidate key: score on test windows of this many bases (default 128), e.g. the model's own longer window, whose
# fewer edges cost less context (a window's first bases are predicted from one side only)
SCORE_LENGTH = "_score_length"
# a candidate key: validate and checkpoint every this many steps (default: once, at the end); long runs keep a
# validation curve and resume from a recent checkpoint after an interruption
EVERY = "_every"
GROUPS = ("model", "objective")  # config groups: a group's choice goes before its keys

# name -> (shape, changes to PINNED, evaluate the raw weights too)
CANDIDATES: dict[str, tuple[Shape, dict[str, str], bool]] = {
    # the old default (lr 1e-3, time-conditioned, one uniform per batch) and the learning rate
    "old_default": (DEFAULT_SHAPE, {"optim.lr": "1e-3", "model.time_conditioning": "true",
                                    "objective.time_sampling": "lattice", "eval.t_samples": "8"}, False),
    "lr3e-3_tc_lattice_430": (DEFAULT_SHAPE, {"optim.lr": "3e-3", "model.time_conditioning": "true",
                                              "objective.time_sampling": "lattice", "eval.t_samples": "8",
                                              "trainer.max_steps": "430", "optim.warmup_steps": "43"}, True),
    "lr6e-3_tc_lattice_430": (DEFAULT_SHAPE, {"optim.lr": "6e-3", "model.time_conditioning": "true",
                                              "objective.time_sampling": "lattice", "eval.t_samples": "8",
                                              "trainer.max_steps": "430", "optim.warmup_steps": "43"}, True),
    "lr1e-3": (DEFAULT_SHAPE, {"optim.lr": "1e-3"}, False),
    "lr2e-3": (DEFAULT_SHAPE, {}, True),
    "lr3e-3": (DEFAULT_SHAPE, {"optim.lr": "3e-3"}, False),
    # time conditioning and the time sampler, each alone
    "tc_on": (DEFAULT_SHAPE, {"model.time_conditioning": "true"}, False),
    "lattice": (DEFAULT_SHAPE, {"objective.time_sampling": "lattice"}, False),
    "iid": (DEFAULT_SHAPE, {"objective.time_sampling": "iid"}, False),
    # window length at the same tokens per step
    "L64_b64": ((128, 4, 4, 64, 64), {}, False),
    # model width / depth and batch at the same optimizer-step seconds
    "d96": ((96, 4, 4, 128, 32), {}, False),
    "n2": ((128, 2, 4, 128, 32), {}, False),
    "b16": ((128, 4, 4, 128, 16), {}, False),
    "b48_200": ((128, 4, 4, 128, 48), {}, False),
    # local mixing: a depthwise convolution over positions in every DiT block (kernel width; step cost +~3 %,
    # not rescaled), then the new default's neighbours: time conditioning, learning rate, another seed
    "conv3": (DEFAULT_SHAPE, {"model.conv_kernel": "3"}, False),
    "conv5": (DEFAULT_SHAPE, {"model.conv_kernel": "5"}, False),
    "conv9": (DEFAULT_SHAPE, {"model.conv_kernel": "9"}, False),
    "conv5_tc_on": (DEFAULT_SHAPE, {"model.conv_kernel": "5", "model.time_conditioning": "true"}, False),
    "conv5_lr3e-3": (DEFAULT_SHAPE, {"model.conv_kernel": "5", "optim.lr": "3e-3"}, False),
    "conv5_lr1e-3": (DEFAULT_SHAPE, {"model.conv_kernel": "5", "optim.lr": "1e-3"}, False),
    "conv5_seed1": (DEFAULT_SHAPE, {"model.conv_kernel": "5", "seed": "1"}, False),
    # the backbone: Caduceus-PS (pure-PyTorch scan on CPU)
    "caduceus": ((64, 4, 0, 128, 32), {"model": "caduceus_ps"}, False),
    # issue 31: the default (conv5) over seeds, scored with a standard error, against candidates at its budget
    "c5_s0": (DEFAULT_SHAPE, {**CONV5}, False),
    "c5_s1": (DEFAULT_SHAPE, {**CONV5, "seed": "1"}, False),
    "c5_s2": (DEFAULT_SHAPE, {**CONV5, "seed": "2"}, False),
    "c5_n2": ((128, 2, 4, 128, 32), {**CONV5}, False),  # half the depth, 2.2x the steps
    "c5_n2_s1": ((128, 2, 4, 128, 32), {**CONV5, "seed": "1"}, False),
    "c5_n2_s2": ((128, 2, 4, 128, 32), {**CONV5, "seed": "2"}, False),
    "c5_rc0": (DEFAULT_SHAPE, {**CONV5, "data.rc_prob": "0"}, False),  # no reverse-complement augmentation
    "c5_rc0_s1": (DEFAULT_SHAPE, {**CONV5, "data.rc_prob": "0", "seed": "1"}, False),
    "c5_rc0_s2": (DEFAULT_SHAPE, {**CONV5, "data.rc_prob": "0", "seed": "2"}, False),
    # more optimizer steps on the same tokens: batch 16, 600 steps (its measured step cost is half the default's)
    "c5_b16_s0": ((128, 4, 4, 128, 16), {**CONV5}, False),
    "c5_b16_s1": ((128, 4, 4, 128, 16), {**CONV5, "seed": "1"}, False),
    "c5_b16_s2": ((128, 4, 4, 128, 16), {**CONV5, "seed": "2"}, False),
    # both at once: half the depth and half the batch; steps = 300 x (0.209 / 0.0955) x (0.209 / 0.1045) = 1,313,
    # the two measured step-cost ratios multiplied (not measured alone: the machine was busy)
    "c5_n2_b16_s0": ((128, 2, 4, 128, 16), {**N2_B16}, False),
    "c5_n2_b16_s1": ((128, 2, 4, 128, 16), {**N2_B16, "seed": "1"}, False),
    "c5_n2_b16_s2": ((128, 2, 4, 128, 16), {**N2_B16, "seed": "2"}, False),
    # the exact order-k chain denoiser under the network (model.markov_order): the network learns its residual.
    # Same 300 steps as the default (each step costs more: the forward-backward over 4^k states; CPU-s recorded).
    # The first runs counted the chain on the forward strand (before model.markov_strands, whose default is both)
    "c5_mk6_s0": (DEFAULT_SHAPE, {**CHAIN6_FWD}, False),
    "c5_mk6_s1": (DEFAULT_SHAPE, {**CHAIN6_FWD, "seed": "1"}, False),
    "c5_mk6_s2": (DEFAULT_SHAPE, {**CHAIN6_FWD, "seed": "2"}, False),
    "c5_mk6_1200": (DEFAULT_SHAPE, {**CHAIN6_FWD, "trainer.max_steps": "1200"}, False),
    "c5_mk6b_s0": (DEFAULT_SHAPE, {**CHAIN6_BOTH}, False),
    "c5_mk6b_s1": (DEFAULT_SHAPE, {**CHAIN6_BOTH, "seed": "1"}, False),
    "c5_mk6b_s2": (DEFAULT_SHAPE, {**CHAIN6_BOTH, "seed": "2"}, False),
    # longer windows, the same tokens per step (8 x 512 = 32 x 128) and steps, scored on 512-base test windows: a
    # window's edge bases are predicted from one side only, which costs the chain ~0.006 bits/base at 128 (its
    # MDLM floor 1.9440 against its left-to-right 1.9378); at 512 a quarter of that
    "c5_L512_s0": ((128, 4, 4, 512, 8), {**CONV5, "trainer.max_steps": "300", SCORE_LENGTH: "512"}, False),
    "c5_mk6b_L512_s0": ((128, 4, 4, 512, 8), {**CHAIN6_BOTH, "trainer.max_steps": "300", SCORE_LENGTH: "512"},
                        False),
    # the chain model plateaus early (third round: 300 and 1,200 steps read the same): a third of the steps, at
    # about the default's CPU seconds
    "c5_mk6b_L512_100": ((128, 4, 4, 512, 8), {**CHAIN6_BOTH, "trainer.max_steps": "100", "optim.warmup_steps": "17",
                                               SCORE_LENGTH: "512"}, False),
    "c5_mk6b_L512_s1": ((128, 4, 4, 512, 8), {**CHAIN6_BOTH, "trainer.max_steps": "300", SCORE_LENGTH: "512",
                                              "seed": "1"}, False),
    # with the chain's CPU kernel (cpu_chain.py: the chain costs a tenth of a step, not half) the default's budget
    # buys longer windows: half the steps at 512 bases, or 256-base windows (batch 16) at the default's 300 steps
    "c5_mk6b_L512_150": ((128, 4, 4, 512, 8), {**CHAIN6_BOTH, "trainer.max_steps": "150", "optim.warmup_steps": "25",
                                               SCORE_LENGTH: "512"}, False),
    "c5_mk6b_L256": ((128, 4, 4, 256, 16), {**CHAIN6_BOTH, "trainer.max_steps": "300", SCORE_LENGTH: "256"}, False),
    # sixth round: does the chain still help at 20x the steps (the third round saw it plateau at 128 bases from 300
    # to 1,200 steps, while the plain MDLM's big gains came after 1,200: 1.9469 there, 1.9163 at 10,000)? The same
    # 6,000 steps at 512 x 8 with and without the chain
    "c6_mk6b_L512_6k": ((128, 4, 4, 512, 8), {**CHAIN6_BOTH, "trainer.max_steps": "6000", SCORE_LENGTH: "512",
                                              EVERY: "500", "data.val_max_windows": "64"}, False),
    "c6_L512_6k": ((128, 4, 4, 512, 8), {**CONV5, "trainer.max_steps": "6000", SCORE_LENGTH: "512", EVERY: "500",
                                        "data.val_max_windows": "64"}, False),
    # seventh round, toward goal 1 (below 1.90): the shipped model's recipe (128 x 32, no chain) trained further:
    # its 10,000 steps' weights, then 30,000 more on a fresh cosine schedule (peak 1e-3, its own final lr was 2e-4).
    # Runs for hours at one thread: in segments (--stop-after), each resuming the last (run_candidate)
    "ecoli_cont30k": (DEFAULT_SHAPE, {**CONV5, "trainer.max_steps": "30000", "optim.lr": "1e-3",
                                      "optim.warmup_steps": "200", EVERY: "2000", SOURCE: "ecoli"}, False),
    # eighth round: ecoli_40k read on 256-base windows (beyond its training length) already scores lower than on its
    # own 128: the edges of a window see one side only. Adapt it to 512-base windows at the same tokens per step
    # (8 x 512), a fresh cosine from a lower peak (its last lr was 1e-4), scored on 512-base test windows
    "ecoli40k_L512": ((128, 4, 4, 512, 8), {**CONV5, "trainer.max_steps": "7000", "optim.lr": "5e-4",
                                            "optim.warmup_steps": "200", EVERY: "1000", SCORE_LENGTH: "512",
                                            "data.val_max_windows": "128", SOURCE: "ecoli_cont30k"}, False),
    # the AR baseline on the same backbone (causal attention and convolution): the cheap end of its curve
    "ar300_s0": (DEFAULT_SHAPE, {**AR, "trainer.max_steps": "300"}, False),
    "ar300_s1": (DEFAULT_SHAPE, {**AR, "trainer.max_steps": "300", "seed": "1"}, False),
    "ar300_s2": (DEFAULT_SHAPE, {**AR, "trainer.max_steps": "300", "seed": "2"}, False),
    "ar600": (DEFAULT_SHAPE, {**AR, "trainer.max_steps": "600"}, False),
    # the middle of the curve (between 600 steps and the shipped model's 10,000): AR and MDLM at 1,200 steps
    "ar1200": (DEFAULT_SHAPE, {**AR, "trainer.max_steps": "1200"}, False),
    "c5_1200": (DEFAULT_SHAPE, {**CONV5, "trainer.max_steps": "1200"}, False),
    # the AR-initialised MDLM (init_from): AR 600 steps, then MDLM N steps, against MDLM from scratch at the
    # same total training FLOPs (AR's causal attention costs half: 600 AR steps = 557 MDLM steps): N = 43 matches
    # the 600-step MDLM runs of paper_claims_runs.csv (3 seeds), N = 300 the 857-step run
    "ar600_mdlm43": (DEFAULT_SHAPE, {**CONV5, "model.input_shift": "true", "trainer.max_steps": "43",
                                     "optim.warmup_steps": "5", SOURCE: "ar600"}, False),
    "ar600_mdlm300": (DEFAULT_SHAPE, {**CONV5, "model.input_shift": "true", "trainer.max_steps": "300",
                                      SOURCE: "ar600"}, False),
    "ar600_mdlm300_noshift": (DEFAULT_SHAPE, {**CONV5, "trainer.max_steps": "300", SOURCE: "ar600"}, False),
    "mdlm857": (DEFAULT_SHAPE, {**CONV5, "trainer.max_steps": "857"}, False),
    # the AR start kept, not overwritten: a small adaptation learning rate (Dream / DiffuLLaMA adapt at ~1e-5 to
    # 2e-5 against pretraining's ~3e-4; here the pretraining rate is 2e-3). AR 300 (seed 1) + MDLM 300 = the FLOPs
    # of MDLM 600 from scratch (1.9555, 3 seeds)
    "ar300s1_mdlm300_lr2e-4": (DEFAULT_SHAPE, {**CONV5, "model.input_shift": "true", "trainer.max_steps": "300",
                                               "optim.lr": "2e-4", "seed": "1", SOURCE: "ar300_s1"}, False),
    "ar300s1_mdlm300_lr6e-4": (DEFAULT_SHAPE, {**CONV5, "model.input_shift": "true", "trainer.max_steps": "300",
                                               "optim.lr": "6e-4", "seed": "1", SOURCE: "ar300_s1"}, False),
}


def shape_overrides(shape: Shape) -> list[str]:
    d, n, h, seq_len, batch = shape
    model = [f"model.d_model={d}", f"model.n_layers={n}"] + ([f"model.n_heads={h}"] if h else [])
    return model + [f"data.seq_len={seq_len}", f"data.batch_size={batch}"]


def model_of(name: str) -> str:
    return CANDIDATES[name][1].get("model", "dit_tiny")


def measure_shape(shape: Shape, model: str = "dit_tiny", steps: int = 10) -> float:
    """Median seconds of one optimizer step (MDLM loss, backward, AdamW, EMA), in this process."""
    import itertools

    import torch

    from mdlm_dna.train.lit_module import DiffusionModule

    d, n, h, seq_len, batch = shape
    sizes = {"d_model": d, "n_layers": n, **({"n_heads": h} if h else {})}
    module = DiffusionModule(pretrain_config(model, seq_len, batch, **sizes))
    obj = module.objective
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-3)
    x = torch.randint(0, 4, (batch, seq_len))
    seeds = itertools.count()

    def step() -> None:
        loss = obj.nelbo(x, generator=torch.Generator().manual_seed(next(seeds))).per_token
        opt.zero_grad()
        loss.backward()
        opt.step()
        module.ema.update(obj)

    return time_calls(step, steps, warmup=2).middle


def measure(names: list[str], threads: int = 2) -> dict[str, float]:
    """Seconds per step of each candidate's shape at ``threads`` threads, one job at a time (cached in a CSV)."""
    known = load_step_times()
    for name in names:
        if "trainer.max_steps" in CANDIDATES[name][1]:  # its own step count: its step cost is not needed
            continue
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


def steps_for(name: str) -> int:
    """The candidate's own step count, else DEFAULT_STEPS scaled by its shape's step cost (equal seconds)."""
    shape, changes, _ = CANDIDATES[name]
    if "trainer.max_steps" in changes:
        return int(changes["trainer.max_steps"])
    times = load_step_times()
    key = lambda model, sh: f"{model}:{','.join(map(str, sh))}"
    ratio = times[key("dit_tiny", DEFAULT_SHAPE)] / times[key(model_of(name), shape)]
    return max(20, round(DEFAULT_STEPS * ratio))


STOPPED = 130  # pretrain's exit code after checkpoint.stop_after_minutes (or Ctrl-C): last.ckpt holds the step


def run_timed(cmd: list[str], env: dict[str, str], log, segment: bool = False) -> float:
    """Run ``cmd`` to completion; returns its CPU seconds (user + system), which a busy machine inflates far
    less than wall-clock (at one thread, CPU seconds are roughly the wall-clock of an idle core).
    ``segment``: a run stopped early (exit code 130, its state saved) is not a failure."""
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode and not (segment and proc.returncode == STOPPED):
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return usage.ru_utime + usage.ru_stime


def candidate_overrides(name: str) -> list[str]:
    """The pretrain overrides of a candidate: PINNED, its changes, its shape and its step count."""
    shape, changes, _ = CANDIDATES[name]
    settings = {**PINNED, **changes, "trainer.max_steps": str(steps_for(name))}
    source = settings.pop(SOURCE, None)
    settings.pop(SCORE_LENGTH, None)
    settings.pop(EVERY, None)
    if settings.get("objective") == "ar":
        settings.pop("objective.time_sampling")  # AR has no noise times
    group = [f"{g}={settings.pop(g)}" for g in GROUPS if g in settings]  # a group before its keys
    overrides = [*group, *shape_overrides(shape), *(f"{k}={v}" for k, v in settings.items())]
    if source in CANDIDATES:
        return overrides + [f"init_from={RUNS / source / 'checkpoints' / 'last.ckpt'}"]
    return overrides + ([f"init_from={source}"] if source else [])  # a shipped model's name


def source_flops(source: str) -> float:
    """Training FLOPs of an init_from source: a candidate's, or a shipped model's (trained with the default shape
    and no chain, as ``ecoli`` was: its card's step count)."""
    if source in CANDIDATES:
        return train_flops(source)
    card = json.loads((ROOT / "data" / "models" / source / "config.json").read_text())
    return train_flops("c5_s0", int(card["training"]["global_step"]))


def train_flops(name: str, steps: int | None = None) -> float:
    """Training FLOPs of a candidate (mdlm_dna/train/flops.py, PaLM-style counting), its init_from source's
    included: steps x batch x window x FLOPs per token.

    >>> f"{train_flops('c5_s0'):.3g}"  # 300 steps of 32 x 128 bases, 5.5 MFLOPs per token
    '6.77e+12'
    """
    from mdlm_dna.data.tokenizers import BASES, SPECIAL_TOKENS
    from mdlm_dna.train.flops import flops_per_token

    shape, changes, _ = CANDIDATES.get(name, (DEFAULT_SHAPE, {}, False))
    d, n, h, seq_len, batch = shape
    cfg = model_config(changes.get("model", "dit_tiny"))
    cfg.update(d_model=d, n_layers=n, causal=changes.get("model.causal") == "true",
               markov_order=int(changes.get("model.markov_order", 0)))
    steps = steps_for(name) if steps is None else steps
    total = steps * batch * seq_len * flops_per_token(cfg, len(BASES) + len(SPECIAL_TOKENS), seq_len)
    return total + (source_flops(changes[SOURCE]) if SOURCE in changes else 0.0)


def score_test(ckpt: str, t_samples: int = 16, use_ema: bool = True, length: int = 128,
               save: str | None = None, bound: str = "reference", strands: str = "forward", context: int = 0
               ) -> dict[str, float]:
    """Test bits/base of a checkpoint with its standard error: every non-overlapping ``length``-base window of
    the E. coli test split (1,813 of 128) scored with ``t_samples`` noise draws (``DiffusionLM.score`` with
    ``common_noise=False``: independent noise per window, the same for every model), the standard error over
    windows (window-to-window spread plus the Monte-Carlo noise of the NELBO estimate). AR scores are exact (one
    draw). ``save``: a .npy file for the per-window bits/base (paired differences between models: ``paired``).
    ``bound``: "reference" (the NELBO as training makes it) or "full" (the sampler's whole bound, eps = 0:
    ``DiffusionLM.score``), the one to set beside exact likelihoods. ``strands``: "both" averages the denoiser over
    the two strands (``DiffusionLM.score``). ``context`` C: the chromosome read in order, as a compressor reads it:
    windows of ``length`` bases step by ``length - C``, each scoring its last ``length - C`` bases given the C
    before them (``DiffusionLM.score(context=C)``; the first window's context is the validation split's tail), so
    the same test bases are scored, each with at least C bases to its left."""
    import math

    from mdlm_dna import DiffusionLM
    from mdlm_dna.data.tokenizers import BASES
    from mdlm_dna.evaluation.markov import ecoli_splits

    seqs = ["".join(BASES[i] for i in w) for w in scored_windows(ecoli_splits(), length, context)]
    model = DiffusionLM.from_pretrained(str(ckpt), use_ema=use_ema)
    df = model.score(seqs, t_samples=t_samples, progress=False, common_noise=False, bound=bound, strands=strands,
                     context=context)
    bits = df["bits_per_base"]
    if save:
        np.save(save, bits.to_numpy())
    mean = float(df["nelbo_nats"].sum() / df["tokens"].sum() / math.log(2))
    return {"bits_per_base": mean, "se": float(bits.std(ddof=1) / math.sqrt(len(bits))), "windows": len(seqs)}


def scored_windows(splits: dict[str, np.ndarray], length: int, context: int = 0) -> list[np.ndarray]:
    """``score_test``'s windows: the test split in non-overlapping ``length``-base windows, or with ``context`` C
    windows stepping by ``length - C`` whose first C bases (the bases before them, the validation split's tail for
    the first) are given: either way the scored bases are the test split's first ``n x (length - C)``.

    >>> s = {"validation": np.arange(100, 110), "test": np.arange(10)}
    >>> [w.tolist() for w in scored_windows(s, 4)]
    [[0, 1, 2, 3], [4, 5, 6, 7]]
    >>> [w.tolist() for w in scored_windows(s, 4, context=2)]
    [[108, 109, 0, 1], [0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
    """
    ids = np.concatenate([splits["validation"][len(splits["validation"]) - context :], splits["test"]])
    return [ids[a : a + length] for a in range(0, len(ids) - length + 1, length - context)]


def trained_steps(run_dir: Path) -> int:
    """The optimizer steps of a run's last checkpoint (0 without one)."""
    from mdlm_dna.pretrain import read_resume_checkpoint

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    return read_resume_checkpoint(ckpt)["global_step"] if ckpt.exists() else 0


def read_cost(path: Path) -> dict:
    """A run's CPU and wall-clock seconds and the thread counts of its segments (``NAME.cost.json`` or
    ``NAME.cost_partial.json``); records older than the ``threads`` key ran at one thread."""
    return {"threads": [1], **json.loads(path.read_text())}


def run_candidate(name: str, t_samples: int = 16, stop_after_minutes: float | None = None,
                  bounds: tuple[str, ...] = ("reference",), threads: int = 1,
                  strands: tuple[str, ...] = ("forward",), context: int = 0) -> list[dict]:
    """Train one candidate (at ``threads`` threads, 1 for the sweep), then score it on the test split; returns
    its CSV rows.

    ``stop_after_minutes``: stop training after that long (``checkpoint.stop_after_minutes``: last.ckpt is
    saved at the step reached); a run that has not reached its steps is not scored, and its CPU seconds so far
    are kept in ``NAME.cost_partial.json`` and added to the next segment's: run the same command again to
    continue it.
    ``bounds``, ``strands``: score with each combination; ``context``: ``score_test``'s. ``threads``: a long run
    alone on the machine may take both cores for a segment; its CPU seconds stay comparable (at 2 threads a step
    costs ~1.03x the CPU seconds of 1 thread, recipe_step_times.csv), its wall-clock does not, so each row says
    which thread counts its segments used."""
    import pandas as pd

    shape, changes, raw_too = CANDIDATES[name]
    steps = steps_for(name)
    score_length = int(changes.get(SCORE_LENGTH, 128))
    run_dir = RUNS / name
    overrides = candidate_overrides(name)
    every = int(changes.get(EVERY, steps))
    cmd = [sys.executable, "-m", "mdlm_dna.pretrain", f"hydra.run.dir={run_dir}", *overrides,
           f"trainer.val_check_interval={every}", "trainer.enable_progress_bar=false", "resume=auto"]
    # checkpoints at most 500 steps apart, so that a killed long run loses little
    cmd += [f"checkpoint.every_n_train_steps={min(every, 500)}"]
    cmd += [f"checkpoint.stop_after_minutes={stop_after_minutes:g}"] if stop_after_minutes else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cost = RUNS / f"{name}.cost.json"  # written when the training finishes: a finished run is scored, not re-run
    partial = RUNS / f"{name}.cost_partial.json"  # the segments before this one (--stop-after)
    if not cost.exists():
        before = read_cost(partial) if partial.exists() else {"cpu_s": 0.0, "wall_s": 0.0, "threads": []}
        t0 = time.time()
        with (RUNS / f"{name}.log").open("a") as log:
            cpu_s = run_timed(cmd, env, log, segment=bool(stop_after_minutes))
        spent = {"cpu_s": before["cpu_s"] + cpu_s, "wall_s": before["wall_s"] + time.time() - t0,
                 "threads": sorted({*before["threads"], threads})}
        done = trained_steps(run_dir)
        if done < steps:
            partial.write_text(json.dumps(spent))
            print(f"{name}: stopped at step {done} of {steps} ({spent['cpu_s']:.0f} CPU-s so far); run the same "
                  "command again to continue it", flush=True)
            return []
        cost.write_text(json.dumps(spent))
        partial.unlink(missing_ok=True)
    spent = read_cost(cost)
    train_cpu_s, train_s, used_threads = spent["cpu_s"], spent["wall_s"], "+".join(map(str, spent["threads"]))
    rows = []
    for use_ema, bound, strand in [(e, b, s) for e in ([True, False] if raw_too else [True]) for b in bounds
                                   for s in strands]:
        tag = "ema" if use_ema else "raw"
        save = window_scores(name, tag, t_samples, bound, strand, context, saving=True)
        save.parent.mkdir(parents=True, exist_ok=True)
        code = (f"import sys, json; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import recipe; "
                f"print(json.dumps(recipe.score_test({str(run_dir / 'checkpoints' / 'last.ckpt')!r}, "
                f"{t_samples}, {use_ema}, {score_length}, save={str(save)!r}, bound={bound!r}, strands={strand!r}, "
                f"context={context})))")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=ROOT)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({
            "name": name, "overrides": " ".join(overrides), "steps": steps,
            "tokens": steps * shape[3] * shape[4], "weights": "EMA" if use_ema else "raw",
            "test_bpb": round(res["bits_per_base"], 4), "test_se": round(res["se"], 4), "windows": res["windows"],
            "window_length": score_length, "bound": bound, "strands": strand, "context": context,
            "t_samples": 1 if changes.get("objective") == "ar" else t_samples,
            "train_flops": f"{train_flops(name):.4g}", "cpu_s": round(train_cpu_s, 1),
            "wall_s_1_thread": round(train_s, 1), "threads": used_threads, "when": time.strftime("%Y-%m-%d %H:%M"),
        })
    record = pd.concat([pd.read_csv(RESULTS, dtype=str), pd.DataFrame(rows).astype(str)]) if RESULTS.exists() \
        else pd.DataFrame(rows)
    record.to_csv(RESULTS, index=False)  # new columns (test_se, train_flops) stay empty in older rows
    for r in rows:
        print(f"{name:12s} {r['weights']:3s} steps={steps:4d} test bits/base {r['test_bpb']:.4f} "
              f"+- {r['test_se']:.4f} ({r['bound']} bound, {r['strands']} strand(s))", flush=True)
    return rows


def markov_mdlm_floor(order: int, length: int = 128, windows: int = 150, draws: int = 8, seed: int = 0) -> tuple[
        float, float]:
    """Test NELBO (bits/base) of an MDLM whose denoiser is the exact order-``order`` chain fitted on train.

    The optimal denoiser predicts a masked base by its posterior given every visible base: for a Markov
    chain, a forward-backward pass over k-mer states. Rao-Blackwellized: every position is scored as if
    masked with the others masked at rate t (E[1[l masked] nll_l / t] = E[nll_l | l masked]), so there is
    no 1/t weight and little Monte-Carlo noise. Shows whether the bound itself, rather than learning, keeps
    an MDLM above a chain's left-to-right NLL. Returns (bits/base, standard error); the first ``order``
    bases of each window are context only."""
    import math

    from mdlm_dna.evaluation.markov import MarkovChain, ecoli_splits

    if order < 1:
        raise ValueError("order >= 1 (order 0 ignores context: its NELBO is its NLL)")
    splits = ecoli_splits()
    chain, _ = MarkovChain.fit_select_alpha(splits["train"], splits["validation"], order)
    p, n_states = chain.probs(), 4**order
    rest = n_states // 4
    last = np.arange(n_states) % 4  # a state's newest base
    prior = chain.counts[order].sum(axis=1).astype(float) + 1e-9
    prior /= prior.sum()

    def forward(a: np.ndarray) -> np.ndarray:  # a @ T, T[s, s'] = P(b | s) for s' = (s[1:], b)
        return (a.reshape(4, rest)[:, :, None] * p.reshape(4, rest, 4)).sum(0).reshape(n_states)

    def backward(v: np.ndarray) -> np.ndarray:  # T @ v
        return (p * v.reshape(rest, 4)[np.arange(n_states) % rest]).sum(1)

    test = splits["test"]
    rng = np.random.default_rng(seed)
    values = []
    for start in np.linspace(0, len(test) - length - 1, windows).astype(int):
        x = test[start : start + length].astype(int)
        if (x >= 4).any():
            continue
        for d in range(draws):
            t = 1e-3 + (1 - 1e-3) * ((rng.random() + d / draws) % 1.0)
            visible = rng.random(length) >= t
            init = prior.copy()
            for j in range(order):  # the first state holds bases 0..order-1
                if visible[j]:
                    init *= (np.arange(n_states) // 4 ** (order - 1 - j)) % 4 == x[j]
            a = init / init.sum()
            pred = np.zeros((length, n_states))
            emit = np.where(visible[:, None], last[None, :] == x[:, None], True).astype(float)
            for pos in range(order, length):
                pr = forward(a)
                pred[pos] = pr / pr.sum()
                a = pr * emit[pos]
                a /= a.sum()
            beta, b = np.ones((length, n_states)), np.ones(n_states)
            for pos in range(length - 2, order - 1, -1):
                b = backward(emit[pos + 1] * b)
                b /= b.sum()
                beta[pos] = b
            post = pred[order:] * beta[order:]
            base = np.stack([post[:, last == j].sum(1) for j in range(4)], 1)
            base /= base.sum(1, keepdims=True)
            values.append(-np.log2(base[np.arange(length - order), x[order:]]).mean())
    values = np.asarray(values)
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


# reference lines of the plot: order-k Markov chains fitted on train (test bits/base, the table of this
# benchmark's results: `python benchmarks/markov_baselines.py`) and GeCo3 (issue 31: level 16, whole chromosome
# in order, mean over the same test region)
REFERENCES = {"Markov order 2": 1.9664, "Markov order 6": 1.9378, "GeCo3 (compressor)": 1.892}
PAPER_CLAIMS = ROOT / "benchmarks" / "paper_claims_runs.csv"
TABLE_RECORD = ROOT / "benchmarks" / "recipe_table.md"
SHIPPED = ROOT / "data" / "models" / "ecoli"
PLOT = ROOT / "benchmarks" / "recipe_flops.png"
BASELINE = ("c5_s0", "c5_s1", "c5_s2")  # the default recipe's seeds: paired differences are taken against them


def window_scores(name: str, weights: str = "ema", t_samples: int = 16, bound: str = "reference",
                  strands: str = "forward", context: int = 0, saving: bool = False) -> Path:
    """Where a run's per-window test scores are kept (``score_test``'s ``save``), one file per draw count, bound,
    strands and context: in the repository (``WINDOWS``, a few kB each), so that the table's paired columns can be
    regenerated on a fresh checkout. Runs scored before 2026-12-08 kept theirs in the run folder, which is read
    when it is there and no newer scoring is (``RUNS / name``); ``saving``: the path a new scoring writes."""
    draws = "" if t_samples == 16 else f"_t{t_samples}"
    tags = ("" if bound == "reference" else f"_{bound}") + ("" if strands == "forward" else f"_{strands}")
    tags += f"_ctx{context}" if context else ""
    kept, older = (folder / name / f"test_windows_{weights}{draws}{tags}.npy" for folder in (WINDOWS, RUNS))
    return older if not saving and older.exists() and not kept.exists() else kept


def seed_of(name: str) -> int:
    """The seed of a candidate (0 unless it sets one)."""
    return int(CANDIDATES.get(name, (None, {}, None))[1].get("seed", 0))


def paired_difference(mine: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Mean of the per-window differences ``mine - ref`` and its standard error over windows.

    >>> paired_difference(np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.5, 2.0]))
    (0.6666666666666666, 0.16666666666666666)
    """
    d = mine - ref
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def paired_to_default(name: str, weights: str = "ema", t_samples: int = 16, bound: str = "reference",
                      strands: str = "forward") -> tuple[float, float] | None:
    """Mean per-window difference (candidate minus the default of the same seed) and its standard error, from
    the per-window test scores both runs saved (same windows, same noise draws); None without them.

    A seed's difference is over windows; the standard error is over windows too (one training seed per row)."""
    ref = window_scores(BASELINE[min(seed_of(name), len(BASELINE) - 1)], weights, t_samples, bound)
    mine = window_scores(name, weights, t_samples, bound, strands)
    if name in BASELINE or not (ref.exists() and mine.exists()):
        return None
    mine, ref = np.load(mine), np.load(ref)
    if mine.shape != ref.shape:  # scored on other windows (SCORE_LENGTH): nothing to pair
        return None
    return paired_difference(mine, ref)


@lru_cache
def chain_window_bits(length: int = 128, order: int = 6) -> np.ndarray:
    """Bits/base of the order-``order`` chain (fitted on train, alpha on validation: markov_baselines.py's 1.9378
    at order 6) on each of ``score_test``'s windows, every base predicted from the ``order`` test bases before it
    (across window edges: the left-to-right protocol of the reference figure; the split's first bases from the
    lower orders). The mean over windows is that reference figure up to the few bases after the last window.

    >>> bits = chain_window_bits(128)  # doctest: +SKIP
    >>> len(bits), round(float(bits.mean()), 4)  # doctest: +SKIP
    (1813, 1.9378)
    """
    from mdlm_dna.evaluation.markov import ALPHAS, MarkovChain, ecoli_splits

    splits = ecoli_splits()
    chain, _ = MarkovChain.fit_select_alpha(splits["train"], splits["validation"], order, ALPHAS)
    bits = chain.base_bits(splits["test"])
    windows = len(bits) // length
    return bits[: windows * length].reshape(windows, length).mean(1)


def paired_to_chain(name: str, weights: str = "ema", length: int = 128, t_samples: int = 16, order: int = 6,
                    bound: str = "reference", strands: str = "forward", context: int = 0) -> tuple[float, float] | None:
    """Mean per-window difference (candidate minus the order-``order`` chain on the same test windows) and its
    standard error over windows; None without the candidate's per-window scores. The window-to-window spread is
    common to both and cancels: what is left is the NELBO's Monte-Carlo noise and the real differences. ``length``:
    the window; with ``context`` each window scores its last ``length - context`` bases."""
    mine = window_scores(name, weights, t_samples, bound, strands, context)
    if not mine.exists():
        return None
    return paired_difference(np.load(mine), chain_window_bits(length - context, order))


def read_results():
    """``recipe_runs.csv`` as a DataFrame; rows recorded before the ``bound`` column were scored with the
    reference estimate."""
    import pandas as pd

    df = pd.read_csv(RESULTS)
    df["bound"] = df["bound"].fillna("reference") if "bound" in df else "reference"
    df["strands"] = df["strands"].fillna("forward") if "strands" in df else "forward"  # rows before the column
    df["context"] = df["context"].fillna(0).astype(int) if "context" in df else 0
    return df


def table() -> str:
    """Every recorded run: test bits/base (+- standard error over windows, where scored so), training FLOPs
    (of the source model too, for init_from), CPU seconds of training, and the paired difference to the
    default recipe of the same seed."""
    import pandas as pd

    df = read_results()
    df["test_se"] = df["test_se"] if "test_se" in df else float("nan")  # rows before this round have none
    df["train_flops"] = [train_flops(n, int(s)) if n in CANDIDATES else train_flops("c5_s0", int(s))
                         for n, s in zip(df["name"], df["steps"])]
    deltas = [paired_to_default(n, w.lower(), int(t), b, s)
              for n, w, t, b, s in zip(df["name"], df["weights"], df["t_samples"], df["bound"], df["strands"])]
    df["minus default (paired)"] = [f"{d:+.4f} +- {e:.4f}" if d is not None else "" for d, e in
                                    (x or (None, None) for x in deltas)]
    lengths = df["window_length"] if "window_length" in df else pd.Series(float("nan"), index=df.index)
    df["window"] = lengths.fillna(128).astype(int)  # rows before SCORE_LENGTH were scored at 128
    chain = [paired_to_chain(n, w.lower(), L, int(t), bound=b, strands=s, context=c) for n, w, L, t, b, s, c in
             zip(df["name"], df["weights"], df["window"], df["t_samples"], df["bound"], df["strands"], df["context"])]
    df["minus order-6 chain (paired)"] = [f"{d:+.4f} +- {e:.4f}" if d is not None else "" for d, e in
                                          (x or (None, None) for x in chain)]
    df["test_se"] = df["test_se"].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    df["train_flops"] = df["train_flops"].map(lambda v: f"{v:.3g}")
    df["test_bpb"] = df["test_bpb"].map(lambda v: f"{v:.4f}")
    df["cpu_s"] = df["cpu_s"].map(lambda v: "" if pd.isna(v) else f"{v:.0f}")
    df["window"] = df["window"].astype(str)
    cols = ["name", "steps", "weights", "window", "context", "bound", "strands", "test_bpb", "test_se",
            "minus default (paired)", "minus order-6 chain (paired)", "train_flops", "cpu_s", "t_samples"]
    return df[cols].to_markdown(index=False, disable_numparse=True)


def curve_points() -> dict[str, list[tuple[float, float, float, int]]]:
    """(training FLOPs, mean test bits/base, standard error of the mean, runs) per series, from every record:
    AR and the default MDLM at each step count (recipe.py and paper_claims.py runs, E. coli), the shipped
    model, the AR-initialised MDLM, and every other candidate (one point each)."""
    import json
    import statistics

    groups: dict[tuple[str, float], list[float]] = {}
    rec = read_results()
    # the plot's points are all the reference estimate (full-bound rows are in the table)
    rec = rec[(rec["weights"] == "EMA") & (rec["bound"] == "reference") & (rec["strands"] == "forward")
              & (rec["context"] == 0)]
    # a run rescored with more noise draws (--t-samples) is one point: its most precise scoring
    rec = rec.sort_values("t_samples", kind="stable").drop_duplicates("name", keep="last").sort_index()
    default = {*BASELINE, "mdlm857", "c5_1200"}
    done = set(rec["name"])
    # the same trainings recorded twice: conv5 = c5_s0, conv5_seed1 = c5_s1 (scored by mdlm_dna.evaluate before
    # this round; conv5_seed1 stands for seed 1 until c5_s1 is run), ar600 = paper_claims' AR seed 0
    if "c5_s1" not in done:
        default.add("conv5_seed1")
    for name, steps, bpb in zip(rec["name"], rec["steps"], rec["test_bpb"]):
        if name in ("conv5", "ar600") or (name == "conv5_seed1" and "c5_s1" in done):
            continue
        changes = CANDIDATES.get(name, (None, {}, None))[1]
        family = re.sub(r"_s\d+$", "", name)  # seeds of one recipe are one point
        continued = SOURCE in changes and not from_ar(name)  # a shipped MDLM (or its continuation) trained further
        series = ("AR" if changes.get("objective") == "ar" else CONTINUED if continued
                  else f"AR -> MDLM: {family}" if SOURCE in changes else "MDLM, default recipe" if name in default
                  else CHAIN6 if family in CHAIN6_RUNS else f"recipe: {family}")
        groups.setdefault((series, train_flops(name, int(steps)) if name in CANDIDATES else
                           train_flops("c5_s0", int(steps))), []).append(float(bpb))
    for r in read_runs(PAPER_CLAIMS):
        if r["genome"] == "ecoli" and r["objective"] in ("ar", "mdlm") and not r["overrides"]:
            name = "ar600" if r["objective"] == "ar" else "c5_s0"
            series = "AR" if r["objective"] == "ar" else "MDLM, default recipe"
            groups.setdefault((series, train_flops(name, int(r["steps"]))), []).append(float(r["bpb"]))
    card = json.loads((SHIPPED / "config.json").read_text())
    shipped_bpb = card["metrics"]["test"]["bits_per_base"]
    groups[("shipped ecoli (MDLM, 10,000 steps)", train_flops("c5_s0", card["training"]["global_step"]))] = [
        shipped_bpb]
    out: dict[str, list[tuple[float, float, float, int]]] = {}
    for (series, flops), values in sorted(groups.items(), key=lambda kv: kv[0][1]):
        se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
        out.setdefault(series, []).append((flops, statistics.fmean(values), se, len(values)))
    return out


def from_ar(name: str) -> bool:
    """Whether a candidate's chain of init_from sources starts at an AR run (the AR -> MDLM route).

    >>> from_ar("ar600_mdlm300"), from_ar("ecoli40k_L512"), from_ar("c5_s0")
    (True, False, False)
    """
    changes = CANDIDATES.get(name, (None, {}, None))[1]
    if changes.get("objective") == "ar":
        return True
    return changes.get(SOURCE) in CANDIDATES and from_ar(changes[SOURCE])


def standings() -> str:
    """The curve's points as a table, best last: each series at each training budget (mean over seeds, standard
    error over seeds where there are several), with the reference lines of the plot."""
    rows = [(b, f"| {series} | {flops:.3g} | {b:.4f} | {'' if se != se else f'{se:.4f}'} | {n} |")
            for series, pts in curve_points().items() for flops, b, se, n in pts]
    rows += [(v, f"| *{label}* | | {v:.4f} | | |") for label, v in REFERENCES.items()]
    lines = ["| model | training FLOPs | test bits/base (mean over seeds) | standard error over seeds | seeds |",
             "|---|---:|---:|---:|---:|"]
    return "\n".join(lines + [text for _, text in sorted(rows, key=lambda r: -r[0])])


def plot(path: Path = PLOT) -> Path:
    """Test bits/base against training FLOPs (log axis): AR and MDLM curves (mean over seeds, +- standard error
    over seeds), the recipes, the AR-initialised MDLM, the shipped model, and the Markov / GeCo3 lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.2))
    styles = {"AR": dict(color="tab:blue", marker="o", ls="-"),
              "MDLM, default recipe": dict(color="tab:red", marker="s", ls="-"),
              "AR -> MDLM": dict(color="tab:purple", marker="*", ms=13, ls="none"),
              "shipped ecoli (MDLM, 10,000 steps)": dict(color="tab:red", marker="D", ls="none"),
              CONTINUED: dict(color="tab:red", marker="*", ms=14, ls="none"),
              CHAIN6: dict(color="tab:orange", marker="^", ls="-")}
    labelled = set()
    for series, pts in curve_points().items():
        x, y, e = zip(*[(f, b, 0.0 if se != se else se) for f, b, se, _ in pts])
        if series in styles:
            ax.errorbar(x, y, yerr=e, label=series, capsize=3, **styles[series])
            continue
        kind = "AR -> MDLM" if series.startswith("AR -> MDLM") else "recipe"
        first = kind not in labelled
        labelled.add(kind)
        if kind == "AR -> MDLM":
            ax.errorbar(x, y, yerr=e, capsize=3, label="AR -> MDLM (init_from)" if first else None,
                        **styles["AR -> MDLM"])
        else:
            ax.errorbar(x, y, yerr=e, fmt="o", color="grey", alpha=0.6, ms=5, capsize=2,
                        label="other recipes (+- over seeds where several)" if first else None)
        ax.annotate(series.split(": ", 1)[-1], (x[0], y[0]), fontsize=6, color="grey", xytext=(3, 2),
                    textcoords="offset points")
    for (label, value), color in zip(REFERENCES.items(), ("tab:olive", "tab:green", "black")):
        ax.axhline(value, color=color, ls="--", lw=1)
        ax.text(0.01, value, f"{label} {value}", color=color, fontsize=8, va="bottom",
                transform=ax.get_yaxis_transform())  # x in axes fractions, y in bits/base
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (mdlm_dna/train/flops.py; init_from includes the AR source's)")
    ax.set_ylabel("test bits/base (E. coli, last 5 %; MDLM: NELBO bound)")
    ax.set_ylim(1.865, 2.01)
    ax.set_title("AR vs MDLM at equal training compute (DiT 1.0 M parameters, 32 x 128 bases per step)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--measure", action="store_true", help="only measure the step times")
    ap.add_argument("--run", nargs="*", default=None, help="candidates to run (default: all)")
    ap.add_argument("--table", action="store_true", help="only print the table")
    ap.add_argument("--plot", action="store_true", help=f"only draw bits/base against training FLOPs ({PLOT.name})")
    ap.add_argument("--markov-floor", nargs="*", type=int, default=None, metavar="K",
                    help="only: test NELBO of MDLMs whose denoiser is the exact order-K chain (default K = 1 2 3 6)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (1 thread each)")
    ap.add_argument("--t-samples", type=int, default=16,
                    help="noise draws per test window (a trained run is rescored, one more row)")
    ap.add_argument("--nice", type=int, default=0, help="run the candidates at this niceness (a shared machine)")
    ap.add_argument("--stop-after", type=float, default=None, metavar="MINUTES",
                    help="stop each training after this long (its state saved); run again to continue it")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per training run (a long run alone on the machine: 2; the sweep: 1)")
    ap.add_argument("--bounds", nargs="+", default=["reference"], choices=["reference", "full"],
                    help="score with these bounds (full: the sampler's whole bound, beside exact likelihoods)")
    ap.add_argument("--strands", nargs="+", default=["forward"], choices=["forward", "both"],
                    help="score with these (both: the denoiser averaged over the two strands, DiffusionLM.score)")
    ap.add_argument("--context", type=int, default=0, metavar="C",
                    help="score the test split in order: windows step by window - C, each given the C bases before")
    args = ap.parse_args(argv)
    names = list(CANDIDATES) if not args.run else args.run
    if args.table:
        body = ("## Standings (the points of `recipe_flops.png`)\n\n" + standings()
                + "\n\n## Every run\n\n" + table())
        print(body)
        write_record(TABLE_RECORD, "Recipe sweep: test bits/base against training FLOPs", body,
                     note="MDLM figures are NELBO estimates as training makes them (16 noise draws per test window "
                          "unless the row says otherwise; the sampler's full bound is 0.0019 bits/base higher, "
                          "benchmarks/bound_gap.md), AR ones exact; CPU seconds: training at one thread "
                          "(ecoli_cont30k: its last segment at two, the CSV's threads column).")
        return
    if args.plot:
        print(f"wrote {plot()}")
        return
    if args.markov_floor is not None:
        for k in args.markov_floor or [1, 2, 3, 6]:
            bits, se = markov_mdlm_floor(k)
            print(f"order-{k} chain as an MDLM denoiser: {bits:.4f} +- {se:.4f} bits/base (test, 128-base windows)")
        return
    measure(names)
    if args.measure:
        return
    if args.nice:
        os.nice(args.nice)  # inherited by every run
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda name: run_candidate(name, args.t_samples, args.stop_after, tuple(args.bounds),
                                                  args.threads, tuple(args.strands), args.context), names))
    print(table())


if __name__ == "__main__":
    main()
