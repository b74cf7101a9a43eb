"""Step 2: DiT-small training steps at L = 1k and 8k, eager and compiled, and their MFU."""

from __future__ import annotations

from gpu_suite.framework import Suite, read_json, status_of, why

KINDS_MATMUL_TFLOPS = 790.0  # KINDS.md: 769-798 TFLOP/s bf16 on this workplace's H200s, if our own run fails


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
    rows = read_json(out) or []
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
        s.add(title, "dit_small training steps", status=status_of(cmd, False), note=why(cmd), command=cmd.shown)
