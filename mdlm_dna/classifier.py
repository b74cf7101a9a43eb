"""Sequence classifiers: how one is built (a CNN or a backbone with a head, from scratch or from a pretrained
model), saved with what rebuilds it, loaded again, and applied to new sequences (``TrainedClassifier.predict``,
``python -m mdlm_dna.predict``; in memory as a guidance classifier with :func:`train_classifier`).

    clf = load_classifier("runs/finetune/promoters")
    clf.predict(["ACGT...", ...], names=["a", ...])     # name, label, p_<class>... in input order

Sequences are encoded with the nucleotide tokenizer (U as T, IUPAC codes as N, with a warning), batched in input
order and padded on the right exactly as ``finetune`` batches its test split, so the run's test metrics are
reproduced exactly by re-scoring that split.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch import nn

from mdlm_dna.artifacts.checkpoints import load_module
from mdlm_dna.artifacts.hf_export.classifier_export import export_classifier
from mdlm_dna.artifacts.init_from import conv_keys, map_backbone_state
from mdlm_dna.data.tokenizers import NucleotideTokenizer, TokenizerError
from mdlm_dna.models import build_backbone
from mdlm_dna.models.cnn_baseline import build_cnn
from mdlm_dna.models.heads import Conjoin, SequenceClassifier
from mdlm_dna.train.classifier import ClassifierModule
from mdlm_dna.utils.errors import CheckpointError, ConfigError, DataError
from mdlm_dna.utils.validation import PositiveInt, checked

SPEC_FILE, WEIGHTS_FILE = "classifier.json", "classifier.safetensors"

def build_classifier(cfg: Mapping[str, Any], num_classes: int, max_length: int) -> tuple[nn.Module, str, dict]:
    """The classifier network, a short description (for the results table) and its spec: what
    :func:`load_classifier` needs to make the same network again without the pretrained source.

    ``max_length``: the longest input it is built for (finetune's ``data.max_length``, else the task's longest
    sequence). The CNN baseline pads or cuts every input to exactly that length; a backbone classifier reads
    shorter inputs whole and only refuses longer ones."""
    tok = NucleotideTokenizer()
    head = dict(cfg["head"])
    spec: dict[str, Any] = {"classifier": cfg["classifier"], "head": head, "num_classes": int(num_classes),
                            "max_length": int(max_length)}
    if cfg["classifier"] == "cnn":
        if head.get("strands", "forward") != "forward":
            raise ConfigError("head.strands=both reads a backbone's states on both strands; the CNN baseline has "
                              "none (use head.conjoin_test=true to average its logits over both strands)")
        spec["cnn"] = dict(cfg.get("cnn") or {})
        model: nn.Module = build_cnn(num_classes, max_length, pad_id=tok.pad_id, **spec["cnn"])
        desc = "cnn_baseline"
    elif cfg["classifier"] == "backbone":
        source = cfg.get("init") or cfg.get("ckpt")
        if source:
            module, loaded = load_module(source, use_ema=bool(cfg.get("use_ema", True)))
            if not isinstance(module.tokenizer, NucleotideTokenizer):
                raise CheckpointError(
                    f"{source}: a text model ({module.tokenizer.name} tokenizer); fine-tuning needs a DNA model"
                )
            backbone = module.objective.backbone.train()  # load_module leaves it in eval mode
            spec["model"] = dict(module.config["model"])
            if spec["model"].get("markov_order"):  # a classifier reads the network's states, never the chain
                backbone, spec["model"]["markov_order"] = backbone.backbone, 0
            weights = "EMA" if loaded.ema else "raw"
            desc = f"{module.config['model']['name']} pretrained ({loaded.kind}, {weights} weights)"
            if cfg.get("bidirectional"):
                backbone = bidirectional_copy(backbone, spec["model"], tok, source)
                spec["model"]["causal"] = False
                desc += ", causal mask dropped"
        else:
            spec["model"] = dict(cfg["model"])
            backbone = build_backbone(spec["model"], tok.vocab_size, tok.complement_ids)
            desc = f"{cfg['model']['name']} from scratch"
        model = SequenceClassifier(
            backbone,
            num_classes,
            pooling=head["pooling"],
            dropout=float(head.get("dropout", 0.0)),
            freeze_backbone=bool(head.get("freeze_backbone", False)),
            pad_mode=head.get("pad_mode", "pad"),
            strands=head.get("strands", "forward"),
            complement_ids=tok.complement_ids,
            pad_id=tok.pad_id,
            position_bias=bool(head.get("position_bias", False)),
            max_length=int(max_length),
        )
        if head.get("freeze_backbone"):
            desc += ", frozen"
        if head.get("strands", "forward") == "both":
            desc += ", both strands read"
        if head.get("position_bias"):
            desc += ", position-scored pooling"
    else:
        raise ValueError(f"classifier must be 'backbone' or 'cnn', got {cfg['classifier']!r}")
    if head.get("conjoin_train") or head.get("conjoin_test"):
        model = Conjoin(
            model,
            tok.complement_ids,
            tok.pad_id,
            train=bool(head.get("conjoin_train")),
            test=bool(head.get("conjoin_test")),
        )
        desc += ", conjoin"
    return model, desc, spec


def bidirectional_copy(backbone: nn.Module, model_cfg: Mapping[str, Any], tok: NucleotideTokenizer,
                       source: str) -> nn.Module:
    """A causal (AR-pretrained) backbone as a bidirectional one: the same weights, no attention mask, its local
    convolution's taps re-centred (``init_from``'s mapping from an AR source to an MDLM). A causal model reads
    each position with its left context only; a classifier may use both sides."""
    if not model_cfg.get("causal"):
        raise ConfigError(f"bidirectional=true: init={source} is not causal (an AR model); its backbone already "
                          "reads both sides")
    target = build_backbone({**model_cfg, "causal": False}, tok.vocab_size, tok.complement_ids)
    target.load_state_dict(map_backbone_state(backbone.state_dict(), source_causal=True, target_causal=False,
                                               conv_keys=conv_keys(target)))
    return target.train()


def with_max_length(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A spec with its length under ``max_length``: classifiers saved before 0.3 wrote it as ``input_len``, a name
    that said "the CNN's fixed input length" for a key that backbone classifiers use as an upper bound.

    >>> with_max_length({"classifier": "cnn", "input_len": 70})
    {'classifier': 'cnn', 'max_length': 70}
    """
    spec = dict(spec)
    if "max_length" not in spec and "input_len" in spec:
        spec["max_length"] = spec.pop("input_len")
    return spec


def save_classifier(run_dir: str | Path, model: nn.Module, spec: Mapping[str, Any]) -> None:
    """classifier.json (spec, class names) + classifier.safetensors, each written whole and renamed."""
    from safetensors.torch import save_model

    run_dir = Path(run_dir)
    tmp = run_dir / (WEIGHTS_FILE + ".tmp")
    save_model(model, str(tmp))  # tied weights (Caduceus-PS's two strands) are stored once
    tmp.replace(run_dir / WEIGHTS_FILE)
    tmp = run_dir / (SPEC_FILE + ".tmp")
    tmp.write_text(json.dumps(dict(spec), indent=1))
    tmp.replace(run_dir / SPEC_FILE)


class TrainedClassifier(nn.Module):
    """A saved classifier, loaded: ``log_probs(input_ids)`` -> log p(y | x) [N, C] for full-length rows."""

    def __init__(self, model: nn.Module, spec: Mapping[str, Any], source: Path | None = None):
        super().__init__()
        self.model, self.spec, self.source = model.eval(), with_max_length(spec), source
        self.classes: list[str] = [str(c) for c in spec.get("classes") or range(int(spec["num_classes"]))]
        self.noise_aware = bool(spec.get("noise_aware", False))

    @property
    def input_len(self) -> int | None:
        """The length every input is padded or cut to (the CNN baseline's); None: any length is read whole."""
        return int(self.spec["max_length"]) if self.spec.get("classifier") == "cnn" else None

    def class_index(self, label: str | int) -> int:
        if str(label) in self.classes:
            return self.classes.index(str(label))
        raise ValueError(f"{label!r} is not a class of this classifier; its classes: {self.classes}")

    def save_pretrained(self, out_dir: str | Path, metrics: Mapping[str, Any] | None = None,
                        overwrite: bool = True) -> Path:
        """A folder that ``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)`` loads
        without this package, and ``load_classifier(DIR)`` / ``predict run=DIR`` with it; ``metrics``: the
        fine-tune's (for the model card). The folder rules of ``DiffusionLM.save_pretrained`` apply."""
        return export_classifier(self, out_dir, dict(metrics or {}), overwrite=overwrite)

    def save(self, run_dir: str | Path) -> Path:
        """Write it as ``finetune`` does (classifier.json + classifier.safetensors): ``load_classifier`` reads it."""
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        save_classifier(run_dir, self.model, self.spec)
        return Path(run_dir)

    @property
    def max_length(self) -> int:
        """The longest input the classifier was built for (finetune's max_length, else its longest sequence); unlike
        :attr:`input_len` also for backbone classifiers, which read shorter inputs whole."""
        return int(self.spec["max_length"])

    @checked
    def predict(self, seqs: Sequence[str], names: Sequence[str] | None = None, batch_size: PositiveInt | None = None,
                truncate: bool = False) -> pd.DataFrame:
        """Predicted class and one probability column per class (``p_<class>``) for each sequence, in order.

        Batches of ``batch_size`` in input order, padded on the right as ``finetune`` tests them (default: the
        run's ``data.eval_batch_size``), so re-scoring the run's test split gives its metrics exactly; the head's
        ``conjoin_test`` applies. Sequences longer than :attr:`max_length` are an error unless ``truncate``
        (keep the first ``max_length`` bases, as ``finetune`` does with ``data.max_length``)."""
        return predict_table(self, seqs, names, batch_size, truncate)

    @torch.no_grad()
    def log_probs(self, input_ids: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((input_ids.shape[0],), input_ids.shape[1], dtype=torch.long, device=input_ids.device)
        return torch.log_softmax(self.model(input_ids, lengths).double(), dim=-1)


@checked
def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> TrainedClassifier:
    """A classifier saved by ``finetune`` (its run folder: classifier.json + classifier.safetensors).

    An incomplete or damaged folder is a CheckpointError naming the file::

        clf = load_classifier("runs/finetune/promoters")
        clf.predict(["ACGT..."])          # DataFrame: label, p_<class> per class
    """
    from safetensors.torch import load_model

    path = Path(path).expanduser()
    spec_file = path / SPEC_FILE
    if not path.is_dir():
        what = "a file, not a folder" if path.exists() else "no such folder"
        raise CheckpointError(f"{path}: {what} (pass the run folder finetune wrote, holding {SPEC_FILE}; "
                              f"a pretrained model is not a classifier: fine-tune it first)")
    if not spec_file.is_file():
        if (path / "config.json").is_file() and not (path / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"{path}: a model folder (config.json), not a finetune run folder: it holds no "
                                  f"{SPEC_FILE}; pass the folder finetune wrote")
        seeds = sorted(p.parent for p in path.glob(f"**/{SPEC_FILE}"))[:3]
        hint = f"; classifiers below it: {', '.join(map(str, seeds))}" if seeds else ""
        raise CheckpointError(f"{path}: no {SPEC_FILE} (not the run folder of one finetune task and seed){hint}")
    try:
        spec = json.loads(spec_file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{spec_file}: cannot be read as JSON ({e})") from e
    spec = with_max_length(spec) if isinstance(spec, dict) else spec
    needed = ("classifier", "head", "num_classes", "max_length")
    missing = [k for k in needed if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise CheckpointError(f"{spec_file}: no {', '.join(missing)} (not written by finetune, or damaged)")
    try:
        model, _, _ = build_classifier({**spec, "init": None, "ckpt": None}, int(spec["num_classes"]),
                                       int(spec["max_length"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{spec_file}: does not describe a classifier this package builds ({e})") from e
    weights = path / WEIGHTS_FILE
    exported = not weights.is_file() and (path / "model.safetensors").is_file()  # an export's weights
    if exported:
        weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (the run folder is incomplete: finetune did not finish?)")
    try:
        if exported:  # stored under "model." for transformers, every tensor whole
            from safetensors.torch import load_file

            state = {k.removeprefix("model."): v for k, v in load_file(str(weights)).items()}
            model.load_state_dict(state, strict=True)
        else:
            load_model(model, str(weights))
    except Exception as e:  # OSError, RuntimeError, safetensors' own error for a truncated file
        raise CheckpointError(f"{weights}: cannot load the classifier's weights ({e})") from None
    return TrainedClassifier(model, spec, source=path).to(device)


def train_classifier(seqs, labels, classes: list[str], epochs: int = 10, noise_aware: bool = True,
                     cnn: Mapping[str, Any] | None = None, lr: float = 1e-3, batch_size: int = 128,
                     seed: int = 0) -> TrainedClassifier:
    """A CNN classifier fitted in memory on equal-length sequences (strings or id arrays) and integer labels:
    by default noise-aware, i.e. a guidance classifier p(y | x_t) for ``DiffusionLM.sample(classifier=...)``.
    The CNN defaults to embedding dimension 16 (it runs four times per masked position and step)."""
    import numpy as np
    from torch.utils.data import DataLoader, TensorDataset

    from mdlm_dna.evaluation.metrics import to_ids

    ids = np.stack(to_ids(seqs))
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    L = ids.shape[1]
    cfg = {"classifier": "cnn", "head": {"pooling": "mean"}, "cnn": dict(cnn or {"embedding_dim": 16})}
    pl.seed_everything(seed, verbose=False)
    model, _, spec = build_classifier(cfg, len(classes), L)
    module = ClassifierModule(model, len(classes), {"lr": lr, "weight_decay": 0.1}, noise_aware=noise_aware)

    def collate(batch):
        x = torch.stack([b[0] for b in batch])
        return {"input_ids": x, "labels": torch.stack([b[1] for b in batch]),
                "lengths": torch.full((len(batch),), L, dtype=torch.long)}

    loader = DataLoader(TensorDataset(torch.as_tensor(ids, dtype=torch.long), y), batch_size=batch_size,
                        shuffle=True, collate_fn=collate)
    pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(module, loader)
    return TrainedClassifier(model, {**spec, "classes": list(classes), "noise_aware": noise_aware})


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
