"""End-to-end: training, exact resume, atomic checkpoints, evaluation, and the command lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch

from mdlm_dna.artifacts.checkpoints import load_module
from mdlm_dna.evaluate import evaluate
from mdlm_dna.pretrain import run
from mdlm_dna.train.callbacks import AtomicCheckpointIO

from .conftest import TINY, compose_pretrain

REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(fasta: Path, *extra: str):
    return compose_pretrain(*TINY, "genome=fasta", f"genome.path={fasta}", *extra)


class CrashAt(pl.Callback):
    """Simulates a crash (an exception escaping the loop) after a given step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def _state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)


def test_resume_after_crash_equals_uninterrupted_run(ecoli_prefix, tmp_path):
    common = [
        "trainer.max_steps=12",
        "trainer.val_check_interval=6",
        "checkpoint.every_n_train_steps=4",
        "model.dropout=0.1",
    ]  # dropout: the global RNG state must travel in the checkpoint too
    straight = run(tiny_cfg(ecoli_prefix, *common), tmp_path / "straight")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tiny_cfg(ecoli_prefix, *common), tmp_path / "crashed", extra_callbacks=[CrashAt(6)])
    assert _state(tmp_path / "crashed/checkpoints/last.ckpt")["global_step"] == 4  # the last periodic save
    resumed = run(tiny_cfg(ecoli_prefix, *common), tmp_path / "crashed")  # same command, same folder
    assert resumed["global_step"] == straight["global_step"] == 12

    a, b = _state(Path(straight["last_ckpt"])), _state(Path(resumed["last_ckpt"]))
    assert a["global_step"] == b["global_step"]
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    for k in a["ema"]["shadow"]:
        torch.testing.assert_close(a["ema"]["shadow"][k], b["ema"]["shadow"][k], rtol=0, atol=0, msg=k)
    oa, ob = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for i in oa:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(oa[i][k], ob[i][k], rtol=0, atol=0)
    assert a["ema"]["num_updates"] == b["ema"]["num_updates"] == 12

    # the metrics file continues: one row per training step, no gaps, no duplicates
    m = pd.read_csv(tmp_path / "crashed/metrics.csv")
    steps = m.dropna(subset=["train/loss"])["step"].tolist()
    assert steps == list(range(12))
    ref = pd.read_csv(tmp_path / "straight/metrics.csv").dropna(subset=["train/loss"])
    assert m.dropna(subset=["train/loss"])["train/loss"].tolist() == pytest.approx(ref["train/loss"].tolist(), abs=0)


def test_outputs_of_a_run(ecoli_prefix, tmp_path):
    res = run(tiny_cfg(ecoli_prefix, "trainer.max_steps=7", "trainer.val_check_interval=5"), tmp_path / "r")
    d = tmp_path / "r"
    assert (d / "checkpoints/last.ckpt").exists() and (d / "config.yaml").exists() and (d / "metrics.csv").exists()
    assert _state(d / "checkpoints/last.ckpt")["global_step"] == 7  # saved at the end, not only every N steps
    assert set(res["metrics"]) == {"val/nelbo", "val/bpb", "val/ppl", "val/bpb_se"}
    assert res["metrics"]["val/bpb"] == pytest.approx(res["metrics"]["val/nelbo"] / 0.6931471805599453)
    # the saved config is resolved (no interpolations) and names the genome
    assert str(ecoli_prefix) in (d / "config.yaml").read_text() and "${" not in (d / "config.yaml").read_text()


def test_refuses_to_overwrite_a_run_without_resume(ecoli_prefix, tmp_path):
    run(tiny_cfg(ecoli_prefix, "trainer.max_steps=2", "trainer.val_check_interval=2"), tmp_path / "r")
    with pytest.raises(FileExistsError, match="last.ckpt exists and resume is off"):
        run(tiny_cfg(ecoli_prefix, "trainer.max_steps=2", "resume=null"), tmp_path / "r")


def test_evaluate_uses_ema_weights(ecoli_prefix, tmp_path):
    res = run(tiny_cfg(ecoli_prefix, "trainer.max_steps=6", "trainer.val_check_interval=3"), tmp_path / "r")
    module, info = load_module(res["last_ckpt"])
    raw_module, raw_info = load_module(res["last_ckpt"], use_ema=False)
    assert info.ema and not raw_info.ema
    state = _state(Path(res["last_ckpt"]))
    for n, p in module.objective.named_parameters():
        torch.testing.assert_close(p.detach(), state["ema"]["shadow"][n])
    assert any(not torch.equal(p, q) for p, q in zip(module.parameters(), raw_module.parameters()))
    out = evaluate(
        {
            "ckpt": res["last_ckpt"],
            "split": "test",
            "use_ema": True,
            "t_samples": 2,
            "batch_size": None,
            "max_windows": 16,
            "genome_path": None,
            "cache_dir": None,
            "seed": 0,
            "output": str(tmp_path / "m.json"),
            "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
        }
    )
    assert 1.0 < out["bits_per_base"] < 4.0 and out["windows"] == 16
    assert (tmp_path / "m.json").exists()


def test_atomic_checkpoint_write_leaves_old_file_on_failure(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        io.save_checkpoint({"step": 2, "x": [torch.zeros(1000), Unpicklable()]}, target)
    assert torch.load(target, weights_only=False) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _wait_for_step(ckpt: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early:\n{proc.stdout.read()}")
        if ckpt.exists():
            try:
                if _state(ckpt)["global_step"] >= step:
                    return
            except Exception:
                pass  # never a torn file with atomic writes, but a read can race a rename
        time.sleep(0.2)
    raise AssertionError("timed out waiting for a checkpoint")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_cli_kill_and_resume(ecoli_prefix, tmp_path, sig):
    run_dir = tmp_path / "run"
    args = [
        "mdlm_dna.pretrain",
        *TINY,
        "genome=fasta",
        f"genome.path={ecoli_prefix}",
        f"hydra.run.dir={run_dir}",
        "trainer.max_steps=400",
        "trainer.val_check_interval=400",
        "checkpoint.every_n_train_steps=5",
    ]
    proc = _cli(args)
    _wait_for_step(run_dir / "checkpoints/last.ckpt", 5, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    stopped_at = _state(run_dir / "checkpoints/last.ckpt")["global_step"]
    if sig == signal.SIGINT:
        assert proc.returncode == 130, out
        assert "Interrupted at step" in out and f"step {stopped_at};" in out
    else:
        assert proc.returncode == -signal.SIGKILL
    assert 5 <= stopped_at < 400
    args = [a.replace("max_steps=400", f"max_steps={stopped_at + 3}") for a in args]
    # a shorter max_steps changes nothing about the past: same samples, continued step counter
    proc = _cli(args)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "resuming from" in out and "bits/base" in out
    assert _state(run_dir / "checkpoints/last.ckpt")["global_step"] == stopped_at + 3
    steps = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train/loss"])["step"].tolist()
    assert steps == list(range(stopped_at + 3))


def test_cli_pretrain_then_evaluate(ecoli_prefix, tmp_path):
    run_dir = tmp_path / "run"
    p = _cli(
        [
            "mdlm_dna.pretrain",
            *TINY,
            "genome=fasta",
            f"genome.path={ecoli_prefix}",
            f"hydra.run.dir={run_dir}",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
        ]
    )
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 0, out
    assert "val NELBO" in out and "bits/base" in out and "perplexity" in out
    p = _cli(
        [
            "mdlm_dna.evaluate",
            f"ckpt={run_dir}/checkpoints/last.ckpt",
            "max_windows=8",
            "trainer.enable_progress_bar=false",
        ]
    )
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 0, out
    assert "test NELBO" in out and "bits/base" in out and "EMA weights" in out


def test_cli_errors_are_clear(tmp_path):
    p = _cli(["mdlm_dna.pretrain", "genome=fasta", f"genome.path={tmp_path}/missing.fa", f"hydra.run.dir={tmp_path}/r"])
    out, _ = p.communicate(timeout=120)
    assert p.returncode != 0 and "FASTA file not found" in out and "missing.fa" in out
    p = _cli(["mdlm_dna.evaluate", f"ckpt={tmp_path}/nothing.ckpt"])
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2 and "nothing.ckpt: no such file or folder" in out
