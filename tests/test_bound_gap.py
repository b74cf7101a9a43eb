"""benchmarks/bound_gap.py: both estimates on the same windows, and a chain model's network silenced and restored."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mdlm_dna import DiffusionLM
from mdlm_dna.pretrain import run

from .conftest import TINY, compose_pretrain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bound_gap  # noqa: E402


@pytest.fixture(scope="module")
def chain_run(ecoli_prefix, tmp_path_factory) -> Path:
    cfg = compose_pretrain(*TINY, "genome=fasta", f"genome.path={ecoli_prefix}", "trainer.max_steps=2",
                           "trainer.val_check_interval=2", "eval.t_samples=1", "model.markov_order=2")
    return Path(run(cfg, tmp_path_factory.mktemp("chain"))["last_ckpt"])


def test_scores_a_chain_model_both_ways_and_what_its_network_adds(chain_run):
    r = bound_gap.score_both(str(chain_run), t_samples=2, max_windows=3)
    assert r["windows"] == 3 and r["length"] == 64
    assert {"reference", "full", "gap", "net"} <= set(r)
    assert r["full"] == pytest.approx(r["reference"] + r["gap"], abs=1e-9)  # paired: the same windows
    assert r["net"] != 0.0  # an untrained network moves the chain's predictions


def test_silencing_the_network_leaves_the_chain_and_is_undone(chain_run):
    model = DiffusionLM.from_pretrained(str(chain_run), device="cpu")
    seqs = bound_gap.test_windows(model.seq_len, 2)
    before = model.score(seqs, t_samples=2, progress=False)["bits_per_base"].to_numpy()
    with bound_gap.silent_network(model):
        alone = model.score(seqs, t_samples=2, progress=False)["bits_per_base"].to_numpy()
        ids = torch.tensor([model.tokenizer.encode(seqs[0])])
        with torch.no_grad():
            logits = model.objective.backbone(ids, torch.zeros(1))  # the chain's log posterior, nothing added
        torch.testing.assert_close(logits[..., :4], model.objective.backbone.prior(ids))
    after = model.score(seqs, t_samples=2, progress=False)["bits_per_base"].to_numpy()
    assert np.array_equal(before, after) and not np.allclose(before, alone)
