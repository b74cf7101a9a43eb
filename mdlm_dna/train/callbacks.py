"""Lightning plug-ins for safe checkpoints and clean interruption."""

from __future__ import annotations

import csv
import logging
import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    A kill at any moment leaves either the previous checkpoint or the new one,
    never a truncated file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            tmp.unlink(missing_ok=True)


class GracefulStop(pl.Callback):
    """First SIGINT / SIGTERM: finish the current step, save ``last.ckpt`` and stop. Second: stop at once."""

    def __init__(self, last_ckpt: str | os.PathLike):
        self.last_ckpt = Path(last_ckpt)
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("signal %d: stopping after this step and saving %s (again to abort now)", signum, self.last_ckpt)

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero or trainer.world_size == 1:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handler)
                except ValueError:  # not in the main thread (e.g. inside a notebook worker)
                    pass

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        requested = trainer.strategy.reduce_boolean_decision(self.requested, all=False)
        if requested:
            trainer.save_checkpoint(self.last_ckpt)
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module):
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()


class _AppendingWriter(_ExperimentWriter):
    """Keeps an existing metrics.csv instead of deleting it (Lightning's default)."""

    def _check_log_dir_exists(self) -> None:
        pass


class ResumableCSVLogger(CSVLogger):
    """CSV metrics that continue across resumes: rows at or after the resumed step are dropped, then appended to."""

    def __init__(self, save_dir: str | os.PathLike, resume_step: int | None = None):
        super().__init__(save_dir=str(save_dir), name="", version="")
        self.resume_step = resume_step

    @property
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            metrics_file = Path(self.log_dir) / _ExperimentWriter.NAME_METRICS_FILE
            if self.resume_step is not None and metrics_file.exists():
                _truncate_metrics(metrics_file, self.resume_step)
            elif metrics_file.exists():
                metrics_file.unlink()
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
            if metrics_file.exists():
                with open(metrics_file, newline="") as fh:
                    self._experiment.metrics_keys = list(csv.DictReader(fh).fieldnames or [])
        return self._experiment


def _truncate_metrics(path: Path, step: int) -> None:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        rows = [r for r in reader if r.get("step") in (None, "") or int(float(r["step"])) < step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
