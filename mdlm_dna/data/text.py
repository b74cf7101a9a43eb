"""Text corpora for the same objectives and backbones: documents -> token blocks cached on disk -> batches.

A corpus is tokenized once into a memory-mapped array of ``[rows, seq_len]`` ids (uint16 when the
vocabulary fits, else uint32) under the cache directory, keyed by the corpus, split, tokenizer and
block layout, and reused by every later run. Two layouts, as in the MDLM paper:

* ``wrap: false`` (LM1B's main setting): every document is framed as ``[BOS] doc [EOS]`` and padded
  to ``seq_len``; a document longer than a row continues on the next rows (nothing is truncated).
* ``wrap: true`` (OpenWebText): framed documents are concatenated into one stream that is cut into
  rows of ``seq_len``; only the very last row is padded.

Padding is [PAD], which the objectives exclude from the loss and never mask. Documents come from
the Hugging Face Hub through ``datasets`` (LM1B, OpenWebText, WikiText-103) or from local text files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mdlm_dna.data.base import ResumableDataModule
from mdlm_dna.data.fasta import default_cache_dir
from mdlm_dna.data.tokenizers import TextTokenizer, build_tokenizer
from mdlm_dna.data.windows import evenly_spaced

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
CACHE_VERSION = 1
ENCODE_BATCH = 1000  # documents per call to the fast tokenizer


class TextDataError(ValueError):
    """A text source that cannot be read as configured."""


# ----- documents ---------------------------------------------------------------------------------


def split_documents(text: str, unit: str) -> list[str]:
    """A file's text -> documents: the whole ``file``, blank-line separated ``paragraph``s, or ``line``s."""
    if unit == "file":
        docs = [text]
    elif unit == "paragraph":
        docs = re.split(r"\n\s*\n", text)
    elif unit == "line":
        docs = text.splitlines()
    else:
        raise TextDataError(f"data.document must be 'file', 'paragraph' or 'line', got {unit!r}")
    return [d.strip() for d in docs if d.strip()]


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TextDataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from e


def file_documents(cfg: dict[str, Any], split: str) -> list[str]:
    """Documents of ``split`` from local files.

    ``paths`` are the training files. ``val_paths`` / ``test_paths`` name held-out files; when they
    are empty, the last ``val_fraction`` / ``test_fraction`` of the training documents are held out
    instead (test last, validation just before it), so the three splits never share a document.
    """
    unit = cfg.get("document", "paragraph")
    own = {"validation": "val_paths", "test": "test_paths"}.get(split)
    if own and cfg.get(own):
        return [d for p in cfg[own] for d in split_documents(_read_text(Path(p).expanduser()), unit)]
    paths = cfg.get("paths") or []
    if not paths:
        raise TextDataError("data=text_files needs data.paths=[FILE, ...] (UTF-8 text files)")
    docs = [d for p in paths for d in split_documents(_read_text(Path(p).expanduser()), unit)]
    n = len(docs)
    n_test = 0 if cfg.get("test_paths") else int(round(n * float(cfg.get("test_fraction", 0.05))))
    n_val = 0 if cfg.get("val_paths") else int(round(n * float(cfg.get("val_fraction", 0.05))))
    bounds = {"train": (0, n - n_val - n_test), "validation": (n - n_val - n_test, n - n_test), "test": (n - n_test, n)}
    lo, hi = bounds[split]
    if hi <= lo:
        raise TextDataError(
            f"{', '.join(map(str, paths))}: {n} documents (data.document={unit}) leave none for the {split} split; "
            "give more text, other fractions, or data.val_paths / data.test_paths"
        )
    return docs[lo:hi]


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub endpoint accepts a TCP connection (a quick check before a download)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_offline_mode() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def hub_documents(cfg: dict[str, Any], split: str) -> Iterator[str]:
    """Documents of ``split`` from a Hugging Face dataset (downloaded once into the datasets cache)."""
    hub = cfg["hub"]
    ident = hub["path"] + (f" ({hub['name']})" if hub.get("name") else "")
    if not _hub_offline_mode() and not hub_reachable():
        raise ConnectionError(
            f"cannot reach the Hugging Face Hub to download the {ident} dataset. Run once on a machine that is "
            "online (the dataset is cached in ~/.cache/huggingface), then set HF_DATASETS_OFFLINE=1 "
            "HF_HUB_OFFLINE=1 to use that cache offline; or train on local files: data=text_files "
            "data.paths=[FILE, ...]"
        )
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"the {ident} dataset needs the `datasets` package: pip install 'mdlm-dna[text]'") from e
    hf_split = hub["splits"][split]
    try:
        ds = datasets.load_dataset(hub["path"], hub.get("name"), split=hf_split, revision=hub.get("revision"))
    except Exception as e:  # network, auth, a renamed split: say which dataset and split
        raise TextDataError(f"loading {ident} split {hf_split!r} from the Hugging Face Hub failed: {e}") from e
    field = hub.get("text_field", "text")
    if field not in ds.column_names:
        raise TextDataError(f"{ident}: no column {field!r} (columns: {ds.column_names}); set data.hub.text_field")
    group = hub.get("group")
    texts = (row[field] for row in ds)
    yield from (group_wikitext_articles(texts) if group == "wikitext_articles" else (t for t in texts if t.strip()))


def group_wikitext_articles(lines: Iterable[str]) -> Iterator[str]:
    """WikiText rows are lines; an article starts at a top-level heading `` = Title = ``."""
    article: list[str] = []
    for line in lines:
        if re.fullmatch(r" = [^=].*[^=] = \n?", line) and article:
            yield "".join(article).strip()
            article = []
        article.append(line)
    if "".join(article).strip():
        yield "".join(article).strip()


def documents(cfg: dict[str, Any], split: str) -> Iterable[str]:
    source = cfg.get("source")
    if source == "files":
        return file_documents(cfg, split)
    if source == "hub":
        return hub_documents(cfg, split)
    raise TextDataError(f"data.source must be 'hub' or 'files', got {source!r}")


# ----- token blocks ------------------------------------------------------------------------------


def _rows_from_documents(
    docs: Iterable[list[int]], tok: TextTokenizer, seq_len: int, wrap: bool, block_tokens: int = 1 << 20
) -> Iterator[np.ndarray]:
    """Framed documents -> arrays of rows ``[n, seq_len]``; every document token appears exactly once.

    Work is done in numpy on blocks of about ``block_tokens`` tokens, so that tokenizing a corpus of
    billions of tokens is limited by the tokenizer, not by Python list handling.
    """
    if seq_len < 2:
        raise TextDataError(f"data.seq_len must be at least 2 for text (BOS + EOS), got {seq_len}")
    bos, eos, pad = np.int64(tok.bos_id), np.int64(tok.eos_id), tok.pad_id
    parts: list[np.ndarray] = []
    size = 0

    def padded(a: np.ndarray) -> np.ndarray:
        rows = -(-len(a) // seq_len)
        out = np.full(rows * seq_len, pad, dtype=np.int64)
        out[: len(a)] = a
        return out.reshape(rows, seq_len)

    for ids in docs:
        framed = np.concatenate(([bos], np.asarray(ids, dtype=np.int64), [eos]))
        parts.append(framed if wrap else padded(framed))
        size += framed.size
        if size >= block_tokens:
            if wrap:
                stream = np.concatenate(parts)
                full = len(stream) // seq_len * seq_len
                yield stream[:full].reshape(-1, seq_len)
                parts, size = [stream[full:]], len(stream) - full
            else:
                yield np.concatenate(parts)
                parts, size = [], 0
    if parts:
        if wrap:
            stream = np.concatenate(parts)
            if len(stream):
                yield padded(stream)  # only the very last row is padded
        else:
            yield np.concatenate(parts)


def _tokenizer_fingerprint(tok: TextTokenizer) -> str:
    vocab = sorted(tok.hf.get_vocab().items())
    return hashlib.sha256(json.dumps([tok.name, vocab, tok.bos_id, tok.eos_id, tok.pad_id]).encode()).hexdigest()[:16]


def _source_fingerprint(cfg: dict[str, Any], split: str) -> dict[str, Any]:
    if cfg.get("source") == "files":
        files = [*(cfg.get("paths") or []), *(cfg.get("val_paths") or []), *(cfg.get("test_paths") or [])]
        stats = []
        for p in files:
            path = Path(p).expanduser().resolve()
            st = path.stat() if path.exists() else None
            stats.append([str(path), st.st_size if st else None, st.st_mtime_ns if st else None])
        keys = ("document", "val_fraction", "test_fraction")
        return {"files": stats, **{k: cfg.get(k) for k in keys}, "split": split}
    return {"hub": cfg.get("hub"), "split": split}


def cache_key(cfg: dict[str, Any], split: str, tok: TextTokenizer) -> str:
    spec = {
        "v": CACHE_VERSION,
        "source": _source_fingerprint(cfg, split),
        "tokenizer": _tokenizer_fingerprint(tok),
        "seq_len": int(cfg["seq_len"]),
        "wrap": bool(cfg.get("wrap", False)),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def build_blocks(
    docs: Iterable[str], tok: TextTokenizer, seq_len: int, wrap: bool, out_dir: Path, desc: str = "tokenizing"
) -> Path:
    """Tokenize ``docs`` into ``out_dir/ids.bin`` + ``meta.json``; written in a temporary folder, then renamed."""
    dtype = np.uint16 if tok.vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    stats = {"documents": 0, "tokens": 0}

    def encoded() -> Iterator[list[int]]:
        batch: list[str] = []
        bar = tqdm(desc=desc, unit=" docs", mininterval=2.0, disable=None)
        for doc in docs:
            batch.append(doc)
            if len(batch) == ENCODE_BATCH:
                yield from encode(batch, bar)
                batch = []
        yield from encode(batch, bar)
        bar.close()

    def encode(batch: list[str], bar) -> Iterator[list[int]]:
        if not batch:
            return
        for ids in tok.encode_batch(batch):
            stats["documents"] += 1
            stats["tokens"] += len(ids)
            yield ids
        bar.update(len(batch))

    try:
        rows = 0
        with open(tmp / "ids.bin", "wb") as fh:
            for block in _rows_from_documents(encoded(), tok, seq_len, wrap):
                fh.write(block.astype(dtype).tobytes())
                rows += len(block)
        if rows == 0:
            raise TextDataError(f"{desc}: the corpus has no document with text")
        meta = {
            "rows": rows,
            "seq_len": seq_len,
            "dtype": np.dtype(dtype).name,
            "wrap": wrap,
            "tokenizer": tok.name,
            "pad_id": tok.pad_id,
            **stats,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, out_dir)  # atomic; fails if another process (another node's rank 0) finished first
        except OSError:
            if not (out_dir / "meta.json").exists():
                raise
            shutil.rmtree(tmp)  # theirs is complete (same key, same content): keep it
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


class TextBlocks(Dataset):
    """The cached ``[rows, seq_len]`` id array of one split; opened lazily so forked workers map it themselves."""

    def __init__(self, cache: Path):
        self.cache = Path(cache)
        self.meta = json.loads((self.cache / "meta.json").read_text())
        self._ids: np.ndarray | None = None

    @property
    def ids(self) -> np.ndarray:
        if self._ids is None:
            shape = (self.meta["rows"], self.meta["seq_len"])
            self._ids = np.memmap(self.cache / "ids.bin", dtype=self.meta["dtype"], mode="r", shape=shape)
        return self._ids

    def __getstate__(self):
        return {**self.__dict__, "_ids": None}

    def __len__(self) -> int:
        return int(self.meta["rows"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.from_numpy(self.ids[i].astype(np.int64))}


class ShuffledRows(Dataset):
    """Training samples: sample ``s`` is row ``perm_p[s mod rows]`` of pass ``p = s // rows``.

    A pure function of (seed, s), like the genome's random windows, so that a resumed run continues
    with exactly the samples it would have seen, on any number of workers.
    """

    def __init__(self, blocks: TextBlocks, num_samples: int, seed: int):
        self.blocks, self.num_samples, self.seed = blocks, num_samples, seed
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_samples

    def _row(self, s: int) -> int:
        rows = len(self.blocks)
        p, r = divmod(int(s), rows)
        if self._perm is None or self._perm[0] != p:
            self._perm = (p, np.random.default_rng([self.seed, p]).permutation(rows))
        return int(self._perm[1][r])

    def __getitem__(self, s: int) -> dict[str, torch.Tensor]:
        return self.blocks[self._row(s)]


# ----- DataModule --------------------------------------------------------------------------------


class TextDataModule(ResumableDataModule):
    """Pretraining on a text corpus; ``data`` is the run config's ``data`` section (``kind: text``)."""

    def __init__(self, data: dict[str, Any], seed: int = 0, cache_dir: str | None = None, tokenizer=None):
        super().__init__(data, seed)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.tokenizer = tokenizer
        self.blocks: dict[str, TextBlocks] = {}

    def _tok(self) -> TextTokenizer:
        if self.tokenizer is None:
            self.tokenizer = build_tokenizer(self.data_cfg.get("tokenizer"))
        if not isinstance(self.tokenizer, TextTokenizer):
            raise TextDataError("text data needs a text tokenizer: set data.tokenizer.name / data.tokenizer.path")
        return self.tokenizer

    def cache_path(self, split: str) -> Path:
        return self.cache_dir / "text" / cache_key(self.data_cfg, split, self._tok())

    def load_split(self, split: str) -> TextBlocks:
        """The split's token blocks, tokenizing the corpus first if no cache holds them yet."""
        if split not in self.blocks:
            path = self.cache_path(split)
            if not (path / "meta.json").exists():
                name = self.data_cfg.get("name", "text")
                log.info("tokenizing %s %s into %s (once; later runs reuse it)", name, split, path)
                build_blocks(
                    documents(self.data_cfg, split),
                    self._tok(),
                    int(self.data_cfg["seq_len"]),
                    bool(self.data_cfg.get("wrap", False)),
                    path,
                    desc=f"tokenizing {name} {split}",
                )
            self.blocks[split] = TextBlocks(path)
            m = self.blocks[split].meta
            log.info("%s: %d rows of %d tokens (%d documents, %d tokens)", split, m["rows"], m["seq_len"],
                     m["documents"], m["tokens"])
        return self.blocks[split]

    @staticmethod
    def _splits_for(stage: str | None) -> tuple[str, ...]:
        return {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",)}.get(stage, SPLITS)

    def prepare_data(self) -> None:
        # tokenize on one process per node before the others map the cache
        fn = self.trainer.state.fn if self.trainer is not None else None
        for split in self._splits_for(getattr(fn, "value", fn)):
            self.load_split(split)

    def setup(self, stage: str | None = None) -> None:
        for split in self._splits_for(stage):
            self.load_split(split)

    def train_dataloader(self) -> DataLoader:
        n = self.train_samples_per_epoch()
        return self._train_loader(ShuffledRows(self.load_split("train"), n, self.seed), n)

    def _eval_loader(self, split: str) -> DataLoader:
        blocks = self.load_split(split)
        key = f"{'val' if split == 'validation' else 'test'}_max_windows"
        subset = torch.utils.data.Subset(blocks, evenly_spaced(len(blocks), self.data_cfg.get(key)))
        return self._eval_loader_for(subset)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
