"""``DiffusionLM``: the one public model class. Everything the CLIs do, from a notebook in a few lines.

    from mdlm_dna import DiffusionLM
    m = DiffusionLM.from_pretrained("ecoli")           # shipped name, run folder, .ckpt, exported folder, Hub id
    x = m.sample(num_samples=8, length=1024, steps=256, prefix="ACGT", seed=0)     # list[str]
    s = m.score(["ACGT...", ...])                      # per-sequence NELBO and bits/base (a DataFrame)
    e = m.embed(["ACGT...", ...], pooling="mean")      # [N, d_model]
    m.save_pretrained("export/ecoli-dit")              # config.json + model.safetensors + README.md model card
    m.push_to_hub("user/ecoli-dit")

The class wraps a :class:`~mdlm_dna.train.lit_module.DiffusionModule` (objective + backbone + tokenizer
+ the run's config); ``python -m mdlm_dna.{sample,evaluate,export,score,embed}`` are thin shells over it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from mdlm_dna.artifacts.checkpoints import (
    EXPORT_CONFIG,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    EXPORT_WEIGHTS,
    CheckpointError,
    LoadedFrom,
    load_module,
    portable_config,
)
from mdlm_dna.artifacts.export_folder import usual_permissions
from mdlm_dna.data.tokenizers import NucleotideTokenizer, TextTokenizer
from mdlm_dna.diffusion.prompts import parse_infill, parse_prefix, parse_text_infill, parse_text_prefix
from mdlm_dna.diffusion.samplers import build_sampler, is_time_conditioned, masked_init, progress_bar
from mdlm_dna.utils.errors import ConfigError, DataError
from mdlm_dna.utils.resources import package_version
from mdlm_dna.utils.validation import Int, NonNegativeFloat, NonNegativeInt, PositiveInt, checked

LN2 = math.log(2.0)
DTYPES = {"float64": torch.float64, "float32": torch.float32}
FORMAT_VERSION = EXPORT_FORMAT_VERSION


def _device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class SamplingResult:
    """Samples and what they cost."""

    ids: torch.Tensor  # [N, L] token ids
    sequences: list[str]
    seconds: float
    network_calls: int
    sequence_evals: int
    sequence_evals_saved: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def evals_per_sample(self) -> float:
        return self.sequence_evals / max(len(self.sequences), 1)


class DiffusionLM:
    """A trained diffusion (or AR baseline) language model over DNA or text, ready to use."""

    def __init__(self, module, loaded: LoadedFrom | None = None, device: str | torch.device | None = "auto"):
        self.module = module.eval()
        self.loaded = loaded
        self.device = _device(device)
        self.module.to(self.device)

    # ----- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike,
        use_ema: bool = True,
        device: str | torch.device | None = "auto",
        cache_dir: str | None = None,
    ) -> DiffusionLM:
        """Load a shipped model by name, a run folder, a ``.ckpt``, an exported folder, a published Caduceus or
        MDLM folder, or a Hugging Face Hub id. ``use_ema``: the EMA weights when the run kept them."""
        module, loaded = load_module(source, use_ema=use_ema, cache_dir=cache_dir)
        return cls(module, loaded, device)

    # ----- what it is ---------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The resolved run config the model was trained with."""
        return self.module.config

    @property
    def tokenizer(self) -> NucleotideTokenizer | TextTokenizer:
        return self.module.tokenizer

    @property
    def objective(self) -> torch.nn.Module:
        return self.module.objective

    @property
    def backbone(self) -> torch.nn.Module:
        return self.module.objective.backbone

    @property
    def is_text(self) -> bool:
        return isinstance(self.tokenizer, TextTokenizer)

    @property
    def unit(self) -> str:
        return "token" if self.is_text else "base"

    @property
    def seq_len(self) -> int:
        """The training window: the length the network saw."""
        return int(self.config["data"]["seq_len"])

    @property
    def objective_name(self) -> str:
        return str((self.config.get("objective") or {}).get("name", "mdlm"))

    @property
    def classes(self) -> list[str] | None:
        """Class names of a class-conditional model (in label order); None for an unconditional one."""
        names = (self.config.get("data") or {}).get("classes")
        return [str(c) for c in names] if names and self.config["model"].get("num_classes") else None

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.objective.parameters())

    def __repr__(self) -> str:
        src = f" from {self.loaded.source!r}" if self.loaded else ""
        return (f"DiffusionLM({self.config['model']['name']}, {self.objective_name}, "
                f"{self.num_parameters / 1e6:.2f} M parameters, window {self.seq_len}{src})")

    # ----- encoding -----------------------------------------------------------------------------
    def encode(self, seq: str) -> list[int]:
        """Text -> ids as the model saw them in training (text: framed by [BOS] ... [EOS])."""
        tok = self.tokenizer
        if self.is_text:
            return [tok.bos_id, *tok.encode(seq), tok.eos_id]
        return tok.encode(seq)

    def _encode_all(self, seqs: Sequence[str], what: str = "DiffusionLM") -> list[list[int]]:
        """Every sequence's ids; DNA: U and IUPAC codes converted with one warning that counts them, a bad
        character an error naming the sequence (its index) and position."""
        if isinstance(seqs, str):
            raise TypeError("pass a list of sequences, not one string")
        bad = [i for i, s in enumerate(seqs) if not isinstance(s, str)]
        if bad:
            raise ConfigError(f"{what}: sequence {bad[0]} is {seqs[bad[0]]!r}, not text ({len(bad)} such)")
        if self.is_text:
            out = [self.encode(s) for s in seqs]
        else:
            from mdlm_dna.data.tokenizers import TokenizerError, conversion_note

            out = []
            for i, s in enumerate(seqs):
                try:
                    out.append(self.tokenizer.encode(s, where=f"{what}: sequence {i}"))
                except TokenizerError as e:
                    raise DataError(str(e)) from None
            note = conversion_note(seqs)
            if note:
                warnings.warn(f"{what}: {note}", stacklevel=3)
        empty = [i for i, ids in enumerate(out) if not ids]
        if empty:
            raise ConfigError(f"sequence(s) {empty[:5]} are empty")
        return out

    # ----- sampling -----------------------------------------------------------------------------
    def _template(self, length: int | None, prefix: str | None, infill: str | None, n_is_mask: bool):
        if prefix is not None and infill is not None:
            raise ConfigError("give either prefix or infill, not both")
        if self.is_text:
            pre = parse_text_prefix(prefix, self.tokenizer) if prefix is not None else None
            template = parse_text_infill(infill, self.tokenizer) if infill is not None else None
        else:
            pre = parse_prefix(prefix) if prefix is not None else None
            template = parse_infill(infill, n_is_mask) if infill is not None else None
        if template is not None:
            if length is not None and int(length) != len(template):
                raise ConfigError(
                    f"infill sets the length ({len(template)} tokens); length={length} contradicts it (drop length)"
                )
            return len(template), pre, template
        length = self.seq_len if length is None else int(length)
        if length <= 0:
            raise ConfigError(f"length must be positive, got {length}")
        if pre is not None and len(pre) >= length:
            raise ConfigError(f"prefix ({len(pre)} tokens) must be shorter than length ({length})")
        return length, pre, None

    @checked
    def sample_ids(
        self,
        num_samples: PositiveInt = 8,
        length: PositiveInt | None = None,
        steps: PositiveInt = 256,
        sampler: Literal["auto", "ancestral", "cached", "sar"] = "auto",
        prefix: str | None = None,
        infill: str | None = None,
        seed: Int = 0,
        batch_size: PositiveInt = 16,
        dtype: Literal["float64", "float32"] = "float64",
        block_len: PositiveInt | None = None,
        overlap: NonNegativeInt | None = None,
        sar_inner: Literal["ancestral", "cached"] = "ancestral",
        allow_time_conditioned_cache: bool = False,
        infill_n_is_mask: bool = False,
        progress: bool | None = None,
        label: str | int | None = None,
        guidance_scale: NonNegativeFloat = 1.0,
        classifier: Any = None,
    ) -> SamplingResult:
        """Samples with their cost. ``sampler``: ancestral | cached | sar | auto (cached when the model ignores
        the time, which makes the cache exact; else ancestral; sar beyond the training window).

        ``label`` (a class-conditional model's class name) with ``guidance_scale`` gamma: classifier-free
        guidance (D-CFG), 0 unconditional, 1 conditional, > 1 sharper; no label: the unconditional model.
        With ``classifier`` (a noise-aware ``finetune`` run folder, or a loaded
        :class:`~mdlm_dna.classifier.TrainedClassifier`), ``label`` names a class of the classifier and the
        guidance is classifier guidance (D-CBG, exact per-position reweighting) of the unconditional model."""
        if self.objective_name == "ar":
            return self._sample_ar(num_samples, length, prefix, infill, seed, batch_size, label, classifier)
        if self.objective_name not in ("mdlm", "sedd", "d3pm"):
            raise ConfigError(f"sampling needs a masked diffusion or AR objective; this model is "
                              f"{self.objective_name!r}")
        if int(num_samples) <= 0 or int(batch_size) <= 0 or int(steps) <= 0:
            raise ConfigError("num_samples, batch_size and steps must be positive")
        if str(dtype) not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        length, pre, template = self._template(length, prefix, infill, infill_n_is_mask)
        model = self.objective
        guide = None
        if classifier is not None:
            if label is None:
                raise ConfigError("classifier guidance needs a label: the classifier's class to guide towards")
            from mdlm_dna.classifier import TrainedClassifier, load_classifier
            from mdlm_dna.diffusion.guidance import ClassifierGuidance

            clf = classifier if isinstance(classifier, TrainedClassifier) else load_classifier(classifier, self.device)
            if not clf.noise_aware:
                warnings.warn("the classifier was not trained on noised inputs (finetune noise_aware=true): "
                              "its p(y | x_t) on partly masked sequences is unreliable", stacklevel=2)
            try:
                index = clf.class_index(label)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            model = guide = ClassifierGuidance(model, clf, index, guidance_scale)
        elif label is not None:
            from mdlm_dna.data.labelled import label_index
            from mdlm_dna.diffusion.guidance import ClassifierFreeGuidance

            null = int(self.config["model"].get("num_classes") or 0)
            model = guide = ClassifierFreeGuidance(model, label_index(self.config, label), guidance_scale, null)
        elif float(guidance_scale) != 1.0:
            raise ConfigError(f"guidance_scale={guidance_scale} needs a label (the class to guide towards)")
        if sampler == "auto":
            sampler = "sar" if length > self.seq_len else ("ancestral" if is_time_conditioned(model) else "cached")
            sar_inner = "ancestral" if is_time_conditioned(model) else "cached"
        elif length > self.seq_len and sampler != "sar":
            warnings.warn(f"length {length} is beyond the training window ({self.seq_len}): consider sampler='sar'",
                          stacklevel=2)
        if sampler == "sar" and overlap is not None and overlap >= (block_len or self.seq_len):
            raise ConfigError(f"overlap={overlap} must be smaller than block_len={block_len or self.seq_len} "
                              "(the tokens of each block kept as the next block's prefix)")
        smp = build_sampler(str(sampler), int(steps), DTYPES[str(dtype)], block_len=int(block_len or self.seq_len),
                            overlap=overlap, allow_time_conditioned=allow_time_conditioned_cache, inner=sar_inner)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        n, bs = int(num_samples), int(batch_size)
        chunks, calls, evals, saved, seconds = [], 0, 0, 0, 0.0
        batches = range(0, n, bs)
        show = progress if progress is not None else None
        for b0 in progress_bar(batches, show and len(batches) > 1, desc="batches", unit="batch"):
            m = min(bs, n - b0)
            if template is not None:
                x0 = template.to(self.device)[None].expand(m, -1).clone()
            else:
                x0 = masked_init(m, length, model.mask_id, pre, device=self.device)
            res = smp(model, x0, gen, progress=show)
            chunks.append(res.ids.cpu())
            calls += res.network_calls
            evals += res.sequence_evals
            saved += res.sequence_evals_saved
            seconds += res.seconds
        ids = torch.cat(chunks)
        if guide is not None:  # rows the backbone ran: twice the batch when guiding
            evals = guide.network_rows
        settings = {"num_samples": n, "length": length, "steps": int(steps), "sampler": str(sampler),
                    "seed": int(seed), "dtype": str(dtype), "prefix": prefix, "infill": infill}
        if label is not None:
            settings.update(label=str(label), guidance_scale=float(guidance_scale))
        if classifier is not None:
            name = getattr(classifier, "spec", {}).get("task", classifier)  # a loaded classifier: its task
            settings.update(guidance="classifier", classifier=str(name), classifier_rows=guide.classifier_rows)
        elif label is not None:
            settings.update(guidance="classifier-free")
        if sampler == "sar":
            settings.update(sar_inner=sar_inner, block_len=int(block_len or self.seq_len), overlap=overlap)
        return SamplingResult(ids=ids, sequences=[self.tokenizer.decode(r) for r in ids], seconds=seconds,
                              network_calls=calls, sequence_evals=evals, sequence_evals_saved=saved,
                              settings=settings)

    def _sample_ar(self, num_samples: int, length: int | None, prefix: str | None, infill: str | None, seed: int,
                   batch_size: int, label: Any, classifier: Any) -> SamplingResult:
        """The AR baseline's samples: left to right, one network call per position (``steps`` and ``sampler``
        do not apply); a prefix is kept, in-filling and guidance need a diffusion model."""
        if infill is not None or label is not None or classifier is not None:
            raise ConfigError("an AR model samples left to right: infill, label and classifier need a diffusion model")
        if int(num_samples) <= 0 or int(batch_size) <= 0:
            raise ConfigError("num_samples and batch_size must be positive")
        length, pre, _ = self._template(length, prefix, None, False)
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        start, chunks, n = time.perf_counter(), [], int(num_samples)
        pre_ids = None if pre is None else torch.as_tensor(pre, dtype=torch.long)
        for b0 in range(0, n, int(batch_size)):
            chunks.append(self.objective.sample(min(int(batch_size), n - b0), length, gen, pre_ids).cpu())
        ids = torch.cat(chunks)
        done = length - (0 if pre is None else len(pre))
        return SamplingResult(ids=ids, sequences=[self.tokenizer.decode(r) for r in ids],
                              seconds=time.perf_counter() - start, network_calls=done * len(chunks),
                              sequence_evals=done * n, sequence_evals_saved=0,
                              settings={"num_samples": n, "length": length, "sampler": "ar", "seed": int(seed),
                                        "prefix": prefix})

    def sample(self, num_samples: int = 8, length: int | None = None, steps: int = 256, **kwargs: Any) -> list[str]:
        """Generated sequences (DNA strings or decoded text); keyword arguments as :meth:`sample_ids`."""
        return self.sample_ids(num_samples, length, steps, **kwargs).sequences

    # ----- scoring ------------------------------------------------------------------------------
    @torch.no_grad()
    @checked
    def score(
        self,
        seqs: Sequence[str],
        t_samples: PositiveInt = 16,
        batch_size: PositiveInt = 64,
        seed: Int = 0,
        progress: bool | None = None,
        count_n: bool | None = None,
        label: str | int | None = None,
        common_noise: bool = True,
        bound: Literal["reference", "full"] = "reference",
        strands: Literal["forward", "both"] = "forward",
        context: NonNegativeInt = 0,
    ) -> pd.DataFrame:
        """Per-sequence NELBO (an upper bound on -log p; exact NLL for AR) and bits per base (text: token).

        Sequences longer than the training window are scored window by window (non-overlapping); each window
        averages ``t_samples`` noise draws. Common random numbers: a window's noise depends only on ``seed``, its
        place in its sequence and the draw (times low-discrepancy across the draws), so a sequence scores the
        same wherever it stands in the input and whatever ``batch_size``, and sequences of equal length are
        scored under the same noise (differences of scores have low variance). DNA: ``tokens`` and bits/base
        are over the A/C/G/T bases, N bases being given context, unless ``count_n`` (default: the run's
        ``data.count_n``). ``label``: -log p(x | class) of a class-conditional model.

        ``common_noise=False`` keys each sequence's noise also by its index in ``seqs``: use it when the scores are
        averaged over many sequences (a test-set figure). Under common noise every window of a length sits at the
        same ``t_samples`` noise levels, so such a mean keeps the Monte-Carlo error of ``t_samples`` draws (on the
        E. coli test split, 1,813 windows x 16 shared draws read 0.02 bits/base below the independent estimate).

        ``bound="full"``: the whole NELBO of the sampler (:meth:`MDLM.full_bound`), not the reference code's
        estimate, which leaves out 0.0019 bits/base on E. coli: use it beside exact likelihoods (AR, Markov chains,
        compressors). AR scores are exact either way.

        ``strands="both"`` (MDLM, DNA): the denoiser averaged with its reading of the reverse complement
        (post-hoc conjoining, :mod:`mdlm_dna.diffusion.strands`): the bound of a strand-symmetric model made from
        this one, at twice the cost.

        ``context``: the first ``context`` bases (tokens) of every sequence are conditioned on, not scored: the
        NELBO bounds -log p(rest | first ``context``), over the rest's bases (they stay unmasked in every draw, as
        in conditional generation). Scoring a long sequence as overlapping pieces, each given the bases before it,
        adds up to a bound on the whole in which every base sees ``context`` bases to its left (the protocol of a
        compressor reading in order). MDLM-family objectives; must leave a base to score in each sequence.
        """
        from mdlm_dna.evaluation.common_noise import batch_noise

        encoded = self._encode_all(seqs, "score()")
        short = [i for i, e in enumerate(encoded) if len(e) <= context]
        if short:
            raise ConfigError(f"score(context={context}): sequence {short[0]} has {len(encoded[short[0]])} tokens, "
                              f"none left to score after the context ({len(short)} such sequence(s))")
        if context and self.objective_name == "ar":
            raise ConfigError("score(context=...) is for the masked objectives; an AR model's score of a suffix "
                              "given its prefix is the difference of two scores")
        L = self.seq_len
        draws = 1 if self.objective_name == "ar" else int(t_samples)
        labels = None
        if label is not None:
            from mdlm_dna.analysis.probs import label_tensor

            labels = label_tensor(self, label)
        pieces: dict[int, list[tuple[int, int, list[int]]]] = {}  # window length -> (sequence, window index, ids)
        for i, ids in enumerate(encoded):
            for a in range(0, len(ids), L):
                chunk = ids[a : a + L]
                pieces.setdefault(len(chunk), []).append((i, a // L, chunk))
        nats = np.zeros(len(encoded))
        tokens = np.zeros(len(encoded), dtype=np.int64)
        jobs = [(n, rows[b : b + batch_size]) for n, rows in sorted(pieces.items())
                for b in range(0, len(rows), batch_size)]
        with self._bound(bound), self._strands(strands):
            for n, rows in progress_bar(jobs, progress, desc="scoring", unit="batch"):
                x0 = torch.tensor([r for _, _, r in rows], dtype=torch.long, device=self.device)
                total = torch.zeros(len(rows), dtype=torch.float64, device=self.device)
                counted = self.module.counted_positions(x0, count_n)
                if context:  # window w of a sequence starts at w * L: its positions before `context` are given
                    start = torch.tensor([w * L for _, w, _ in rows], device=self.device)
                    scored = torch.arange(n, device=self.device)[None, :] + start[:, None] >= context
                    counted = scored if counted is None else scored & counted  # (score's windows have no padding)
                extra = {} if labels is None else {"labels": torch.full((len(rows),), labels, device=self.device)}
                keys = [(w, None if common_noise else i) for i, w, _ in rows]
                noise = batch_noise(seed, keys, n, draws, self.device)
                for k in range(draws):
                    out = self.objective.nelbo(x0, generator=noise[k], counted=counted, **extra)
                    total += out.per_sequence.double()
                count = out.num_tokens.cpu().numpy()
                for (i, _, _), v, c in zip(rows, (total / draws).cpu().numpy(), count):
                    nats[i] += v
                    tokens[i] += int(c)
        nothing = tokens == 0  # e.g. all N with count_n off: no score, not a perfect one
        if nothing.any():
            first = int(np.flatnonzero(nothing)[0])
            warnings.warn(f"score(): {int(nothing.sum())} sequence(s) have no base to score (all N; count_n=True "
                          f"counts N), e.g. sequence {first}: NaN", stacklevel=3)
            nats = np.where(nothing, np.nan, nats)
        per_token = nats / np.maximum(tokens, 1)
        return pd.DataFrame({
            "length": [len(s) for s in seqs],
            "tokens": tokens,
            "nelbo_nats": nats,
            "nats_per_token": per_token,
            f"bits_per_{self.unit}": per_token / LN2,
        })

    # ----- embeddings ---------------------------------------------------------------------------
    @torch.no_grad()
    @checked
    def embed(
        self,
        seqs: Sequence[str],
        pooling: str | None = "mean",
        batch_size: PositiveInt = 64,
        progress: bool | None = None,
        layer: Int | None = None,
        rc: Literal["mean"] | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Backbone features of clean sequences: [N, d_model] pooled (mean | first | last | center:K, the mean of
        the K central positions), or with ``pooling=None`` a list of [L_i, d_model] arrays.

        ``layer``: None the final normed features; k the residual stream after block k (0 = token embeddings,
        -1 = last block). ``rc="mean"``: averaged with the reverse complement's features, read back in the
        sequence's frame (Caduceus-PS/-PH are RC-invariant already). Sequences longer than the training window
        are embedded in windows of that length overlapping by half (each position from the window where it is most
        central). Equal lengths are batched together, so no sequence's features depend on padding or batch mates.
        U and IUPAC codes are read as T and N, with a warning."""
        from mdlm_dna.analysis.embedding import parse_pooling, pool, position_features, tiles

        kind, k = parse_pooling(pooling)
        encoded = self._encode_all(seqs, "embed()")
        if not encoded:
            raise ConfigError("embed(): no sequences given")
        short = [i for i, e in enumerate(encoded) if kind == "center" and len(e) < k]
        if short:  # before any work
            raise ConfigError(f"pooling=center:{k}: sequence {short[0]} has only {len(encoded[short[0]])} positions "
                              f"({len(short)} sequence(s) shorter than {k}); use a smaller K or mean")
        complement = None
        if rc is not None and self.tokenizer.complement_ids is not None:
            complement = torch.tensor(self.tokenizer.complement_ids, device=self.device)
        pieces: dict[int, list[tuple[int, int, int, int, int]]] = {}  # window length -> (sequence, a, b, from, to)
        for i, ids in enumerate(encoded):
            for a, b, lo, hi in tiles(len(ids), self.seq_len):
                pieces.setdefault(b - a, []).append((i, a, b, lo, hi))
        full: list[np.ndarray | None] = [None] * len(encoded)
        jobs = [rows[b : b + batch_size] for _, rows in sorted(pieces.items()) for b in range(0, len(rows), batch_size)]
        for rows in progress_bar(jobs, progress, desc="embedding", unit="batch"):
            x = torch.tensor([encoded[i][a:b] for i, a, b, _, _ in rows], dtype=torch.long, device=self.device)
            h = position_features(self.backbone, x, layer, rc, complement).cpu().numpy()
            for (i, a, _, lo, hi), v in zip(rows, h):
                if full[i] is None:
                    full[i] = np.zeros((len(encoded[i]), v.shape[-1]), dtype=np.float32)
                full[i][lo:hi] = v[lo - a : hi - a]
        if pooling is None or parse_pooling(pooling)[0] is None:
            return full
        return np.stack([pool(f, pooling, where=f"sequence {i}") for i, f in enumerate(full)]).astype(np.float32)

    # ----- per-position analysis (mdlm_dna.analysis) ---------------------------------------------
    @checked
    def probs(
        self,
        seqs: Sequence[str],
        strands: Literal["forward", "reverse", "both"] = "forward",
        batch_size: PositiveInt = 128,
        progress: bool | None = None,
        label: str | int | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """p(base at i | every other base), each position masked alone in the window centred on it: [N, L, 4]
        float64 over A, C, G, T when all lengths are equal, else a list of [L_i, 4]; N bases give NaN rows.
        See :mod:`mdlm_dna.analysis.probs` (AR: exact, from 4 window likelihoods per position)."""
        from mdlm_dna.analysis.probs import probs

        return probs(self, seqs, strands=strands, batch_size=batch_size, progress=progress, label=label)

    @checked
    def ism(self, seq: str, strands: Literal["forward", "reverse", "both"] = "forward", label: str | int | None = None,
            batch_size: PositiveInt = 128, progress: bool | None = None) -> np.ndarray:
        """[L, 4] in-silico mutagenesis: log p(b at i | rest) - log p(reference | rest), 0 at the reference base.
        See :mod:`mdlm_dna.analysis.ism`."""
        from mdlm_dna.analysis.ism import ism

        return ism(self, seq, strands=strands, label=label, batch_size=batch_size, progress=progress)

    @checked
    def dependency_map(self, seq: str, strands: Literal["forward", "reverse", "both"] = "forward",
                       label: str | int | None = None, batch_size: PositiveInt = 128,
                       progress: bool | None = None) -> np.ndarray:
        """[L, L]: the largest change of the log-odds of the prediction at i (i masked) that a substitution at j
        causes. See :mod:`mdlm_dna.analysis.dependency`."""
        from mdlm_dna.analysis.dependency import dependency_map

        return dependency_map(self, seq, strands=strands, label=label, batch_size=batch_size, progress=progress)

    @checked
    def variant_effects(self, variants: str | os.PathLike | pd.DataFrame, fasta: str | os.PathLike,
                        strands: Literal["forward", "reverse", "both"] = "forward",
                        on_mismatch: Literal["error", "drop"] = "error", t_samples: PositiveInt = 16, seed: Int = 0,
                        label: str | int | None = None, batch_size: PositiveInt = 128,
                        progress: bool | None = None) -> pd.DataFrame:
        """Zero-shot scores of a VCF (plain or bgzipped) or a table (chrom, pos, ref, alt) against ``fasta``: one
        row per ALT allele with ``llr`` = log p(alt) / p(ref) (SNVs: the site masked alone; others: the window's
        NELBO difference) and a ``status``. See :mod:`mdlm_dna.analysis.variants`."""
        from mdlm_dna.analysis.variants import variant_effects

        return variant_effects(self, variants, fasta, strands=strands, on_mismatch=on_mismatch, t_samples=t_samples,
                               seed=seed, label=label, batch_size=batch_size, progress=progress)

    # ----- evaluation ---------------------------------------------------------------------------
    @checked
    def evaluate(
        self,
        split: Literal["test", "validation"] = "test",
        t_samples: PositiveInt = 16,
        max_windows: PositiveInt | None = None,
        batch_size: PositiveInt | None = None,
        genome_path: str | os.PathLike | None = None,
        seed: Int = 0,
        cache_dir: str | os.PathLike | None = None,
        trainer: dict[str, Any] | None = None,
        count_n: bool | None = None,
        bound: Literal["reference", "full"] = "reference",
        strands: Literal["forward", "both"] = "forward",
    ) -> dict[str, Any]:
        """NELBO (nats/token), bits per base (token) and perplexity on the run's held-out ``split``.

        DNA: per A/C/G/T base (N bases are given context) unless ``count_n`` (default: the run's ``data.count_n``).
        ``bound``: as in :meth:`score` ("full": the sampler's whole NELBO, comparable with exact likelihoods);
        ``strands``: as in :meth:`score` ("both": the two strands' predictions averaged).
        """
        import copy

        import lightning.pytorch as pl

        from mdlm_dna.data import build_datamodule

        if split not in ("test", "validation"):
            raise ConfigError(f"split must be 'test' or 'validation', got {split!r}")
        module = self.module
        config = copy.deepcopy(module.config)
        config.setdefault("eval", {})["t_samples"] = int(t_samples)
        if batch_size:
            config["data"]["eval_batch_size"] = int(batch_size)
        config["data"]["val_max_windows" if split == "validation" else "test_max_windows"] = max_windows
        if genome_path:
            config["genome"]["path"] = str(genome_path)
        dm = build_datamodule(config, cache_dir=cache_dir, tokenizer=self.tokenizer)
        settings = {"accelerator": "gpu" if self.device.type == "cuda" else "cpu", "devices": 1,
                    "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
                    **(trainer or {})}
        runner = pl.Trainer(**settings)
        # the module reads these during the run; the run's own values come back after (an export records them)
        run_count_n, run_seed, run_eval = module.count_n, module.seed, copy.deepcopy(module.config.get("eval"))
        had_eval = "eval" in module.config
        module.count_n = run_count_n if count_n is None else bool(count_n)
        module.config["eval"], module.seed = config["eval"], int(seed)
        try:
            with self._bound(bound), self._strands(strands):
                if split == "test":
                    raw = runner.test(module, datamodule=dm, verbose=False)[0]
                    prefix, loader = "test", runner.test_dataloaders
                else:
                    raw = runner.validate(module, datamodule=dm, verbose=False)[0]
                    prefix, loader = "val", runner.val_dataloaders
        finally:
            module.count_n, module.seed = run_count_n, run_seed
            if not had_eval:
                module.config.pop("eval", None)
            else:
                module.config["eval"] = run_eval
        module.to(self.device).eval()
        return {
            "split": split,
            "nelbo_nats_per_token": float(raw[f"{prefix}/nelbo"]),
            f"bits_per_{self.unit}": float(raw[f"{prefix}/bpb"]),
            # standard error over the split's windows (each averaged over its t_samples noise draws)
            f"bits_per_{self.unit}_se": float(raw.get(f"{prefix}/bpb_se", float("nan"))),
            "perplexity": float(raw[f"{prefix}/ppl"]),
            "ema": bool(self.loaded.ema) if self.loaded else None,
            "windows": len(loader.dataset),
            "seq_len": int(config["data"]["seq_len"]),
            "t_samples": int(t_samples),
            "count_n": bool(run_count_n if count_n is None else count_n),  # DNA: False = bits per A/C/G/T base
            "bound": bound,
            "strands": strands,
        }

    def _strands(self, strands: str) -> AbstractContextManager:
        """"forward": the model as trained; "both": its denoiser averaged over the two strands (MDLM on DNA)."""
        if strands == "forward":
            return nullcontext()
        from mdlm_dna.diffusion.strands import both_strands

        return both_strands(self.objective, self.tokenizer.complement_ids)

    def _bound(self, bound: str) -> AbstractContextManager:
        """The NELBO estimate to score with: "reference" (what training minimises, as the MDLM code reports it)
        or "full" (the sampler's whole bound); AR likelihoods are exact under both. ``bound`` is one of the two
        (``@checked`` refuses anything else at the public methods)."""
        if bound == "reference" or self.objective_name == "ar":
            return nullcontext()
        full = getattr(self.objective, "full_bound", None)
        if full is None:
            raise ConfigError(f"bound='full' is defined for MDLM and D3PM, not {self.objective_name!r}")
        return full()

    # ----- saving and sharing -------------------------------------------------------------------
    def training_record(self) -> dict[str, Any]:
        """Steps, tokens seen and the training command, from the checkpoint (or the export) it came from."""
        if self.loaded and self.loaded.kind in ("export", "shipped"):
            return dict(self.loaded.metadata.get("training", {}))
        from mdlm_dna.data.base import configured_global_batch_size

        step = self.loaded.global_step if self.loaded else None
        # samples per step as the checkpoint recorded them, else as the config says (all devices, accumulation)
        batch = (self.loaded.metadata.get("global_batch_size") if self.loaded else None) \
            or configured_global_batch_size(self.config)
        return {
            "global_step": step,
            "tokens_seen": None if step is None or batch is None else int(step) * batch
            * int(self.config["data"]["seq_len"]),
            "global_batch_size": batch,
            "command": self.config.get("command"),
            "source": self.loaded.source if self.loaded else None,
        }

    def save_pretrained(self, out_dir: str | os.PathLike, metrics: dict[str, Any] | None = None,
                        overwrite: bool = True, transformers: bool | None = None, notes: str | None = None) -> Path:
        """Write config.json, model.safetensors (the weights in use: EMA by default), a README.md model card and,
        for the backbones it covers, transformers remote code with the tokenizer's files (``AutoModelForMaskedLM.
        from_pretrained(DIR, trust_remote_code=True)`` loads it without this package).

        ``transformers``: None writes the remote code when the model is covered (else warns and writes the
        package's folder alone), True refuses a model it does not cover, False never writes it.
        ``out_dir`` must be new, empty or an earlier export of this package (``overwrite``: replace the files it
        wrote; other files, e.g. ``.git``, stay); ``.``, a symlink, a run folder and any other non-empty folder
        are refused. Written to a temporary folder first and moved into place: never half-written.
        ``notes``: Markdown for the card's "Notes" section (provenance, results measured elsewhere); kept in
        config.json, so a re-export of the folder keeps it unless new notes are given."""
        from safetensors.torch import save_file

        from mdlm_dna.artifacts.export_folder import check_export_folder, install_files
        from mdlm_dna.artifacts.hf_export import unsupported, write_remote_code
        from mdlm_dna.artifacts.model_card import model_card

        out = Path(out_dir).expanduser()
        check_export_folder(out, overwrite=overwrite, protected=self._run_folders())
        why_not = unsupported(self)
        if why_not and transformers:
            raise ConfigError(f"transformers=true: {why_not}; export with transformers=false for the mdlm-dna "
                              "folder alone")
        if why_not and transformers is None:
            warnings.warn(f"{out}: written without transformers remote code: {why_not}", stacklevel=2)
        out.parent.mkdir(parents=True, exist_ok=True)
        old_metrics = dict(self.loaded.metadata.get("metrics", {})) if self.loaded else {}
        if notes is None and self.loaded:
            notes = self.loaded.metadata.get("notes")
        # a re-export keeps the folder's own record of its training run (loading it turned EMA off in memory)
        exported = self.loaded.metadata if self.loaded and self.loaded.kind in ("export", "shipped") else {}
        meta = {
            "format": EXPORT_FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": package_version(),
            "weights": "ema" if (self.loaded and self.loaded.ema) else "raw",
            "num_parameters": self.num_parameters,
            "vocab": None if self.is_text else list(self.tokenizer.vocab),
            "training": self.training_record(),
            "metrics": {**old_metrics, **(metrics or {})},
            "run_config": exported.get("run_config") or portable_config(self.config),
            **({"notes": str(notes)} if notes else {}),
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            state = {k: v.detach().to("cpu").clone().contiguous()  # tied weights (BiMamba): a copy each
                     for k, v in self.objective.state_dict().items()}
            save_file(state, str(tmp / EXPORT_WEIGHTS), metadata={"format": "pt"})
            if self.is_text:
                self.tokenizer.hf.save_pretrained(str(tmp / "tokenizer"))
            if not why_not and transformers is not False:
                meta.update(write_remote_code(self, tmp))
            (tmp / EXPORT_CONFIG).write_text(json.dumps(meta, indent=1))
            (tmp / "README.md").write_text(model_card(self, meta))
            usual_permissions(tmp)  # mkdtemp makes the folder private; an export is meant to be shared
            install_files(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    def _run_folders(self) -> tuple[Path, ...]:
        """The folders the model was loaded from when they are run folders (an export must not write there)."""
        if not self.loaded or self.loaded.kind not in ("run", "ckpt"):
            return ()
        path = Path(self.loaded.path)
        return tuple(p for p in (path.parent, path.parent.parent) if p.name != "")

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload mdlm-dna model") -> str:
        """Upload the exported folder to the Hugging Face Hub in one commit; offline, a clear error and no upload."""
        from mdlm_dna.data.text import hub_reachable

        if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable():
            raise CheckpointError(
                f"push_to_hub({repo_id!r}): the Hugging Face Hub cannot be reached (offline); nothing was uploaded. "
                f"Save with save_pretrained(DIR) and later run `huggingface-cli upload {repo_id} DIR`"
            )
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
        return str(getattr(info, "commit_url", info))


@checked
def reference_windows(model_or_config: DiffusionLM | dict[str, Any], length: PositiveInt,
                      max_windows: PositiveInt | None = None,
                      genome_path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                      label: str | None = None, split: str = "test") -> np.ndarray:
    """Held-out real DNA to compare samples with: the run's test-split windows of ``length`` bases, [N, length]
    (of class ``label`` for a model trained on labelled data); ``split`` "validation" or "train" for others."""
    if split not in ("train", "validation", "test"):
        raise ConfigError(f"split must be train, validation or test, got {split!r}")
    from mdlm_dna.data.datamodule import load_split_genome
    from mdlm_dna.data.windows import TiledWindows

    config = model_or_config.config if isinstance(model_or_config, DiffusionLM) else model_or_config
    if label is not None and not genome_path:
        from mdlm_dna.data.labelled import reference_windows as class_windows

        return class_windows(config, label, length, max_windows, cache_dir, split=split)
    g = dict(config["genome"])
    if genome_path:
        g["path"] = str(genome_path)
    genome, splits = load_split_genome(g, cache_dir)
    ds = TiledWindows(genome, splits[split], seq_len=length, max_windows=max_windows,
                      max_n_fraction=float(config.get("data", {}).get("max_n_fraction", 0.5)))
    if len(ds) == 0:
        return np.zeros((0, length), dtype=np.int64)
    return np.stack([ds[i]["input_ids"].numpy() for i in range(len(ds))])

