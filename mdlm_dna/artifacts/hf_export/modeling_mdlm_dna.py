"""An mdlm-dna model for transformers: a self-contained re-statement of mdlm-dna's forward pass in plain PyTorch.

Written into an exported folder by mdlm-dna's ``save_pretrained``; it does not import mdlm_dna, and needs only
torch and transformers (attention: ``torch.nn.functional.scaled_dot_product_attention``; no Triton, flash-attention
or compiled kernels). The parameter names are mdlm-dna's, so the folder's one ``model.safetensors`` serves both.

    model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
    logits = model(input_ids).logits       # the MDLM denoiser: log_softmax gives p(x_0 | x_t) at [MASK] positions

``sigma`` (the noise level, [B]) defaults to ``config.default_sigma``: what the model was trained with when it
ignores the noise level (``time_conditioning: false``). ``class_labels`` ([B] class indices; ``config.class_names``
gives their order) conditions a class-conditional model; None is the unconditional (null-class) model. Tokens in
``config.excluded_ids`` ([MASK] and the special tokens a genome never holds) get logit -inf, as in mdlm-dna. A model
trained with ``model.markov_order`` (``config.backbone["markov_order"]``) adds an order-k Markov chain's exact
denoiser to the network's logits; its tables are in the weights.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutput,
    CausalLMOutput,
    MaskedLMOutput,
    SequenceClassifierOutput,
)

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


# ---------------------------------------------------------------------------------------------------------
# The Mamba family (Mamba, BiMamba, Caduceus-PS, Caduceus-PH): Mamba mixers whose selective scan is the plain
# recurrence below (no mamba-ssm, Triton or Numba kernels), a forward and a reversed Mamba per block
# (bidirectional), and the two strands' streams stacked along the batch for the reverse-complement variants


def selective_scan(u, delta, A, B, C, D, z, delta_bias):
    """h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t, y_t = <h_t, C_t> + D u_t, gated by silu(z); dt = softplus(delta +
    bias). u, delta, z: [B, D, L]; A: [D, N]; B, C: [B, N, L]. Computed in float32 (float64 stays float64)."""
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    out_dtype = u.dtype
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    delta = F.softplus(delta + delta_bias.to(dtype)[:, None])
    B, C = B.unsqueeze(1), C.unsqueeze(1)  # [B, 1, N, L]: shared by all channels
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for u_t, d_t, b_t, c_t in zip(u.unbind(-1), delta.unbind(-1), B.unbind(-1), C.unbind(-1)):
        h = torch.exp(d_t[..., None] * A) * h + (d_t * u_t)[..., None] * b_t
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1) + u * D.to(dtype)[:, None]
    return (y * F.silu(z.to(dtype))).to(out_dtype)


class Mamba(nn.Module):
    """Selective SSM mixer with mamba-ssm's parameter names: [B, L, d_model] -> [B, L, d_model]."""

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", conv_bias=True, bias=False):
        super().__init__()
        self.d_inner, self.d_state = int(expand * d_model), d_state
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.A_log = nn.Parameter(torch.zeros(self.d_inner, d_state))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def forward(self, hidden_states):
        return self.out_proj(self.ssm(self.in_proj(hidden_states)))

    def ssm(self, xz):
        x, z = xz.transpose(1, 2).chunk(2, dim=1)
        w = self.conv1d.weight
        x = F.silu(F.conv1d(F.pad(x, (w.shape[-1] - 1, 0)), w, self.conv1d.bias, groups=x.shape[1]))
        dt, B, C = torch.split(self.x_proj(x.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)
        A = -torch.exp(self.A_log.float())
        y = selective_scan(x, dt, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z,
                           self.dt_proj.bias.float())
        return y.transpose(1, 2)


class BiMamba(nn.Module):
    """A Mamba on the sequence plus one on the reversed sequence (flipped back), added or multiplied."""

    def __init__(self, d_model, bidirectional=True, strategy="add", weight_tie=True, **kwargs):
        super().__init__()
        self.strategy = strategy
        self.mamba_fwd = Mamba(d_model, **kwargs)
        self.mamba_rev = Mamba(d_model, **kwargs) if bidirectional else None
        if bidirectional and weight_tie:
            self.mamba_rev.in_proj = self.mamba_fwd.in_proj
            self.mamba_rev.out_proj = self.mamba_fwd.out_proj

    def forward(self, x):
        if self.mamba_rev is None:
            return self.mamba_fwd(x)
        fwd, rev = self.mamba_fwd(x), self.mamba_rev(x.flip(1)).flip(1)
        return fwd + rev if self.strategy == "add" else fwd * rev


class SigmaEmbedding(nn.Module):
    def __init__(self, cond_dim, freq_dim=256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma):
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=sigma.device) / half)
        args = sigma.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1).to(self.mlp[0].weight.dtype))


class MambaBlock(nn.Module):
    """Add -> norm -> (shift and scale from the conditioning) -> mixer; returns (mixer output, residual)."""

    def __init__(self, c):
        super().__init__()
        d = c["d_model"]
        norm = nn.RMSNorm if c.get("rms_norm", True) else nn.LayerNorm
        self.residual_in_fp32 = c.get("residual_in_fp32", True)
        self.norm = norm(d, eps=c.get("norm_eps", 1e-5))
        self.mixer = BiMamba(d, bidirectional=c["bidirectional"], strategy=c.get("bidirectional_strategy", "add"),
                             weight_tie=c.get("bidirectional_weight_tie", True), d_state=c.get("d_state", 16),
                             d_conv=c.get("d_conv", 4), expand=c.get("expand", 2), dt_rank=c.get("dt_rank", "auto"),
                             conv_bias=c.get("conv_bias", True), bias=c.get("bias", False))
        conditioned = c.get("time_conditioning") or c.get("num_classes") is not None
        self.ada = nn.Linear(c.get("cond_dim", 128), 2 * d) if conditioned else None

    def forward(self, hidden, residual, cond):
        residual = hidden if residual is None else residual + hidden
        if self.residual_in_fp32:
            residual = residual.to(torch.promote_types(residual.dtype, torch.float32))
        x = self.norm(residual.to(self.norm.weight.dtype))
        if self.ada is not None:
            shift, scale = self.ada(cond).chunk(2, dim=-1)
            x = x * (1 + scale[:, None]) + shift[:, None]
        return self.mixer(x), residual


class Caduceus(nn.Module):
    """Mamba / BiMamba / Caduceus-PS / Caduceus-PH. The reverse-complement variants run x and RC(x) as one
    batch [x; RC(x)]: Caduceus-PS (``rcps``) with parameter sharing (its logits are head(z_fwd) + RC(head(z_rc)),
    the streams trading places before every block when ``rcps_swap_halves``), Caduceus-PH (``posthoc``) by
    averaging the two outputs."""

    def __init__(self, c, vocab_size):
        super().__init__()
        self.c = c
        d = c["d_model"]
        self.complement_ids = list(c.get("complement_ids") or range(vocab_size))
        self.embedding = nn.Embedding(vocab_size, d)
        self.sigma_embed = SigmaEmbedding(c.get("cond_dim", 128)) if c.get("time_conditioning") else None
        if c.get("num_classes") is not None:
            self.label_embed = LabelEmbedder(c["num_classes"], c.get("cond_dim", 128))
        self.layers = nn.ModuleList(MambaBlock(c) for _ in range(c["n_layers"]))
        norm = nn.RMSNorm if c.get("rms_norm", True) else nn.LayerNorm
        self.norm_f = norm(d, eps=c.get("norm_eps", 1e-5))
        self.lm_head = None if c.get("tie_embeddings", True) else nn.Linear(d, vocab_size, bias=False)

    def _complement(self, device):
        return torch.tensor(self.complement_ids, dtype=torch.long, device=device)

    def rc_ids(self, ids):
        return self._complement(ids.device)[ids.flip(-1)]

    def _cond(self, ids, sigma, labels):
        c = self.c
        if not (c.get("time_conditioning") or c.get("num_classes") is not None):
            if labels is not None:
                raise ValueError("class_labels given to an unconditional model")
            return None
        batch, cond = ids.shape[0], None
        if self.sigma_embed is not None:
            sigma = torch.zeros(batch, device=ids.device) if sigma is None else sigma
            cond = self.sigma_embed(sigma.reshape(-1).expand(batch))
        if c.get("num_classes") is not None:
            y = self.label_embed(labels, batch, ids.device)
            cond = y if cond is None else cond + y.to(cond.dtype)
        return F.silu(cond)

    def _trunk(self, ids, cond):
        hidden, residual = self.embedding(ids), None
        swap = self.c.get("rcps") and self.c.get("rcps_swap_halves", True)
        for layer in self.layers:
            if swap:
                hidden = _rc_streams(hidden)
                residual = None if residual is None else _rc_streams(residual)
            hidden, residual = layer(hidden, residual, cond)
        residual = hidden if residual is None else residual + hidden
        return self.norm_f(residual.to(self.norm_f.weight.dtype))

    def _streams(self, ids, sigma, paired, labels):
        cond = self._cond(ids, sigma, labels)
        if paired:
            ids = torch.cat([ids, self.rc_ids(ids)], dim=0)
            cond = None if cond is None else torch.cat([cond, cond], dim=0)
        return self._trunk(ids, cond)

    def _head(self, hidden):
        return F.linear(hidden, self.embedding.weight if self.lm_head is None else self.lm_head.weight)

    def _paired(self):
        return bool(self.c.get("rcps") or self.c.get("posthoc"))

    def hidden_states(self, input_ids, sigma=None, key_mask=None, labels=None):
        z = self._streams(input_ids, sigma, self._paired(), labels)
        if not self._paired():
            return z
        fwd, rc = z.chunk(2, dim=0)
        return 0.5 * (fwd + rc.flip(1))

    def forward(self, input_ids, sigma=None, key_mask=None, labels=None):
        batch = input_ids.shape[0]
        logits = self._head(self._streams(input_ids, sigma, self._paired(), labels))
        if not self._paired():
            return logits
        fwd, rc = logits[:batch], logits[batch:].flip(1)[..., self._complement(logits.device)]
        return fwd + rc if self.c.get("rcps") else 0.5 * (fwd + rc)


def _rc_streams(t):
    """[z_fwd; z_rc] -> [RC(z_rc); RC(z_fwd)], RC of a hidden state flipping length and channels."""
    fwd, rc = t.chunk(2, dim=0)
    return torch.cat([rc.flip(1, 2), fwd.flip(1, 2)], dim=0)


BACKBONES = {"dit": DiT, "mamba": Caduceus, "bimamba": Caduceus, "caduceus_ps": Caduceus, "caduceus_ph": Caduceus}


# ---------------------------------------------------------------------------------------------------------
# model.markov_order: an order-k Markov chain under the network. The exact posterior of each base given every
# visible base of its row under the chain (forward-backward over the 4**k k-mer states; ids 0-3 are A C G T,
# anything else is hidden) is added to the network's A/C/G/T logits; the other tokens get OTHER_LOGIT.

NUM_BASES = 4
OTHER_LOGIT = -10.0


class MarkovPosterior(nn.Module):
    def __init__(self, order):
        super().__init__()
        self.order, self.num_states = order, NUM_BASES**order
        self.register_buffer("trans", torch.full((self.num_states, NUM_BASES), 1.0 / NUM_BASES))
        self.register_buffer("init", torch.full((self.num_states,), 1.0 / self.num_states))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def forward(self, input_ids):
        """[B, L] ids -> [B, L, 4] log P(base | the visible bases of the row)."""
        k, S = self.order, self.num_states
        pad = max(0, k - input_ids.shape[1])  # a short row is read as preceded by hidden positions
        ids = F.pad(input_ids, (pad, 0), value=NUM_BASES) if pad else input_ids
        B, L = ids.shape
        visible = ids < NUM_BASES
        base = ids.clamp(max=NUM_BASES - 1)
        emit = torch.where(visible[:, :, None], F.one_hot(base, NUM_BASES).float(), 1.0)
        p = self.trans.view(NUM_BASES, S // NUM_BASES, NUM_BASES)  # (oldest digit, the rest, new base)
        # the first state holds positions 0 .. k-1 as its digits (made here: transformers builds a model's
        # modules on the meta device, where a non-persistent buffer would hold no values)
        codes = torch.arange(S, device=ids.device)
        first = torch.ones(B, S, device=ids.device)
        for j in range(k):
            digit = (codes // NUM_BASES ** (k - 1 - j)) % NUM_BASES
            first = first * (~visible[:, j, None] | (digit[None, :] == base[:, j, None])).float()
        a = self.init[None, :] * first
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-30)
        alphas = [a]
        for pos in range(k, L):
            a = ((a.view(B, NUM_BASES, -1, 1) * p).sum(1) * emit[:, pos, None]).reshape(B, S)
            alphas.append(a / a.sum(-1, keepdim=True).clamp_min(1e-30))
            a = alphas[-1]
        post = torch.empty(B, L, NUM_BASES, device=ids.device)
        b = torch.ones(B, S, device=ids.device)
        for pos in range(L - 1, k - 1, -1):
            post[:, pos] = (alphas[pos - k + 1] * b).view(B, -1, NUM_BASES).sum(1)
            b = ((b.view(B, -1, NUM_BASES) * emit[:, pos, None]).view(B, 1, -1, NUM_BASES) * p).sum(-1)
            b = b.reshape(B, S)
            b = b / b.sum(-1, keepdim=True).clamp_min(1e-30)
        g = alphas[0] * b
        for j in range(k):
            post[:, j] = g.view(B, NUM_BASES**j, NUM_BASES, -1).sum((1, 3))
        post = post / post.sum(-1, keepdim=True).clamp_min(1e-30)
        return post.clamp_min(1e-30).log()[:, pad:]


class ChainResidual(nn.Module):
    """The network's logits plus the chain's log posterior (parameter names as mdlm-dna's)."""

    def __init__(self, backbone, order):
        super().__init__()
        self.backbone = backbone
        self.prior = MarkovPosterior(order)

    def hidden_states(self, input_ids, sigma=None, key_mask=None, labels=None):
        return self.backbone.hidden_states(input_ids, sigma, key_mask, labels)

    def forward(self, input_ids, sigma=None, key_mask=None, labels=None):
        logits = self.backbone(input_ids, sigma, key_mask, labels)
        prior = self.prior(input_ids).to(logits.dtype)
        other = torch.full((*prior.shape[:2], logits.shape[-1] - NUM_BASES), OTHER_LOGIT, dtype=logits.dtype,
                           device=logits.device)
        return logits + torch.cat([prior, other], dim=-1)


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
            if name != "dit":
                raise ValueError(f"a {name} model reads padding as sequence: pass sequences of one length (no padding)")
        if sigma is None:
            sigma = torch.full((input_ids.shape[0],), self.config.default_sigma, device=input_ids.device)
        else:
            sigma = torch.as_tensor(sigma, dtype=torch.float32, device=input_ids.device).reshape(-1)
            sigma = sigma.expand(input_ids.shape[0]) if sigma.numel() == 1 else sigma
        return key_mask, sigma

    def _build(self, config):
        backbone = BACKBONES[config.backbone["name"]](config.backbone, config.vocab_size)
        order = int(config.backbone.get("markov_order") or 0)
        return ChainResidual(backbone, order) if order else backbone

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

    def generate(self, *args, **kwargs):
        """transformers' generate, without a key/value cache (each step runs the whole prefix, as mdlm-dna's own
        AR sampler does)."""
        kwargs.setdefault("use_cache", False)
        return super().generate(*args, **kwargs)

    def forward(self, input_ids, attention_mask=None, labels=None, return_dict=None, **kwargs):
        key_mask, _ = self._inputs(input_ids, attention_mask, None)
        logits = self._excluded(self.backbone(input_ids, None, key_mask))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)



# ---------------------------------------------------------------------------------------------------------
# fine-tuned classifiers: a backbone with a pooling head, or the GenomicBenchmarks CNN; optionally averaged over
# the sequence and its reverse complement ("conjoin")


def pool(hidden, lengths, mode):
    """[B, L, D] -> [B, D] over each row's first ``lengths`` positions (right padding)."""
    if mode == "mean":
        w = (torch.arange(hidden.shape[1], device=hidden.device)[None] < lengths[:, None]).to(hidden.dtype)[..., None]
        return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)
    if mode == "first":
        return hidden[:, 0]
    idx = (lengths - 1).clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


class AttentionPool(nn.Module):
    """A softmax over each row's real positions of a learned score of their features (and, with max_positions,
    of their position)."""

    def __init__(self, d_model, max_positions=None):
        super().__init__()
        self.score = nn.Linear(d_model, 1)
        self.max_positions = max_positions
        if max_positions is not None:
            self.position_score = nn.Parameter(torch.zeros(int(max_positions)))

    def forward(self, hidden, lengths):
        real = torch.arange(hidden.shape[1], device=hidden.device)[None] < lengths.clamp(min=1)[:, None]
        score = self.score(hidden).squeeze(-1).float()
        if self.max_positions is not None:
            if hidden.shape[1] > self.max_positions:
                raise ValueError(f"{hidden.shape[1]} positions; this classifier reads at most {self.max_positions}")
            score = score + self.position_score[: hidden.shape[1]].float()
        score = score.masked_fill(~real, float("-inf"))
        return (torch.softmax(score, dim=1).to(hidden.dtype)[..., None] * hidden).sum(dim=1)


def reversed_positions(lengths, seq_len):
    """[B, L]: the position lengths[b] - 1 - l that position l mirrors inside row b's real prefix (0 past it)."""
    pos = torch.arange(seq_len, device=lengths.device)[None, :]
    return (lengths[:, None] - 1 - pos).clamp(min=0)


def reverse_complement_padded(input_ids, lengths, complement_ids, pad_id):
    """Each row's real prefix reverse-complemented; padding stays on the right."""
    comp = torch.tensor(complement_ids, dtype=torch.long, device=input_ids.device)
    rc = comp[input_ids.gather(1, reversed_positions(lengths, input_ids.shape[1]))]
    real = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < lengths[:, None]
    return torch.where(real, rc, torch.full_like(input_ids, pad_id))


def align_reverse(states, lengths):
    """States of reverse-complemented rows moved to the forward positions (row b, position l <- lengths[b]-1-l)."""
    src = reversed_positions(lengths, states.shape[1])
    return states.gather(1, src[..., None].expand(-1, -1, states.shape[-1]))


class BackboneClassifier(nn.Module):
    """backbone features (strands "both": the reverse complement's, realigned, beside them) -> pooling over real
    positions -> linear head."""

    def __init__(self, c, backbone_settings, vocab_size, pad_id):
        super().__init__()
        self.pooling, self.pad_mode = c.get("pooling", "mean"), c.get("pad_mode", "pad")
        self.strands, self.complement_ids, self.pad_id = c.get("strands", "forward"), c["complement_ids"], pad_id
        self.is_dit = backbone_settings["name"] == "dit"
        self.backbone = BACKBONES[backbone_settings["name"]](backbone_settings, vocab_size)
        width = int(backbone_settings["d_model"]) * (2 if self.strands == "both" else 1)
        self.head = nn.Linear(width, int(c["num_classes"]))
        if self.pooling == "attention":
            self.attention = AttentionPool(width, c["max_length"] if c.get("position_bias") else None)

    def _read(self, input_ids, lengths, key_mask=None):
        if self.strands != "both":
            return self.backbone.hidden_states(input_ids, None, key_mask)
        rc = reverse_complement_padded(input_ids, lengths, self.complement_ids, self.pad_id)
        mask = None if key_mask is None else torch.cat([key_mask, key_mask])
        fwd, rev = self.backbone.hidden_states(torch.cat([input_ids, rc]), None, mask).chunk(2)
        return torch.cat([fwd, align_reverse(rev, lengths)], dim=-1)

    def _pool(self, hidden, lengths):
        return self.attention(hidden, lengths) if self.pooling == "attention" else pool(hidden, lengths, self.pooling)

    def forward(self, input_ids, lengths):
        if self.pad_mode == "pad":
            key_mask = None
            if bool((lengths < input_ids.shape[1]).any()) and self.is_dit:
                key_mask = torch.arange(input_ids.shape[1], device=lengths.device)[None] < lengths.clamp(min=1)[:, None]
            feats = self._pool(self._read(input_ids, lengths, key_mask), lengths)
        else:  # group: one call per distinct length, unpadded
            feats = None
            for n in lengths.unique().tolist():
                rows = (lengths == n).nonzero().squeeze(1)
                pooled = self._pool(self._read(input_ids[rows, :n], lengths[rows]), lengths[rows])
                feats = pooled.new_empty(len(lengths), pooled.shape[1]) if feats is None else feats
                feats = feats.index_copy(0, rows, pooled)
        return self.head(feats)


class CNNClassifier(nn.Module):
    """The GenomicBenchmarks CNN: embedding, three Conv1d + BatchNorm + ReLU + MaxPool blocks, two linear layers;
    inputs padded (or cut) to ``input_len``."""

    def __init__(self, c, vocab_size, pad_id):
        super().__init__()
        cnn = dict(c.get("cnn") or {})
        self.input_len, self.pad_id = int(c["input_len"]), int(pad_id)
        dim, kernel = int(cnn.get("embedding_dim", 100)), int(cnn.get("kernel_size", 8))
        self.embeddings = nn.Embedding(int(cnn.get("vocab_size", vocab_size)), dim)
        layers, c_in, length = [], dim, self.input_len
        for ch in cnn.get("channels", (16, 8, 4)):
            layers += [nn.Conv1d(c_in, ch, kernel), nn.BatchNorm1d(ch), nn.ReLU(), nn.MaxPool1d(2)]
            c_in, length = ch, (length - kernel + 1) // 2
        self.conv = nn.Sequential(*layers)
        hidden = int(cnn.get("hidden", 512))
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c_in * length, hidden),
                                   nn.Linear(hidden, int(c["num_classes"])))

    def forward(self, input_ids, lengths=None):
        if input_ids.shape[1] < self.input_len:
            input_ids = F.pad(input_ids, (0, self.input_len - input_ids.shape[1]), value=self.pad_id)
        return self.dense(self.conv(self.embeddings(input_ids[:, : self.input_len]).transpose(1, 2)))


class Conjoin(nn.Module):
    """Logits averaged over each sequence and its reverse complement (padding stays on the right)."""

    def __init__(self, model, complement_ids, pad_id, apply=True):
        super().__init__()
        self.model, self.complement_ids, self.pad_id, self.apply = model, list(complement_ids), int(pad_id), apply

    def forward(self, input_ids, lengths):
        if not self.apply:  # conjoined in training only: inference reads the sequence as given
            return self.model(input_ids, lengths)
        rc = reverse_complement_padded(input_ids, lengths, self.complement_ids, self.pad_id)
        fwd, rev = self.model(torch.cat([input_ids, rc]), torch.cat([lengths, lengths])).chunk(2)
        return 0.5 * (fwd + rev)


class MDLMDNAForSequenceClassification(MDLMDNAPreTrainedModel):
    """A classifier fine-tuned with mdlm-dna: logits over ``config.id2label``. Batches are right-padded; pass the
    tokenizer's ``attention_mask`` so that pooling reads real positions only."""

    def __init__(self, config):
        super().__init__(config)
        c = dict(config.classifier)
        if c["kind"] == "cnn":
            inner = CNNClassifier(c, config.vocab_size, config.pad_token_id)
        else:
            inner = BackboneClassifier(c, config.backbone, config.vocab_size, config.pad_token_id)
        if c.get("conjoin_wrapper") or c.get("conjoin_test"):
            inner = Conjoin(inner, c["complement_ids"], config.pad_token_id, apply=bool(c.get("conjoin_test")))
        self.model = inner
        self.post_init()

    def forward(self, input_ids, attention_mask=None, labels=None, return_dict=None, **kwargs):
        if attention_mask is None:
            lengths = torch.full((input_ids.shape[0],), input_ids.shape[1], dtype=torch.long, device=input_ids.device)
        else:
            lengths = attention_mask.long().sum(dim=1)
        logits = self.model(input_ids, lengths)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
