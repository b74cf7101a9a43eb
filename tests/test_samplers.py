"""Samplers: exactness on a toy distribution, cache == no cache, SAR length, prompts, in-filling, float64."""

from __future__ import annotations

import itertools

import pytest
import torch

from mdlm_dna.diffusion import samplers
from mdlm_dna.diffusion.mdlm import MDLM
from mdlm_dna.diffusion.noise import Cosine, LogLinear
from mdlm_dna.diffusion.samplers import (
    AncestralSampler,
    CachedAncestralSampler,
    SemiAutoregressiveSampler,
    build_sampler,
    masked_init,
    sample_categorical,
)
from mdlm_dna.models.dit import DiT, DiTConfig

MASK = 5
V = 6  # A C G T N [MASK]


class ToyJoint:
    """A "denoiser" that returns the exact conditionals p(x0^l | x_t) of an explicit joint over {A,C,G,T}^L.

    Given any masking pattern, the posterior over full sequences is the joint restricted to the sequences that
    agree with the unmasked tokens; each masked position's conditional is that posterior's marginal.
    """

    time_conditioned = False
    mask_id = MASK

    def __init__(self, joint: torch.Tensor, schedule=None):
        self.L = joint.dim()
        self.schedule = schedule or LogLinear()
        self.configs = torch.tensor(list(itertools.product(range(4), repeat=self.L)))  # [C, L]
        self.p = joint.reshape(-1).double()  # same order as itertools.product
        self.onehot = torch.nn.functional.one_hot(self.configs, V).double()  # [C, L, V]
        # every masking pattern of {A,C,G,T,[MASK]}^L once, so that a call is a table look-up
        self.patterns = torch.tensor(list(itertools.product([0, 1, 2, 3, MASK], repeat=self.L)))
        self.table = self._exact(self.patterns)
        self.calls = 0

    def subs_log_probs(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        digits = torch.where(xt == MASK, 4, xt)
        code = (digits * 5 ** torch.arange(self.L - 1, -1, -1)).sum(-1)
        return self.table[code]

    def _exact(self, xt: torch.Tensor) -> torch.Tensor:
        agree = ((xt[:, None, :] == MASK) | (xt[:, None, :] == self.configs[None])).all(-1)  # [B, C]
        w = agree.double() * self.p
        marg = torch.einsum("bc,clv->blv", w, self.onehot)
        marg = marg / marg.sum(-1, keepdim=True)
        return marg.log().float()  # carry-over at unmasked positions and zero mass on [MASK] come out by themselves


def toy_joint(L: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # peaked and strongly correlated: far from the product of its marginals
    e = torch.empty(4**L).exponential_(generator=g) ** 3
    p = e / e.sum()
    return p.reshape((4,) * L)


def empirical(ids: torch.Tensor) -> torch.Tensor:
    L = ids.shape[1]
    code = (ids * (4 ** torch.arange(L - 1, -1, -1))).sum(-1)
    return torch.bincount(code, minlength=4**L).double() / len(ids)


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


@pytest.mark.parametrize("schedule", [LogLinear(), Cosine()], ids=["loglinear", "cosine"])
def test_ancestral_matches_the_toy_joint(schedule):
    joint = toy_joint()
    model = ToyJoint(joint, schedule)
    n = 20_000
    out = AncestralSampler(steps=200)(model, masked_init(n, 3, MASK), torch.Generator().manual_seed(0))
    assert (out.ids < 4).all()
    emp, truth = empirical(out.ids), joint.reshape(-1).double()
    # the product of marginals is what a one-step sampler would give: the check must tell the two apart
    marg = [joint.sum(dim=tuple(d for d in range(3) if d != k)) for k in range(3)]
    product = torch.einsum("a,b,c->abc", *marg).reshape(-1).double()
    assert tv(truth, product) > 0.15
    assert tv(emp, truth) < 0.03, tv(emp, truth)
    # chi-square over the well-populated cells (expected count >= 5), loose bound for a fixed seed
    exp = truth * n
    keep = exp >= 5
    chi2 = float((((emp * n - exp) ** 2) / exp)[keep].sum())
    assert chi2 < 2.0 * int(keep.sum()) + 30, chi2


def test_one_step_is_not_the_joint():
    """With T=1 every position is drawn from its marginal at once: the toy check above detects that."""
    joint = toy_joint()
    out = AncestralSampler(steps=1)(ToyJoint(joint), masked_init(20_000, 3, MASK), torch.Generator().manual_seed(0))
    assert tv(empirical(out.ids), joint.reshape(-1).double()) > 0.1


def test_cached_equals_uncached_on_the_toy_model_with_fewer_calls():
    joint = toy_joint(L=4, seed=1)
    a, b = ToyJoint(joint), ToyJoint(joint)
    x = masked_init(256, 4, MASK)
    plain = AncestralSampler(steps=100)(a, x, torch.Generator().manual_seed(3))
    cached = CachedAncestralSampler(steps=100)(b, x, torch.Generator().manual_seed(3))
    assert torch.equal(plain.ids, cached.ids)
    assert plain.sequence_evals == 256 * 100
    assert cached.sequence_evals + cached.sequence_evals_saved == plain.sequence_evals
    assert cached.sequence_evals < plain.sequence_evals / 5  # only 4 unmasking events per sequence


def tiny_mdlm(time_conditioning: bool, seed: int = 0) -> MDLM:
    torch.manual_seed(seed)
    dit = DiT(DiTConfig(vocab_size=10, d_model=32, n_layers=2, n_heads=2, cond_dim=16,
                        time_conditioning=time_conditioning))
    with torch.no_grad():
        for p in dit.parameters():  # random, non-trivial predictions (the DiT head starts at zero)
            p.normal_(0.0, 0.3)
    return MDLM(dit, LogLinear(), mask_id=MASK, pad_id=6, never_predict=(6, 7, 8, 9)).eval()


def test_cached_equals_uncached_on_a_dit_without_time_conditioning():
    model = tiny_mdlm(time_conditioning=False)
    x = masked_init(6, 24, MASK)
    plain = AncestralSampler(steps=64)(model, x, torch.Generator().manual_seed(7))
    cached = CachedAncestralSampler(steps=64)(model, x, torch.Generator().manual_seed(7))
    assert torch.equal(plain.ids, cached.ids)
    assert (plain.ids < 5).all() and len(set(map(tuple, plain.ids.tolist()))) == 6  # real, diverse samples
    assert cached.sequence_evals < plain.sequence_evals and cached.sequence_evals_saved > 0


def test_cache_on_a_time_conditioned_model_is_opt_in():
    model = tiny_mdlm(time_conditioning=True)
    x = masked_init(2, 16, MASK)
    with pytest.raises(ValueError, match="time-conditioned"):
        CachedAncestralSampler(steps=8)(model, x, torch.Generator().manual_seed(0))
    out = CachedAncestralSampler(steps=8, allow_time_conditioned=True)(model, x, torch.Generator().manual_seed(0))
    assert (out.ids < 5).all()


def test_sar_gives_the_requested_length_and_keeps_the_overlap_as_context():
    model = tiny_mdlm(time_conditioning=False)
    sar = SemiAutoregressiveSampler(AncestralSampler(steps=16), block_len=16, overlap=6)
    seen = []
    orig = model.subs_log_probs

    def spy(xt, t):
        seen.append(xt.shape[1])
        return orig(xt, t)

    model.subs_log_probs = spy
    for length in (16, 40, 53):
        seen.clear()
        out = sar(model, masked_init(3, length, MASK), torch.Generator().manual_seed(0))
        assert out.ids.shape == (3, length) and (out.ids < 5).all()
        assert set(seen) == {16}  # every network input at the training length, the last block included
        assert out.extra["blocks"] == 1 + -(-(length - 16) // 10)


def test_sar_respects_given_tokens():
    model = tiny_mdlm(time_conditioning=False)
    prefix = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 0, 0])
    x = masked_init(2, 50, MASK, prefix)
    x[:, 30:35] = 2
    out = build_sampler("sar", 8, block_len=16, overlap=4)(model, x, torch.Generator().manual_seed(1))
    assert torch.equal(out.ids[:, :10], prefix.expand(2, -1)) and (out.ids[:, 30:35] == 2).all()


@pytest.mark.parametrize("name", ["ancestral", "cached"])
def test_prefix_kept_and_infill_never_changes_given_positions(name):
    model = tiny_mdlm(time_conditioning=False)
    sampler = build_sampler(name, 32)
    prefix = torch.tensor([3, 3, 0, 1, 2])
    out = sampler(model, masked_init(4, 20, MASK, prefix), torch.Generator().manual_seed(0))
    assert torch.equal(out.ids[:, :5], prefix.expand(4, -1)) and (out.ids < 5).all()

    given = torch.randint(0, 5, (4, 20), generator=torch.Generator().manual_seed(1))  # N included: given, kept
    hole = torch.zeros(20, dtype=torch.bool)
    hole[3:8] = hole[12:15] = True
    x = torch.where(hole, torch.full_like(given, MASK), given)
    out = sampler(model, x, torch.Generator().manual_seed(2))
    assert torch.equal(out.ids[:, ~hole], given[:, ~hole])
    assert (out.ids[:, hole] < 5).all()  # filled with A C G T N, never [MASK] or a special token


def test_same_seed_same_samples_and_different_seed_differs():
    model = tiny_mdlm(time_conditioning=True)
    s = AncestralSampler(steps=16)
    x = masked_init(4, 16, MASK)
    a = s(model, x, torch.Generator().manual_seed(0)).ids
    b = s(model, x, torch.Generator().manual_seed(0)).ids
    c = s(model, x, torch.Generator().manual_seed(1)).ids
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_float64_is_the_default_sampling_dtype(monkeypatch):
    seen = []
    orig = samplers.sample_categorical

    def spy(probs, generator, dtype=torch.float64):
        out = orig(probs, generator, dtype)
        seen.append((probs.dtype, dtype))
        return out

    monkeypatch.setattr(samplers, "sample_categorical", spy)
    model = ToyJoint(toy_joint())
    AncestralSampler(steps=4)(model, masked_init(2, 3, MASK), torch.Generator().manual_seed(0))
    assert seen and all(p == torch.float64 and d == torch.float64 for p, d in seen)
    seen.clear()
    AncestralSampler(steps=4, dtype=torch.float32)(model, masked_init(2, 3, MASK), torch.Generator().manual_seed(0))
    assert seen and all(p == torch.float32 and d == torch.float32 for p, d in seen)


def test_sample_categorical_frequencies_and_support():
    probs = torch.tensor([[0.0, 0.7, 0.0, 0.2999, 1e-4, 0.0]]).expand(200_000, -1)
    draws = sample_categorical(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    assert freq[0] == freq[2] == freq[5] == 0  # never a zero-probability token
    assert abs(freq[1] - 0.7) < 0.005 and abs(freq[3] - 0.2999) < 0.005
    assert 5 <= int((draws == 4).sum()) <= 40  # a 1e-4 token is drawn at its rate (about 20 times)


def test_bad_arguments():
    with pytest.raises(ValueError):
        AncestralSampler(steps=0)
    with pytest.raises(ValueError):
        masked_init(1, 0, MASK)
    with pytest.raises(ValueError):
        masked_init(1, 3, MASK, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError):
        build_sampler("nope", 4)
    with pytest.raises(ValueError):
        SemiAutoregressiveSampler(AncestralSampler(4), block_len=8, overlap=8)


class UniformDenoiser:
    """p(x0 | x_t) uniform over A/C/G/T at masked positions: the cache's bookkeeping does not depend on it."""

    time_conditioned = False
    mask_id = MASK

    def __init__(self):
        self.schedule = LogLinear()

    def subs_log_probs(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = torch.full((*xt.shape, V), float("-inf"))
        out[..., :4] = -torch.log(torch.tensor(4.0))
        kept = xt != MASK
        out[kept] = float("-inf")
        out[kept, xt[kept]] = 0.0
        return out


@pytest.mark.parametrize("T,L", [(256, 64), (64, 256), (1000, 100)])
def test_cached_network_evaluations_match_the_closed_form(T, L):
    # MDLM's caching claim: per sequence, 1 + (T - 1)(1 - (1 - 1/T)^L) evaluations are expected (the first step,
    # then one after each step that unmasked something); the loop's count must agree within sampling noise
    B = 400
    out = CachedAncestralSampler(steps=T)(UniformDenoiser(), masked_init(B, L, MASK), torch.Generator().manual_seed(0))
    expected = 1 + (T - 1) * (1 - (1 - 1 / T) ** L)
    # evaluations of one row: a sum of T - 1 weakly dependent Bernoulli indicators; its sd < sqrt(expected)
    se = (expected**0.5) / B**0.5
    assert abs(out.evals_per_sample - expected) < 4 * se + 0.01 * expected, (out.evals_per_sample, expected)
    assert (out.ids != MASK).all()
