"""Fine-tune a sequence classifier on GenomicBenchmarks (or any sequence,label table) and report test metrics.

python -m mdlm_dna.finetune task=human_nontata_promoters init=RUN        # any model source: run, .ckpt, export,
python -m mdlm_dna.finetune task=human_nontata_promoters init=ecoli      # shipped name, Caduceus folder or Hub id
python -m mdlm_dna.finetune task=human_nontata_promoters model=caduceus_ps              # from scratch
python -m mdlm_dna.finetune task=human_nontata_promoters classifier=cnn               # the paper's CNN baseline
python -m mdlm_dna.finetune task=all seeds=5 init=...                                 # every task, results table
python -m mdlm_dna.finetune task=csv task.train_path=TRAIN.csv task.test_path=TEST.csv [task.val_path=DEV.csv]

Each run folder gets label_mapping.json (sorted class names -> label), metrics.json and the best-validation
checkpoint; the top folder gets results.csv and results.md (mean and std over seeds).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import hydra
import lightning.pytorch as pl
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf
from pydantic import Field, model_validator

from mdlm_dna.classifier import build_classifier, save_classifier
from mdlm_dna.cli.entry import user_errors
from mdlm_dna.data.classification import ClassificationDataConfig, ClassificationDataModule
from mdlm_dna.data.genomic_benchmarks import GB_TASKS, TaskData, load_task
from mdlm_dna.train.callbacks import ValidateAtMaxSteps
from mdlm_dna.train.classifier import ClassifierModule
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.rundir import RunLock, check_not_in_use
from mdlm_dna.utils.validation import (
    CommandConfig,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Required,
    Section,
    Seed,
    StepsOrUnlimited,
    parse_config,
)

log = logging.getLogger("mdlm_dna.finetune")
register_resolvers()
METRICS = ("accuracy", "mcc", "f1")
TASK_SOURCE_KEYS = ("data_dir", "download", "coordinates_dir", "reference_fasta")


def task_configs(task: dict[str, Any]) -> list[dict[str, Any]]:
    """``task=all`` -> the nine GenomicBenchmarks task configs, with the data-location keys of ``all`` applied."""
    if task["name"] != "all":
        return [task]
    out = []
    for name in task.get("tasks") or GB_TASKS:
        cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "task" / f"{name}.yaml"), resolve=True)
        cfg.update({k: task[k] for k in TASK_SOURCE_KEYS if task.get(k) is not None})
        out.append(cfg)
    return out


def run_one(cfg: dict[str, Any], data: TaskData, seed: int, run_dir: Path, max_length: int | None) -> dict[str, Any]:
    """Train on one seed's train/validation split, test the best-validation epoch, write the run's files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(seed, workers=True, verbose=False)
    dcfg = ClassificationDataConfig(**{**cfg["data"], "max_length": max_length})
    dm = ClassificationDataModule(data, dcfg, seed=seed)
    model, desc, spec = build_classifier(cfg, dm.num_classes, max_length=max_length or dm.max_seq_len())
    noise_aware = bool(cfg.get("noise_aware", False))
    module = ClassifierModule(model, dm.num_classes, cfg["optim"], noise_aware=noise_aware)
    if noise_aware:
        desc += ", noise-aware"
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val/accuracy", mode="max")
    trainer = pl.Trainer(
        **cfg["trainer"],
        default_root_dir=str(run_dir),
        callbacks=[best, ValidateAtMaxSteps()],
        logger=CSVLogger(run_dir, name="logs", version=""),
        enable_checkpointing=True,
    )
    (run_dir / "label_mapping.json").write_text(json.dumps(data.label_mapping(), indent=1))
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    train_s = time.perf_counter() - t0
    use_best = cfg.get("select_best", True) and best.best_model_path
    raw = trainer.test(module, datamodule=dm, ckpt_path="best" if use_best else None, verbose=False)[0]
    sizes = dm.sizes()
    test_labels = dm.frames["test"]["label"].to_numpy()
    result = {
        "task": data.name,
        "model": desc,
        "seed": seed,
        "classes": data.classes,
        "train": sizes["train"],
        "val": sizes["val"],
        "test": sizes["test"],
        **{m: float(raw[f"test/{m}"]) for m in METRICS},
        "majority_rate": float(np.bincount(test_labels).max() / len(test_labels)),
        "best_val_accuracy": float(best.best_model_score) if best.best_model_score is not None else None,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "train_seconds": round(train_s, 1),
        "parameters": sum(p.numel() for p in model.parameters()),  # the EMA's copy not counted
        "source": data.source,
        "init": cfg.get("init") or cfg.get("ckpt"),
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=1))
    # the tested weights (the best epoch when selected) and what rebuilds them: reuse, or a guidance classifier
    save_classifier(run_dir, module.eval_model, {**spec, "classes": list(data.classes), "noise_aware": noise_aware,
                                     "task": data.name, "seed": seed})
    print(
        f"{data.name} seed {seed} [{desc}]: test accuracy {result['accuracy']:.4f} | MCC {result['mcc']:.4f} | "
        f"F1 {result['f1']:.4f} ({result['test']} test sequences; majority class {result['majority_rate']:.4f})"
    )
    return result


def summarize(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (task, model): sizes and mean / sample std (ddof=1) of each metric over seeds."""
    df = pd.DataFrame(results)
    rows = []
    for (task, model), g in df.groupby(["task", "model"], sort=False):
        row = {
            "task": task,
            "model": model,
            "classes": len(g["classes"].iloc[0]),
            "train": int(g["train"].iloc[0]),
            "val": int(g["val"].iloc[0]),
            "test": int(g["test"].iloc[0]),
            "seeds": len(g),
        }
        for m in METRICS:
            row[f"{m}_mean"] = float(g[m].mean())
            row[f"{m}_std"] = float(g[m].std(ddof=1)) if len(g) > 1 else float("nan")
        row["majority_rate"] = float(g["majority_rate"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    head = "| task | model | classes | train | val | test | seeds | accuracy | MCC | F1 | majority |"
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def pm(r, m):
        std = r[f"{m}_std"]
        return f"{r[f'{m}_mean']:.4f}" + ("" if np.isnan(std) else f" ± {std:.4f}")

    for _, r in table.iterrows():
        lines.append(
            f"| {r.task} | {r.model} | {r.classes} | {r.train:,} | {r.val:,} | {r.test:,} | {r.seeds} | "
            f"{pm(r, 'accuracy')} | {pm(r, 'mcc')} | {pm(r, 'f1')} | {r.majority_rate:.4f} |"
        )
    return "\n".join(lines) + "\n"


class FinetuneTask(Section):
    name: Required
    max_length: PositiveInt | None = None
    test_fraction: Fraction | None = None
    min_class_examples: PositiveInt = 5


class FinetuneHead(Section):
    pooling: Literal["mean", "first", "last", "attention"] = "mean"
    position_bias: bool = False
    dropout: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0
    freeze_backbone: bool = False
    pad_mode: Literal["pad", "group"] = "pad"
    strands: Literal["forward", "both"] = "forward"
    conjoin_train: bool = False
    conjoin_test: bool = False


class FinetuneData(Section):
    batch_size: PositiveInt = 256
    eval_batch_size: PositiveInt = 256
    val_fraction: Fraction = 0.1
    max_length: PositiveInt | None = None
    rc_prob: Probability = 0.0
    num_workers: NonNegativeInt = 0


class FinetuneOptim(Section):
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.1
    warmup_fraction: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.01
    min_lr_ratio: Probability = 0.1
    ema_decay: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = None


class FinetuneTrainer(Section):
    max_epochs: StepsOrUnlimited | None = 10
    max_steps: StepsOrUnlimited = -1
    log_every_n_steps: PositiveInt = 10


class FinetuneConfig(CommandConfig):
    """configs/finetune.yaml's keys (groups: the keys that need a type and range; the rest pass through)."""

    task: FinetuneTask
    model: Section = Section()
    init: str | None = None
    ckpt: str | None = None
    use_ema: bool = True
    bidirectional: bool = False
    classifier: Literal["backbone", "cnn"] = "backbone"
    seed: Seed = 1
    seeds: PositiveInt = 1
    select_best: bool = True
    noise_aware: bool = False
    head: FinetuneHead = FinetuneHead()
    cnn: Section = Section()
    data: FinetuneData = FinetuneData()
    optim: FinetuneOptim = FinetuneOptim()
    trainer: FinetuneTrainer = FinetuneTrainer()

    @model_validator(mode="after")
    def _rules(self) -> FinetuneConfig:
        source = self.init or self.ckpt
        if self.bidirectional and not source:
            raise ValueError("bidirectional=true drops an AR-pretrained backbone's causal mask: it needs init=SOURCE "
                             "(from scratch, set model.causal instead)")
        if self.classifier == "cnn" and source:
            raise ValueError(f"classifier=cnn trains the CNN baseline from scratch: init={source} would be ignored; "
                             "drop init, or use classifier=backbone to fine-tune it")
        if self.trainer.max_steps == -1 and self.trainer.max_epochs in (None, -1):
            raise ValueError("trainer.max_steps=-1 and trainer.max_epochs=-1: the run would never end; set one")
        if self.seed + self.seeds > 2**32:
            raise ValueError(f"seed={self.seed} seeds={self.seeds}: the seeds must stay below 2**32")
        task = self.task.model_dump()
        if task.get("source") == "csv" and task.get("train_path") in (None, "", "???"):
            raise ValueError("task=csv needs task.train_path=TABLE (a .csv or .tsv with sequence and label columns)")
        return self


def finetune(cfg: DictConfig | dict[str, Any], out_dir: str | Path) -> pd.DataFrame:
    config = OmegaConf.to_container(OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg, resolve=True,
                                    throw_on_missing=False)
    config.pop("hydra", None)
    parse_config(config, FinetuneConfig)  # types and ranges, before anything is written
    out_dir = Path(out_dir)
    check_not_in_use(out_dir, "fine-tune")
    tasks = task_configs(config["task"])
    seeds = [int(config["seed"]) + k for k in range(int(config.get("seeds", 1)))]
    results, lock = [], None
    try:
        for task in tasks:
            data = load_task(task, seed=0)  # seed 0: a held-out test fraction (tables only) is the same for all seeds
            if lock is None:  # the run's record, once its first data set has loaded: bad data leaves no folder
                lock = RunLock(out_dir, kind="fine-tune").acquire()  # two fine-tunes never write one folder
                (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(config))
            max_length = config["data"].get("max_length") or task.get("max_length")
            for seed in seeds:
                run_dir = out_dir / task["name"] / f"seed-{seed}" if len(tasks) > 1 or len(seeds) > 1 else out_dir
                results.append(run_one(config, data, seed, run_dir, int(max_length) if max_length else None))
        table = summarize(results)
        table.to_csv(out_dir / "results.csv", index=False)
        (out_dir / "results.md").write_text(to_markdown(table))
    finally:
        if lock is not None:
            lock.release()
    if len(results) > 1:
        print(to_markdown(table))
    print(f"run folder: {out_dir}")
    return table


@hydra.main(config_path=str(config_dir()), config_name="finetune", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    finetune(cfg, HydraConfig.get().runtime.output_dir)  # bad data: a UserError, one line (user_errors)


if __name__ == "__main__":
    main()
