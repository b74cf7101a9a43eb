"""Data: genomes (FASTA -> token cache -> windows) and text corpora (documents -> token blocks)."""

from __future__ import annotations

from typing import Any


def build_datamodule(config: dict[str, Any], cache_dir: str | None = None, tokenizer=None):
    """The DataModule a run's config asks for: ``data.kind`` is ``genome`` (default; labelled with
    ``genome.paths``, one class per FASTA), ``labelled_table`` or ``text``."""
    data = config["data"]
    kind = data.get("kind", "genome")
    seed = int(config.get("seed", 0))
    if kind == "genome" and (config.get("genome") or {}).get("paths"):  # one class per FASTA
        from mdlm_dna.data.labelled import LabelledGenomeDataModule

        return LabelledGenomeDataModule(config["genome"], data, seed=seed, cache_dir=cache_dir)
    if kind == "labelled_table":  # a sequence,label table or a GenomicBenchmarks task
        from mdlm_dna.data.labelled import LabelledTableDataModule

        return LabelledTableDataModule(data, seed=seed)
    if kind == "genome":
        from mdlm_dna.data.datamodule import GenomeDataModule

        return GenomeDataModule(config["genome"], data, seed=seed, cache_dir=cache_dir)
    if kind == "text":
        from mdlm_dna.data.text import TextDataModule

        return TextDataModule(data, seed=seed, cache_dir=cache_dir, tokenizer=tokenizer)
    raise ValueError(f"data.kind must be 'genome', 'labelled_table' or 'text', got {kind!r}")
