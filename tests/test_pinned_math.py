"""Tests that pin the math (issue 18): every math module against an independent computation of exact values.

The other test files mostly check properties (non-negativity, equivariance, one backend against another,
Monte-Carlo agreement within a tolerance); a realistic bug can keep all of those. Each test here recomputes
the quantity from the published equations, written out afresh in float64 (plain Python, numpy or mpmath;
never our own reference code), and its docstring names the bugs it was seen to catch: each of those bugs was
put into the code by hand and the test failed.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from torch import nn

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion import samplers
from mdlm_dna.diffusion.d3pm import D3PM
from mdlm_dna.diffusion.mdlm import MDLM
from mdlm_dna.diffusion.noise import Cosine, Geometric, LogLinear
from mdlm_dna.diffusion.samplers import AncestralSampler, SemiAutoregressiveSampler, masked_init, sample_categorical
from mdlm_dna.diffusion.sedd import SEDD
from mdlm_dna.models import selective_scan as ss
from mdlm_dna.models.caduceus import Caduceus, CaduceusConfig
from mdlm_dna.models.mamba import BiMamba, Mamba

pytestmark = pytest.mark.usefixtures("one_thread")

TOK = NucleotideTokenizer()
V, MASK, PAD, N_ID = TOK.vocab_size, TOK.mask_id, TOK.pad_id, TOK.N  # 10 ids: A C G T N [MASK] [PAD] ...
SPECIAL = TOK.special_ids_not_in_data  # (6, 7, 8, 9): never predicted
EXCLUDED = sorted({MASK, *SPECIAL})
K = V - len(EXCLUDED)  # 5 predictable tokens: A C G T N
EPS = 1e-3


# ----------------------------------------------------------------------------------------------------
# closed forms of the schedules, in high precision (mpmath), for the pinned values


def mp_alpha(name: str, t) -> mpmath.mpf:
    t = mpmath.mpf(t)
    if name == "loglinear":
        return 1 - (1 - mpmath.mpf(EPS)) * t
    if name == "cosine":
        return mpmath.mpf(EPS) + (1 - mpmath.mpf(EPS)) * mpmath.cos(mpmath.pi * t / 2)
    sigma = mpmath.mpf("1e-4") ** (1 - t) * mpmath.mpf(20) ** t
    return mpmath.exp(-sigma)


def f(name: str, t: float) -> tuple[float, float, float]:
    """alpha(t), 1 - alpha(t) and alpha'(t) to ~30 digits (the derivative by mpmath's numerical differentiation)."""
    with mpmath.workdps(40):
        a = mp_alpha(name, t)
        return float(a), float(1 - a), float(mpmath.diff(lambda s: mp_alpha(name, s), t))


SCHEDULES = {"loglinear": LogLinear(EPS), "cosine": Cosine(EPS), "geometric": Geometric(1e-4, 20.0)}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_noise_schedules_pinned_to_their_closed_forms(name):
    """alpha, 1 - alpha, alpha', sigma and the loss weight -alpha'/(1 - alpha) at t from 1e-7 to 1, to 1e-12
    relative, against the closed form in 40-digit arithmetic (alpha' by numerical differentiation there).

    Catches: 1 - alpha(t) computed as ``1 - alpha`` (cosine and geometric near t = 0 lose 4-9 digits: the
    loss weight at small t, and the mask probability, go wrong); a dropped factor in alpha' (the geometric
    schedule's log(sigma_max / sigma_min), the cosine's pi / 2); the log-linear sigma without its (1 - eps).
    """
    sched = SCHEDULES[name]
    for t in (1e-7, 1e-4, 0.013, 0.5, 0.77, 1.0):
        a, om, da = f(name, t)
        tt = torch.tensor([t], dtype=torch.float64)
        assert float(sched.alpha(tt)) == pytest.approx(a, rel=1e-12), ("alpha", t)
        assert float(sched.one_minus_alpha(tt)) == pytest.approx(om, rel=1e-12), ("1 - alpha", t)
        assert float(sched.alpha_prime(tt)) == pytest.approx(da, rel=1e-10), ("alpha'", t)
        assert float(sched.sigma(tt)) == pytest.approx(-math.log(a) if a < 0.5 else -math.log1p(-om), rel=1e-12)
        assert float(sched.loss_weight(tt)) == pytest.approx(-da / om, rel=1e-10), ("loss weight", t)


# ----------------------------------------------------------------------------------------------------
# the objectives against hand computations with a fully known backbone


class KnownBackbone(nn.Module):
    """Logits a hand computation can redo: row ``W[x_t^l] + sigma * U + (number of visible N in x_t) * Q``.

    Depends on the token at the position (so the masked rows differ from the others), on sigma (so a wrong
    time or schedule shows) and on the visible N of the whole window (so masking an N that should stay
    given shows).
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(V, V, generator=g, dtype=torch.float64)
        self.U = torch.randn(V, generator=g, dtype=torch.float64)
        self.Q = torch.randn(V, generator=g, dtype=torch.float64) * 0.3

    def forward(self, ids, sigma):
        n_visible = (ids == N_ID).sum(-1).double()
        return (self.W[ids] + sigma.double()[:, None, None] * self.U + n_visible[:, None, None] * self.Q).float()

    def numpy_logits(self, xt_row: np.ndarray, sigma: float) -> np.ndarray:
        return self.W.numpy()[xt_row] + sigma * self.U.numpy() + float((xt_row == N_ID).sum()) * self.Q.numpy()


def log_softmax_np(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def predictable_log_probs(bb: KnownBackbone, xt_row, sigma) -> np.ndarray:
    z = bb.numpy_logits(xt_row, sigma)
    z[:, EXCLUDED] = -np.inf
    return log_softmax_np(z)


X0 = torch.tensor([
    [0, 1, 2, 3, 3, 2, 1, 0, 0, 2, 2, 1],
    [4, 4, 4, 0, 1, 3, 3, 2, 4, 1, 0, 4],  # N runs: given context unless N counts
    [2, 2, 2, 2, 1, 1, 1, 1, 3, 3, 0, 0],
])
T_FIXED = torch.tensor([0.31, 0.77, 0.95], dtype=torch.float64)


def hand_masks(seed: int, counted: np.ndarray, one_minus_alpha: np.ndarray) -> np.ndarray:
    """The forward process by hand: position l masked iff counted and its uniform < 1 - alpha(t)."""
    u = torch.rand(X0.shape, generator=torch.Generator().manual_seed(seed)).numpy()
    return (u < one_minus_alpha[:, None]) & counted


@pytest.mark.parametrize("count_n", [True, False])
def test_mdlm_nelbo_pinned_to_a_hand_computation(count_n):
    """MDLM's NELBO of three windows at fixed t against eq. 10 written out: sum over the masked positions of
    -alpha'/(1 - alpha) * -log p(x0 | x_t), p the softmax over A/C/G/T/N of the logits at sigma = -log alpha;
    with N not counted, the N positions stay given (visible) and count in neither sum nor tokens.

    Catches: the weight alpha'/alpha or 1/t in place of -alpha'/(1 - alpha) (cosine schedule); masking
    positions with probability alpha(t) instead of 1 - alpha(t); [MASK] (or the special tokens) left in the
    softmax; the backbone given t instead of sigma(t); N positions masked, or counted, when they must not be.
    """
    bb = KnownBackbone()
    obj = MDLM(bb, Cosine(EPS), mask_id=MASK, pad_id=PAD, never_predict=SPECIAL)
    counted = torch.ones_like(X0, dtype=torch.bool) if count_n else X0 != N_ID
    out = obj.nelbo(X0, t=T_FIXED, generator=torch.Generator().manual_seed(5), counted=counted)

    abar = [f("cosine", t) for t in T_FIXED.tolist()]
    masked = hand_masks(5, counted.numpy(), np.array([om for _, om, _ in abar]))
    x0 = X0.numpy()
    for b, (a, om, da) in enumerate(abar):
        xt = np.where(masked[b], MASK, x0[b])
        logp = predictable_log_probs(bb, xt, -math.log(a))
        nll = -logp[np.arange(len(xt)), x0[b]]
        expected = (-da / om) * nll[masked[b]].sum()
        assert masked[b].any()
        assert float(out.per_sequence[b]) == pytest.approx(expected, rel=1e-5), b
        assert int(out.num_tokens[b]) == int(counted[b].sum())


def test_sedd_nelbo_pinned_to_the_score_entropy_definition():
    """SEDD's DWDSE at fixed t against Lou et al. eq. 13 written out from the definition:
    dsigma/dt * sum over masked l, over the K tokens y of [s_y - r_y log s_y + r_y (log r_y - 1)],
    with log s_y = z_y - log K - log(e^sigma - 1) and r_y = 1 / (e^sigma - 1) for y = x0, else 0.

    Catches: r = e^-sigma (or e^sigma - 1) in place of 1 / (e^sigma - 1); log K left out or taken over the whole
    vocabulary; MDLM's weight without the ratio r; the (log r - 1) constant dropped (the loss is then not
    zero at s = r).
    """
    bb = KnownBackbone(seed=1)
    obj = SEDD(bb, Cosine(EPS), mask_id=MASK, vocab_size=V, pad_id=PAD, never_predict=SPECIAL)
    out = obj.nelbo(X0, t=T_FIXED, generator=torch.Generator().manual_seed(13))

    keep = [v for v in range(V) if v not in EXCLUDED]
    x0 = X0.numpy()
    for b, t in enumerate(T_FIXED.tolist()):
        a, om, da = f("cosine", t)
        sigma, dsigma = -math.log(a), -da / a
        masked = hand_masks(13, np.ones_like(x0, dtype=bool), np.full(3, om))[b]
        xt = np.where(masked, MASK, x0[b])
        z = bb.numpy_logits(xt, sigma)
        r_true = 1.0 / math.expm1(sigma)
        total = 0.0
        for pos in np.flatnonzero(masked):
            for y in keep:
                log_s = z[pos, y] - math.log(K) - math.log(math.expm1(sigma))
                r = r_true if y == x0[b, pos] else 0.0
                total += math.exp(log_s) - (r * log_s if r else 0.0) + (r * (math.log(r) - 1) if r else 0.0)
        assert masked.any()
        assert float(out.per_sequence[b]) == pytest.approx(dsigma * total, rel=1e-5), b


class Oracle(nn.Module):
    """Logits 1e4 on the clean token at every position: -log p(x0 | x_t) = 0 exactly, so only the prior is left."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, ids, sigma):
        return torch.nn.functional.one_hot(self.x0, V).float() * 1e4


def test_d3pm_prior_term_alone_against_the_kl_written_out():
    """D3PM's prior term by itself (the oracle denoiser makes every step's KL exactly 0), against
    KL(q(x_1 | x0) || prior) summed category by category: q puts alpha(1) on x0 and 1 - alpha(1) on [MASK];
    the prior 1 - alpha(1) on [MASK] and alpha(1) / K on each of the K = 5 predictable tokens. One term per
    counted position (with N not counted: per A/C/G/T position).

    Catches: log V (10 ids) in place of log K; (1 - alpha(1)) log K; the prior left out, or multiplied by the
    number of grid terms like the step term, or paid once per sequence; N positions paying it when not counted.
    """
    a1 = 1.0 - (1.0 - EPS)  # log-linear alpha(1) = eps
    q = {"x0": a1, "mask": 1.0 - a1}
    prior = {"x0": a1 / K, "mask": 1.0 - a1}
    kl = sum(q[k] * math.log(q[k] / prior[k]) for k in q)
    assert kl == pytest.approx(EPS * math.log(5), rel=1e-12)
    for counted in (None, X0 != N_ID):
        obj = D3PM(Oracle(X0), LogLinear(EPS), mask_id=MASK, vocab_size=V, num_steps=50, pad_id=PAD,
                   never_predict=SPECIAL)
        out = obj.nelbo(X0, t=torch.tensor([0.02, 0.5, 1.0]), generator=torch.Generator().manual_seed(0),
                        counted=counted)
        n_counted = (torch.ones_like(X0, dtype=torch.bool) if counted is None else counted).sum(-1)
        torch.testing.assert_close(out.per_sequence, kl * n_counted.float(), rtol=1e-6, atol=0)
        assert out.num_tokens.tolist() == n_counted.tolist()


def test_d3pm_one_step_estimate_pinned_to_a_hand_computation():
    """The unbiased one-step D3PM estimate at grid steps i = 0 (reconstruction), 3 and T of a geometric
    schedule (alpha(0) < 1, so T + 1 grid terms), against Austin et al. / Sahoo et al. eq. 8 by hand:
    (T + 1) * (alpha_s - alpha_t) / (1 - alpha_t) * sum over masked -log p(x0 | x_t), plus alpha(1) log K per
    token; the reconstruction term's coefficient is 1.

    Catches: T in place of T + 1 grid terms (reconstruction forgotten); the step coefficient
    (alpha_s - alpha_t) / alpha_s or (1 - alpha_s) / (1 - alpha_t); s = t_{i+1} instead of t_{i-1}.
    """
    T = 10
    bb = KnownBackbone(seed=2)
    obj = D3PM(bb, Geometric(1e-4, 20.0), mask_id=MASK, vocab_size=V, num_steps=T, pad_id=PAD,
               never_predict=SPECIAL)
    steps = [0, 3, T]
    t = torch.tensor([i / T for i in steps], dtype=torch.float64)
    x0 = np.stack([X0.numpy()[0]] * 3)
    x0_t = torch.from_numpy(x0)
    out = obj.nelbo(x0_t, t=t, generator=torch.Generator().manual_seed(11))
    u = torch.rand(x0.shape, generator=torch.Generator().manual_seed(11)).numpy()
    prior = f("geometric", 1.0)[0] * math.log(K)
    for b, i in enumerate(steps):
        a_t, om_t, _ = f("geometric", i / T)
        a_s = f("geometric", max(i - 1, 0) / T)[0]
        coef = 1.0 if i == 0 else (a_s - a_t) / om_t
        masked = u[b] < om_t
        xt = np.where(masked, MASK, x0[b])
        logp = predictable_log_probs(bb, xt, -math.log(a_t))
        nll = -logp[np.arange(x0.shape[1]), x0[b]]
        expected = (T + 1) * coef * nll[masked].sum() + prior * x0.shape[1]
        assert float(out.per_sequence[b]) == pytest.approx(expected, rel=1e-5, abs=1e-9), i
    assert int(masked.sum()) > 0 and out.per_sequence[1] > 0


# ----------------------------------------------------------------------------------------------------
# samplers


class TimeToy:
    """A time-conditioned SUBS denoiser on 1-token windows: p(x0 = v | [MASK], t) = softmax(t * w)_v over A/C/G/T.

    Records every (t, x_t) it is called with, so a test can read the sampler's whole trajectory.
    """

    time_conditioned = True
    mask_id = MASK
    w = torch.tensor([3.0, 0.0, -2.0, 1.0], dtype=torch.float64)

    def __init__(self, schedule):
        self.schedule, self.calls = schedule, []

    @classmethod
    def probs(cls, t: float) -> np.ndarray:
        e = np.exp(t * cls.w.numpy())
        return e / e.sum()

    def subs_log_probs(self, xt, t):
        self.calls.append((t.clone(), xt.clone()))
        logp = torch.full((*xt.shape, V), float("-inf"), dtype=torch.float64)
        logp[..., :4] = torch.log_softmax(t.double()[:, None, None] * self.w, dim=-1).expand(*xt.shape, 4)
        carry = torch.full_like(logp, float("-inf")).scatter_(-1, xt[..., None], 0.0)
        return torch.where((xt != MASK)[..., None], carry, logp).float()


def test_ancestral_transition_probabilities_pinned_for_a_time_dependent_denoiser():
    """Every step of a T = 4 ancestral run under a cosine schedule, from the recorded trajectory of 60,000
    one-token windows: among the windows still masked at t, the share that stays masked must be
    (1 - alpha_s) / (1 - alpha_t) and the share that becomes v must be (alpha_s - alpha_t) / (1 - alpha_t) *
    p(v | t) (Sahoo et al. eq. 7) for a denoiser whose p(v | t) changes with t; the times it is called at are
    exactly 1, 3/4, 1/2, 1/4. Each of the 4 x 5 cells within 5 binomial standard deviations (fixed seed).

    Catches: (1 - alpha_s) in place of (1 - alpha_s) / (1 - alpha_t) (z ~ 40 at the second step); a sampler
    stepping on another schedule than the model's (log-linear here); the denoiser called at s instead of t, or
    on a shifted time grid. The time-agnostic toy joint of test_samplers.py passes all of these.
    """
    T, n = 4, 60_000
    model = TimeToy(Cosine(EPS))
    out = AncestralSampler(steps=T)(model, masked_init(n, 1, MASK), torch.Generator().manual_seed(0))
    assert [float(t[0]) for t, _ in model.calls] == [1.0, 0.75, 0.5, 0.25]
    states = [x[:, 0] for _, x in model.calls] + [out.ids[:, 0]]
    for i in range(T):
        t, s = 1 - i / T, 1 - (i + 1) / T
        a_t, om_t, _ = f("cosine", t)
        a_s, om_s, _ = f("cosine", s)
        if s == 0:
            a_s, om_s = 1.0, 0.0
        expected = np.append((a_s - a_t) / om_t * TimeToy.probs(t), om_s / om_t)  # A C G T, stay masked
        start = states[i] == MASK
        nxt = states[i + 1][start]
        counts = np.array([int((nxt == v).sum()) for v in (0, 1, 2, 3, MASK)])
        m = int(start.sum())
        assert counts.sum() == m > 1000
        sd = np.sqrt(m * expected * (1 - expected))
        z = np.abs(counts - m * expected) / np.maximum(sd, 1e-12)
        assert (z < 5).all() and (counts[expected == 0] == 0).all(), (i, counts, m * expected)


def test_categorical_draws_hit_probabilities_near_1e_8_at_their_rate(monkeypatch):
    """Inverse-CDF draws of a row holding 100 tokens of probability 1e-8 each between two large masses (0.3 before,
    0.7 - 1e-6 after), the case of the last steps of T = 1000 sampling. The uniforms are real seeded draws
    restricted to the window [0.3 - 2e-7, 0.3 + 1.2e-6) of the CDF around those tokens (torch.rand rescaled
    to it: importance sampling, each tiny token then has conditional probability 1e-8 / 1.4e-6), so 200,000
    draws give ~1,430 hits per tiny token: each of the 102 cells within 5 binomial standard deviations.

    The row is left unnormalised (total 2), as the sampler passes it.

    Catches: float32 draws (the CDF steps of 1e-8 vanish beside 0.3 in float32: most tiny tokens are never
    drawn, the others several times too often), e.g. a float32 default; the uniform not scaled by the row's total.
    """
    lo, width = 0.3 - 2e-7, 1.4e-6
    real_rand = torch.rand

    def zoomed(*shape, generator=None, device=None, dtype=None):
        return lo + width * real_rand(*shape, generator=generator, device=device, dtype=dtype)

    probs = 2.0 * torch.tensor([0.3] + [1e-8] * 100 + [0.7 - 1e-6], dtype=torch.float64)
    n = 200_000
    monkeypatch.setattr(samplers.torch, "rand", zoomed)
    draws = sample_categorical(probs.expand(n, -1), torch.Generator().manual_seed(0))
    monkeypatch.setattr(samplers.torch, "rand", real_rand)
    counts = torch.bincount(draws, minlength=102).numpy()
    # the conditional probabilities, exactly: 2e-7 of token 0, 1e-8 each, and 2e-7 of the last token
    expected = np.array([2e-7] + [1e-8] * 100 + [2e-7]) / width
    sd = np.sqrt(n * expected * (1 - expected))
    z = np.abs(counts - n * expected) / sd
    assert z.max() < 5, (z.argmax(), counts[z.argmax()], n * expected[z.argmax()])


SAR_GEOMETRY = [
    # (L, block_len, overlap) -> (start, first new, end) per block, worked out by hand
    ((40, 16, 6), [(0, 0, 16), (10, 16, 26), (20, 26, 36), (24, 36, 40)]),
    ((53, 16, 6), [(0, 0, 16), (10, 16, 26), (20, 26, 36), (30, 36, 46), (37, 46, 53)]),
    ((32, 16, 8), [(0, 0, 16), (8, 16, 24), (16, 24, 32)]),
    ((17, 16, 0), [(0, 0, 16), (1, 16, 17)]),
    ((16, 16, 6), [(0, 0, 16)]),
    ((10, 16, 6), [(0, 0, 10)]),
]


@pytest.mark.parametrize(("args", "spans"), SAR_GEOMETRY, ids=[str(a) for a, _ in SAR_GEOMETRY])
def test_sar_block_geometry_exactly(args, spans):
    """The semi-autoregressive blocks for a few (L, block_len, overlap), including a last block that would be
    short: every block spans block_len tokens (the last slides back to end at L with more context), each
    after the first keeps at least ``overlap`` context, and the generated parts tile [0, L) once. Checked on the
    sampler's own plan and on what the denoiser is called with (a spy recording each block's first input).

    Catches: an off-by-one in the overlap (which keeps the block count and the maximum input length that
    test_samplers.py checks); a last block shorter than the training window; a gap or a double generation
    between blocks.
    """
    L, block_len, overlap = args
    sar = SemiAutoregressiveSampler(AncestralSampler(steps=3), block_len=block_len, overlap=overlap)
    assert sar.block_spans(L) == spans
    seen = []

    class Spy:
        time_conditioned, mask_id, schedule = False, MASK, LogLinear()

        def subs_log_probs(self, xt, t):
            seen.append(xt.clone())
            logp = torch.full((*xt.shape, V), float("-inf"))
            logp[..., :4] = math.log(0.25)
            carry = torch.full_like(logp, float("-inf")).scatter_(-1, xt[..., None], 0.0)
            return torch.where((xt != MASK)[..., None], carry, logp)

    out = sar(Spy(), masked_init(2, L, MASK), torch.Generator().manual_seed(0))
    firsts = seen[::3]  # 3 steps per block: the first call of each block shows its context and its new part
    assert len(firsts) == len(spans) == out.extra["blocks"]
    for x, (start, new, end) in zip(firsts, spans):
        assert x.shape[1] == end - start == min(block_len, L)
        assert (x[:, : new - start] < 4).all()  # the context is already generated
        assert (x[:, new - start :] == MASK).all()  # the new part is all to generate
        assert torch.equal(x[:, : new - start], out.ids[:, start:new])  # and kept unchanged
    assert (out.ids < 4).all()


# ----------------------------------------------------------------------------------------------------
# the selective scan against mamba-ssm's selective_scan_ref semantics, transcribed afresh


def scan_by_hand(u, delta, A, B, C, D, z, delta_bias):
    """mamba-ssm's selective_scan_ref, one scalar at a time in Python floats (delta_softplus=True).

    u, delta, z: [b][d][l]; A: [d][n]; B, C: [b][g][n][l] (G groups of D / G consecutive channels each);
    channel c reads group c // (D / G).
    """
    b_, d_, l_ = len(u), len(u[0]), len(u[0][0])
    n_, g_ = len(A[0]), len(B[0])
    out = [[[0.0] * l_ for _ in range(d_)] for _ in range(b_)]
    for b in range(b_):
        for c in range(d_):
            g = c // (d_ // g_)
            h = [0.0] * n_
            for t in range(l_):
                dt = math.log1p(math.exp(delta[b][c][t] + delta_bias[c]))
                h = [math.exp(dt * A[c][k]) * h[k] + dt * B[b][g][k][t] * u[b][c][t] for k in range(n_)]
                y = sum(C[b][g][k][t] * h[k] for k in range(n_)) + D[c] * u[b][c][t]
                out[b][c][t] = y * z[b][c][t] / (1.0 + math.exp(-z[b][c][t]))
    return out


def scan_cases() -> list:
    """Each CPU backend that exists, in float64 where it computes in float64, in float32 where it computes in
    float32 (a backend added later, such as a compiled CPU kernel, is included); ``auto`` in both, since
    float32 is what models run."""
    cases = [("auto", torch.float64), ("auto", torch.float32), ("reference", torch.float64), ("torch", torch.float64)]
    cases += [(b, torch.float32) for b in ss.SCAN_BACKENDS if b not in ("auto", "reference", "torch", "cuda", "triton")]
    return [pytest.param(b, dt, id=f"{b}-{str(dt)[6:]}") for b, dt in cases]


@pytest.mark.parametrize(("backend", "dtype"), scan_cases())
@pytest.mark.parametrize("groups", [None, 1, 2, 4])
def test_selective_scan_pinned_to_the_published_recurrence(backend, dtype, groups):
    """Our public ``selective_scan`` on each CPU backend against the recurrence of the Mamba paper (as
    mamba-ssm's selective_scan_ref: h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = C_t h_t + D u_t,
    out = y silu(z), delta = softplus(delta + bias)) written out above in Python floats, for shared B/C and
    for 1, 2 and 4 groups of channels; L = 11 crosses chunks of 4. To 1e-11 in float64, 1e-4 in float32 (the
    hand computation then takes the float32-rounded inputs).

    Catches (in code that every backend shares, which the backend-vs-backend tests cannot see): grouped B/C
    tiled over the channels (``repeat``) instead of each group covering D/G consecutive channels
    (``repeat_interleave``); softplus applied before adding delta_bias; the D skip or the silu(z) gate dropped
    or applied before the scan; exp(delta A) with A's sign or the state update's delta factor lost.
    """
    g = torch.Generator().manual_seed(3)
    bsz, d, n, L = 2, 4, 3, 11
    bc = (bsz, n, L) if groups is None else (bsz, groups, n, L)
    x = {
        "u": torch.randn(bsz, d, L, generator=g, dtype=torch.float64),
        "delta": torch.randn(bsz, d, L, generator=g, dtype=torch.float64),
        "A": -(torch.rand(d, n, generator=g, dtype=torch.float64) * 2 + 0.1),
        "B": torch.randn(*bc, generator=g, dtype=torch.float64),
        "C": torch.randn(*bc, generator=g, dtype=torch.float64),
        "D": torch.randn(d, generator=g, dtype=torch.float64),
        "z": torch.randn(bsz, d, L, generator=g, dtype=torch.float64),
        "delta_bias": torch.randn(d, generator=g, dtype=torch.float64),
    }
    x = {k: v.to(dtype) for k, v in x.items()}
    kw = {"chunk_size": 4} if backend == "torch" else {}
    y = ss.selective_scan(**x, delta_softplus=True, backend=backend, **kw)
    assert y.dtype == dtype
    lists = {k: (v.unsqueeze(1) if k in ("B", "C") and groups is None else v).double().tolist() for k, v in x.items()}
    expected = torch.tensor(scan_by_hand(**lists), dtype=torch.float64)
    tol = 1e-11 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------------------------
# Mamba and Caduceus against a numpy transcription of the published block


def np_silu(x):
    return x / (1.0 + np.exp(-x))


def np_mamba(m: Mamba, h: np.ndarray) -> np.ndarray:
    """mamba-ssm's Mamba (mamba_simple, non-fused path) on one sequence h [L, d_model], in numpy float64:
    in_proj -> (x, z); x = silu(causal depthwise conv(x)); (dt, B, C) = x_proj(x); dt = softplus(dt_proj(dt));
    the selective scan with A = -exp(A_log); y = (y + D x) * silu(z); out_proj."""
    P = {k: v.detach().double().numpy() for k, v in m.state_dict().items()}
    L, di, N, R = h.shape[0], m.d_inner, m.d_state, m.dt_rank
    xz = h @ P["in_proj.weight"].T + P.get("in_proj.bias", 0.0)
    x, z = xz[:, :di], xz[:, di:]
    w, kw = P["conv1d.weight"][:, 0, :], P["conv1d.weight"].shape[-1]  # [di, K]
    conv = np.zeros_like(x) + P.get("conv1d.bias", 0.0)
    for t in range(L):
        for k in range(kw):
            src = t - (kw - 1) + k  # output t sees inputs t-K+1 .. t only
            if src >= 0:
                conv[t] += w[:, k] * x[src]
    x = np_silu(conv)
    dbl = x @ P["x_proj.weight"].T
    dt_in, Bm, Cm = dbl[:, :R], dbl[:, R : R + N], dbl[:, R + N :]
    dt = np.log1p(np.exp(dt_in @ P["dt_proj.weight"].T + P["dt_proj.bias"]))  # [L, di]
    A = -np.exp(P["A_log"])
    state, y = np.zeros((di, N)), np.zeros((L, di))
    for t in range(L):
        state = np.exp(dt[t][:, None] * A) * state + (dt[t] * x[t])[:, None] * Bm[t][None, :]
        y[t] = state @ Cm[t] + P["D"] * x[t]
    y = y * np_silu(z)
    return y @ P["out_proj.weight"].T + P.get("out_proj.bias", 0.0)


def np_rmsnorm(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def randomize(module: nn.Module, seed: int) -> None:
    """Every parameter drawn afresh (float32-representable), so nothing rests on the initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.5 if "A_log" not in name else 1.0
            p.copy_((torch.randn(p.shape, generator=g) * scale).to(p.dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_mamba_mixer_pinned_to_the_published_block(dtype):
    """Our Mamba mixer (and BiMamba) with every weight random against the numpy transcription above: d_model 3,
    expand 2, d_state 2, d_conv 3, dt_rank 2, L 6, with biases on; in float64 (1e-6: A, D and the dt bias go
    through float32 inside) and in float32, the default CPU scan backend's path (1e-4).

    Catches: the conv made non-causal or its taps reversed; (dt, B, C) split in another order; dt_proj's bias
    added twice or not at all; A = exp(A_log) (no minus); the z gate or the D skip dropped; in BiMamba, the
    reverse direction not flipped back, or its projections not the forward ones when tied.
    """
    torch.manual_seed(0)
    tol = {"rtol": 1e-6, "atol": 1e-7} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    m = Mamba(3, d_state=2, d_conv=3, expand=2, dt_rank=2, bias=True, scan_backend="auto").to(dtype)
    randomize(m, 1)
    h = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(2)).to(dtype)
    with torch.no_grad():
        out = m(h).double()
    for b in range(2):
        np.testing.assert_allclose(out[b].numpy(), np_mamba(m, h[b].double().numpy()), **tol)

    bi = BiMamba(3, bidirectional=True, weight_tie=True, d_state=2, d_conv=3, expand=2, dt_rank=2,
                 bias=True).to(dtype)
    randomize(bi, 3)
    with torch.no_grad():
        out = bi(h).double()
    for b in range(2):
        x = h[b].double().numpy()
        expected = np_mamba(bi.mamba_fwd, x) + np_mamba(bi.mamba_rev, x[::-1].copy())[::-1]
        np.testing.assert_allclose(out[b].numpy(), expected, **tol)


def np_trunk(model: Caduceus, hidden: np.ndarray) -> np.ndarray:
    """mamba-ssm's MixerModel with prenorm residual blocks: residual += hidden; hidden = mixer(norm(residual));
    at the end norm_f(residual + hidden). hidden [L, d_model] is the embedded input."""
    eps = model.cfg.norm_eps
    residual = None
    for block in model.layers:
        residual = hidden if residual is None else residual + hidden
        x = np_rmsnorm(residual, block.norm.weight.detach().double().numpy(), eps)
        mixer = block.mixer
        hidden = np_mamba(mixer.mamba_fwd, x) + np_mamba(mixer.mamba_rev, x[::-1].copy())[::-1]
    return np_rmsnorm(residual + hidden, model.norm_f.weight.detach().double().numpy(), eps)


COMP = np.array(TOK.complement_ids)


@pytest.mark.parametrize("kind", ["bimamba", "caduceus_ps_swap", "caduceus_ps_noswap", "caduceus_ph"])
def test_caduceus_pinned_to_a_hand_computation(kind):
    """Two-layer (BiMamba) and one-layer (Caduceus-PS / -PH) backbones with every weight random, against numpy:
    embedding -> the prenorm BiMamba trunk above -> logits against the tied embedding matrix E.
    Caduceus-PS: logits(x)_l = <z_fwd,l, E> + <z_rc,L-1-l, E_comp> with z_fwd the trunk on the forward stream and
    z_rc on the reverse-complement stream (the RC of the ids, embedded); with the reference's fused add-norm
    swap the two streams trade places, each reverse-complemented (length and channels flipped), before the
    block. Caduceus-PH (eval): the mean of the plain logits on x and on RC(x) mapped back.

    Catches: the final residual add or norm dropped; RMSNorm's eps outside the square root; PS's two head terms
    averaged (PH's rule) or the complement left out of the mapped-back logits; the swap not flipping the
    channels, or applied to the wrong stream; an untied head. RC-equivariance tests pass several of these.
    """
    rcps, posthoc = kind.startswith("caduceus_ps"), kind == "caduceus_ph"
    cfg = CaduceusConfig(vocab_size=V, d_model=4, n_layers=2 if kind == "bimamba" else 1, d_state=2, d_conv=3,
                         expand=2, dt_rank=2, rcps=rcps, posthoc=posthoc, rcps_swap_halves=kind.endswith("_swap"),
                         scan_backend="auto")
    torch.manual_seed(0)
    model = Caduceus(cfg, complement_ids=TOK.complement_ids).double().eval()
    randomize(model, 5)
    ids = torch.tensor([[0, 1, 2, 3, 4, 2, 2, 0], [3, 3, 1, 0, 2, 4, 1, 1]])
    with torch.no_grad():
        out = model(ids).numpy()
    E = model.embedding.weight.detach().double().numpy()
    for b in range(2):
        x = ids[b].numpy()
        rc = COMP[x[::-1]]
        if kind == "bimamba":
            expected = np_trunk(model, E[x]) @ E.T
        elif kind == "caduceus_ph":
            plain, on_rc = np_trunk(model, E[x]) @ E.T, np_trunk(model, E[rc]) @ E.T
            expected = 0.5 * (plain + on_rc[::-1][:, COMP])
        else:
            fwd_in, rc_in = E[x], E[rc]
            if cfg.rcps_swap_halves:  # [z_fwd; z_rc] -> [RC(z_rc); RC(z_fwd)], RC flipping length and channels
                fwd_in, rc_in = rc_in[::-1, ::-1].copy(), fwd_in[::-1, ::-1].copy()
            z_fwd, z_rc = np_trunk(model, fwd_in), np_trunk(model, rc_in)
            expected = z_fwd @ E.T + (z_rc @ E.T)[::-1][:, COMP]
        np.testing.assert_allclose(out[b], expected, rtol=1e-6, atol=1e-7)
