"""Evaluate a model: NELBO (nats/token), bits per base (or token) and perplexity on a held-out split.

For MDLM, SEDD and D3PM the NELBO is an upper bound on the negative log-likelihood, so the reported
perplexity is an upper bound too (exact for AR).

python -m mdlm_dna.evaluate ckpt=ecoli                                  # the shipped model
python -m mdlm_dna.evaluate ckpt=RUN                                     # a run folder, a .ckpt, an exported folder
python -m mdlm_dna.evaluate ckpt=RUN split=validation t_samples=16
python -m mdlm_dna.evaluate ckpt=ecoli_40k strands=both bound=full         # both strands' predictions averaged
python -m mdlm_dna.evaluate ckpt=TEXT_RUN zero_shot=[ptb.txt,wiki.txt]   # a table per file
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import hydra
import lightning.pytorch as pl
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mdlm_dna.api import DiffusionLM
from mdlm_dna.cli.entry import CKPT_REQUIRED, command_config, user_errors
from mdlm_dna.cli.paths import check_output_file
from mdlm_dna.data import build_datamodule
from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.validation import CommandConfig, Int, PositiveInt, Required, Section, parse_config

log = logging.getLogger("mdlm_dna.evaluate")
register_resolvers()


class EvaluateTrainer(Section):
    devices: PositiveInt | str = 1


class EvaluateConfig(CommandConfig):
    """configs/evaluate.yaml's keys, typed (the YAML holds the defaults and the documentation)."""

    ckpt: Required
    split: Literal["test", "validation"] = "test"
    use_ema: bool = True
    t_samples: PositiveInt = 16
    batch_size: PositiveInt | None = None
    max_windows: PositiveInt | None = None
    genome_path: str | None = None
    count_n: bool | None = None
    bound: Literal["reference", "full"] = "reference"
    strands: Literal["forward", "both"] = "forward"
    zero_shot: list[str] | None = None
    zero_shot_document: Literal["file", "paragraph", "line"] = "paragraph"
    cache_dir: str | None = None
    seed: Int = 0
    output: str | None = None
    trainer: EvaluateTrainer = EvaluateTrainer()


def evaluate(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """``cfg``: the keys of configs/evaluate.yaml (missing ones take their defaults)."""
    cfg = command_config("evaluate", cfg, {"ckpt": CKPT_REQUIRED})
    parse_config(cfg, EvaluateConfig)
    if cfg.output:
        check_output_file(cfg.output, "output", inputs=[str(cfg.ckpt)])
    device = "cuda" if OmegaConf.select(cfg, "trainer.accelerator") in ("gpu", "cuda") else "auto"
    model = DiffusionLM.from_pretrained(str(cfg.ckpt), use_ema=bool(cfg.use_ema), device=device,
                                        cache_dir=cfg.get("cache_dir"))
    if cfg.get("zero_shot"):
        return zero_shot(model, cfg)
    result = model.evaluate(split=str(cfg.split), t_samples=int(cfg.t_samples), max_windows=cfg.max_windows,
                            batch_size=cfg.batch_size, genome_path=cfg.genome_path, seed=int(cfg.seed),
                            cache_dir=cfg.cache_dir, trainer=OmegaConf.to_container(cfg.trainer),
                            count_n=cfg.get("count_n"), bound=str(cfg.get("bound", "reference")),
                            strands=str(cfg.get("strands", "forward")))
    result["ckpt"] = str(cfg.ckpt)
    result["bits_per_base" if model.unit == "base" else "bits_per_token"] = result[f"bits_per_{model.unit}"]
    prefix = "test" if cfg.split == "test" else "val"
    weights = "EMA" if result["ema"] else "raw"
    print(f"{prefix} NELBO: {result['nelbo_nats_per_token']:.4f} nats/token | "
          f"{result[f'bits_per_{model.unit}']:.4f} +- {result[f'bits_per_{model.unit}_se']:.4f} bits/{model.unit} | "
          f"perplexity {result['perplexity']:.4f} "
          f"({weights} weights, {result['windows']} windows, {result['bound']} bound"
          f"{', both strands' if result['strands'] == 'both' else ''})")
    if cfg.output:
        Path(cfg.output).write_text(json.dumps(result, indent=1))
    return result


def zero_shot(model: DiffusionLM, cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a text model on other corpora (each file is all test) with the run's tokenizer and layout."""
    config = model.config
    if not model.is_text:
        raise ConfigError("zero_shot=[FILES] evaluates a text model; for DNA use genome_path=OTHER.fa")
    module = model.module
    module.config.setdefault("eval", {})["t_samples"] = int(cfg.t_samples)
    trainer = pl.Trainer(**OmegaConf.to_container(cfg.trainer), logger=False, enable_checkpointing=False)
    rows = []
    for path in cfg.zero_shot:
        data = {k: v for k, v in config["data"].items() if k not in ("hub", "paths", "val_paths")}
        data.update(source="files", paths=[], test_paths=[str(path)], document=cfg.zero_shot_document,
                    test_max_windows=cfg.max_windows)
        dm = build_datamodule({**config, "data": data}, cache_dir=cfg.cache_dir, tokenizer=model.tokenizer)
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
@user_errors
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
