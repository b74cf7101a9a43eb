"""Step 2b: the order-6 chain under the network (``model.markov_order``) on a GPU: what it adds to a training step.

``model.markov_order=auto`` turns the chain on only for CPU trainers, because on a GPU it is the dense
forward-backward over all 4**6 states, sequential over positions, at a cost nobody had measured. Two
measurements decide whether ``auto`` should turn it on for GPUs too, and what the CPU default recipe costs
on one GPU:

- the CPU default recipe itself (dit_tiny, 8 x 512 bases per step) with and without the chain: step time, and
  the seconds its 150 steps (the 2-minute CPU run) and 10,000 steps would take;
- DiT-small at L = 1024 (the GPU pretraining shape of step 6) with the chain, against step 2's eager row.
"""

from __future__ import annotations

from typing import Any

from gpu_suite.framework import Suite, read_json, status_of, why

RECIPE_STEPS = (150, 10_000)  # the CPU default run, and the shipped model's step count


def step_chain(s: Suite, limit: float) -> None:
    title = "2b chain on GPU"
    runs = []
    if s.dry:
        runs.append((["--models", "dit_tiny", "--lengths", "64", "--markov-orders", "0", "3", "--tokens", "256",
                      "--steps", "1", "--warmup", "1", "--device", "cpu", "--tiny"], "recipe"))
    else:
        runs.append((["--models", "dit_tiny", "--lengths", "512", "--markov-orders", "0", "6", "--tokens", "4096",
                      "--steps", "15", "--warmup", "4", "--device", "cuda"], "recipe"))
        runs.append((["--models", "dit_small", "--lengths", "1024", "--markov-orders", "6", "--steps", "10",
                      "--warmup", "3", "--device", "cuda"], "dit_small"))
    t0 = s.elapsed()
    for i, (extra, kind) in enumerate(runs):
        out = s.work / f"chain_{kind}.json"
        # the recipe's two rows get 55 % of the step when DiT-small's row follows; the last run what is left
        share = limit * 0.55 if i < len(runs) - 1 else limit - (s.elapsed() - t0)
        argv = ["python", "benchmarks/train_throughput.py", *extra, "--modes", "eager",
                "--timeout", f"{max(5.0, share - 10):.0f}", "--json", str(out)]
        cmd = s.run(argv, max(5.0, share))
        rows = read_json(out) or []
        if not rows:
            s.add(title, f"{kind}: training step with the chain", status=status_of(cmd, False), note=why(cmd),
                  command=cmd.shown)
        for r in rows:
            _add_row(s, title, r, kind, rows, cmd.shown)


def _add_row(s: Suite, title: str, r: dict[str, Any], kind: str, rows: list[dict[str, Any]], shown: str) -> None:
    order = r.get("markov order", 0)
    what = f"{r.get('model')} L={r.get('L')} batch {r.get('batch')}, " + (
        f"order-{order} chain" if order else "no chain")
    if "error" in r:
        status = "skipped" if str(r["error"]).startswith("skipped") else "fail"
        s.add(title, what, status=status, note=str(r["error"]), command=shown)
        return
    figures: dict[str, Any] = {k: r.get(k) for k in ("step ms", "tokens/s", "peak GiB")}
    note = ""
    if kind == "recipe":
        for n in RECIPE_STEPS:
            figures[f"{n} steps, s"] = n * r["step ms"] / 1e3
        plain = next((p for p in rows if p.get("markov order", 0) == 0 and "step ms" in p), None)
        if order and plain:
            figures["step time vs no chain"] = r["step ms"] / plain["step ms"]
            s.facts["chain_step_ratio_recipe"] = figures["step time vs no chain"]
        note = "the CPU default recipe's shape (8 x 512 bases per step)"
    else:
        base = s.facts.get("dit_1k_eager_tps")
        if base:
            figures["step time vs step 2's eager row"] = base / r["tokens/s"]
            s.facts["chain_step_ratio_dit_small"] = figures["step time vs step 2's eager row"]
        else:
            note = "no step-2 eager row to compare with"
    s.add(title, what, figures, "ok", note, shown)
