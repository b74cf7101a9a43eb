"""Load the published MDLM DiT (Hugging Face layout, from a local folder) into our DiT.

The folder holds ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin`` as published on the
Hub as ``kuleshov-group/mdlm-owt`` (OpenWebText, GPT-2 tokenizer, 1024 tokens, 12 blocks of width 768,
12 heads, cond_dim 128, no time conditioning). Its ``MDLM`` wrapper (``modeling_mdlm.py`` in the Hub
repo) holds the reference DiT of github.com/kuleshov-group/mdlm (``models/dit.py``, class ``DIT``) as
``backbone``. Nothing is downloaded here.

config.json, reference -> our DiT config:

    model_type "mdlm"                  checked (udlm / bd3lm folders share names but not the function)
    hidden_dim                      -> d_model
    n_blocks                        -> n_layers
    n_heads                         -> n_heads
    cond_dim                        -> cond_dim
    time_conditioning               -> time_conditioning (false for mdlm-owt: the network sees sigma = 0)
    dropout                         -> dropout (residual branches only: attn_dropout = 0, see below)
    vocab_size                      -> 50258 rows = GPT-2's 50257 + [MASK]; ours has 50259 (Vocabulary)
    model_length                    -> the run config's data.seq_len (1024)
    not in config.json: mlp_ratio 4, rotary base 10000 and the 256 sinusoid features of sigma are
    fixed in the reference; the tensor shapes and the stored ``inv_freq`` buffer are checked against them.

Parameter names, reference -> ours (the ``backbone.`` prefix of the Hub wrapper is optional; i is the
block):

    backbone.vocab_embed.embedding                         -> embed.weight (rows: see Vocabulary)
    backbone.sigma_map.mlp.{0,2}.{weight,bias}             -> sigma_embed.mlp.{0,2}.{weight,bias}
    backbone.rotary_emb.inv_freq                           -> not a parameter of ours: checked, not loaded
    backbone.blocks.i.norm1.weight                         -> blocks.i.norm1.weight
    backbone.blocks.i.attn_qkv.weight                      -> blocks.i.qkv.weight
    backbone.blocks.i.attn_out.weight                      -> blocks.i.attn_out.weight
    backbone.blocks.i.norm2.weight                         -> blocks.i.norm2.weight
    backbone.blocks.i.mlp.{0,2}.{weight,bias}              -> blocks.i.mlp.{0,2}.{weight,bias}
    backbone.blocks.i.adaLN_modulation.{weight,bias}       -> blocks.i.adaLN.{weight,bias}
    backbone.output_layer.norm_final.weight                -> norm_f.weight
    backbone.output_layer.adaLN_modulation.{weight,bias}   -> adaLN_f.{weight,bias}
    backbone.output_layer.linear.{weight,bias}             -> lm_head.{weight,bias} (rows: see Vocabulary)

Every tensor is copied as it is (cast to float32): no transposes, splits or reorderings are needed.

Vocabulary. The reference appends [MASK] after GPT-2's ids (diffusion.py: ``mask_index =
tokenizer.vocab_size`` = 50257, 50258 rows). Its ``get_tokenizer`` also adds a [PAD] to GPT-2, which the
Hugging Face tokenizer numbers 50257 as well, the [MASK] row; OpenWebText rows are wrapped, so the
reference never pads. Our GPT-2 TextTokenizer appends [MASK] = 50257 and [PAD] = 50258 (50259 rows).
Rows 0..50257 are copied; every row of ours beyond the reference's (the [PAD] row) gets the [MASK]
embedding (what the reference reads at a padded position) and a head row with zero weight and bias
``ADDED_ROW_LOGIT``, so it is never predicted and leaves every other logit unchanged. Our objectives also
give [PAD] zero mass (``never_predict`` = ``special_ids_not_in_data``), and [MASK] too, as the reference's
SUBS parameterization does (its -1e6 on the [MASK] logit is our -inf): the distribution over the 50257
GPT-2 tokens is the reference's.

Computation. The reference forward pass was read line by line; every step equals ours:
- LayerNorm: ``F.layer_norm(x.float(), [d]) * weight`` (eps 1e-5, no bias) = ``nn.LayerNorm(d,
  bias=False)``; the upcast matters only in half precision.
- adaLN: ``adaLN_modulation(c).chunk(6)`` in the order shift, scale, gate (attention), shift, scale, gate
  (MLP); ``x * (1 + scale) + shift``; residual ``x + gate * branch``. Final layer: chunk(2) = shift, scale.
- Attention: qkv split as ``(three h d)`` (our view(B, L, 3, H, Dh)); rotary by flash-attn's
  ``apply_rotary_emb_qkv_`` in its default non-interleaved layout (first half of each head dimension
  rotated against the second half, on q and k, v untouched), angles ``position * inv_freq`` in float32
  with ``inv_freq = 10000^(-2j/Dh)``; non-causal softmax attention with scale 1/sqrt(Dh).
- sigma: ``silu(MLP([cos, sin](sigma * 10000^(-j/128))))``. Without time conditioning the reference
  zeroes sigma (``Diffusion._process_sigma``) and our DiT feeds sigma = 0. With it on,
  the reference feeds loglinear total noise ``-log1p(-(1 - 1e-3) t)`` = our ``loglinear`` sigma(t).
Differences, neither in the function the weights compute:
- Dropout (training only): the reference drops only the two residual branches (flash attention runs
  with dropout 0); our DiT also dropped attention probabilities, so ``attn_dropout`` exists and is 0 here.
- Precision: the reference runs the blocks and output layer under bfloat16 autocast on CUDA; here the
  model is float32 unless the trainer's precision says otherwise.
tests/test_mdlm_hf.py checks the loaded model against a transcription of the reference forward pass.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mdlm_dna.artifacts.caduceus_hf import read_state_dict, rename
from mdlm_dna.models.dit import DiT, DiTConfig
from mdlm_dna.utils.resources import data_dir

MODEL_TYPE = "mdlm"
MLP_RATIO = 4  # DDiTBlock's default, never set from the config in the reference
ROTARY_BASE = 10_000.0
SIGMA_FEATURES = 256  # TimestepEmbedder's frequency_embedding_size
ADDED_ROW_LOGIT = -1.0e4  # bias of head rows the reference does not have: exp(-1e4) underflows to 0, in fp16 too
LOGLINEAR_EPS = 1e-3  # the reference's LogLinearNoise (configs/noise/loglinear.yaml of github.com/kuleshov-group/mdlm)

# reference name <-> ours, one line each: {i} a block index, {k} an MLP layer, {p} weight | bias, {n} a norm
_NAME_PAIRS = [
    ("vocab_embed.embedding", "embed.weight"),
    ("sigma_map.mlp.{k}.{p}", "sigma_embed.mlp.{k}.{p}"),
    ("blocks.{i}.{n}.weight", "blocks.{i}.{n}.weight"),
    ("blocks.{i}.attn_qkv.weight", "blocks.{i}.qkv.weight"),
    ("blocks.{i}.attn_out.weight", "blocks.{i}.attn_out.weight"),
    ("blocks.{i}.mlp.{k}.{p}", "blocks.{i}.mlp.{k}.{p}"),
    ("blocks.{i}.adaLN_modulation.{p}", "blocks.{i}.adaLN.{p}"),
    ("output_layer.norm_final.weight", "norm_f.weight"),
    ("output_layer.adaLN_modulation.{p}", "adaLN_f.{p}"),
    ("output_layer.linear.{p}", "lm_head.{p}"),
]
_FIELDS = {"i": r"\d+", "k": "[02]", "p": "weight|bias", "n": "norm1|norm2"}


def _renames(pairs: list[tuple[str, str]]) -> list[tuple[re.Pattern[str], str]]:
    """(pattern of the first name, replacement giving the second) for :func:`caduceus_hf.rename`.

    >>> rename("blocks.3.attn_qkv.weight", _renames(_NAME_PAIRS))
    'blocks.3.qkv.weight'
    """
    def pattern(template: str) -> str:
        out = "^"
        for literal, field, _, _ in string.Formatter().parse(template):
            out += re.escape(literal) + (f"(?P<{field}>{_FIELDS[field]})" if field else "")
        return out + "$"

    return [(re.compile(pattern(a)), re.sub(r"\{(\w)\}", r"\\g<\1>", b)) for a, b in pairs]


_RENAMES = _renames(_NAME_PAIRS)  # reference -> ours (loading)
_REFERENCE_NAMES = _renames([(b, a) for a, b in _NAME_PAIRS])  # ours -> reference (error messages)
_INV_FREQ = "rotary_emb.inv_freq"
_VOCAB_ROWS = ("embed.weight", "lm_head.weight", "lm_head.bias")  # ours that have one row per token


# ----------------------------------------------------------------------------------------------------
# config


def read_reference_config(path: str | Path) -> dict[str, Any]:
    """The folder's config.json, checked to describe an MDLM DiT."""
    file = Path(path) / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no config.json")
    config = json.loads(file.read_text())
    if str(config.get("model_type", "")).lower() != MODEL_TYPE:
        raise ValueError(f"{path}: model_type is {config.get('model_type')!r}, not {MODEL_TYPE!r}")
    missing = [k for k in ("hidden_dim", "n_blocks", "n_heads", "cond_dim", "vocab_size") if k not in config]
    if missing:
        raise ValueError(f"{file}: an MDLM config.json needs {missing}")
    return config


def config_from_reference(config: Mapping[str, Any]) -> dict[str, Any]:
    """Our DiT model config (the run config's ``model`` group) from a reference config.json."""
    time_conditioning = config.get("time_conditioning")
    if time_conditioning is None:  # the Hub's MDLMConfig has no default we could rely on: refuse to guess
        raise ValueError("config.json has no time_conditioning; it decides what the network sees of sigma")
    return {
        "name": "dit",
        "d_model": int(config["hidden_dim"]),
        "n_layers": int(config["n_blocks"]),
        "n_heads": int(config["n_heads"]),
        "cond_dim": int(config["cond_dim"]),
        "mlp_ratio": MLP_RATIO,
        "dropout": float(config.get("dropout", 0.1)),
        "attn_dropout": 0.0,
        "time_conditioning": bool(time_conditioning),
        "causal": False,
        "rotary_base": ROTARY_BASE,
    }


def read_config(path: str | Path) -> dict[str, Any]:
    """Our DiT model config for the checkpoint in ``path``."""
    return config_from_reference(read_reference_config(path))


def _dit_config(model: Mapping[str, Any], vocab_size: int) -> DiTConfig:
    return DiTConfig(vocab_size=vocab_size, **{k: v for k, v in model.items() if k != "name"})


# ----------------------------------------------------------------------------------------------------
# conversion


def convert_state_dict(
    reference_state: Mapping[str, Tensor], config: Mapping[str, Any], vocab_size: int | None = None
) -> dict[str, Tensor]:
    """Reference tensors -> our names, float32, with ``vocab_size`` rows (default: the reference's + 1).

    Rows beyond the reference's get the [MASK] embedding (its last row) and a never-predicted head row.
    The rotary ``inv_freq`` buffer is checked against ours. Unknown names and duplicates raise.
    """
    ref_vocab = int(config["vocab_size"])
    vocab_size = ref_vocab + 1 if vocab_size is None else int(vocab_size)
    if vocab_size < ref_vocab:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the checkpoint's {ref_vocab} rows")
    ours: dict[str, Tensor] = {}
    for name, tensor in reference_state.items():
        key = name.removeprefix("backbone.")
        if key == _INV_FREQ:
            _check_inv_freq(name, tensor, config)
            continue
        new = rename(key, _RENAMES)
        if new is None:
            raise ValueError(f"unexpected tensor {name!r} in the checkpoint (not part of the MDLM DiT)")
        if new in ours:
            raise ValueError(f"two checkpoint tensors map to {new!r} (one is {name!r})")
        if not tensor.is_floating_point():
            raise ValueError(f"{name}: dtype {tensor.dtype}, expected a floating-point tensor")
        ours[new] = tensor.to(torch.float32)
    for key in _VOCAB_ROWS:
        if key not in ours:
            continue  # reported as missing by the caller
        rows = ours[key]
        if rows.shape[0] != ref_vocab:
            raise ValueError(
                f"{_reference_name(key)}: {rows.shape[0]} rows, but config.json says vocab_size={ref_vocab}"
            )
        if vocab_size > ref_vocab:
            ours[key] = torch.cat([rows, _added_rows(key, rows, vocab_size - ref_vocab)])
    return ours


def _added_rows(key: str, rows: Tensor, n: int) -> Tensor:
    if key == "embed.weight":  # the reference's [MASK] row, its last
        return rows[-1:].expand(n, -1).clone()
    if key == "lm_head.weight":
        return rows.new_zeros(n, rows.shape[1])
    return rows.new_full((n,), ADDED_ROW_LOGIT)


def _check_inv_freq(name: str, tensor: Tensor, config: Mapping[str, Any]) -> None:
    head_dim = int(config["hidden_dim"]) // int(config["n_heads"])
    expected = 1.0 / ROTARY_BASE ** (torch.arange(0, head_dim, 2).float() / head_dim)
    got = tensor.to(torch.float32)
    tol = 4 * torch.finfo(tensor.dtype).eps if tensor.is_floating_point() else 0.0
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=tol, atol=0.0):
        raise ValueError(f"{name}: the rotary frequencies are not 10000^(-2j/{head_dim}), which our DiT computes")


def _reference_name(ours: str) -> str:
    """The reference's name of one of our parameters (for error messages): the inverse of ``_RENAMES``."""
    return "backbone." + (rename(ours, _REFERENCE_NAMES) or ours)


def _fit(model: DiT, state: Mapping[str, Tensor]) -> None:
    """Every checkpoint tensor lands and every model tensor is filled, with the same shape; else raise."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        def named(keys: list[str]) -> str:
            return ", ".join(f"{_reference_name(k)} (ours: {k})" for k in keys)

        parts = []
        if missing:
            parts.append("missing from the checkpoint: " + named(missing))
        if unexpected:
            parts.append("not in a DiT of this config: " + named(unexpected))
        raise ValueError("checkpoint does not fit the model its config.json describes; " + "; ".join(parts))
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(
                f"{_reference_name(key)} (ours: {key}): shape {tuple(tensor.shape)} in the checkpoint, "
                f"{tuple(expected[key].shape)} in a DiT of this config"
            )


# ----------------------------------------------------------------------------------------------------
# loading


def load_mdlm_hf(path: str | Path, vocab_size: int | None = None) -> tuple[DiT, dict[str, Any]]:
    """Our DiT with the checkpoint's weights, in eval mode, and what was loaded.

    ``vocab_size``: rows of our model (default: the reference's + 1, for the [PAD] our tokenizers append;
    50259 for mdlm-owt and our GPT-2 tokenizer). The info dict holds ``reference_config``, ``model``
    (our model config), ``reference_vocab_size``, ``vocab_size``, ``mask_id``, ``added_rows`` and
    ``seq_len`` (the reference's model_length).
    """
    path = Path(path)
    reference = read_reference_config(path)
    model_cfg = config_from_reference(reference)
    ref_vocab = int(reference["vocab_size"])
    vocab_size = ref_vocab + 1 if vocab_size is None else int(vocab_size)
    state = convert_state_dict(read_state_dict(path), reference, vocab_size)
    model = DiT(_dit_config(model_cfg, vocab_size))
    _fit(model, state)
    model.load_state_dict(state, strict=True)
    info = {
        "reference_config": reference,
        "model": model_cfg,
        "reference_vocab_size": ref_vocab,
        "vocab_size": vocab_size,
        "mask_id": ref_vocab - 1,
        "added_rows": list(range(ref_vocab, vocab_size)),
        "seq_len": int(reference.get("model_length", 1024)),
    }
    return model.eval(), info


def gpt2_tokenizer_path() -> str:
    """The GPT-2 tokenizer files shipped with the package."""
    return str(data_dir() / "tokenizers" / "gpt2")


def run_config(info: Mapping[str, Any], tokenizer_path: str | None = None) -> dict[str, Any]:
    """The run config a DiffusionModule needs for the loaded model: our DiT, GPT-2 text, loglinear, MDLM.

    Training-only groups (optim, trainer, data loading sizes) are left to the caller's defaults.
    """
    model = {**info["model"], "compile": False, "checkpointing": False}
    return {
        "model": model,
        "noise": {"name": "loglinear", "eps": LOGLINEAR_EPS},
        "objective": {"name": "mdlm", "t_min": 1e-3, "antithetic": True, "time_sampling": "lattice",
                      "predict_special_tokens": False},
        "data": {
            "name": "openwebtext",
            "kind": "text",
            "tokenizer": {"name": "gpt2", "path": tokenizer_path or gpt2_tokenizer_path()},
            "seq_len": int(info["seq_len"]),
            "wrap": True,
        },
        "ema": {"enabled": False},  # the file holds one set of weights (the reference's EMA, as published)
        "seed": 0,
    }


def check_tokenizer(info: Mapping[str, Any], tokenizer: Any) -> None:
    """Raise unless ``tokenizer`` (ours) numbers [MASK] as the checkpoint does and has the model's rows."""
    if int(tokenizer.mask_id) != int(info["mask_id"]):
        raise ValueError(f"the tokenizer's [MASK] is {tokenizer.mask_id}, the checkpoint's is {info['mask_id']}")
    if int(tokenizer.vocab_size) != int(info["vocab_size"]):
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids, the loaded model {info['vocab_size']} rows")
    pad = getattr(tokenizer, "pad_id", None)
    if pad is not None and int(pad) < int(info["reference_vocab_size"]) and int(pad) != int(info["mask_id"]):
        raise ValueError(f"the tokenizer's [PAD] ({pad}) is a token the checkpoint was trained on")


def load_pretrained(path: str | Path, tokenizer_path: str | None = None) -> tuple[DiT, dict[str, Any]]:
    """(backbone, run config) for an MDLM Hugging Face folder: what ``DiffusionModule(config)`` needs, whose
    ``objective.backbone`` then takes ``backbone.state_dict()``. The tokenizer is checked against the rows."""
    from mdlm_dna.data.tokenizers import build_tokenizer

    config_tokenizer = tokenizer_path or gpt2_tokenizer_path()
    tokenizer = build_tokenizer({"name": "gpt2", "path": config_tokenizer})
    backbone, info = load_mdlm_hf(path, vocab_size=tokenizer.vocab_size)
    check_tokenizer(info, tokenizer)
    return backbone, run_config(info, config_tokenizer)
