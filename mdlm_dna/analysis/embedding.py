"""Per-position features of a backbone, for ``DiffusionLM.embed``: a chosen layer, reverse-complement averaging,
tiling of long sequences, and pooling (mean | first | last | center:K).

    feats = position_features(backbone, ids, layer=None, rc=None)       # [B, L, d_model]
    tiles(300, window=128)                                               # [(0, 128, 0, 96), ...]
    pool(np.ones((10, 4)), "center:4").shape                             # (4,)

Long sequences are embedded in windows of the training length that overlap by half; each position takes its
features from the window in which it is most central, so no position is read near a window's edge except at the
sequence's ends (and the network never runs past the length it was trained on, e.g. full attention over 100 kb).
"""

from __future__ import annotations

import numpy as np
import torch

from mdlm_dna.utils.errors import ConfigError

POOLINGS = ("mean", "first", "last", "center:K")


def parse_pooling(pooling: str | None) -> tuple[str | None, int | None]:
    """("mean" | "first" | "last" | "center" | None, K): ``"center:100"`` -> ("center", 100)."""
    if pooling is None or str(pooling).lower() in ("null", "none"):
        return None, None
    text = str(pooling)
    if text in ("mean", "first", "last"):
        return text, None
    if text.startswith("center:"):
        k = text.removeprefix("center:")
        if k.isdigit() and int(k) > 0:
            return "center", int(k)
    raise ConfigError(f"pooling={pooling!r}: must be mean, first, last, center:K (K a positive number of bases) "
                      "or null (per position)")


def pool(features: np.ndarray, pooling: str | None, where: str = "sequence") -> np.ndarray:
    """Pool [L, D] features over positions; ``center:K`` averages the K central positions."""
    kind, k = parse_pooling(pooling)
    if kind is None:
        return features
    if kind == "mean":
        return features.mean(axis=0)
    if kind == "first":
        return features[0]
    if kind == "last":
        return features[-1]
    length = features.shape[0]
    if k > length:
        raise ConfigError(f"pooling=center:{k}: {where} has only {length} positions; use a smaller K or mean")
    start = (length - k) // 2
    return features[start : start + k].mean(axis=0)


def tiles(length: int, window: int) -> list[tuple[int, int, int, int]]:
    """Windows ``(start, end, keep_from, keep_to)`` covering ``length`` positions: windows of ``window`` overlapping
    by half, the last one aligned to the end; positions keep_from..keep_to of the sequence come from that window
    (the ones nearest its centre). One window when the sequence fits."""
    if length <= window:
        return [(0, length, 0, length)]
    stride = max(window // 2, 1)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    out = []
    for i, s in enumerate(starts):
        centre = s + window / 2
        lo = 0 if i == 0 else int(np.ceil((centre + starts[i - 1] + window / 2) / 2))
        hi = length if i == len(starts) - 1 else int(np.ceil((centre + starts[i + 1] + window / 2) / 2))
        out.append((s, s + window, lo, hi))
    return out


def _blocks(backbone: torch.nn.Module) -> torch.nn.ModuleList:
    blocks = getattr(backbone, "blocks", None)
    if blocks is None:
        blocks = getattr(backbone, "layers", None)
    if blocks is None:
        raise ConfigError(f"layer=: {type(backbone).__name__} does not expose its blocks")
    return blocks


def num_layers(backbone: torch.nn.Module) -> int:
    return len(_blocks(backbone))


def layer_features(backbone: torch.nn.Module, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """The residual stream after block ``layer`` (1 = first block, -1 = last, 0 = the token embeddings): [B, L, D]."""
    cfg = getattr(backbone, "cfg", None)
    if getattr(cfg, "rcps", False) or getattr(cfg, "posthoc", False):
        raise ConfigError("layer=: per-layer features of Caduceus-PS/-PH (two strand streams) are not available; "
                          "use layer=null (the final features, which are RC-invariant)")
    blocks = _blocks(backbone)
    n = len(blocks)
    index = n + 1 + layer if layer < 0 else layer  # -1: the last block
    if not 0 <= index <= n:
        raise ConfigError(f"layer={layer}: this model has {n} blocks; use 0..{n} or -{n}..-1")
    if index == 0:
        embed = getattr(backbone, "embed", None) or getattr(backbone, "embedding", None)
        return embed(ids)
    seen: dict[str, torch.Tensor] = {}

    def grab(_module, _inputs, output):
        if isinstance(output, tuple):  # Mamba family: (mixer output, residual before it)
            hidden, residual = output
            output = hidden if residual is None else hidden + residual
        seen["h"] = output

    handle = blocks[index - 1].register_forward_hook(grab)
    try:
        backbone.hidden_states(ids)
    finally:
        handle.remove()
    return seen["h"]


def position_features(backbone: torch.nn.Module, ids: torch.Tensor, layer: int | None = None,
                      rc: str | None = None, complement: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position features [B, L, D] (float32): the final normed states, or block ``layer``'s output; with
    ``rc="mean"`` averaged with the reverse complement's features read back in the forward frame."""

    def run(x: torch.Tensor) -> torch.Tensor:
        h = backbone.hidden_states(x) if layer is None else layer_features(backbone, x, layer)
        return h.float()

    h = run(ids)
    if rc == "mean":
        if complement is None:
            raise ConfigError("rc=mean needs a DNA model (text has no reverse complement)")
        h = 0.5 * (h + run(complement[ids].flip(-1)).flip(1))
    return h
