"""transformers remote code for exported folders: the model, config and tokenizer classes, and the keys that
point transformers at them.

The ``*_mdlm_dna.py`` files beside this one are templates copied verbatim into every exported folder; they do
not import mdlm_dna (a user of the folder needs only torch and transformers) and restate the forward pass in
plain PyTorch (``tests/test_hf_export.py`` compares them with the package's backbones).

    reason = unsupported(model)                     # None when the folder can be a transformers model
    keys = write_remote_code(model, folder)         # copies the .py files, writes vocab.json etc.; config keys
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from mdlm_dna.utils.protocols import LanguageModel

TEMPLATES = ("configuration_mdlm_dna.py", "modeling_mdlm_dna.py", "tokenization_mdlm_dna.py")
BACKBONES = ("dit", "mamba", "bimamba", "caduceus_ps", "caduceus_ph")  # what the remote code restates
OBJECTIVES = ("mdlm", "ar")
BACKBONE_KEYS = ("d_model", "n_layers", "n_heads", "cond_dim", "mlp_ratio", "time_conditioning", "causal",
                 "rotary_base", "num_classes", "conv_kernel",
                 # the Mamba family
                 "d_state", "d_conv", "expand", "dt_rank", "conv_bias", "bias", "bidirectional",
                 "bidirectional_strategy", "bidirectional_weight_tie", "rcps", "rcps_swap_halves", "posthoc",
                 "rms_norm", "norm_eps", "residual_in_fp32", "tie_embeddings")


def unsupported(model: LanguageModel) -> str | None:
    """Why ``model`` cannot be exported as a transformers remote-code model (None: it can)."""
    name = str(model.config["model"]["name"])
    if name not in BACKBONES:
        return f"backbone {name!r} has no transformers remote code yet (supported: {', '.join(BACKBONES)})"
    if model.objective_name not in OBJECTIVES:
        return (f"objective {model.objective_name!r} has no transformers remote code "
                f"(supported: {', '.join(OBJECTIVES)})")
    return None


def _backbone_settings(model: LanguageModel) -> dict[str, Any]:
    cfg = model.backbone.cfg
    out = {"name": str(model.config["model"]["name"])}
    out.update({k: getattr(cfg, k) for k in BACKBONE_KEYS if hasattr(cfg, k)})
    order = int(model.config["model"].get("markov_order") or 0)
    if order:  # the chain under the network (its tables are buffers in the weights)
        out["markov_order"] = order
    complement = getattr(model.backbone, "complement", None)
    if isinstance(complement, torch.Tensor):  # Caduceus-PS / -PH: the complement permutation of the vocabulary
        out["complement_ids"] = [int(i) for i in complement.tolist()]
    return out


def _embedding(backbone: torch.nn.Module) -> torch.nn.Embedding:
    return backbone.embed if hasattr(backbone, "embed") else backbone.embedding


def _auto_map(causal: bool) -> dict[str, Any]:
    auto = {
        "AutoConfig": "configuration_mdlm_dna.MDLMDNAConfig",
        "AutoModel": "modeling_mdlm_dna.MDLMDNAModel",
        "AutoModelForMaskedLM": "modeling_mdlm_dna.MDLMDNAForMaskedLM",
    }
    if causal:
        auto["AutoModelForCausalLM"] = "modeling_mdlm_dna.MDLMDNAForCausalLM"
    return auto


def write_tokenizer_files(vocab: tuple[str, ...], max_length: int, folder: Path) -> None:
    """vocab.json, tokenizer_config.json (pointing AutoTokenizer at the remote tokenizer) and the special tokens."""
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, indent=1) + "\n")
    special = {"mask_token": "[MASK]", "pad_token": "[PAD]", "bos_token": "[BOS]", "eos_token": "[EOS]",
               "unk_token": "[UNK]"}
    config = {
        "tokenizer_class": "MDLMDNATokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_mdlm_dna.MDLMDNATokenizer", None]},
        "model_max_length": int(max_length),
        "padding_side": "right",
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=1) + "\n")


def write_remote_code(model: LanguageModel, folder: Path) -> dict[str, Any]:
    """Copy the remote code and the tokenizer's files into ``folder``; the keys config.json gains."""
    here = Path(__file__).parent
    for name in TEMPLATES if not model.is_text else TEMPLATES[:2]:  # text: the Hugging Face tokenizer itself
        shutil.copyfile(here / name, folder / name)
    causal = model.objective_name == "ar"
    auto = _auto_map(causal)
    if model.is_text:  # the Hugging Face tokenizer itself, where AutoTokenizer looks for it
        model.tokenizer.hf.save_pretrained(str(folder))
    else:
        write_tokenizer_files(model.tokenizer.vocab, model.seq_len, folder)
        auto["AutoTokenizer"] = ["tokenization_mdlm_dna.MDLMDNATokenizer", None]
    tok = model.tokenizer
    return {
        "model_type": "mdlm_dna",
        "architectures": ["MDLMDNAForCausalLM" if causal else "MDLMDNAForMaskedLM"],
        "auto_map": auto,
        "backbone": _backbone_settings(model),
        "objective": model.objective_name,
        "excluded_ids": [int(i) for i in model.objective.excluded_ids.tolist()],
        "default_sigma": 0.0,
        "class_names": model.classes,
        "vocab_size": int(_embedding(model.backbone).num_embeddings),
        "mask_token_id": int(tok.mask_id),
        "pad_token_id": int(tok.pad_id),
        "bos_token_id": int(tok.bos_id),
        "eos_token_id": int(tok.eos_id),
        "torch_dtype": "float32",
    }
