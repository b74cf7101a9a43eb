"""Fine-tuning: padding-aware pooling, RC conjoining, freezing, the CNN baseline, and real tiny fine-tunes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from Bio.Seq import Seq
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from mdlm_dna.classifier import build_classifier
from mdlm_dna.data.classification import collate
from mdlm_dna.data.genomic_benchmarks import GB_TASKS, DatasetError, read_table
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.finetune import finetune, task_configs
from mdlm_dna.models import build_backbone
from mdlm_dna.models.cnn_baseline import build_cnn
from mdlm_dna.models.heads import AttentionPool, Conjoin, SequenceClassifier, pool, reverse_complement_padded
from mdlm_dna.train.lit_module import DiffusionModule
from mdlm_dna.utils.resources import config_dir, data_dir
from tests.conftest import TINY, compose_pretrain

TOK = NucleotideTokenizer()
COMP = torch.tensor(TOK.complement_ids)
SAMPLE = data_dir() / "genomic_benchmarks_sample"
NONTATA = SAMPLE / "human_nontata_promoters_1200.tsv.gz"
TINY_DIT = {"name": "dit", "d_model": 32, "n_layers": 2, "n_heads": 2, "cond_dim": 32}
FAST = [
    "data.batch_size=32",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=5",
]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def compose_finetune(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="finetune", overrides=list(overrides))


def _batch(seqs: list[str]) -> dict[str, torch.Tensor]:
    return collate([(torch.tensor(TOK.encode(s)), 0) for s in seqs])


def _tiny_dit():
    """A tiny DiT whose blocks do something: adaLN-Zero makes a freshly built DiT a per-token map."""
    torch.manual_seed(0)
    dit = build_backbone(TINY_DIT, TOK.vocab_size, TOK.complement_ids)
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return dit


# ---------------------------------------------------------------------------------------------- pooling


def test_pooling_reads_real_positions_only():
    torch.manual_seed(0)
    lengths = torch.tensor([5, 1, 3])
    h = torch.randn(3, 5, 4)
    mean, first, last = (pool(h, lengths, m) for m in ("mean", "first", "last"))
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(mean[b], torch.stack([h[b, i] for i in range(n)]).sum(0) / n)
        assert torch.equal(first[b], h[b, 0])
        assert torch.equal(last[b], h[b, n - 1])
    assert not torch.allclose(mean[1], h[1].mean(0))  # averaging over padding would give this
    h_junk = h.clone()
    h_junk[1, 1:] = 1e6  # whatever the padding positions hold does not matter
    assert torch.equal(pool(h_junk, lengths, "mean")[1], mean[1])
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(h, lengths, "max")


def _pooled_train_accuracy(pooler, x: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Train accuracy of ``pooler`` (a module, or a plain function) and a linear head fitted together on x [B, L, 4]."""
    torch.manual_seed(1)
    head = nn.Linear(4, 2)
    full = torch.full((len(x),), x.shape[1])
    params = [*head.parameters(), *(pooler.parameters() if isinstance(pooler, nn.Module) else [])]
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(pooler(x, full)), labels).backward()
        opt.step()
    return float((head(pooler(x, full)).argmax(1) == labels).float().mean())


def test_attention_pooling_starts_as_mean_and_learns_where_to_look():
    """Untrained it is mean pooling; trained on a task whose signal sits at one position among noise it puts its
    weight there; padding gets no weight whatever it holds."""
    torch.manual_seed(0)
    lengths = torch.tensor([5, 1, 3])
    h = torch.randn(3, 5, 4)
    attn = AttentionPool(4)
    torch.testing.assert_close(attn(h, lengths), pool(h, lengths, "mean"))
    h_junk = h.clone()
    h_junk[1, 1:] = 1e6
    torch.testing.assert_close(attn(h_junk, lengths)[1], h[1, 0])
    # one position of twelve carries the label (channel 0 flags it, channel 1 holds the label's sign), the rest is
    # noise: averaged, the signal drowns; the attention pool learns to read it
    x = torch.randn(256, 12, 4)
    labels = torch.randint(0, 2, (256,))
    x[:, 5, 0] = 4.0
    x[:, 5, 1] = 2.0 * (2 * labels - 1)
    assert _pooled_train_accuracy(AttentionPool(4), x, labels, steps=150) > 0.97
    assert _pooled_train_accuracy(lambda h, n: pool(h, n, "mean"), x, labels, steps=150) < 0.9


def test_position_scores_find_a_signal_at_a_fixed_offset_that_features_cannot_flag():
    """A label carried at one fixed position whose features look like every other position's (no flag channel;
    a rotary backbone's states do not say where they are): the feature score cannot find it, the position score
    can. Untrained, the position-scored pool is still mean pooling; a batch longer than it was built for is
    refused."""
    torch.manual_seed(0)
    x = torch.randn(256, 12, 4)
    labels = torch.randint(0, 2, (256,))
    x[:, 5, 1] = 2.0 * (2 * labels - 1)
    lengths = torch.tensor([12, 7])
    torch.testing.assert_close(AttentionPool(4, max_positions=12)(x[:2], lengths), pool(x[:2], lengths, "mean"))
    positional = AttentionPool(4, max_positions=12)
    assert _pooled_train_accuracy(positional, x, labels, steps=200) > 0.97
    assert int(positional.position_score.argmax()) == 5
    assert _pooled_train_accuracy(AttentionPool(4), x, labels, steps=200) < 0.9
    with pytest.raises(ValueError, match="at most 12"):
        positional(torch.randn(1, 13, 4), torch.tensor([13]))
    with pytest.raises(ValueError, match="pooling='attention'"):
        SequenceClassifier(_tiny_dit(), num_classes=2, pooling="mean", position_bias=True, max_length=12)


@pytest.mark.parametrize("pooling", ["mean", "first", "last", "attention"])
def test_n_only_and_padded_sequences_give_finite_loss_and_gradients(pooling):
    model = SequenceClassifier(_tiny_dit(), num_classes=2, pooling=pooling)
    batch = _batch(["N" * 40, "ACGTTGCA" * 5, "NNA"])
    logits = model(batch["input_ids"], batch["lengths"])
    loss = F.cross_entropy(logits, torch.tensor([0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_predictions_do_not_depend_on_the_batch_where_the_backbone_can_mask_padding():
    short, long = "ACGTTGCAAC" * 3, "GATTACA" * 12
    torch.manual_seed(0)
    bimamba = build_backbone({"name": "bimamba", "d_model": 16, "n_layers": 2}, TOK.vocab_size, TOK.complement_ids)
    # the DiT gets the padding mask (no token attends to [PAD]); BiMamba scans through [PAD] unless grouped
    cases = (("dit", _tiny_dit(), "pad", True), ("dit", _tiny_dit(), "group", True),
             ("bimamba", bimamba, "pad", False), ("bimamba", bimamba, "group", True))
    for name, backbone, mode, independent in cases:
        model = SequenceClassifier(backbone, 2, pad_mode=mode).eval()
        with torch.no_grad():
            alone = model(**_ids(_batch([short])))
            mixed = model(**_ids(_batch([long, short])))
        assert torch.allclose(alone[0], mixed[1], atol=1e-5) == independent, (name, mode)


def _ids(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": batch["input_ids"], "lengths": batch["lengths"]}


# ---------------------------------------------------------------------------------------------- conjoin


def test_reverse_complement_padded_matches_strings_and_is_an_involution():
    seqs = ["ACGTTN", "GGA", "T"]
    batch = _batch(seqs)
    rc = reverse_complement_padded(batch["input_ids"], batch["lengths"], COMP, TOK.pad_id)
    assert rc.tolist() == _batch([str(Seq(s).reverse_complement()) for s in seqs])["input_ids"].tolist()
    assert torch.equal(reverse_complement_padded(rc, batch["lengths"], COMP, TOK.pad_id), batch["input_ids"])


def _inner(backbone: str) -> torch.nn.Module:
    if backbone == "cnn":
        return build_cnn(3, 64)
    if backbone == "bimamba":
        torch.manual_seed(0)
        cfg = {"name": "bimamba", "d_model": 16, "n_layers": 1, "scan_backend": "torch"}
        return SequenceClassifier(build_backbone(cfg, TOK.vocab_size, TOK.complement_ids), 3, pooling="last")
    return SequenceClassifier(_tiny_dit(), 3, pooling="mean")


@pytest.mark.parametrize("backbone", ["dit", "bimamba", "cnn"])
def test_conjoin_is_invariant_to_reverse_complementing_the_input(backbone):
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), n)) for n in (60, 37, 50)]
    rcs = [str(Seq(s).reverse_complement()) for s in seqs]
    torch.manual_seed(0)
    inner = _inner(backbone)
    plain = inner.eval()
    conj = Conjoin(inner, TOK.complement_ids, TOK.pad_id, test=True).eval()
    fwd, rev = _batch(seqs), _batch(rcs)
    with torch.no_grad():
        a, b = conj(fwd["input_ids"], fwd["lengths"]), conj(rev["input_ids"], rev["lengths"])
        p, q = plain(fwd["input_ids"], fwd["lengths"]), plain(rev["input_ids"], rev["lengths"])
    assert torch.allclose(a, b, atol=1e-5)
    assert (p - q).abs().max() > 1e-3  # the unconjoined model is not RC-invariant: the check can fail
    assert torch.allclose(a, 0.5 * (p + q), atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_both_strands_features_swap_halves_when_the_input_is_reverse_complemented(pooling):
    """head.strands=both on a causal DiT: each position holds the forward read's state and the reverse read's
    (realigned), so reverse-complementing the input swaps the two halves of the pooled features exactly (mean
    pooling; the attention pool's score also reads both halves, so there only the forward half is checked
    against a plain forward read). Unequal lengths: right padding, masked."""
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGT"), n)) for n in (60, 37, 50)]
    rcs = [str(Seq(s).reverse_complement()) for s in seqs]
    torch.manual_seed(0)
    cfg = {**TINY_DIT, "causal": True}
    dit = build_backbone(cfg, TOK.vocab_size, TOK.complement_ids)
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.1 * torch.randn_like(p))
    both = SequenceClassifier(dit, 2, pooling=pooling, strands="both", complement_ids=TOK.complement_ids,
                              pad_id=TOK.pad_id).eval()
    fwd, rev = _batch(seqs), _batch(rcs)
    with torch.no_grad():
        a, b = both.features(fwd["input_ids"], fwd["lengths"]), both.features(rev["input_ids"], rev["lengths"])
        plain = SequenceClassifier(dit, 2, pooling="mean").eval().features(fwd["input_ids"], fwd["lengths"])
    d = int(dit.d_model)
    assert a.shape == (3, 2 * d)
    if pooling == "mean":
        assert torch.allclose(a[:, :d], plain, atol=1e-5)  # the forward half is the plain forward read
        assert torch.allclose(a[:, :d], b[:, d:], atol=1e-5) and torch.allclose(a[:, d:], b[:, :d], atol=1e-5)
        assert (a[:, :d] - a[:, d:]).abs().max() > 1e-3  # a causal read differs by strand: the check can fail
    else:  # the untrained attention pool is mean pooling
        assert torch.allclose(a[:, :d], plain, atol=1e-5)
    with torch.no_grad():  # position by position: the reverse half at l is the reverse read's state at length-1-l
        states = both._read(fwd["input_ids"], fwd["lengths"])
        for row, (n, seq_rc) in enumerate(zip(fwd["lengths"].tolist(), rcs)):
            alone = dit.hidden_states(torch.tensor([TOK.encode(seq_rc)]))[0]
            assert torch.allclose(states[row, :n, d:], alone.flip(0), atol=1e-5)
    with pytest.raises(ValueError, match="complement_ids"):
        SequenceClassifier(dit, 2, strands="both")


# ---------------------------------------------------------------------------------------------- freezing, CNN


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_frozen_backbone_stays_fixed_while_the_head_trains(pooling):
    model = SequenceClassifier(_tiny_dit(), 2, freeze_backbone=True, dropout=0.1, pooling=pooling)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    assert not model.backbone.training and model.dropout.training
    batch = _batch(["ACGT" * 10, "GGGCCC" * 5])
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(batch["input_ids"], batch["lengths"]), torch.tensor([0, 1])).backward()
        opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not torch.equal(before["head.weight"], after["head.weight"])
    if pooling == "attention":  # the pool is part of the head: it trains on a frozen backbone
        assert not torch.equal(before["attention.score.weight"], after["attention.score.weight"])


def test_cnn_baseline_shapes_follow_the_paper():
    cnn = build_cnn(2, 251)
    # three blocks of conv(k=8) + maxpool(2): 251 -> 122 -> 57 -> 25 positions, 4 channels
    assert cnn.dense[1].in_features == 4 * 25 and cnn.dense[1].out_features == 512
    assert cnn.embeddings.embedding_dim == 100
    for L in (30, 251, 400):  # shorter inputs are padded, longer ones cut to input_len
        assert cnn(torch.randint(0, 4, (3, L))).shape == (3, 2)
    with pytest.raises(ValueError, match="too short"):
        build_cnn(2, 20)


# ---------------------------------------------------------------------------------------------- checkpoints


def test_classifier_takes_backbone_config_and_weights_from_a_checkpoint(tmp_path):
    config = OmegaConf.to_container(compose_pretrain(*TINY), resolve=True)
    config.pop("hydra", None)
    torch.manual_seed(1)
    module = DiffusionModule(config)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ckpt = tmp_path / "pre.ckpt"
    torch.save({"hyper_parameters": {"config": config}, "state_dict": module.state_dict()}, ckpt)
    cfg = OmegaConf.to_container(compose_finetune(f"ckpt={ckpt}", "model=caduceus_ps"), resolve=True)
    model, desc, _ = build_classifier(cfg, num_classes=2, max_length=100)
    assert desc.startswith("dit pretrained")
    assert model.backbone.d_model == config["model"]["d_model"] == 32
    ref = module.objective.backbone.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.backbone.state_dict().items())
    scratch, desc, _ = build_classifier({**cfg, "ckpt": None}, num_classes=2, max_length=100)
    assert desc == "caduceus_ps from scratch" and scratch.backbone.d_model == 64


# ---------------------------------------------------------------------------------------------- real fine-tunes


def _independent_majority(test_frac: float = 0.25) -> tuple[float, int]:
    labels = read_table(NONTATA)["label"].astype(int).to_numpy()
    perm = np.random.default_rng(0).permutation(len(labels))
    held = labels[perm[: int(round(test_frac * len(labels)))]]
    return float(np.bincount(held).max() / len(held)), len(held)


def test_tiny_finetune_from_a_checkpoint_beats_the_majority_class(tmp_path, capsys):
    config = OmegaConf.to_container(compose_pretrain(*TINY), resolve=True)
    config.pop("hydra", None)
    torch.manual_seed(0)
    ckpt = tmp_path / "pre.ckpt"
    torch.save({"hyper_parameters": {"config": config}, "state_dict": DiffusionModule(config).state_dict()}, ckpt)
    cfg = compose_finetune(
        "task=csv", f"task.train_path={NONTATA}", "task.test_fraction=0.25", "task.name=nontata_sample",
        f"ckpt={ckpt}", *FAST,
    )  # fmt: skip
    table = finetune(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    majority, n = _independent_majority()
    assert metrics["majority_rate"] == pytest.approx(majority) and metrics["test"] == n
    # beat the majority-class rate by more than two binomial standard errors on the held-out quarter
    assert metrics["accuracy"] > majority + 2 * math.sqrt(majority * (1 - majority) / n)
    assert metrics["mcc"] > 0.2
    assert f"test accuracy {metrics['accuracy']:.4f} | MCC {metrics['mcc']:.4f} | F1 {metrics['f1']:.4f}" in out
    assert json.loads((tmp_path / "run" / "label_mapping.json").read_text()) == {"0": 0, "1": 1}
    assert table.loc[0, "accuracy_mean"] == pytest.approx(metrics["accuracy"])


def test_cnn_baseline_over_two_seeds_writes_the_results_table(tmp_path):
    cfg = compose_finetune(
        "task=csv", f"task.train_path={NONTATA}", "task.test_fraction=0.25", "classifier=cnn", "seeds=2", *FAST
    )
    finetune(cfg, tmp_path)
    per_seed = [json.loads((tmp_path / "csv" / f"seed-{s}" / "metrics.json").read_text()) for s in (1, 2)]
    assert per_seed[0]["val"] == per_seed[1]["val"] == 90
    majority, _ = _independent_majority()
    assert all(m["accuracy"] > majority for m in per_seed)
    table = pd.read_csv(tmp_path / "results.csv")
    row = table.iloc[0]
    assert (row.task, row.model, row.classes, row.train, row.val, row.test, row.seeds) == (
        "csv", "cnn_baseline", 2, 810, 90, 300, 2,
    )  # fmt: skip
    for m in ("accuracy", "mcc", "f1"):
        vals = [s[m] for s in per_seed]
        assert row[f"{m}_mean"] == pytest.approx(np.mean(vals))
        assert row[f"{m}_std"] == pytest.approx(np.std(vals, ddof=1))
    md = (tmp_path / "results.md").read_text()
    assert f"{row.accuracy_mean:.4f} ± {row.accuracy_std:.4f}" in md


def test_task_all_expands_to_the_nine_tasks_and_fails_clearly_offline(tmp_path, monkeypatch):
    cfgs = task_configs({"name": "all", "tasks": None, "data_dir": str(tmp_path), "download": False})
    assert [c["name"] for c in cfgs] == list(GB_TASKS)
    assert all(c["data_dir"] == str(tmp_path) and c["download"] is False for c in cfgs)
    monkeypatch.setitem(sys.modules, "genomic_benchmarks", None)
    monkeypatch.setitem(sys.modules, "genomic_benchmarks.loc2seq", None)
    with pytest.raises(DatasetError, match="no data found for GenomicBenchmarks task 'demo_coding_vs_intergenomic"):
        finetune(compose_finetune("task=all", f"task.data_dir={tmp_path}", "seeds=5"), tmp_path / "out")


def test_cli_prints_the_metrics_line(tmp_path):
    cmd = [
        sys.executable, "-m", "mdlm_dna.finetune", "task=csv",
        f"task.train_path={SAMPLE / 'gue_prom_core_tata_train_200.csv'}",
        f"task.test_path={SAMPLE / 'gue_prom_core_tata_dev_60.csv'}", "classifier=cnn", "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if "test accuracy" in ln)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert f"test accuracy {saved['accuracy']:.4f}" in line and "MCC" in line and "F1" in line
    assert saved["train"] == 180 and saved["val"] == 20 and saved["test"] == 60


def test_caduceus_ps_classifier_is_rc_invariant_without_conjoin():
    torch.manual_seed(0)
    cfg = {"name": "caduceus_ps", "d_model": 8, "n_layers": 2, "scan_backend": "torch"}
    model = SequenceClassifier(build_backbone(cfg, TOK.vocab_size, TOK.complement_ids), 2, pooling="mean").eval()
    seqs = ["ACGGTCAATTGC" * 3, "TTGACCAGTAGG" * 3]
    fwd, rev = _batch(seqs), _batch([str(Seq(s).reverse_complement()) for s in seqs])
    with torch.no_grad():
        a, b = model(**_ids(fwd)), model(**_ids(rev))
    assert torch.allclose(a, b, atol=1e-5)
    assert (a[0] - a[1]).abs().max() > 1e-4  # and it does tell sequences apart


@pytest.mark.parametrize("causal", [False, True])
def test_dit_attention_mask_makes_right_padding_invisible(causal):
    torch.manual_seed(0)
    dit = build_backbone({**TINY_DIT, "causal": causal}, TOK.vocab_size, TOK.complement_ids)
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.1 * torch.randn_like(p))
    dit.eval()
    ids = torch.tensor([TOK.encode("ACGTTGCAACGGA")])
    padded = torch.cat([ids, torch.full((1, 7), TOK.pad_id)], dim=1)
    mask = torch.arange(padded.shape[1])[None] < ids.shape[1]
    with torch.no_grad():
        alone = dit.hidden_states(ids)
        masked = dit.hidden_states(padded, attention_mask=mask)[:, : ids.shape[1]]
        unmasked = dit.hidden_states(padded)[:, : ids.shape[1]]
    torch.testing.assert_close(masked, alone, rtol=1e-5, atol=1e-5)
    # without the mask the bidirectional DiT sees the padding (the causal one cannot: padding comes after)
    assert torch.allclose(unmasked, alone, atol=1e-5) == causal


def test_fine_tuning_ema_follows_the_warm_up_recursion_and_is_what_validation_reads():
    """optim.ema_decay: the averaged weights equal an EMA computed here from the weights after every optimizer step
    (decay min(d, (1 + n) / (10 + n))); validation reads them, not the training weights."""
    import lightning.pytorch as pl

    from mdlm_dna.train.classifier import ClassifierModule

    torch.manual_seed(0)
    model = SequenceClassifier(_tiny_dit(), num_classes=2, pooling="mean")
    module = ClassifierModule(model, 2, {"lr": 1e-2, "weight_decay": 0.1, "ema_decay": 0.6})
    batch = _batch(["ACGTACGTAC", "TTGCA", "GGGCCCAT", "ATATATAT"])
    batch["labels"] = torch.tensor([0, 1, 1, 0])
    loader = torch.utils.data.DataLoader([batch] * 5, batch_size=None)  # each item one whole batch
    seen = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            seen.append({n: p.detach().clone() for n, p in pl_module.model.named_parameters()})

    trainer = pl.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()])
    trainer.fit(module, train_dataloaders=loader)
    assert len(seen) == 5
    expected = dict(seen[0])  # the first update copies the weights
    for n_done, weights in enumerate(seen[1:], start=1):
        d = min(0.6, (1 + n_done) / (10 + n_done))
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in expected}
    averaged = dict(module.ema.module.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value)
    assert not torch.equal(averaged["head.weight"], seen[-1]["head.weight"])
    module.eval()
    with torch.no_grad():
        logged = module.eval_model(batch["input_ids"], batch["lengths"])
        torch.testing.assert_close(logged, module.ema.module(batch["input_ids"], batch["lengths"]))
        assert not torch.allclose(logged, module.model(batch["input_ids"], batch["lengths"]))
    with pytest.raises(ValueError, match="ema_decay"):
        ClassifierModule(model, 2, {"lr": 1e-3, "ema_decay": 1.0})
