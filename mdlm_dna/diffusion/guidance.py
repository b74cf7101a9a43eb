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
from mdlm_dna.utils.errors import ConfigError


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


class ClassifierGuidance:
    """D-CBG: an unconditional MDLM steered by a noise-aware classifier p(y | x_t) at strength ``scale`` (gamma).

    The guided reverse step is, per position l, ``p_gamma(x_s^l | x_t, y) ∝ p(x_s^l | x_t) * p(y | x_s)^gamma``,
    with p(y | x_s) evaluated on x_t changed at l alone (the paper's per-position factorisation). Here it is
    computed **exactly** for every choice at l: each real token v (x_t with l set to v) and staying masked
    (x_t itself). The paper replaces the classifier calls by a first-order Taylor expansion around x_t
    because for text that is |V| ~ 50k calls per position; for DNA it is 4, so the exact reweighting costs 4
    classifier rows per masked position and step, needs no gradients, and has no approximation error, in
    particular on the flat one-hot directions where a linearisation of a small CNN is poor.

    A classifier of a fixed input length n (``classifier.input_len``: the CNN baseline pads or cuts every input to
    it) judges each position l on the window of n positions around l (centred, shifted inside the sequence), all
    choices at l on the same window: every position is guided, and the classifier only ever sees full windows of
    the length it was trained on. A sequence (or a semi-autoregressive block window) shorter than n is refused:
    the classifier would see padding it never saw in training.

    Works with every sampler (ancestral, cached, semi-autoregressive: each block is judged on its own
    window) through ``step_log_weights``; with a classifier that ignores t the cache stays exact. The
    classifier is called in chunks of ``batch_size`` rows, and the candidate sequences are built chunk by chunk
    (never all masked positions x 4 copies of the sequence at once).
    """

    def __init__(self, model, classifier, label: int, scale: float, batch_size: int = 4096):
        n = len(getattr(classifier, "classes", []) or [])
        if n and not 0 <= int(label) < n:
            raise ValueError(f"label index {label} is not a class of the classifier (0..{n - 1})")
        self.model, self.classifier, self.label, self.scale = model, classifier, int(label), float(scale)
        self.batch_size = int(batch_size)
        self.input_len: int | None = getattr(classifier, "input_len", None)  # None: any length
        self.mask_id, self.schedule = model.mask_id, model.schedule
        self.network_rows = 0  # rows the diffusion backbone evaluated
        self.classifier_rows = 0  # rows the classifier evaluated

    @property
    def time_conditioned(self) -> bool | None:
        return is_time_conditioned(self.model)

    def subs_log_probs(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.network_rows += xt.shape[0]
        return self.model.subs_log_probs(xt, t)  # a class-conditional model: its null (unconditional) class

    def window(self, length: int) -> int:
        """The classifier's window for sequences of ``length``: all of it, or the classifier's fixed input length.

        >>> ClassifierGuidance.window(type("G", (), {"input_len": 70})(), 200)
        70
        """
        if self.input_len is None:
            return length
        if length < self.input_len:
            raise ConfigError(
                f"classifier guidance: the classifier reads {self.input_len} bases (its training length) but the "
                f"sequences (or semi-autoregressive windows) here have {length}: sample at least {self.input_len} "
                "bases, or train the classifier on sequences of this length")
        return int(self.input_len)

    def _windows_log_prob(self, xt: torch.Tensor, rows: torch.Tensor, starts: torch.Tensor, n: int,
                          pos: torch.Tensor | None = None, tok: torch.Tensor | None = None) -> torch.Tensor:
        """log p(label | xt[rows, starts : starts + n]) with position ``pos`` set to ``tok`` (when given), built
        and scored ``batch_size`` windows at a time."""
        out = []
        offsets = torch.arange(n, device=xt.device)
        for i in range(0, len(rows), self.batch_size):
            r, s = rows[i : i + self.batch_size], starts[i : i + self.batch_size]
            chunk = xt[r[:, None], s[:, None] + offsets]  # a copy: [k, n]
            if pos is not None:
                chunk[torch.arange(len(r), device=xt.device), pos[i : i + self.batch_size] - s] = \
                    tok[i : i + self.batch_size]
            out.append(self.classifier.log_probs(chunk)[:, self.label].double())
            self.classifier_rows += len(r)
        return torch.cat(out) if out else xt.new_zeros(0, dtype=torch.float64)

    @torch.no_grad()
    def step_log_weights(self, xt: torch.Tensor, logp: torch.Tensor) -> torch.Tensor | None:
        """gamma * log p(y | l's window of x_t with l set to v) at [b, l, v] for masked l and each real token v,
        and gamma * log p(y | l's window of x_t) at v = [MASK] (staying masked); 0 elsewhere. None when
        gamma = 0."""
        if self.scale == 0.0:
            return None
        B, L = xt.shape
        n = self.window(L)
        start = (torch.arange(L, device=xt.device) - n // 2).clamp(0, L - n)  # each position's window
        w = torch.zeros(B, L, logp.shape[-1], dtype=torch.float64, device=xt.device)
        is_masked = xt == self.mask_id
        masked = is_masked.nonzero()  # [P, 2]: (row, position)
        if not len(masked):
            return w
        # staying masked: x_t's own window, scored once per distinct (row, window start)
        keys, where = torch.unique(masked[:, 0] * L + start[masked[:, 1]], return_inverse=True)
        stay = self._windows_log_prob(xt, keys // L, keys % L, n)
        w[masked[:, 0], masked[:, 1], self.mask_id] = stay[where]
        real = torch.isfinite(logp[is_masked]).any(0)
        real[self.mask_id] = False
        tokens = real.nonzero().squeeze(-1)
        if len(tokens):
            b = masked[:, 0].repeat_interleave(len(tokens))
            pos = masked[:, 1].repeat_interleave(len(tokens))
            tok = tokens.repeat(len(masked))
            w[b, pos, tok] = self._windows_log_prob(xt, b, start[pos], n, pos, tok)
        return self.scale * w
