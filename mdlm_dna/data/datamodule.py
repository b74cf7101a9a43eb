"""LightningDataModule: a genome, its split, and the window datasets of each split."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from mdlm_dna.data.fasta import Genome, load_genome
from mdlm_dna.data.windows import RandomWindows, ResumableSampler, TiledWindows, split_genome

log = logging.getLogger(__name__)


def load_split_genome(genome_cfg: dict[str, Any], cache_dir: str | None = None) -> tuple[Genome, dict]:
    """The genome a run's ``genome`` config names, and its train / validation / test intervals."""
    g = genome_cfg
    genome = load_genome(
        g["path"],
        cache_dir=cache_dir,
        records=g.get("records"),
        min_record_length=int(g.get("min_record_length", 1)),
    )
    splits = split_genome(
        genome,
        val_fraction=g.get("val_fraction", 0.05),
        test_fraction=g.get("test_fraction", 0.05),
        val_records=g.get("val_records") or (),
        test_records=g.get("test_records") or (),
    )
    return genome, splits


class GenomeDataModule(pl.LightningDataModule):
    """``genome`` and ``data`` are the run config's sections of those names."""

    def __init__(self, genome: dict[str, Any], data: dict[str, Any], seed: int = 0, cache_dir: str | None = None):
        super().__init__()
        self.genome_cfg, self.data_cfg, self.seed, self.cache_dir = genome, data, seed, cache_dir
        self.genome: Genome | None = None
        self.splits = None

    def prepare_data(self) -> None:
        # build the token cache once, on one process
        self._load()

    def _load(self) -> Genome:
        if self.genome is None:
            self.genome, self.splits = load_split_genome(self.genome_cfg, self.cache_dir)
        return self.genome

    def setup(self, stage: str | None = None) -> None:
        self._load()

    # ----- loaders --------------------------------------------------------------------------
    def _global_batch(self) -> int:
        t = self.trainer
        world = t.world_size if t else 1
        accum = t.accumulate_grad_batches if t else 1
        return int(self.data_cfg["batch_size"]) * world * accum

    def train_samples_per_epoch(self) -> int:
        n = self.data_cfg.get("train_samples_per_epoch")
        if n:
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

    def train_dataloader(self) -> DataLoader:
        d = self.data_cfg
        n = self.train_samples_per_epoch()
        ds = RandomWindows(
            self._load(),
            self.splits["train"],
            seq_len=int(d["seq_len"]),
            num_samples=n,
            seed=self.seed,
            rc_prob=float(d.get("rc_prob", 0.0)),
            max_n_fraction=float(d.get("max_n_fraction", 0.5)),
            keep_soft_mask=bool(d.get("keep_soft_mask", False)),
        )
        t = self.trainer
        sampler = ResumableSampler(
            n, rank=t.global_rank if t else 0, world_size=t.world_size if t else 1, progress=self._consumed
        )
        return self._loader(ds, sampler=sampler, drop_last=True)

    def _eval_loader(self, split: str) -> DataLoader:
        d = self.data_cfg
        ds = TiledWindows(
            self._load(),
            self.splits[split],
            seq_len=int(d["seq_len"]),
            max_windows=d.get(f"{'val' if split == 'validation' else 'test'}_max_windows"),
            max_n_fraction=float(d.get("max_n_fraction", 0.5)),
            keep_soft_mask=bool(d.get("keep_soft_mask", False)),
        )
        if len(ds) == 0:
            raise ValueError(
                f"{self.genome.path}: the {split} split has no window of seq_len={d['seq_len']}; "
                "use a shorter seq_len or larger split fractions"
            )
        return self._loader(
            ds, shuffle=False, drop_last=False, batch_size=int(d.get("eval_batch_size") or d["batch_size"])
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _loader(self, ds, batch_size: int | None = None, **kw) -> DataLoader:
        workers = int(self.data_cfg.get("num_workers", 0))
        # a private generator: creating an iterator must not draw from the global RNG (dropout's), or a
        # resumed run, which creates its iterators at other moments, would see different dropout masks
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=batch_size or int(self.data_cfg["batch_size"]),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=bool(self.data_cfg.get("pin_memory", False)),
            generator=generator,
            **kw,
        )
