"""The outputs: gpu_suite.md (one table) and gpu_suite.json (every figure, the budget, each step's time)."""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

from gpu_suite.framework import Suite


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}"
    return str(v)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(s: Suite) -> str:
    """One Markdown table: a row per figure group, each with its date, GPU, versions and command."""
    head = ["step", "what", "result", "status", "note", "date", "GPU", "torch", "CUDA", "Triton", "command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in s.rows:
        result = "; ".join(f"{k} {_fmt(v)}" for k, v in r["figures"].items()
                           if v is not None and not isinstance(v, list | dict))
        cells = [r["step"], r["what"], result, r["status"], r["note"], r["date"], r["gpu"], r["torch"], r["cuda"],
                 r["triton"], f"`{r['command']}`" if r["command"] else ""]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(s: Suite) -> None:
    (s.out / "gpu_suite.md").write_text(render_table(s))
    doc = {
        "suite": {**s.env_info, "dry_run": s.dry, "budget_s": s.args.budget_s, "elapsed_s": s.elapsed(),
                  "command": shlex.join(["bash", "benchmarks/gpu_suite.sh", *s.args.argv])},
        "budget": [{"step": st.key, "title": st.title, "cap_s": st.dry_cap_s if s.dry else st.cap_s,
                    "expected_h200_s": st.expect_s} for st in s.plan],
        "steps": s.steps,
        "rows": s.rows,
    }
    (s.out / "gpu_suite.json").write_text(json.dumps(doc, indent=1, default=str))
