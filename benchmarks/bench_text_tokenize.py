"""How fast a text corpus becomes cached token rows, and how fast training batches come back out.

    python benchmarks/bench_text_tokenize.py [--files a.txt b.txt] [--repeat 3]

Prints, per tokenizer and layout: documents/s and tokens/s of the one-time tokenization into the
memory-mapped cache, and rows/s of reading shuffled training rows back (what a DataLoader worker does).
Defaults to the shipped Tiny Shakespeare (1.1 MB), split into paragraphs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import arg_parser

from mdlm_dna.data.text import ShuffledRows, TextBlocks, build_blocks, split_documents
from mdlm_dna.data.tokenizers import build_tokenizer
from mdlm_dna.utils.resources import data_file

TOKENIZERS = {
    "bert-base-uncased": {"name": "bert-base-uncased", "path": data_file("tokenizers/bert-base-uncased")},
    "gpt2": {"name": "gpt2", "path": data_file("tokenizers/gpt2")},
}


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--files", nargs="*", default=[data_file("text/tinyshakespeare.txt")])
    ap.add_argument("--repeat", type=int, default=3, help="copies of the corpus, for a longer measurement")
    ap.add_argument("--reads", type=int, default=20_000, help="training rows read back")
    args = ap.parse_args()
    docs = [d for f in args.files for d in split_documents(Path(f).read_text(encoding="utf-8"), "paragraph")]
    docs = docs * args.repeat
    mb = sum(len(d.encode()) for d in docs) / 1e6
    rows = []
    for tok_name, tok_cfg in TOKENIZERS.items():
        tok = build_tokenizer(tok_cfg)
        for seq_len, wrap in ((128, False), (1024, True)):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                out = build_blocks(docs, tok, seq_len, wrap, Path(tmp) / "blocks", desc="bench")
                build_s = time.perf_counter() - t0
                blocks = TextBlocks(out)
                train = ShuffledRows(blocks, args.reads, seed=0)
                t0 = time.perf_counter()
                for i in range(args.reads):
                    train[i]
                read_s = time.perf_counter() - t0
                meta = blocks.meta
                pad = float(np.mean(blocks.ids == tok.pad_id))
                rows.append({
                    "tokenizer": tok_name, "seq_len": seq_len, "layout": "wrap" if wrap else "pad",
                    "docs/s": f"{len(docs) / build_s:,.0f}", "tokens/s": f"{meta['tokens'] / build_s:,.0f}",
                    "MB/s": f"{mb / build_s:.2f}", "rows": f"{meta['rows']:,}", "pad fraction": f"{pad:.3f}",
                    "rows read/s": f"{args.reads / read_s:,.0f}",
                })
    print(f"corpus: {len(docs):,} documents, {mb:.1f} MB ({', '.join(Path(f).name for f in args.files)} x "
          f"{args.repeat})")
    print(pd.DataFrame(rows).to_markdown(index=False, stralign="right"))


if __name__ == "__main__":
    main()
