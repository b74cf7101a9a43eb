"""The LightningModule that trains and evaluates a diffusion objective on token windows.

Randomness is explicit so that runs are reproducible, resumes are exact, and the result does not
depend on how a global batch is split over devices and gradient-accumulation steps: the diffusion
noise of a training sample is row ``index mod G`` of a ``[G, L]`` draw seeded by (seed, optimizer
step), where ``index`` is the sample's global index and G the global batch; its time is spread over the
whole global batch (``objective.time_sampling``: a shared-offset lattice, per-sample stratified, or iid).
Validation / test noise is keyed by the window's index in its split, so every evaluation sees the same
noise, on any number of ranks.
Dropout uses the global RNG (seeded per rank under DDP), whose state on every rank travels in the checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torchmetrics.aggregation import MeanMetric

from mdlm_dna.data.base import global_batch_size
from mdlm_dna.data.labelled import resolve_classes
from mdlm_dna.data.tokenizers import NucleotideTokenizer, TextTokenizer, build_tokenizer
from mdlm_dna.diffusion.ar import AR
from mdlm_dna.diffusion.d3pm import D3PM
from mdlm_dna.diffusion.mdlm import MDLM, DrawnNoise
from mdlm_dna.diffusion.noise import build_schedule
from mdlm_dna.diffusion.sedd import SEDD
from mdlm_dna.models import build_backbone
from mdlm_dna.models.markov_prior import resolve_markov_order
from mdlm_dna.train.ema import EMA
from mdlm_dna.train.schedules import warmup_schedule
from mdlm_dna.train.window_spread import WindowSpread

LN2 = math.log(2.0)
EVAL_NOISE_BLOCK = 256  # evaluation windows share one seeded draw per block of this many indices
Tokenizer = NucleotideTokenizer | TextTokenizer


def seeded_generator(device: torch.device, *keys: int) -> torch.Generator:
    seed = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # additive recurrence: any run of consecutive rows is spread over [0, 1)


TIME_SAMPLING = ("lattice", "stratified", "iid")


def time_sampling_of(objective_cfg: dict[str, Any] | None) -> str:
    """The training time sampler an objective config asks for: ``time_sampling``, else the older
    ``antithetic`` flag (true = lattice, false = iid), so configs and checkpoints from before keep their meaning."""
    cfg = objective_cfg or {}
    mode = cfg.get("time_sampling") or ("lattice" if cfg.get("antithetic", True) else "iid")
    if mode not in TIME_SAMPLING:
        raise ValueError(f"objective.time_sampling={mode!r}; choose one of {', '.join(TIME_SAMPLING)}")
    return mode


def drawn_noise(
    index: torch.Tensor,
    length: int,
    block: int,
    time_sampling: str,
    key: tuple[int, ...],
    block_id: int | None = None,
    stride: float | None = None,
) -> DrawnNoise:
    """Per-sample uniforms: sample ``i`` gets row ``r = i mod block`` of a ``[block, length + 1]`` draw seeded by
    ``(*key, i // block)`` (or ``(*key, block_id)`` when every index is known to lie in that block, which
    avoids reading the indices on the host). Its time, by ``time_sampling``:

    - ``lattice``: ``u0 + r * stride mod 1``, one uniform ``u0`` per block. The default stride ``1 / block``
      stratifies a full block exactly (a global batch); evaluation, whose batches cover a few rows of a
      block, uses the golden-ratio stride that spreads any run of rows.
    - ``stratified``: ``(r + u_r) / block`` with ``u_r`` the row's own uniform: one time in each stratum
      ``[r/G, (r+1)/G)``, jittered independently, so the batch mean of a smooth integrand has variance
      O(G^-3) (against O(G^-2) for a shared offset and O(G^-1) for iid draws).
    - ``iid``: ``u_r`` itself.

    Every row's time is a pure function of (key, block id, r): exact resume, any device layout."""
    if time_sampling not in TIME_SAMPLING:
        raise ValueError(f"time_sampling={time_sampling!r}; choose one of {', '.join(TIME_SAMPLING)}")
    stride = 1.0 / block if stride is None else stride
    device = index.device
    rows = index % block

    def rows_of(b: int, sel: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        g = seeded_generator(device, *key, b)
        u0 = torch.rand(1, device=device, generator=g)  # drawn in every mode: the mask uniforms stay the same
        draw = torch.rand(block, length + 1, device=device, generator=g)
        r = rows[sel]
        if time_sampling == "lattice":
            t_u = (u0 + r * stride) % 1.0
        elif time_sampling == "stratified":
            t_u = (r + draw[r, 0]) / block
        else:
            t_u = draw[r, 0]
        return t_u, draw[r, 1:]

    if block_id is not None:  # training: one draw, no host sync
        t_u, mask_u = rows_of(block_id, slice(None))
        return DrawnNoise(t_uniform=t_u, mask_uniform=mask_u)
    t_u = torch.empty(index.shape[0], device=device)
    mask_u = torch.empty(index.shape[0], length, device=device)
    blocks = index // block
    for b in blocks.unique().tolist():
        sel = blocks == b
        t_u[sel], mask_u[sel] = rows_of(b, sel)
    return DrawnNoise(t_uniform=t_u, mask_uniform=mask_u)


LABEL_DROPOUT_STREAM = 4  # key of the label-dropout draws, apart from the noise's (0) and evaluation's (1, 2)


def dropped_labels(
    labels: torch.Tensor, index: torch.Tensor, rate: float, null_label: int, block: int, key: tuple[int, ...],
    block_id: int,
) -> torch.Tensor:
    """Labels with each replaced by the null class with probability ``rate`` (classifier-free guidance
    training). Sample ``i``'s coin is row ``i mod block`` of a ``[block]`` draw seeded by ``(*key, block_id)``:
    a pure function of (seed, step, sample index), so resumes are exact and the device layout does not matter."""
    if rate <= 0:
        return labels
    g = seeded_generator(labels.device, *key, block_id)
    u = torch.rand(block, device=labels.device, generator=g)[index % block]
    return torch.where(u < rate, torch.full_like(labels, null_label), labels)


def _build_mdlm(backbone, schedule, tokenizer: Tokenizer, cfg: dict[str, Any]) -> MDLM:
    cfg = dict(cfg)
    never = (() if cfg.pop("predict_special_tokens", False) else tokenizer.special_ids_not_in_data) + tuple(
        cfg.pop("not_predicted", ()))
    return MDLM(backbone, schedule, mask_id=tokenizer.mask_id, pad_id=tokenizer.pad_id, never_predict=never, **cfg)


def _build_ar(backbone, schedule, tokenizer: Tokenizer, cfg: dict[str, Any]) -> AR:
    cfg = dict(cfg)  # the noise schedule is unused: AR has no forward process
    never = (() if cfg.pop("predict_special_tokens", False) else tokenizer.special_ids_not_in_data) + tuple(
        cfg.pop("not_predicted", ()))
    return AR(
        backbone,
        bos_id=tokenizer.bos_id,
        pad_id=tokenizer.pad_id,
        never_predict=sorted({tokenizer.mask_id, *never}),
        **cfg,
    )


def _build_with_vocab(cls: type[MDLM]):
    """Builder for the masked objectives whose constructor also needs the vocabulary size (SEDD, D3PM)."""

    def build(backbone, schedule, tokenizer: Tokenizer, cfg: dict[str, Any]) -> MDLM:
        cfg = dict(cfg)
        never = (() if cfg.pop("predict_special_tokens", False) else tokenizer.special_ids_not_in_data) + tuple(
            cfg.pop("not_predicted", ()))
        return cls(
            backbone,
            schedule,
            mask_id=tokenizer.mask_id,
            vocab_size=tokenizer.vocab_size,
            pad_id=tokenizer.pad_id,
            never_predict=never,
            **cfg,
        )

    return build


# name -> builder(backbone, schedule, tokenizer, objective config without 'name'). Every objective exposes
# ``nelbo(x0, t=None, generator=None) -> NELBO`` (an exact NLL for AR), which is all training needs.
OBJECTIVES = {"mdlm": _build_mdlm, "ar": _build_ar, "sedd": _build_with_vocab(SEDD), "d3pm": _build_with_vocab(D3PM)}


def build_objective(config: dict[str, Any], tokenizer: Tokenizer) -> nn.Module:
    obj = dict(config.get("objective") or {"name": "mdlm"})
    obj.pop("time_sampling", None)  # the training step's business (DiffusionModule), not the objective's
    obj.pop("label_dropout", None)  # likewise (conditional models)
    if isinstance(tokenizer, NucleotideTokenizer) and not (config.get("data") or {}).get("count_n", False):
        obj["not_predicted"] = (tokenizer.N,)  # N is context only (data.count_n=false): never a prediction
    name = obj.pop("name", "mdlm")
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    resolve_markov_order(config)  # model.markov_order=auto -> a number (in place)
    backbone = build_backbone(dict(config["model"]), tokenizer.vocab_size, tokenizer.complement_ids)
    noise_cfg = dict(config["noise"])
    schedule = build_schedule(noise_cfg.pop("name"), **noise_cfg)
    return OBJECTIVES[name](backbone, schedule, tokenizer, obj)


class DiffusionModule(pl.LightningModule):
    """``config`` is the run's resolved config (a plain dict); it is saved in the checkpoint."""

    def __init__(self, config: dict[str, Any], tokenizer: Tokenizer | None = None):
        """``tokenizer``: the one the run's ``data.tokenizer`` names, when the caller has already built it."""
        super().__init__()
        resolve_classes(config)  # labelled data: class names into data.classes, model.num_classes (in place)
        resolve_markov_order(config)  # model.markov_order=auto -> a number (in place)
        self.save_hyperparameters({"config": config})
        self.config = config
        self.tokenizer = tokenizer or build_tokenizer((config.get("data") or {}).get("tokenizer"))
        self.objective = build_objective(config, self.tokenizer)
        self.time_sampling = time_sampling_of(config.get("objective"))
        self.count_n = bool((config.get("data") or {}).get("count_n", False))
        self.num_classes = (config.get("model") or {}).get("num_classes")
        self.label_dropout = float((config.get("objective") or {}).get("label_dropout", 0.1) or 0.0)
        ema_cfg = config.get("ema") or {}
        self.ema = (
            EMA(self.objective, decay=ema_cfg["decay"], warmup=ema_cfg.get("warmup", True))
            if ema_cfg.get("enabled", True)
            else None
        )
        self.seed = int(config.get("seed", 0))
        self._compiled = False
        self.val_nelbo = MeanMetric()
        self.test_nelbo = MeanMetric()
        self.val_spread = WindowSpread()  # the figures' standard errors over windows
        self.test_spread = WindowSpread()

    def setup(self, stage: str) -> None:
        world = self._trainer.world_size if self._trainer else 1
        if stage == "fit" and world > 1:
            # each rank its own dropout stream (a resumed run then restores each rank's saved state)
            seed = int(np.random.SeedSequence([self.seed, 3, self.global_rank]).generate_state(1)[0])
            torch.manual_seed(seed)
        # compile in place (nn.Module.compile): parameter names, EMA and checkpoints stay as in eager mode
        if stage == "fit" and self.config["model"].get("compile", False) and not self._compiled:
            self.objective.backbone.compile()
            self._compiled = True

    # ----- training -------------------------------------------------------------------------
    def global_batch_size(self) -> int:
        return global_batch_size(self._trainer, self.config["data"]["batch_size"])

    def _antithetic(self) -> bool:
        return bool(getattr(self.objective, "antithetic", True))

    def counted_positions(self, x0: torch.Tensor, count_n: bool | None = None) -> torch.Tensor | None:
        """[B, L] bool: the positions the loss and bits/base count, for the objective's ``nelbo(counted=...)``.

        DNA: the A/C/G/T bases. Padding and N bases are given context (never masked, never predicted, not
        counted), as Caduceus's pretraining maps N to padding; ``count_n`` (default: the run's ``data.count_n``)
        counts N as a token like the others. None (the objective's default: all but padding) for text and
        when N counts.
        """
        count_n = self.count_n if count_n is None else bool(count_n)
        n_id = getattr(self.tokenizer, "N", None)
        if count_n or n_id is None:
            return None
        keep = x0 != n_id
        return keep if self.tokenizer.pad_id is None else keep & (x0 != self.tokenizer.pad_id)

    def _eval_time_sampling(self) -> str:
        """Evaluation keeps the golden-ratio lattice (or iid draws when the objective asks for no low discrepancy)."""
        return "lattice" if self._antithetic() else "iid"

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x0 = batch["input_ids"]
        if "index" in batch:  # our DataModules: noise per sample, independent of the device layout
            g = drawn_noise(batch["index"], x0.shape[1], self.global_batch_size(), self.time_sampling,
                            key=(self.seed, 0), block_id=self.global_step)
        else:  # a loader of one's own: noise per (step, micro-batch, rank)
            micro = batch_idx % self.trainer.accumulate_grad_batches if self._trainer else 0
            g = seeded_generator(self.device, self.seed, 0, self.global_step, micro, self.global_rank)
        if "label" in batch and self.num_classes is not None:  # conditional: some labels dropped to the null class
            out = self.objective.nelbo(x0, generator=g, labels=self._train_labels(batch, batch_idx),
                                       counted=self.counted_positions(x0))
        else:
            out = self.objective.nelbo(x0, generator=g, counted=self.counted_positions(x0))
        loss = out.per_token
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpb", loss / LN2)
        return loss

    def _train_labels(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """The batch's labels after label dropout, keyed like the noise: (seed, step, sample index)."""
        labels = batch["label"]
        if "index" in batch:
            index, block, extra = batch["index"], self.global_batch_size(), ()
        else:  # a loader of one's own: per (step, micro-batch, rank)
            micro = batch_idx % self.trainer.accumulate_grad_batches if self._trainer else 0
            index, block = torch.arange(len(labels), device=labels.device), len(labels)
            extra = (micro, self.global_rank)
        return dropped_labels(labels, index, self.label_dropout, int(self.num_classes), block,
                              key=(self.seed, LABEL_DROPOUT_STREAM, *extra), block_id=self.global_step)

    def optimizer_step(self, *args, **kwargs) -> None:
        # update the EMA right after the weights change, before any callback (checkpointing) sees the step
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.objective)

    # ----- evaluation -----------------------------------------------------------------------
    def _eval_step(self, batch, batch_idx: int, metric: MeanMetric, spread: WindowSpread, stream: int) -> None:
        x0 = batch["input_ids"]
        draws = int(self.config.get("eval", {}).get("t_samples", 1))
        per_window = torch.zeros(x0.shape[0], device=x0.device)
        for k in range(draws):
            if "index" in batch:
                g = drawn_noise(batch["index"], x0.shape[1], EVAL_NOISE_BLOCK, self._eval_time_sampling(),
                                key=(self.seed, stream, k), stride=GOLDEN)
            else:
                g = seeded_generator(self.device, self.seed, stream, k, batch_idx, self.global_rank)
            if "label" in batch and self.num_classes is not None:  # conditional models: -log p(x | y)
                out = self.objective.nelbo(x0, generator=g, labels=batch["label"], counted=self.counted_positions(x0))
            else:
                out = self.objective.nelbo(x0, generator=g, counted=self.counted_positions(x0))
            tokens = out.num_tokens.sum()  # A/C/G/T positions unless data.count_n; a batch of all N weighs 0
            metric.update(out.per_sequence.sum() / tokens.clamp_min(1), weight=tokens)
            per_window += out.per_sequence.detach().float()
        counted = out.num_tokens > 0  # windows of N bases only carry no figure
        spread.update(per_window[counted] / draws / out.num_tokens[counted])

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, self.val_nelbo, self.val_spread, stream=1)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, batch_idx, self.test_nelbo, self.test_spread, stream=2)

    def _log_eval(self, prefix: str, metric: MeanMetric, spread: WindowSpread) -> None:
        nelbo, se = metric.compute(), spread.compute()
        metric.reset()
        spread.reset()
        self.log(f"{prefix}/nelbo", nelbo, prog_bar=True)
        self.log(f"{prefix}/bpb", nelbo / LN2, prog_bar=True)
        self.log(f"{prefix}/ppl", torch.exp(nelbo))
        self.log(f"{prefix}/bpb_se", se / LN2)  # over windows (each averaged over its noise draws)

    def on_validation_epoch_start(self):
        if self.ema is not None:
            self.ema.swap_in(self.objective)

    def on_validation_epoch_end(self):
        if self.ema is not None:
            self.ema.restore(self.objective)
        self._log_eval("val", self.val_nelbo, self.val_spread)

    def on_test_epoch_end(self):
        self._log_eval("test", self.test_nelbo, self.test_spread)

    # ----- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        o = self.config["optim"]
        fused = o.get("fused", "auto")
        fused = self.device.type == "cuda" if fused in ("auto", None) else bool(fused)  # one kernel per step
        opt = torch.optim.AdamW(
            self.objective.parameters(),
            lr=o["lr"],
            betas=tuple(o.get("betas", (0.9, 0.999))),
            eps=o.get("eps", 1e-8),
            weight_decay=o.get("weight_decay", 0.0),
            fused=fused or None,
        )
        warmup = int(o.get("warmup_steps", 0))
        decay = o.get("schedule", "constant")
        total = max(
            1, int(self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches)
        )
        factor = warmup_schedule(warmup, total, float(o.get("min_lr_ratio", 0.1)), decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----- checkpoints ----------------------------------------------------------------------
    def _rng_state(self) -> dict[str, torch.Tensor]:
        """This process's CPU RNG state and, on a GPU, its own device's: what dropout draws from."""
        state = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_device"] = torch.cuda.get_rng_state(self.device)
        return state

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        checkpoint["global_batch_size"] = self.global_batch_size()  # as run: devices "auto" resolved (model cards)
        own = self._rng_state()
        checkpoint["rng"] = dict(own)
        world = self._trainer.world_size if self._trainer else 1
        if world > 1:
            # every rank dumps the checkpoint (rank 0 writes it): gather each rank's dropout RNG into it
            gathered = {k: self.all_gather(v.to(self.device)).cpu() for k, v in own.items()}
            # own storage per state: set_rng_state reads a view's storage from its start, not from its offset
            checkpoint["rng"]["per_rank"] = [{k: v[r].clone() for k, v in gathered.items()} for r in range(world)]

    def load_ema_state(self, checkpoint: dict[str, Any]) -> None:
        """The EMA weights of a checkpoint, when it kept them: all that loading a model for use needs."""
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume (``Trainer.fit(ckpt_path=...)``): the EMA weights and the run's dropout RNG streams. Only resuming
        restores the global RNG; loading a model to use it (``checkpoints.load_module``) never touches it."""
        self.load_ema_state(checkpoint)
        rng = checkpoint.get("rng", {})
        per_rank = rng.get("per_rank")
        world = self._trainer.world_size if self._trainer else 1
        if per_rank and len(per_rank) == world:
            rng = per_rank[self.global_rank]  # the same device layout: each rank continues its own stream
        if "torch" in rng:
            torch.set_rng_state(rng["torch"].clone())
        if "cuda_device" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda_device"].clone(), self.device)

    def use_ema_weights(self) -> bool:
        """Copy the EMA weights into the model for evaluation or sampling; False when the run kept none."""
        if self.ema is None or self.ema.num_updates == 0:
            return False
        self.ema.copy_to(self.objective)
        return True
