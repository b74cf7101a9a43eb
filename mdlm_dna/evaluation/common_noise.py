"""Common random numbers for scoring: the noise a window gets depends only on (seed, its place, the draw).

``DiffusionLM.score`` averages ``draws`` Monte-Carlo NELBO estimates per window. Keying each window's noise by
the seed and the window's index within its sequence (not by the batch or the row) makes a sequence's score the
same wherever it stands in the input and whatever the batch size, and gives two sequences of equal length the
same noise: their difference (a variant's effect, a paired comparison) then has far less variance than the
difference of two independent estimates. The times of one window's draws are low-discrepancy,
u_k = (u_0 + k / draws) mod 1.

The price: a mean over many windows scored under one shared noise has the Monte-Carlo variance of ``draws``
draws, not of ``draws`` x windows (every window sits at the same few noise levels). For a test-set figure, key
the noise by the sequence too (``sequence_key``; ``DiffusionLM.score(..., common_noise=False)``).

    >>> t_u, mask_u = window_noise(seed=0, window_index=0, length=128, draws=4)   # [4], [4, 128]
"""

from __future__ import annotations

import torch

from mdlm_dna.diffusion.mdlm import DrawnNoise
from mdlm_dna.train.lit_module import seeded_generator

STREAM = 30_003  # keeps these draws apart from training's and sampling's keyed streams


def window_noise(seed: int, window_index: int, length: int, draws: int,
                 sequence_key: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(time uniforms [draws], masking uniforms [draws, length]) of one window, on the CPU, float32;
    ``sequence_key`` (e.g. the sequence's index in the input) gives each sequence noise of its own."""
    keys = (int(seed), int(window_index)) + (() if sequence_key is None else (int(sequence_key),))
    g = seeded_generator(torch.device("cpu"), STREAM, *keys)
    u0 = torch.rand(1, generator=g)
    t_u = (u0 + torch.arange(draws) / draws) % 1.0
    return t_u, torch.rand(draws, length, generator=g)


def batch_noise(seed: int, window_keys: list[tuple[int, int | None]], length: int, draws: int,
                device: torch.device) -> list[DrawnNoise]:
    """One :class:`DrawnNoise` per draw for a batch of windows of one length: row r keyed by window_keys[r], a
    (window index, sequence key or None) pair."""
    cache = {key: window_noise(seed, key[0], length, draws, key[1]) for key in set(window_keys)}
    t_u = torch.stack([cache[key][0] for key in window_keys])  # [B, draws]
    mask_u = torch.stack([cache[key][1] for key in window_keys])  # [B, draws, length]
    return [DrawnNoise(t_uniform=t_u[:, k].to(device), mask_uniform=mask_u[:, k].to(device)) for k in range(draws)]
