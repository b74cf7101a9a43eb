"""SEDD's score entropy: its definition, its sign, its zero, and its relation to MDLM's loss."""

import itertools
import math

import torch
from torch import nn

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.mdlm import MDLM
from mdlm_dna.diffusion.noise import build_schedule
from mdlm_dna.diffusion.sedd import SEDD, score_entropy

from .test_mdlm import random_model

tok = NucleotideTokenizer()
NEVER = tok.special_ids_not_in_data
K = 5  # A C G T N can be predicted


def make(schedule="loglinear", backbone=None, seed=0) -> SEDD:
    kw = {"eps": 1e-3} if schedule != "geometric" else {}
    return SEDD(
        backbone if backbone is not None else random_model(seed),
        build_schedule(schedule, **kw),
        mask_id=tok.mask_id,
        vocab_size=tok.vocab_size,
        pad_id=tok.pad_id,
        never_predict=NEVER,
    )


class Oracle(nn.Module):
    """Outputs fixed logits z: log K at the tokens of one sequence x0, -inf elsewhere."""

    def __init__(self, x0: torch.Tensor, offset: float = 0.0):
        super().__init__()
        z = torch.full((*x0.shape, tok.vocab_size), float("-inf"), dtype=torch.float64)
        self.register_buffer("z", z.scatter(-1, x0[..., None], math.log(K) + offset))

    def forward(self, ids, sigma):
        return self.z.expand(ids.shape[0], -1, -1)


class Normalised(nn.Module):
    """Wraps a backbone so that sum_y exp(z_y) over the predictable tokens is K (SUBS-style normalisation)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, ids, sigma):
        z = self.inner(ids, sigma).index_fill(-1, torch.tensor([tok.mask_id, *NEVER]), float("-inf"))
        return torch.log_softmax(z, -1) + torch.log(torch.tensor(float(K)))


def test_loss_is_the_diffusion_weighted_score_entropy():
    # the stable form in SEDD.nelbo against the textbook definition, on the same x_t
    obj = make("cosine")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 5, (16, 24), generator=g)
    t = torch.rand(16, generator=g, dtype=torch.float64) * 0.98 + 0.01
    with torch.no_grad():
        out = obj.nelbo(x0, t=t, generator=torch.Generator().manual_seed(3))
        xt = obj.add_noise(x0, t, torch.Generator().manual_seed(3))
        log_s = obj.log_scores(xt, t)
    a = obj.schedule.alpha(t)
    ratio = torch.zeros_like(log_s).scatter(-1, x0[..., None], (a / (1 - a))[:, None, None].expand(-1, 24, 1))
    dsigma = -obj.schedule.alpha_prime(t) / a
    masked = xt == tok.mask_id
    se = torch.where(masked, score_entropy(log_s, ratio), torch.zeros(()))
    assert masked.any() and (~masked).any()
    torch.testing.assert_close(out.per_sequence, dsigma * se.sum(-1), rtol=1e-9, atol=1e-9)


def test_loss_is_non_negative():
    obj = make("loglinear", seed=1)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 5, (256, 16), generator=g)
    with torch.no_grad():
        out = obj.nelbo(x0, generator=g)
    assert (out.per_sequence >= 0).all() and (out.per_sequence > 0).any()
    # and the reference definition, per position, for arbitrary scores and ratios
    log_s, r = torch.randn(1000, 6, dtype=torch.float64) * 3, torch.rand(1000, 6, dtype=torch.float64) * 5
    r[:, :3] = 0
    assert (score_entropy(log_s, r) >= 0).all()


def test_zero_when_the_scores_are_the_true_ratios_of_a_point_mass():
    x = torch.tensor([[0, 2, 3, 1, 4, 0]])
    x0 = x.expand(512, -1).contiguous()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        exact = make("loglinear", backbone=Oracle(x[0])).nelbo(x0, generator=g)
        off = make("loglinear", backbone=Oracle(x[0], offset=0.1)).nelbo(x0, generator=g)
    assert exact.per_sequence.abs().max() < 1e-12
    assert (off.per_sequence > 0).any() and (off.per_sequence >= 0).all()


def test_score_entropy_vanishes_at_the_marginal_ratios_of_a_toy_distribution():
    # data: a random distribution over {A, C}^3. For each x_t, the true concrete score at a masked position l is
    # p_t(x_t with y at l) / p_t(x_t); the score entropy there is zero, elsewhere positive, and the denoising
    # version (ratios of q(.|x0)) differs from it by a constant that does not depend on the scores (Lou et al.).
    L, vocab, a = 3, 2, 0.37  # alpha(t)
    g = torch.Generator().manual_seed(0)
    seqs = list(itertools.product(range(vocab), repeat=L))
    p0 = torch.rand(len(seqs), generator=g, dtype=torch.float64)
    p0 /= p0.sum()
    M = vocab  # id of [MASK] in the toy alphabet
    states = list(itertools.product(range(vocab + 1), repeat=L))

    def q(xt, x0):  # q(x_t | x0) at alpha = a
        return float(
            torch.tensor(
                [(1 - a) if s == M else (a if s == c else 0.0) for s, c in zip(xt, x0)], dtype=torch.float64
            ).prod()
        )

    pt = {xt: sum(p0[i].item() * q(xt, x0) for i, x0 in enumerate(seqs)) for xt in states}

    def sub(xt, pos, y):
        return tuple(y if j == pos else s for j, s in enumerate(xt))

    def losses(log_scores):  # expected SE over p_t and expected DSE over p0 q, summed over masked positions
        se = dse = 0.0
        for xt in states:
            for pos in (j for j in range(L) if xt[j] == M):
                ls = log_scores[xt][pos]
                true_r = torch.tensor([pt[sub(xt, pos, y)] / pt[xt] for y in range(vocab)], dtype=torch.float64)
                se += pt[xt] * score_entropy(ls, true_r).item()
                for i, x0 in enumerate(seqs):
                    w = p0[i].item() * q(xt, x0)
                    if w:
                        cond_r = torch.tensor(
                            [a / (1 - a) if y == x0[pos] else 0.0 for y in range(vocab)], dtype=torch.float64
                        )
                        dse += w * score_entropy(ls, cond_r).item()
        return se, dse

    true_scores = {
        xt: [
            torch.log(torch.tensor([pt[sub(xt, j, y)] / pt[xt] for y in range(vocab)], dtype=torch.float64))
            if xt[j] == M
            else None
            for j in range(L)
        ]
        for xt in states
    }
    other_scores = {
        xt: [None if s is None else s + torch.randn(vocab, generator=g, dtype=torch.float64) for s in v]
        for xt, v in true_scores.items()
    }
    se_true, dse_true = losses(true_scores)
    se_other, dse_other = losses(other_scores)
    assert abs(se_true) < 1e-12 and se_other > 1e-3
    assert abs((dse_other - se_other) - (dse_true - se_true)) < 1e-12
    assert dse_other > dse_true  # the denoising loss is minimised by the marginal ratios


def test_sedd_bound_is_looser_than_mdlm_and_equal_when_normalised():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 5, (64, 16), generator=g)
    for backbone in (random_model(2), Normalised(random_model(2))):
        sedd = make("loglinear", backbone=backbone)
        mdlm = MDLM(backbone, sedd.schedule, mask_id=tok.mask_id, pad_id=tok.pad_id, never_predict=NEVER)
        with torch.no_grad():
            s = sedd.nelbo(x0, generator=torch.Generator().manual_seed(1)).per_sequence
            m = mdlm.nelbo(x0, generator=torch.Generator().manual_seed(1)).per_sequence
        assert (s >= m - 1e-9).all()
        if isinstance(backbone, Normalised):
            torch.testing.assert_close(s, m, rtol=1e-9, atol=1e-9)
        else:
            assert (s > m + 1e-3).any()


def test_loss_finite_at_both_ends_of_time_and_padding_ignored():
    obj = make("loglinear")
    obj.backbone.float()
    x0 = torch.randint(0, 4, (4, 64))
    x0[:, -5:] = tok.pad_id
    for t in (torch.full((4,), 1e-3), torch.full((4,), 1.0), torch.full((4,), 1e-7)):
        out = obj.nelbo(x0, t=t)
        out.per_token.backward()
        assert torch.isfinite(out.per_sequence).all() and (out.num_tokens == 59).all()
        assert all(torch.isfinite(p.grad).all() for p in obj.parameters() if p.grad is not None)
        obj.zero_grad()
