"""Genome loader throughput: array path (memory-mapped token cache) vs pyfaidx path, against what a GPU needs.

    OMP_NUM_THREADS=1 python benchmarks/bench_loader.py [--fasta F.fa.gz] [--seconds 2] [--workers 0 1 2]
    python benchmarks/bench_loader.py --paths array --lengths 1024 --gpu-tokens-per-s 1024=512000 --json rows.json

For each window length L and number of DataLoader workers, training windows (uniform positions in
the training split, mostly-N windows redrawn, reverse complement with p = 0.5, as in training)
are read through a DataLoader for ``--seconds`` after the first batch (worker start-up is not
counted), and windows/s and bases/s are printed. The "GPU needs" column is an ESTIMATE, not a
measurement: the tokens/s one GPU would consume training the ``dit_small`` model, from its
training FLOPs per token (6 x parameters, plus 12 x layers x d_model x L for attention) at an
assumed bf16 utilisation of an H100 (``--peak-tflops`` x ``--mfu``), unless ``--gpu-tokens-per-s L=TPS``
gives a measured figure for that L (benchmarks/gpu_suite passes the training tokens/s it measured).
Head-room = loader bases/s / GPU tokens/s. Memory: the token cache on disk and the resident memory of the
reading process. The default genome is A. thaliana chromosome 1 where the shared data folder has it, else
the shipped E. coli genome.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import model_config, write_record
from torch.utils.data import DataLoader

from mdlm_dna.data.fasta import load_genome, open_genome_pyfaidx
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.data.windows import RandomWindows, split_genome
from mdlm_dna.models import build_backbone
from mdlm_dna.utils.resources import data_file

ATHA = "/work/shared/data/genomes/wheel_chromosomes/AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz"
PATHS = ("array", "pyfaidx")


def proc_mem() -> dict[str, int]:
    """Resident memory of this process in bytes: private (anonymous) and file-backed (shared page cache)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(val.split()[0]) * 1024
    return out


def gpu_need(seq_len: int, peak_tflops: float, mfu: float) -> tuple[int, float]:
    """(parameters, tokens/s) of one GPU training dit_small at seq_len: an estimate, see the module docstring."""
    cfg = model_config("dit_small")
    tok = NucleotideTokenizer()
    with torch.device("meta"):
        model = build_backbone(cfg, vocab_size=tok.vocab_size, complement_ids=tok.complement_ids)
    n_params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6 * n_params + 12 * cfg["n_layers"] * cfg["d_model"] * seq_len
    return n_params, peak_tflops * 1e12 * mfu / flops_per_token


def measure(ds, batch_size: int, workers: int, seconds: float) -> tuple[float, int]:
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, shuffle=False)
    it = iter(loader)
    next(it)  # start-up (worker fork, first handle open) is not counted
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += len(next(it)["input_ids"])
    dt = time.perf_counter() - t0
    del it
    return n / dt, n


def _measured(items: list[str]) -> dict[int, float]:
    out = {}
    for item in items:
        length, _, tps = item.partition("=")
        out[int(length)] = float(tps)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fasta", default=ATHA if Path(ATHA).exists() else data_file(
        "GCF_000005845.2_ASM584v2_genomic.fna.gz"))
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="reading paths to time")
    ap.add_argument("--gpu-tokens-per-s", nargs="*", default=[], metavar="L=TPS",
                    help="measured training tokens/s at length L (replaces the estimate for that L)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 32768, 131072])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell")
    ap.add_argument("--bases-per-batch", type=int, default=1 << 17, help="batch size = max(1, this // L)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="H100 SXM dense bf16 peak")
    ap.add_argument("--mfu", type=float, default=0.4, help="assumed model FLOPs utilisation")
    ap.add_argument("--bgzip", action="store_true", help="also time pyfaidx on the bgzipped file itself")
    ap.add_argument("--record", type=Path, default=None, help="also write the report as a Markdown record here")
    args = ap.parse_args(argv)
    measured = _measured(args.gpu_tokens_per_s)
    report: list[str] = []

    def say(text: str) -> None:
        print(text)
        report.append(text)

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        src = Path(args.fasta)
        plain = tmp / src.name.removesuffix(".gz")
        t0 = time.perf_counter()
        with gzip.open(src, "rb") as fin, open(plain, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 24)
        t_unpack = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_genome(plain, cache_dir=tmp)  # the one-off conversion
        t_cache = time.perf_counter() - t0
        mem0 = proc_mem()
        arr = load_genome(plain, cache_dir=tmp)  # what every run does: open the existing cache
        mem1 = proc_mem()
        t0 = time.perf_counter()
        pyf = open_genome_pyfaidx(plain, cache_dir=tmp)
        t_fai = time.perf_counter() - t0
        paths = {k: v for k, v in {"array": arr, "pyfaidx": pyf}.items() if k in args.paths}
        if args.bgzip:
            paths["pyfaidx (bgzip)"] = open_genome_pyfaidx(src, cache_dir=tmp)
        fai = sorted(tmp.glob("*.fai"))
        say(
            f"genome: {src.name}: {len(arr):,} bases, {len(arr.records)} record(s), "
            f"{arr.stats['iupac_to_n']} IUPAC codes"
        )
        say(
            f"one-off: unpack {t_unpack:.1f} s, token cache build {t_cache:.1f} s "
            f"({len(arr) / t_cache / 1e6:.1f} Mb/s), pyfaidx .fai {t_fai:.2f} s"
        )

        # identical windows on both paths, checked here too (tests/test_genome_readers.py checks it in CI)
        tr = {k: split_genome(g)["train"] for k, g in paths.items()}
        check = {
            k: RandomWindows(g, tr[k], 4096, 64, seed=11, rc_prob=0.5, keep_soft_mask=True) for k, g in paths.items()
        }
        if "array" in check and len(check) > 1:
            same = all(
                torch.equal(check["array"][i]["input_ids"], check[k][i]["input_ids"]) for k in paths for i in range(64)
            )
            say(f"pyfaidx windows identical to array windows (64 x 4096 bases, RC included): {same}")

        rows = []
        for L in args.lengths:
            bs = max(1, args.bases_per_batch // L)
            n_params, need = gpu_need(L, args.peak_tflops, args.mfu)
            need = measured.get(L, need)
            for name, g in paths.items():
                ds = RandomWindows(g, tr[name], L, num_samples=10**7, seed=0, rc_prob=0.5)
                for w in args.workers:
                    wps, n = measure(ds, bs, w, args.seconds)
                    rows.append((L, name, w, bs, n, wps, wps * L, need, wps * L / need))
                    print(".", end="", flush=True)
        print()
        # a full pass over a fresh map of the cache: its file-backed pages (the page cache, shared by every
        # process that maps the file) become resident; nothing is copied into private memory
        fresh = load_genome(plain, cache_dir=tmp)
        mem2 = proc_mem()
        n_count = sum(int(np.count_nonzero(fresh.ids[i : i + (1 << 20)] == 4)) for i in range(0, len(fresh), 1 << 20))
        mem3 = proc_mem()

        hdr = "| L | path | workers | batch | windows | windows/s | bases/s | GPU needs tokens/s | head-room |"
        say(
            f"\nMeasured on {os.cpu_count()} CPU core(s) (shared with other jobs); {args.seconds:g} s per cell; "
            f"torch threads 1.\nGPU column: measured where marked (m), else an ESTIMATE (est.): dit_small "
            f"({n_params / 1e6:.1f} M parameters), 6 x params + 12 x layers x d_model x L FLOPs per token, H100 bf16 "
            f"peak {args.peak_tflops:.0f} TFLOP/s at an assumed {args.mfu:.0%} utilisation.\n"
        )
        say(hdr)
        say("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for L, name, w, bs, n, wps, bps, need, room in rows:
            say(
                f"| {L:,} | {name} | {w} | {bs} | {n:,} | {wps:,.0f} | {bps / 1e6:,.1f} M "
                f"| {need / 1e3:,.0f} k {'(m)' if L in measured else '(est.)'} | {room:,.0f}x |"
            )
        keys = ("L", "path", "workers", "batch", "windows", "windows/s", "bases/s", "GPU tokens/s", "head-room")
        out = [dict(zip(keys, r), **{"GPU tokens/s measured": r[0] in measured}) for r in rows]
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
        ids_bytes = arr.ids_file.stat().st_size
        say(
            "\nMemory of the index:\n"
            f"- array path: token cache {ids_bytes / 1e6:.1f} MB on disk (1 byte/base), "
            f"memory-mapped read-only: opening it adds {(mem1['RssAnon'] - mem0['RssAnon']) / 1e6:.2f} MB private "
            f"memory; a full pass over it adds {(mem3['RssAnon'] - mem2['RssAnon']) / 1e6:.2f} MB private and "
            f"{(mem3['RssFile'] - mem2['RssFile']) / 1e6:.1f} MB file-backed resident memory (the page cache, "
            f"shared by all workers and runs, not copied per worker; {n_count:,} N)\n"
            f"- pyfaidx path: .fai index {sum(f.stat().st_size for f in fai)} bytes; reads the FASTA text "
            f"({plain.stat().st_size / 1e6:.1f} MB plain) per window\n"
            f"- sampler: {ds.starts.nbytes + ds.cum.nbytes} bytes for {len(ds.starts)} interval(s) "
            "(16 bytes per interval: window starts + cumulative counts)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.record:
        write_record(args.record, "Genome loader: windows per second by reading path", "\n".join(report))
    return out


if __name__ == "__main__":
    main()
