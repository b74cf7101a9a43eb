"""Samplers for masked diffusion: swappable, diffusers-style objects around any MDLM-like denoiser.

A denoiser is anything with ``subs_log_probs(xt, t) -> [B, L, V]`` (log p_theta(x_0 | x_t) with SUBS:
zero mass on [MASK], carry-over at unmasked positions), a ``schedule`` with ``alpha`` / ``one_minus_alpha``
and a ``mask_id``; optionally ``step_log_weights(xt, logp) -> [B, L, V] | None``, log-weights that multiply the
reverse step's probability of each choice ([MASK]: stay masked), as classifier guidance needs. Every
sampler takes an initial sequence ``x_init`` [B, L] in which [MASK] marks what to generate; the other
positions are given (a prefix prompt, the flanks of an in-filling) and never change.

- :class:`AncestralSampler`: the reverse process of Sahoo et al. 2024 on T uniform steps from t=1 to 0.
- :class:`CachedAncestralSampler`: the same, reusing p_theta for the sequences in which no token changed
  in the previous step. Exact (bit-identical samples, same seed) for denoisers that ignore t; for
  time-conditioned ones an approximation, refused unless ``allow_time_conditioned=True``.
- :class:`SemiAutoregressiveSampler`: sequences longer than the training context, block by block, each block
  conditioned on the tail of the previous one.

Categorical draws use inverse-CDF sampling in float64 by default: with float32 (or bf16) Gumbel-max the
lowest-probability tokens are drawn too rarely, which lowers diversity (Zheng et al. 2024).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from tqdm import tqdm


def progress_bar(iterable, progress: bool | None, **kwargs):
    """tqdm over ``iterable``; ``progress`` None shows it only on a terminal, False never."""
    return tqdm(iterable, disable=None if progress is None else not progress, leave=False, **kwargs)


class Denoiser(Protocol):
    mask_id: int
    schedule: object

    def subs_log_probs(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


@dataclass
class SampleOutput:
    """Samples and what they cost."""

    ids: torch.Tensor  # [B, L]
    network_calls: int = 0  # forward passes of the denoiser (one per batch evaluation)
    sequence_evals: int = 0  # rows evaluated: network_calls weighted by how many sequences each one saw
    sequence_evals_saved: int = 0  # rows the cache did not need to evaluate
    steps: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def evals_per_sample(self) -> float:
        return self.sequence_evals / max(1, self.ids.shape[0])


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None, dtype: torch.dtype = torch.float64):
    """One draw per row of (unnormalised, non-negative) ``probs`` [..., V] by inverse CDF in ``dtype``.

    Always draws exactly one uniform per row, so that two samplers that agree on ``probs`` agree on the draw.
    """
    p = probs.to(dtype)
    cdf = p.cumsum(-1)
    u = torch.rand(p.shape[:-1], generator=generator, device=p.device, dtype=dtype) * cdf[..., -1]
    idx = (cdf <= u[..., None]).sum(-1)  # first index with cdf > u
    # never land on a zero-probability token (u == total with rounding): clamp into the support
    last_nonzero = p.shape[-1] - 1 - (p.flip(-1) > 0).to(torch.int64).argmax(-1)
    return torch.minimum(idx, last_nonzero)


def is_time_conditioned(model: object) -> bool | None:
    """True / False when the denoiser says whether it reads t; None when it cannot tell.

    Looks for ``model.time_conditioned`` or ``model.backbone.cfg.time_conditioning`` (DiT, Caduceus).
    """
    if hasattr(model, "time_conditioned"):
        return bool(model.time_conditioned)
    cfg = getattr(getattr(model, "backbone", None), "cfg", None)
    if cfg is not None and hasattr(cfg, "time_conditioning"):
        return bool(cfg.time_conditioning)
    return None


def masked_init(batch_size: int, length: int, mask_id: int, prefix: torch.Tensor | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """All-[MASK] starting point [B, length], with an optional prefix prompt [P] copied into the first P places."""
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    x = torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
    if prefix is not None and len(prefix):
        if len(prefix) > length:
            raise ValueError(f"prefix ({len(prefix)} tokens) is longer than the requested length ({length})")
        x[:, : len(prefix)] = prefix.to(device)
    return x


class AncestralSampler:
    """MDLM reverse process, T uniform steps t_i = i / T from t=1 down to 0.

    For a masked position, p(x_s | x_t) gives (alpha_s - alpha_t) / (1 - alpha_t) * p_theta(x_0 | x_t) to
    each token and (1 - alpha_s) / (1 - alpha_t) to staying masked; unmasked positions never change
    (carry-over). The last step (s = 0) unmasks everything left, even for schedules whose alpha(0) is just below 1.
    """

    cache = False

    def __init__(self, steps: int = 256, dtype: torch.dtype = torch.float64):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps, self.dtype = int(steps), dtype

    def _check(self, model: Denoiser) -> None:
        pass

    @torch.no_grad()
    def __call__(self, model: Denoiser, x_init: torch.Tensor, generator: torch.Generator | None = None,
                 progress: bool | None = False) -> SampleOutput:
        """``progress``: a bar over the steps (None: only on a terminal)."""
        self._check(model)
        start = time.perf_counter()
        x = x_init.clone()
        B, mask_id, sched = x.shape[0], model.mask_id, model.schedule
        out = SampleOutput(ids=x, steps=self.steps)
        grid = torch.linspace(1.0, 0.0, self.steps + 1, dtype=torch.float64)
        logp: torch.Tensor | None = None  # [B, L, V] in self.dtype, cached rows stay valid
        logw: torch.Tensor | None = None  # guidance's log-weights of the step's choices (classifier guidance)
        guided = hasattr(model, "step_log_weights")
        fresh = torch.ones(B, dtype=torch.bool, device=x.device)  # rows whose p_theta must be recomputed
        for i in progress_bar(range(self.steps), progress, desc="sampling", unit="step"):
            t, s = grid[i], grid[i + 1]
            if not self.cache or logp is None:
                fresh[:] = True
            if fresh.any():
                rows = fresh.nonzero().squeeze(-1) if self.cache and not fresh.all() else None
                xt = x if rows is None else x[rows]
                tt = torch.full((xt.shape[0],), float(t), device=x.device, dtype=torch.float32)
                new = model.subs_log_probs(xt, tt).to(self.dtype)
                new_w = model.step_log_weights(xt, new) if guided else None
                if rows is None:
                    logp, logw = new, new_w
                else:
                    logp[rows] = new
                    if new_w is not None:
                        logw[rows] = new_w.to(logw.dtype)
                out.network_calls += 1
                out.sequence_evals += xt.shape[0]
            out.sequence_evals_saved += int(B - fresh.sum()) if self.cache else 0
            x_new = self.step(x, logp, t, s, sched, mask_id, generator, logw)
            fresh = (x_new != x).any(-1)
            x = x_new
        out.ids, out.seconds = x, time.perf_counter() - start
        return out

    def step(self, x: torch.Tensor, logp: torch.Tensor, t: torch.Tensor, s: torch.Tensor, sched, mask_id: int,
             generator: torch.Generator | None, log_weights: torch.Tensor | None = None) -> torch.Tensor:
        """One reverse step x_t -> x_s; one uniform drawn per position (masked or not)."""
        probs = self.step_probabilities(logp, t, s, sched, mask_id, log_weights)
        draw = sample_categorical(probs, generator, self.dtype)
        return torch.where(x == mask_id, draw, x)

    @staticmethod
    def step_probabilities(logp: torch.Tensor, t: torch.Tensor, s: torch.Tensor, sched, mask_id: int,
                           log_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised p(x_s | x_t) [B, L, V] of a masked position ([MASK]: stay masked). ``log_weights``
        [B, L, V] (classifier guidance) multiply each choice's probability."""
        # the schedule in float64 on the host: python floats then mix with logp on any device.
        # At s = 0 everything left is unmasked, also for schedules with alpha(0) slightly below 1.
        om_t = float(sched.one_minus_alpha(t.double()))  # 1 - alpha_t
        om_s = float(sched.one_minus_alpha(s.double())) if float(s) > 0 else 0.0  # 1 - alpha_s
        probs = logp.exp() * ((om_t - om_s) / om_t)  # unmask to x0 ~ p_theta: (alpha_s - alpha_t) / (1 - alpha_t)
        probs[..., mask_id] = om_s / om_t  # stay masked: (1 - alpha_s) / (1 - alpha_t)
        if log_weights is not None:  # p_gamma ∝ p(x_s | x_t) p(y | x_s)^gamma; shifted per position: no overflow
            lw = log_weights.to(probs.dtype)
            probs = probs * (lw - lw.amax(-1, keepdim=True)).exp()
        return probs


class CachedAncestralSampler(AncestralSampler):
    """Ancestral sampling that skips the network for sequences unchanged since the last step.

    A SUBS denoiser without time conditioning is a function of x_t alone, so when no token of a sequence
    changed, p_theta(x_0 | x_t) is the same as in the previous step and reusing it gives bit-identical
    samples (same seed), with fewer network evaluations; the savings grow with T / L, as most late steps
    unmask nothing. A time-conditioned denoiser (our DiT with ``time_conditioning: true``) would give a
    slightly different p_theta at the new t: the cache then changes the sampled distribution (an
    approximation, usually small), so it is refused unless ``allow_time_conditioned=True``.
    """

    cache = True

    def __init__(self, steps: int = 256, dtype: torch.dtype = torch.float64, allow_time_conditioned: bool = False):
        super().__init__(steps, dtype)
        self.allow_time_conditioned = allow_time_conditioned

    def _check(self, model: Denoiser) -> None:
        tc = is_time_conditioned(model)
        if tc is None and not self.allow_time_conditioned:
            raise ValueError(
                "cannot tell whether the denoiser is time-conditioned; set model.time_conditioned, or pass "
                "allow_time_conditioned=True to accept the cache as an approximation"
            )
        if tc and not self.allow_time_conditioned:
            raise ValueError(
                "the denoiser is time-conditioned: the cache would reuse p_theta computed at an earlier t, "
                "which is an approximation; pass allow_time_conditioned=True (sampler=cached "
                "allow_time_conditioned_cache=true on the command line) to accept it, or use the ancestral sampler"
            )


class SemiAutoregressiveSampler:
    """Sequences of any length from a model trained on ``block_len``-token windows.

    The first block is sampled as usual (with its part of any prompt); each next block keeps the last
    ``overlap`` generated tokens as a given prefix and generates ``block_len - overlap`` new ones, until the
    requested length. The last block slides back so that it ends at the requested length with more context
    (``block_len`` minus the tokens still missing) instead of being shorter: every input the network sees
    has the length it was trained on (when the requested length is at least ``block_len``; a shorter request
    is one block of that length). Given tokens of ``x_init`` anywhere in the sequence are respected.
    """

    def __init__(self, inner: AncestralSampler, block_len: int, overlap: int | None = None):
        overlap = block_len // 2 if overlap is None else int(overlap)
        if block_len < 2 or not 0 <= overlap < block_len:
            raise ValueError(f"need block_len >= 2 and 0 <= overlap < block_len, got {block_len}, {overlap}")
        self.inner, self.block_len, self.overlap = inner, int(block_len), overlap

    @property
    def steps(self) -> int:
        return self.inner.steps

    def block_spans(self, length: int) -> list[tuple[int, int, int]]:
        """The blocks for a ``length``-token sequence: ``(start, first new position, end)`` each.

        Block k covers ``[start, end)`` and generates ``[first new, end)``, the earlier positions being its
        context. All blocks have ``block_len`` tokens (the last one slides back, overlapping more) unless
        ``length < block_len``, which is one block of ``length``.
        """
        spans, pos = [], 0
        while pos < length:
            start = 0 if pos == 0 else max(0, min(pos - self.overlap, length - self.block_len))
            end = min(length, start + self.block_len)
            spans.append((start, pos, end))
            pos = end
        return spans

    @torch.no_grad()
    def __call__(self, model: Denoiser, x_init: torch.Tensor, generator: torch.Generator | None = None,
                 progress: bool | None = False) -> SampleOutput:
        """``progress``: a bar over the blocks (None: only on a terminal)."""
        start = time.perf_counter()
        x = x_init.clone()
        L = x.shape[1]
        bar = progress_bar(None, progress, desc="sampling", unit="token", total=L)
        total = SampleOutput(ids=x, steps=0)
        spans = self.block_spans(L)
        for lo, pos, hi in spans:  # x[:, :pos] is final
            block = x[:, lo:hi]
            if (block == model.mask_id).any():
                res = self.inner(model, block, generator)
                x[:, lo:hi] = res.ids
                total.network_calls += res.network_calls
                total.sequence_evals += res.sequence_evals
                total.sequence_evals_saved += res.sequence_evals_saved
                total.steps += res.steps
            bar.update(hi - pos)
        bar.close()
        total.ids, total.seconds, total.extra["blocks"] = x, time.perf_counter() - start, len(spans)
        return total


SAMPLERS = {"ancestral": AncestralSampler, "cached": CachedAncestralSampler}


def build_sampler(name: str, steps: int, dtype: torch.dtype = torch.float64, block_len: int | None = None,
                  overlap: int | None = None, allow_time_conditioned: bool = False, inner: str = "ancestral"):
    """``name``: ancestral | cached | sar (semi-autoregressive over ``inner``)."""
    if name == "sar":
        if block_len is None:
            raise ValueError("the sar sampler needs block_len (the model's training context)")
        base = build_sampler(inner, steps, dtype, allow_time_conditioned=allow_time_conditioned)
        return SemiAutoregressiveSampler(base, block_len, overlap)
    if name == "ancestral":
        return AncestralSampler(steps, dtype)
    if name == "cached":
        return CachedAncestralSampler(steps, dtype, allow_time_conditioned=allow_time_conditioned)
    raise ValueError(f"unknown sampler {name!r}; choose ancestral, cached or sar")
