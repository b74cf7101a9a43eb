"""Backbones: networks that map token ids (and a noise level) to logits.

Every backbone is an ``nn.Module`` with

    forward(input_ids: LongTensor[B, L], sigma: FloatTensor[B] | None) -> FloatTensor[B, L, vocab_size]
    hidden_states(input_ids, sigma=None) -> FloatTensor[B, L, d_model]   # for classification heads
    d_model: int

``sigma`` is the noise level the objective conditions on (MDLM passes
-log alpha_t); backbones built without time conditioning ignore it, and the AR
baseline passes None. A backbone is chosen by the ``name`` key of its config.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

# name -> "module:builder"; builders take (config mapping without 'name', vocab_size, complement_ids)
_REGISTRY: dict[str, str] = {
    "dit": "mdlm_dna.models.dit:build",
    "mamba": "mdlm_dna.models.caduceus:build_mamba",
    "bimamba": "mdlm_dna.models.caduceus:build_bimamba",
    "caduceus_ps": "mdlm_dna.models.caduceus:build_caduceus_ps",
    "caduceus_ph": "mdlm_dna.models.caduceus:build_caduceus_ph",
}


def available_backbones() -> list[str]:
    return sorted(_REGISTRY)


def build_backbone(
    config: Mapping[str, Any], vocab_size: int, complement_ids: Sequence[int] | None = None
) -> nn.Module:
    """Build the backbone named by ``config['name']`` from the rest of the config.

    ``checkpointing`` (activation checkpointing per block: true, false or "auto", see ``recompute_blocks``)
    is applied here, and so is ``markov_order`` (k > 0: the network learns the residual of an order-k chain's
    exact posterior, ``markov_prior.ChainResidual``, counted on ``markov_strands``); ``compile`` says how the
    trainer runs the backbone and is left to it (``DiffusionModule.setup``).
    """
    mode = config.get("checkpointing", False)
    if mode not in (True, False, "auto"):
        raise ValueError(f"model.checkpointing must be true, false or auto, got {mode!r}")
    cfg = {k: v for k, v in config.items() if k not in ("compile", "checkpointing")}
    name = cfg.pop("name", None)
    markov_order = cfg.pop("markov_order", 0) or 0
    if markov_order == "auto":
        raise ValueError("model.markov_order=auto depends on the run (data, objective, device): resolve it first "
                         "with markov_prior.resolve_markov_order(config)")
    markov_order = int(markov_order)
    markov_strands = str(cfg.pop("markov_strands", "both"))
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; choose one of {available_backbones()}")
    module_name, builder = _REGISTRY[name].split(":")
    build = getattr(importlib.import_module(module_name), builder)
    backbone = build(cfg, vocab_size=vocab_size, complement_ids=complement_ids)
    backbone.gradient_checkpointing = mode
    if markov_order:  # the exact order-k chain denoiser under the network (fitted by the trainer's setup)
        from mdlm_dna.models.markov_prior import ChainResidual

        backbone = ChainResidual(backbone, markov_order, markov_strands)
    return backbone


# "auto" recomputes blocks from this many tokens per batch on: activation memory grows with the tokens (a
# Caduceus-PS fine-tuning batch of 256 x 101 bases peaks at 3.1 GiB resident without, 1.8 GiB with), while
# the pretraining default (32 x 128) fits easily and would pay the recomputation for nothing
AUTO_RECOMPUTE_TOKENS = 16_384


def recompute_blocks(mode: bool | str, module: nn.Module, input_ids: torch.Tensor) -> bool:
    """Whether a training forward pass keeps only each block's input and recomputes the rest in backward.

    ``"auto"``: on CPUs (where activations share the machine's RAM) for batches of at least
    ``AUTO_RECOMPUTE_TOKENS`` tokens; never on GPUs.
    """
    if not (module.training and torch.is_grad_enabled()):
        return False
    if mode == "auto":
        return input_ids.device.type == "cpu" and input_ids.numel() >= AUTO_RECOMPUTE_TOKENS
    return bool(mode)
