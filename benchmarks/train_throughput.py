"""Training-step throughput of the backbones: step time, tokens/s, peak memory and model FLOPs utilisation.

    python benchmarks/train_throughput.py                         # GPU: DiT tiny/small, Caduceus; L = 1k, 8k (131k)
    python benchmarks/train_throughput.py --tiny                  # CPU-sized smoke run (what the tests run)
    python benchmarks/train_throughput.py --models dit_small --lengths 1024 --profile   # + torch.profiler summary
    python benchmarks/train_throughput.py --models dit_small --lengths 1024 8192 --checkpointing-from 8192 \
        --peak-tflops 790 --timeout 120 --budget 150 --json rows.json      # what benchmarks/gpu_suite/dit.py runs
    python benchmarks/train_throughput.py --models dit_tiny --lengths 512 --markov-orders 0 6 --modes eager
        # the order-6 chain under the network (model.markov_order) against none: what it adds to a step

One step = the MDLM loss (forward), backward, fused AdamW and the EMA update, under bf16 autocast on
CUDA, exactly as ``DiffusionModule`` trains. MFU = FLOPs per token (mdlm_dna/train/flops.py: 6 x the
per-token weights plus the attention term) x tokens/s / peak FLOP/s (``--peak-tflops``, default the H100
SXM's 989 dense bf16; benchmarks/gpu_suite passes the matmul rate it measured). Each (model, L, mode) row
runs in a fresh subprocess so peak memory is its own; ``--timeout`` bounds a row and ``--budget`` the whole
table (rows not started by then are listed as skipped), and ``--json`` is rewritten after every row, so a
caller that has to stop this script keeps the rows done.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from common import arg_parser, pretrain_config, sync_device

from mdlm_dna.train.flops import H100_SXM_BF16_TFLOPS, flops_per_token

# tokens per step: batch = TOKENS // L (at least 1)
GPU_TOKENS = 32 * 1024
TINY = {"dit_tiny": {"d_model": 32, "n_layers": 2, "n_heads": 2, "cond_dim": 32}, "caduceus_ps": {"d_model": 16,
                                                                                                  "n_layers": 2}}
MAX_LEN = {"dit_tiny": 8192, "dit_small": 8192}  # attention is quadratic: 131k only for the Mamba family


def config_for(model: str, length: int, batch: int, compile_: bool = False, checkpointing: bool = False,
               tiny: bool = False, markov_order: int = 0) -> dict:
    """The pretrain config (as a dict) of ``model`` at this window length and batch (``tiny``: CPU-sized widths),
    with an order-``markov_order`` chain under the network (0: none)."""
    sizes = TINY.get(model, {}) if tiny else {}
    chain = {"markov_order": markov_order} if markov_order else {}
    return pretrain_config(model, length, batch, **sizes, **chain, compile=compile_, checkpointing=checkpointing)


def _measure(args: dict, queue) -> None:
    """One row, in its own process."""
    try:
        queue.put(_measure_row(**args))
    except Exception as e:  # an OOM or a compile failure is a row, not a crash of the table
        queue.put({"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"})


def _measure_row(model: str, length: int, batch: int, compile_: bool, checkpointing: bool, tiny: bool,
                 steps: int, warmup: int, device: str, peak_tflops: float, profile: bool,
                 markov_order: int = 0) -> dict:
    """One timed row. A chain's table is left unfitted (uniform): its forward-backward costs the same whatever the
    probabilities on a GPU (the dense pass), and at least as much on a CPU (the Numba kernel's work depends on the
    masked positions only)."""
    from mdlm_dna.train.lit_module import DiffusionModule

    torch.manual_seed(0)
    dev = torch.device(device)
    config = config_for(model, length, batch, compile_, checkpointing, tiny, markov_order)
    module = DiffusionModule(config).to(dev)
    if compile_:
        module.objective.backbone.compile()
    obj = module.objective.train()
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-4, fused=dev.type == "cuda")
    x = torch.randint(0, 4, (batch, length), device=dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast(
        "cpu", enabled=False)

    def step(i: int) -> None:
        g = torch.Generator(device=dev).manual_seed(i)
        with autocast:
            loss = obj.nelbo(x, generator=g).per_token
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if module.ema is not None:
            module.ema.update(obj)

    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync_device(dev)
    warmup_s = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync_device(dev)
    step_s = (time.perf_counter() - t0) / steps
    tokens_s = batch * length / step_s
    fpt = flops_per_token(config["model"], module.tokenizer.vocab_size, length)
    row = {
        "model": model, "L": length, "batch": batch, "mode": ("compiled" if compile_ else "eager") + (
            "+ckpt" if checkpointing else ""), "markov order": markov_order,
        "step ms": step_s * 1e3, "tokens/s": tokens_s,
        "peak GiB": torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan"),
        "GFLOP/token": fpt / 1e9, "TFLOP/s": fpt * tokens_s / 1e12, "MFU %": 100 * fpt * tokens_s / (
            peak_tflops * 1e12), "warm-up s": warmup_s,
    }
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with torch_profile(activities=acts) as prof:
            for i in range(3):
                step(10_000 + i)
            sync_device(dev)
        key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
        row["profile"] = prof.key_averages().table(sort_by=key, row_limit=15)
    return row


def _run_row(args: dict, timeout: float | None) -> dict:
    """One row in a spawned process; a row past ``timeout`` is killed and reported as such."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(args, q))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        return {"error": f"over the row's {timeout:.0f} s"}
    return q.get() if not q.empty() else {"error": f"exit code {p.exitcode}"}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = arg_parser(__doc__)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--lengths", nargs="*", type=int, default=None)
    ap.add_argument("--modes", nargs="*", default=["eager", "compiled"], choices=["eager", "compiled"])
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing (long contexts)")
    ap.add_argument("--checkpointing-from", type=int, default=None, metavar="L",
                    help="activation checkpointing for lengths >= L only")
    ap.add_argument("--tokens", type=int, default=None, help="tokens per step (batch = tokens // L)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--tiny", action="store_true", help="CPU-sized models and lengths")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--peak-tflops", type=float, default=H100_SXM_BF16_TFLOPS,
                    help="the device's dense peak, for MFU (default: H100 SXM bf16)")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler summary per row")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per row (default: none)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the whole table (default: none)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here (after every row)")
    ap.add_argument("--markov-orders", nargs="*", type=int, default=[0],
                    help="an order-k chain under the network (model.markov_order); 0: none; one row per order")
    a = ap.parse_args(argv)
    tiny = a.tiny or a.device == "cpu"
    models = a.models or (["dit_tiny", "caduceus_ps"] if tiny else ["dit_tiny", "dit_small", "caduceus_ps",
                                                                     "caduceus_ps_paper"])
    lengths = a.lengths or ([64, 256] if tiny else [1024, 8192, 131072])
    tokens = a.tokens or (512 if tiny else GPU_TOKENS)
    steps, warmup = a.steps or (2 if tiny else 20), a.warmup or (1 if tiny else 5)
    start = time.perf_counter()
    rows = []
    for model in models:
        for length in lengths:
            if length > MAX_LEN.get(model, 1 << 30):
                continue
            ckpt = a.checkpointing or (a.checkpointing_from is not None and length >= a.checkpointing_from)
            for mode, order in ((m, k) for m in a.modes for k in a.markov_orders):
                head = {"model": model, "L": length, "mode": mode + ("+ckpt" if ckpt else ""), "markov order": order}
                if a.budget is not None and time.perf_counter() - start > a.budget:
                    rows.append({**head, "error": f"skipped: the table's {a.budget:.0f} s budget is spent"})
                else:
                    args = dict(model=model, length=length, batch=max(1, tokens // length),
                                compile_=mode == "compiled", checkpointing=ckpt, tiny=tiny, steps=steps,
                                warmup=warmup, device=a.device, peak_tflops=a.peak_tflops, profile=a.profile,
                                markov_order=order)
                    rows.append({**head, **_run_row(args, a.timeout)})
                if "profile" in rows[-1]:
                    print(f"--- profile: {model} L={length} {mode}\n{rows[-1].pop('profile')}")
                print(rows[-1], file=sys.stderr, flush=True)
                if a.json:
                    a.json.write_text(json.dumps(rows, indent=1, default=str))
    df = pd.DataFrame(rows)
    device = torch.cuda.get_device_name() if a.device == "cuda" else "CPU"
    print(f"device: {device}; MFU against {a.peak_tflops:g} TFLOP/s; {steps} timed steps after {warmup} warm-up")
    print(df.to_markdown(index=False, floatfmt=".3g"))
    return df


if __name__ == "__main__":
    main()
