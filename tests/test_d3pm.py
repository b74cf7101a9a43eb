"""D3PM's discrete-time ELBO, exact by enumeration, against its estimator and MDLM's continuous-time limit.

As in tests/test_mdlm.py: a tiny random DiT (float64) is p_theta and the sequence has L = 4 tokens, so every
masking pattern can be enumerated and every expectation is a finite sum.
"""

import math

import pytest
import torch

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.d3pm import D3PM
from mdlm_dna.diffusion.noise import build_schedule

from .test_mdlm import X0, continuous_nelbo, make, masked_ce_per_pattern, pattern_probs, random_model

tok = NucleotideTokenizer()
NEVER = ()  # as tests/test_mdlm.py's MDLM: p_theta over every token but [MASK], so the two share p_theta
K = tok.vocab_size - 1 - len(NEVER)
L = X0.shape[1]


def make_d3pm(schedule: str, T: int) -> D3PM:
    kw = {"eps": 1e-3} if schedule != "geometric" else {}
    return D3PM(
        random_model(0),
        build_schedule(schedule, **kw),
        mask_id=tok.mask_id,
        vocab_size=tok.vocab_size,
        num_steps=T,
        pad_id=tok.pad_id,
        never_predict=NEVER,
    )


def exact_d3pm_nelbo(obj: D3PM, T: int) -> float:
    """Reconstruction + sum of the T step KLs + prior KL, from q and p_theta alone, every pattern enumerated."""
    sched = obj.schedule
    t = torch.arange(0, T + 1, dtype=torch.float64) / T  # t_0 .. t_T
    ce = masked_ce_per_pattern(obj, t)  # [T + 1, 2^L]
    expected_ce = (pattern_probs(obj, t) * ce).sum(-1)  # E_{x_t} [masked CE at x_t]
    a = sched.alpha(t)
    steps = ((a[:-1] - a[1:]) / sched.one_minus_alpha(t[1:]) * expected_ce[1:]).sum()
    reconstruction = expected_ce[0]  # zero when alpha(0) = 1: no masked tokens at t_0
    prior = L * float(sched.alpha(torch.tensor(1.0, dtype=torch.float64))) * math.log(K)
    return float(steps + reconstruction + prior)


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_discrete_elbo_approaches_the_continuous_nelbo_as_steps_grow(schedule):
    cont = continuous_nelbo(make(schedule, t_min=1e-6))  # MDLM's continuous-time NELBO, same p_theta
    prior = L * 1e-3 * math.log(K)  # alpha(1) = eps: the one term MDLM leaves out
    gaps = [exact_d3pm_nelbo(make_d3pm(schedule, T), T) - prior - cont for T in (10, 100, 1000)]
    assert gaps[0] > gaps[1] > gaps[2] > 0, gaps  # a discrete bound is looser; more steps, tighter
    assert gaps[2] / cont < 2e-3, (gaps, cont)
    assert gaps[0] / cont > 1e-2  # the check has teeth: 10 steps are visibly worse


@pytest.mark.parametrize("schedule,T", [("loglinear", 1000), ("cosine", 20), ("geometric", 50)])
def test_monte_carlo_loss_matches_the_exact_discrete_elbo(schedule, T):
    obj = make_d3pm(schedule, T)
    assert obj.first_step == (0 if schedule == "geometric" else 1)  # geometric has alpha(0) < 1
    exact = exact_d3pm_nelbo(obj, T)
    n = 40_000
    with torch.no_grad():
        est = obj.nelbo(X0.expand(n, -1).contiguous(), generator=torch.Generator().manual_seed(1)).per_sequence
    mean, se = est.mean().item(), est.std().item() / math.sqrt(n)
    assert abs(mean - exact) < 4 * se + 1e-3 * exact, (mean, exact, se)
    assert se / exact < 0.02


@pytest.mark.parametrize("schedule", ["loglinear", "geometric"])
def test_steps_are_uniform_on_the_grid(schedule):
    obj = make_d3pm(schedule, 50)
    i = obj.sample_step(obj.num_terms, torch.device("cpu"), torch.Generator().manual_seed(0))
    first = 0 if schedule == "geometric" else 1
    assert sorted(i.tolist()) == list(range(first, 51))  # stratified: each grid term exactly once


def test_explicit_times_must_be_on_the_grid():
    obj = make_d3pm("loglinear", 10)
    x0 = X0.expand(2, -1)
    assert torch.isfinite(obj.nelbo(x0, t=torch.tensor([0.1, 1.0])).per_sequence).all()
    for bad in ([0.15, 0.5], [0.0, 0.5]):  # off the grid; the reconstruction step does not exist here
        with pytest.raises(ValueError, match="grid"):
            obj.nelbo(x0, t=torch.tensor(bad))
