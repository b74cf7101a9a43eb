"""The FLOP formulas behind MFU, against PyTorch's own FLOP counter on real forward + backward passes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.models import build_backbone
from mdlm_dna.train.flops import dit_flops_per_token, flops_per_token

TOK = NucleotideTokenizer()
SDPA_OPS = ("scaled_dot_product", "_flash_attention", "_efficient_attention")


def _counted(model, batch: int, length: int) -> tuple[float, float]:
    """Training FLOPs per token counted by FlopCounterMode: (all ops but fused attention, fused attention)."""
    x = torch.randint(0, 4, (batch, length), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fc:
        model(x, torch.ones(batch)).float().sum().backward()
    total = fc.get_total_flops()
    sdpa = sum(n for op, n in fc.get_flop_counts()["Global"].items() if any(s in str(op) for s in SDPA_OPS))
    return (total - sdpa) / (batch * length), sdpa / (batch * length)


@pytest.mark.parametrize(("d_model", "layers", "length"), [(64, 2, 256), (96, 3, 128)])
def test_dit_weight_flops_match_the_counter(d_model, layers, length, one_thread):
    cfg = {"name": "dit", "d_model": d_model, "n_layers": layers, "n_heads": 2, "cond_dim": 16}
    model = build_backbone(cfg, TOK.vocab_size)
    counted, _ = _counted(model, 2, length)
    attention = 12 * layers * length * d_model
    formula = flops_per_token(cfg, TOK.vocab_size, length) - attention
    # the counter also sees the per-sequence adaLN / time-embedding matmuls the formula leaves out
    assert formula == pytest.approx(counted, rel=0.02)


def test_attention_term_is_twelve_l_d_per_layer():
    """Q K^T and P V as explicit matmuls, forward + backward, counted: 12 * L * d per token per layer."""
    batch, heads, length, head_dim = 2, 4, 64, 16
    q, k, v = (torch.randn(batch, heads, length, head_dim, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False) as fc:
        p = (q @ k.transpose(-1, -2)).softmax(-1)
        (p @ v).sum().backward()
    per_token = fc.get_total_flops() / (batch * length)
    cfg = {"d_model": heads * head_dim, "n_layers": 1}
    attention = dit_flops_per_token(cfg, 0, length) - dit_flops_per_token(cfg, 0, 0)
    assert attention == pytest.approx(per_token, rel=1e-6)


@pytest.mark.parametrize("name", ["mamba", "bimamba", "caduceus_ps"])
def test_mamba_family_flops_match_the_counter(name, one_thread):
    cfg = {"name": name, "d_model": 32, "n_layers": 2, "scan_backend": "reference"}
    model = build_backbone(cfg, TOK.vocab_size, TOK.complement_ids)
    counted, _ = _counted(model, 2, 64)
    # the counter also counts the reference scan's einsums (about 10.5 D N per token instead of the paper's 9)
    assert flops_per_token(cfg, TOK.vocab_size, 64) == pytest.approx(counted, rel=0.1)
