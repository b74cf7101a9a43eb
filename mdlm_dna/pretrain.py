"""Pretrain a diffusion language model on a genome (or a text corpus: data=lm1b, data=text_files, ...).

python -m mdlm_dna.pretrain                                   # tiny DiT, embedded E. coli, CPU
python -m mdlm_dna.pretrain genome=fasta genome.path=my.fa.gz trainer=gpu model=dit_small
python -m mdlm_dna.pretrain hydra.run.dir=runs/a              # run again: resumes from runs/a/checkpoints/last.ckpt
python -m mdlm_dna.pretrain data=tinyshakespeare                # text: same objectives, backbones, samplers
"""

from __future__ import annotations

import logging
import shlex
import sys
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import hydra
import lightning.pytorch as pl
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf
from pydantic import Field, model_validator
from torch import nn

from mdlm_dna.cli.entry import user_errors
from mdlm_dna.data import build_datamodule
from mdlm_dna.evaluation.markov import fit_markov_prior
from mdlm_dna.models.markov_prior import resolve_markov_order
from mdlm_dna.train.callbacks import AtomicCheckpointIO, LastCheckpoint
from mdlm_dna.train.lit_module import DiffusionModule
from mdlm_dna.train.loggers import TrainingCurve, build_loggers
from mdlm_dna.utils.errors import CheckpointError, ConfigError
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.rundir import RunLock, launcher_rank_zero, remove_stale_temp_files
from mdlm_dna.utils.validation import (
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Section,
    StepsOrUnlimited,
    parse_config,
)

log = logging.getLogger("mdlm_dna.pretrain")
register_resolvers()

INTERRUPTED_EXIT_CODE = 130


class PretrainData(Section):
    seq_len: PositiveInt = 1024
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt | None = None
    global_batch_size: PositiveInt | None = None
    num_workers: NonNegativeInt = 0
    rc_prob: Probability = 0.0
    max_n_fraction: Probability = 0.5
    train_samples_per_epoch: PositiveInt | None = None
    val_max_windows: PositiveInt | None = None
    test_max_windows: PositiveInt | None = None


class PretrainOptim(Section):
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeInt = 0
    min_lr_ratio: Probability = 0.1


class PretrainEMA(Section):
    decay: Probability = 0.9999


class PretrainEval(Section):
    t_samples: PositiveInt = 4


class PretrainCheckpoint(Section):
    every_n_train_steps: PositiveInt = 100
    stop_after_minutes: Annotated[float, Field(gt=0)] | None = None


class PretrainTrainer(Section):
    max_steps: StepsOrUnlimited = -1
    max_epochs: StepsOrUnlimited | None = None
    val_check_interval: PositiveInt | Annotated[float, Field(gt=0, le=1)] | None = None
    log_every_n_steps: PositiveInt = 50
    accumulate_grad_batches: PositiveInt = 1


class PretrainConfig(Section):
    """The keys of configs/pretrain.yaml (and its groups) that need a type and range; the others pass through
    to the code that reads them (model, genome, noise, objective and logger groups check their own)."""

    seed: Int = 0
    init_from: str | None = None
    data: PretrainData = PretrainData()
    optim: PretrainOptim = PretrainOptim()
    ema: PretrainEMA = PretrainEMA()
    eval: PretrainEval = PretrainEval()
    checkpoint: PretrainCheckpoint = PretrainCheckpoint()
    trainer: PretrainTrainer = PretrainTrainer()

    @model_validator(mode="after")
    def _ends(self) -> PretrainConfig:
        if self.trainer.max_steps == -1 and self.trainer.max_epochs in (None, -1):
            raise ValueError("trainer.max_steps=-1 and trainer.max_epochs is not set: the run would never end; "
                             "set one")
        return self


def resolve_resume(resume: Any, last_ckpt: Path) -> Path | None:
    if resume in (None, False, "null", "none", "never"):
        if last_ckpt.exists():
            raise FileExistsError(
                f"{last_ckpt} exists and resume is off: choose another hydra.run.dir, or resume=auto to continue it"
            )
        return None
    if resume == "auto":
        return last_ckpt if last_ckpt.exists() else None
    path = Path(str(resume)).expanduser()
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint not found: {path}; give an existing file, or resume=auto")
    return path


# model keys that may change between a run and its resume: they change how, not what, is computed
RUNTIME_MODEL_KEYS = ("compile", "checkpointing", "scan_backend", "attn_backend")


def read_resume_checkpoint(path: Path) -> dict[str, Any]:
    """The step and saved run config of the checkpoint a run resumes from (memory-mapped: no weights read)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        shapes = {name: tuple(t.shape) for name, t in state["state_dict"].items()}
        return {"global_step": int(state["global_step"]), "config": state["hyper_parameters"]["config"],
                "shapes": shapes}
    except Exception as e:  # truncated, foreign, or not a checkpoint of ours
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint of this package ({type(e).__name__}: {e}); resume from another "
            "one with resume=PATH, or move it away and start over"
        ) from e


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """The config keys that say what a checkpoint's weights are: model (less runtime keys), objective, tokenizer."""
    model = {f"model.{k}": v for k, v in (config.get("model") or {}).items() if k not in RUNTIME_MODEL_KEYS}
    tok = {f"data.tokenizer.{k}": v for k, v in ((config.get("data") or {}).get("tokenizer") or {}).items()}
    return {**model, "objective.name": (config.get("objective") or {}).get("name"), **tok}


def check_resume_matches(saved: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Refuse to continue a checkpoint with another model, objective or tokenizer: its weights would not load, or
    would mean something else. Keys only one side has (options added or removed since) are not compared."""
    old, new = _identity(saved), _identity(config)
    diffs = [f"{k}={new[k]!r} (the checkpoint has {old[k]!r})" for k in old if k in new and old[k] != new[k]]
    if diffs:
        raise ConfigError(
            f"{path} holds another model than this command asks for: {', '.join(diffs)}. Use the run's own "
            "settings to continue it (its config.yaml), or another hydra.run.dir for a new run"
        )


def check_resume_weights(saved_shapes: dict[str, tuple[int, ...]], module: nn.Module, path: Path) -> None:
    """The weights themselves must fit: an option the checkpoint's config predates (so not compared above)
    may still add, drop or reshape parameters."""
    now = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    missing = sorted(set(now) - set(saved_shapes))
    unexpected = sorted(set(saved_shapes) - set(now))
    reshaped = sorted(k for k in set(now) & set(saved_shapes) if now[k] != saved_shapes[k])
    if missing or unexpected or reshaped:
        parts = [f"{label}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
                 for label, names in (("not in the checkpoint", missing), ("only in the checkpoint", unexpected),
                                      ("another shape", reshaped)) if names]
        raise ConfigError(
            f"{path} holds weights of another model than this command builds ({'; '.join(parts)}). Use the "
            "run's own settings to continue it (its config.yaml), or another hydra.run.dir for a new run"
        )


def derive_accumulation(global_batch: int, per_device: int, devices: int, num_nodes: int) -> int:
    """Gradient-accumulation steps that make ``per_device x devices x num_nodes x accumulation = global_batch``."""
    per_step = per_device * devices * num_nodes
    if global_batch <= 0 or per_device <= 0:
        raise ValueError(f"data.global_batch_size={global_batch} and data.batch_size={per_device} must be positive")
    if global_batch % per_step:
        raise ValueError(
            f"data.global_batch_size={global_batch} is not a multiple of data.batch_size={per_device} x "
            f"devices={devices} x num_nodes={num_nodes} = {per_step}; change one of the three numbers"
        )
    return global_batch // per_step


def build_strategy(trainer_cfg: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``trainer.strategy=fsdp`` becomes an FSDPStrategy that shards block by block; other values pass through."""
    cfg = dict(trainer_cfg)
    sharding = cfg.pop("fsdp_sharding", "FULL_SHARD")
    if cfg.get("strategy") != "fsdp":
        return cfg
    if (config.get("ema") or {}).get("enabled", True):
        raise ValueError(
            "trainer=fsdp: the EMA keeps full copies of the weights, which FSDP shards; run with ema.enabled=false "
            "(or use trainer=ddp, which keeps EMA)"
        )
    from lightning.pytorch.strategies import FSDPStrategy

    from mdlm_dna.models.caduceus import Block as CaduceusBlock
    from mdlm_dna.models.dit import DiTBlock

    cfg["strategy"] = FSDPStrategy(
        auto_wrap_policy={DiTBlock, CaduceusBlock},
        sharding_strategy=sharding,
        state_dict_type="full",  # one consolidated checkpoint that evaluate / sample / finetune read
    )
    return cfg


def _progress_bar(trainer_cfg: dict[str, Any], refresh: int | None) -> list[pl.Callback]:
    """Refreshing the bar reads the loss on the host: on a GPU do it every log interval, not every step."""
    if not trainer_cfg.get("enable_progress_bar", True):
        return []
    if refresh is None:
        on_gpu = trainer_cfg.get("accelerator") in ("gpu", "cuda") or (
            trainer_cfg.get("accelerator") == "auto" and torch.cuda.is_available()
        )
        refresh = int(trainer_cfg.get("log_every_n_steps", 50)) if on_gpu else 1
    return [TQDMProgressBar(refresh_rate=int(refresh))]


def format_metrics(prefix: str, metrics: dict[str, Any], unit: str = "base") -> str:
    """One line of NELBO, bits per ``unit`` (a base for DNA, a token for text) and perplexity (bounds for MDLM)."""
    nelbo = float(metrics[f"{prefix}/nelbo"])
    return (
        f"{prefix} NELBO: {nelbo:.4f} nats/token | {float(metrics[f'{prefix}/bpb']):.4f} bits/{unit} | "
        f"perplexity {float(metrics[f'{prefix}/ppl']):.4f}"
    )


def token_unit(config: dict[str, Any]) -> str:
    return "token" if (config.get("data") or {}).get("kind") == "text" else "base"


def run(cfg: DictConfig, run_dir: str | Path, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Train as ``cfg`` says, in ``run_dir``; returns the final validation metrics and paths.

    Config values are checked and the run folder locked before anything is written; only one
    process trains in a folder at a time (the other ranks of a multi-process run do not lock).
    """
    run_dir = Path(run_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    parse_config(config, PretrainConfig)  # types and ranges, before anything is written
    resolve_markov_order(config)  # model.markov_order=auto -> the order this run gets (the run's config.yaml keeps it)
    rank_zero = launcher_rank_zero()
    with RunLock(run_dir) if rank_zero else nullcontext():
        return _run(config, run_dir, extra_callbacks, rank_zero)


def _run(config: dict[str, Any], run_dir: Path, extra_callbacks: Sequence[pl.Callback], rank_zero: bool) -> dict:
    ckpt_dir = run_dir / "checkpoints"
    last_ckpt = ckpt_dir / "last.ckpt"
    resume = resolve_resume(config.get("resume", "auto"), last_ckpt)
    resume_step = None
    if resume:
        saved = read_resume_checkpoint(resume)
        check_resume_matches(saved["config"], config, resume)  # before config.yaml is rewritten
        resume_step = saved["global_step"]
    pl.seed_everything(int(config["seed"]), workers=True, verbose=False)
    module = DiffusionModule(config)
    if resume:
        check_resume_weights(saved["shapes"], module, resume)
    elif config.get("init_from"):  # weights of another trained model (e.g. an AR one); a resume has its own
        from mdlm_dna.artifacts.init_from import init_from

        init_from(module, str(config["init_from"]), config.get("cache_dir"))
    if rank_zero:
        remove_stale_temp_files(ckpt_dir)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config))
    if resume:
        log.info("resuming from %s (step %d)", resume, resume_step)
        # our sampler resumes mid-epoch exactly (see data/windows.py), so Lightning's generic caveats do not apply
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")

    # val/test metrics are torchmetrics sums already reduced over ranks before they are logged
    warnings.filterwarnings("ignore", message=r".*It is recommended to use `self\.log\('(val|test)/.*sync_dist=True.*")
    datamodule = build_datamodule(config, cache_dir=config.get("cache_dir"), tokenizer=module.tokenizer)
    fit_markov_prior(module.objective.backbone, datamodule)  # model.markov_order: the chain under the network

    every = int(config["checkpoint"]["every_n_train_steps"])
    # stepNNNNNNN.ckpt copies; last.ckpt has one writer, LastCheckpoint (no version counter: never a -v1 copy)
    periodic = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="step{step:07d}",
        auto_insert_metric_name=False,
        save_last=False,
        every_n_train_steps=every,
        save_top_k=-1 if config["checkpoint"].get("keep_all") else 1,
        monitor="step",
        mode="max",
        enable_version_counter=False,
    )
    best = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor="val/nelbo", mode="min", save_top_k=1, save_last=False,
        enable_version_counter=False,
    )  # fmt: skip
    minutes = config["checkpoint"].get("stop_after_minutes")
    # after `best`: a save after validation holds best's bookkeeping
    last = LastCheckpoint(last_ckpt, every, 60.0 * minutes if minutes else None)
    callbacks = [periodic, best, last, LearningRateMonitor(logging_interval="step"), TrainingCurve(run_dir),
                 *extra_callbacks]
    callbacks += _progress_bar(config["trainer"], config.get("progress_bar_refresh_rate"))
    trainer = pl.Trainer(
        **build_strategy(config["trainer"], config),
        default_root_dir=str(run_dir),
        callbacks=callbacks,
        logger=build_loggers(config.get("logger"), run_dir, resume_step),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
    )
    global_batch = config["data"].get("global_batch_size")
    if global_batch:
        accum = derive_accumulation(
            int(global_batch), int(config["data"]["batch_size"]), trainer.num_devices, trainer.num_nodes
        )
        asked = int(config["trainer"].get("accumulate_grad_batches") or 1)
        if asked not in (1, accum):
            raise ValueError(
                f"trainer.accumulate_grad_batches={asked} contradicts data.global_batch_size={global_batch} "
                f"(which needs {accum}); set only one of them"
            )
        trainer.accumulate_grad_batches = accum
        log.info("global batch %d = %d per device x %d devices x %d nodes x %d accumulation", int(global_batch),
                 int(config["data"]["batch_size"]), trainer.num_devices, trainer.num_nodes, accum)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)

    interrupted = last.stopped
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if not interrupted and (not metrics or trainer.global_step % int(trainer.val_check_interval or 1) != 0):
        if trainer.global_step == resume_step:  # a finished run, run again: report its metrics, log no row twice
            trainer.loggers = []
        metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule, verbose=False)[0].items()}
    result = {
        "run_dir": str(run_dir),
        "last_ckpt": str(last_ckpt),
        "global_step": trainer.global_step,
        "interrupted": interrupted,
        "metrics": metrics,
    }
    if trainer.is_global_zero:
        if interrupted:
            why = f"Stopped after checkpoint.stop_after_minutes={minutes}" if last.timed_out else "Interrupted"
            print(f"{why} at step {trainer.global_step}; {last_ckpt} saved. Run the same command to resume.")
        if "val/nelbo" in metrics:
            print(f"step {trainer.global_step}: " + format_metrics("val", metrics, token_unit(config)))
        print(f"run folder: {run_dir}")
    return result


@hydra.main(config_path=str(config_dir()), config_name="pretrain", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    if cfg.get("command") is None:  # the exact command, for the checkpoint and an exported model's card
        cfg.command = shlex.join(["python", "-m", "mdlm_dna.pretrain", *sys.argv[1:]])
    result = run(cfg, HydraConfig.get().runtime.output_dir)
    if result["interrupted"]:
        sys.exit(INTERRUPTED_EXIT_CODE)


if __name__ == "__main__":
    main()
