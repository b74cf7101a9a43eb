"""Forward + backward time and peak memory of the selective scan backends, and of a Caduceus-PS training step.

    python benchmarks/bench_selective_scan.py                       # CPU, L = 1k, 8k, 131k
    python benchmarks/bench_selective_scan.py --device cuda --batch 8 --lengths 1024 8192 131072
    python benchmarks/bench_selective_scan.py --issue               # the GPU table: triton vs cuda vs torch
    python benchmarks/bench_selective_scan.py --shapes 8,1536,1024,16 --variants triton cuda --model-shapes 8,1024

Backends: the sequential reference, the chunked torch scan ([scan] / [segsum] inside a chunk), our Numba
CPU kernels (``numba``, the CPU default), mamba-ssm's CUDA kernel and our Triton kernels. ``first_s`` is the
first step of a fresh process: imports and compilation (for numba, a compile or a load from its disk cache).

Each (backend, shape) runs in fresh subprocesses so that its peak memory is its own: on CUDA
torch.cuda.max_memory_allocated, on CPU the growth of the process's peak resident set over the inputs,
with large allocations mmap'd so that freed tensors leave it (tracemalloc cannot see tensor memory).
Default sizes are one layer of the Caduceus paper's models:
d_model 256, expand 2 (D = 512 channels), N = 16. The sequential reference is skipped past
--reference-max-len (one Python step per position).

``--issue`` runs the shapes (batch, D, L, N) = (8, 1536, 1k, 16), (8, 512, 8k, 16), (1, 512, 131k, 16) for
the triton, cuda (mamba-ssm, if it imports) and torch[segsum] backends, then a whole Caduceus-PS training
step (configs/model/caduceus_ps_paper.yaml: forward, backward, AdamW) in tokens/s; the ``x cuda`` column is
the time over mamba-ssm's. On a CPU, ``triton`` runs under Triton's interpreter: a correctness run, not a
speed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml
from common import ROOT, arg_parser, peak_rss_bytes, sync_device, time_calls, write_record

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.models import build_backbone
from mdlm_dna.models.selective_scan import SCAN_KERNEL, selective_scan

ISSUE_SHAPES = [(8, 1536, 1024, 16), (8, 512, 8192, 16), (1, 512, 131072, 16)]  # batch, D, L, N
ISSUE_MODEL_SHAPES = [(8, 1024), (1, 131072)]  # batch, L of the Caduceus-PS training step

VARIANTS = {  # row name -> selective_scan arguments
    "reference": {"backend": "reference"},
    "torch[scan]": {"backend": "torch", "intra_chunk": "scan"},
    "torch[segsum]": {"backend": "torch", "intra_chunk": "segsum"},
    "numba": {"backend": "numba"},
    "cuda": {"backend": "cuda"},
    "triton": {"backend": "triton"},
}


def _inputs(batch, dim, n, length, device, dtype, layout="mamba"):
    """Random scan inputs. ``layout="mamba"``: the layouts a Mamba block passes (u = the conv's [B, D, L]
    output; delta, z, B, C transposed views of [B, L, *] projections); ``"contiguous"``: all [B, *, L]."""
    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=dtype)

    def seq(width):  # [B, width, L], in the chosen memory layout
        return r(batch, length, width).transpose(1, 2) if layout == "mamba" else r(batch, width, length)

    return {
        "u": r(batch, dim, length), "delta": seq(dim) - 3.0,
        "A": -torch.arange(1, n + 1, device=device, dtype=torch.float32).repeat(dim, 1),
        "B": seq(n), "C": seq(n), "D": torch.ones(dim, device=device),
        "z": seq(dim), "delta_bias": torch.zeros(dim, device=device),
    }


def _model_step(args: dict, device: torch.device, dtype: torch.dtype):
    """One AdamW training step of a Caduceus backbone on random tokens, half of them masked."""
    cfg = yaml.safe_load(Path(args["model_config"]).read_text())
    cfg.update(args["model_set"], scan_backend=VARIANTS[args["variant"]]["backend"])
    tok = NucleotideTokenizer()
    torch.manual_seed(0)
    model = build_backbone(cfg, tok.vocab_size, tok.complement_ids).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, tok.vocab_size, (args["batch"], args["length"]), device=device)
    noisy = torch.where(torch.rand(x.shape, device=device) < 0.5, tok.mask_id, x)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = model(noisy, None)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), x.flatten()).backward()
        opt.step()

    return step


def _scan_step(args: dict, device: torch.device, dtype: torch.dtype):
    kw = dict(VARIANTS[args["variant"]])
    if args["chunk_size"] and kw["backend"] == "torch":
        kw["chunk_size"] = args["chunk_size"]
    scan = selective_scan
    if args.get("triton_opts"):  # a launch configuration of the Triton kernels, called directly
        from mdlm_dna.models.triton_scan import selective_scan_fn

        bd, chunk, warps = args["triton_opts"]
        kw = {"block_d": bd, "chunk": chunk, "num_warps": warps}
        scan = selective_scan_fn
    x = _inputs(args["batch"], args["dim"], args["n"], args["length"], device, dtype, args.get("layout", "mamba"))
    leaves = {k: v.requires_grad_() for k, v in x.items()}

    def step():
        for v in leaves.values():
            v.grad = None
        y = scan(**leaves, delta_softplus=True, **kw)
        # the loss over y in its memory order ([B, D, L] or, for the numba backend, [B, L, D], which is what
        # Mamba's out_proj reads): the same value, and no backend pays for mixing the two layouts in torch
        (y if y.is_contiguous() else y.transpose(1, 2)).float().square().mean().backward()

    return step


def _measure(args: dict, out: mp.Queue) -> None:
    torch.set_num_threads(args["threads"])
    device, cuda = torch.device(args["device"]), args["device"].startswith("cuda")
    dtype = getattr(torch, args["dtype"])
    try:
        body = (_model_step if args["kind"] == "model" else _scan_step)(args, device, dtype)

        if args["memory"]:  # one step; peak growth over the inputs (and, for the model, its weights)
            # imports and compilation first, on a tiny input: their memory (Numba's LLVM) is not the step's
            tiny = {**args, "batch": 1, "length": min(args["length"], 16), "dim": min(args.get("dim", 16), 32)}
            (_model_step if args["kind"] == "model" else _scan_step)(tiny, device, dtype)()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if cuda else peak_rss_bytes()
            body()
            sync_device(device)
            peak = torch.cuda.max_memory_allocated() - base if cuda else peak_rss_bytes() - base
            out.put({"peak_mib": peak / 2**20})
            return
        # the first step alone: kernel import, Triton or Numba compilation or cache load, autotuning of cuBLAS
        first = time_calls(body, 1, device=device).best
        t = time_calls(body, args["repeats"], device=device).best
        out.put({"ms": 1e3 * t, "tokens_per_s": args["batch"] * args["length"] / t, "first_s": first})
    except Exception as err:  # out of memory, or the CUDA kernel missing
        out.put({"error": f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"})


def _spawn(args: dict, timeout: float, env: dict[str, str]) -> dict:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # a spawned interpreter reads its environment at start-up
    try:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_measure, args=(args, q), daemon=True)
        p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        return {"error": f"over {timeout:.0f} s"}
    return q.get() if not q.empty() else {"error": f"exit code {p.exitcode}"}


def run_one(args: dict, timeout: float) -> dict:
    """Time in one process, memory in another: for the memory run glibc serves every allocation over
    128 KiB by mmap, so that freed tensors leave the resident set (but allocation gets slower)."""
    # off-GPU, Triton only runs under its interpreter, which must be on before triton is imported
    env = {"TRITON_INTERPRET": "1"} if args["variant"] == "triton" and args["device"] == "cpu" else {}
    res = _spawn({**args, "memory": False}, timeout, env)
    if "error" in res:
        return res
    mem = _spawn({**args, "memory": True}, timeout, {**env, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)})
    return {**res, **mem} if "error" not in mem else {**res, "note": "memory: " + mem["error"]}


def _triple(text: str, n: int) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != n:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated integers; got {text!r}")
    return parts


def _with_ratio(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Add ``x cuda``: each row's time over mamba-ssm's for the same shape; and ``x ref``: the sequential
    reference's time over each row's (its speed-up), where the reference ran."""
    if "ms" not in df:
        return df
    for label, backend, invert in (("x cuda", "cuda", False), ("x ref", "reference", True)):
        base = df[(df["backend"] == backend) & df["ms"].notna()]
        if base.empty:
            continue
        base_ms = base.set_index(keys)["ms"]
        ratio = [base_ms.get(tuple(row[k] for k in keys), float("nan")) / row.ms for _, row in df.iterrows()]
        df[label] = ratio if invert else [1 / r for r in ratio]
    return df


def _print(title: str, rows: list[dict], keys: list[str]) -> pd.DataFrame:
    df = _with_ratio(pd.DataFrame(rows), keys)
    print(title)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False, float_format=lambda v: f"{v:,.2f}", na_rep=""))
    return df


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = arg_parser(__doc__)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 8192, 131072])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dim", type=int, default=512, help="channels D (d_model * expand)")
    ap.add_argument("--state", type=int, default=16, help="state size N")
    ap.add_argument("--shapes", type=lambda t: _triple(t, 4), nargs="+", default=None, metavar="B,D,L,N",
                    help="scan shapes; replace --batch/--dim/--lengths/--state")
    ap.add_argument("--model-shapes", type=lambda t: _triple(t, 2), nargs="*", default=[], metavar="B,L",
                    help="also time a whole training step of --model-config at these batch, length")
    ap.add_argument("--model-config", type=Path, default=ROOT / "configs/model/caduceus_ps_paper.yaml")
    ap.add_argument("--model-set", nargs="*", default=[], metavar="KEY=INT",
                    help="override integer fields of the model config (e.g. d_model=16 n_layers=1 for a CPU run)")
    ap.add_argument("--issue", action="store_true", help="the issue's GPU table (see above)")
    ap.add_argument("--triton-configs", type=lambda t: _triple(t, 3), nargs="*", default=[], metavar="BD,T,W",
                    help="also time the Triton kernels at these (channels per program, steps per tile, warps)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="scan inputs; for the model step, autocast to this dtype")
    ap.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                    help="default: all but triton on a CPU (numba only on a CPU); with --issue: triton, cuda, "
                         "torch[segsum]")
    ap.add_argument("--layout", default="mamba", choices=["mamba", "contiguous"],
                    help="scan inputs as a Mamba block passes them (u [B, D, L], delta / z / B / C transposed "
                         "views of [B, L, *]) or all contiguous [B, *, L]")
    ap.add_argument("--chunk-size", type=int, default=None, help="torch backend chunk (default: its own)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    ap.add_argument("--reference-max-len", type=int, default=8192)
    ap.add_argument("--segsum-cpu-max-len", type=int, default=8192)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--record", type=Path, default=None,
                    help="also write the tables as a Markdown record (command, machine, load) here, e.g. "
                         "benchmarks/selective_scan_cpu.md")
    a = ap.parse_args(argv)
    if a.issue and a.device == "cpu":
        ap.error("--issue is the GPU table (on a CPU, Triton runs under its interpreter: hours at these sizes)")
    if a.issue:
        a.shapes = a.shapes or ISSUE_SHAPES
        a.model_shapes = a.model_shapes or ISSUE_MODEL_SHAPES
        a.variants = a.variants or ["triton", "cuda", "torch[segsum]"]
    if a.variants is None:
        on_cpu = a.device == "cpu"
        a.variants = [v for v in VARIANTS if (v != "triton" or not on_cpu) and (v != "numba" or on_cpu)]
    shapes = a.shapes or [(a.batch, a.dim, length, a.state) for length in a.lengths]
    model_set = {}
    for item in a.model_set:
        key, _, value = item.partition("=")
        model_set[key] = int(value)

    base = {"device": a.device, "dtype": a.dtype, "layout": a.layout, "chunk_size": a.chunk_size, "repeats": a.repeats,
            "threads": a.threads, "model_config": str(a.model_config), "model_set": model_set}
    scan_rows, model_rows, model_done = [], [], set()
    for variant in a.variants:
        if (variant == "cuda" and not a.device.startswith("cuda")) or (variant == "numba" and a.device != "cpu"):
            continue
        if variant == "cuda" and SCAN_KERNEL.get() is None:
            scan_rows.append({"backend": variant, "note": "mamba_ssm kernel unavailable"})
            continue
        for batch, dim, length, n in shapes:
            row = {"backend": variant, "B": batch, "D": dim, "L": length, "N": n}
            if variant == "reference" and length > a.reference_max_len:
                scan_rows.append({**row, "note": f"skipped: a Python step per position (> {a.reference_max_len})"})
                continue
            if variant == "torch[segsum]" and a.device == "cpu" and length > a.segsum_cpu_max_len:
                note = f"skipped: T times the work of [scan], a GPU path (> {a.segsum_cpu_max_len})"
                scan_rows.append({**row, "note": note})
                continue
            args = {**base, "kind": "scan", "variant": variant, "length": length, "batch": batch, "dim": dim, "n": n}
            res = run_one(args, a.timeout)
            scan_rows.append({**row, **({"note": res["error"]} if "error" in res else res)})
            print(scan_rows[-1], file=sys.stderr, flush=True)
            for opts in a.triton_configs if variant == "triton" else []:
                res = run_one({**args, "triton_opts": opts}, a.timeout)
                label = "triton[bd={},T={},w={}]".format(*opts)
                scan_rows.append({**row, "backend": label, **({"note": res["error"]} if "error" in res else res)})
                print(scan_rows[-1], file=sys.stderr, flush=True)
        backend = VARIANTS[variant]["backend"]  # the model picks the torch backend's variant itself
        if variant == "reference" or backend in model_done:
            continue  # a whole model on the sequential reference: hours
        model_done.add(backend)
        for batch, length in a.model_shapes:
            args = {**base, "kind": "model", "variant": variant, "length": length, "batch": batch}
            res = run_one(args, a.timeout)
            model_rows.append({"backend": backend, "B": batch, "L": length,
                               **({"note": res["error"]} if "error" in res else res)})
            print(model_rows[-1], file=sys.stderr, flush=True)
    where = f"device {a.device}" + (f", {a.threads} CPU threads" if a.device == "cpu" else "")
    if a.device == "cuda":
        where += f" ({torch.cuda.get_device_name()})"
    where += f", {a.layout} layout"
    title = f"selective scan, forward + backward, {a.dtype}, {where}"
    df = _print(title, scan_rows, ["B", "D", "L", "N"])
    tables = [(title, df)] if scan_rows else []
    if model_rows:
        sizes = ", ".join(f"{k}={v}" for k, v in model_set.items())
        title = (f"{a.model_config.name}{' with ' + sizes if sizes else ''}: one AdamW training step "
                 f"(forward + backward + update), {a.dtype}, {where}")
        tables.append((title, _print("\n" + title, model_rows, ["B", "L"])))
    if a.record:
        body = "\n\n".join(f"{t}\n\n{d.to_markdown(index=False, floatfmt=',.2f')}" for t, d in tables)
        write_record(a.record, "Selective scan benchmark", body)
    if a.json:
        a.json.write_text(json.dumps({"scan": scan_rows, "model": model_rows}, indent=1))
    return df


if __name__ == "__main__":
    main()
