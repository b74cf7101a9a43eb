"""Evaluate a checkpoint: NELBO (nats/token), bits per base (or token) and perplexity on a held-out split.

For MDLM, SEDD and D3PM the NELBO is an upper bound on the negative log-likelihood, so the reported
perplexity is an upper bound too (exact for AR).

python -m mdlm_dna.evaluate ckpt=RUN/checkpoints/last.ckpt
python -m mdlm_dna.evaluate ckpt=RUN/checkpoints/last.ckpt split=validation t_samples=16
python -m mdlm_dna.evaluate ckpt=TEXT_RUN/checkpoints/last.ckpt zero_shot=[ptb.txt,wiki.txt]   # a table per file
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from mdlm_dna.data import build_datamodule
from mdlm_dna.pretrain import format_metrics, token_unit
from mdlm_dna.resources import config_dir, register_resolvers
from mdlm_dna.train.lit_module import DiffusionModule

log = logging.getLogger("mdlm_dna.evaluate")
register_resolvers()


def load_module(ckpt: str | Path, use_ema: bool = True) -> tuple[DiffusionModule, bool]:
    """Rebuild the module from a checkpoint alone; returns it and whether EMA weights are in use."""
    path = Path(ckpt).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint ({e})") from e
    if "hyper_parameters" not in state or "config" not in state["hyper_parameters"]:
        raise ValueError(f"{path}: not an mdlm-dna checkpoint (no saved run config)")
    module = DiffusionModule(state["hyper_parameters"]["config"])
    module.load_state_dict(state["state_dict"])
    module.on_load_checkpoint(state)
    ema = use_ema and module.use_ema_weights()
    module.eval()
    return module, ema


def evaluate(cfg: DictConfig | dict[str, Any]) -> dict[str, float]:
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    module, ema = load_module(cfg.ckpt, use_ema=cfg.use_ema)
    config = copy.deepcopy(module.config)
    config.setdefault("eval", {})["t_samples"] = int(cfg.t_samples)
    module.config["eval"] = config["eval"]
    module.seed = int(cfg.seed)
    if cfg.batch_size:
        config["data"]["eval_batch_size"] = int(cfg.batch_size)
    config["data"]["val_max_windows" if cfg.split == "validation" else "test_max_windows"] = cfg.max_windows
    if cfg.genome_path:
        config["genome"]["path"] = str(cfg.genome_path)
    if cfg.split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {cfg.split!r}")
    if cfg.get("zero_shot"):
        return zero_shot(module, config, cfg)
    dm = build_datamodule(config, cache_dir=cfg.cache_dir, tokenizer=module.tokenizer)
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer), logger=False, enable_checkpointing=False)
    if cfg.split == "test":
        raw = trainer.test(module, datamodule=dm, verbose=False)[0]
        prefix, loader = "test", trainer.test_dataloaders
    else:
        raw = trainer.validate(module, datamodule=dm, verbose=False)[0]
        prefix, loader = "val", trainer.val_dataloaders
    metrics = {k: float(v) for k, v in raw.items()}
    result = {
        "split": cfg.split,
        "nelbo_nats_per_token": metrics[f"{prefix}/nelbo"],
        "bits_per_base": metrics[f"{prefix}/bpb"],
        "perplexity": metrics[f"{prefix}/ppl"],
        "ema": ema,
        "windows": len(loader.dataset),  # the loader the trainer used: no second scan of the split
        "seq_len": int(config["data"]["seq_len"]),
        "t_samples": int(cfg.t_samples),
        "ckpt": str(cfg.ckpt),
    }
    weights = "EMA" if ema else "raw"
    print(f"{format_metrics(prefix, metrics, token_unit(config))} ({weights} weights, {result['windows']} windows)")
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(result, indent=1))
    return result


def zero_shot(module: DiffusionModule, config: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a text model on other corpora (each file is all test) with the run's tokenizer and layout."""
    if (config.get("data") or {}).get("kind") != "text":
        raise ValueError("zero_shot=[FILES] evaluates a text model; for DNA use genome_path=OTHER.fa")
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer), logger=False, enable_checkpointing=False)
    rows = []
    for path in cfg.zero_shot:
        data = {k: v for k, v in config["data"].items() if k not in ("hub", "paths", "val_paths")}
        data.update(source="files", paths=[], test_paths=[str(path)], document=cfg.zero_shot_document,
                    test_max_windows=cfg.max_windows)
        dm = build_datamodule({**config, "data": data}, cache_dir=cfg.cache_dir, tokenizer=module.tokenizer)
        metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
        meta = dm.load_split("test").meta
        rows.append({
            "corpus": Path(str(path)).name,
            "documents": meta["documents"],
            "tokens": meta["tokens"],
            "nelbo_nats_per_token": float(metrics["test/nelbo"]),
            "perplexity_bound": float(metrics["test/ppl"]),
        })
    table = pd.DataFrame(rows).set_index("corpus")
    print(f"zero-shot perplexity (upper bounds for diffusion objectives; {cfg.t_samples} noise draws per row)")
    print(table.to_markdown(floatfmt=".3f"))
    result = {"zero_shot": rows, "ckpt": str(cfg.ckpt), "t_samples": int(cfg.t_samples)}
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(result, indent=1))
    return result


@hydra.main(config_path=str(config_dir()), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
