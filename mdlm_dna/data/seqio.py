"""Sequences in and out of files: FASTA (plain or gzipped) and tables, for the sample / score / embed tools."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

from mdlm_dna.utils.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
# cells pandas reads as missing values by default: in a sequence column they are gaps in the table, not DNA
MISSING_MARKERS = frozenset({"", "NA", "N/A", "NaN", "nan", "NAN", "NULL", "null", "None", "<NA>", "#N/A", "-nan"})


def write_fasta(path: str | Path, seqs: list[str], names: list[str], width: int = 80) -> None:
    with open(path, "w") as fh:
        for name, s in zip(names, seqs):
            fh.write(f">{name}\n")
            for i in range(0, len(s), width):
                fh.write(s[i : i + width] + "\n")


def write_text_samples(path: str | Path, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, t in enumerate(texts):
            fh.write(f"=== sample {i} ===\n{t}\n\n")


def _is_table(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(TABLE_SUFFIXES)


def read_sequences(path: str | Path, column: str = "sequence") -> tuple[list[str], list[str]]:
    """(names, sequences) from a FASTA file or a table with a ``sequence`` column (and optionally ``name``/``id``).

    Errors name the file and what is wrong; nothing is dropped silently.
    """
    from Bio import SeqIO

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if _is_table(path):
        sep = "\t" if ".tsv" in path.name.lower() else ","
        try:
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        except Exception as e:
            raise DataError(f"{path}: cannot be read as a table ({e})") from e
        if column not in frame.columns:
            raise DataError(f"{path}: no {column!r} column (columns: {list(frame.columns)})")
        missing = frame.index[frame[column].str.strip().isin(MISSING_MARKERS)].tolist()
        if missing:  # pandas would read these as missing values: refuse rather than score 'NA' as two bases
            lines = ", ".join(str(i + 2) for i in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                                                    else "")
            raise DataError(f"{path}: missing value in the {column!r} column on line(s) {lines} "
                            f"({frame[column].iloc[missing[0]]!r}); remove those rows or fill in the sequences")
        name_col = next((c for c in ("name", "id") if c in frame.columns), None)
        names = frame[name_col].tolist() if name_col else [f"row_{i}" for i in range(len(frame))]
        seqs = frame[column].tolist()
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt") as fh:
                records = list(SeqIO.parse(fh, "fasta"))
        except (OSError, EOFError, UnicodeDecodeError, ValueError) as e:  # ValueError: Biopython, not FASTA
            raise DataError(f"{path}: cannot be read as FASTA ({e}); give a FASTA file (records start with '>') or "
                            "a .csv / .tsv table") from e
        names, seqs = [r.id for r in records], [str(r.seq) for r in records]
    if not seqs:
        raise DataError(f"{path}: no sequences (expected FASTA records or a table with a {column!r} column)")
    empty = [n for n, s in zip(names, seqs) if not s.strip()]
    if empty:
        raise DataError(f"{path}: {len(empty)} empty sequence(s), e.g. {empty[:3]}")
    return names, seqs
