"""The published MDLM DiT (kuleshov-group/mdlm-owt layout) loaded into our DiT.

``reference_forward`` is an independent transcription of the reference forward pass (``DIT.forward`` in
models/dit.py of github.com/kuleshov-group/mdlm, which the Hub's MDLM wrapper holds as ``backbone``),
written from reading it, in its parameter names and layout, with plain tensor operations; it does not
call our DiT. Weights are random, adaLN included (the reference and ours zero-initialise adaLN, which
would hide a wrong chunk order or mapping).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mdlm_dna.artifacts import mdlm_hf
from mdlm_dna.models.dit import DiT, DiTConfig

TINY = {
    "architectures": ["MDLM"],
    "model_type": "mdlm",
    "hidden_dim": 64,
    "cond_dim": 32,
    "n_blocks": 2,
    "n_heads": 4,
    "dropout": 0.1,
    "model_length": 32,
    "vocab_size": 50,  # 49 "tokens" + [MASK] as the last row, as in the reference
    "time_conditioning": False,
    "return_dict": False,
}


# ----------------------------------------------------------------------------------------------------
# the reference, transcribed


def reference_weights(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the reference's names and shapes (DIT under the Hub wrapper's ``backbone.``)."""
    g = torch.Generator().manual_seed(seed)
    d, c, v = cfg["hidden_dim"], cfg["cond_dim"], cfg["vocab_size"]

    def lin(out_f: int, in_f: int, gain: float = 1.0) -> torch.Tensor:
        return torch.randn(out_f, in_f, generator=g) * gain / math.sqrt(in_f)

    def vec(n: int, scale: float = 0.1, offset: float = 0.0) -> torch.Tensor:
        return offset + scale * torch.randn(n, generator=g)

    head_dim = d // cfg["n_heads"]
    w = {
        "backbone.vocab_embed.embedding": torch.randn(v, d, generator=g),
        "backbone.sigma_map.mlp.0.weight": lin(c, 256),
        "backbone.sigma_map.mlp.0.bias": vec(c),
        "backbone.sigma_map.mlp.2.weight": lin(c, c),
        "backbone.sigma_map.mlp.2.bias": vec(c),
        # a persistent buffer of the reference's Rotary, so it is in the published file
        "backbone.rotary_emb.inv_freq": 1.0 / (10_000 ** (torch.arange(0, head_dim, 2).float() / head_dim)),
        "backbone.output_layer.norm_final.weight": vec(d, offset=1.0),
        "backbone.output_layer.linear.weight": lin(v, d, 2.0),
        "backbone.output_layer.linear.bias": vec(v),
        "backbone.output_layer.adaLN_modulation.weight": lin(2 * d, c, 0.5),
        "backbone.output_layer.adaLN_modulation.bias": vec(2 * d, 0.3),
    }
    for i in range(cfg["n_blocks"]):
        b = f"backbone.blocks.{i}."
        w[b + "norm1.weight"] = vec(d, offset=1.0)
        w[b + "attn_qkv.weight"] = lin(3 * d, d, 1.5)
        w[b + "attn_out.weight"] = lin(d, d)
        w[b + "norm2.weight"] = vec(d, offset=1.0)
        w[b + "mlp.0.weight"] = lin(4 * d, d)
        w[b + "mlp.0.bias"] = vec(4 * d)
        w[b + "mlp.2.weight"] = lin(d, 4 * d)
        w[b + "mlp.2.bias"] = vec(d)
        w[b + "adaLN_modulation.weight"] = lin(6 * d, c, 0.5)
        w[b + "adaLN_modulation.bias"] = vec(6 * d, 0.3)
    return w


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # reference LayerNorm: F.layer_norm(x.float(), [dim]) * weight (the upcast is a no-op in fp32 / fp64)
    return F.layer_norm(x, [x.shape[-1]]) * weight[None, None, :]


def reference_forward(
    w: dict[str, torch.Tensor], cfg: dict, indices: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """DIT.forward(indices, sigma) of the reference, eval mode, no autocast, in the dtype of ``w``."""
    dtype = w["backbone.vocab_embed.embedding"].dtype
    n_heads = cfg["n_heads"]
    if not cfg["time_conditioning"]:  # Diffusion._process_sigma
        sigma = torch.zeros_like(sigma)
    # TimestepEmbedder: sinusoidal features of sigma (max_period 10000, 256 features), MLP; then silu
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = sigma[:, None].float() * freqs[None]
    t_freq = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(dtype)
    t_emb = F.linear(t_freq, w["backbone.sigma_map.mlp.0.weight"], w["backbone.sigma_map.mlp.0.bias"])
    t_emb = F.linear(F.silu(t_emb), w["backbone.sigma_map.mlp.2.weight"], w["backbone.sigma_map.mlp.2.bias"])
    c = F.silu(t_emb)

    x = w["backbone.vocab_embed.embedding"][indices]
    batch, seq_len, dim = x.shape
    head_dim = dim // n_heads
    # Rotary: emb = cat(freqs, freqs); flash-attn's non-interleaved rotation == x * cos + rotate_half(x) * sin
    inv_freq = w["backbone.rotary_emb.inv_freq"].to(dtype)
    t = torch.arange(seq_len).type_as(inv_freq)
    emb = torch.cat([torch.einsum("i,j->ij", t, inv_freq)] * 2, dim=-1)
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]  # b s h d

    for i in range(cfg["n_blocks"]):
        b = f"backbone.blocks.{i}."
        mod = F.linear(c, w[b + "adaLN_modulation.weight"], w[b + "adaLN_modulation.bias"])[:, None]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=2)
        x_skip = x
        h = _norm(x, w[b + "norm1.weight"]) * (1 + scale_msa) + shift_msa
        qkv = F.linear(h, w[b + "attn_qkv.weight"]).reshape(batch, seq_len, 3, n_heads, head_dim)  # (three h d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
        att = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v).reshape(batch, seq_len, dim)
        x = x_skip + gate_msa * F.linear(att, w[b + "attn_out.weight"])
        h = _norm(x, w[b + "norm2.weight"]) * (1 + scale_mlp) + shift_mlp
        h = F.linear(h, w[b + "mlp.0.weight"], w[b + "mlp.0.bias"])
        h = F.linear(F.gelu(h, approximate="tanh"), w[b + "mlp.2.weight"], w[b + "mlp.2.bias"])
        x = x + gate_mlp * h

    mod = F.linear(c, w["backbone.output_layer.adaLN_modulation.weight"],
                   w["backbone.output_layer.adaLN_modulation.bias"])[:, None]
    shift, scale = mod.chunk(2, dim=2)
    x = _norm(x, w["backbone.output_layer.norm_final.weight"]) * (1 + scale) + shift
    return F.linear(x, w["backbone.output_layer.linear.weight"], w["backbone.output_layer.linear.bias"])


def write_folder(path, cfg: dict, weights: dict[str, torch.Tensor], fmt: str = "safetensors"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg))
    tensors = {k: v.contiguous() for k, v in weights.items()}
    if fmt == "safetensors":
        save_file(tensors, str(path / "model.safetensors"))
    else:
        torch.save(tensors, path / "pytorch_model.bin")
    return path


def _inputs(cfg: dict, batch: int = 3, seq_len: int = 24, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg["vocab_size"], (batch, seq_len), generator=g)
    ids[:, ::5] = cfg["vocab_size"] - 1  # [MASK] at some positions
    sigma = torch.rand(batch, generator=g) * 3.0
    return ids, sigma


# ----------------------------------------------------------------------------------------------------
# equality with the reference


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_logits_match_reference_float32(tmp_path, time_conditioning):
    cfg = {**TINY, "time_conditioning": time_conditioning}
    w = reference_weights(cfg)
    model, info = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", cfg, w))
    ids, sigma = _inputs(cfg)
    with torch.no_grad():
        ours = model(ids, sigma)
    expected = reference_forward(w, cfg, ids, sigma)
    assert ours.shape == (3, 24, cfg["vocab_size"] + 1)
    assert expected.abs().max() > 1.0  # logits far from uniform: the comparison means something
    err = (ours[..., : cfg["vocab_size"]] - expected).abs().max().item()
    assert err <= 2e-5 * expected.abs().max().item(), err
    assert info["mask_id"] == cfg["vocab_size"] - 1 and info["added_rows"] == [cfg["vocab_size"]]


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_logits_match_reference_float64(tmp_path, time_conditioning):
    cfg = {**TINY, "time_conditioning": time_conditioning}
    w = reference_weights(cfg, seed=3)
    model, _ = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", cfg, w))
    model = model.double()
    ids, sigma = _inputs(cfg, seed=4)
    with torch.no_grad():
        ours = model(ids, sigma)[..., : cfg["vocab_size"]]
    expected = reference_forward({k: v.double() for k, v in w.items()}, cfg, ids, sigma)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


def test_time_conditioning_off_ignores_sigma_and_on_uses_it(tmp_path):
    w = reference_weights(TINY)
    off, _ = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "off", TINY, w))
    on, _ = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "on", {**TINY, "time_conditioning": True}, w))
    ids, sigma = _inputs(TINY)
    with torch.no_grad():
        assert torch.equal(off(ids, sigma), off(ids, torch.zeros_like(sigma)))
        assert not torch.allclose(on(ids, sigma), on(ids, torch.zeros_like(sigma)), atol=1e-3)


def test_adaln_is_random_and_the_comparison_sees_it(tmp_path):
    """Zero adaLN (both codes' initialisation) would make every block the identity and hide mapping bugs."""
    w = reference_weights(TINY)
    model, _ = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))
    for name, p in model.named_parameters():
        if "adaLN" in name:
            assert torch.count_nonzero(p) == p.numel(), name
    # the transcription reacts to a swapped (shift, scale) order of the final adaLN: the test can fail
    swapped = dict(w)
    for key in ("weight", "bias"):
        shift, scale = w[f"backbone.output_layer.adaLN_modulation.{key}"].chunk(2, dim=0)
        swapped[f"backbone.output_layer.adaLN_modulation.{key}"] = torch.cat([scale, shift])
    ids, sigma = _inputs(TINY)
    with torch.no_grad():
        ours = model(ids, sigma)[..., : TINY["vocab_size"]]
    assert (ours - reference_forward(swapped, TINY, ids, sigma)).abs().max() > 1e-2


def test_pytorch_model_bin_loads_the_same(tmp_path):
    w = reference_weights(TINY)
    a, _ = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "st", TINY, w))
    b, _ = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "bin", TINY, w, fmt="bin"))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_half_precision_checkpoint_is_loaded_in_float32(tmp_path):
    w = {k: v.to(torch.bfloat16) for k, v in reference_weights(TINY).items()}
    model, _ = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model.blocks[1].qkv.weight, w["backbone.blocks.1.attn_qkv.weight"].float())


# ----------------------------------------------------------------------------------------------------
# vocabulary


def test_added_pad_row_is_harmless_and_never_predicted(tmp_path):
    w = reference_weights(TINY)
    model, _ = mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))
    mask, pad = TINY["vocab_size"] - 1, TINY["vocab_size"]
    assert torch.equal(model.embed.weight[pad], model.embed.weight[mask])  # what the reference reads at a pad
    assert torch.equal(model.embed.weight[:pad], w["backbone.vocab_embed.embedding"])
    assert torch.count_nonzero(model.lm_head.weight[pad]) == 0
    assert model.lm_head.bias[pad].item() == mdlm_hf.ADDED_ROW_LOGIT
    ids, sigma = _inputs(TINY)
    ids[:, -3:] = pad
    with torch.no_grad():
        logits = model(ids, sigma)
    assert torch.isfinite(logits).all()
    assert (logits[..., pad] < logits[..., :pad].min(dim=-1).values - 1000).all()
    assert F.softmax(logits, dim=-1)[..., pad].max() == 0


def test_gpt2_rows_and_the_mdlm_objective(tmp_path):
    """Real sizes on the rows (GPT-2's 50257 + [MASK] -> ours with [PAD]); a narrow network elsewhere."""
    pytest.importorskip("transformers")
    from mdlm_dna.train.lit_module import DiffusionModule

    cfg = {**TINY, "hidden_dim": 16, "cond_dim": 8, "n_blocks": 1, "n_heads": 2, "vocab_size": 50258}
    w = reference_weights(cfg, seed=5)
    backbone, config = mdlm_hf.load_pretrained(write_folder(tmp_path / "owt", cfg, w))
    assert backbone.embed.weight.shape == (50259, 16) and backbone.lm_head.weight.shape == (50259, 16)
    assert config["model"]["name"] == "dit" and config["model"]["attn_dropout"] == 0.0
    assert config["data"]["kind"] == "text" and config["data"]["tokenizer"]["name"] == "gpt2"
    assert config["data"]["seq_len"] == cfg["model_length"]
    assert (config["noise"]["name"], config["objective"]["name"]) == ("loglinear", "mdlm")

    module = DiffusionModule(config)
    tok = module.tokenizer
    assert (tok.mask_id, tok.pad_id, tok.vocab_size) == (50257, 50258, 50259)
    module.objective.backbone.load_state_dict(backbone.state_dict())
    module.eval()
    ids = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog.")])
    ids[0, 2:5] = tok.mask_id
    t = torch.tensor([0.5])
    with torch.no_grad():
        logp = module.objective.subs_log_probs(ids, t)
        ref = reference_forward(w, cfg, ids, t)  # sigma is zeroed: time_conditioning is off
    # the reference's SUBS: -1e6 on the [MASK] logit, log-softmax over its 50258 rows
    ref[..., tok.mask_id] += -1e6
    ref_logp = F.log_softmax(ref, dim=-1)
    masked = ids[0] == tok.mask_id
    assert torch.isneginf(logp[0][masked][:, [tok.mask_id, tok.pad_id]]).all()
    torch.testing.assert_close(logp[0][masked][:, :50257], ref_logp[0][masked][:, :50257], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# errors name the tensor


def test_missing_tensor_is_named(tmp_path):
    w = reference_weights(TINY)
    del w["backbone.blocks.1.attn_out.weight"]
    with pytest.raises(ValueError, match=r"backbone\.blocks\.1\.attn_out\.weight"):
        mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))


def test_unexpected_tensor_is_named(tmp_path):
    w = reference_weights(TINY)
    w["backbone.blocks.0.attn_qkv.bias"] = torch.zeros(3 * TINY["hidden_dim"])
    with pytest.raises(ValueError, match=r"backbone\.blocks\.0\.attn_qkv\.bias"):
        mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))


def test_extra_block_is_named(tmp_path):
    w = reference_weights({**TINY, "n_blocks": 3})
    with pytest.raises(ValueError, match=r"backbone\.blocks\.2\.norm1\.weight"):
        mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))


def test_wrong_shape_is_named(tmp_path):
    w = reference_weights(TINY)
    w["backbone.blocks.0.mlp.0.weight"] = torch.zeros(2 * TINY["hidden_dim"], TINY["hidden_dim"])
    with pytest.raises(ValueError, match=r"backbone\.blocks\.0\.mlp\.0\.weight.*shape"):
        mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))


def test_vocab_rows_must_match_config(tmp_path):
    w = reference_weights({**TINY, "vocab_size": 40})
    with pytest.raises(ValueError, match=r"backbone\.vocab_embed\.embedding: 40 rows.*vocab_size=50"):
        mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))


def test_rotary_frequencies_are_checked(tmp_path):
    w = reference_weights(TINY)
    w["backbone.rotary_emb.inv_freq"] = w["backbone.rotary_emb.inv_freq"] * 1.01
    with pytest.raises(ValueError, match="inv_freq"):
        mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "m", TINY, w))


def test_config_checks(tmp_path):
    from mdlm_dna.artifacts.checkpoints import folder_kind

    w = reference_weights(TINY)
    good = write_folder(tmp_path / "good", TINY, w)
    assert folder_kind(good) == "mdlm_hf"  # the one rule that locate() applies
    assert mdlm_hf.read_config(good)["d_model"] == TINY["hidden_dim"]
    udlm = write_folder(tmp_path / "udlm", {**TINY, "model_type": "udlm"}, w)
    assert folder_kind(udlm) is None and folder_kind(tmp_path / "nowhere") is None  # model_type decides
    with pytest.raises(ValueError, match="model_type"):
        mdlm_hf.load_mdlm_hf(udlm)
    no_tc = {k: v for k, v in TINY.items() if k != "time_conditioning"}
    with pytest.raises(ValueError, match="time_conditioning"):
        mdlm_hf.load_mdlm_hf(write_folder(tmp_path / "no_tc", no_tc, w))


def test_attn_dropout_default_keeps_old_behaviour():
    old = DiT(DiTConfig(vocab_size=10, d_model=16, n_layers=1, n_heads=2, cond_dim=8, dropout=0.2))
    assert old.blocks[0].attn_dropout == 0.2
    new = DiT(DiTConfig(vocab_size=10, d_model=16, n_layers=1, n_heads=2, cond_dim=8, dropout=0.2, attn_dropout=0.0))
    assert new.blocks[0].attn_dropout == 0.0 and new.blocks[0].drop.p == 0.2
