"""Step 6: a short ``python -m mdlm_dna.pretrain`` of DiT-small on E. coli in bf16, then ``evaluate``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gpu_suite.framework import Suite, number, read_json, status_of, why

PRETRAIN_MIN_S = 60.0  # less training than this shows no learning curve: then the step is skipped
PRETRAIN_OVERHEAD_S = 55.0  # start-up, validations, the last checkpoint, and the evaluate run after it
README_REFERENCE = "README (E. coli, last 10 %): order-6 Markov 1.934, order-0 2.000 bits/base"


def step_pretrain(s: Suite, limit: float) -> None:
    title = "6 pretrain"
    run_dir = s.work / "pretrain"
    if s.dry:
        train_s, steps = 60.0, 4
        argv = ["python", "-m", "mdlm_dna.pretrain", "model=dit_tiny", "trainer=cpu", "model.d_model=32",
                "model.n_layers=2", "model.n_heads=2", "model.cond_dim=32", "data.seq_len=64", "data.batch_size=8",
                "data.val_max_windows=8", f"trainer.max_steps={steps}", "trainer.val_check_interval=2",
                "trainer.log_every_n_steps=1", "eval.t_samples=1"]
    else:
        train_s = min(float(s.args.pretrain_s), limit - PRETRAIN_OVERHEAD_S)
        # steps for train_s at the measured eager rate (the run is eager); max_time stops it if that was optimistic
        tps = s.facts.get("dit_1k_eager_tps") or s.facts.get("dit_1k_tps")
        steps = int(train_s * tps / (64 * 1024) * 0.9) if tps else 2000
        argv = ["python", "-m", "mdlm_dna.pretrain", "model=dit_small", "trainer=gpu", "data.seq_len=1024",
                "data.batch_size=64", f"trainer.max_steps={steps}",
                f"trainer.val_check_interval={max(50, steps // 5)}", "trainer.log_every_n_steps=25",
                "optim.lr=3e-4", "optim.warmup_steps=100"]
    if train_s < (1 if s.dry else PRETRAIN_MIN_S):
        s.add(title, "dit_small pretrain on E. coli", status="skipped", note=f"{limit:.0f} s left is too little")
        return
    secs = int(train_s)
    argv += [f"+trainer.max_time=00:00:{secs // 60:02d}:{secs % 60:02d}", "checkpoint.every_n_train_steps=1000000",
             "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", f"cache_dir={s.work / 'cache'}"]
    t0 = time.monotonic()
    cmd = s.run(argv, limit - 25)  # the rest is evaluate's; max_time ends the training well before this
    wall = time.monotonic() - t0
    curve, last_step = _val_curve(run_dir / "metrics.csv")
    last = run_dir / "checkpoints" / "last.ckpt"
    model = "dit_tiny" if s.dry else "dit_small"
    figures: dict[str, Any] = {"wall s": wall, "max s of training": train_s, "last logged step": last_step,
                               "val bits/base": curve[-1][1] if curve else None}
    if last_step:
        batch, length = (8, 64) if s.dry else (64, 1024)
        figures["tokens (M, approx.)"] = last_step * batch * length / 1e6
    figures["val curve (step, bits/base)"] = curve
    if not last.exists():
        s.add(title, f"{model} pretrain on E. coli, then test bits/base", figures, status_of(cmd, False),
              why(cmd), cmd.shown)
        return
    out = s.work / "evaluate.json"
    ev = ["python", "-m", "mdlm_dna.evaluate", f"ckpt={last}", f"output={out}", f"hydra.run.dir={s.work / 'eval'}",
          f"cache_dir={s.work / 'cache'}", "trainer.enable_progress_bar=false"]
    ev += ["max_windows=8", "t_samples=1"] if s.dry else ["trainer.accelerator=gpu"]
    left = limit - (time.monotonic() - t0)
    evc = s.run(ev, max(10.0, left))
    result = read_json(out) or {}
    figures["test bits/base"] = result.get("bits_per_base")
    figures["test windows"] = result.get("windows")
    ok = cmd.rc == 0 and evc.rc == 0 and figures["test bits/base"] is not None
    note = README_REFERENCE if ok else f"pretrain {why(cmd)}; evaluate {why(evc)}"
    precision = "fp32" if s.dry else "bf16"
    s.add(title, f"{model} pretrain on E. coli ({precision}), then test bits/base", figures,
          "ok" if ok else "fail", note, f"{cmd.shown} && {evc.shown}")


def _val_curve(metrics_csv: Path) -> tuple[list[tuple[int, float]], int | None]:
    """(step, validation bits/base) pairs from the run's CSV log, and the last step logged."""
    import csv

    if not metrics_csv.exists():
        return [], None
    curve, last = [], None
    with open(metrics_csv) as f:
        for rec in csv.DictReader(f):
            bpb, step = number(rec.get("val/bpb")), number(rec.get("step"))
            if step is not None:
                last = max(last or 0, int(step))
                if bpb is not None:
                    curve.append((int(step), bpb))
    return curve, last
