"""Step 5: the genome loader's bases/s against the training tokens/s steps 2 and 3 measured."""

from __future__ import annotations

from gpu_suite.framework import Suite, read_json, status_of, why

ECOLI = "data/GCF_000005845.2_ASM584v2_genomic.fna.gz"


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
    rows = read_json(out) or []
    for r in rows:
        who = tps.get(int(r["L"]), (None, "an estimate (no training tokens/s measured)"))[1]
        figures = {"bases/s": r["bases/s"], "training tokens/s": r["GPU tokens/s"], "head-room": r["head-room"],
                   "fastest consumer": who}
        s.add(title, f"L={r['L']} {r['path']} path, {r['workers']} workers", figures, "ok",
              "" if r.get("GPU tokens/s measured") else "against an ESTIMATE", cmd.shown)
    if not rows:
        s.add(title, "genome loader", status=status_of(cmd, False), note=why(cmd), command=cmd.shown)
