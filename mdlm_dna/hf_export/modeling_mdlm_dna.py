"""An mdlm-dna model for transformers: a self-contained re-statement of mdlm-dna's forward pass in plain PyTorch.

Written into an exported folder by mdlm-dna's ``save_pretrained``; it does not import mdlm_dna, and needs only
torch and transformers (attention: ``torch.nn.functional.scaled_dot_product_attention``; no Triton, flash-attention
or compiled kernels). The parameter names are mdlm-dna's, so the folder's one ``model.safetensors`` serves both.

    model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
    logits = model(input_ids).logits       # the MDLM denoiser: log_softmax gives p(x_0 | x_t) at [MASK] positions

``sigma`` (the noise level, [B]) defaults to ``config.default_sigma``: what the model was trained with when it
ignores the noise level (``time_conditioning: false``). ``class_labels`` ([B] class indices; ``config.class_names``
gives their order) conditions a class-conditional model; None is the unconditional (null-class) model. Tokens in
``config.excluded_ids`` ([MASK] and the special tokens a genome never holds) get logit -inf, as in mdlm-dna.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutput, MaskedLMOutput

try:  # the remote-code loader imports this file as part of a package; a plain import (tests, copies) works too
    from .configuration_mdlm_dna import MDLMDNAConfig
except ImportError:  # pragma: no cover
    from configuration_mdlm_dna import MDLMDNAConfig


# ---------------------------------------------------------------------------------------------------------
# DiT: pre-norm transformer blocks with adaLN conditioning on the noise level (and class), rotary positions,
# an optional depthwise convolution over positions in every block


def rotary(seq_len, head_dim, base, device):
    """cos, sin of the rotary angles: [L, head_dim / 2] each (float32)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return freqs.cos(), freqs.sin()


def apply_rotary(x, cos, sin):
    """Rotate the pairs made of the two halves of the head dimension; x: [B, H, L, Dh]."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x1, x2 = x.to(dtype).chunk(2, dim=-1)
    cos, sin = cos.to(dtype), sin.to(dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of the scalar noise level, then an MLP."""

    def __init__(self, cond_dim, freq_dim=256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
        args = sigma.float()[:, None] * freqs[None]
        feats = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class index -> vector added to the conditioning; index ``num_classes`` is the null class (no label)."""

    def __init__(self, num_classes, dim):
        super().__init__()
        self.num_classes = int(num_classes)
        self.table = nn.Embedding(self.num_classes + 1, dim)

    def forward(self, labels, batch, device):
        if labels is None:
            labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, device=device).long()
        labels = labels.reshape(-1).expand(batch) if labels.numel() == 1 else labels
        return self.table(labels)


class LocalMixer(nn.Module):
    """Depthwise convolution over positions (same padding; causal models look left only)."""

    def __init__(self, d_model, kernel, causal=False):
        super().__init__()
        self.pad = (kernel - 1, 0) if causal else (kernel // 2, kernel // 2)
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model, bias=False)

    def forward(self, h, key_mask=None):
        if key_mask is not None:
            h = h * key_mask[..., None].to(h.dtype)
        return self.conv(F.pad(h.transpose(1, 2), self.pad)).transpose(1, 2)


class DiTBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        self.n_heads, self.causal = c["n_heads"], bool(c.get("causal", False))
        self.norm1 = nn.LayerNorm(d, elementwise_affine=True, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=True, bias=False)
        ratio = c.get("mlp_ratio", 4)
        self.mlp = nn.Sequential(nn.Linear(d, ratio * d), nn.GELU(approximate="tanh"), nn.Linear(ratio * d, d))
        kernel = int(c.get("conv_kernel") or 0)
        self.local = LocalMixer(d, kernel, self.causal) if kernel else None
        self.adaLN = nn.Linear(c["cond_dim"], 6 * d)

    def forward(self, x, c, cos, sin, key_mask=None):
        B, L, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=-1)
        if self.local is not None:
            x = x + self.local(x, key_mask)
        h = modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.qkv(h).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        mask = None
        if key_mask is not None:
            mask = key_mask[:, None, None, :]
            if self.causal:
                mask = mask & torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal and mask is None)
        x = x + gate1[:, None] * self.attn_out(a.transpose(1, 2).reshape(B, L, D))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2[:, None] * self.mlp(h)


class DiT(nn.Module):
    """The backbone; ``hidden_states`` are the final normed states, ``forward`` the logits."""

    def __init__(self, c, vocab_size):
        super().__init__()
        self.c = c
        d = c["d_model"]
        self.embed = nn.Embedding(vocab_size, d)
        self.sigma_embed = TimestepEmbedder(c["cond_dim"])
        if c.get("num_classes") is not None:
            self.label_embed = LabelEmbedder(c["num_classes"], c["cond_dim"])
        self.blocks = nn.ModuleList(DiTBlock(c) for _ in range(c["n_layers"]))
        self.norm_f = nn.LayerNorm(d, elementwise_affine=True, bias=False)
        self.adaLN_f = nn.Linear(c["cond_dim"], 2 * d)
        self.lm_head = nn.Linear(d, vocab_size)

    def trunk(self, input_ids, sigma, key_mask=None, labels=None):
        B, L = input_ids.shape
        if sigma is None or not self.c.get("time_conditioning", True):
            sigma = torch.zeros(B, device=input_ids.device)
        c = self.sigma_embed(sigma)
        if self.c.get("num_classes") is not None:
            c = c + self.label_embed(labels, B, input_ids.device).to(c.dtype)
        elif labels is not None:
            raise ValueError("class_labels given to an unconditional model")
        c = F.silu(c)
        x = self.embed(input_ids)
        cos, sin = rotary(L, self.c["d_model"] // self.c["n_heads"], float(self.c.get("rotary_base", 10_000.0)),
                          input_ids.device)
        for block in self.blocks:
            x = block(x, c, cos, sin, key_mask)
        return x, c

    def hidden_states(self, input_ids, sigma=None, key_mask=None, labels=None):
        return self.norm_f(self.trunk(input_ids, sigma, key_mask, labels)[0])

    def forward(self, input_ids, sigma=None, key_mask=None, labels=None):
        x, c = self.trunk(input_ids, sigma, key_mask, labels)
        shift, scale = self.adaLN_f(c).chunk(2, dim=-1)
        return self.lm_head(modulate(self.norm_f(x), shift, scale))


BACKBONES = {"dit": DiT}


# ---------------------------------------------------------------------------------------------------------
# transformers classes


class MDLMDNAPreTrainedModel(PreTrainedModel):
    config_class = MDLMDNAConfig
    base_model_prefix = "mdlm_dna"  # the weights are stored under "backbone." for every class
    main_input_name = "input_ids"

    def _init_weights(self, module):
        """Weights come from the folder; a model built from its config keeps PyTorch's initialisation."""

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As transformers loads it, with every tensor copied into memory of its own: weights read straight from
        the file can sit at addresses that send CPU matmuls down other kernels, which changes the last bits."""
        model = super().from_pretrained(*args, **kwargs)
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.data = tensor.data.clone()
        return model

    def _inputs(self, input_ids, attention_mask, sigma):
        name = self.config.backbone["name"]
        if name not in BACKBONES:
            raise ValueError(f"backbone {name!r} is not supported by this remote code")
        key_mask = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            key_mask = attention_mask.bool()
        if sigma is None:
            sigma = torch.full((input_ids.shape[0],), self.config.default_sigma, device=input_ids.device)
        else:
            sigma = torch.as_tensor(sigma, dtype=torch.float32, device=input_ids.device).reshape(-1)
            sigma = sigma.expand(input_ids.shape[0]) if sigma.numel() == 1 else sigma
        return key_mask, sigma

    def _build(self, config):
        return BACKBONES[config.backbone["name"]](config.backbone, config.vocab_size)

    def _excluded(self, logits):
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        if self.config.excluded_ids:
            ids = torch.tensor(self.config.excluded_ids, dtype=torch.long, device=logits.device)
            logits = logits.index_fill(-1, ids, float("-inf"))
        return logits


class MDLMDNAModel(MDLMDNAPreTrainedModel):
    """The backbone's per-position features (``last_hidden_state`` [B, L, d_model]): mdlm-dna's ``embed``."""

    def __init__(self, config):
        super().__init__(config)
        self.backbone = self._build(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, sigma=None, class_labels=None, return_dict=None, **kwargs):
        key_mask, sigma = self._inputs(input_ids, attention_mask, sigma)
        return BaseModelOutput(last_hidden_state=self.backbone.hidden_states(input_ids, sigma, key_mask,
                                                                            class_labels))


class MDLMDNAForMaskedLM(MDLMDNAPreTrainedModel):
    """The MDLM denoiser: logits over the vocabulary at every position; ``labels`` (-100: ignored) give a
    cross-entropy loss."""

    def __init__(self, config):
        super().__init__(config)
        self.backbone = self._build(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, sigma=None, class_labels=None, labels=None,
                return_dict=None, **kwargs):
        key_mask, sigma = self._inputs(input_ids, attention_mask, sigma)
        logits = self._excluded(self.backbone(input_ids, sigma, key_mask, class_labels))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)


class MDLMDNAForCausalLM(MDLMDNAPreTrainedModel, GenerationMixin):
    """The AR baseline: position l's logits predict token l + 1. mdlm-dna's models start every sequence with
    [BOS] (``tokenizer.bos_token_id``): prepend it, as mdlm-dna's scoring does."""

    def __init__(self, config):
        super().__init__(config)
        self.backbone = self._build(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, labels=None, return_dict=None, **kwargs):
        key_mask, _ = self._inputs(input_ids, attention_mask, None)
        logits = self._excluded(self.backbone(input_ids, None, key_mask))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)
