"""D3PM (Austin et al. 2021) with the absorbing state: T discrete steps and the discrete-time ELBO.

Time grid t_i = i / T, i = 0..T, with MDLM's forward process at those times (each token unmasked with
probability alpha(t_i)) and the x0-parameterized reverse step p_theta(x_s | x_t) = q(x_s | x_t, x0 ~ SUBS),
s = t_{i-1}. With SUBS (zero mass on [MASK], unmasked tokens carried over) the KL of step i is exactly

    KL_i = (alpha_s - alpha_t) / (1 - alpha_t) * sum_{l: x_t^l = [MASK]} -log p_theta(x0^l | x_t)

(Sahoo et al. 2024, eq. 8), and the whole bound, every term exact, is

    NELBO(x0) = E[-log p_theta(x0 | x_{t_0})]                (reconstruction: 0 unless alpha(0) < 1)
              + sum_{i=1}^T E_{x_{t_i}} [KL_i]
              + KL(q(x_1 | x0) || prior)                     (prior: 0 unless alpha(1) > 0)

The prior puts 1 - alpha(1) on [MASK] and alpha(1) / K on each of the K predictable tokens, independently
per position, so its KL is alpha(1) log K per token (carried-over tokens of x_1 need a prior too; with
alpha(1) = 0 it is the all-[MASK] state). The reconstruction term is the masked cross-entropy at x_{t_0}:
it exists only for schedules with alpha(0) < 1 (geometric). The sum over steps is estimated without bias
from one step per sequence: i uniform on the grid (low-discrepancy within a batch), term multiplied by the
number of grid terms. As T grows this bound decreases to MDLM's continuous-time NELBO (plus the prior term).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mdlm_dna.diffusion.mdlm import MDLM, NELBO, Randomness, counted_positions
from mdlm_dna.diffusion.noise import NoiseSchedule


class D3PM(MDLM):
    """Absorbing-state D3PM with ``num_steps`` steps; MDLM's forward process and SUBS denoiser."""

    def __init__(
        self,
        backbone: torch.nn.Module,
        schedule: NoiseSchedule,
        mask_id: int,
        vocab_size: int,
        num_steps: int = 1000,
        pad_id: int | None = None,
        antithetic: bool = True,
        never_predict: Sequence[int] = (),
    ):
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        super().__init__(
            backbone, schedule, mask_id, pad_id, t_min=0.0, antithetic=antithetic, never_predict=never_predict
        )
        self.num_steps = int(num_steps)
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
        one_minus_alpha0, alpha1 = float(schedule.one_minus_alpha(ends)[0]), float(schedule.alpha(ends)[1])
        self.first_step = 0 if one_minus_alpha0 > 0 else 1  # grid index 0 is the reconstruction term
        log_k = math.log(vocab_size - len(self.excluded_ids))
        self.prior_nats_per_token = alpha1 * log_k

    @property
    def num_terms(self) -> int:
        return self.num_steps + 1 - self.first_step

    def sample_step(self, batch_size: int, device: torch.device, generator: Randomness = None):
        """Grid indices i in [first_step, T], one per sequence, uniform (stratified within the batch)."""
        u = (self.sample_t(batch_size, device, generator) - self.t_min) / (1.0 - self.t_min)  # [0, 1]
        return self.first_step + (u * self.num_terms).long().clamp_(max=self.num_terms - 1)

    def step_coefficient(self, i: torch.Tensor) -> torch.Tensor:
        """(alpha_s - alpha_t) / (1 - alpha_t) for grid step i (s = t_{i-1}); 1 for the reconstruction i = 0."""
        t = i.double() / self.num_steps
        s = (i.double() - 1).clamp_min(0) / self.num_steps
        a_s, a_t = self.schedule.alpha(s), self.schedule.alpha(t)
        coef = (a_s - a_t) / self.schedule.one_minus_alpha(t)
        return torch.where(i == 0, torch.ones_like(coef), coef)

    def nelbo(self, x0: torch.Tensor, t: torch.Tensor | None = None, generator: Randomness = None,
              counted: torch.Tensor | None = None) -> NELBO:
        """Unbiased one-step estimate of each sequence's discrete-time NELBO in nats.

        ``t``, when given, must lie on the grid (i / T); it picks the step, as sampling would. ``counted``
        as MDLM's: the prior term too is paid only by the counted positions.
        """
        if t is None:
            i = self.sample_step(x0.shape[0], x0.device, generator)
        else:
            i = torch.round(t.double() * self.num_steps).long()
            if (
                not torch.allclose(i.double() / self.num_steps, t.double(), atol=1e-6, rtol=0)
                or ((i < self.first_step) | (i > self.num_steps)).any()
            ):
                raise ValueError(f"t must be on the grid {self.first_step}/T .. T/T with T={self.num_steps}")
        t_i = i.double() / self.num_steps
        counts = counted_positions(x0, self.pad_id, counted)
        xt = self.add_noise(x0, t_i, generator, counts)
        logp = F.log_softmax(self.denoiser_logits(xt, t_i), dim=-1)
        nll = -logp.gather(-1, x0[..., None]).squeeze(-1)  # [B, L]
        weight = (self.num_terms * self.step_coefficient(i))[:, None].to(nll.dtype)
        masked = xt == self.mask_id
        per_seq = torch.where(masked, weight * nll, torch.zeros_like(nll)).sum(-1)
        per_seq = per_seq + self.prior_nats_per_token * counts.sum(-1)
        return NELBO(per_sequence=per_seq, num_tokens=counts.sum(-1))
