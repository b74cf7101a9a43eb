"""Lightning plug-ins for safe checkpoints, an always-newest ``last.ckpt``, clean interruption, and a validation
when ``max_steps`` ends a run inside an epoch."""

from __future__ import annotations

import csv
import errno
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mdlm_dna.utils.errors import RunDirError
from mdlm_dna.utils.rundir import check_free_space

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    A kill at any moment leaves either the previous checkpoint or the new one, never a truncated
    file (a temporary file left by a kill is removed at the next start, see ``rundir``). The free
    space is checked first: a full disk is one clear error naming the folder and the size needed.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        needed = _tensor_bytes(checkpoint) + (1 << 20)  # tensors dominate; 1 MB for the rest
        check_free_space(path.parent, needed, f"checkpoint {path.name}")
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
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise RunDirError(
                    f"no space left while writing {path} (about {needed / 1e6:,.1f} MB); the previous checkpoint "
                    "is intact: free some space and run the same command to resume"
                ) from e
            raise
        finally:
            tmp.unlink(missing_ok=True)


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) checkpoint: a lower bound of its size on disk."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


class LastCheckpoint(Checkpoint):
    """Owns ``last.ckpt``: written in place, always the newest state a run resumes from exactly.

    It is written every ``every_n_train_steps`` optimizer steps, at ``trainer.max_steps``, and at the
    step where a SIGINT / SIGTERM asked to stop (first signal: finish the step, save, stop without
    the validation Lightning runs on ``should_stop``; second signal: stop at once). Every save is a
    state inside the training loop; when validation runs after that step, the save waits for its
    end, so the validation's metrics, ``best.ckpt`` bookkeeping and RNG draws are in it as in an
    uninterrupted run. Nothing is written after ``fit`` returns: that state is marked end-of-epoch,
    and a run resumed from it would start the next epoch's samples. One
    writer and one name: no ``last-v1.ckpt``.

    ``stop_after_s``: after this many seconds of this process's training, stop as a first signal would (a
    segment of a long run on a shared machine; the same command continues it exactly). Lightning's
    ``max_time`` differs: it counts the run's whole training time across resumes and validates when it stops.
    """

    def __init__(self, path: str | os.PathLike, every_n_train_steps: int, stop_after_s: float | None = None):
        self.path = Path(path)
        self.every_n_train_steps = int(every_n_train_steps)
        self.stop_after_s = stop_after_s
        self._deadline: float | None = None
        self.requested = False  # a signal (or stop_after_s) asked to stop
        self.timed_out = False  # it was stop_after_s
        self.stopped = False  # and training stopped because of it
        self._after_validation = False
        self._saved_step: int | None = None
        self._previous: dict[int, Any] = {}

    # ----- signals ----------------------------------------------------------------------------
    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("signal %d: stopping after this step and saving %s (again to abort now)", signum, self.path)

    def _restore_handlers(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()

    def on_train_start(self, trainer, pl_module):
        self._saved_step = trainer.global_step  # the state resumed from is on disk already
        if self.stop_after_s is not None:
            self._deadline = time.monotonic() + self.stop_after_s
        if trainer.is_global_zero or trainer.world_size == 1:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[sig] = signal.signal(sig, self._handler)
                except ValueError:  # not in the main thread (e.g. inside a notebook worker)
                    pass

    def on_exception(self, trainer, pl_module, exception):
        self._restore_handlers()

    # ----- saves ------------------------------------------------------------------------------
    def _save(self, trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: optimizer, loops, callbacks
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._deadline is not None and not self.requested and time.monotonic() >= self._deadline:
            self.requested = self.timed_out = True
            log.warning("checkpoint.stop_after_minutes reached: saving %s and stopping", self.path)
        stop = trainer.strategy.reduce_boolean_decision(self.requested, all=False)
        step = trainer.global_step
        due = stop or step % self.every_n_train_steps == 0 or (trainer.max_steps > 0 and step >= trainer.max_steps)
        if not due or step == self._saved_step:
            if stop:
                self._stop(trainer, validate=False)
            return
        if _validation_follows(trainer):
            self._after_validation = True
            if stop:
                self._stop(trainer, validate=True)
            return
        self._save(trainer)
        if stop:
            self._stop(trainer, validate=False)

    def _stop(self, trainer, validate: bool) -> None:
        trainer.should_stop = True
        self.stopped = True
        if not validate:
            # should_stop makes Lightning validate before it stops; an uninterrupted run does not validate here
            trainer.limit_val_batches = 0

    def on_validation_end(self, trainer, pl_module):
        if self._after_validation and not trainer.sanity_checking:
            self._after_validation = False
            self._save(trainer)

    def on_train_end(self, trainer, pl_module):
        self._restore_handlers()
        if self._after_validation or (not self.stopped and self._saved_step != trainer.global_step):
            # training ended another way (max_epochs, max_time): keep its final state
            self._after_validation = False
            self._save(trainer)


def _validation_follows(trainer) -> bool:
    """Whether Lightning validates after this training batch (asked before ``should_stop``, which forces it)."""
    loop = trainer.fit_loop.epoch_loop
    if trainer.should_stop or loop._skip_next_val:
        return False
    return bool(loop._should_check_val_fx(trainer.fit_loop._data_fetcher))


class _AppendingWriter(_ExperimentWriter):
    """Keeps an existing metrics.csv instead of deleting it (Lightning's default)."""

    def _check_log_dir_exists(self) -> None:
        pass


class ResumableCSVLogger(CSVLogger):
    """CSV metrics that continue across resumes: rows logged after the resumed checkpoint are dropped (the
    end-of-run validation at its step is kept), then appended to."""

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


def _kept(row: dict[str, str], step: int) -> bool:
    """A row a resume at ``step`` keeps: every row before it, and the end-of-run validation logged *at* it (a
    finished run's last figures; training rows at ``step`` come from batches after the checkpoint)."""
    if row.get("step") in (None, ""):
        return True
    at = int(float(row["step"]))
    if at != step:
        return at < step
    values = [k for k, v in row.items() if v not in (None, "") and k not in ("epoch", "step")]
    return bool(values) and all(k.startswith(("val/", "test/")) for k in values)


def _truncate_metrics(path: Path, step: int) -> None:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        rows = [r for r in reader if _kept(r, step)]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


class ValidateAtMaxSteps(Callback):
    """Validate the last weights when ``trainer.max_steps`` stops training inside an epoch.

    Lightning validates at epoch ends; a run cut by ``max_steps`` mid-epoch ends unvalidated, so a best-validation
    checkpoint never sees its last, most annealed steps. Asking the trainer to stop at that step makes Lightning
    validate first (its early-stopping path), then end as it would have.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
