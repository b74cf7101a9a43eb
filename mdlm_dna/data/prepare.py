"""Fetch, verify, unpack and index a pretraining genome once, before any training run (the library side of
``python -m mdlm_dna.prepare``).

    python -m mdlm_dna.prepare hg38 --out DIR
    python -m mdlm_dna.prepare fasta URL [--md5 HEX | --sha256 HEX] [--bed URL] --out DIR

``hg38`` fetches what ``configs/genome/hg38.yaml`` lists under ``download`` (the UCSC FASTA and
the fold BED), checks them against their published checksums, unpacks the FASTA (pyfaidx
needs a plain or bgzipped file), tokenizes it into the memory-mapped token cache that training
reads, and checks every BED interval against the chromosome lengths. Run it again at any time:
finished steps are verified and skipped, an interrupted download resumes. Offline, it stops at
once and says which files to fetch elsewhere and where to put them. Afterwards:
``python -m mdlm_dna.pretrain genome=hg38 genome.root=DIR``.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm import tqdm

from mdlm_dna.data.download import DownloadError, OfflineError, RemoteFile, download
from mdlm_dna.utils.errors import UserError
from mdlm_dna.utils.resources import config_dir

log = logging.getLogger("mdlm_dna.prepare")


class PrepareError(UserError, RuntimeError):
    """A step failed; the message says what to do."""


@dataclass(frozen=True)
class Item:
    """One file of a genome: the remote file, and the name it is unpacked to (None: used as downloaded)."""

    remote: RemoteFile
    unpack: str | None = None

    def ready_name(self) -> str:
        return self.unpack or self.remote.name


def genome_config(name: str, root: Path) -> dict[str, Any]:
    """``configs/genome/NAME.yaml`` with ``root`` set and interpolations resolved."""
    path = config_dir() / "genome" / f"{name}.yaml"
    if not path.exists():
        raise PrepareError(f"no genome config {path}")
    cfg = OmegaConf.load(path)
    cfg.root = str(root)
    return OmegaConf.to_container(cfg, resolve=True)


def items_from_config(cfg: dict[str, Any]) -> list[Item]:
    dl = cfg.get("download") or {}
    if not dl:
        raise PrepareError(f"genome {cfg.get('name')!r} has no download section")
    items = []
    for spec in dl.values():
        spec = dict(spec)
        unpack = spec.pop("unpack", None)
        items.append(Item(RemoteFile(**spec), unpack))
    return items


def offline_message(items: list[Item], out: Path, err: Exception, command: str) -> str:
    lines = [
        f"cannot download ({err}); this machine looks offline.",
        f"Fetch these files elsewhere and put them in {out}/:",
    ]
    for it in items:
        if (out / it.ready_name()).exists():
            continue
        f = it.remote
        lines.append(
            f"  {out / f.name}\n      from {f.url}\n      {f.checksum_text()}" + (f"  [{f.what}]" if f.what else "")
        )
    lines.append(f"then run `{command}` again: it verifies them and builds the index without the network.")
    return "\n".join(lines)


def unpack_gzip(src: Path, dst: Path) -> None:
    """Stream-decompress to ``dst`` via a ``.part`` file (a killed run never leaves a truncated FASTA)."""
    part = dst.with_name(dst.name + ".part")
    t0 = time.time()
    bar = tqdm(total=src.stat().st_size, unit="B", unit_scale=True, desc=f"gunzip {src.name}", leave=False,
               disable=None)  # compressed bytes read: on a terminal only
    with bar, open(src, "rb") as raw, gzip.open(raw, "rb") as fin, open(part, "wb") as fout:
        while block := fin.read(1 << 24):
            fout.write(block)
            bar.update(raw.tell() - bar.n)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(part, dst)
    log.info("unpacked %s -> %s (%.1f GB, %.0f s)", src.name, dst.name, dst.stat().st_size / 1e9, time.time() - t0)


def fetch_all(items: list[Item], out: Path, command: str, retries: int = 5, timeout: float = 60.0) -> None:
    """Download (or verify what is there) and unpack every item; offline: a PrepareError listing what to fetch."""
    out.mkdir(parents=True, exist_ok=True)
    for it in items:
        ready = out / it.ready_name()
        if it.unpack and ready.exists():
            log.info("%s: present (unpacked earlier), skipping its download", ready)
            continue
        try:
            path = download(it.remote, out, retries=retries, timeout=timeout)
        except OfflineError as e:
            raise PrepareError(offline_message(items, out, e, command)) from None
        except DownloadError as e:
            raise PrepareError(str(e)) from None
        if it.unpack:
            unpack_gzip(path, ready)


def build_index(cfg: dict[str, Any], cache_dir: str | None) -> dict[str, Any]:
    """Tokenize the FASTA into the token cache training reads, index it for pyfaidx, check the BED."""
    from mdlm_dna.data.datamodule import load_split_genome
    from mdlm_dna.data.fasta import open_genome_pyfaidx

    t0 = time.time()
    genome, splits = load_split_genome({**cfg, "reader": "array"}, cache_dir)
    t_cache = time.time() - t0
    pyfaidx_ok = True
    try:
        open_genome_pyfaidx(cfg["path"], cache_dir, cfg.get("records"), int(cfg.get("min_record_length", 1)))
    except Exception as e:  # the array path still works; say why the pyfaidx one does not
        log.warning("pyfaidx path unavailable: %s", e)
        pyfaidx_ok = False
    summary = {
        "genome": cfg.get("name"),
        "fasta": str(genome.path),
        "token_cache": str(genome.ids_file),
        "token_cache_bytes": genome.ids_file.stat().st_size if genome.ids_file else None,
        "records": len(genome.records),
        "bases": len(genome),
        "stats": genome.stats,
        "bed": cfg.get("bed"),
        "splits": {k: {"intervals": len(v), "bases": sum(map(len, v))} for k, v in splits.items()},
        "pyfaidx_path": pyfaidx_ok,
        "index_seconds": round(t_cache, 1),
    }
    return summary


SUMMARY = "prepared.json"
_TIMINGS = ("index_seconds",)  # what changes from one run to the next without anything being different


def check_writable(items: list[Item], out: Path) -> None:
    """Before any work: a folder that cannot be written is an error only if something must be written there."""
    missing = [it.ready_name() for it in items if not (out / it.ready_name()).exists()]
    if not (out / SUMMARY).exists():
        missing.append(SUMMARY)
    probe = out if out.exists() else out.parent
    if missing and probe.exists() and not os.access(probe, os.W_OK):
        raise PrepareError(f"{out} is not writable and {', '.join(missing)} must be written there; use another --out")


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write ``prepared.json`` unless it already says the same (a re-run into a read-only folder writes nothing)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    same = old is not None and {k: v for k, v in old.items() if k not in _TIMINGS} == {
        k: v for k, v in summary.items() if k not in _TIMINGS
    }
    if not same:
        path.write_text(json.dumps(summary, indent=1))


def prepare(cfg: dict[str, Any], items: list[Item], out: Path, command: str, cache_dir: str | None, **kw) -> dict:
    check_writable(items, out)
    fetch_all(items, out, command, **kw)
    summary = build_index(cfg, cache_dir)
    summary["files"] = {it.remote.name: {"url": it.remote.url, "checksum": it.remote.checksum_text()} for it in items}
    write_summary(out / SUMMARY, json.loads(json.dumps(summary)))  # via JSON: compared as it is stored
    return summary


if __name__ == "__main__":  # the command's old name: python -m mdlm_dna.data.prepare
    import runpy

    runpy.run_module("mdlm_dna.prepare", run_name="__main__", alter_sys=True)
