"""LightningDataModule: a genome, its split, and the window datasets of each split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from mdlm_dna.data.base import ResumableDataModule
from mdlm_dna.data.fasta import Genome, load_genome, open_genome_pyfaidx
from mdlm_dna.data.windows import RandomWindows, TiledWindows, bed_splits, fit_intervals, split_genome
from mdlm_dna.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

READERS = ("array", "pyfaidx")


def _check_prepared(g: dict[str, Any]) -> None:
    """A genome with a ``download`` section (hg38) names the command that fetches its missing files."""
    if not g.get("download"):
        return
    missing = [p for p in (g.get("path"), g.get("bed")) if p and not Path(p).expanduser().exists()]
    if missing:
        raise FileNotFoundError(
            f"genome {g.get('name')!r}: {', '.join(map(str, missing))} not found; fetch and index it once with "
            f"`python -m mdlm_dna.prepare {g.get('name')} --out {g.get('root')}`"
        )


def load_split_genome(genome_cfg: dict[str, Any], cache_dir: str | None = None) -> tuple[Genome, dict]:
    """The genome a run's ``genome`` config names, and its train / validation / test intervals.

    Splits come from ``genome.bed`` when it is set (labelled intervals), else from
    ``val_records`` / ``test_records`` (chromosome-level), else from the end of every record.
    ``genome.reader`` picks the memory-mapped token cache (``array``, default) or ``pyfaidx``.
    """
    g = genome_cfg
    _check_prepared(g)
    reader = g.get("reader") or "array"
    if reader not in READERS:
        raise ConfigError(f"genome.reader must be one of {READERS}, got {reader!r}")
    load = load_genome if reader == "array" else open_genome_pyfaidx
    genome = load(
        g["path"],
        cache_dir=cache_dir,
        records=g.get("records"),
        min_record_length=int(g.get("min_record_length", 1)),
    )
    if g.get("bed"):
        split_map = g.get("split_map")
        splits = bed_splits(
            genome,
            g["bed"],
            split_map=dict(split_map) if split_map else None,
            default_split=g.get("default_split"),
            missing_chroms=g.get("missing_chroms") or "error",
            merge=bool(g.get("merge_overlaps", True)),
            split_overlaps=g.get("split_overlaps") or "error",
        )
    else:
        splits = split_genome(
            genome,
            val_fraction=g.get("val_fraction", 0.05),
            test_fraction=g.get("test_fraction", 0.05),
            val_records=g.get("val_records") or (),
            test_records=g.get("test_records") or (),
        )
    return genome, splits


class GenomeDataModule(ResumableDataModule):
    """``genome`` and ``data`` are the run config's sections of those names."""

    def __init__(self, genome: dict[str, Any], data: dict[str, Any], seed: int = 0, cache_dir: str | None = None):
        super().__init__(data, seed=seed)
        self.genome_cfg, self.cache_dir = genome, cache_dir
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

    def intervals(self, split: str) -> list:
        """The split's intervals after the ``genome.short_intervals`` rule for this ``seq_len``."""
        self._load()
        rule = self.genome_cfg.get("short_intervals") or "drop"
        return fit_intervals(self.genome, self.splits[split], int(self.data_cfg["seq_len"]), rule)

    def train_dataloader(self) -> DataLoader:
        d = self.data_cfg
        n = self.train_samples_per_epoch()
        ds = RandomWindows(
            self._load(),
            self.intervals("train"),
            seq_len=int(d["seq_len"]),
            num_samples=n,
            seed=self.seed,
            rc_prob=float(d.get("rc_prob", 0.0)),
            max_n_fraction=float(d.get("max_n_fraction", 0.5)),
            keep_soft_mask=bool(d.get("keep_soft_mask", False)),
        )
        return self._train_loader(ds, n)

    def _eval_loader(self, split: str) -> DataLoader:
        d = self.data_cfg
        ds = TiledWindows(
            self._load(),
            self.intervals(split),
            seq_len=int(d["seq_len"]),
            max_windows=d.get(f"{'val' if split == 'validation' else 'test'}_max_windows"),
            max_n_fraction=float(d.get("max_n_fraction", 0.5)),
            keep_soft_mask=bool(d.get("keep_soft_mask", False)),
        )
        if len(ds) == 0 and ds.mostly_n:
            raise DataError(
                f"{self.genome.path}: all {ds.mostly_n:,} windows of the {split} split have more than "
                f"data.max_n_fraction={d.get('max_n_fraction', 0.5)} N; is the genome (or this split) all N? "
                "Check the file, or raise data.max_n_fraction"
            )
        if len(ds) == 0:
            raise DataError(
                f"{self.genome.path}: the {split} split has no window of seq_len={d['seq_len']}; "
                "use a shorter data.seq_len or larger split fractions"
            )
        return self._eval_loader_for(ds)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
