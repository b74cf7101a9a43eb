"""MDLM: masked diffusion with the SUBS parameterization and the continuous-time NELBO.

Forward process: each token is independently replaced by [MASK] with
probability 1 - alpha(t). The denoiser's SUBS parameterization puts zero mass
on [MASK] and copies every unmasked token through unchanged, so the
Rao-Blackwellized continuous-time NELBO reduces to a weighted cross-entropy on
the masked positions:

    NELBO(x) = E_{t ~ U[0,1], x_t ~ q(.|x, t)} [ -alpha'(t) / (1 - alpha(t))
               * sum_{l: x_t^l = [MASK]} -log p(x^l | x_t) ]

(Sahoo et al. 2024, eq. 10). t is drawn low-discrepancy (one uniform offset
per batch, strided by 1/B) from [t_min, 1].

What training minimises (and the reference code reports) is not quite the bound of
the sampler, which starts from all-[MASK]: the tokens that alpha(1) = eps > 0 leaves
unmasked at t = 1 are never paid for (eps x the loss, ~0.002 bits/base on E. coli:
enough to put a model below an exact likelihood, a Markov chain or an AR model, that it
does not beat), and the mean over t in [t_min, 1] stands for the integral over [0, 1]
(t_min x (the bound - the masked loss at t ~ 0): ~1e-5 bits/base). :meth:`MDLM.full_bound`
scores the whole bound of the sampler instead.

SUBS's two parts can be switched off, for the paper's ablation; the bound then
keeps the terms they remove. Without carry-over the unmasked positions' reverse
steps still cost nothing (the posterior q(z_s | z_t = c, x_theta) is a point mass
on c for any x_theta with x_theta[c] > 0), but the reconstruction term
-log p_theta(x | z_0) at t = 0 is no longer zero: the network has to learn to copy
what it sees. Without zero masking p_theta(x_s | x_t) is D3PM's posterior with
x_theta's own mass on [MASK] (a clean token that is [MASK] stays masked), and each
masked token pays, with x_m = x_theta[MASK], u(a) = a x_m / (1 - a):

    discrete (s = t - 1/T):  log(1 + u(alpha_t)) - A log x_theta[x] - B log(1 + u(alpha_s)),
                             A = (alpha_s - alpha_t) / (1 - alpha_t), B = (1 - alpha_s) / (1 - alpha_t)
    continuous (T -> inf):   -alpha'/(1 - alpha) * [log(1 + u(alpha)) - log x_theta[x] - x_m / (1 - alpha + alpha x_m)]

both of which reduce to the SUBS terms when x_m = 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mdlm_dna.diffusion.noise import NoiseSchedule
from mdlm_dna.diffusion.strands import strand_mixture


@dataclass
class DrawnNoise:
    """The forward process's uniforms, drawn by the caller: one row per sequence.

    Passed where a ``torch.Generator`` would go. Training draws them per sample (keyed by the
    sample's place in the global batch), so the noise a sequence gets does not depend on how the
    global batch is split over devices and accumulation steps.
    """

    t_uniform: torch.Tensor  # [B] in [0, 1): the time, already stratified across the global batch
    mask_uniform: torch.Tensor  # [B, L] in [0, 1): position l is masked when below 1 - alpha(t)


Randomness = torch.Generator | DrawnNoise | None


@dataclass
class NELBO:
    """Per-sequence NELBO terms of a batch, in nats."""

    per_sequence: torch.Tensor  # [B], summed over positions
    num_tokens: torch.Tensor  # [B], positions that count (not padding, nor N bases unless they count)

    @property
    def per_token(self) -> torch.Tensor:
        """Mean nats per token over the batch: what the optimizer minimises."""
        return self.per_sequence.sum() / self.num_tokens.sum().clamp_min(1)


def counted_positions(x0: torch.Tensor, pad_id: int | None, counted: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L] bool: the positions an objective noises, predicts and counts.

    ``counted`` given by the caller (e.g. all but the N bases) wins, else every position but padding. The other
    positions are given context: never masked, never predicted, counted in neither the NELBO nor the tokens.
    """
    if counted is not None:
        return counted.to(torch.bool)
    return (x0 != pad_id) if pad_id is not None else torch.ones_like(x0, dtype=torch.bool)


def mask_positions(x0: torch.Tensor, p_mask: torch.Tensor, mask_id: int, counted: torch.Tensor,
                   u: torch.Tensor) -> torch.Tensor:
    """x_t of the masked forward process: [MASK] where ``u < p_mask`` ([B, 1] or [B, L]) at ``counted`` positions.

    >>> mask_positions(torch.tensor([[0, 1, 2]]), torch.tensor([[0.5]]), 5, torch.tensor([[True, True, False]]),
    ...                torch.tensor([[0.1, 0.9, 0.1]])).tolist()
    [[5, 1, 2]]
    """
    return torch.where((u < p_mask) & counted, torch.full_like(x0, mask_id), x0)


class MDLM(nn.Module):
    """The MDLM objective around any backbone ``(ids, sigma) -> logits``."""

    def __init__(
        self,
        backbone: nn.Module,
        schedule: NoiseSchedule,
        mask_id: int,
        pad_id: int | None = None,
        t_min: float = 1e-3,
        antithetic: bool = True,
        never_predict: Sequence[int] = (),
        num_steps: int | None = None,
        zero_masking: bool = True,
        carry_over: bool = True,
    ):
        """``never_predict``: ids besides [MASK] that cannot occur in clean data (for DNA the special
        tokens), also given zero mass, so a small model does not spend its first steps learning that.

        ``num_steps`` T: the discrete-time NELBO instead (the paper's ablation): t on the grid i / T,
        each masked token weighted T (alpha_s - alpha_t) / (1 - alpha_t) with s = t - 1/T; a looser bound
        that tends to the continuous one as T grows. ``t_min`` does not apply (t >= 1/T).

        ``zero_masking`` / ``carry_over`` false: SUBS without that part (the paper's ablation; see the module
        docstring for the bound's extra terms). Samplers still get a SUBS distribution from
        :meth:`subs_log_probs`."""
        super().__init__()
        if num_steps is not None and int(num_steps) < 1:
            raise ValueError(f"num_steps must be a positive integer or null (continuous time), got {num_steps}")
        self.backbone, self.schedule = backbone, schedule
        self.mask_id, self.pad_id = mask_id, pad_id
        self.t_min, self.antithetic = t_min, antithetic
        self.below_t_min = False  # full_bound(): add the integral over [0, t_min]
        self.time_steps = None if num_steps is None else int(num_steps)  # (D3PM's num_steps is its own)
        self.never_predict = tuple(never_predict)
        self.strand_complement: tuple[int, ...] | None = None  # strands.both_strands(): both strands' mean
        self.register_buffer("excluded_ids", torch.empty(0, dtype=torch.long), persistent=False)
        self.set_subs_parts(zero_masking, carry_over)

    @contextmanager
    def full_bound(self) -> Iterator[None]:
        """Inside: the NELBO estimates the whole bound of the sampler, which starts from all-[MASK]: a schedule
        with eps = 0 (alpha(1) = 0), and the integral below t_min added by the midpoint rule, t_min x the
        integrand at t_min / 2 (one more network call per estimate; its error is O(t_min^3)). Sampling t
        down to ~0 instead would put a 1/t weight on rare early masks: a heavy-tailed estimate whose average
        reads low.

        Training's estimate leaves both pieces out (see the module docstring); scores meant to stand beside
        exact likelihoods use this. The network sees masking rates up to 1 instead of 1 - eps (and,
        time-conditioned, sigma up to ~17 instead of ~7).

        >>> from mdlm_dna.diffusion.noise import LogLinear
        >>> obj = MDLM(nn.Identity(), LogLinear(eps=1e-3), mask_id=5)
        >>> with obj.full_bound():
        ...     print(obj.schedule.eps, obj.below_t_min)
        0.0 True
        >>> obj.schedule.eps, obj.below_t_min
        (0.001, False)
        """
        if not hasattr(self.schedule, "eps"):
            raise ValueError(f"the full bound needs a schedule that can mask everything at t = 1 (loglinear, "
                             f"cosine); {type(self.schedule).__name__} keeps alpha(1) > 0")
        saved = self.schedule.eps, self.below_t_min
        self.schedule.eps, self.below_t_min = 0.0, self.t_min > 0 and not self.time_steps
        try:
            yield
        finally:
            self.schedule.eps, self.below_t_min = saved

    def set_subs_parts(self, zero_masking: bool = True, carry_over: bool = True) -> None:
        """Which of SUBS's parts the bound and ``denoiser_logits`` use (the ids given zero mass follow);
        also lets a benchmark score one set of weights under each variant."""
        self.zero_masking, self.carry_over = bool(zero_masking), bool(carry_over)
        excluded = {*self.never_predict} | ({self.mask_id} if self.zero_masking else set())
        self.excluded_ids = torch.tensor(sorted(excluded), dtype=torch.long, device=self.excluded_ids.device)

    def sample_t(self, batch_size: int, device: torch.device, generator: Randomness = None) -> torch.Tensor:
        """Times in [t_min, 1]; low-discrepancy: u_i = (u_0 + i / B) mod 1."""
        if isinstance(generator, DrawnNoise):
            u = generator.t_uniform.to(device)
        elif self.antithetic:
            u0 = torch.rand(1, device=device, generator=generator)
            u = (u0 + torch.arange(batch_size, device=device) / batch_size) % 1.0
        else:
            u = torch.rand(batch_size, device=device, generator=generator)
        if self.time_steps:  # the grid i / T, i = 1..T, each with probability 1 / T
            T = self.time_steps
            return torch.ceil(u * T).clamp(1, T) / T
        return self.t_min + (1.0 - self.t_min) * u

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """The weight of a masked token's cross-entropy at time t: -alpha'(t) / (1 - alpha(t)) in continuous
        time; T (alpha(s) - alpha(t)) / (1 - alpha(t)), s = t - 1/T, with T steps (alpha(0) = 1 exactly)."""
        if not self.time_steps:
            return self.schedule.loss_weight(t)
        T = self.time_steps
        s = t - 1.0 / T
        a_s = torch.where(s <= 0.5 / T, torch.ones_like(t), self.schedule.alpha(s.clamp_min(0)))
        return T * (a_s - self.schedule.alpha(t)) / self.schedule.one_minus_alpha(t)

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, generator: Randomness = None,
                  counted: torch.Tensor | None = None) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0): mask each token with probability 1 - alpha(t).

        Padding (and any position outside ``counted``, see :func:`counted_positions`) is never masked.
        """
        p_mask = self.schedule.one_minus_alpha(t)[:, None]
        if isinstance(generator, DrawnNoise):
            u = generator.mask_uniform
        else:
            u = torch.rand(x0.shape, device=x0.device, generator=generator)
        return mask_positions(x0, p_mask, self.mask_id, counted_positions(x0, self.pad_id, counted), u)

    def denoiser_logits(self, xt: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Backbone logits (at least float32) with [MASK] (and ``never_predict``) excluded.

        Their log-softmax is log p_theta(x_0 | x_t) at the masked positions (``| y`` for a class-conditional
        backbone given ``labels`` [B]; index ``num_classes`` is the null class).
        """
        extra = {} if labels is None else {"labels": labels}  # the unconditional call: any backbone works
        if self.strand_complement is None:
            logits = self.backbone(xt, self.schedule.sigma(t), **extra)
        else:
            logits = strand_mixture(self.backbone, xt, self.schedule.sigma(t), self.strand_complement,
                                    self.excluded_ids, self.pad_id, **extra)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # log-softmax and the loss in full precision
        return logits.index_fill(-1, self.excluded_ids, float("-inf"))

    def subs_log_probs(self, xt: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Full SUBS distribution log p_theta(x_0 | x_t[, y]): [B, L, V].

        Zero mass on [MASK]; at unmasked positions all mass on the observed token. For a model trained without
        zero masking this is x_theta given that the clean token is not [MASK] (renormalised over the others):
        a sampler then draws the right token when it unmasks, but unmasks on the schedule's timetable rather than
        the slightly slower one of that model's own reverse process (which would leave some [MASK] at t = 0).
        """
        logits = self.denoiser_logits(xt, t, labels)
        if not self.zero_masking:
            logits = logits.index_fill(-1, torch.tensor([self.mask_id], device=logits.device), float("-inf"))
        logp = F.log_softmax(logits, dim=-1)
        carry = torch.full_like(logp, float("-inf")).scatter_(-1, xt[..., None], 0.0)
        return torch.where((xt != self.mask_id)[..., None], carry, logp)

    def nelbo(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | None = None,
        generator: Randomness = None,
        labels: torch.Tensor | None = None,
        counted: torch.Tensor | None = None,
    ) -> NELBO:
        """One-sample Monte-Carlo estimate of each sequence's NELBO (unbiased up to the t < t_min cut, which
        :meth:`full_bound` adds);
        ``labels`` [B]: of -log p(x | y) for a class-conditional backbone.

        ``counted`` [B, L] bool: the positions that are data (default: all but padding); the others (e.g. N
        bases) are given context, so the estimate bounds -log p(counted tokens | the others), over their count.
        """
        if t is None:
            t = self.sample_t(x0.shape[0], x0.device, generator)
        counts = counted_positions(x0, self.pad_id, counted)
        per_seq = self.weighted_masked_nll(x0, t, generator, counts, labels)
        if self.below_t_min:
            # t ~ U[t_min, 1] estimates the mean over [t_min, 1], so (1 - t_min) x it is the integral; the integral
            # over [0, t_min] by the midpoint rule: t_min x the same integrand at t_min / 2
            per_seq = per_seq * (1.0 - self.t_min) + self.t_min * self.weighted_masked_nll(
                x0, torch.full_like(t, self.t_min / 2), generator, counts, labels)
        if not self.carry_over:
            per_seq = per_seq + self.reconstruction_nll(x0, counts, generator, labels)
        return NELBO(per_sequence=per_seq, num_tokens=counts.sum(-1))

    def weighted_masked_nll(self, x0: torch.Tensor, t: torch.Tensor, generator: Randomness, counts: torch.Tensor,
                            labels: torch.Tensor | None) -> torch.Tensor:
        """[B]: the NELBO's integrand at ``t``, one draw of x_t: the masked tokens' weighted cross-entropy."""
        xt = self.add_noise(x0, t, generator, counts)
        logp = F.log_softmax(self.denoiser_logits(xt, t, labels), dim=-1)
        nll = -logp.gather(-1, x0[..., None]).squeeze(-1)  # [B, L]
        if self.zero_masking:
            terms = self.loss_weight(t)[:, None] * nll  # [B, L]
        else:
            terms = self.masked_terms_with_mask_mass(nll, logp[..., self.mask_id], t)
        return torch.where(xt == self.mask_id, terms, torch.zeros_like(nll)).sum(-1)

    def masked_terms_with_mask_mass(self, nll: torch.Tensor, log_x_mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[B, L]: a masked token's share of the bound when x_theta keeps mass x_m on [MASK] (zero_masking off).

        The formulas of the module docstring, in float64: at T = 1000 the discrete terms are differences of
        nearly equal logarithms multiplied by T."""
        x_m = log_x_mask.double().exp()
        nll64 = nll.double()
        t = t.double()[:, None]
        a_t, one_minus_a_t = self.schedule.alpha(t), self.schedule.one_minus_alpha(t)
        log1p_u_t = torch.log1p(a_t * x_m / one_minus_a_t)
        if not self.time_steps:
            weight = self.schedule.loss_weight(t)
            return (weight * (log1p_u_t + nll64 - x_m / (one_minus_a_t + a_t * x_m))).to(nll.dtype)
        T = self.time_steps
        s = t - 1.0 / T
        a_s = torch.where(s <= 0.5 / T, torch.ones_like(t), self.schedule.alpha(s.clamp_min(0)))
        one_minus_a_s = 1.0 - a_s
        A = (a_s - a_t) / one_minus_a_t
        # B log(1 + u(alpha_s)) = [(1 - a_s) log(1 - a_s + a_s x_m) - (1 - a_s) log(1 - a_s)] / (1 - a_t): 0 at s = 0
        b_log1p_u_s = (torch.xlogy(one_minus_a_s, one_minus_a_s + a_s * x_m)
                       - torch.xlogy(one_minus_a_s, one_minus_a_s)) / one_minus_a_t
        return (T * (log1p_u_t + A * nll64 - b_log1p_u_s)).to(nll.dtype)

    def reconstruction_nll(self, x0: torch.Tensor, counts: torch.Tensor, generator: Randomness = None,
                           labels: torch.Tensor | None = None) -> torch.Tensor:
        """[B]: -log p_theta(x | z_0) over the counted positions, z_0 ~ q(. | x, t = 0) (x itself when
        alpha(0) = 1): the bound's first term, zero under carry-over and paid with an extra network call
        without it."""
        t0 = torch.zeros(x0.shape[0], device=x0.device)
        z0 = self.add_noise(x0, t0, generator, counts)
        logp = F.log_softmax(self.denoiser_logits(z0, t0, labels), dim=-1)
        nll = -logp.gather(-1, x0[..., None]).squeeze(-1)
        return torch.where(counts, nll, torch.zeros_like(nll)).sum(-1)
