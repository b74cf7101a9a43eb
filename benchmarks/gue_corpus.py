"""A pretraining corpus from the GUE promoter tasks' training sequences, with every held-out sequence kept out.

    python benchmarks/gue_corpus.py --data-dir ../shared/data/gue/prom --out runs/gue_corpus/train.fa
    python -m mdlm_dna.pretrain genome=fasta genome.path=runs/gue_corpus/train.fa    # then finetune init=RUN

Pretraining that resembles the tasks has to see only sequences no task scores: the corpus is the union of the
four tasks' train files (labels dropped), minus any training sequence that overlaps a dev or test sequence of
*any* of the four tasks, exactly: the same string, its reverse complement, or one contained in the other
(the 70-base core promoters can lie inside the 300-base ones, on either strand). Overlaps are found with an
index of every 70-base substring of both strands, then confirmed by string search. The kept sequences are
written as one FASTA record, joined by runs of N (context the MDLM never masks or scores), so training windows
of 128 bases span about two core promoters. The counts go to the record ``benchmarks/gue_corpus.md``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from common import arg_parser, write_record

TASKS = ("prom_core_tata", "prom_core_notata", "prom_core_all", "prom_300_tata")
K = 70  # the shortest sequence length of the four tasks: every containment shows as a shared 70-mer
SEPARATOR = "N" * 16
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def reverse_complement(seq: str) -> str:
    """The other strand, read 5' to 3'.

    >>> reverse_complement("AACGN")
    'NCGTT'
    """
    return seq.translate(_COMPLEMENT)[::-1]


def read_split(data_dir: Path, task: str, split: str) -> list[str]:
    with gzip.open(data_dir / task / f"{split}.csv.gz", "rt") as f:
        header = f.readline().strip().split(",")
        column = header.index("sequence")
        return [line.rstrip("\n").split(",")[column].upper() for line in f if line.strip()]


def kmers(seq: str, k: int = K) -> set[str]:
    """Every substring of length ``k``.

    >>> sorted(kmers("ACGTA", 3))
    ['ACG', 'CGT', 'GTA']
    """
    return {seq[i:i + k] for i in range(len(seq) - k + 1)}


def overlapping(train: list[str], held: list[str]) -> set[str]:
    """Training sequences equal to, containing or contained in a held-out sequence or its reverse complement."""
    index: dict[str, list[str]] = {}
    for h in held:
        for strand in (h, reverse_complement(h)):
            for km in kmers(strand):
                index.setdefault(km, []).append(strand)
    bad = set()
    for t in train:
        candidates = {s for km in kmers(t) for s in index.get(km, ())}
        if any(t in s or s in t for s in candidates):
            bad.add(t)
    return bad


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/gue/prom"))
    ap.add_argument("--out", type=Path, default=Path("runs/gue_corpus/train.fa"))
    ap.add_argument("--record", type=Path, default=Path(__file__).with_name("gue_corpus.md"), help="the counts")
    args = ap.parse_args()
    train = {t: read_split(args.data_dir, t, "train") for t in TASKS}
    held = [s for t in TASKS for split in ("dev", "test") for s in read_split(args.data_dir, t, split)]
    unique = list(dict.fromkeys(s for t in TASKS for s in train[t]))
    bad = overlapping(unique, held)
    kept = [s for s in unique if s not in bad]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = SEPARATOR.join(kept)
    with args.out.open("w") as f:
        f.write(">gue_promoter_train_sequences\n")
        f.writelines(body[i:i + 80] + "\n" for i in range(0, len(body), 80))
    lines = ["| | sequences |", "|---|---:|"]
    lines += [f"| {t} train | {len(train[t]):,} |" for t in TASKS]
    lines += [f"| distinct training sequences over the four tasks | {len(unique):,} |",
              f"| dev + test sequences of the four tasks (both strands checked) | {len(held):,} |",
              f"| training sequences overlapping one of them (equal, containing or contained) | {len(bad):,} |",
              f"| kept in the corpus | {len(kept):,} ({sum(map(len, kept)):,} bases) |"]
    lines += ["", "Overlaps by task (rows: training sequences of a task; columns: the dev + test split they overlap):",
              "",
              "| train \\ held out | " + " | ".join(TASKS) + " |", "|---|" + "---:|" * len(TASKS)]
    held_by_task = {h: [s for split in ("dev", "test") for s in read_split(args.data_dir, h, split)] for h in TASKS}
    for t in TASKS:
        counts = [len(overlapping(list(dict.fromkeys(train[t])), held_by_task[h])) for h in TASKS]
        lines.append(f"| {t} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    report = "\n".join(lines)
    write_record(args.record, "GUE promoter tasks: training sequences that overlap a held-out one", report,
                 note="Equal, reverse-complement or contained sequences, found exactly (see the script's docstring).")
    print(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
