"""Find and load a trained model, whatever form it comes in: the library side of every ``ckpt=`` argument.

A *source* is one of

    ecoli                         a model shipped with the package (data/models/<name>/)
    runs/a                        a run folder of ``python -m mdlm_dna.pretrain`` (its checkpoints/last.ckpt)
    runs/a/checkpoints/x.ckpt     a Lightning checkpoint of ours
    export/ecoli-dit              a folder written by ``save_pretrained`` / ``python -m mdlm_dna.export``
    caduceus-folder               a published Caduceus checkpoint folder (Hugging Face layout)
    mdlm-owt-folder               the published MDLM DiT (kuleshov-group/mdlm-owt layout)
    user/name                     a Hugging Face Hub id of any of the three folder kinds (downloaded once)

and loading gives a :class:`~mdlm_dna.train.lit_module.DiffusionModule` in eval mode plus a
:class:`LoadedFrom` record. Everything is read with ``weights_only``-safe code (safetensors, JSON, and
``torch.load(weights_only=True)`` for our ``.ckpt`` files).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mdlm_dna.utils.errors import CheckpointError
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir, data_dir

log = logging.getLogger("mdlm_dna.artifacts.checkpoints")
__all__ = ["CheckpointError", "LoadedFrom", "load_module", "locate", "shipped_models"]

EXPORT_FORMAT = "mdlm-dna"
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_FORMAT_VERSION = 2  # 2: transformers remote code and a manifest of written files beside the same keys


@dataclass
class LoadedFrom:
    """Where a model came from and what travelled with it (for reports and model cards)."""

    source: str
    kind: str  # shipped | run | ckpt | export | caduceus_hf | mdlm_hf
    path: Path
    ema: bool  # EMA weights are in use
    global_step: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # an export's training record, metrics, command


# ----------------------------------------------------------------------------------------------------
# where the model is


def shipped_models() -> dict[str, Path]:
    """Models shipped with the package, by name."""
    root = data_dir() / "models"
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / EXPORT_CONFIG).is_file()}


def folder_kind(path: Path) -> str | None:
    """export | caduceus_hf | mdlm_hf for a model folder, by its config.json; None when it is none of them."""
    cfg_file = path / EXPORT_CONFIG
    if not cfg_file.is_file():
        return None
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({e})") from e
    if cfg.get("format") == EXPORT_FORMAT:
        return "export"
    if cfg.get("format") == f"{EXPORT_FORMAT}-classifier":
        raise CheckpointError(f"{cfg_file}: a fine-tuned classifier, not a language model: use "
                              "load_classifier(DIR) or python -m mdlm_dna.predict run=DIR")
    model_type = str(cfg.get("model_type", "")).lower()
    if "caduceus" in model_type or any("caduceus" in str(a).lower() for a in cfg.get("architectures", [])):
        return "caduceus_hf"
    if model_type == "mdlm" or (not model_type and any("mdlm" in str(a).lower() for a in cfg.get("architectures", []))):
        return "mdlm_hf"
    return None


def looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~", "/")) and not source.endswith(".ckpt")


def download_from_hub(repo_id: str, cache_dir: str | None = None) -> Path:
    """A local snapshot of a Hub model repository; offline, a clear error at once (no retry loop)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - a core dependency
        raise CheckpointError("loading a Hub id needs the huggingface_hub package: pip install huggingface_hub") from e
    try:  # already in the local Hub cache: no network needed
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except Exception:
        pass
    from mdlm_dna.data.text import hub_reachable

    if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
        raise CheckpointError(
            f"{repo_id!r}: not a local path, and the Hugging Face Hub cannot be reached (offline). On a machine with "
            f"network run `huggingface-cli download {repo_id} --local-dir DIR`, copy DIR here and pass its path"
        )
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir))
    except Exception as e:
        raise CheckpointError(f"{repo_id!r}: cannot be downloaded from the Hugging Face Hub ({e})") from e


def locate(source: str | os.PathLike, cache_dir: str | None = None) -> tuple[str, Path]:
    """(kind, local path) of a model source; raises CheckpointError naming the source when it is none."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        return "ckpt", path
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path}: not a regular file or folder; a model is a shipped name, run folder, "
                              ".ckpt, exported folder or Hub id")
    if path.is_dir():
        kind = folder_kind(path)
        if kind:
            return kind, path
        last = path / "checkpoints" / "last.ckpt"
        if last.is_file():
            return "run", last
        raise CheckpointError(
            f"{path}: a folder, but neither a run folder (no checkpoints/last.ckpt) nor a model folder "
            f"(no config.json of an exported, Caduceus or MDLM model)"
        )
    shipped = shipped_models()
    if text in shipped:
        return "shipped", shipped[text]
    if looks_like_hub_id(text):
        local = download_from_hub(text, cache_dir)
        kind = folder_kind(local)
        if kind is None:
            raise CheckpointError(f"{text!r} (Hub): its config.json is not of an exported, Caduceus or MDLM model")
        return kind, local
    names = ", ".join(sorted(shipped)) or "none"
    raise CheckpointError(
        f"{text}: no such file or folder, not a shipped model (shipped: {names}) and not a Hub id (user/name)"
    )


# ----------------------------------------------------------------------------------------------------
# configs that moved machines


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run config with paths into the package's shipped data written as ``${data_file:NAME}``,
    so an exported model finds its genome and tokenizer on any machine."""
    config = copy.deepcopy(config)
    root = data_dir().resolve()

    def fix(section: dict[str, Any] | None, *keys: str) -> None:
        for key in keys:
            if not section or not section.get(key):
                continue
            p = Path(str(section[key])).expanduser()
            try:
                rel = p.resolve().relative_to(root)
            except (ValueError, OSError):
                continue
            section[key] = "${data_file:" + rel.as_posix() + "}"

    fix(config.get("genome"), "path")
    fix((config.get("genome") or {}).get("paths"), *((config.get("genome") or {}).get("paths") or {}))  # labelled
    fix((config.get("data") or {}).get("tokenizer"), "path")
    return config


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Resolve ``${data_file:...}`` and fall back to the shipped copy of a genome whose recorded path is gone."""
    from omegaconf import OmegaConf

    register_resolvers()
    config = OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    genome = config.get("genome") or {}
    found = _shipped_copy(genome.get("path"))
    if found:
        warnings.warn(f"genome.path={genome['path']} does not exist here; using the shipped copy {found}", stacklevel=2)
        genome["path"] = str(found)
    paths = genome.get("paths") or {}  # a labelled model: one FASTA per class
    for label, path in list(paths.items()) if isinstance(paths, dict) else []:
        found = _shipped_copy(path)
        if found:
            warnings.warn(f"genome.paths.{label}={path} does not exist here; using the shipped copy {found}",
                          stacklevel=2)
            paths[label] = str(found)
    return config


def _shipped_copy(path: Any) -> Path | None:
    """The package's copy of a recorded genome file that is missing here (same file name), else None."""
    if not path or Path(str(path)).expanduser().exists():
        return None
    name = Path(str(path)).name
    root = data_dir()
    direct = root / name
    if direct.is_file():
        return direct
    return next((p for p in sorted(root.rglob(name)) if p.is_file()), None)


def default_run_config(*overrides: str) -> dict[str, Any]:
    """The pretraining config with ``overrides`` (Hydra syntax), resolved: for models trained elsewhere."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_resolvers()
    if GlobalHydra.instance().is_initialized():  # called from inside a Hydra app
        cfg = compose(config_name="pretrain", overrides=list(overrides))
    else:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="pretrain", overrides=list(overrides))
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    return config


# ----------------------------------------------------------------------------------------------------
# loading


def _read_ckpt(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from e
    if magic[:4] != b"PK\x03\x04" and magic[:1] != b"\x80":  # torch.save writes a zip (or, long ago, a pickle)
        raise CheckpointError(f"{path}: cannot be read as a model: not a checkpoint (pretrain's .ckpt files); a "
                              "model is a shipped name, run folder, .ckpt, exported folder or Hub id")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign, or pickled objects that weights_only refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot be read as an mdlm-dna checkpoint ({first})") from e
    if not isinstance(state, dict) or "config" not in (state.get("hyper_parameters") or {}):
        raise CheckpointError(f"{path}: not an mdlm-dna checkpoint (no saved run config)")
    return state


def _module_from_ckpt(path: Path, use_ema: bool):
    from mdlm_dna.train.lit_module import DiffusionModule

    state = _read_ckpt(path)
    module = DiffusionModule(resolve_config(state["hyper_parameters"]["config"]))
    module.load_state_dict(state["state_dict"])
    module.load_ema_state(state)  # not on_load_checkpoint: that restores the run's RNG, which only resume may do
    ema = use_ema and module.use_ema_weights()
    meta = {"global_batch_size": int(state["global_batch_size"])} if state.get("global_batch_size") else {}
    return module, ema, int(state.get("global_step", 0)), meta


def _module_from_export(path: Path, use_ema: bool):
    from safetensors.torch import load_file

    from mdlm_dna.train.lit_module import DiffusionModule

    cfg_file = path / EXPORT_CONFIG
    try:
        meta = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{cfg_file}: cannot be read as JSON ({e})") from e
    version = meta.get("format_version", 1) if isinstance(meta, dict) else 1
    if not isinstance(version, int) or isinstance(version, bool) or version > EXPORT_FORMAT_VERSION:
        raise CheckpointError(f"{cfg_file}: format_version {version!r} is newer than this mdlm-dna reads "
                              f"(<= {EXPORT_FORMAT_VERSION}); upgrade mdlm-dna")
    if not isinstance(meta, dict) or not isinstance(meta.get("run_config"), dict):
        raise CheckpointError(f"{cfg_file}: no run_config (not written by export / save_pretrained, or damaged)")
    config = resolve_config(meta["run_config"])
    tok_dir = path / "tokenizer"
    if tok_dir.is_dir():  # text models carry their tokenizer files
        config["data"]["tokenizer"]["path"] = str(tok_dir)
    config["ema"] = {**(config.get("ema") or {}), "enabled": False}  # the file holds one set of weights
    module = DiffusionModule(config)
    weights = path / EXPORT_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {EXPORT_WEIGHTS}")
    try:
        state = load_file(str(weights))
    except Exception as e:  # a truncated or foreign file: safetensors' own error types
        raise CheckpointError(f"{weights}: cannot be read as safetensors ({e}); export the model again") from e
    try:
        module.objective.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: does not fit the model its config.json describes ({e})") from e
    if not use_ema and meta.get("weights") == "ema":
        warnings.warn(f"{path} holds EMA weights only; use_ema=False has no raw weights to load", stacklevel=3)
    return module, meta.get("weights") == "ema", meta.get("training", {}).get("global_step"), meta


def _module_from_caduceus(path: Path):
    from mdlm_dna.artifacts.caduceus_hf import backbone_kind, config_from_reference, load_caduceus, read_config
    from mdlm_dna.train.lit_module import DiffusionModule

    ref = read_config(path)
    kind = backbone_kind(ref)
    settings = config_from_reference(ref)
    if kind != "caduceus_ps":
        settings.pop("rcps_swap_halves", None)
    config = default_run_config(f"model={'caduceus_ps' if kind == 'caduceus_ps' else 'bimamba'}")
    config["model"] = {"name": kind, **settings, "time_conditioning": False, "scan_backend": "auto"}
    config["ema"] = {"enabled": False}
    config["data"]["seq_len"] = int(ref.get("max_position_embeddings") or ref.get("seq_len") or 1024)
    module = DiffusionModule(config)
    module.objective.backbone.load_state_dict(load_caduceus(path, backbone=kind).state_dict())
    meta = {"reference_config": ref, "note": "a published Caduceus masked-LM checkpoint (not trained with MDLM)"}
    return module, False, None, meta


def _module_from_mdlm_hf(path: Path):
    from mdlm_dna.artifacts import mdlm_hf
    from mdlm_dna.train.lit_module import DiffusionModule

    backbone, ours = mdlm_hf.load_pretrained(path)
    config = default_run_config("data=openwebtext", "model=dit_small")
    for key, value in ours.items():  # the reference's model / noise / objective / data settings win
        config[key] = {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) \
            else value
    config["model"] = ours["model"]
    module = DiffusionModule(resolve_config(config))
    module.objective.backbone.load_state_dict(backbone.state_dict())
    return module, False, None, {"note": "the published MDLM DiT (reference layout, mapped by models/mdlm_hf.py)"}


def load_module(source: str | os.PathLike, use_ema: bool = True, cache_dir: str | None = None):
    """(DiffusionModule in eval mode, LoadedFrom) for any model source (see the module docstring)."""
    kind, path = locate(source, cache_dir)
    with torch.random.fork_rng(devices=[]):  # building the module draws initial weights: leave the caller's RNG as is
        module, ema, step, meta = _load(kind, path, use_ema)
    module.eval()
    return module, LoadedFrom(source=str(source), kind=kind, path=path, ema=ema, global_step=step, metadata=meta)


def _load(kind: str, path: Path, use_ema: bool):
    """(module, EMA weights in use, global step, metadata) of a located source."""
    if kind in ("run", "ckpt"):
        return _module_from_ckpt(path, use_ema)
    if kind in ("export", "shipped"):
        return _module_from_export(path, use_ema)
    if kind == "caduceus_hf":
        return _module_from_caduceus(path)
    return _module_from_mdlm_hf(path)
