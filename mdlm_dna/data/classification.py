"""Labelled sequences -> padded batches for fine-tuning classifiers.

Batches are padded on the right with [PAD] to the longest sequence of the batch and carry
``lengths``, so heads pool over real positions only. The validation split is taken from train
with a fixed seed (the Caduceus protocol's ``train_val_split_seed``) unless the task has its own;
the test split is never touched before the final evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from mdlm_dna.data.genomic_benchmarks import DatasetError, TaskData, holdout, tokenize
from mdlm_dna.data.tokenizers import NucleotideTokenizer

log = logging.getLogger(__name__)
_TOK = NucleotideTokenizer()
_COMPLEMENT = torch.tensor(_TOK.complement_ids, dtype=torch.long)


class SequenceDataset(Dataset):
    """Token id arrays and integer labels; optional reverse-complement augmentation (training only)."""

    def __init__(self, ids: list[np.ndarray], labels: np.ndarray, rc_prob: float = 0.0):
        if len(ids) != len(labels):
            raise ValueError(f"{len(ids)} sequences but {len(labels)} labels")
        self.ids, self.labels, self.rc_prob = ids, np.asarray(labels, dtype=np.int64), float(rc_prob)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.ids[i].astype(np.int64))
        if self.rc_prob > 0 and torch.rand(()) < self.rc_prob:
            x = _COMPLEMENT[x.flip(0)]
        return x, int(self.labels[i])


def collate(batch: list[tuple[torch.Tensor, int]], pad_id: int = _TOK.pad_id) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([len(x) for x, _ in batch], dtype=torch.long)
    ids = torch.full((len(batch), int(lengths.max())), pad_id, dtype=torch.long)
    for row, (x, _) in enumerate(batch):
        ids[row, : len(x)] = x
    return {"input_ids": ids, "lengths": lengths, "labels": torch.tensor([y for _, y in batch], dtype=torch.long)}


@dataclass
class ClassificationDataConfig:
    batch_size: int = 256
    eval_batch_size: int = 256
    val_fraction: float = 0.1
    max_length: int | None = None  # longer sequences keep their first max_length bases (counted in the log)
    rc_prob: float = 0.0  # reverse-complement augmentation of training sequences
    num_workers: int = 0


class ClassificationDataModule(pl.LightningDataModule):
    """Tokenizes the task once; ``seed`` fixes the train/validation split."""

    def __init__(self, data: TaskData, cfg: ClassificationDataConfig, seed: int = 0):
        super().__init__()
        self.task, self.cfg, self.seed = data, cfg, seed
        if len(data.classes) < 2 or data.train["label"].nunique() < 2:
            raise DatasetError(
                f"{data.name}: the training data holds one class only ({data.classes}); a classifier needs at least two"
            )
        train, val = (data.train, data.val) if data.val is not None else holdout(data.train, cfg.val_fraction, seed)
        self.frames = {"train": train, "val": val, "test": data.test}
        self.datasets = {
            split: self._dataset(df, split, cfg.rc_prob if split == "train" else 0.0)
            for split, df in self.frames.items()
        }

    def _dataset(self, df: pd.DataFrame, split: str, rc_prob: float) -> SequenceDataset:
        ids = tokenize(df["sequence"].tolist(), f"{self.task.name} {split}")
        if self.cfg.max_length:
            n_long = sum(len(x) > self.cfg.max_length for x in ids)
            if n_long:
                log.warning(
                    "%s %s: %d of %d sequences are longer than max_length=%d and keep their first %d bases",
                    self.task.name, split, n_long, len(ids), self.cfg.max_length, self.cfg.max_length,
                )  # fmt: skip
                ids = [x[: self.cfg.max_length] for x in ids]
        return SequenceDataset(ids, df["label"].to_numpy(), rc_prob)

    @property
    def num_classes(self) -> int:
        return len(self.task.classes)

    def sizes(self) -> dict[str, int]:
        return {split: len(ds) for split, ds in self.datasets.items()}

    def max_seq_len(self) -> int:
        return max(len(x) for ds in self.datasets.values() for x in ds.ids)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        bs = self.cfg.batch_size if split == "train" else self.cfg.eval_batch_size
        g = torch.Generator()
        g.manual_seed(self.seed)
        return DataLoader(
            self.datasets[split],
            batch_size=bs,
            shuffle=shuffle,
            collate_fn=collate,
            num_workers=self.cfg.num_workers,
            generator=g if shuffle else None,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
