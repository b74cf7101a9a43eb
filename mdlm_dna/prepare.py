"""Fetch, verify, unpack and index a pretraining genome once, before any training run.

    python -m mdlm_dna.prepare hg38 --out DIR
    python -m mdlm_dna.prepare fasta URL [--md5 HEX | --sha256 HEX] [--bed URL] --out DIR

(``python -m mdlm_dna.data.prepare`` is the same command.) The work is :mod:`mdlm_dna.data.prepare`'s; see its
docstring for what each step checks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mdlm_dna.cli.entry import report_user_error
from mdlm_dna.data.download import RemoteFile
from mdlm_dna.data.prepare import Item, genome_config, items_from_config, prepare


def _fasta_items(args) -> tuple[dict[str, Any], list[Item]]:
    def remote(url: str, md5: str | None, sha256: str | None, what: str) -> Item:
        name = Path(urlparse(url).path).name or "download"
        unpack = name[:-3] if name.endswith(".gz") and not name.endswith((".bed.gz",)) and not args.keep_gz else None
        return Item(RemoteFile(url=url, name=name, md5=md5, sha256=sha256, what=what), unpack)

    items = [remote(args.url, args.md5, args.sha256, "genome FASTA")]
    cfg = genome_config("bed" if args.bed else "fasta", args.out)
    cfg["name"] = args.name or Path(items[0].ready_name()).name.split(".")[0]
    cfg["path"] = str(args.out / items[0].ready_name())
    cfg["records"] = args.records
    if args.bed:
        items.append(remote(args.bed, args.bed_md5, args.bed_sha256, "BED intervals"))
        cfg["bed"] = str(args.out / items[1].ready_name())
        if args.split_map:
            cfg["split_map"] = dict(kv.split("=", 1) for kv in args.split_map)
    return cfg, items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mdlm_dna.prepare", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    h = sub.add_parser("hg38", help="UCSC hg38 and its fold BED (configs/genome/hg38.yaml)")
    f = sub.add_parser("fasta", help="any FASTA by URL, optionally with a BED of labelled intervals")
    f.add_argument("url")
    f.add_argument("--md5")
    f.add_argument("--sha256")
    f.add_argument("--bed", help="URL of a BED file (chrom start end label)")
    f.add_argument("--bed-md5")
    f.add_argument("--bed-sha256")
    f.add_argument("--split-map", nargs="*", help="LABEL=SPLIT pairs, e.g. fold3=test fold4=validation fold0=train")
    f.add_argument("--records", nargs="*", help="keep only these records (chromosomes)")
    f.add_argument("--name", help="genome name (default: from the file name)")
    f.add_argument("--keep-gz", action="store_true", help="do not unpack a .gz FASTA (array path only if plain gzip)")
    for sp in (h, f):
        sp.add_argument("--out", required=True, type=Path, help="folder for the files (genome.root)")
        sp.add_argument("--cache-dir", help="token cache folder (default: $MDLM_DNA_CACHE or ~/.cache/mdlm_dna)")
        sp.add_argument("--retries", type=int, default=5)
        sp.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.out = args.out.expanduser().resolve()
    command = "python -m mdlm_dna.prepare " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        if args.what == "hg38":
            cfg = genome_config("hg38", args.out)
            items = items_from_config(cfg)
            run = f"python -m mdlm_dna.pretrain genome=hg38 genome.root={args.out}"
        else:
            cfg, items = _fasta_items(args)
            run = f"python -m mdlm_dna.pretrain genome={'bed' if args.bed else 'fasta'} genome.path={cfg['path']}"
            run += f" genome.bed={cfg['bed']}" if args.bed else ""
        summary = prepare(cfg, items, args.out, command, args.cache_dir, retries=args.retries, timeout=args.timeout)
    except Exception as e:  # a user error (bad file, no network, full disk): one line, status 2; a bug: traceback
        status = report_user_error(e)
        if status is None:
            raise
        return status
    if args.cache_dir:
        run += f" cache_dir={args.cache_dir}"
    print(json.dumps({k: summary[k] for k in ("genome", "bases", "records", "splits", "token_cache")}, indent=1))
    print(f"ready: {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
