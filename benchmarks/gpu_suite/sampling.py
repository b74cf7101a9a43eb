"""Step 4: ancestral against cached sampling, T = 1k and 10k."""

from __future__ import annotations

from gpu_suite.framework import Suite, read_json, status_of, why


def step_sampling(s: Suite, limit: float) -> None:
    title = "4 sampling"
    out = s.work / "sampling.json"
    if s.dry:
        argv = ["python", "benchmarks/bench_samplers.py", "--length", "32", "--batch", "2", "--steps", "16", "64"]
    else:
        argv = ["python", "benchmarks/bench_samplers.py", "--device", "cuda", "--bf16", "--length", "1024", "--batch",
                "64", "--steps", "1000", "10000", "--d-model", "256", "--n-layers", "4", "--n-heads", "4"]
    cmd = s.run([*argv, "--budget", f"{max(1.0, limit - 20):.0f}", "--json", str(out)], limit)
    rows = read_json(out) or []
    for r in rows:
        what = f"T={r['T']} {r['sampler']}, batch {r['batch']} x L={r['L']}"
        if "error" in r:
            figures = {"predicted s": r["predicted s"]} if r.get("predicted s") else {}
            s.add(title, what, figures, "skipped", r["error"], cmd.shown)
            continue
        figures = {k: r[k] for k in ("seconds", "samples/s", "network calls", "evals/sample", "speed-up",
                                     "speed-up (predicted)", "same samples") if k in r}
        s.add(title, what, figures, "ok", "", cmd.shown)
        speed = r.get("speed-up") or r.get("speed-up (predicted)")
        if speed and r["sampler"] == "cached":
            s.facts["cached_speedup"] = (r["T"], speed, "speed-up" not in r)
    if not rows:
        s.add(title, "ancestral vs cached", status=status_of(cmd, False), note=why(cmd), command=cmd.shown)
