"""What every pretraining DataModule shares: one epoch is the whole run, resumable mid-epoch, private RNG.

Genome windows and text blocks differ only in where a training sample comes from; the batch
arithmetic (how many samples all ranks have consumed) and the loader settings are the same,
so both DataModules derive from :class:`ResumableDataModule`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mdlm_dna.data.windows import ResumableSampler


def global_batch_size(trainer, per_device: int) -> int:
    """Samples per optimizer step over all ranks: per-device batch x devices x nodes x accumulation."""
    world, accum = (trainer.world_size, trainer.accumulate_grad_batches) if trainer is not None else (1, 1)
    return int(per_device) * world * accum


def configured_global_batch_size(config: dict) -> int | None:
    """Samples per optimizer step as a run's config records them: ``data.global_batch_size``, else per-device batch x
    devices x nodes x accumulation; None when the device count was left to the machine (``devices: auto``).

    >>> configured_global_batch_size({"data": {"batch_size": 8}, "trainer": {"devices": 2, "num_nodes": 3}})
    48
    """
    data, trainer = config.get("data") or {}, config.get("trainer") or {}
    if data.get("global_batch_size"):
        return int(data["global_batch_size"])
    devices = trainer.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        devices = len(devices)
    elif isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if not isinstance(devices, int) or devices < 1:  # "auto", -1: how many there were is not in the config
        return None
    return (int(data.get("batch_size", 0)) * devices * int(trainer.get("num_nodes") or 1)
            * int(trainer.get("accumulate_grad_batches") or 1))


class WithIndex(Dataset):
    """Adds ``index`` (the sample's global index) to every item: the training step keys its noise by it."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**self.dataset[i], "index": torch.tensor(i, dtype=torch.long)}


class ShardedEvalSampler(Sampler[int]):
    """Rank ``r`` of ``w`` evaluates the contiguous items ``[r n / w, (r + 1) n / w)``: each exactly once.

    Unlike ``DistributedSampler`` nothing is padded or repeated, so the sums of nats and tokens that
    the metrics reduce over ranks are exactly those of a single process. Contiguous ranges keep a
    batch's evaluation noise (keyed by blocks of indices) to one or two draws.
    """

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1):
        self.range = range(rank * num_items // world_size, (rank + 1) * num_items // world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.range)

    def __len__(self) -> int:
        return len(self.range)


class ResumableDataModule(pl.LightningDataModule):
    """``data`` is the run config's ``data`` section (batch_size, num_workers, pin_memory, ...)."""

    def __init__(self, data: dict[str, Any], seed: int = 0):
        super().__init__()
        self.data_cfg, self.seed = data, seed

    def _global_batch(self) -> int:
        return global_batch_size(self.trainer, self.data_cfg["batch_size"])

    def train_samples_per_epoch(self) -> int:
        n = self.data_cfg.get("train_samples_per_epoch")
        if n:
            g = self._global_batch()
            if int(n) % g:
                # otherwise ranks would get different numbers of batches (a DDP hang), and the last partial
                # step of an epoch would shift where the next epoch resumes
                raise ValueError(f"data.train_samples_per_epoch={n} must be a multiple of the global batch ({g})")
            return int(n)
        if self.trainer is not None and self.trainer.max_steps and self.trainer.max_steps > 0:
            return self.trainer.max_steps * self._global_batch()  # one epoch is the whole run
        raise ValueError("set data.train_samples_per_epoch when training by epochs (trainer.max_steps=-1)")

    def _consumed(self, epoch: int) -> int:
        """Samples (all ranks) of ``epoch`` already trained on: non-zero only when resuming mid-epoch."""
        t = self.trainer
        if t is None:
            return 0
        return t.global_step * self._global_batch() - epoch * self.train_samples_per_epoch()

    def _train_sampler(self, num_samples: int) -> ResumableSampler:
        t = self.trainer
        return ResumableSampler(
            num_samples, rank=t.global_rank if t else 0, world_size=t.world_size if t else 1, progress=self._consumed
        )

    def _train_loader(self, ds: Dataset, num_samples: int) -> DataLoader:
        return self._loader(WithIndex(ds), sampler=self._train_sampler(num_samples), drop_last=True)

    def _eval_loader_for(self, ds: Dataset) -> DataLoader:
        t = self.trainer
        sampler = ShardedEvalSampler(len(ds), rank=t.global_rank if t else 0, world_size=t.world_size if t else 1)
        return self._loader(WithIndex(ds), sampler=sampler, drop_last=False, batch_size=self._eval_batch_size())

    def _pin_memory(self) -> bool:
        pin = self.data_cfg.get("pin_memory", "auto")
        return torch.cuda.is_available() if pin in ("auto", None) else bool(pin)

    def _loader(self, ds: Dataset, batch_size: int | None = None, **kw) -> DataLoader:
        workers = int(self.data_cfg.get("num_workers", 0))
        # a private generator: creating an iterator must not draw from the global RNG (dropout's), or a
        # resumed run, which creates its iterators at other moments, would see different dropout masks
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=batch_size or int(self.data_cfg["batch_size"]),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self._pin_memory(),
            generator=generator,
            **kw,
        )

    def _eval_batch_size(self) -> int:
        return int(self.data_cfg.get("eval_batch_size") or self.data_cfg["batch_size"])
