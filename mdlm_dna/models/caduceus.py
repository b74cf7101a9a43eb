"""Mamba-family backbones: Mamba, BiMamba, Caduceus-PS and Caduceus-PH (Schiff et al. 2024, "Caduceus").

One network, four registry names:

* ``mamba``: a stack of causal Mamba blocks. Each position only sees its left context, so as an MDLM
  denoiser it is poor (half of the unmasked tokens are invisible); it exists for comparisons.
* ``bimamba``: every block adds a Mamba over the sequence and one over the reversed sequence.
* ``caduceus_ps``: BiMamba with reverse-complement (RC) parameter sharing, RC-equivariant by construction:
  logits(RC(x)) = complement-permuted, flipped logits(x).
* ``caduceus_ph``: the BiMamba network whose outputs on x and on RC(x) (mapped back) are averaged
  ("post-hoc conjoining"); exactly RC-equivariant in eval mode. In training it sees plain inputs by
  default (``posthoc_train: plain``; the data pipeline applies RC augmentation, as in the paper).

How Caduceus-PS is computed. The reference keeps 2*d_model channels, [h_fwd, h_rc], where h_rc is the
RC-stream flipped along length and channels. Here the RC-stream is kept in its own orientation instead
and the two streams are stacked along the batch: z = [z_fwd; z_rc] of shape [2B, L, d_model], with
z_rc = RC(h_rc). In that frame the reference's RC-wrapped embedding, norms and mixers become the plain
modules run once on the doubled batch, and its LM head becomes head(z_fwd) + RC(head(z_rc)), where RC of
logits flips the length and permutes the vocabulary by the complement.

The swap. The reference's fused add-norm path (the one its published checkpoints were trained with,
``fused_add_norm: true``) feeds the second channel half to the forward stream and the first half to the
RC stream in every block (caduceus/modeling_rcps.py, RCPSMambaBlock.forward, fused branch), so the two
streams trade places, each flipped, before every block; its non-fused path and the final norm do not.
``rcps_swap_halves: true`` (default) reproduces the fused path; both variants are RC-equivariant.

Class conditioning (``num_classes``). A learned label embedding (one extra row: the null class) joins the
conditioning vector that drives every block's adaLN-style shift and scale (with ``time_conditioning`` it is
added to the noise-level embedding). A class label is a property of the sequence, not of a strand, so the
same vector conditions the forward and the RC stream: in the stacked frame each block treats both halves
identically, and swapping the halves (what RC(x) does) still swaps every later state, so Caduceus-PS
stays exactly RC-equivariant and -PH exactly RC-invariant after conjoining.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import recompute_blocks
from .dit import LabelEmbedder, check_labels
from .mamba import BiMamba, Mamba


@dataclass
class CaduceusConfig:
    vocab_size: int
    d_model: int = 128  # per stream: Caduceus-PS carries 2 * d_model channels
    n_layers: int = 4
    # Mamba mixer
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    # bidirectionality and reverse-complement handling (set by the builders)
    bidirectional: bool = True
    bidirectional_strategy: str = "add"  # add | ew_multiply
    bidirectional_weight_tie: bool = True  # forward and reverse Mamba share in_proj / out_proj
    rcps: bool = False
    rcps_swap_halves: bool = True  # as the reference's fused add-norm path, see the module docstring
    posthoc: bool = False
    posthoc_train: str = "plain"  # plain | augment (RC each sample at random) | conjoin (average in training)
    # blocks
    rms_norm: bool = True  # False: LayerNorm
    norm_eps: float = 1e-5
    residual_in_fp32: bool = True
    tie_embeddings: bool = True  # LM head = embedding matrix, as the published Caduceus checkpoints
    time_conditioning: bool = False  # the MDLM paper's DNA runs use none
    cond_dim: int = 128
    num_classes: int | None = None  # class-conditional: a label embedding (+1 null class) drives adaLN shift/scale
    scan_backend: str = "auto"  # auto | numba | torch | reference | cuda | triton, see selective_scan.py
    # initialisation (mamba-ssm's MixerModel scheme)
    initializer_range: float = 0.02
    rescale_prenorm_residual: bool = True
    n_residuals_per_layer: int = 1

    def __post_init__(self):
        if self.posthoc_train not in ("plain", "augment", "conjoin"):
            raise ValueError(f"posthoc_train must be plain, augment or conjoin; got {self.posthoc_train!r}")
        if self.rcps and self.posthoc:
            raise ValueError("rcps and posthoc are two alternative ways to RC-equivariance; choose one")
        if self.rcps and not self.bidirectional:
            raise ValueError("Caduceus-PS is bidirectional")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer or null, got {self.num_classes}")

    @property
    def conditioned(self) -> bool:
        """Whether the blocks read a conditioning vector (noise level and / or class label)."""
        return self.time_conditioning or self.num_classes is not None


class SigmaEmbedding(nn.Module):
    """Sinusoidal features of the noise level sigma [B] followed by an MLP: [B, cond_dim]."""

    def __init__(self, cond_dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=sigma.device) / half)
        args = sigma.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1).to(self.mlp[0].weight.dtype))


def _norm(cfg: CaduceusConfig) -> nn.Module:
    norm = nn.RMSNorm if cfg.rms_norm else nn.LayerNorm
    return norm(cfg.d_model, eps=cfg.norm_eps)


class Block(nn.Module):
    """Add -> norm -> mixer, returning (mixer output, residual stream), as mamba-ssm's Block."""

    def __init__(self, cfg: CaduceusConfig):
        super().__init__()
        self.residual_in_fp32 = cfg.residual_in_fp32
        self.norm = _norm(cfg)
        self.mixer = BiMamba(
            cfg.d_model, bidirectional=cfg.bidirectional, strategy=cfg.bidirectional_strategy,
            weight_tie=cfg.bidirectional_weight_tie, d_state=cfg.d_state, d_conv=cfg.d_conv,
            expand=cfg.expand, dt_rank=cfg.dt_rank, dt_min=cfg.dt_min, dt_max=cfg.dt_max,
            dt_init_floor=cfg.dt_init_floor, conv_bias=cfg.conv_bias, bias=cfg.bias,
            scan_backend=cfg.scan_backend,
        )
        # adaLN-style shift and scale of the normed input from the noise level / label; zero-init: identity at start
        self.ada = nn.Linear(cfg.cond_dim, 2 * cfg.d_model) if cfg.conditioned else None

    def forward(self, hidden: Tensor, residual: Tensor | None, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        residual = hidden if residual is None else residual + hidden
        if self.residual_in_fp32:  # half precision residual stream in float32 (float64 stays float64)
            residual = residual.to(torch.promote_types(residual.dtype, torch.float32))
        x = self.norm(residual.to(self.norm.weight.dtype))
        if self.ada is not None:
            shift, scale = self.ada(cond).chunk(2, dim=-1)
            x = x * (1 + scale[:, None]) + shift[:, None]
        return self.mixer(x), residual


def _rc_streams(t: Tensor) -> Tensor:
    """The swap: [z_fwd; z_rc] -> [RC(z_rc); RC(z_fwd)], RC of a hidden state flipping length and channels."""
    fwd, rc = t.chunk(2, dim=0)
    return torch.cat([rc.flip(1, 2), fwd.flip(1, 2)], dim=0)


class Caduceus(nn.Module):
    """Token ids (and optionally the noise level) -> logits, for all four Mamba-family backbones."""

    def __init__(self, cfg: CaduceusConfig, complement_ids: Sequence[int] | None = None):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.gradient_checkpointing: bool | str = False  # recompute blocks in backward: True, False, "auto"
        if cfg.rcps or cfg.posthoc:
            comp = _complement_tensor(complement_ids, cfg.vocab_size)
            self.register_buffer("complement", comp, persistent=False)
        else:
            self.complement = None
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.sigma_embed = SigmaEmbedding(cfg.cond_dim) if cfg.time_conditioning else None
        if cfg.num_classes is not None:  # absent otherwise: unconditional models keep their parameter names
            self.label_embed = LabelEmbedder(cfg.num_classes, cfg.cond_dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm_f = _norm(cfg)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._init_weights()

    # ------------------------------------------------------------------------------------------------
    def _init_weights(self) -> None:
        """mamba-ssm's MixerModel init: N(0, 0.02) embeddings, zero biases, out_proj / sqrt(n_layers)."""
        cfg = self.cfg
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.bias is not None and not getattr(m.bias, "_no_reinit", False):
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=cfg.initializer_range)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, std=cfg.initializer_range)
        if cfg.rescale_prenorm_residual:
            for m in self.modules():
                if isinstance(m, Mamba):
                    nn.init.kaiming_uniform_(m.out_proj.weight, a=math.sqrt(5))
                    with torch.no_grad():
                        m.out_proj.weight /= math.sqrt(cfg.n_residuals_per_layer * cfg.n_layers)
        for block in self.layers:
            if block.ada is not None:
                nn.init.zeros_(block.ada.weight)
                nn.init.zeros_(block.ada.bias)

    # ------------------------------------------------------------------------------------------------
    def rc_ids(self, input_ids: Tensor) -> Tensor:
        """Reverse complement of token ids [B, L]."""
        return self.complement[input_ids.flip(-1)]

    def rc_logits(self, logits: Tensor) -> Tensor:
        """Map per-token scores on RC(x) back to x's frame: flip the length, permute the vocabulary."""
        return logits.flip(1)[..., self.complement]

    def _paired(self) -> bool:
        """Whether this call runs the network on [x; RC(x)] stacked along the batch."""
        if self.cfg.rcps:
            return True
        return self.cfg.posthoc and (not self.training or self.cfg.posthoc_train == "conjoin")

    def _cond(self, input_ids: Tensor, sigma: Tensor | None, labels: Tensor | None = None) -> Tensor | None:
        check_labels(labels, self.cfg.num_classes)
        if not self.cfg.conditioned:
            return None
        batch = input_ids.shape[0]
        cond = None
        if self.sigma_embed is not None:
            if sigma is None:  # as the DiT: no noise level given reads as sigma = 0
                sigma = torch.zeros(batch, device=input_ids.device)
            cond = self.sigma_embed(sigma.reshape(-1).expand(batch))
        if self.cfg.num_classes is not None:
            y = self.label_embed(labels, batch, input_ids.device)
            cond = y if cond is None else cond + y.to(cond.dtype)
        return F.silu(cond)

    def _trunk(self, input_ids: Tensor, cond: Tensor | None) -> Tensor:
        """Final normed hidden states of the ids given (already stacked with their RC when paired)."""
        hidden, residual = self.embedding(input_ids), None
        swap = self.cfg.rcps and self.cfg.rcps_swap_halves
        recompute = recompute_blocks(self.gradient_checkpointing, self, input_ids)
        for layer in self.layers:
            if swap:
                hidden = _rc_streams(hidden)
                residual = None if residual is None else _rc_streams(residual)
            if recompute:
                hidden, residual = checkpoint(layer, hidden, residual, cond, use_reentrant=False)
            else:
                hidden, residual = layer(hidden, residual, cond)
        residual = hidden if residual is None else residual + hidden
        return self.norm_f(residual.to(self.norm_f.weight.dtype))

    def _streams(self, input_ids: Tensor, sigma: Tensor | None, paired: bool, labels: Tensor | None = None) -> Tensor:
        cond = self._cond(input_ids, sigma, labels)
        if paired:  # one conditioning vector for both strands: the label and the noise level are RC-invariant
            input_ids = torch.cat([input_ids, self.rc_ids(input_ids)], dim=0)
            cond = None if cond is None else torch.cat([cond, cond], dim=0)
        return self._trunk(input_ids, cond)

    def _head(self, hidden: Tensor) -> Tensor:
        weight = self.embedding.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(hidden, weight)

    # ------------------------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor, sigma: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Logits [B, L, vocab_size]. ``sigma`` [B] is used only with ``time_conditioning``; ``labels`` [B]
        (class indices) only with ``num_classes``, None meaning the null class."""
        cfg, batch = self.cfg, input_ids.shape[0]
        if self.training and cfg.posthoc and cfg.posthoc_train == "augment":
            flip = torch.rand(batch, device=input_ids.device) < 0.5
            ids = torch.where(flip[:, None], self.rc_ids(input_ids), input_ids)
            logits = self._head(self._streams(ids, sigma, paired=False, labels=labels))
            return torch.where(flip[:, None, None], self.rc_logits(logits), logits)
        paired = self._paired()
        logits = self._head(self._streams(input_ids, sigma, paired, labels))
        if not paired:
            return logits
        fwd, rc = logits[:batch], self.rc_logits(logits[batch:])
        return fwd + rc if cfg.rcps else 0.5 * (fwd + rc)

    def hidden_states(self, input_ids: Tensor, sigma: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Per-position features [B, L, d_model] for heads.

        Mamba / BiMamba: the final normed hidden states. Caduceus-PS and -PH: the mean of the forward
        stream and the RC stream read in x's order, 0.5 * (z_fwd[l] + z_rc[L-1-l]); these are
        RC-invariant per position: hidden_states(RC(x)) = hidden_states(x).flip(1), so any pooling over
        length is RC-invariant (see ``pooled``). The full reference-layout state is ``hidden_states_full``.
        """
        paired = self.cfg.rcps or self.cfg.posthoc
        z = self._streams(input_ids, sigma, paired, labels)
        if not paired:
            return z
        fwd, rc = z.chunk(2, dim=0)
        return 0.5 * (fwd + rc.flip(1))

    def hidden_states_full(self, input_ids: Tensor, sigma: Tensor | None = None) -> Tensor:
        """Caduceus-PS: the reference's [B, L, 2*d_model] layout [h_fwd, h_rc] (RC-equivariant under
        flipping length and channels). Other backbones: ``hidden_states``."""
        if not self.cfg.rcps:
            return self.hidden_states(input_ids, sigma)
        fwd, rc = self._streams(input_ids, sigma, True).chunk(2, dim=0)
        return torch.cat([fwd, rc.flip(1, 2)], dim=-1)

    def pooled(self, input_ids: Tensor, sigma: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Mean of ``hidden_states`` over positions (where ``mask`` [B, L] is true): [B, d_model].

        RC-invariant for Caduceus-PS and -PH (give RC(x) the flipped mask).
        """
        h = self.hidden_states(input_ids, sigma)
        if mask is None:
            return h.mean(dim=1)
        w = mask.to(h.dtype)[..., None]
        return (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)


def _complement_tensor(complement_ids: Sequence[int] | None, vocab_size: int) -> Tensor:
    """The complement permutation as a LongTensor over the vocabulary (ids past its end map to themselves)."""
    if complement_ids is None:
        raise ValueError(
            "Caduceus-PS / -PH need complement_ids (the tokenizer's complement permutation); text has no reverse "
            "complement: use model=dit_tiny, dit_small, mamba or bimamba for text"
        )
    comp = list(complement_ids) + list(range(len(complement_ids), vocab_size))
    if len(comp) != vocab_size or sorted(comp) != list(range(vocab_size)):
        raise ValueError(f"complement_ids must permute range({vocab_size}); got {list(complement_ids)}")
    if any(comp[c] != i for i, c in enumerate(comp)):
        raise ValueError("complement_ids must be an involution (complementing twice gives the token back)")
    return torch.tensor(comp, dtype=torch.long)


# ----------------------------------------------------------------------------------------------------
# builders (registered in mdlm_dna/models/__init__.py)

_FIXED = {
    "mamba": {"bidirectional": False, "rcps": False, "posthoc": False},
    "bimamba": {"bidirectional": True, "rcps": False, "posthoc": False},
    "caduceus_ps": {"bidirectional": True, "rcps": True, "posthoc": False},
    "caduceus_ph": {"bidirectional": True, "rcps": False, "posthoc": True},
}


def make_config(kind: str, cfg: Mapping[str, Any], vocab_size: int) -> CaduceusConfig:
    """CaduceusConfig for backbone ``kind`` from a config mapping (without 'name'); unknown keys raise."""
    values = dict(cfg)
    allowed = {f.name for f in fields(CaduceusConfig)} - {"vocab_size"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown {kind} config keys {unknown}; allowed: {sorted(allowed)}")
    for key, value in _FIXED[kind].items():
        if key in values and values[key] != value:
            raise ValueError(f"{kind} fixes {key}={value}; the config says {values[key]}")
        values[key] = value
    return CaduceusConfig(vocab_size=vocab_size, **values)


def build_mamba(
    cfg: Mapping[str, Any], vocab_size: int, complement_ids: Sequence[int] | None
) -> nn.Module:
    return Caduceus(make_config("mamba", cfg, vocab_size), complement_ids)


def build_bimamba(
    cfg: Mapping[str, Any], vocab_size: int, complement_ids: Sequence[int] | None
) -> nn.Module:
    return Caduceus(make_config("bimamba", cfg, vocab_size), complement_ids)


def build_caduceus_ps(
    cfg: Mapping[str, Any], vocab_size: int, complement_ids: Sequence[int] | None
) -> nn.Module:
    return Caduceus(make_config("caduceus_ps", cfg, vocab_size), complement_ids)


def build_caduceus_ph(
    cfg: Mapping[str, Any], vocab_size: int, complement_ids: Sequence[int] | None
) -> nn.Module:
    return Caduceus(make_config("caduceus_ph", cfg, vocab_size), complement_ids)
