"""The shipped E. coli model (data/models/ecoli): loads offline by name, samples, reproduces its recorded figure."""

from __future__ import annotations

import json

import pytest

from mdlm_dna import DiffusionLM
from mdlm_dna.checkpoints import shipped_models
from mdlm_dna.resources import data_dir


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def ecoli() -> DiffusionLM:
    return DiffusionLM.from_pretrained("ecoli", device="cpu")


def test_shipped_model_loads_offline_by_name_and_samples(ecoli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "ecoli" in shipped_models() and ecoli.loaded.kind == "shipped"
    folder = data_dir() / "models" / "ecoli"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 10e6  # a few MB, safetensors
    seqs = ecoli.sample(num_samples=2, length=ecoli.seq_len + 40, steps=8, seed=0, progress=False)
    assert [len(s) for s in seqs] == [ecoli.seq_len + 40] * 2 and set("".join(seqs)) <= set("ACGT")
    card = (folder / "README.md").read_text()
    assert "python -m mdlm_dna.pretrain" in card and "| test |" in card


def test_shipped_model_reproduces_its_recorded_test_bits_per_base(ecoli):
    """The export recorded test bits/base over all 1,813 test windows; a fresh estimate over an evenly spaced half
    of them, one noise draw each, must agree within its Monte-Carlo error (about 0.01 bits/base)."""
    recorded = json.loads((data_dir() / "models" / "ecoli" / "config.json").read_text())["metrics"]["test"]
    assert recorded["windows"] == 1813 and recorded["t_samples"] >= 4
    now = ecoli.evaluate(split="test", t_samples=1, max_windows=900, trainer={"enable_progress_bar": False})
    assert abs(now["bits_per_base"] - recorded["bits_per_base"]) < 0.035  # ~2.7 standard errors; the draws are seeded
