"""LightningModule for sequence classification: cross-entropy, AdamW, warm-up + cosine, acc / MCC / F1.

The optimiser follows the Caduceus GenomicBenchmarks protocol (timm cosine schedule with a linear
warm-up over the first ``warmup_fraction`` of steps from ~0 and a floor of ``min_lr_ratio * lr``);
weight decay applies to weight matrices only (not to biases, norms or embeddings' 1-d parameters).
Metrics come from torchmetrics: accuracy (micro), Matthews correlation, macro-F1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassMatthewsCorrCoef

from mdlm_dna.train.schedules import warmup_schedule


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "mcc": MulticlassMatthewsCorrCoef(num_classes),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class ClassifierModule(pl.LightningModule):
    """``model(input_ids, lengths) -> logits``; ``optim`` holds lr, weight_decay, warmup_fraction, ..."""

    def __init__(self, model: nn.Module, num_classes: int, optim: Mapping[str, Any]):
        super().__init__()
        self.model, self.num_classes, self.optim_cfg = model, num_classes, dict(optim)
        self.val_metrics = classification_metrics(num_classes, "val/")
        self.test_metrics = classification_metrics(num_classes, "test/")

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["input_ids"], batch["lengths"])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self(batch), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def _eval(self, batch, metrics: MetricCollection, prefix: str) -> None:
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"])
        metrics.update(logits, batch["labels"])
        self.log(f"{prefix}loss", loss, batch_size=len(batch["labels"]))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, self.val_metrics, "val/")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, self.test_metrics, "test/")

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def configure_optimizers(self):
        o = self.optim_cfg
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": float(o.get("weight_decay", 0.0))},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=float(o["lr"]),
            betas=tuple(o.get("betas", (0.9, 0.999))),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(float(o.get("warmup_fraction", 0.01)) * total)
        factor = warmup_schedule(warmup, total, float(o.get("min_lr_ratio", 0.1)), "cosine", warmup_offset=1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
