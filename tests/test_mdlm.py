"""The MDLM objective against independent computations.

A tiny time-conditioned DiT (random weights, float64) plays p_theta. For a
sequence of L=4 tokens every masking pattern can be enumerated, so the
discrete-time NELBO with T steps, computed from q and p_theta alone, is exact;
as T grows it must approach the continuous-time NELBO, and our Monte-Carlo
loss must average to the same number.
"""

import itertools
import math

import pytest
import torch

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.mdlm import MDLM
from mdlm_dna.diffusion.noise import build_schedule
from mdlm_dna.models.dit import DiT, DiTConfig

tok = NucleotideTokenizer()
X0 = torch.tensor([[0, 2, 3, 1]])  # A G T C
L = X0.shape[1]
PATTERNS = torch.tensor(list(itertools.product([0, 1], repeat=L)), dtype=torch.bool)  # 1 = masked


def random_model(seed=0) -> DiT:
    torch.manual_seed(seed)
    m = DiT(DiTConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2, cond_dim=16)).double()
    for name, p in m.named_parameters():  # undo the zero init so that p_theta depends on x_t and sigma
        if "adaLN" in name or "lm_head" in name:
            torch.nn.init.normal_(p, std=0.5)
    return m.eval()


def make(schedule: str, t_min=1e-4, seed=0) -> MDLM:
    kw = {"eps": 1e-3} if schedule != "geometric" else {}
    return MDLM(random_model(seed), build_schedule(schedule, **kw), mask_id=tok.mask_id, pad_id=tok.pad_id, t_min=t_min)


@torch.no_grad()
def masked_ce_per_pattern(obj: MDLM, t: torch.Tensor) -> torch.Tensor:
    """[len(t), 2^L]: sum over masked positions of -log p_theta(x0 | x_t) for each pattern, each t."""
    n = len(t)
    xt = torch.where(PATTERNS[None], tok.mask_id, X0).expand(n, -1, -1).reshape(-1, L)
    tt = t.repeat_interleave(len(PATTERNS))
    logp = obj.subs_log_probs(xt, tt).double()
    ce = -logp.gather(-1, X0.expand(len(xt), -1)[..., None]).squeeze(-1)
    ce = torch.where(xt == tok.mask_id, ce, torch.zeros_like(ce))
    return ce.sum(-1).view(n, len(PATTERNS))


def pattern_probs(obj: MDLM, t: torch.Tensor) -> torch.Tensor:
    p = obj.schedule.one_minus_alpha(t)[:, None, None]
    m = PATTERNS[None].double()
    return (m * p + (1 - m) * (1 - p)).prod(-1)


def discrete_nelbo(obj: MDLM, T: int) -> float:
    """sum_i E_q(x_t_i) sum_masked (alpha_s - alpha_t) / (1 - alpha_t) * -log p(x0 | x_t), s = t - 1/T."""
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    s = t - 1.0 / T
    a_t, a_s = obj.schedule.alpha(t), obj.schedule.alpha(s)
    a_s[0] = 1.0
    coef = (a_s - a_t) / obj.schedule.one_minus_alpha(t)
    return float((coef[:, None] * pattern_probs(obj, t) * masked_ce_per_pattern(obj, t)).sum())


def continuous_nelbo(obj: MDLM, n: int = 4000) -> float:
    """Midpoint rule for the integral over [t_min, 1] of the expected weighted masked cross-entropy."""
    a, b = obj.t_min, 1.0
    t = a + (b - a) * (torch.arange(n, dtype=torch.float64) + 0.5) / n
    integrand = obj.schedule.loss_weight(t)[:, None] * pattern_probs(obj, t) * masked_ce_per_pattern(obj, t)
    return float(integrand.sum() * (b - a) / n)


def monte_carlo_nelbo(obj: MDLM, seed: int, n: int = 40_000) -> tuple[float, float]:
    """Mean and standard error of ``n`` one-sample estimates of X0's NELBO, as the training loss draws them."""
    with torch.no_grad():
        est = obj.nelbo(X0.expand(n, -1).contiguous(), generator=torch.Generator().manual_seed(seed)).per_sequence
    return est.mean().item(), est.std().item() / math.sqrt(n)


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_continuous_weight_is_the_limit_of_the_discrete_nelbo(schedule):
    obj = make(schedule, t_min=1e-6)
    cont = continuous_nelbo(obj)
    d_coarse, d_fine = discrete_nelbo(obj, 100), discrete_nelbo(obj, 2000)
    assert d_fine < d_coarse  # more steps, tighter bound
    assert abs(d_fine - cont) / cont < 2e-3, (d_fine, cont)
    assert abs(d_coarse - cont) > abs(d_fine - cont)


@pytest.mark.parametrize("schedule", ["loglinear", "cosine", "geometric"])
def test_monte_carlo_loss_matches_exact_integral(schedule):
    obj = make(schedule, t_min=1e-3)
    exact = continuous_nelbo(obj)
    mean, se = monte_carlo_nelbo(obj, seed=1)
    assert abs(mean - exact) < 4 * se + 1e-3 * exact, (mean, exact, se)
    assert se / exact < 0.02  # the check has teeth


def test_subs_zero_mask_mass_and_exact_carry_over():
    obj = make("loglinear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 4, (8, 32), generator=g)
    t = torch.rand(8, generator=g, dtype=torch.float64)
    xt = obj.add_noise(x0, t, generator=g)
    assert (xt == tok.mask_id).any() and (xt != tok.mask_id).any()
    with torch.no_grad():
        logp = obj.subs_log_probs(xt, t)
    probs = logp.exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs[..., 0], dtype=probs.dtype))
    assert torch.all(probs[..., tok.mask_id] == 0)
    unmasked = xt != tok.mask_id
    assert torch.all(probs[unmasked].argmax(-1) == xt[unmasked])
    assert torch.all(probs[unmasked].max(-1).values == 1.0)  # exactly one-hot, not approximately


def test_forward_process_masks_with_probability_one_minus_alpha():
    obj = make("cosine")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 4, (4, 50_000), generator=g)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64)
    frac = (obj.add_noise(x0, t, generator=g) == tok.mask_id).double().mean(-1)
    torch.testing.assert_close(frac, obj.schedule.one_minus_alpha(t), atol=5e-3, rtol=0)


def test_padding_is_never_masked_nor_counted():
    obj = make("loglinear")
    x0 = torch.tensor([[0, 1, 2, tok.pad_id, tok.pad_id]] * 64)
    xt = obj.add_noise(x0, torch.ones(64, dtype=torch.float64))
    assert torch.all(xt[:, 3:] == tok.pad_id)
    assert torch.all(obj.nelbo(x0).num_tokens == 3)


def test_loss_finite_at_both_ends_of_time():
    obj = make("loglinear", t_min=1e-3)
    obj.backbone.float()
    x0 = torch.randint(0, 4, (4, 64))
    for t in (torch.full((4,), 1e-3), torch.full((4,), 1.0), torch.full((4,), 1e-7)):
        out = obj.nelbo(x0, t=t)
        out.per_token.backward()
        assert torch.isfinite(out.per_sequence).all()
        assert all(torch.isfinite(p.grad).all() for p in obj.parameters() if p.grad is not None)
        obj.zero_grad()


def test_low_discrepancy_times_cover_the_interval():
    obj = make("loglinear", t_min=1e-3)
    t = obj.sample_t(16, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert t.min() >= 1e-3 and t.max() <= 1
    gaps = torch.sort((t - 1e-3) / (1 - 1e-3)).values.diff()
    torch.testing.assert_close(gaps, torch.full_like(gaps, 1 / 16), atol=1e-6, rtol=0)


def test_continuous_nelbo_is_invariant_to_the_schedule():
    # With p_theta conditioned on sigma = -log alpha, the NELBO is an integral over alpha: the same
    # number for any schedule with the same end points (MDLM paper, section 3.2).
    a = continuous_nelbo(make("loglinear", t_min=1e-6), n=8000)
    b = continuous_nelbo(make("cosine", t_min=1e-6), n=8000)
    assert abs(a - b) / a < 1e-4, (a, b)


@pytest.mark.parametrize("T", [4, 50])
def test_discrete_time_objective_matches_its_exact_sum_and_is_looser(T):
    obj = make("loglinear", t_min=1e-6)
    obj.time_steps = T
    exact = discrete_nelbo(obj, T)  # the independent sum over the T steps and all masking patterns
    mean, se = monte_carlo_nelbo(obj, seed=2)
    assert abs(mean - exact) < 4 * se + 1e-3 * exact, (mean, exact, se)
    obj.time_steps = None
    assert exact > continuous_nelbo(obj)  # the continuous-time bound is the tighter one


def test_num_steps_from_the_config_reaches_the_objective():
    from mdlm_dna.train.lit_module import build_objective

    from .conftest import compose_pretrain

    obj = build_objective(dict(compose_pretrain("objective.num_steps=1000")), tok)
    assert obj.time_steps == 1000
    t = obj.sample_t(64, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert torch.allclose(t * 1000, (t * 1000).round()) and t.min() >= 1e-3
    assert build_objective(dict(compose_pretrain()), tok).time_steps is None


class _Silent(torch.nn.Module):
    """A network that adds nothing: under a chain (ChainResidual) the denoiser is the chain's exact posterior."""

    def forward(self, ids, sigma=None, **kwargs):
        return torch.zeros(*ids.shape, tok.vocab_size)


@pytest.mark.parametrize("schedule", ["loglinear", "cosine"])
def test_full_bound_of_an_exact_denoiser_is_the_likelihood(schedule):
    """With the exact posterior of an order-2 chain as the denoiser, the sampler generates exactly the chain's
    window distribution, so its whole continuous-time NELBO is -log p(x) (every unmasking order is a chain rule).
    The full bound reads it; the reference estimate (alpha(1) = eps, the mean over t >= t_min) reads below it
    (loglinear: by ~eps x the loss; eps = t_min = 0.05 here, so the gap is large against the Monte-Carlo error)."""
    from mdlm_dna.models.markov_prior import ChainResidual

    k, length, n = 2, 24, 6000
    rng = torch.Generator().manual_seed(0)
    trans = torch.distributions.Dirichlet(torch.ones(4)).sample((4**k,)).double()
    init = torch.distributions.Dirichlet(torch.ones(4**k)).sample().double()
    net = ChainResidual(_Silent(), order=k)
    net.prior.load_chain(trans.numpy(), init.numpy() * 1000, alpha=0.0)
    trans, init = net.prior.trans.double(), net.prior.init.double()  # the float32 tables the posterior uses
    s = int(torch.multinomial(init, 1, generator=rng))
    x = [s // 4, s % 4]
    for _ in range(length - k):
        b = int(torch.multinomial(trans[s], 1, generator=rng))
        x.append(b)
        s = (s * 4 + b) % 4**k
    x0 = torch.tensor([x])
    nll = -math.log(init[x[0] * 4 + x[1]])
    s = x[0] * 4 + x[1]
    for b in x[k:]:
        nll -= math.log(trans[s, b])
        s = (s * 4 + b) % 4**k
    obj = MDLM(net, build_schedule(schedule, eps=0.05), mask_id=tok.mask_id, pad_id=tok.pad_id, t_min=0.05,
               never_predict=tok.special_ids_not_in_data)

    def estimate() -> tuple[float, float]:
        with torch.no_grad():
            est = obj.nelbo(x0.expand(n, -1).contiguous(), generator=torch.Generator().manual_seed(1)).per_sequence
        return est.double().mean().item(), est.double().std().item() / math.sqrt(n)

    reference, ref_se = estimate()
    with obj.full_bound():
        full, full_se = estimate()
    assert (obj.t_min, obj.schedule.eps) == (0.05, 0.05)  # restored
    assert abs(full - nll) < 4 * full_se, (full, nll, full_se)
    assert full_se < 0.03 * nll  # the check has teeth
    if schedule == "loglinear":  # the default; cosine's estimate is noisier (its 1/t-like weight near t = 0)
        assert nll - reference > 8 * ref_se, (reference, nll, ref_se)
    else:
        assert reference < nll, (reference, nll, ref_se)
