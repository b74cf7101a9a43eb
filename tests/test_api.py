"""The public model class: any source, sample / score / embed, export and reload, loggers, published weights."""

from __future__ import annotations

import builtins
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdlm_dna import DiffusionLM
from mdlm_dna.artifacts.checkpoints import CheckpointError, load_module, locate
from mdlm_dna.pretrain import run
from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.resources import data_dir
from tests.conftest import TINY, compose_pretrain


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def run_dir(ecoli_prefix, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run")
    cfg = compose_pretrain(*TINY, "genome=fasta", f"genome.path={ecoli_prefix}", "trainer.max_steps=6",
                           "trainer.val_check_interval=3", "model.time_conditioning=false",
                           "command='python -m mdlm_dna.pretrain trainer.max_steps=6'")
    run(cfg, d)
    return d


def logits(model: DiffusionLM, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.backbone(ids, torch.zeros(ids.shape[0]))


def test_sources_resolve_and_bad_ones_name_themselves(run_dir, tmp_path):
    assert locate(run_dir)[0] == "run" and locate(run_dir / "checkpoints" / "last.ckpt")[0] == "ckpt"
    with pytest.raises(CheckpointError, match="no such file or folder"):
        DiffusionLM.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a run folder"):
        DiffusionLM.from_pretrained(tmp_path / "empty")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt: cannot be read"):
        DiffusionLM.from_pretrained(tmp_path / "junk.ckpt")


def test_export_round_trip_is_bit_identical_for_ema_and_raw(run_dir, tmp_path):
    ids = torch.randint(0, 4, (3, 64), generator=torch.Generator().manual_seed(0))
    for use_ema in (True, False):
        run_model = DiffusionLM.from_pretrained(run_dir, use_ema=use_ema, device="cpu")
        assert run_model.loaded.ema is use_ema
        folder = run_model.save_pretrained(tmp_path / f"export-{use_ema}")
        assert {"README.md", "config.json", "model.safetensors", "modeling_mdlm_dna.py", "vocab.json"} <= {
            p.name for p in folder.iterdir()}
        back = DiffusionLM.from_pretrained(folder, device="cpu")
        assert back.loaded.kind == "export" and back.loaded.ema is use_ema
        assert torch.equal(logits(run_model, ids), logits(back, ids))
    ema, raw = (DiffusionLM.from_pretrained(tmp_path / f"export-{e}", device="cpu") for e in (True, False))
    assert not torch.equal(logits(ema, ids), logits(raw, ids))  # the two exports really hold different weights


def test_export_holds_no_optimizer_state_and_loads_weights_only(run_dir, tmp_path):
    from safetensors.torch import load_file

    folder = DiffusionLM.from_pretrained(run_dir).save_pretrained(tmp_path / "e")
    tensors = load_file(str(folder / "model.safetensors"))
    params = sum(t.numel() for t in tensors.values())
    assert params == DiffusionLM.from_pretrained(folder).num_parameters
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert (folder / "model.safetensors").stat().st_size < ckpt.stat().st_size / 2  # no Adam moments, no EMA copy
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == "mdlm-dna" and meta["weights"] == "ema"
    # the genome path is portable when it is shipped data; here a test file, kept as it is
    assert meta["run_config"]["genome"]["path"].endswith("ecoli_60k.fa")
    torch.load(ckpt, weights_only=True)  # our own checkpoints need no pickled objects


def test_model_card_names_data_steps_command_and_bits(run_dir, tmp_path):
    m = DiffusionLM.from_pretrained(run_dir)
    folder = m.save_pretrained(tmp_path / "e", metrics={"test": {"bits_per_base": 1.9876, "nelbo_nats_per_token": 1.3}})
    card = (folder / "README.md").read_text()
    assert "ecoli_60k.fa" in card and "- steps: 6" in card
    assert f"- tokens seen: {6 * 8 * 64:,}" in card
    assert "python -m mdlm_dna.pretrain trainer.max_steps=6" in card
    assert "| test | 1.3000 | 1.9876 |" in card
    assert "dit" in card and "mdlm" in card and "loglinear" in card
    # a re-export keeps the recorded training and metrics
    again = DiffusionLM.from_pretrained(folder).save_pretrained(tmp_path / "e2")
    assert "| test | 1.3000 | 1.9876 |" in (again / "README.md").read_text()
    assert "- steps: 6" in (again / "README.md").read_text()


def test_shipped_data_paths_become_portable(tmp_path):
    from mdlm_dna.artifacts.checkpoints import portable_config, resolve_config

    genome = data_dir() / "GCF_000005845.2_ASM584v2_genomic.fna.gz"
    cfg = {"genome": {"path": str(genome)}, "data": {"tokenizer": {"name": "nucleotide"}}}
    portable = portable_config(cfg)
    assert portable["genome"]["path"] == "${data_file:GCF_000005845.2_ASM584v2_genomic.fna.gz}"
    assert resolve_config(portable)["genome"]["path"] == str(genome)
    moved = {"genome": {"path": "/elsewhere/GCF_000005845.2_ASM584v2_genomic.fna.gz"}, "data": {}}
    with pytest.warns(UserWarning, match="shipped copy"):
        assert resolve_config(moved)["genome"]["path"] == str(genome)
    # a labelled model's class genomes, one of them in a sub-folder of the shipped data; an unknown one stays
    yeast = data_dir() / "genome_samples" / "ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz"
    labelled = {"genome": {"paths": {"ecoli": "/gone/GCF_000005845.2_ASM584v2_genomic.fna.gz",
                                     "yeast": f"/gone/{yeast.name}", "fly": "/gone/dm6.fa.gz"}}, "data": {}}
    with pytest.warns(UserWarning, match=r"genome\.paths\.yeast=/gone/.* using the shipped copy"):
        paths = resolve_config(labelled)["genome"]["paths"]
    assert paths == {"ecoli": str(genome), "yeast": str(yeast), "fly": "/gone/dm6.fa.gz"}


def test_sample_score_embed_shapes_and_seed_determinism(run_dir):
    m = DiffusionLM.from_pretrained(run_dir, device="cpu")
    a = m.sample(num_samples=3, length=40, steps=8, seed=1, batch_size=2, progress=False)
    b = m.sample(num_samples=3, length=40, steps=8, seed=1, batch_size=2, progress=False)
    c = m.sample(num_samples=3, length=40, steps=8, seed=2, batch_size=2, progress=False)
    assert a == b and a != c and [len(s) for s in a] == [40] * 3 and set("".join(a)) <= set("ACGTN")
    assert m.sample(num_samples=2, length=40, steps=8, prefix="ACGTACGT", progress=False)[0].startswith("ACGTACGT")
    res = m.sample_ids(num_samples=2, length=40, steps=8, progress=False)
    assert res.settings["sampler"] == "cached"  # the model ignores t: the cache is exact, auto picks it
    assert res.ids.shape == (2, 40) and res.network_calls >= 1

    seqs = ["ACGT" * 10, "GGCCA" * 30, "T" * 7]  # one longer than the 64-base window: scored in two windows
    s1 = m.score(seqs, t_samples=2, progress=False)
    s2 = m.score(seqs, t_samples=2, progress=False)
    assert list(s1.columns) == ["length", "tokens", "nelbo_nats", "nats_per_token", "bits_per_base"]
    assert s1["tokens"].tolist() == [40, 150, 7] and s1.equals(s2)
    assert np.allclose(s1["bits_per_base"], s1["nelbo_nats"] / s1["tokens"] / np.log(2))
    # the full bound: the same noise, a schedule that masks everything at t = 1 and t from ~0: never below the
    # reference estimate on average (it adds the two pieces that estimate leaves out), and the model is restored
    many = ["ACGTTGCA" * 8] * 64
    ref = m.score(many, t_samples=4, progress=False, common_noise=False)["nelbo_nats"].mean()
    full = m.score(many, t_samples=4, progress=False, common_noise=False, bound="full")["nelbo_nats"].mean()
    assert full > ref and (m.objective.t_min, m.objective.schedule.eps) == (1e-3, 1e-3)
    with pytest.raises(ValueError, match="bound='exact'"):
        m.score(seqs, bound="exact", progress=False)

    e = m.embed(seqs, pooling="mean", progress=False)
    assert e.shape == (3, m.backbone.d_model) and e.dtype == np.float32
    per_pos = m.embed(seqs, pooling=None, progress=False)
    assert [p.shape for p in per_pos] == [(40, 32), (150, 32), (7, 32)]
    assert np.allclose(per_pos[0].mean(0), e[0], atol=1e-6)
    # batch mates do not change a sequence's features (equal lengths are batched, nothing is padded)
    assert np.allclose(m.embed([seqs[0]], progress=False)[0], e[0], atol=1e-6)
    with pytest.raises(ConfigError, match="list of sequences"):
        m.score("ACGT")


def test_sample_cli_without_matplotlib_still_writes_fasta_and_report(run_dir, tmp_path, monkeypatch):
    from mdlm_dna.sample import generate

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.warns(UserWarning, match="matplotlib is not installed"):
        rep = generate({"ckpt": str(run_dir), "num_samples": 2, "length": 64, "steps": 4, "device": "cpu",
                        "output": str(tmp_path / "s.fa"), "reference_windows": 8, "progress": False})
    assert (tmp_path / "s.fa").is_file() and (tmp_path / "s.fa.json").is_file()
    saved = json.loads((tmp_path / "s.fa.json").read_text())
    assert "metrics" in saved and "plots" not in saved and rep["num_samples"] == 2


def test_partial_dicts_work_from_python(run_dir, tmp_path):
    """`generate` / `evaluate` fill in every key they are not given from their config files."""
    from mdlm_dna.evaluate import evaluate
    from mdlm_dna.sample import generate

    generate({"ckpt": str(run_dir), "num_samples": 1, "length": 32, "steps": 2, "metrics": False,
              "output": str(tmp_path / "x.fa"), "progress": False})
    out = evaluate({"ckpt": str(run_dir), "max_windows": 8, "t_samples": 1,
                    "trainer": {"enable_progress_bar": False}})
    assert 1.0 < out["bits_per_base"] < 4.0 and out["strands"] == "forward"
    both = evaluate({"ckpt": str(run_dir), "max_windows": 8, "t_samples": 1, "strands": "both",
                     "trainer": {"enable_progress_bar": False}})
    assert both["strands"] == "both" and both["bits_per_base"] != out["bits_per_base"]


def test_score_embed_export_clis(run_dir, tmp_path):
    from mdlm_dna.embed import embed
    from mdlm_dna.export import export
    from mdlm_dna.score import score

    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nACGTACGTTTGACCA\n>b\nGGGCCCAAATTTGG\n")
    table = score({"ckpt": str(run_dir), "input": str(fasta), "t_samples": 2, "progress": False})
    assert (tmp_path / "in.scores.tsv").is_file() and table["name"].tolist() == ["a", "b"]
    out = embed({"ckpt": str(run_dir), "input": str(fasta), "progress": False})
    assert np.load(out).shape == (2, 32) and Path(f"{out}.names.txt").read_text().split() == ["a", "b"]
    csv = tmp_path / "t.csv"
    csv.write_text("name,sequence\nx,ACGTAC\ny,GGTTAAC\n")
    assert score({"ckpt": str(run_dir), "input": str(csv), "t_samples": 1})["length"].tolist() == [6, 7]
    given = score({"ckpt": str(run_dir), "input": str(csv), "t_samples": 1, "context": 4, "strands": "both",
                   "bound": "full", "out": str(tmp_path / "given.tsv")})
    assert given["tokens"].tolist() == [2, 3]  # the first 4 bases of each are given, not scored
    folder = export({"ckpt": str(run_dir), "out": str(tmp_path / "ex"), "validation": False, "test": True,
                     "max_windows": 8, "t_samples": 1})
    card = (folder / "README.md").read_text()
    test_bpb = json.loads((folder / "config.json").read_text())["metrics"]["test"]["bits_per_base"]
    assert f"{test_bpb:.4f}" in card
    with pytest.raises(ValueError, match="t.csv: no 'seq' column"):
        score({"ckpt": str(run_dir), "input": str(tmp_path / "t.csv"), "column": "seq"})


def test_offline_hub_id_fails_at_once_and_push_writes_nothing(run_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(run_dir / "hf-home"))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="huggingface-cli download someone/some-model"):
        DiffusionLM.from_pretrained("someone/some-model")
    assert time.perf_counter() - t0 < 10  # no retry loop against an unreachable network
    m = DiffusionLM.from_pretrained(run_dir)
    with pytest.raises(CheckpointError, match="nothing was uploaded"):
        m.push_to_hub("someone/some-model")


def test_loggers_tensorboard_and_wandb_offline_write_files(ecoli_prefix, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_pretrain(*TINY, "genome=fasta", f"genome.path={ecoli_prefix}", "trainer.max_steps=3",
                           "trainer.val_check_interval=3", "logger=[csv,tensorboard,wandb]")
    run(cfg, tmp_path / "r")
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))
    assert list((tmp_path / "r" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert (tmp_path / "r" / "metrics.csv").is_file() and (tmp_path / "r" / "training_curve.png").is_file()
    with pytest.raises(ValueError, match="unknown logger"):
        from mdlm_dna.train.loggers import build_loggers

        build_loggers({"mlflow": {}}, tmp_path)


def test_finetune_from_a_caduceus_format_folder(tmp_path, monkeypatch):
    import copy

    import mdlm_dna.finetune as ft
    from mdlm_dna.finetune import finetune
    from tests.test_caduceus_hf import fake_checkpoint, reference_config, save
    from tests.test_finetune import FAST, SAMPLE, compose_finetune

    config = reference_config(d_model=16, n_layer=2)
    folder = save(tmp_path / "cad", config, fake_checkpoint(config, tied_copies=False), "safetensors")
    m = DiffusionLM.from_pretrained(folder, device="cpu")
    assert m.loaded.kind == "caduceus_hf" and m.config["model"]["name"] == "caduceus_ps"
    assert m.embed(["ACGTACGGT"], progress=False).shape == (1, 16)
    train, test = SAMPLE / "gue_prom_core_tata_train_200.csv", SAMPLE / "gue_prom_core_tata_dev_60.csv"
    cfg = compose_finetune(f"init={folder}", "task=csv", f"task.train_path={train}", f"task.test_path={test}",
                           *FAST, "trainer.max_epochs=1")
    saved = []  # the classifier as finetune hands it to save_classifier, before any file is written

    def keep(run_dir, model, spec):
        saved.append((copy.deepcopy(model), dict(spec)))
        return save_classifier(run_dir, model, spec)

    save_classifier = ft.save_classifier
    monkeypatch.setattr(ft, "save_classifier", keep)
    table = finetune(OmegaConf.to_container(cfg, resolve=True), tmp_path / "ft")
    assert "caduceus_ps pretrained (caduceus_hf" in table["model"].iloc[0]
    # the fine-tuned classifier (tied strands stored once) reloads without its pretrained source
    from mdlm_dna.classifier import TrainedClassifier, load_classifier

    clf = load_classifier(tmp_path / "ft")
    ids = torch.randint(0, 4, (2, 30), generator=torch.Generator().manual_seed(0))
    before = TrainedClassifier(*saved[0]).log_probs(ids)
    torch.testing.assert_close(clf.log_probs(ids), before, rtol=0, atol=1e-6)
    trained = {k: v for k, v in saved[0][0].state_dict().items()}
    assert all(torch.equal(v, trained[k]) for k, v in clf.model.state_dict().items())  # tied copies included
    assert clf.spec["model"]["name"] == "caduceus_ps" and len(clf.classes) == 2


def test_mdlm_owt_layout_loads_samples_and_scores_text(tmp_path):
    pytest.importorskip("transformers")
    from tests.test_mdlm_hf import TINY as OWT_TINY
    from tests.test_mdlm_hf import reference_weights, write_folder

    cfg = {**OWT_TINY, "hidden_dim": 16, "cond_dim": 8, "n_blocks": 1, "n_heads": 2, "vocab_size": 50258,
           "model_length": 32}
    folder = write_folder(tmp_path / "owt", cfg, reference_weights(cfg, seed=3))
    m = DiffusionLM.from_pretrained(folder, device="cpu")
    assert m.loaded.kind == "mdlm_hf" and m.is_text and m.seq_len == 32
    text = m.sample(num_samples=2, length=16, steps=4, progress=False)
    assert len(text) == 2 and all(isinstance(t, str) for t in text)
    assert m.score(["the cat sat on the mat"], t_samples=1, progress=False)["bits_per_token"].iloc[0] > 0
    from mdlm_dna.evaluate import evaluate

    corpus = tmp_path / "z.txt"
    corpus.write_text("The first paragraph has a few words.\n\nThe second one has some more words in it.\n")
    zs = evaluate({"ckpt": str(folder), "zero_shot": [str(corpus)], "t_samples": 1, "cache_dir": str(tmp_path / "c"),
                   "trainer": {"accelerator": "cpu", "enable_progress_bar": False}})
    assert zs["zero_shot"][0]["documents"] == 2 and zs["zero_shot"][0]["nelbo_nats_per_token"] > 0


def test_loading_a_model_leaves_the_global_rng_alone(run_dir):
    """Review item 2: a loaded run restored its training RNG, so finetune's seeds shared one head initialisation."""
    import pytorch_lightning as pl

    from mdlm_dna.classifier import build_classifier

    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    load_module(run_dir)
    DiffusionLM.from_pretrained(run_dir / "checkpoints" / "last.ckpt", device="cpu")
    DiffusionLM.from_pretrained("ecoli", device="cpu")
    assert torch.equal(torch.rand(4), expected)
    cfg = {"classifier": "backbone", "init": str(run_dir), "use_ema": True,
           "head": {"pooling": "mean", "dropout": 0.0, "freeze_backbone": False, "pad_mode": "pad"}}
    heads = []
    for seed in (1, 2):  # as finetune does: seed, then load the backbone, then create the head
        pl.seed_everything(seed, verbose=False)
        heads.append(build_classifier(cfg, 2, 32)[0].head.weight.detach().clone())
    assert not torch.equal(heads[0], heads[1])


def test_load_module_returns_eval_mode_and_record(run_dir):
    module, info = load_module(run_dir)
    assert not module.training and info.kind == "run" and info.global_step == 6 and info.ema
    assert os.fspath(info.path).endswith("last.ckpt")


def test_progress_bars_show_when_asked_and_stay_quiet_otherwise(run_dir, capsys):
    m = DiffusionLM.from_pretrained(run_dir, device="cpu")
    m.sample(num_samples=1, length=16, steps=3, progress=True)
    assert "sampling" in capsys.readouterr().err
    m.sample(num_samples=1, length=16, steps=3, progress=False)
    m.score(["ACGT"], t_samples=1, progress=None)  # not a terminal under pytest: quiet
    assert capsys.readouterr().err == ""


def test_evaluate_leaves_the_run_settings_alone(run_dir):
    """Review item 4: evaluate wrote its t_samples and seed into the module, so an export recorded them."""
    import copy

    m = DiffusionLM.from_pretrained(run_dir, device="cpu")
    config, seed = copy.deepcopy(m.module.config), m.module.seed
    m.evaluate(t_samples=3, max_windows=2, seed=seed + 5, trainer={"enable_progress_bar": False})
    assert m.module.config == config and m.module.seed == seed


def test_tokens_seen_count_every_device_and_accumulation(run_dir):
    """Review item 5: with global_batch_size null, tokens seen counted one device's batch only."""
    m = DiffusionLM.from_pretrained(run_dir, device="cpu")
    data = m.config["data"]
    assert m.loaded.metadata["global_batch_size"] == data["batch_size"]  # as run: one device, no accumulation
    m.loaded.metadata.pop("global_batch_size")  # a checkpoint without the record: the config tells
    m.config["data"]["global_batch_size"] = None
    m.config["trainer"].update(devices=4, num_nodes=2, accumulate_grad_batches=3)  # a DDP run's config
    rec = m.training_record()
    assert rec["global_batch_size"] == data["batch_size"] * 24
    assert rec["tokens_seen"] == 6 * data["batch_size"] * 24 * data["seq_len"]
    m.config["trainer"]["devices"] = "auto"  # how many devices there were is not recorded: no guess
    assert m.training_record()["tokens_seen"] is None
