"""The training time samplers: stratified times are one per stratum, keyed by (seed, step, row), and low-variance."""

from __future__ import annotations

import math

import pytest
import torch

from mdlm_dna.train.lit_module import TIME_SAMPLING, drawn_noise, time_sampling_of

G, L = 64, 8


def times(mode: str, step: int, index: torch.Tensor | None = None, seed: int = 0, block: int = G) -> torch.Tensor:
    index = torch.arange(step * block, (step + 1) * block) if index is None else index
    return drawn_noise(index, L, block, mode, key=(seed, 0), block_id=step).t_uniform


def test_stratified_has_exactly_one_time_per_stratum():
    for step in range(5):
        t = times("stratified", step)
        strata = torch.floor(t * G).long()
        assert torch.equal(strata, torch.arange(G))  # row r lies in [r/G, (r+1)/G)
        assert ((t >= 0) & (t < 1)).all()


def test_times_are_a_pure_function_of_seed_step_and_row():
    for mode in TIME_SAMPLING:
        full = times(mode, step=3)
        assert torch.equal(full, times(mode, step=3))  # the same call, the same times
        # any subset of the global batch (a device's or accumulation step's share) gets its rows' times
        part = torch.arange(3 * G + 5, 3 * G + 40, 7)
        assert torch.equal(times(mode, 3, index=part), full[part % G])
        # without block_id (indices read on the host) the same
        assert torch.equal(drawn_noise(part, L, G, mode, key=(0, 0)).t_uniform, full[part % G])
        assert not torch.equal(full, times(mode, step=4))
        assert not torch.equal(full, times(mode, step=3, seed=1))


def test_the_mask_uniforms_do_not_depend_on_the_time_sampler():
    index = torch.arange(2 * G, 3 * G)
    masks = [drawn_noise(index, L, G, mode, key=(0, 0), block_id=2).mask_uniform for mode in TIME_SAMPLING]
    assert all(torch.equal(masks[0], m) for m in masks[1:])


def test_stratified_batch_mean_has_lower_variance_than_iid_for_a_smooth_integrand():
    f = lambda t: torch.exp(2 * t) + torch.sin(5 * t)  # smooth; exact mean known
    exact = (math.exp(2) - 1) / 2 + (1 - math.cos(5)) / 5
    var = {}
    for mode in TIME_SAMPLING:
        means = torch.stack([f(times(mode, step).double()).mean() for step in range(300)])
        assert abs(means.mean().item() - exact) < 5 * means.std().item() / math.sqrt(300) + 1e-12  # unbiased
        var[mode] = means.var().item()
    assert var["stratified"] < var["iid"] / 100  # O(G^-3) against O(G^-1): ~G^2 / (a few) apart
    assert var["stratified"] < var["lattice"]


def test_time_sampling_from_config():
    assert time_sampling_of({"time_sampling": "stratified"}) == "stratified"
    assert time_sampling_of({"antithetic": False}) == "iid"  # older configs keep their meaning
    assert time_sampling_of({"antithetic": True}) == "lattice"
    assert time_sampling_of(None) == "lattice"
    with pytest.raises(ValueError, match="time_sampling"):
        time_sampling_of({"time_sampling": "sobol"})
