"""DiT: a bidirectional transformer with adaLN time conditioning (the MDLM paper's backbone).

Pre-norm blocks whose LayerNorm outputs are shifted, scaled and gated by a
projection of the noise-level embedding (zero-initialised, so every block
starts as the identity), rotary position embeddings, and PyTorch's fused
``scaled_dot_product_attention``. ``causal=True`` gives the same network with a
causal mask, the autoregressive baseline's backbone. ``num_classes`` makes it class-conditional: a
label embedding is added to the noise-level embedding before the adaLN projections (c = t + y, as in
DiT), with one extra "null" class for unconditional use (classifier-free guidance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import recompute_blocks


@dataclass
class DiTConfig:
    vocab_size: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    cond_dim: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0
    attn_dropout: float | None = None  # dropout on attention probabilities; None: ``dropout`` (0 in the MDLM reference)
    time_conditioning: bool = True  # off: the network sees sigma = 0 (no time signal), as in MDLM's option
    causal: bool = False
    rotary_base: float = 10_000.0
    num_classes: int | None = None  # class-conditional: a label embedding joins the adaLN conditioning (+1 null class)
    conv_kernel: int = 0  # > 0 (odd): a depthwise convolution over positions in every block (local context)
    # the AR layout (Dream's shift, for init_from an AR run): the trunk reads a learned start vector, then
    # tokens 1..L; the output where token l-1 was read predicts token l, the last output is dropped
    input_shift: bool = False

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("the head dimension must be even for rotary embeddings")
        if self.conv_kernel < 0 or (self.conv_kernel and self.conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be 0 (off) or an odd width, got {self.conv_kernel}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer or null, got {self.num_classes}")


class Rotary(nn.Module):
    """Rotary position embedding, cached per sequence length."""

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, torch.Tensor, torch.Tensor] | None = None

    def forward(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is None or self._cache[0] != seq_len or self._cache[1] != device:
            t = torch.arange(seq_len, device=device, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq.to(device))
            self._cache = (seq_len, device, freqs.cos(), freqs.sin())
        return self._cache[2], self._cache[3]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, L, Dh]; rotate pairs (x1, x2) made of the two halves of the head dimension."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # half precision rotates in fp32
    x1, x2 = x.to(dtype).chunk(2, dim=-1)
    cos, sin = cos.to(dtype), sin.to(dtype)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


class LabelEmbedder(nn.Module):
    """Class labels -> vectors added to the conditioning c; index ``num_classes`` is the null class
    ("no label"), which label dropout trains so that one network is also the unconditional model."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = int(num_classes)
        self.table = nn.Embedding(self.num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if labels is None:
            labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        labels = labels.reshape(-1).expand(batch) if labels.numel() == 1 else labels
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape [{batch}], got {list(labels.shape)}")
        return self.table(labels)


def check_labels(labels: torch.Tensor | None, num_classes: int | None) -> None:
    """Labels given to an unconditional backbone are an error, not silently ignored."""
    if labels is not None and num_classes is None:
        raise ValueError("labels given to a backbone built without num_classes (an unconditional model)")


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of the scalar noise level followed by an MLP."""

    def __init__(self, cond_dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
        args = sigma.float()[:, None] * freqs[None]
        feats = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class LocalMixer(nn.Module):
    """A depthwise convolution over positions (same padding; padding tokens read as zeros).

    Why: a masked position's own embedding carries nothing, so a plain bidirectional transformer must
    first learn attention that singles out its neighbours before it can use them; on DNA that takes
    thousands of steps, during which the model predicts only the base composition. A short convolution
    hands every position its neighbours from the first step (the short convolutions of Mamba, Hyena and
    Caduceus play the same role).
    """

    def __init__(self, d_model: int, kernel: int, causal: bool = False):
        super().__init__()
        self.pad = (kernel - 1, 0) if causal else (kernel // 2, kernel // 2)  # causal: only the left side
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model, bias=False)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if key_mask is not None:
            h = h * key_mask[..., None].to(h.dtype)
        return self.conv(F.pad(h.transpose(1, 2), self.pad)).transpose(1, 2)


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.causal, self.dropout = cfg.n_heads, cfg.causal, cfg.dropout
        self.attn_dropout = cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout
        self.norm1 = nn.LayerNorm(d, elementwise_affine=True, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=True, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(approximate="tanh"), nn.Linear(cfg.mlp_ratio * d, d)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.local = LocalMixer(d, cfg.conv_kernel, cfg.causal) if cfg.conv_kernel else None
        self.adaLN = nn.Linear(cfg.cond_dim, 6 * d)
        nn.init.zeros_(self.adaLN.weight)
        nn.init.zeros_(self.adaLN.bias)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``key_mask`` [B, L] bool, True at real tokens: no query attends to padding."""
        B, L, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=-1)
        if self.local is not None:  # a residual branch of its own, so that the MLP sees the neighbours too
            x = x + self.local(x, key_mask)
        h = modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.qkv(h).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        mask = None
        if key_mask is not None:
            mask = key_mask[:, None, None, :]
            if self.causal:
                mask = mask & torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal and mask is None,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        a = a.transpose(1, 2).reshape(B, L, D)
        x = x + gate1[:, None] * self.drop(self.attn_out(a))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2[:, None] * self.drop(self.mlp(h))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.d_model = cfg.d_model
        self.gradient_checkpointing: bool | str = False  # recompute blocks in backward: True, False, "auto"
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.kaiming_uniform_(self.embed.weight, a=math.sqrt(5))
        self.sigma_embed = TimestepEmbedder(cfg.cond_dim)
        if cfg.num_classes is not None:  # absent otherwise: unconditional models keep their parameter names
            self.label_embed = LabelEmbedder(cfg.num_classes, cfg.cond_dim)
        if cfg.input_shift:  # absent otherwise: models without it keep their parameter names
            self.start = nn.Parameter(torch.randn(cfg.d_model) / math.sqrt(cfg.d_model))
        self.rotary = Rotary(cfg.d_model // cfg.n_heads, cfg.rotary_base)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.n_layers))
        self.norm_f = nn.LayerNorm(cfg.d_model, elementwise_affine=True, bias=False)
        self.adaLN_f = nn.Linear(cfg.cond_dim, 2 * cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size)
        for lin in (self.adaLN_f, self.lm_head):  # start from uniform predictions
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _cond(
        self, input_ids: torch.Tensor, sigma: torch.Tensor | None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_labels(labels, self.cfg.num_classes)
        if sigma is None or not self.cfg.time_conditioning:
            sigma = torch.zeros(input_ids.shape[0], device=input_ids.device)
        c = self.sigma_embed(sigma)
        if self.cfg.num_classes is not None:  # c = t_emb + y_emb, as in DiT's class-conditional models
            c = c + self.label_embed(labels, input_ids.shape[0], input_ids.device).to(c.dtype)
        return F.silu(c)

    def _trunk(
        self,
        input_ids: torch.Tensor,
        sigma: torch.Tensor | None,
        key_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self._cond(input_ids, sigma, labels)
        x = self.embed(input_ids)
        if self.cfg.input_shift:  # L + 1 positions: the start vector, then the tokens
            x = torch.cat([self.start.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
            key_mask = None if key_mask is None else F.pad(key_mask, (1, 0), value=True)
        cos, sin = self.rotary(x.shape[1], input_ids.device)
        recompute = recompute_blocks(self.gradient_checkpointing, self, input_ids)
        for block in self.blocks:
            if recompute:
                x = checkpoint(block, x, c, cos, sin, key_mask, use_reentrant=False)
            else:
                x = block(x, c, cos, sin, key_mask)
        return x, c

    # right-padded batches can be attended as if unpadded (rotary positions are relative)
    supports_attention_mask = True

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        sigma: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``attention_mask`` [B, L] bool, True at real tokens: padding is never attended to, so a sequence's
        states at its real positions do not depend on how much padding the batch adds."""
        x = self.norm_f(self._trunk(input_ids, sigma, attention_mask, labels)[0])
        return x[:, 1:] if self.cfg.input_shift else x  # the state where each token was read

    def forward(
        self, input_ids: torch.Tensor, sigma: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``labels`` [B] class indices of a conditional model (``num_classes``); None: the null class."""
        x, c = self._trunk(input_ids, sigma, labels=labels)
        if self.cfg.input_shift:
            x = x[:, :-1]  # position l read token l-1 and predicts token l
        shift, scale = self.adaLN_f(c).chunk(2, dim=-1)
        return self.lm_head(modulate(self.norm_f(x), shift, scale))


def build(cfg: Mapping[str, Any], vocab_size: int, complement_ids: Sequence[int] | None = None) -> DiT:
    known = {f.name for f in fields(DiTConfig)} - {"vocab_size"}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"unknown DiT option(s) {sorted(unknown)}; known: {sorted(known)}")
    return DiT(DiTConfig(vocab_size=vocab_size, **cfg))
