"""Scale-out: batch arithmetic, data sharding, DDP on CPU (gloo) against one process, compile and checkpointing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from mdlm_dna.data.base import ShardedEvalSampler
from mdlm_dna.data.windows import ResumableSampler
from mdlm_dna.pretrain import build_strategy, derive_accumulation, run
from mdlm_dna.train.lit_module import DiffusionModule

from .conftest import TINY, compose_pretrain

ROOT = Path(__file__).resolve().parents[1]
# no dropout: two layouts of the same global batch must then give the same update
EXACT = [*TINY, "model.dropout=0.0", "trainer.val_check_interval=6", "trainer.max_steps=6", "optim.warmup_steps=2",
         "checkpoint.every_n_train_steps=6", "ema.decay=0.9"]


# ----- batch arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("global_batch", "per_device", "devices", "nodes", "accum"),
    [(512, 64, 8, 1, 1), (512, 64, 1, 1, 8), (512, 16, 4, 2, 4), (32, 32, 1, 1, 1), (96, 8, 3, 2, 2)],
)
def test_accumulation_is_derived_from_the_global_batch(global_batch, per_device, devices, nodes, accum):
    assert derive_accumulation(global_batch, per_device, devices, nodes) == accum


@pytest.mark.parametrize(("global_batch", "per_device", "devices", "nodes"), [(500, 64, 8, 1), (512, 48, 1, 1),
                                                                             (512, 64, 3, 1), (64, 16, 2, 3)])
def test_a_global_batch_that_does_not_divide_names_the_three_numbers(global_batch, per_device, devices, nodes):
    with pytest.raises(ValueError) as err:
        derive_accumulation(global_batch, per_device, devices, nodes)
    msg = str(err.value)
    assert f"global_batch_size={global_batch}" in msg and f"batch_size={per_device}" in msg
    assert f"devices={devices}" in msg and f"num_nodes={nodes}" in msg


def test_contradicting_accumulation_is_refused(tmp_path):
    cfg = compose_pretrain(*EXACT, "data.global_batch_size=32", "trainer.accumulate_grad_batches=3")
    with pytest.raises(ValueError, match="contradicts data.global_batch_size=32"):
        run(cfg, tmp_path / "run")


def test_fsdp_builds_a_block_wise_strategy_and_refuses_ema():
    cfg = OmegaConf.to_container(compose_pretrain("trainer=fsdp", "ema.enabled=false"), resolve=True)
    from lightning.pytorch.strategies import FSDPStrategy

    built = build_strategy(cfg["trainer"], cfg)
    assert isinstance(built["strategy"], FSDPStrategy) and "fsdp_sharding" not in built
    cfg["ema"]["enabled"] = True
    with pytest.raises(ValueError, match="ema.enabled=false"):
        build_strategy(cfg["trainer"], cfg)
    ddp = OmegaConf.to_container(compose_pretrain("trainer=ddp"), resolve=True)
    assert build_strategy(ddp["trainer"], ddp)["strategy"] == "ddp"


# ----- sharding --------------------------------------------------------------------------------


def test_ranks_read_disjoint_samples_that_together_are_the_single_process_ones():
    n, world = 96, 2
    single = list(ResumableSampler(n))
    shards = [list(ResumableSampler(n, rank=r, world_size=world)) for r in range(world)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == single
    # per optimizer step (global batch 16 = 2 ranks x 8), the ranks together take the same 16 samples as one process
    for step in range(n // 16):
        together = shards[0][step * 8 : (step + 1) * 8] + shards[1][step * 8 : (step + 1) * 8]
        assert sorted(together) == single[step * 16 : (step + 1) * 16]
    evals = [list(ShardedEvalSampler(37, r, 3)) for r in range(3)]
    assert sorted(sum(evals, [])) == list(range(37))  # every window once, none padded or repeated


# ----- one process, two layouts of the same global batch ----------------------------------------


def _state(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def _assert_same_training(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"largest parameter difference: {worst:.3e}")
    assert worst <= atol, f"largest parameter difference {worst:.2e} > {atol:.0e}"


def test_accumulation_gives_the_same_training_as_one_big_batch(tmp_path, one_thread):
    big = run(compose_pretrain(*EXACT, "data.batch_size=16"), tmp_path / "big")
    acc = run(compose_pretrain(*EXACT, "data.batch_size=8", "data.global_batch_size=16"), tmp_path / "acc")
    assert big["global_step"] == acc["global_step"] == 6
    # same samples and the same per-sample noise in every step: only the float summation order differs
    _assert_same_training(_state(Path(big["last_ckpt"])), _state(Path(acc["last_ckpt"])), atol=1e-4)
    assert acc["metrics"]["val/nelbo"] == pytest.approx(big["metrics"]["val/nelbo"], rel=1e-4)


# ----- DDP on CPU ------------------------------------------------------------------------------


def _cli(run_dir: Path, *overrides: str, base: list[str] = EXACT) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "mdlm_dna.pretrain", *base, f"hydra.run.dir={run_dir}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true", "data.batch_size=8",
       "data.global_batch_size=16"]


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    _cli(tmp_path / "one", "data.batch_size=16", "checkpoint.every_n_train_steps=3", "checkpoint.keep_all=true")
    _cli(tmp_path / "ddp", *DDP)
    one, ddp = _state(tmp_path / "one/checkpoints/last.ckpt"), _state(tmp_path / "ddp/checkpoints/last.ckpt")
    # gloo all-reduce averages the two ranks' gradients: equal to the big-batch gradient up to rounding
    _assert_same_training(one, ddp, atol=1e-4)
    # validation: each rank evaluates half of the windows; nats and token counts are summed over ranks
    val = [pd.read_csv(tmp_path / d / "metrics.csv").dropna(subset=["val/nelbo"])["val/nelbo"].iloc[-1]
           for d in ("one", "ddp")]
    assert val[1] == pytest.approx(val[0], rel=1e-4)
    # each checkpoint written once, by one rank, and no temporary file left behind
    assert sorted(p.name for p in (tmp_path / "ddp/checkpoints").iterdir()) == ["best.ckpt", "last.ckpt",
                                                                                "step0000006.ckpt"]
    # resuming the one-process run's step-3 checkpoint on two processes continues the same training
    _cli(tmp_path / "moved", *DDP, f"resume={tmp_path / 'one/checkpoints/step0000003.ckpt'}")
    moved = torch.load(tmp_path / "moved/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert moved["global_step"] == 6
    _assert_same_training(one, moved["state_dict"], atol=1e-4)


def test_ddp_resume_with_dropout_is_exact(tmp_path):
    """Each rank keeps its own dropout RNG stream, saved in the checkpoint and restored on resume."""
    dropout = [o for o in EXACT if not o.startswith("model.dropout")] + ["model.dropout=0.1"]
    _cli(tmp_path / "full", *DDP, "checkpoint.every_n_train_steps=3", "checkpoint.keep_all=true", base=dropout)
    ckpt = torch.load(tmp_path / "full/checkpoints/step0000003.ckpt", map_location="cpu", weights_only=False)
    per_rank = ckpt["rng"]["per_rank"]
    assert len(per_rank) == 2 and not torch.equal(per_rank[0]["torch"], per_rank[1]["torch"])
    _cli(tmp_path / "resumed", *DDP, f"resume={tmp_path / 'full/checkpoints/step0000003.ckpt'}", base=dropout)
    full, resumed = _state(tmp_path / "full/checkpoints/last.ckpt"), _state(tmp_path / "resumed/checkpoints/last.ckpt")
    _assert_same_training(full, resumed, atol=0.0)


# ----- compile and activation checkpointing -----------------------------------------------------


def _loss_and_grads(config: dict, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    module = DiffusionModule(config)
    module.train()
    g = torch.Generator().manual_seed(1)
    loss = module.objective.nelbo(batch, generator=g).per_token
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.objective.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("model", ["dit_tiny", "caduceus_ps"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(model, one_thread):
    size = [*TINY, "model.n_layers=2"] if model == "dit_tiny" else ["model.d_model=16", "model.n_layers=2",
                                                                          "model.markov_order=0"]
    base = OmegaConf.to_container(compose_pretrain(f"model={model}", *size), resolve=True)
    if model == "dit_tiny":
        base["model"]["dropout"] = 0.1  # recomputation must replay the same dropout masks
    batch = torch.randint(0, 4, (4, 64), generator=torch.Generator().manual_seed(0))
    loss, grads = _loss_and_grads(base, batch)
    ckpt = {**base, "model": {**base["model"], "checkpointing": True}}
    loss_c, grads_c = _loss_and_grads(ckpt, batch)
    torch.testing.assert_close(loss_c, loss, rtol=0, atol=0)
    assert grads.keys() == grads_c.keys()
    for n in grads:
        torch.testing.assert_close(grads_c[n], grads[n], rtol=1e-5, atol=1e-7, msg=n)


def test_auto_checkpointing_recomputes_large_cpu_training_batches_only():
    """model.checkpointing=auto: recompute on CPUs from AUTO_RECOMPUTE_TOKENS tokens per batch (a 256 x 101
    fine-tuning batch), not for the 32 x 128 pretraining default, never in eval or without grad; a value
    other than true / false / auto is an error naming the key."""
    from mdlm_dna.models import AUTO_RECOMPUTE_TOKENS, build_backbone, recompute_blocks

    net = torch.nn.Linear(1, 1)
    big, small = torch.zeros(256, 101, dtype=torch.long), torch.zeros(32, 128, dtype=torch.long)
    assert 32 * 128 < AUTO_RECOMPUTE_TOKENS <= 256 * 101
    assert recompute_blocks("auto", net, big) and not recompute_blocks("auto", net, small)
    assert recompute_blocks(True, net, small) and not recompute_blocks(False, net, big)
    with torch.no_grad():
        assert not recompute_blocks("auto", net, big)
    assert not recompute_blocks(True, net.eval(), big)
    with pytest.raises(ValueError, match="model.checkpointing"):
        build_backbone({"name": "caduceus_ps", "d_model": 8, "n_layers": 1, "checkpointing": "yes"}, 12)


def test_compiled_backbone_gives_the_same_loss_and_gradients(tmp_path, one_thread):
    pytest.importorskip("torch._inductor")
    if sys.platform != "linux":
        pytest.skip("torch.compile on CPU is exercised on Linux")
    base = OmegaConf.to_container(compose_pretrain(*TINY, "model.n_layers=1"), resolve=True)
    batch = torch.randint(0, 4, (4, 64), generator=torch.Generator().manual_seed(0))
    loss, grads = _loss_and_grads(base, batch)

    torch.manual_seed(0)
    module = DiffusionModule({**base, "model": {**base["model"], "compile": True}})
    module.setup("fit")  # compiles the backbone in place, as training does
    assert module._compiled
    module.train()
    loss_c = module.objective.nelbo(batch, generator=torch.Generator().manual_seed(1)).per_token
    loss_c.backward()
    torch.testing.assert_close(loss_c.detach(), loss, rtol=1e-5, atol=1e-6)
    for n, p in module.objective.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    # the state dict keeps eager names, so checkpoints and EMA are unaffected by compilation
    assert all("_orig_mod" not in k for k in module.state_dict())


def test_throughput_benchmark_runs_at_tiny_size(one_thread):
    sys.path.insert(0, str(ROOT / "benchmarks"))  # rows run in spawned processes, which import the script by name
    try:
        import train_throughput as bench

        df = bench.main(["--tiny", "--device", "cpu", "--models", "dit_tiny", "--lengths", "64", "--modes", "eager",
                         "--steps", "1", "--warmup", "1"])
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    row = df.iloc[0]
    assert "error" not in df.columns or pd.isna(row.get("error")), row.get("error")
    assert row["tokens/s"] > 0 and row["MFU %"] > 0 and row["batch"] == 512 // 64
