"""GenomicBenchmarks tasks and every way their sequences can reach us.

Sources, tried in this order for a GenomicBenchmarks task:

1. a local directory in the ``genomic-benchmarks`` package's own layout,
   ``ROOT/<task>/{train,test}/<class>/<id>.txt`` (one sequence per file);
2. the package's ``download_dataset`` when it is installed and the machine is online
   (it writes that same layout, which is then read as in 1);
3. the official coordinate files (``<task>/metadata.yaml``, ``{train,test}/<class>.csv.gz`` with
   ``id,region,start,end,strand``; 0-based half-open intervals, as the package slices them) plus a
   reference FASTA the user has: intervals become sequences, minus-strand ones reverse-complemented;
4. plain CSV/TSV files with a sequence column (``sequence`` or ``seq``) and a ``label`` column;
   ``task=csv`` uses only this, so any other benchmark (GUE, ...) runs through the same harness.

Labels are the index of the class name in the *sorted* list of class names, whatever order the
directory listing, the metadata or a carrier dataset used (the Hugging Face copies of
human_ensembl_regulatory number their classes promoter=0, enhancer=1, ocr=2; we use
enhancer=0, ocr=1, promoter=2). Integer labels in CSV files keep their numeric order.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mdlm_dna.data.fasta import default_cache_dir
from mdlm_dna.data.tokenizers import EncodeStats, NucleotideTokenizer, TokenizerError, strip_soft_mask
from mdlm_dna.utils.errors import DataError

log = logging.getLogger(__name__)

GB_TASKS = (
    "demo_coding_vs_intergenomic_seqs",
    "demo_human_or_worm",
    "drosophila_enhancers_stark",
    "dummy_mouse_enhancers_ensembl",
    "human_enhancers_cohn",
    "human_enhancers_ensembl",
    "human_ensembl_regulatory",
    "human_nontata_promoters",
    "human_ocr_ensembl",
)
PACKAGE_CACHE = Path.home() / ".genomic_benchmarks"  # the package's default dest_path
_ALPHABET = re.compile(r"[^ACGTNRYSWKMBDHVU]", re.IGNORECASE)  # what the tokenizer accepts
_COMPLEMENT = str.maketrans("ACGTNacgtnRYKMBDHVrykmbdhv", "TGCANtgcanYRMKVHDByrmkvhdb")


class DatasetError(DataError):
    """A data file or directory cannot be used; the message names it and says what is wrong."""


@dataclass
class TaskData:
    """Train / validation / test tables (columns ``sequence``, ``label``) and the class names.

    ``val`` is None when the source has no validation split (it is then carved out of train).
    """

    name: str
    classes: list[str]
    train: pd.DataFrame
    test: pd.DataFrame
    val: pd.DataFrame | None = None
    source: str = ""

    def label_mapping(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}


def check_alphabet(seq: str, where: str) -> None:
    """Fail on a character the tokenizer would reject, naming the file / line before any training starts."""
    bad = _ALPHABET.search(seq)
    if bad:
        raise DatasetError(
            f"{where}: invalid character {bad.group()!r} at position {bad.start() + 1}; "
            "expected A C G T N or an IUPAC code"
        )


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


# ----------------------------------------------------------------------------------------------------
# 1. the package's directory layout


def find_package_dir(root: str | Path, task: str) -> Path | None:
    """``root/<task>`` or ``root`` itself when it holds ``train/`` and ``test/``; None if neither."""
    root = Path(root).expanduser()
    for cand in (root / task, root):
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            return cand
    return None


def _read_class_dir(folder: Path, label: int) -> pd.DataFrame:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DatasetError(f"{folder}: class folder holds no .txt sequence files")
    seqs = []
    for f in files:
        s = f.read_text().strip()
        if not s:
            raise DatasetError(f"{f}: empty sequence file")
        check_alphabet(s, str(f))
        seqs.append(s)
    return pd.DataFrame({"sequence": seqs, "label": label, "id": [f.stem for f in files]})


def load_package_dir(path: str | Path, classes: list[str] | None = None, name: str = "") -> TaskData:
    """Read ``path/{train,test}/<class>/*.txt``; class folders are sorted by name to give labels."""
    path = Path(path)
    splits = {}
    found = None
    for split in ("train", "test"):
        d = path / split
        if not d.is_dir():
            raise DatasetError(f"{path}: no {split}/ folder (expected {split}/<class>/<id>.txt files)")
        names = sorted(p.name for p in d.iterdir() if p.is_dir())
        if not names:
            raise DatasetError(f"{d}: no class folders")
        if found is not None and names != found:
            raise DatasetError(f"{path}: train classes {found} differ from test classes {names}")
        found = names
    if classes is not None and sorted(classes) != found:
        raise DatasetError(f"{path}: class folders {found} do not match the task's classes {sorted(classes)}")
    for split in ("train", "test"):
        parts = [_read_class_dir(path / split / c, i) for i, c in enumerate(found)]
        splits[split] = pd.concat(parts, ignore_index=True)
    return TaskData(name or path.name, found, splits["train"], splits["test"], source=f"package layout {path}")


# ----------------------------------------------------------------------------------------------------
# 2. the package's download (online only)


def download_package_dataset(task: str, dest: str | Path, version: int = 0) -> Path:
    """Run ``genomic_benchmarks.loc2seq.download_dataset``; raises ImportError / OSError when it cannot."""
    from genomic_benchmarks.loc2seq import download_dataset  # lazy: optional dependency, needs the network

    Path(dest).expanduser().mkdir(parents=True, exist_ok=True)
    return Path(download_dataset(task, version=version, dest_path=str(Path(dest).expanduser())))


# ----------------------------------------------------------------------------------------------------
# 3. coordinates + reference FASTA


class _Reference:
    """Random access to a FASTA by region name, tolerant of 'chr8' vs '8' and 'chrM' vs 'MT' naming."""

    def __init__(self, path: str | Path, index_dir: Path | None = None):
        import pyfaidx

        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"reference FASTA not found: {self.path}")
        index_dir = index_dir or default_cache_dir() / "faidx"
        index_dir.mkdir(parents=True, exist_ok=True)
        st = self.path.stat()  # the index is keyed by path, size and mtime: an edited FASTA gets a new one
        stem = hashlib.sha1(f"{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
        try:
            self._fa = pyfaidx.Fasta(
                str(self.path),
                indexname=str(index_dir / f"{stem}.fai"),
                gzi_indexname=str(index_dir / f"{stem}.gzi"),
                as_raw=True,
                sequence_always_upper=True,
                read_long_names=False,
            )
            self._seqs = None
            names = list(self._fa.keys())
        except (pyfaidx.UnsupportedCompressionFormat, pyfaidx.FastaIndexingError) as e:
            log.warning("%s cannot be indexed (%s); reading it into memory with Biopython", self.path, e)
            from Bio.SeqIO.FastaIO import SimpleFastaParser

            with open(self.path, "rb") as fh:
                gzipped = fh.read(2) == b"\x1f\x8b"
            with (gzip.open if gzipped else open)(self.path, "rt") as fh:
                self._seqs = {t.split(None, 1)[0]: s.upper() for t, s in SimpleFastaParser(fh)}
            names = list(self._seqs)
        self.lengths = {n: len(self._fa[n]) if self._seqs is None else len(self._seqs[n]) for n in names}
        self._alias = {}
        for n in names:
            for a in _aliases(n):
                self._alias.setdefault(a, n)

    def resolve(self, region: str) -> str | None:
        for a in _aliases(str(region)):
            if a in self._alias:
                return self._alias[a]
        return None

    def fetch(self, name: str, start: int, end: int) -> str:
        return self._fa[name][start:end] if self._seqs is None else self._seqs[name][start:end]


def _aliases(name: str) -> list[str]:
    base = name[3:] if name.lower().startswith("chr") else name
    out = [name, base, "chr" + base]
    if base.upper() in ("M", "MT"):
        out += ["MT", "chrM", "M", "chrMT"]
    return out


def intervals_to_sequences(df: pd.DataFrame, ref: _Reference, where: str) -> list[str]:
    """Slice ``[start, end)`` of each region, reverse-complementing minus-strand rows."""
    missing = [c for c in ("region", "start", "end", "strand") if c not in df.columns]
    if missing:
        raise DatasetError(f"{where}: missing column(s) {missing}; expected id,region,start,end,strand")
    seqs = []
    for i, (region, start, end, strand) in enumerate(zip(df["region"], df["start"], df["end"], df["strand"])):
        name = ref.resolve(str(region))
        if name is None:
            raise DatasetError(
                f"{where}: row {i + 1}: region {region!r} is not in {ref.path} (records: {list(ref.lengths)[:10]}...)"
            )
        start, end = int(start), int(end)
        if not 0 <= start < end <= ref.lengths[name]:
            raise DatasetError(
                f"{where}: row {i + 1}: interval {region}:{start}-{end} is empty or outside {name} "
                f"(length {ref.lengths[name]:,}); is {ref.path} the right assembly?"
            )
        if strand not in ("+", "-"):
            raise DatasetError(f"{where}: row {i + 1}: strand must be '+' or '-', got {strand!r}")
        s = ref.fetch(name, start, end)
        seqs.append(reverse_complement(s) if strand == "-" else s)
    return seqs


def load_coordinates(coord_dir: str | Path, task: str, fasta: str | Path, classes: list[str] | None = None) -> TaskData:
    """Official coordinate files of ``task`` (under ``coord_dir/<task>`` or ``coord_dir``) + a reference."""
    coord_dir = Path(coord_dir).expanduser()
    root = coord_dir / task if (coord_dir / task / "metadata.yaml").exists() else coord_dir
    meta_path = root / "metadata.yaml"
    if not meta_path.exists():
        raise DatasetError(f"{coord_dir}: no {task}/metadata.yaml (the official coordinates' layout)")
    meta = yaml.safe_load(meta_path.read_text())
    names = sorted(meta.get("classes", {}))
    if classes is not None and sorted(classes) != names:
        raise DatasetError(f"{meta_path}: classes {names} do not match the task's classes {sorted(classes)}")
    ref = _Reference(fasta)
    splits = {}
    for split in ("train", "test"):
        parts = []
        for label, c in enumerate(names):
            f = root / split / f"{c}.csv.gz"
            if not f.exists():
                raise DatasetError(f"{f}: coordinate file missing")
            df = pd.read_csv(f)
            parts.append(
                pd.DataFrame({"sequence": intervals_to_sequences(df, ref, str(f)), "label": label, "id": df["id"]})
            )
        splits[split] = pd.concat(parts, ignore_index=True)
    return TaskData(task, names, splits["train"], splits["test"], source=f"coordinates {root} + {ref.path}")


# ----------------------------------------------------------------------------------------------------
# 4. CSV / TSV tables


def read_table(path: str | Path) -> pd.DataFrame:
    """A ``sequence,label`` table (CSV or TSV, optionally gzipped) -> DataFrame with those two columns."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: sequence table not found")
    suffixes = [s.lower() for s in path.suffixes]
    sep = "\t" if ".tsv" in suffixes or ".tab" in suffixes else ("," if ".csv" in suffixes else None)
    try:
        df = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c", dtype={"label": str})
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as e:
        raise DatasetError(f"{path}: cannot be parsed as CSV/TSV ({e})") from e
    cols = {c.strip().lower(): c for c in df.columns}
    seq_col = cols.get("sequence", cols.get("seq"))
    if seq_col is None or "label" not in cols:
        raise DatasetError(f"{path}: needs a 'sequence' (or 'seq') and a 'label' column; found {list(df.columns)}")
    out = pd.DataFrame({"sequence": df[seq_col], "label": df[cols["label"]]})
    bad = out["sequence"].isna() | (out["sequence"].astype(str).str.strip() == "") | out["label"].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # + header, 1-based
        raise DatasetError(f"{path}: line {row}: empty sequence or label ({int(bad.sum())} such rows)")
    out["sequence"] = out["sequence"].astype(str).str.strip()
    out["label"] = out["label"].astype(str).str.strip()
    for i, seq in enumerate(out["sequence"]):
        check_alphabet(seq, f"{path}: line {i + 2}")
    return out


def _rename(df: pd.DataFrame, label_names: Mapping[Any, str] | None, where: str | Path) -> pd.DataFrame:
    if not label_names:
        return df
    names = {str(k).strip(): str(v) for k, v in label_names.items()}
    unknown = sorted(set(df["label"]) - set(names))
    if unknown:
        raise DatasetError(f"{where}: label(s) {unknown[:5]} have no entry in task.label_names {names}")
    return df.assign(label=df["label"].map(names))


MIN_CLASS_EXAMPLES = 5  # fewer training rows than this in a class: most likely a typo in a label


def _label_kind(label: str) -> str:
    if re.fullmatch(r"-?\d+", label):
        return "integer"
    try:
        float(label)
    except ValueError:
        return "name"
    return "non-integer number"


def _rows(df: pd.DataFrame, mask: pd.Series, limit: int = 5) -> str:
    """``line N ('label')`` for the first rows of ``mask`` (line numbers of the file: header + 1-based)."""
    idx = df.index[mask.to_numpy()]
    text = ", ".join(f"line {int(i) + 2} ({df.at[i, 'label']!r})" for i in idx[:limit])
    return text + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def check_label_kinds(df: pd.DataFrame, where: str | Path) -> None:
    """All labels of a table are integers, or all are names: one ``1.5`` or ``promoter`` among 0/1 is a stray row,
    not a class of its own."""
    kinds = df["label"].map(_label_kind)
    if len(kinds) and (kinds == "non-integer number").all():
        raise DatasetError(
            f"{where}: the labels are continuous numbers (e.g. {df['label'].iloc[0]!r}), not classes; finetune "
            "trains a classifier: give class labels (integers or names), e.g. bin the values first"
        )
    if kinds.nunique() > 1:
        usual = kinds.value_counts().idxmax()
        odd = kinds != usual
        raise DatasetError(
            f"{where}: the labels are {usual}s except on {int(odd.sum())} row(s): {_rows(df, odd)}; "
            "fix those rows (labels of mixed kinds would each become a class)"
        )


def check_class_sizes(df: pd.DataFrame, where: str | Path, min_examples: int = MIN_CLASS_EXAMPLES) -> None:
    """At least two classes, each with ``min_examples`` training rows (a rarer label is most likely a typo)."""
    counts = df["label"].value_counts()
    if len(counts) < 2:
        raise DatasetError(
            f"{where}: every row has the label {counts.index[0]!r}; a classifier needs at least two classes"
        )
    small = counts[counts < min_examples]
    if len(small):
        desc = "; ".join(f"{label!r}: {_rows(df, df['label'] == label)}" for label in small.index[:5])
        raise DatasetError(
            f"{where}: {len(small)} class(es) with fewer than {min_examples} rows: {desc}. Fix the labels, or set "
            "task.min_class_examples=1 to train with such classes"
        )


def sorted_classes(labels: list[str] | pd.Series) -> list[str]:
    """Class names in label order: numeric order when every label is an integer, else sorted strings."""
    uniq = sorted(set(map(str, labels)))
    if all(u.lstrip("-").isdigit() for u in uniq):
        return [str(v) for v in sorted({int(u) for u in uniq})]
    return uniq


def _encode_labels(df: pd.DataFrame, classes: list[str], where: str) -> pd.DataFrame:
    numeric = all(c.lstrip("-").isdigit() for c in classes)
    key = df["label"].map(lambda v: str(int(v)) if numeric else str(v))
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(key) - set(index))
    if unknown:
        raise DatasetError(f"{where}: label(s) {unknown[:5]} not among the training classes {classes}")
    return pd.DataFrame({"sequence": df["sequence"].to_numpy(), "label": key.map(index).astype(int).to_numpy()})


def load_tables(
    train_path: str | Path,
    test_path: str | Path | None = None,
    val_path: str | Path | None = None,
    classes: list[str] | None = None,
    test_fraction: float | None = None,
    seed: int = 0,
    name: str = "csv",
    label_names: Mapping[Any, str] | None = None,
    min_class_examples: int = MIN_CLASS_EXAMPLES,
) -> TaskData:
    """CSV/TSV splits; without ``test_path``, ``test_fraction`` of train is held out (fixed ``seed``).

    ``label_names`` renames the labels found in the files (e.g. the Hugging Face copies' integers to the
    GenomicBenchmarks class names) before the sorted mapping is made. Labels of mixed kinds, a single
    class, or a class with fewer than ``min_class_examples`` training rows are errors naming the rows.
    """
    tables = [(p, read_table(p)) for p in (train_path, test_path, val_path) if p]
    for path, df in tables:
        check_label_kinds(df, path)
    check_class_sizes(tables[0][1], train_path, int(min_class_examples))
    train = _rename(tables[0][1], label_names, train_path)
    if test_path:
        test = _rename(tables[1][1], label_names, test_path)
    elif test_fraction:
        train, test = holdout(train, float(test_fraction), seed)
    else:
        raise DatasetError("task.test_path is not set (or set task.test_fraction to hold out part of train)")
    val = _rename(tables[-1][1], label_names, val_path) if val_path else None
    names = [str(c) for c in classes] if classes else sorted_classes(train["label"])
    return TaskData(
        name,
        names,
        _encode_labels(train, names, str(train_path)),
        _encode_labels(test, names, str(test_path or train_path)),
        None if val is None else _encode_labels(val, names, str(val_path)),
        source=f"tables {train_path}, {test_path or f'{test_fraction:.0%} of train'}",
    )


def holdout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (rest, held-out ``fraction``) with a seeded permutation."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    perm = np.random.default_rng(seed).permutation(len(df))
    n = max(1, int(round(fraction * len(df))))
    return df.iloc[np.sort(perm[n:])].reset_index(drop=True), df.iloc[np.sort(perm[:n])].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------
# the resolution order


def missing_data_message(task: str, data_dir: Path) -> str:
    return (
        f"no data found for GenomicBenchmarks task {task!r}. Any one of these works:\n"
        f"  - online: pip install genomic-benchmarks, then run again (it calls "
        f"genomic_benchmarks.loc2seq.download_dataset({task!r}, version=0, dest_path={str(data_dir)!r})), or run "
        f"that call yourself on a machine with network access and copy {data_dir / task} here;\n"
        f"  - put the sequences in the package's layout: {data_dir / task}/{{train,test}}/<class>/<id>.txt "
        f"(or set task.data_dir=DIR holding {task}/train and {task}/test);\n"
        f"  - coordinates + genome: task.coordinates_dir=DIR (holding {task}/metadata.yaml and "
        f"{{train,test}}/<class>.csv.gz from github.com/ML-Bioinfo-CEITEC/genomic_benchmarks, folder datasets/) "
        f"and task.reference_fasta=GENOME.fa (the Ensembl assembly named in that metadata.yaml);\n"
        f"  - tables: task.train_path=TRAIN.csv task.test_path=TEST.csv (columns sequence,label)."
    )


def load_task(task: Mapping[str, Any], seed: int = 0) -> TaskData:
    """Load the task a ``configs/task/*.yaml`` describes, from the first source that has it."""
    name = str(task["name"])
    classes = [str(c) for c in task["classes"]] if task.get("classes") else None
    if task.get("train_path"):
        return load_tables(
            task["train_path"],
            task.get("test_path"),
            task.get("val_path"),
            classes=classes,
            test_fraction=task.get("test_fraction"),
            seed=seed,
            name=name,
            label_names=task.get("label_names"),
            min_class_examples=int(task.get("min_class_examples", MIN_CLASS_EXAMPLES) or 0),
        )
    if task.get("source", "genomic_benchmarks") != "genomic_benchmarks":
        raise DatasetError(f"task {name!r}: set task.train_path (and task.test_path) to the CSV/TSV files")
    data_dir = Path(task.get("data_dir") or PACKAGE_CACHE).expanduser()
    found = find_package_dir(data_dir, name)
    if found:
        return load_package_dir(found, classes, name)
    if task.get("download", True):
        try:
            path = download_package_dataset(name, data_dir, int(task.get("version", 0)))
            return load_package_dir(path, classes, name)
        except ImportError:
            log.info("genomic-benchmarks is not installed: no download of %s", name)
        except Exception as e:  # offline: DNS / HTTP / Zenodo errors, whatever the package raises
            log.warning("download_dataset(%r) failed: %s", name, e)
    if task.get("coordinates_dir") and task.get("reference_fasta"):
        return load_coordinates(task["coordinates_dir"], name, task["reference_fasta"], classes)
    raise DatasetError(missing_data_message(name, data_dir))


def tokenize(seqs: list[str] | pd.Series, where: str) -> list[np.ndarray]:
    """Sequences -> uint8 id arrays (upper-cased; IUPAC -> N; U -> T, each counted in one warning); a bad
    character names the row."""
    tok = NucleotideTokenizer()
    out, total = [], EncodeStats()
    for i, s in enumerate(seqs):
        try:
            ids, st = tok.encode_bytes(str(s).encode("ascii", errors="replace"), where=f"{where}: sequence {i + 1}")
        except TokenizerError as e:
            raise DatasetError(str(e)) from None
        total.add(st)
        out.append(strip_soft_mask(ids))
    if total.u_as_t:
        log.warning("%s: %d U (RNA) read as T", where, total.u_as_t)
    if total.iupac_to_n:
        log.warning("%s: %d IUPAC ambiguity codes mapped to N (%s)", where, total.iupac_to_n, total.by_code)
    return out
