"""Read a FASTA once, tokenize it, and keep the ids in a memory-mapped cache.

Training never parses FASTA: every record is tokenized once into a flat uint8
array (one byte per base, soft-mask kept in the high bit) that is memory-mapped
for random access. The FASTA is read with pyfaidx where it can be indexed
(plain or bgzipped files: records are read in bounded chunks, so a 250 Mb
chromosome never needs to sit in memory as text) and streamed with Biopython
otherwise (plain gzip, irregular line lengths).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mdlm_dna.data.tokenizers import EncodeStats, NucleotideTokenizer, TokenizerError
from mdlm_dna.utils.errors import DataError, RunDirError
from mdlm_dna.utils.rundir import check_free_space

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: U read as T, whitespace inside sequence lines stripped (both counted)
_CHUNK = 1 << 24  # bases read per pyfaidx call
_WHITESPACE = b" \t\r\v\f"  # ASCII whitespace inside sequence lines: dropped and counted, whichever reader
_U_TO_T = bytes.maketrans(b"Uu", b"Tt")  # RNA written as U: the same base as T (the case keeps the soft-mask)


class FastaError(DataError):
    """The file cannot be used as a genome; the message names the file and the problem."""


@contextlib.contextmanager
def _read_errors(path: Path):
    """A truncated or corrupt (b)gzip surfaces as EOFError / struct.error / zlib.error in a reader: name the file."""
    try:
        yield
    except (EOFError, struct.error, zlib.error, gzip.BadGzipFile) as e:
        raise FastaError(
            f"{path}: truncated or corrupt compressed file ({type(e).__name__}: {e}); download or compress it again"
        ) from e


def clean_sequence(raw: bytes) -> tuple[bytes, int, int]:
    """Sequence bytes with ASCII whitespace dropped and U read as T; returns them, #whitespace, #U.

    The one rule both readers apply, so a FASTA gives the same bases whichever reads it.
    """
    kept = raw.translate(None, _WHITESPACE)
    n_u = kept.count(b"U") + kept.count(b"u")
    return (kept.translate(_U_TO_T) if n_u else kept), len(raw) - len(kept), n_u


@dataclass(frozen=True)
class Record:
    name: str
    offset: int  # start in the flat id array
    length: int


@dataclass
class Genome:
    """Token ids of every record of a FASTA, memory-mapped, with soft-mask bits.

    ``ids`` is the cache's ``np.memmap`` (the array path) or a :class:`PyfaidxIds` (the pyfaidx
    path); both are sliced the same way. A Genome pickles as file names, not bases, so that
    DataLoader workers started with ``spawn`` / ``forkserver`` re-open the map instead of
    receiving a copy of the genome.
    """

    path: Path
    records: list[Record]
    ids: np.ndarray  # uint8, flat; record r occupies ids[r.offset : r.offset + r.length]
    stats: dict
    ids_file: Path | None = None  # the memory-mapped cache file, when ids is one

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.ids_file is not None and isinstance(self.ids, np.memmap):
            state["ids"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.ids is None:
            self.ids = np.memmap(self.ids_file, dtype=np.uint8, mode="r", shape=(len(self),))

    def lengths(self) -> dict[str, int]:
        return {r.name: r.length for r in self.records}

    def record(self, name: str) -> Record:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(f"{self.path}: no record named {name!r}; records: {[r.name for r in self.records][:20]}")

    def __len__(self) -> int:
        return sum(r.length for r in self.records)


def default_cache_dir() -> Path:
    return Path(os.environ.get("MDLM_DNA_CACHE", Path.home() / ".cache" / "mdlm_dna"))


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_text(path: Path):
    if _is_gzip(path):
        return gzip.open(path, "rt", newline=None)
    return open(path, encoding="ascii", errors="replace", newline=None)


def check_fasta(path: Path) -> None:
    """Fail early, with the file's name, on a path that cannot be a FASTA."""
    if not path.exists():
        raise FileNotFoundError(f"FASTA file not found: {path}")
    if path.is_dir():
        raise FastaError(f"{path}: is a directory, expected a FASTA file")
    if path.stat().st_size == 0:
        raise FastaError(f"{path}: file is empty")
    try:
        with _open_text(path) as fh:
            head = fh.read(4096)
    except (OSError, EOFError) as e:  # e.g. a truncated or corrupt gzip
        raise FastaError(f"{path}: cannot be read as (gzipped) text: {e}") from e
    first = head.lstrip()
    if not first:
        raise FastaError(f"{path}: contains no sequence (only whitespace)")
    if not first.startswith(">"):
        line = first.splitlines()[0][:60]
        raise FastaError(f"{path}: does not look like FASTA: the first line should start with '>', got {line!r}")


def open_pyfaidx(path: Path, index_dir: Path):
    """A raw, case-preserving pyfaidx handle whose .fai/.gzi live in ``index_dir`` (genome folders may be read-only)."""
    import pyfaidx

    stem = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    try:
        with _read_errors(path):
            return pyfaidx.Fasta(
                str(path),
                indexname=str(index_dir / f"{stem}.fai"),
                gzi_indexname=str(index_dir / f"{stem}.gzi"),
                as_raw=True,
                sequence_always_upper=False,
                read_long_names=False,
                duplicate_action="stop",
            )
    except ValueError as e:
        if "Duplicate key" not in str(e):
            raise
        name = str(e).split("Duplicate key", 1)[1].strip().strip('"')
        raise FastaError(
            f"{path}: record name {name!r} occurs twice; every record needs its own name (the first word after '>')"
        ) from None


def _iter_records_pyfaidx(path: Path, index_dir: Path) -> Iterator[tuple[str, int, Iterator[bytes], int]]:
    fa = open_pyfaidx(path, index_dir)
    try:
        for name in fa.keys():
            n = len(fa[name])

            def chunks(name=name, n=n) -> Iterator[bytes]:
                with _read_errors(path):
                    for start in range(0, n, _CHUNK):
                        yield fa[name][start : min(n, start + _CHUNK)].encode("ascii", errors="replace")

            yield name, n, chunks(), 0
    finally:
        fa.close()


def _iter_records_biopython(path: Path) -> Iterator[tuple[str, int, Iterator[bytes], int]]:
    """Records of a file pyfaidx cannot index (plain gzip, irregular line lengths), streamed by Biopython.

    Biopython itself drops spaces and line-end whitespace; :class:`_DroppedWhitespace` counts those
    on the way in, so that both readers report the same number (tabs it keeps are dropped later).
    """
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    with _read_errors(path), _open_text(path) as fh:
        lines = _DroppedWhitespace(fh)
        for title, seq in SimpleFastaParser(lines):
            name = title.split(None, 1)[0] if title.strip() else ""
            raw = seq.encode("ascii", errors="replace")
            yield name, len(raw), iter([raw]), lines.take()  # Biopython has read just the record (and the next '>')


class _DroppedWhitespace:
    """The lines of a FASTA, passed through, counting the whitespace Biopython drops from sequence lines."""

    def __init__(self, fh):
        self.fh, self.count = fh, 0

    def __iter__(self) -> Iterator[str]:
        for line in self.fh:
            if not line.startswith(">"):
                body = line.rstrip("\n")
                self.count += len(body) - len(body.rstrip().replace(" ", "").replace("\r", ""))
            yield line

    def take(self) -> int:
        n, self.count = self.count, 0
        return n


def _iter_records(path: Path, index_dir: Path) -> Iterator[tuple[str, int, Iterator[bytes], int]]:
    """(name, length as stored, chunks of raw sequence bytes, whitespace the reader already dropped) per record."""
    import pyfaidx

    try:
        yield from _iter_records_pyfaidx(path, index_dir)
        return
    except pyfaidx.UnsupportedCompressionFormat:
        log.info("%s is plain gzip (not bgzip): streaming it with Biopython", path)
    except pyfaidx.FastaIndexingError as e:
        log.info("%s cannot be indexed by pyfaidx (%s): streaming it with Biopython", path, e)
    yield from _iter_records_biopython(path)


def _cache_key(path: Path, records: Sequence[str] | None) -> str:
    st = path.stat()
    key = json.dumps([CACHE_VERSION, str(path.resolve()), st.st_size, st.st_mtime_ns, list(records or [])])
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def load_genome(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    records: Sequence[str] | None = None,
    min_record_length: int = 1,
) -> Genome:
    """Tokenize ``path`` into the cache (once) and return its memory-mapped ids.

    ``records`` keeps only the named records (e.g. chr1..chr22); empty records
    and records shorter than ``min_record_length`` are skipped with a warning.
    """
    path = Path(path).expanduser()
    check_fasta(path)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = _cache_key(path, records)
    ids_file = cache / f"{path.name}.{key}.u8"
    meta_file = cache / f"{path.name}.{key}.json"
    if not (ids_file.exists() and meta_file.exists()):
        _build_cache(path, cache, ids_file, meta_file, records, min_record_length)
    meta = json.loads(meta_file.read_text())
    recs = [Record(**r) for r in meta["records"]]
    total = sum(r.length for r in recs)
    ids = np.memmap(ids_file, dtype=np.uint8, mode="r", shape=(total,))
    return Genome(path=path, records=recs, ids=ids, stats=meta["stats"], ids_file=ids_file)


class PyfaidxIds:
    """The pyfaidx path: slices of the flat id array read from the FASTA itself, no token cache.

    ``ids[a:b]`` returns what the memory-mapped cache holds at ``[a, b)`` (same ids, same
    soft-mask bit), read through pyfaidx and tokenized on the fly. A slice must lie inside one
    record, as every window does. The pyfaidx handle is opened lazily in the process that
    reads, and re-opened after a fork: DataLoader workers never share a file handle.
    """

    def __init__(self, path: Path, records: Sequence[Record], index_dir: Path):
        self.path, self.records, self.index_dir = path, list(records), index_dir
        self._offsets = np.array([r.offset for r in self.records], dtype=np.int64)
        self._fa = None
        self._pid: int | None = None
        self._tok = NucleotideTokenizer()

    def _handle(self):
        if self._fa is None or self._pid != os.getpid():
            self._fa = open_pyfaidx(self.path, self.index_dir)  # a forked copy's handle is dropped, not closed
            self._pid = os.getpid()
        return self._fa

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fa": None, "_pid": None}

    def __len__(self) -> int:
        return sum(r.length for r in self.records)

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("the pyfaidx path reads contiguous slices ids[a:b] only")
        start, stop = key.start or 0, key.stop if key.stop is not None else len(self)
        if stop <= start:
            return np.zeros(0, dtype=np.uint8)
        j = int(np.searchsorted(self._offsets, start, side="right")) - 1
        if j < 0 or stop > self.records[j].offset + self.records[j].length:
            raise IndexError(f"{self.path}: slice [{start}, {stop}) does not lie inside one record")
        r = self.records[j]
        a = start - r.offset
        raw = self._handle()[r.name][a : a + (stop - start)].encode("ascii", errors="replace")
        if len(raw.translate(None, _WHITESPACE)) != len(raw):
            ws = next(i for i, b in enumerate(raw) if b in _WHITESPACE)
            raise FastaError(
                f"{self.path}, record {r.name!r}: whitespace inside a sequence line at position {a + ws:,}; "
                "genome.reader=pyfaidx reads positions as they are in the file: use genome.reader=array (which drops "
                "whitespace) or remove it from the file"
            )
        try:
            ids, _ = self._tok.encode_bytes(raw.translate(_U_TO_T), where=f"{self.path}, record {r.name!r}", offset=a)
        except TokenizerError as e:
            raise FastaError(str(e)) from None
        return ids


def open_genome_pyfaidx(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    records: Sequence[str] | None = None,
    min_record_length: int = 1,
) -> Genome:
    """The same :class:`Genome` as :func:`load_genome` (same records and offsets), read through pyfaidx.

    Needs a plain or bgzipped FASTA with regular line lengths (what pyfaidx can index); the
    index goes to the cache folder. No token cache is written.
    """
    import pyfaidx

    path = Path(path).expanduser()
    check_fasta(path)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        fa = open_pyfaidx(path, cache)
    except pyfaidx.UnsupportedCompressionFormat:
        raise FastaError(
            f"{path}: plain gzip cannot be read at random positions; for genome.reader=pyfaidx use a plain "
            "FASTA (gunzip it) or a bgzipped one (bgzip it), or use genome.reader=array"
        ) from None
    except pyfaidx.FastaIndexingError as e:
        raise FastaError(f"{path}: pyfaidx cannot index it ({e}); use genome.reader=array") from None
    try:
        lengths = [(name, len(fa[name])) for name in fa.keys()]
    finally:
        fa.close()
    if records is not None and (missing := [n for n in records if n not in dict(lengths)]):
        raise FastaError(f"{path}: records not found: {missing}")
    recs, offset = [], 0
    for name, n in lengths:
        if (records is not None and name not in records) or n < max(1, min_record_length):
            continue
        recs.append(Record(name=name, offset=offset, length=n))
        offset += n
    if not recs:
        raise FastaError(f"{path}: no usable sequence")
    return Genome(path=path, records=recs, ids=PyfaidxIds(path, recs, cache), stats={"bases": offset})


def _build_cache(
    path: Path,
    cache: Path,
    ids_file: Path,
    meta_file: Path,
    keep: Sequence[str] | None,
    min_record_length: int,
) -> None:
    tok = NucleotideTokenizer()
    stats = EncodeStats()
    recs: list[Record] = []
    seen: set[str] = set()
    skipped: list[str] = []
    offset = whitespace = n_u = 0
    if not _is_gzip(path):  # one byte per base: at most the file's size
        check_free_space(cache, path.stat().st_size, f"the token cache of {path.name}", " or set cache_dir=DIR")
    tmp_ids = ids_file.with_name(f"{ids_file.name}.tmp{os.getpid()}")
    # a bar over the bytes of the file (plain) or over the bases written (gzip): on a terminal only
    bar = tqdm(total=None if _is_gzip(path) else path.stat().st_size, unit="B", unit_scale=True, disable=None,
               desc=f"token cache of {path.name}", leave=False)
    try:
        with bar, open(tmp_ids, "wb") as out:
            for name, length, chunks, dropped in _iter_records(path, cache):
                whitespace += dropped
                if keep is not None and name not in keep:
                    continue
                if name in seen:
                    raise FastaError(f"{path}: record name {name!r} occurs twice")
                seen.add(name)
                if length < max(1, min_record_length):
                    skipped.append(f"{name} ({length} bp)")
                    continue
                pos = 0
                for raw in chunks:
                    raw, n_ws, n_u_chunk = clean_sequence(raw)
                    whitespace, n_u = whitespace + n_ws, n_u + n_u_chunk
                    try:
                        ids, st = tok.encode_bytes(raw, where=f"{path}, record {name!r}", offset=pos)
                    except TokenizerError as e:
                        raise FastaError(str(e)) from None
                    stats.add(st)
                    out.write(ids.tobytes())
                    pos += len(raw)
                    bar.update(len(raw))
                if pos < max(1, min_record_length):  # shorter once whitespace is gone
                    skipped.append(f"{name} ({pos} bp)")
                    out.seek(offset)
                    out.truncate()
                    continue
                recs.append(Record(name=name, offset=offset, length=pos))
                offset += pos
            out.flush()
            os.fsync(out.fileno())
        if keep is not None and (missing := [n for n in keep if n not in seen]):
            raise FastaError(f"{path}: records not found: {missing}")
        if not recs:
            raise FastaError(f"{path}: no usable sequence (records skipped: {skipped or 'none found'})")
        if skipped:
            log.warning("%s: skipped %d short or empty record(s): %s", path, len(skipped), ", ".join(skipped[:10]))
        if stats.iupac_to_n:
            log.warning("%s: %d IUPAC ambiguity codes mapped to N (%s)", path, stats.iupac_to_n, stats.by_code)
        if n_u:
            log.warning("%s: %d U read as T (an RNA sequence, or U for T)", path, n_u)
        if whitespace:
            log.warning("%s: %d whitespace characters inside sequence lines dropped", path, whitespace)
        meta = {
            "source": str(path.resolve()),
            "records": [r.__dict__ for r in recs],
            "stats": {
                "bases": offset,
                "iupac_to_n": stats.iupac_to_n,
                "iupac_codes": stats.by_code,
                "soft_masked": stats.soft_masked,
                "u_as_t": n_u,
                "whitespace_dropped": whitespace,
                "skipped_records": skipped,
            },
        }
        tmp_meta = meta_file.with_name(f"{meta_file.name}.tmp{os.getpid()}")
        tmp_meta.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_ids, ids_file)
        os.replace(tmp_meta, meta_file)  # the metadata appears last: its presence marks a complete cache
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise RunDirError(
            f"no space left in the token cache folder {cache} while tokenizing {path} ({offset / 1e6:,.1f} MB "
            "written, one byte per base); free some space or set cache_dir=DIR on a larger disk"
        ) from e
    finally:
        tmp_ids.unlink(missing_ok=True)
