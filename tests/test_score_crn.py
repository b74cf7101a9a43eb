"""Issue 30 item 3: ``score`` under common random numbers (noise keyed by seed, window place and draw)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdlm_dna.api import DiffusionLM
from mdlm_dna.train.lit_module import DiffusionModule
from tests.conftest import TINY, compose_pretrain


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny(*overrides: str) -> DiffusionLM:
    torch.manual_seed(0)
    cfg = OmegaConf.to_container(compose_pretrain(*TINY, "data.seq_len=32", *overrides), resolve=True)
    return DiffusionLM(DiffusionModule(cfg), device="cpu")


def dna(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


@pytest.mark.parametrize("objective", ["mdlm", "sedd"])
def test_a_sequence_scores_the_same_wherever_it_stands_and_whatever_the_batch(objective):
    m = tiny(f"objective={objective}")
    a, b, c = dna(40, 1), dna(40, 2), dna(25, 3)
    alone = m.score([a], t_samples=4)["nelbo_nats"].iloc[0]
    second = m.score([b, a], t_samples=4)["nelbo_nats"].iloc[1]
    small_batches = m.score([c, b, a], t_samples=4, batch_size=1)["nelbo_nats"].iloc[2]
    assert alone == pytest.approx(second, rel=1e-6) and alone == pytest.approx(small_batches, rel=1e-6)
    assert m.score([a], t_samples=4, seed=1)["nelbo_nats"].iloc[0] != pytest.approx(alone, rel=1e-6)


def test_sequences_of_equal_length_get_the_same_noise_with_low_discrepancy_times():
    m = tiny()
    seen = []
    nelbo = m.objective.nelbo
    m.objective.nelbo = lambda x0, **k: seen.append(k["generator"]) or nelbo(x0, **k)
    m.score([dna(40, 1), dna(40, 2)], t_samples=4)  # windows 32 + 8 each: two batches of 2 rows, 4 draws
    full = [g for g in seen if g.mask_uniform.shape[1] == 32]
    assert len(full) == 4
    for g in full:
        assert torch.equal(g.mask_uniform[0], g.mask_uniform[1]) and torch.equal(g.t_uniform[0], g.t_uniform[1])
    times = np.sort([float(g.t_uniform[0]) for g in full])
    np.testing.assert_allclose(np.diff(times), 0.25, atol=1e-6)  # one time per quarter of [0, 1)


def test_without_common_noise_each_sequence_draws_its_own_noise_so_a_mean_over_many_averages_it_out():
    """Under common noise, copies of one sequence score identically (every window at the same noise levels:
    a mean over them keeps the error of ``t_samples`` draws); with ``common_noise=False`` each copy gets its
    own noise, deterministic for its place in the input, and the mean over copies approaches a many-draw score."""
    m = tiny()
    for p in m.backbone.parameters():  # off the uniform initialisation: the NELBO must depend on the noise
        p.data.add_(0.3 * torch.randn_like(p))
    a = dna(32, 7)
    shared = m.score([a] * 64, t_samples=2)["nelbo_nats"].to_numpy()
    own = m.score([a] * 64, t_samples=2, common_noise=False)["nelbo_nats"].to_numpy()
    again = m.score([a] * 64, t_samples=2, common_noise=False)["nelbo_nats"].to_numpy()
    assert np.ptp(shared) == 0.0 and np.unique(own).size == 64 and np.array_equal(own, again)
    reference = m.score([a], t_samples=512)["nelbo_nats"].iloc[0]
    spread = own.std(ddof=1)
    assert abs(own.mean() - reference) < 4 * spread / np.sqrt(64) + 4 * spread / np.sqrt(256)
