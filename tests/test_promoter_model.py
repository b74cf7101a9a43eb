"""The shipped human-promoter model (data/models/gue_promoters): an AR DiT pretrained on the GUE promoter tasks'
training sequences (every dev / test sequence of the four tasks kept out), shipped as ``finetune init=``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mdlm_dna import DiffusionLM
from mdlm_dna.artifacts.checkpoints import shipped_models
from mdlm_dna.artifacts.init_from import causal_to_centred, conv_keys
from mdlm_dna.classifier import build_classifier
from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.resources import data_dir

NAME = "gue_promoters"
DEV = data_dir() / "genomic_benchmarks_sample" / "gue_prom_core_tata_dev_60.csv"  # GUE dev rows: never pretrained on


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def promoters() -> DiffusionLM:
    return DiffusionLM.from_pretrained(NAME, device="cpu")


def test_loads_offline_by_name_as_a_small_causal_model_with_its_card(promoters, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert NAME in shipped_models() and promoters.loaded.kind == "shipped"
    folder = shipped_models()[NAME]
    assert sum(f.stat().st_size for f in folder.iterdir()) < 6e6
    config = json.loads((folder / "config.json").read_text())["run_config"]
    assert config["objective"]["name"] == "ar" and config["model"]["causal"] is True
    assert promoters.objective_name == "ar"
    card = (folder / "README.md").read_text()
    assert "benchmarks/gue_corpus.py" in card and "finetune" in card and "init=gue_promoters" in card


def test_it_has_learned_human_promoters_better_than_the_ecoli_model(promoters):
    """Exact AR bits/base on 60 GUE prom_core_tata dev sequences (held out of its corpus) against the E. coli
    model's NELBO bound on the same sequences (8 noise draws each) and against 2 bits (no knowledge): paired over
    sequences, each gap must exceed 3 standard errors."""
    seqs = pd.read_csv(DEV)["sequence"].tolist()
    ours = promoters.score(seqs, seed=0)["bits_per_base"].to_numpy()
    ecoli = DiffusionLM.from_pretrained("ecoli", device="cpu")
    theirs = np.mean([ecoli.score(seqs, seed=s)["bits_per_base"].to_numpy() for s in range(8)], axis=0)
    for reference in (theirs, np.full_like(ours, 2.0)):
        gap = reference - ours
        assert gap.mean() > 3 * gap.std(ddof=1) / np.sqrt(len(gap)), (gap.mean(), gap.std(ddof=1))


def test_finetune_init_by_name_starts_from_its_weights(promoters):
    cfg = {"classifier": "backbone", "init": NAME, "use_ema": True,
           "head": {"pooling": "mean", "dropout": 0.0, "freeze_backbone": False, "pad_mode": "pad"}}
    model, desc, spec = build_classifier(cfg, num_classes=2, max_length=70)
    assert "pretrained (shipped" in desc and spec["model"]["causal"] is True
    shipped = promoters.module.objective.backbone.state_dict()
    loaded = model.backbone.state_dict()
    assert shipped.keys() == loaded.keys()
    assert all(torch.equal(shipped[k], loaded[k]) for k in shipped)


def test_bidirectional_finetune_drops_the_causal_mask_and_keeps_the_weights(promoters):
    """bidirectional=true: the AR backbone's weights, its convolution re-centred, and positions that now read their
    right-hand context (a change at the last base moves the first position's state; in the causal source it
    cannot). A non-causal source is refused by name."""
    cfg = {"classifier": "backbone", "init": NAME, "use_ema": True, "bidirectional": True,
           "head": {"pooling": "mean", "dropout": 0.0, "freeze_backbone": False, "pad_mode": "pad"}}
    model, desc, spec = build_classifier(cfg, num_classes=2, max_length=70)
    assert spec["model"]["causal"] is False and "causal mask dropped" in desc
    source = promoters.module.objective.backbone
    conv = conv_keys(model.backbone)
    assert conv, "the shipped model has a local convolution to re-centre"
    mapped = model.backbone.state_dict()
    for key, value in source.state_dict().items():
        want = causal_to_centred(value) if key in conv else value
        assert torch.equal(mapped[key], want), key

    ids = torch.as_tensor(promoters.module.tokenizer.encode("ACGT" * 10))[None]
    changed = ids.clone()
    changed[0, -1] = ids[0, 0]  # the last base (T) becomes an A
    with torch.no_grad():
        for net, reads_right in ((source.eval(), False), (model.backbone.eval(), True)):
            first = [net.hidden_states(t)[0, 0] for t in (ids, changed)]
            assert (not torch.allclose(first[0], first[1], atol=1e-6)) is reads_right

    with pytest.raises(ConfigError, match="not causal"):
        build_classifier({**cfg, "init": "ecoli"}, num_classes=2, max_length=70)
