"""The issue's goals beside what the run measured."""

from __future__ import annotations

from gpu_suite.framework import Suite


def goal_rows(s: Suite) -> None:
    """The issue's goals next to what this run measured."""
    def add(goal: str, value: float | None, target: float, unit: str, note: str = "") -> None:
        if s.dry:
            status = "n/a"
            note = "dry run: tiny CPU sizes say nothing about the goal"
        else:
            status = "no data" if value is None else ("met" if value >= target else "not met")
        s.add("goals", goal, {"measured": value, "goal": target, "unit": unit}, status, note)

    add("MFU of DiT-small at L = 1024 >= 45 %", s.facts.get("dit_1k_mfu"), 45.0, "%",
        "best of eager / compiled")
    ratios = s.facts.get("triton_vs_cuda", [])
    add("Triton scan >= 0.8x mamba-ssm's kernel on the Caduceus-PS training step",
        min((r for _, r in ratios), default=None), 0.8, "x (mamba-ssm time / Triton time)",
        "; ".join(f"{n}: {r:.2f}x" for n, r in ratios))
    T, speed, predicted = s.facts.get("cached_speedup", (None, None, False))
    add("cached sampling >= 8x faster than ancestral at T = 10k", speed if T == 10000 else None, 8.0, "x",
        "ancestral time predicted from its T = 1k per-step time" if predicted else "")
