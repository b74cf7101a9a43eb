"""Experiment loggers chosen by the ``logger=`` config group, and the training-curve plot of a run.

``logger=csv`` (default), ``logger=tensorboard``, ``logger=wandb`` or a list (``logger=[csv,wandb]``):
Lightning's own loggers, all writing under the run folder. The CSV logger is ours
(:class:`~mdlm_dna.train.callbacks.ResumableCSVLogger`): a resumed run continues its metrics.csv.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
from lightning.pytorch.loggers import Logger

from mdlm_dna.train.callbacks import ResumableCSVLogger
from mdlm_dna.utils.errors import ConfigError

log = logging.getLogger("mdlm_dna.loggers")
KNOWN = ("csv", "tensorboard", "wandb")


def build_loggers(config: dict[str, Any] | None, run_dir: str | Path, resume_step: int | None = None) -> list[Logger]:
    """One Lightning logger per entry of the run's ``logger`` config (name -> settings)."""
    run_dir = Path(run_dir)
    config = {"csv": {}} if config is None else dict(config)
    unknown = sorted(set(config) - set(KNOWN))
    if unknown:
        raise ConfigError(f"logger: unknown logger(s) {unknown}; choose from {list(KNOWN)} (e.g. logger=[csv,wandb])")
    loggers: list[Logger] = []
    if "csv" in config:
        loggers.append(ResumableCSVLogger(run_dir, resume_step=resume_step))
    if "tensorboard" in config:
        from lightning.pytorch.loggers import TensorBoardLogger

        try:
            import tensorboard  # noqa: F401
        except ImportError as e:
            raise ConfigError("logger=tensorboard needs the tensorboard package: pip install tensorboard") from e
        settings = config["tensorboard"] or {}
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=settings.get("name", "")))
    if "wandb" in config:
        try:
            import wandb  # noqa: F401
        except ImportError as e:
            raise ConfigError("logger=wandb needs the wandb package: pip install wandb") from e
        from lightning.pytorch.loggers import WandbLogger

        s = dict(config["wandb"] or {})
        mode = s.pop("mode", None)
        loggers.append(WandbLogger(
            project=s.get("project") or "mdlm-dna", name=s.get("name") or run_dir.name, entity=s.get("entity"),
            tags=list(s.get("tags") or []), save_dir=str(run_dir), offline=mode == "offline",
            **({"mode": mode} if mode else {}),
        ))
    return loggers


def plot_training_curve(metrics_csv: str | Path, out: str | Path) -> Path | None:
    """train / validation bits per base (token) against the step, from a run's metrics.csv, as a PNG."""
    metrics_csv, out = Path(metrics_csv), Path(out)
    if not metrics_csv.is_file():
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no training-curve plot", stacklevel=2)
        return None
    frame = pd.read_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(6, 4))
    for column, label in (("train/bpb", "train (per step)"), ("val/bpb", "validation")):
        if column in frame:
            rows = frame[["step", column]].dropna()
            if column.startswith("train") and len(rows) > 50:  # a running mean makes the trend visible
                rows = rows.assign(**{column: rows[column].rolling(max(len(rows) // 50, 1)).mean()})
            ax.plot(rows["step"], rows[column], marker="o" if column.startswith("val") else None, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("bits per base (NELBO bound)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


class TrainingCurve(pl.Callback):
    """Writes <run dir>/training_curve.png when fitting ends (also after an interrupt)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            try:
                plot_training_curve(self.run_dir / "metrics.csv", self.run_dir / "training_curve.png")
            except Exception as e:  # a plot must never cost a run its end
                log.warning("training curve not plotted: %s", e)
