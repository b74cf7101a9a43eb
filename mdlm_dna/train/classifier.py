"""Sequence classifiers in training: the LightningModule (cross-entropy, AdamW, warm-up + cosine, acc / MCC / F1)
and the noised inputs of noise-aware classifiers. Building, saving, loading and applying a classifier is
:mod:`mdlm_dna.classifier`.

The optimiser follows the Caduceus GenomicBenchmarks protocol (timm cosine schedule with a linear
warm-up over the first ``warmup_fraction`` of steps from ~0 and a floor of ``min_lr_ratio * lr``);
weight decay applies to weight matrices only (not to biases, norms or embeddings' 1-d parameters).
Metrics come from torchmetrics: accuracy (micro), Matthews correlation, macro-F1.

``optim.ema_decay``: validation, test and the saved classifier use an exponential moving average of the weights
(torch's ``AveragedModel``), with the pretraining EMA's warm-up, decay min(ema_decay, (1 + n) / (10 + n)) after n
steps: a few-thousand-step fine-tune averages roughly its last tenth, whatever the task's size.

``noise_aware``: training inputs are x_t of the masked forward process (t ~ U(0, 1), each base replaced by
[MASK] with probability t: the log-linear schedule's 1 - alpha_t), so that the classifier models p(y | x_t)
at every noise level, as classifier guidance of a masked diffusion model needs (Schiff et al. 2025).
Validation and test stay on clean sequences.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassMatthewsCorrCoef

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.mdlm import counted_positions, mask_positions
from mdlm_dna.train.ema import warmed_up_decay
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


def ema_average(decay: float):
    """``AveragedModel``'s ``avg_fn`` for an EMA whose decay warms up as min(decay, (1 + n) / (10 + n)).

    >>> round(ema_average(0.999)(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0)).item(), 6)  # n=0: decay 0.1
    0.9
    """
    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = warmed_up_decay(decay, float(num_averaged))
        return averaged * d + current * (1.0 - d)
    return average


class ClassifierModule(pl.LightningModule):
    """``model(input_ids, lengths) -> logits``; ``optim`` holds lr, weight_decay, warmup_fraction, ema_decay, ..."""

    def __init__(self, model: nn.Module, num_classes: int, optim: Mapping[str, Any], noise_aware: bool = False):
        super().__init__()
        self.model, self.num_classes, self.optim_cfg = model, num_classes, dict(optim)
        self.noise_aware = bool(noise_aware)
        decay = self.optim_cfg.get("ema_decay")
        if decay is not None and not 0.0 < float(decay) < 1.0:
            raise ValueError(f"optim.ema_decay must lie in (0, 1) or be null, got {decay}")
        self.ema = None if decay is None else AveragedModel(model, avg_fn=ema_average(float(decay)), use_buffers=True)
        if self.ema is not None:
            self.ema.requires_grad_(False)
        tok = NucleotideTokenizer()
        self.mask_id, self.pad_id, self.n_id = tok.mask_id, tok.pad_id, tok.N
        self.val_metrics = classification_metrics(num_classes, "val/")
        self.test_metrics = classification_metrics(num_classes, "test/")

    @property
    def eval_model(self) -> nn.Module:
        """What validation, test and saving use: the EMA of the weights when kept, else the weights."""
        return self.model if self.ema is None else self.ema.module

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["input_ids"], batch["lengths"])

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:  # after the weights change, before a callback (checkpointing) sees the step
            self.ema.update_parameters(self.model)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if self.noise_aware:
            batch = {**batch, "input_ids": mask_forward(batch["input_ids"], self.mask_id, self.pad_id, self.n_id)}
        loss = F.cross_entropy(self(batch), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def _eval(self, batch, metrics: MetricCollection, prefix: str) -> None:
        logits = self.eval_model(batch["input_ids"], batch["lengths"])
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


def mask_forward(input_ids: torch.Tensor, mask_id: int, pad_id: int, n_id: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t of the masked forward process as the diffusion model noises it (``MDLM.add_noise``): per row t ~ U(0, 1),
    each position masked with probability t, except padding and ``n_id`` (N: context the model never masks, unless
    trained with data.count_n=true), so the classifier sees the kind of x_t that guidance will show it."""
    t = torch.rand(input_ids.shape[0], 1, generator=generator, device=input_ids.device)
    u = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    counted = counted_positions(input_ids, pad_id)
    if n_id is not None:
        counted = counted & (input_ids != n_id)
    return mask_positions(input_ids, t, mask_id, counted, u)
