"""SEDD: score-entropy discrete diffusion (Lou et al. 2024) with the absorbing process.

Same forward process as MDLM (each token jumps to [MASK] at rate dsigma/dt, so it is still unmasked at
time t with probability alpha(t) = exp(-sigma(t))), but a different model and loss. The network outputs
*concrete scores*: for a masked position l of x_t and a token y, s_theta(x_t, t)_{l,y} estimates the
ratio p_t(x_t with y at l) / p_t(x_t). The continuous-time NELBO is the diffusion-weighted denoising
score entropy (DWDSE, Lou et al. eq. 13 / Thm 3.6):

    NELBO(x0) = int_0^1 dsigma/dt E_{x_t ~ q(.|x0, t)} sum_{l: x_t^l = [MASK]} sum_{y != [MASK]}
                  [ s_y - r_y log s_y + r_y (log r_y - 1) ]

where r_y = q(y | x0) / q([MASK] | x0) = 1 / (e^sigma - 1) for y = x0^l and 0 otherwise. Each bracket is
>= 0 and vanishes only at s = r, so the loss is non-negative and zero for a model that knows the ratios.

Parameterization (as in SEDD's absorbing model): the backbone's outputs z become log-scores
log s_y = z_y - log(e^sigma - 1) - log K, K = number of tokens that can be predicted; then z = 0 means
"uniform over the K tokens with the true total ratio". Unlike MDLM's SUBS, the scores are *not* normalised;
with u_y = log s_y - log r (r = 1 / (e^sigma - 1)) the bracket summed over y is

    r * [ expm1(u_x0) - u_x0 + sum_{y != x0} exp(u_y) ]

and dsigma/dt * r = -alpha'/(1 - alpha), MDLM's weight; this is how it is computed (stable at small sigma).
Since x - 1 >= log x, for the same network outputs this is >= MDLM's cross-entropy, with equality when
sum_y exp(z_y) = K: the MDLM paper's observation that SUBS is the normalised version of this loss.
The prior term KL(q(x_1 | x0) || all-[MASK]) and the part of the integral below t_min are left out,
exactly as for MDLM, so the two NELBOs (nats/token) are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mdlm_dna.diffusion.mdlm import MDLM, NELBO, Randomness, counted_positions
from mdlm_dna.diffusion.noise import NoiseSchedule


def score_entropy(log_score: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """sum_y [ s_y - r_y log s_y + r_y (log r_y - 1) ] over the last dimension (r_y = 0 allowed).

    The reference definition, for tests and toy problems; ``SEDD.nelbo`` uses an equivalent stable form.
    """
    s = log_score.exp()
    const = torch.special.xlogy(ratio, ratio) - ratio
    cross = torch.where(ratio > 0, ratio * log_score, torch.zeros_like(log_score))
    return (s - cross + const).sum(-1)


class SEDD(MDLM):
    """Absorbing-state SEDD: MDLM's forward process and time sampling, score parameterization, DWDSE loss."""

    def __init__(
        self,
        backbone: torch.nn.Module,
        schedule: NoiseSchedule,
        mask_id: int,
        vocab_size: int,
        pad_id: int | None = None,
        t_min: float = 1e-3,
        antithetic: bool = True,
        never_predict: Sequence[int] = (),
    ):
        super().__init__(backbone, schedule, mask_id, pad_id, t_min, antithetic, never_predict)
        self.log_k = math.log(vocab_size - len(self.excluded_ids))  # tokens a score can point to

    def log_scores(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log s_theta(x_t, t) [B, L, V]: log ratios of p_t(x_t with y at l) to p_t(x_t) (meaningful where masked).

        -inf for [MASK] itself and the ``never_predict`` ids.
        """
        z = self.denoiser_logits(xt, t)  # backbone outputs, excluded ids at -inf
        log_r = -self._log_expm1_sigma(t)
        return z - self.log_k + log_r[:, None, None].to(z.dtype)

    def _log_expm1_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """log(e^sigma - 1) = log((1 - alpha) / alpha), computed without cancellation."""
        return torch.log(self.schedule.one_minus_alpha(t)) - torch.log(self.schedule.alpha(t))

    def nelbo(self, x0: torch.Tensor, t: torch.Tensor | None = None, generator: Randomness = None,
              counted: torch.Tensor | None = None) -> NELBO:
        """One-sample Monte-Carlo estimate of each sequence's DWDSE NELBO in nats (``counted`` as MDLM's)."""
        if t is None:
            t = self.sample_t(x0.shape[0], x0.device, generator)
        counts = counted_positions(x0, self.pad_id, counted)
        xt = self.add_noise(x0, t, generator, counts)
        # u = log s - log r: the scores relative to the true ratio r = 1 / (e^sigma - 1) of y = x0
        u = self.denoiser_logits(xt, t) - self.log_k
        u_x0 = u.gather(-1, x0[..., None]).squeeze(-1)
        others = u.scatter(-1, x0[..., None], float("-inf")).exp().sum(-1)
        entropy = torch.expm1(u_x0) - u_x0 + others  # [B, L], score entropy / r at each position
        masked = xt == self.mask_id
        weight = self.schedule.loss_weight(t)[:, None]  # dsigma/dt * r = -alpha' / (1 - alpha)
        per_seq = torch.where(masked, weight * entropy, torch.zeros_like(entropy)).sum(-1)
        return NELBO(per_sequence=per_seq, num_tokens=counts.sum(-1))
