"""Step 1: a selective scan kernel (Triton, or mamba-ssm's) against the float64 torch scan."""

from __future__ import annotations

from gpu_suite.framework import Suite, printed_rows, read_json, status_of, why


def step_scan(s: Suite, limit: float) -> None:
    argv = ["python", "benchmarks/gpu_scan_check.py", "--backends", "triton"]
    env = None
    if s.dry:
        argv += ["--device", "cpu", "--tiny"]
        env = {"TRITON_INTERPRET": "1"}
    scan_rows(s, "triton", argv, limit, env)


def scan_rows(s: Suite, backend: str, argv: list[str], limit: float, env: dict[str, str] | None = None) -> None:
    out, printed = s.work / f"scan_{backend}.json", s.work / f"scan_{backend}.out"
    cmd = s.run([*argv, "--json", str(out)], limit, env, capture=printed)
    rows = [r for r in (read_json(out) or printed_rows(printed)) if r.get("backend") == backend]
    name = {"triton": "Triton selective scan", "cuda": "mamba-ssm selective scan"}[backend]
    what = f"{name} vs float64 torch scan (output, last state, all gradients)"
    errors = [r["error"] for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    if not rows:
        s.add("1 correctness", what, status=status_of(cmd, False), note="; ".join(errors) or why(cmd),
              command=cmd.shown)
        return
    worst = max(rows, key=lambda r: r["max rel err"])
    bad = [r for r in rows if not r["ok"]]
    figures = {"checks": len(rows), "within tolerance": len(rows) - len(bad), "worst rel err": worst["max rel err"],
               "worst at": f"{worst['worst']} B={worst['B']} D={worst['D']} L={worst['L']} N={worst['N']} "
                           f"{worst['dtype']}", "largest L": max(r["L"] for r in rows)}
    note = "; ".join(f"FAILS {r['dtype']} B={r['B']} D={r['D']} L={r['L']}: {r['worst']} {r['max rel err']:.2e}"
                     for r in bad[:3])
    if cmd.timed_out:
        note = "; ".join(filter(None, [note, "ran out of time before every shape was checked"]))
    s.add("1 correctness", what, figures, "fail" if bad else status_of(cmd), note, cmd.shown)
