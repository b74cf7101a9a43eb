"""Guidance for class-conditional masked diffusion (Schiff et al., ICLR 2025, "Simple Guidance Mechanisms
for Discrete Diffusion Models", arXiv 2412.10193).

Discrete classifier-free guidance (D-CFG). A network trained with label dropout is both p(x_0 | x_t, y)
and p(x_0 | x_t) (the null class). Guidance with strength gamma samples every reverse step from the
tempered product, per position, over the real tokens and renormalised:

    p_gamma(x_0^l | x_t, y)  ∝  p(x_0^l | x_t, y)^gamma * p(x_0^l | x_t)^(1 - gamma)

gamma = 0 is unconditional, gamma = 1 conditional, gamma > 1 sharpens towards the class. Because the
SUBS parameterisation keeps unmasked tokens and the reverse step's masking probabilities do not depend
on the denoiser, guiding p(x_0 | x_t) is guiding the whole reverse step (paper, eq. 6-7).

:class:`ClassifierFreeGuidance` is a denoiser (``subs_log_probs(xt, t)``, ``mask_id``, ``schedule``): it
works with every sampler of :mod:`mdlm_dna.diffusion.samplers` (ancestral, cached, semi-autoregressive)
and with prefix / in-filling templates, unchanged. Both distributions come from one forward pass on the
batch stacked with itself ([x_t; x_t] with labels [y; null]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mdlm_dna.diffusion.samplers import is_time_conditioned


def tempered_product(cond: torch.Tensor, uncond: torch.Tensor, gamma: float) -> torch.Tensor:
    """log p_gamma ∝ gamma * log p_cond + (1 - gamma) * log p_uncond, renormalised over the last axis.

    Tokens outside the support (-inf in ``cond``: [MASK], excluded specials, every token but the observed
    one at an unmasked position) stay at -inf; there is no ``0 * inf``. Both inputs are SUBS log-probs of
    the same x_t, so they share that support.
    """
    real = torch.isfinite(cond)
    mixed = torch.where(real, gamma * cond + (1.0 - gamma) * uncond.masked_fill(~real, 0.0), float("-inf"))
    return F.log_softmax(mixed, dim=-1)


class ClassifierFreeGuidance:
    """D-CFG around a class-conditional MDLM: ``label`` (index) at strength ``scale`` (gamma).

    ``scale`` 1 asks only for the conditional and 0 only for the unconditional distribution: one forward
    pass of the plain batch, exactly what conditional / unconditional sampling computes (bit-identical
    samples, same seed). Any other scale runs one pass on the doubled batch.
    """

    def __init__(self, model, label: int, scale: float, null_label: int):
        if not 0 <= int(label) < int(null_label):
            raise ValueError(f"label index {label} is not a class of this model (0..{int(null_label) - 1})")
        self.model, self.label, self.scale, self.null_label = model, int(label), float(scale), int(null_label)
        self.mask_id = model.mask_id
        self.schedule = model.schedule
        self.network_rows = 0  # rows the backbone evaluated (twice the batch when guiding): the real cost

    @property
    def time_conditioned(self) -> bool | None:
        """As the wrapped model: the cached sampler stays exact for denoisers that ignore t."""
        return is_time_conditioned(self.model)

    def _labels(self, value: int, n: int, device: torch.device) -> torch.Tensor:
        return torch.full((n,), value, dtype=torch.long, device=device)

    def subs_log_probs(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B = xt.shape[0]
        if self.scale in (0.0, 1.0):
            self.network_rows += B
            only = self.label if self.scale == 1.0 else self.null_label
            return self.model.subs_log_probs(xt, t, labels=self._labels(only, B, xt.device))
        self.network_rows += 2 * B
        labels = torch.cat([self._labels(self.label, B, xt.device), self._labels(self.null_label, B, xt.device)])
        both = self.model.subs_log_probs(torch.cat([xt, xt]), torch.cat([t, t]), labels=labels)
        return tempered_product(both[:B].double(), both[B:].double(), self.scale)
