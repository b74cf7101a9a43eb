"""Labelled DNA for class-conditional models: one class per FASTA, or a ``sequence,label`` table.

    python -m mdlm_dna.pretrain genome=labelled "genome.paths={ecoli: E.fa.gz, yeast: S.fa.gz}"
    python -m mdlm_dna.pretrain data=labelled_table data.task.train_path=T.csv data.task.test_fraction=0.1
    python -m mdlm_dna.pretrain data=labelled_table data.task.name=human_nontata_promoters \
        data.task.source=genomic_benchmarks

Every batch carries ``label`` [B] (the class index) beside ``input_ids``. Class names are recorded in the
run config (``data.classes``, and ``model.num_classes`` is set from them), so checkpoints and exported
models know them.

Genomes: each FASTA is split exactly as a single genome is (``genome.val_fraction`` / ``test_fraction`` /
``val_records`` / ``test_records``, the windows machinery of :mod:`mdlm_dna.data.windows`). Training sample
``i`` picks its class by ``genome.class_sampling``:

- ``balanced`` (default): class ``i mod K``, so every global batch holds the classes equally (a 230 kb yeast
  chromosome weighs as much as a 4.6 Mb E. coli genome; the null class then models the balanced mixture);
- ``proportional``: a class drawn with probability proportional to its training bases.

Its window is then drawn from that class's genome as :class:`~mdlm_dna.data.windows.RandomWindows` draws, a
pure function of (seed, class, i): resumes stay exact and the batch does not depend on the device layout.
Validation / test tile each class's held-out intervals (``data.val_max_windows`` per class).

Tables (and GenomicBenchmarks tasks, through the loaders ``finetune`` uses): training sample ``i`` is a row
of class ``i mod K`` (balanced) or any row (proportional, ``data.class_sampling``), cropped at a random start
to ``data.seq_len`` or right-padded with [PAD] (which the MDLM loss leaves out); evaluation reads every row
once, from its start.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mdlm_dna.data.base import ResumableDataModule
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.utils.errors import ConfigError, DataError

CLASS_SAMPLING = ("balanced", "proportional")
_TOK = NucleotideTokenizer()


def _derived_seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _class_sampling(value: Any, key: str) -> str:
    mode = value or "balanced"
    if mode not in CLASS_SAMPLING:
        raise ConfigError(f"{key}={mode!r}: choose one of {', '.join(CLASS_SAMPLING)}")
    return mode


# ----------------------------------------------------------------------------------------------------
# class names in the run config


def is_labelled(config: dict[str, Any]) -> bool:
    data = config.get("data") or {}
    return data.get("kind", "genome") == "labelled_table" or (
        data.get("kind", "genome") == "genome" and bool((config.get("genome") or {}).get("paths"))
    )


def genome_paths(genome: dict[str, Any]) -> dict[str, str]:
    paths = genome.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise ConfigError('genome.paths must map class names to FASTA files, e.g. "genome.paths={ecoli: E.fa.gz}"')
    if len(paths) < 2:
        raise ConfigError(f"genome.paths names one class ({list(paths)}); a class-conditional model needs two or more")
    return {str(k): str(v) for k, v in paths.items()}


@functools.lru_cache(maxsize=4)
def _task(task_json: str, seed: int):
    from mdlm_dna.data.genomic_benchmarks import load_task

    return load_task(json.loads(task_json), seed=seed)


def load_table_task(data: dict[str, Any], seed: int):
    """The TaskData ``data.task`` names (loaded once per process)."""
    task = data.get("task")
    if not isinstance(task, dict) or not task.get("name"):
        raise ConfigError("data=labelled_table needs data.task (a task config: name, train_path, ...)")
    return _task(json.dumps(task, sort_keys=True, default=str), int(seed))


def class_names(config: dict[str, Any]) -> list[str] | None:
    """The classes of a labelled run, in label order; None for unlabelled data."""
    if not is_labelled(config):
        return None
    data = config["data"]
    if data.get("classes"):
        return [str(c) for c in data["classes"]]
    if data.get("kind") == "labelled_table":
        return list(load_table_task(data, int(config.get("seed", 0))).classes)
    return list(genome_paths(config["genome"]))


def resolve_classes(config: dict[str, Any]) -> dict[str, Any]:
    """Record the class names in ``config`` (``data.classes``) and size the backbone (``model.num_classes``).

    In place (the caller's DataModule reads the same dict) and idempotent: a checkpoint's config, which
    already holds both, is left alone without reading any data.
    """
    names = class_names(config)
    model = config["model"]
    if names is None:
        return config
    if len(set(names)) != len(names):
        raise ConfigError(f"class names must be distinct, got {names}")
    if model.get("num_classes") not in (None, len(names)):
        raise ConfigError(f"model.num_classes={model['num_classes']} but the data has {len(names)} classes {names}")
    objective = (config.get("objective") or {}).get("name", "mdlm")
    if objective != "mdlm":
        raise ConfigError(f"class-conditional training (labelled data) needs objective=mdlm, not {objective!r}")
    config["data"]["classes"] = names
    model["num_classes"] = len(names)
    return config


def label_index(config: dict[str, Any], label: str | int) -> int:
    """A class name (or index) of a model -> its index; a clear error for an unknown or unlabelled one."""
    names = (config.get("data") or {}).get("classes")
    if not names or (config.get("model") or {}).get("num_classes") is None:
        raise ConfigError(f"label={label!r}: this model is unconditional (trained without class labels)")
    names = [str(c) for c in names]
    if str(label) in names:
        return names.index(str(label))
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= int(label) < len(names):
        return int(label)
    raise ConfigError(f"label={label!r} is not one of this model's classes: {', '.join(names)}")


# ----------------------------------------------------------------------------------------------------
# datasets


class LabelledWindows(Dataset):
    """Training samples over several classes: sample ``i`` -> (class c, sample j of class c's dataset)."""

    def __init__(self, datasets: Sequence[Dataset], num_samples: int, seed: int, sampling: str,
                 weights: Sequence[float] | None = None):
        self.datasets, self.num_samples, self.seed, self.sampling = list(datasets), int(num_samples), seed, sampling
        w = np.asarray(weights if weights is not None else [1.0] * len(self.datasets), dtype=np.float64)
        self.cum = np.cumsum(w / w.sum())

    def __len__(self) -> int:
        return self.num_samples

    def route(self, i: int) -> tuple[int, int]:
        """(class, index into that class's dataset) of sample ``i``: a pure function of (seed, i)."""
        K = len(self.datasets)
        if self.sampling == "balanced":
            return i % K, i // K
        u = np.random.default_rng((self.seed, 0x1ABE1, int(i))).random()
        return min(int(np.searchsorted(self.cum, u, side="right")), K - 1), i

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        c, j = self.route(int(i))
        return {**self.datasets[c][j], "label": torch.tensor(c, dtype=torch.long)}


class WithLabel(Dataset):
    """Every item of ``dataset`` with the constant class index ``label``."""

    def __init__(self, dataset: Dataset, label: int):
        self.dataset, self.label = dataset, int(label)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**self.dataset[i], "label": torch.tensor(self.label, dtype=torch.long)}


class TableWindows(Dataset):
    """Rows of a labelled table as ``seq_len`` windows.

    ``num_samples`` set (training): sample ``i`` is a row of class ``i mod K`` (balanced) or any row
    (proportional), at a random crop; both are pure functions of (seed, i). ``num_samples`` None
    (evaluation): row ``i``, from its start. Rows shorter than ``seq_len`` are right-padded with [PAD].
    """

    def __init__(self, ids: list[np.ndarray], labels: np.ndarray, seq_len: int, num_classes: int,
                 num_samples: int | None = None, seed: int = 0, sampling: str = "balanced"):
        self.ids, self.labels, self.seq_len = ids, np.asarray(labels, dtype=np.int64), int(seq_len)
        self.num_samples, self.seed, self.sampling = num_samples, seed, sampling
        self.by_class = [np.flatnonzero(self.labels == c) for c in range(num_classes)]
        if num_samples is not None and sampling == "balanced":
            empty = [c for c, rows in enumerate(self.by_class) if len(rows) == 0]
            if empty:
                raise DataError(f"class(es) {empty} have no training rows; use data.class_sampling=proportional")

    def __len__(self) -> int:
        return len(self.ids) if self.num_samples is None else self.num_samples

    def _row_and_start(self, i: int) -> tuple[int, int]:
        if self.num_samples is None:
            return i, 0
        rng = np.random.default_rng((self.seed, int(i)))
        if self.sampling == "balanced":
            rows = self.by_class[i % len(self.by_class)]
            row = int(rows[rng.integers(len(rows))])
        else:
            row = int(rng.integers(len(self.ids)))
        room = len(self.ids[row]) - self.seq_len
        return row, int(rng.integers(room + 1)) if room > 0 else 0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row, start = self._row_and_start(int(i))
        window = self.ids[row][start : start + self.seq_len].astype(np.int64)
        x = np.full(self.seq_len, _TOK.pad_id, dtype=np.int64)
        x[: len(window)] = window
        return {"input_ids": torch.from_numpy(x), "label": torch.tensor(int(self.labels[row]), dtype=torch.long)}


# ----------------------------------------------------------------------------------------------------
# DataModules


class LabelledGenomeDataModule(ResumableDataModule):
    """One genome per class (``genome.paths``), each split and windowed as :class:`GenomeDataModule` does."""

    def __init__(self, genome: dict[str, Any], data: dict[str, Any], seed: int = 0, cache_dir: str | None = None):
        super().__init__(data, seed=seed)
        self.genome_cfg, self.cache_dir = genome, cache_dir
        self.paths = genome_paths(genome)
        self.classes = list(self.paths)
        self.sampling = _class_sampling(genome.get("class_sampling"), "genome.class_sampling")
        if genome.get("bed"):
            raise ConfigError("genome.bed is not supported with genome.paths (one BED cannot split several genomes)")
        self.genomes: list | None = None
        self.splits: list | None = None

    def prepare_data(self) -> None:
        self._load()

    def setup(self, stage: str | None = None) -> None:
        self._load()

    def _load(self) -> list:
        if self.genomes is None:
            from mdlm_dna.data.datamodule import load_split_genome

            loaded = [load_split_genome({**self.genome_cfg, "path": p, "name": c}, self.cache_dir)
                      for c, p in self.paths.items()]
            self.genomes = [g for g, _ in loaded]
            self.splits = [s for _, s in loaded]
        return self.genomes

    def intervals(self, c: int, split: str) -> list:
        from mdlm_dna.data.windows import fit_intervals

        self._load()
        rule = self.genome_cfg.get("short_intervals") or "drop"
        return fit_intervals(self.genomes[c], self.splits[c][split], int(self.data_cfg["seq_len"]), rule)

    def train_dataset(self, num_samples: int) -> LabelledWindows:
        from mdlm_dna.data.windows import RandomWindows

        d = self.data_cfg
        per_class = [
            RandomWindows(
                g, self.intervals(c, "train"), seq_len=int(d["seq_len"]), num_samples=num_samples,
                seed=_derived_seed(self.seed, c), rc_prob=float(d.get("rc_prob", 0.0)),
                max_n_fraction=float(d.get("max_n_fraction", 0.5)), keep_soft_mask=bool(d.get("keep_soft_mask", False)),
            )
            for c, g in enumerate(self._load())
        ]
        weights = [float(sum(len(iv) for iv in self.intervals(c, "train"))) for c in range(len(self.classes))]
        return LabelledWindows(per_class, num_samples, self.seed, self.sampling, weights)

    def eval_dataset(self, split: str) -> Dataset:
        from torch.utils.data import ConcatDataset

        from mdlm_dna.data.windows import TiledWindows

        d = self.data_cfg
        key = f"{'val' if split == 'validation' else 'test'}_max_windows"
        parts = []
        for c, g in enumerate(self._load()):
            ds = TiledWindows(g, self.intervals(c, split), seq_len=int(d["seq_len"]), max_windows=d.get(key),
                              max_n_fraction=float(d.get("max_n_fraction", 0.5)),
                              keep_soft_mask=bool(d.get("keep_soft_mask", False)))
            if len(ds) == 0:
                raise DataError(f"{g.path} (class {self.classes[c]!r}): the {split} split has no window of "
                                f"data.seq_len={d['seq_len']}; use a shorter data.seq_len or larger split fractions")
            parts.append(WithLabel(ds, c))
        return ConcatDataset(parts)

    def train_dataloader(self) -> DataLoader:
        n = self.train_samples_per_epoch()
        return self._train_loader(self.train_dataset(n), n)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader_for(self.eval_dataset("validation"))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader_for(self.eval_dataset("test"))


class LabelledTableDataModule(ResumableDataModule):
    """A ``sequence,label`` table or GenomicBenchmarks task (``data.task``) as fixed-length labelled windows."""

    def __init__(self, data: dict[str, Any], seed: int = 0):
        super().__init__(data, seed=seed)
        self.sampling = _class_sampling(data.get("class_sampling"), "data.class_sampling")
        self.task = load_table_task(data, seed)
        self.classes = list(self.task.classes)
        self._ids: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}

    def frame(self, split: str):
        from mdlm_dna.data.genomic_benchmarks import holdout

        t = self.task
        if split == "test":
            return t.test
        if t.val is not None:
            return t.train if split == "train" else t.val
        train, val = holdout(t.train, float(self.data_cfg.get("val_fraction", 0.1)), self.seed)
        return train if split == "train" else val

    def tokens(self, split: str) -> tuple[list[np.ndarray], np.ndarray]:
        from mdlm_dna.data.genomic_benchmarks import tokenize

        if split not in self._ids:
            df = self.frame(split)
            self._ids[split] = (tokenize(df["sequence"].tolist(), f"{self.task.name} {split}"), df["label"].to_numpy())
        return self._ids[split]

    def _dataset(self, split: str, num_samples: int | None = None) -> TableWindows:
        ids, labels = self.tokens(split)
        return TableWindows(ids, labels, int(self.data_cfg["seq_len"]), len(self.classes), num_samples,
                            seed=self.seed, sampling=self.sampling)

    def train_dataloader(self) -> DataLoader:
        n = self.train_samples_per_epoch()
        return self._train_loader(self._dataset("train", n), n)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader_for(self._dataset("validation"))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader_for(self._dataset("test"))


def reference_windows(config: dict[str, Any], label: str | int, length: int, max_windows: int | None = None,
                      cache_dir: str | None = None, split: str = "test") -> np.ndarray:
    """Real windows of one class ([N, length]): by default the held-out test split of that class's genome or
    table; ``split="train"`` gives training windows (e.g. to fit a judge)."""
    c = label_index(config, label)
    data = dict(config["data"], seq_len=int(length), test_max_windows=max_windows)
    if data.get("kind") == "labelled_table":
        ds: Dataset = LabelledTableDataModule(data, seed=int(config.get("seed", 0)))._dataset(split)
        rows = [i for i in range(len(ds)) if int(ds.labels[i]) == c][: max_windows or None]
        items = [ds[i]["input_ids"].numpy() for i in rows]
    else:
        dm = LabelledGenomeDataModule(config["genome"], data, seed=int(config.get("seed", 0)), cache_dir=cache_dir)
        from mdlm_dna.data.windows import TiledWindows

        part = TiledWindows(dm._load()[c], dm.intervals(c, split), seq_len=int(length), max_windows=max_windows,
                            max_n_fraction=float(data.get("max_n_fraction", 0.5)))
        items = [part[i]["input_ids"].numpy() for i in range(len(part))]
    return np.stack(items) if items else np.zeros((0, length), dtype=np.int64)
