"""SUBS without its parts (the MDLM paper's ablation), against a brute-force transcription of D3PM.

Every expected number here is computed from the forward process's transition matrices alone:
Q_s[x, z_s] (x -> z_s after time s) and Q_{t|s}[z_s, z_t], the posterior p_theta(z_s | z_t) as
sum_x x_theta[x] Q_s[x, z_s] Q_{t|s}[z_s, z_t], normalised, and the KL to q(z_s | z_t, x) taken directly.
"""

import pytest
import torch
from torch import nn

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.mdlm import MDLM, DrawnNoise
from mdlm_dna.diffusion.noise import build_schedule

tok = NucleotideTokenizer()
V, M = tok.vocab_size, tok.mask_id


def transition(alpha: float) -> torch.Tensor:
    """[V, V] float64: row x -> distribution of the token after keeping it with probability alpha."""
    Q = torch.zeros(V, V, dtype=torch.float64)
    for x in range(V):
        Q[x, x] += alpha
        Q[x, M] += 1 - alpha
    Q[M] = 0
    Q[M, M] = 1
    return Q


def reverse_step(x_dist: torch.Tensor, a_s: float, a_t: float, z_t: int) -> torch.Tensor:
    """p(z_s | z_t) for a clean-token distribution ``x_dist`` [V] (one-hot: the true posterior q)."""
    joint = (x_dist @ transition(a_s)) * transition(a_t / a_s)[:, z_t]
    return joint / joint.sum()


def brute_force_kl(x_theta: torch.Tensor, x: int, a_s: float, a_t: float) -> float:
    """KL(q(z_s | z_t = [MASK], x) || p_theta(z_s | z_t = [MASK])) from the matrices."""
    q = reverse_step(torch.nn.functional.one_hot(torch.tensor(x), V).double(), a_s, a_t, M)
    p = reverse_step(x_theta, a_s, a_t, M)
    keep = q > 0
    return float((q[keep] * (q[keep] / p[keep]).log()).sum())


def random_x_theta(seed: int, mask_mass: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(V, generator=g, dtype=torch.float64)
    w[M] = 0
    w = (1 - mask_mass) * w / w.sum()
    w[M] = mask_mass
    return w


def objective(**kw) -> MDLM:
    return MDLM(nn.Identity(), build_schedule("loglinear", eps=1e-3), mask_id=M, pad_id=tok.pad_id, **kw)


@pytest.mark.parametrize("i", [1, 2, 37, 500, 1000])
@pytest.mark.parametrize("mask_mass", [0.0, 0.05, 0.6])
def test_discrete_term_without_zero_masking_is_the_step_kl(i, mask_mass):
    T, x = 1000, 2
    obj = objective(zero_masking=False, num_steps=T)
    x_theta = random_x_theta(i, mask_mass)
    t = torch.tensor([i / T])
    got = obj.masked_terms_with_mask_mass(-x_theta[x].log().view(1, 1), x_theta[M].log().view(1, 1), t)
    a = obj.schedule.alpha(torch.tensor([i / T, (i - 1) / T], dtype=torch.float64)).tolist()
    expected = T * brute_force_kl(x_theta, x, 1.0 if i == 1 else a[1], a[0])
    assert got.item() == pytest.approx(expected, rel=1e-7, abs=1e-9)
    if mask_mass == 0.0:  # SUBS's term: T (alpha_s - alpha_t) / (1 - alpha_t) * -log x_theta[x]
        subs = obj.loss_weight(t.double()) * -x_theta[x].log()
        assert got.item() == pytest.approx(subs.item(), rel=1e-7)


@pytest.mark.parametrize("t", [0.01, 0.3, 0.9])
@pytest.mark.parametrize("mask_mass", [0.0, 0.2])
def test_continuous_term_without_zero_masking_is_the_limit_of_the_steps(t, mask_mass):
    obj, x = objective(zero_masking=False), 1
    x_theta = random_x_theta(7, mask_mass)
    got = obj.masked_terms_with_mask_mass(-x_theta[x].log().view(1, 1), x_theta[M].log().view(1, 1),
                                          torch.tensor([t], dtype=torch.float64)).item()
    T = 200_000  # one step of length 1/T, times T: the rate of the bound at t
    alpha = obj.schedule.alpha(torch.tensor([t, t - 1 / T], dtype=torch.float64)).tolist()
    expected = T * brute_force_kl(x_theta, x, alpha[1], alpha[0])
    assert got == pytest.approx(expected, rel=2e-4)
    if mask_mass > 0:  # mass on [MASK] costs: looser than SUBS's term for x_theta renormalised without [MASK]
        subs = obj.schedule.loss_weight(torch.tensor(t, dtype=torch.float64)) * -(x_theta[x] / (1 - mask_mass)).log()
        assert got > subs.item()


class TableBackbone(nn.Module):
    """Logits that depend on the token and on sigma: enough for the NELBO to see both."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.a = nn.Parameter(torch.randn(V, V, generator=g))
        self.b = nn.Parameter(torch.randn(V, V, generator=g))

    def forward(self, ids, sigma):
        return self.a[ids] + sigma[:, None, None] * self.b[ids]


def test_without_carry_over_the_bound_gains_the_reconstruction_term():
    x0 = torch.randint(0, 4, (3, 9), generator=torch.Generator().manual_seed(0))
    noise = DrawnNoise(t_uniform=torch.tensor([0.1, 0.5, 0.9]),
                       mask_uniform=torch.rand(3, 9, generator=torch.Generator().manual_seed(1)))
    backbone = TableBackbone()
    kw = dict(never_predict=tok.special_ids_not_in_data)
    subs = MDLM(backbone, build_schedule("loglinear", eps=1e-3), mask_id=M, pad_id=tok.pad_id, **kw)
    no_carry = MDLM(backbone, build_schedule("loglinear", eps=1e-3), mask_id=M, pad_id=tok.pad_id,
                    carry_over=False, **kw)
    with torch.no_grad():
        diff = no_carry.nelbo(x0, generator=noise).per_sequence - subs.nelbo(x0, generator=noise).per_sequence
        # -log p_theta(x | x_0 = x) at sigma(0) = 0, the special tokens excluded, written out by hand
        logits = backbone.a[x0].clone()
        logits[..., list(tok.special_ids_not_in_data) + [M]] = float("-inf")
        expected = -(logits.log_softmax(-1).gather(-1, x0[..., None]).squeeze(-1)).sum(-1)
    torch.testing.assert_close(diff, expected)
    assert (diff > 0).all()


def test_without_zero_masking_the_model_may_predict_mask_and_samplers_still_get_subs():
    x0 = torch.randint(0, 4, (2, 7), generator=torch.Generator().manual_seed(0))
    xt = x0.clone()
    xt[:, ::2] = M
    t = torch.tensor([0.4, 0.8])
    obj = MDLM(TableBackbone(), build_schedule("loglinear", eps=1e-3), mask_id=M, pad_id=tok.pad_id,
               zero_masking=False)
    with torch.no_grad():
        x_theta = obj.denoiser_logits(xt, t).softmax(-1)
        assert (x_theta[..., M] > 0).all()
        subs = obj.subs_log_probs(xt, t).exp()
    torch.testing.assert_close(subs.sum(-1), torch.ones(2, 7))
    assert (subs[..., M] == 0).all()
    masked = xt == M
    expected = x_theta / (1 - x_theta[..., M:M + 1])
    expected[..., M] = 0
    torch.testing.assert_close(subs[masked], expected[masked])
    assert (subs[~masked].gather(-1, xt[~masked][:, None]) == 1).all()  # carried over


def test_switches_from_the_config_reach_the_objective():
    from mdlm_dna.train.lit_module import build_objective

    from .conftest import compose_pretrain

    obj = build_objective(dict(compose_pretrain("objective.carry_over=false", "objective.zero_masking=false")), tok)
    assert (obj.carry_over, obj.zero_masking) == (False, False)
    assert M not in obj.excluded_ids.tolist()
    default = build_objective(dict(compose_pretrain()), tok)
    assert (default.carry_over, default.zero_masking) == (True, True) and M in default.excluded_ids.tolist()
