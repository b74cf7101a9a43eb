"""Training FLOPs per token of our backbones, written out, for model-FLOPs utilisation (MFU).

Counted as in the PaLM paper's MFU: a training step costs 3x the forward matmul FLOPs (forward,
backward for activations, backward for weights), i.e. 6 FLOPs per weight used per token, plus
the attention score/value products, 12 * n_layers * L * d per token. The input embedding is a
lookup (no FLOPs); work done once per sequence (adaLN modulation from the noise level, the
time embedding) is left out, being tiny next to the per-token work. Normalisations, activations
and the softmax are not matmuls and are not counted, also as in PaLM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

H100_SXM_BF16_TFLOPS = 989.0  # dense bf16 peak of an H100 SXM


def dit_flops_per_token(cfg: Mapping[str, Any], vocab_size: int, seq_len: int) -> float:
    d, layers, ratio = int(cfg["d_model"]), int(cfg["n_layers"]), int(cfg.get("mlp_ratio", 4))
    per_layer = 4 * d * d + 2 * ratio * d * d  # qkv + out projection, MLP up + down
    weights = layers * per_layer + d * vocab_size  # + the output head
    attention = 12 * layers * seq_len * d  # (QK^T + AV) x 2 FLOPs x 3 (fwd + bwd), full (bidirectional) attention
    if cfg.get("causal"):
        attention /= 2  # a causal kernel skips the upper triangle
    return 6 * weights + attention


def mamba_flops_per_token(cfg: Mapping[str, Any], vocab_size: int, seq_len: int, kind: str) -> float:
    """Mamba-1 mixers: 2 FLOPs per weight per token forward, and the selective scan ~ 9 x D x N per token
    forward (Mamba paper, section 3.3); x 3 for training. BiMamba runs the mixer in both directions; with
    tied projections and the ``add`` strategy in_proj / out_proj act per position and run once (see
    models/mamba.py). Caduceus-PS runs everything on both strands."""
    d, layers = int(cfg["d_model"]), int(cfg["n_layers"])
    expand, n, d_conv = int(cfg.get("expand", 2)), int(cfg.get("d_state", 16)), int(cfg.get("d_conv", 4))
    inner = expand * d
    dt_rank = cfg.get("dt_rank", "auto")
    dt_rank = math.ceil(d / 16) if dt_rank in ("auto", None) else int(dt_rank)
    projections = 2 * (d * 2 * inner + inner * d)  # in_proj (x and z) + out_proj
    per_direction = 2 * (inner * (dt_rank + 2 * n) + dt_rank * inner + inner * d_conv) + 9 * inner * n
    directions = 1 if kind == "mamba" else 2
    shared = kind != "mamba" and cfg.get("bidirectional_weight_tie", True) and (
        cfg.get("bidirectional_strategy", "add") == "add"
    )
    forward = (projections if shared else projections * directions) + per_direction * directions
    strands = 2 if kind == "caduceus_ps" else 1
    return strands * (3 * forward * layers + 6 * d * vocab_size)  # + the output head, per strand


def markov_flops_per_token(order: int) -> float:
    """The chain under the network (``model.markov_order``): forward and backward passes over 4^k states, each
    ~11 operations per state and position (transition multiply-add 8, emission 1, normalisation 2), and the
    posterior's product and sum (2); computed once per training step, with no gradient."""
    return 24.0 * 4**order if order else 0.0


def flops_per_token(model_cfg: Mapping[str, Any], vocab_size: int, seq_len: int) -> float:
    """Training FLOPs per token for the backbone a ``model`` config names (and the chain under it, if any)."""
    name = model_cfg["name"]
    chain = markov_flops_per_token(int(model_cfg.get("markov_order", 0) or 0))
    if name == "dit":
        return dit_flops_per_token(model_cfg, vocab_size, seq_len) + chain
    if name in ("mamba", "bimamba", "caduceus_ps", "caduceus_ph"):
        return mamba_flops_per_token(model_cfg, vocab_size, seq_len, name) + chain
    raise ValueError(f"no FLOP formula for backbone {name!r}")
