"""Variants in (VCF plain or bgzipped, or a table with chrom, pos, ref, alt) and scored VCF out.

A small reader with Python's gzip (bgzip is gzip with many members): no compiled dependency. Multi-allelic
records are split into one row per ALT allele; every row keeps its file line number for messages. Nothing is
interpreted here: symbolic alleles, REF checks and the rest are the scorer's (:mod:`.variants`) to report.

    >>> from pathlib import Path
    >>> header = "##fileformat=VCFv4.2\\n#CHROM\\tPOS\\tID\\tREF\\tALT\\tQUAL\\tFILTER\\tINFO\\n"
    >>> _ = Path("calls.vcf").write_text(header + "chr1\\t5\\trs1\\tA\\tG,T\\t50\\tPASS\\t.\\n")
    >>> table = read_variants("calls.vcf")     # plain or bgzipped; one row per ALT allele
    >>> table[["chrom", "pos", "id", "ref", "alt", "line"]].values.tolist()
    [['chr1', 5, 'rs1', 'A', 'G', 3], ['chr1', 5, 'rs1', 'A', 'T', 3]]
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from mdlm_dna.utils.errors import DataError
from mdlm_dna.utils.validation import checked

COLUMNS = ["chrom", "pos", "id", "ref", "alt", "qual", "filter", "info", "line"]
TABLE_NAMES = {"chrom": ("chrom", "chromosome", "chr", "#chrom", "contig", "seqname"),
               "pos": ("pos", "position", "start"), "ref": ("ref",), "alt": ("alt",)}
INFO_KEYS = ("MDLM_LLR", "MDLM_STATUS")


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _is_vcf(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz").removesuffix(".bgz")
    if name.endswith(".vcf"):
        return True
    if name.endswith((".csv", ".tsv", ".txt")):
        return False
    with _open_text(path) as fh:
        return fh.readline().startswith(("##fileformat=VCF", "#CHROM"))


@checked
def read_variants(path: str | Path) -> pd.DataFrame:
    """One row per ALT allele (1-based ``pos``); ``attrs["vcf_header"]``: the VCF's header lines (a table: none).

    A missing file, a record with fewer than 5 columns, a position that is not a positive integer, or no
    variant at all: a :class:`DataError` naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"variants file {path} does not exist")
    try:
        table = _read_vcf(path) if _is_vcf(path) else _read_table(path)
    except (EOFError, OSError, zlib.error) as e:  # a truncated or corrupt gzip: found while reading, not opening
        raise DataError(f"{path}: cannot be read ({type(e).__name__}: {' '.join(str(e).split())}); "
                        f"a damaged or truncated gzip file? check it with `gzip -t`") from None
    if table.empty:
        raise DataError(f"{path}: no variant records (an empty VCF or table): nothing to score")
    return table


def _read_vcf(path: Path) -> pd.DataFrame:
    header: list[str] = []
    rows: list[tuple] = []
    with _open_text(path) as fh:
        for n, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            if line.startswith("#"):
                header.append(line)
                continue
            f = line.split("\t")
            if len(f) < 5:
                raise DataError(f"{path}, line {n}: a VCF record needs at least 5 tab-separated columns "
                                f"(CHROM POS ID REF ALT), got {len(f)}")
            pos = _position(f[1], path, n)
            extra = [*f[5:8], *[".", ".", "."][len(f[5:8]):]]
            for alt in f[4].split(","):
                rows.append((f[0], pos, f[2], f[3], alt, *extra, n))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["vcf_header"] = header
    return table


def _position(text: str, path: Path, line: int) -> int:
    try:
        pos = int(text)
    except ValueError:
        pos = 0
    if pos < 1:
        raise DataError(f"{path}, line {line}: POS {text!r} is not a positive integer (VCF positions are 1-based)")
    return pos


def _read_table(path: Path) -> pd.DataFrame:
    sep = "," if path.name.lower().removesuffix(".gz").endswith(".csv") else "\t"
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: cannot read the variants table ({e})") from None
    lower = {c.lower().strip(): c for c in raw.columns}
    cols = {}
    for key, names in TABLE_NAMES.items():
        found = next((lower[n] for n in names if n in lower), None)
        if found is None:
            raise DataError(f"{path}: the table needs columns chrom, pos (1-based), ref, alt; "
                            f"it has {', '.join(map(str, raw.columns))}")
        cols[key] = found
    rows = []
    id_col = lower.get("id")
    for i, values in enumerate(raw.to_dict("records"), start=2):  # line 1 is the header
        pos = _position(str(values[cols["pos"]]), path, i)
        vid = str(values[id_col]) if id_col else "."
        for alt in str(values[cols["alt"]]).split(","):
            rows.append((str(values[cols["chrom"]]), pos, vid or ".", str(values[cols["ref"]]), alt, ".", ".", ".", i))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["vcf_header"] = []
    return table


@checked
def write_vcf(scores: pd.DataFrame, path: str | Path, header: list[str] | None = None) -> Path:
    """A VCF with one record per scored ALT allele (multi-allelic records stay split) and the score in INFO:
    ``MDLM_LLR`` (natural log p(alt) / p(ref); ``.`` when unscored) and ``MDLM_STATUS``. ``header``: the
    input's header lines (``read_variants(...).attrs["vcf_header"]``), kept."""
    from mdlm_dna.cli.paths import check_output_file

    path = check_output_file(path, "path", [])
    header = list(header or [])
    meta = [h for h in header if h.startswith("##")] or ["##fileformat=VCFv4.2"]
    meta = [h for h in meta if not any(h.startswith(f"##INFO=<ID={k},") for k in INFO_KEYS)]
    meta += ['##INFO=<ID=MDLM_LLR,Number=A,Type=Float,Description="mdlm-dna: natural log of p(ALT) / p(REF); '
             'SNVs: the site masked alone, others: difference of window NELBOs (exact for AR models)">',
             '##INFO=<ID=MDLM_STATUS,Number=A,Type=String,Description="mdlm-dna: scored, or why not">']
    columns = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"
    out = [*meta, columns]
    for r in scores.itertuples(index=False):
        info = "" if getattr(r, "info", ".") in (".", "", None) else f"{r.info};"
        llr = "." if not np.isfinite(r.llr) else f"{r.llr:.6g}"
        info += f"MDLM_LLR={llr};MDLM_STATUS={r.status}"
        out.append("\t".join(map(str, (r.chrom, r.pos, getattr(r, "id", "."), r.ref, r.alt,
                                       getattr(r, "qual", "."), getattr(r, "filter", "."), info))))
    text = "\n".join(out) + "\n"
    if path.name.endswith((".gz", ".bgz")):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path
