"""Start a run from another trained model's weights: ``pretrain init_from=RUN_OR_EXPORT``.

The route of DiffuLLaMA and Dream for text: an autoregressive model learns faster than a masked
diffusion model of the same size (here 16x in steps), so train it first and adapt its weights to
MDLM. The source must have the same backbone (every model key but ``causal`` and the runtime keys
equal, the same tokenizer); its weights (EMA ones when it kept them) replace the new model's
backbone, and the EMA restarts from them. The optimiser, the step count and the schedule start
afresh: this is an initialisation, not a resume.

From a causal (AR) source to a bidirectional target:

- the causal attention mask is dropped (``causal`` is a flag of the network, not a weight);
- the causal local convolution (taps at offsets -(k-1)..0) becomes the centred one of the target
  (offsets -k//2..k//2): every tap keeps its offset where the centred kernel has it, the taps further
  left are dropped and the right-hand taps start at zero, so each block first mixes the same left
  neighbours as before;
- the shift is kept, as in Dream, when the target has ``model.input_shift=true`` (the recommended
  route): our AR reads [BOS] x_1 .. x_{L-1} and predicts x_l where it read x_{l-1}; a shifted DiT
  reads [start] x_1 .. x_L (noised) and predicts x_l where it read x_{l-1} too, so every weight keeps
  its meaning, the AR's [BOS] embedding becomes the start vector, and the MDLM objective, samplers and
  scorers see an ordinary backbone (ids -> logits at the same positions). Without ``input_shift`` the
  weights are copied as they are and the network must first relearn that position l holds x_l.
  The [MASK] embedding, never an AR input, keeps its fresh initialisation either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mdlm_dna.utils.errors import ConfigError

log = logging.getLogger("mdlm_dna.init_from")

# runtime keys, and the chain under the network (model.markov_order): a run counts its own chain on its own
# training split, so only the network's weights are carried (an AR run initialises a chain MDLM)
IGNORED_MODEL_KEYS = ("causal", "input_shift", "compile", "checkpointing", "scan_backend", "attn_backend",
                      "markov_order", "markov_strands")


def architecture_differences(source: Mapping[str, Any], target: Mapping[str, Any]) -> list[str]:
    """The model and tokenizer keys in which two run configs differ (``causal`` and runtime keys aside).

    >>> architecture_differences({"model": {"d_model": 64, "causal": True}}, {"model": {"d_model": 128}})
    ['model.d_model: source 64, target 128']
    """
    diffs = []
    for part in ("model",):
        a, b = source.get(part) or {}, target.get(part) or {}
        for key in sorted(set(a) | set(b)):
            va, vb = a.get(key), b.get(key)
            if key not in IGNORED_MODEL_KEYS and va != vb:
                diffs.append(f"{part}.{key}: source {va!r}, target {vb!r}")
    tok_a = ((source.get("data") or {}).get("tokenizer") or {})
    tok_b = ((target.get("data") or {}).get("tokenizer") or {})
    if tok_a != tok_b:
        diffs.append(f"data.tokenizer: source {tok_a!r}, target {tok_b!r}")
    return diffs


def causal_to_centred(weight: torch.Tensor) -> torch.Tensor:
    """A causal depthwise kernel [C, 1, k] (taps at offsets -(k-1)..0) as a centred one (offsets -k//2..k//2):
    each tap keeps its offset where the centred kernel has one; the rest are dropped, the new ones zero.

    >>> causal_to_centred(torch.tensor([[[1.0, 2, 3, 4, 5]]])).tolist()  # offsets -4..0 -> -2..2
    [[[3.0, 4.0, 5.0, 0.0, 0.0]]]
    """
    k = weight.shape[-1]
    out = torch.zeros_like(weight)
    out[..., : k // 2 + 1] = weight[..., k // 2 :]
    return out


def map_backbone_state(source: Mapping[str, torch.Tensor], source_causal: bool, target_causal: bool,
                       conv_keys: set[str], start_from: int | None = None) -> dict[str, torch.Tensor]:
    """The source backbone's state dict as the target's: a copy, with the convolution taps re-centred when a
    causal source initialises a bidirectional target (``conv_keys``: the depthwise-convolution weights), and,
    for a target with ``input_shift`` from a source without, its start vector = the embedding of token
    ``start_from`` (the AR's [BOS])."""
    out = {}
    for key, value in source.items():
        if key in conv_keys and source_causal and not target_causal:
            value = causal_to_centred(value)
        out[key] = value.detach().clone()
    if start_from is not None:
        out["start"] = source["embed.weight"][start_from].detach().clone()
    return out


def conv_keys(backbone: nn.Module) -> set[str]:
    """The names of a backbone's depthwise-convolution weights (the taps a causal-to-centred mapping moves)."""
    return {f"{name}.weight" for name, m in backbone.named_modules()
            if isinstance(m, nn.Conv1d) and m.groups == m.in_channels and m.groups > 1}


def network(backbone: nn.Module) -> nn.Module:
    """The trained network of a backbone: itself, or the one under a chain (``markov_prior.ChainResidual``)."""
    return backbone.backbone if hasattr(backbone, "prior") else backbone


def init_from(module: nn.Module, source: str, cache_dir: str | None = None) -> dict[str, Any]:
    """Load ``source``'s backbone weights (a run folder, a .ckpt, an exported folder, a shipped name) into
    ``module`` (a DiffusionModule) before training; returns what was loaded (source objective, keys mapped).

    Raises ``ConfigError`` naming the differences when the source's architecture or tokenizer differs.
    """
    from mdlm_dna.artifacts.checkpoints import load_module

    try:
        src, _ = load_module(source, use_ema=True, cache_dir=cache_dir)
    except FileNotFoundError as e:
        raise ConfigError(f"init_from={source}: {e}") from e
    diffs = architecture_differences(src.config, module.config)
    if diffs:
        raise ConfigError(f"init_from={source}: another architecture than this run's ({'; '.join(diffs)}); "
                          "train the source with the same model and tokenizer settings")
    target = network(module.objective.backbone)
    source_causal = bool((src.config.get("model") or {}).get("causal"))
    target_causal = bool((module.config.get("model") or {}).get("causal"))
    shifted = [bool((c.get("model") or {}).get("input_shift")) for c in (src.config, module.config)]
    start_from = module.tokenizer.bos_id if shifted == [False, True] else None
    state = map_backbone_state(network(src.objective.backbone).state_dict(), source_causal, target_causal,
                               conv_keys(target), start_from)
    now = target.state_dict()
    bad = sorted(k for k in set(now) | set(state) if k not in now or k not in state or now[k].shape != state[k].shape)
    if bad:
        raise ConfigError(f"init_from={source}: its weights do not fit this run's backbone ({', '.join(bad[:4])}"
                          f"{' ...' if len(bad) > 4 else ''})")
    target.load_state_dict(state)
    ema = getattr(module, "ema", None)
    if ema is not None:  # the EMA restarts from the loaded weights
        ema.shadow = {n: p.detach().float().clone() for n, p in module.objective.named_parameters()
                      if n in ema.shadow}
    info = {"source": str(source), "source_objective": (src.config.get("objective") or {}).get("name"),
            "keys": len(state), "causal_to_bidirectional": source_causal and not target_causal,
            "start_from_bos": start_from is not None}
    log.info("initialised from %s (%s, %d tensors)", source, info["source_objective"], len(state))
    return info
