"""A fine-tuned classifier applied to new sequences: ``TrainedClassifier.predict`` and ``python -m mdlm_dna.predict``.

    clf = load_classifier("runs/finetune/promoters")
    predict_table(clf, ["ACGT...", ...], names=["a", ...])     # name, label, p_<class>... in input order

Sequences are encoded with the nucleotide tokenizer (U as T, IUPAC codes as N, with a warning), batched in input
order and padded on the right exactly as ``finetune`` batches its test split, so the run's test metrics are
reproduced exactly by re-scoring that split.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from mdlm_dna.errors import ConfigError, DataError
from mdlm_dna.tokenizers import NucleotideTokenizer, TokenizerError

if TYPE_CHECKING:
    from mdlm_dna.train.classifier import TrainedClassifier

DEFAULT_BATCH = 256  # finetune's data.eval_batch_size default


def run_batch_size(source: Path | None) -> int:
    """The fine-tune's ``data.eval_batch_size`` from the config.yaml finetune wrote (in the run folder or above)."""
    from omegaconf import OmegaConf

    for folder in ([source, *list(source.parents)[:2]] if source else []):
        cfg = folder / "config.yaml"
        if cfg.is_file():
            try:
                return int(OmegaConf.load(cfg).data.eval_batch_size)
            except Exception:  # not finetune's config: fall back to the default
                break
    return DEFAULT_BATCH


def encode(seqs: Sequence[str], names: Sequence[str], max_len: int, truncate: bool) -> list[list[int]]:
    """Token ids per sequence; unknown characters and (unless ``truncate``) too long sequences are DataErrors."""
    tok = NucleotideTokenizer()
    out, converted = [], 0
    for name, s in zip(names, seqs):
        if not isinstance(s, str) or not s:
            raise DataError(f"sequence {name!r}: empty or not text")
        try:
            ids = tok.encode(s, where=f"sequence {name!r}")
        except TokenizerError as e:
            raise DataError(str(e)) from None
        converted += sum(s.upper().count(c) for c in "URYSWKMBDHV")
        if len(ids) > max_len:
            if not truncate:
                raise DataError(f"sequence {name!r} has {len(ids):,} bases; this classifier accepts at most "
                                f"{max_len:,} (its fine-tune's length); pass truncate=true to keep the first "
                                f"{max_len:,} bases, as finetune does with data.max_length")
            ids = ids[:max_len]
        out.append(ids)
    if converted:
        warnings.warn(f"predict: {converted:,} U or IUPAC ambiguity code(s) read as T or N", stacklevel=3)
    return out


@torch.no_grad()
def predict_table(clf: TrainedClassifier, seqs: Sequence[str], names: Sequence[str] | None = None,
                  batch_size: int | None = None, truncate: bool = False) -> pd.DataFrame:
    """See :meth:`TrainedClassifier.predict`."""
    if isinstance(seqs, str):
        raise ConfigError("predict(): pass a list of sequences, not one string")
    seqs = list(seqs)
    if not seqs:
        raise ConfigError("predict(): no sequences given")
    names = [f"seq_{i}" for i in range(len(seqs))] if names is None else [str(n) for n in names]
    if len(names) != len(seqs):
        raise ConfigError(f"predict(): {len(names)} names for {len(seqs)} sequences")
    bs = int(batch_size) if batch_size else run_batch_size(clf.source)
    encoded = encode(seqs, names, clf.max_length, truncate)
    pad = NucleotideTokenizer.pad_id
    device = next(clf.parameters()).device
    clf.eval()
    logits = []
    for b in range(0, len(encoded), bs):
        rows = encoded[b : b + bs]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        logits.append(clf.model(ids.to(device), lengths.to(device)).float().cpu())
    z = torch.cat(logits)
    probs = torch.softmax(z.double(), dim=-1).numpy()
    predicted = z.argmax(dim=-1).numpy()  # as the fine-tune's metrics read the logits
    table = pd.DataFrame({"name": names, "label": [clf.classes[i] for i in predicted]})
    for j, c in enumerate(clf.classes):
        table[f"p_{c}"] = probs[:, j]
    return table


def label_mapping(run: Path) -> dict[str, int] | None:
    """finetune's label_mapping.json (class name -> label), when the run folder has one."""
    path = run / "label_mapping.json"
    return json.loads(path.read_text()) if path.is_file() else None


def accuracy_mcc(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> tuple[float, float]:
    """Accuracy and MCC computed as finetune's torchmetrics compute them."""
    from torchmetrics.classification import MulticlassAccuracy, MulticlassMatthewsCorrCoef

    t, p = (torch.tensor(np.array(a, dtype=np.int64)) for a in (true, predicted))
    acc = MulticlassAccuracy(num_classes, average="micro")(p, t)
    mcc = MulticlassMatthewsCorrCoef(num_classes)(p, t)
    return float(acc), float(mcc)
