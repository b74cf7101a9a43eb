"""Load a published Caduceus checkpoint (Hugging Face layout, from a local folder) into our backbones.

The folder holds ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin`` (or sharded
``*.index.json`` versions), written by the reference ``caduceus`` package (github.com/kuleshov-group/
caduceus, ``caduceus/modeling_caduceus.py`` and ``modeling_rcps.py``); e.g. the Hub models
``kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16`` or
``kuleshov-group/caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3``. Nothing is downloaded.

Parameter names, reference -> ours (the ``caduceus.`` prefix of CaduceusForMaskedLM is optional; i is
the layer; "PS" names come from the RCPS wrappers, "fused" / "non-fused" from the add-norm path):

    caduceus.backbone.embeddings.word_embeddings.embedding.weight (PS)  -> embedding.weight, rows remapped
    caduceus.backbone.embeddings.word_embeddings.weight (PH, plain)     -> embedding.weight, rows remapped
    caduceus.backbone.layers.i.mixer.submodule.mamba_{fwd,rev}.P (PS)   -> layers.i.mixer.mamba_{fwd,rev}.P
    caduceus.backbone.layers.i.mixer.mamba_{fwd,rev}.P (PH, plain)      -> layers.i.mixer.mamba_{fwd,rev}.P
    caduceus.backbone.layers.i.norm.weight (fused; PH, plain)           -> layers.i.norm.weight
    caduceus.backbone.layers.i.norm.submodule.weight (PS non-fused)     -> layers.i.norm.weight
    caduceus.backbone.norm_f.weight, or norm_f.submodule.weight         -> norm_f.weight
    lm_head.lm_head.weight (PS), lm_head.weight                         -> tied to the embedding: checked
    ...word_embeddings.complement_map, lm_head.complement_map (PS)      -> buffers: checked against config

P is one of mamba-ssm's Mamba parameters (in_proj.weight, conv1d.weight, conv1d.bias, x_proj.weight,
dt_proj.weight, dt_proj.bias, A_log, D, out_proj.weight), identical in ours. With
``bidirectional_weight_tie`` the reverse Mamba's in_proj/out_proj are the forward ones; files saved
with safetensors keep only one copy, and a missing copy is taken from the forward Mamba.

Vocabulary. The reference CharacterTokenizer numbers [CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4
[RESERVED]=5 [UNK]=6 A=7 C=8 G=9 T=10 N=11, padded to a multiple of 8 (16 rows). Our ids
(A C G T N [MASK] [PAD] [BOS] [EOS] [UNK]) take the rows 7 8 9 10 11 3 4 2 1 6 (our [EOS] is their
eos_token [SEP]); rows 0 ([CLS]), 5 ([RESERVED]) and the padding rows 12-15 are dropped. The reference
complement map (A<->T, C<->G, the rest fixed) is checked to agree with ours under this mapping, which
keeps the loaded Caduceus-PS exactly RC-equivariant.

The fused add-norm swap. In the reference RCPSMambaBlock.forward (modeling_rcps.py), the non-fused
branch normalises the two channel halves in place (RCPSAddNormWrapper), while the fused branch passes
``hidden_states[..., d:]`` (the second half) as the forward half and the flipped first half as the
reverse-complement half, so every block swaps the halves. The final norm_f (modeling_caduceus.py,
CaduceusMixerModel.forward) swaps in neither branch. Both are RC-equivariant but compute different
functions. The published checkpoints were trained, and load in the reference, with
``fused_add_norm: true`` (their config.json, and configs/model/caduceus.yaml of the reference repo), so
the checkpoint's ``fused_add_norm`` sets ``rcps_swap_halves``; tests/test_caduceus_hf.py checks both
paths against a transcription of the reference layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.models.caduceus import Caduceus, make_config

REFERENCE_VOCAB: dict[str, int] = {
    "[CLS]": 0, "[SEP]": 1, "[BOS]": 2, "[MASK]": 3, "[PAD]": 4, "[RESERVED]": 5, "[UNK]": 6,
    "A": 7, "C": 8, "G": 9, "T": 10, "N": 11,
}
# our token name -> reference token name where they differ
_OUR_NAME_IN_REFERENCE = {"[EOS]": "[SEP]"}

_RENAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"^backbone\.embeddings\.word_embeddings\.(?:embedding\.)?weight$", "embedding.weight"),
        (r"^backbone\.layers\.(\d+)\.mixer\.(?:submodule\.)?(mamba_fwd|mamba_rev)\.(.+)$",
         r"layers.\1.mixer.\2.\3"),
        (r"^backbone\.layers\.(\d+)\.norm\.(?:submodule\.)?(weight|bias)$", r"layers.\1.norm.\2"),
        (r"^backbone\.norm_f\.(?:submodule\.)?(weight|bias)$", r"norm_f.\1"),
        (r"^lm_head\.(?:lm_head\.)?weight$", "lm_head.weight"),
    ]
]
_COMPLEMENT_BUFFERS = re.compile(r"^(backbone\.embeddings\.word_embeddings|lm_head)\.complement_map$")


def rename(key: str, renames: Sequence[tuple[re.Pattern[str], str]]) -> str | None:
    """Our name for a reference tensor name: the first matching (pattern, replacement); None when none matches."""
    for pattern, repl in renames:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


def reference_rows(vocab: Sequence[str] = NucleotideTokenizer.vocab) -> list[int]:
    """For each of our token ids, the reference id whose embedding / head row it takes."""
    try:
        return [REFERENCE_VOCAB[_OUR_NAME_IN_REFERENCE.get(tok, tok)] for tok in vocab]
    except KeyError as err:
        raise ValueError(f"token {err} has no counterpart in the reference vocabulary") from err


def read_config(path: str | Path) -> dict[str, Any]:
    config = json.loads((Path(path) / "config.json").read_text())
    if config.get("model_type", "caduceus") != "caduceus":
        raise ValueError(f"{path}: model_type is {config.get('model_type')!r}, not 'caduceus'")
    return config


def config_from_reference(config: Mapping[str, Any]) -> dict[str, Any]:
    """Our CaduceusConfig fields from a reference config.json (initialisation-only fields are dropped)."""
    ssm = dict(config.get("ssm_cfg") or {})
    if {"headdim", "ngroups", "d_ssm"} & set(ssm) or "layer_cfg" in config:
        raise NotImplementedError("only Mamba-1 Caduceus checkpoints are supported")
    ours = {
        "d_model": config["d_model"],
        "n_layers": config["n_layer"],
        "rms_norm": config.get("rms_norm", True),
        "norm_eps": config.get("norm_epsilon", 1e-5),
        "residual_in_fp32": config.get("residual_in_fp32", True),
        "bidirectional_strategy": config.get("bidirectional_strategy") or "add",
        "bidirectional_weight_tie": config.get("bidirectional_weight_tie", True),
        "rcps_swap_halves": config.get("fused_add_norm", True),
        "tie_embeddings": config.get("tie_word_embeddings", True),
    }
    for key in ("d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init_floor", "conv_bias",
                "bias"):
        if key in ssm:
            ours[key] = ssm[key]
    return ours


def backbone_kind(config: Mapping[str, Any]) -> str:
    """caduceus_ps for RCPS checkpoints; bidirectional ones (trained with RC augmentation) as caduceus_ph."""
    if config.get("rcps", False):
        return "caduceus_ps"
    return "caduceus_ph" if config.get("bidirectional", True) else "mamba"


# ----------------------------------------------------------------------------------------------------
# reading tensors

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(file: str | Path) -> dict[str, Tensor]:
    """A .safetensors file as tensors, with the safetensors package if installed, else by hand.

    The format: 8 bytes little-endian header length n, n bytes of JSON {name: {dtype, shape,
    data_offsets}}, then the raw little-endian data.
    """
    try:
        from safetensors.torch import load_file
    except ImportError:
        pass
    else:
        return load_file(str(file), device="cpu")
    data = Path(file).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = (8 + n + o for o in info["data_offsets"])
        dtype = _ST_DTYPES[info["dtype"]]
        if end == start:
            out[name] = torch.empty(info["shape"], dtype=dtype)
        else:
            out[name] = torch.frombuffer(bytearray(data[start:end]), dtype=dtype).reshape(info["shape"])
    return out


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The checkpoint tensors of a Hugging Face model folder (safetensors preferred, sharded or not)."""
    path = Path(path)
    for single, index, reader in (
        ("model.safetensors", "model.safetensors.index.json", read_safetensors),
        ("pytorch_model.bin", "pytorch_model.bin.index.json",
         lambda f: torch.load(f, map_location="cpu", weights_only=True)),
    ):
        if (path / single).exists():
            return dict(reader(path / single))
        if (path / index).exists():
            shards = sorted(set(json.loads((path / index).read_text())["weight_map"].values()))
            out: dict[str, Tensor] = {}
            for shard in shards:
                out.update(reader(path / shard))
            return out
    raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin (nor sharded index)")


# ----------------------------------------------------------------------------------------------------
# conversion


def convert_state_dict(
    ref: Mapping[str, Tensor], config: Mapping[str, Any], rows: Sequence[int]
) -> dict[str, Tensor]:
    """Reference tensors -> our names, embedding rows remapped to our ids. Unknown names raise."""
    ours: dict[str, Tensor] = {}
    ref_embedding: Tensor | None = None
    for name, tensor in ref.items():
        key = name.removeprefix("caduceus.")
        if _COMPLEMENT_BUFFERS.match(key):
            _check_complement_buffer(name, tensor, config)
            continue
        new = rename(key, _RENAMES)
        if new is None:
            raise ValueError(f"unexpected tensor {name!r} in the checkpoint")
        if new in ours:
            raise ValueError(f"two checkpoint tensors map to {new!r}")
        if new == "embedding.weight":
            ref_embedding = tensor
        ours[new] = tensor
    fused = config.get("fused_add_norm", True)
    if config.get("rcps", False) and fused and any(".norm.submodule." in k for k in ref):
        raise ValueError("config.json says fused_add_norm but the norms are named as in the non-fused path")
    head = ours.pop("lm_head.weight", None)
    if ref_embedding is None and head is not None and config.get("tie_word_embeddings", True):
        ref_embedding = head  # a tied file may keep only the head's copy
    if ref_embedding is None:
        raise ValueError("the checkpoint has no word embeddings")
    ours["embedding.weight"] = ref_embedding[list(rows)]
    if config.get("tie_word_embeddings", True):
        if head is not None and not torch.equal(head, ref_embedding):
            raise ValueError("tie_word_embeddings is set but lm_head differs from the embedding")
    elif head is None:
        raise ValueError("untied checkpoint without lm_head weights")
    else:
        ours["lm_head.weight"] = head[list(rows)]
    if config.get("bidirectional", True) and config.get("bidirectional_weight_tie", True):
        for layer in range(config["n_layer"]):
            for proj in ("in_proj", "out_proj"):
                for p in ("weight", "bias"):
                    fwd = ours.get(f"layers.{layer}.mixer.mamba_fwd.{proj}.{p}")
                    rev_key = f"layers.{layer}.mixer.mamba_rev.{proj}.{p}"
                    if fwd is None:
                        continue
                    if rev_key not in ours:
                        ours[rev_key] = fwd
                    elif not torch.equal(ours[rev_key], fwd):
                        raise ValueError(f"{rev_key} should be tied to the forward Mamba's but differs")
    return ours


def _check_complement_buffer(name: str, tensor: Tensor, config: Mapping[str, Any]) -> None:
    comp = config.get("complement_map")
    if comp is None:
        return
    expected = [int(comp[str(i)]) if str(i) in comp else i for i in range(tensor.numel())]
    if tensor.tolist() != expected:
        raise ValueError(f"{name} disagrees with config.json's complement_map")


def _check_complement_map(
    config: Mapping[str, Any], rows: Sequence[int], complement_ids: Sequence[int]
) -> None:
    comp = {int(k): int(v) for k, v in (config.get("complement_map") or {}).items()}
    if not comp:
        return
    for ours, ref_row in enumerate(rows):
        if comp.get(ref_row, ref_row) != rows[complement_ids[ours]]:
            raise ValueError(
                f"our complement of token {ours} does not match the checkpoint's complement map under the "
                f"vocabulary mapping {list(rows)}"
            )


def load_caduceus(
    path: str | Path,
    backbone: str | None = None,
    vocab: Sequence[str] = NucleotideTokenizer.vocab,
    complement_ids: Sequence[int] = NucleotideTokenizer.complement_ids,
    **overrides: Any,
) -> Caduceus:
    """Build the backbone a reference checkpoint describes and load its weights; returned in eval mode.

    ``backbone`` defaults to caduceus_ps for RCPS checkpoints and caduceus_ph for the others (pass
    "bimamba" for the plain network). ``overrides`` set runtime fields such as ``scan_backend``.
    Every checkpoint tensor must land and every model tensor must be filled, else this raises.
    """
    config = read_config(path)
    kind = backbone or backbone_kind(config)
    rows = reference_rows(vocab)
    if config.get("rcps", False) or kind in ("caduceus_ps", "caduceus_ph"):
        _check_complement_map(config, rows, complement_ids)
    if kind == "caduceus_ps" and not config.get("rcps", False):
        raise ValueError("a checkpoint without rcps cannot be loaded as caduceus_ps")
    if config.get("rcps", False) and kind != "caduceus_ps":
        raise ValueError("an RCPS checkpoint loads only as caduceus_ps")
    settings = config_from_reference(config)
    if kind != "caduceus_ps":
        settings.pop("rcps_swap_halves")
    settings.update(overrides)
    model = Caduceus(make_config(kind, settings, len(vocab)), complement_ids)
    state = convert_state_dict(read_state_dict(path), config, rows)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            shapes = f"{tuple(tensor.shape)} in the checkpoint, {tuple(expected[key].shape)} in the model"
            raise ValueError(f"{key}: shape {shapes}")
    model.load_state_dict(state, strict=True)
    return model.eval()
