"""GUE promoter tasks (DNABERT-2's benchmark): CNN, DiT-tiny from scratch with and without its local convolution,
with reverse-complement augmentation and Caduceus-PH-style conjoining, and initialised from a pretrained model, over
seeds; the published foundation models' MCC beside them.

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/gue_table.py --data-dir ../shared/data/gue/prom   # prom_core_tata
    python benchmarks/gue_table.py --data-dir DIR --tasks prom_core_tata prom_core_notata prom_core_all prom_300_tata
    python benchmarks/gue_table.py --table-only                                # the table of the CSV, nothing run
    ... --seeds 1 2 3 -- trainer.max_epochs=5            # `--` ends a list option before Hydra overrides

``--data-dir`` holds one folder per task with ``train.csv.gz``, ``dev.csv.gz`` and ``test.csv.gz`` (columns
``sequence,label``; GUE's layout, gzip-compressed). Every run is ``mdlm_dna.finetune task=csv`` under the default
protocol (``configs/finetune.yaml``; the dev file is the validation set, the test file is scored once), the same
seeds for every row. Each finished run is one row of ``benchmarks/gue_runs.csv`` (with its wall-clock and CPU
seconds), appended at once; runs already there (same task, row, seed and overrides) are skipped, so an interrupted
table resumes. The Markdown table (test MCC, GUE's metric: mean ± sd over seeds and its 95 % t-interval via
``seed_stats``; accuracy; mean CPU seconds per run) is printed and written to ``benchmarks/gue_table.md``:
without overrides it shows every recorded run, a row per (row, overrides) with the overrides in its name; with
overrides (``--table-only --md FILE -- OVERRIDES``) only that variant.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from common import append_run, arg_parser, read_runs
from genomic_benchmarks_table import FIELDS, finetune_run, run_row
from seed_stats import mean_sd_text

from mdlm_dna.utils.resolvers import register_resolvers

TASKS = ("prom_core_tata", "prom_core_notata", "prom_core_all", "prom_300_tata")
ROWS = {
    "cnn": ["classifier=cnn"],
    "dit conv_kernel=0": ["init=null", "model=dit_tiny", "model.conv_kernel=0"],
    "dit": ["init=null", "model=dit_tiny"],  # conv_kernel=5, the default
    # reverse complements: augmentation (each training sequence flipped with probability 0.5), and the Caduceus
    # paper's post-hoc conjoining (Caduceus-PH's protocol: logits averaged over both strands at test, with the
    # same augmentation in training)
    "dit rc_prob=0.5": ["init=null", "model=dit_tiny", "data.rc_prob=0.5"],
    "dit conjoin_test": ["init=null", "model=dit_tiny", "data.rc_prob=0.5", "head.conjoin_test=true"],
    # Caduceus-PS: reverse-complement equivariance built into the backbone (the Caduceus paper's PS row: no
    # augmentation, no conjoining), CPU-sized (configs/model/caduceus_ps.yaml)
    "caduceus_ps": ["init=null", "model=caduceus_ps"],
}
# Published test MCC on the same official splits: source -> task -> MCC. Zhou et al. 2024, "DNABERT-2: Efficient
# foundation model and benchmark for multi-species genome" (ICLR 2024, arXiv:2306.15006), the GUE results table
# (MCC x 100, fine-tuned; columns "Core Promoter Detection" all / notata / tata and "Promoter Detection" tata),
# checked against the authors' copy of it, "Table 4" in github.com/MAGICS-LAB/DNABERT_2 figures/Performance.png.
# DNABERT-2 (marked there with a diamond) is DNABERT-2 pretrained further on GUE's training sets: the published
# analogue of our task-corpus pretraining. HyenaDNA is not in that table and no GUE figure of it from its own
# authors exists, so it has no row here.
PUBLISHED_MCC = {
    "DNABERT-2 (117 M parameters; DNABERT-2 paper, Table 4)": {
        "prom_core_all": 0.6937, "prom_core_notata": 0.6804, "prom_core_tata": 0.7417, "prom_300_tata": 0.7159},
    "DNABERT-2 + further pretraining on GUE's training sets (same table)": {
        "prom_core_all": 0.6750, "prom_core_notata": 0.6953, "prom_core_tata": 0.7618, "prom_300_tata": 0.6879},
    "Nucleotide Transformer 2.5B multi-species (same table)": {
        "prom_core_all": 0.7033, "prom_core_notata": 0.7158, "prom_core_tata": 0.7297, "prom_300_tata": 0.7943},
}
GUE_FIELDS = [*FIELDS[:-1], "cpu_s", FIELDS[-1]]
# How the table names a recorded row (the CSV keeps the row as run: its init= source)
LABELS = {
    "cnn": "cnn (the GenomicBenchmarks CNN baseline)",
    "dit": "dit from scratch (conv_kernel=5, the default)",
    "dit conv_kernel=0": "dit from scratch, conv_kernel=0",
    "dit rc_prob=0.5": "dit from scratch, reverse-complement augmentation p=0.5",
    "dit conjoin_test": "dit from scratch, RC augmentation + conjoined test (Caduceus-PH protocol)",
    "caduceus_ps": "Caduceus-PS from scratch (RC-equivariant; d_model 64, 4 layers)",
    "pretrained runs/gue_corpus/ar": "dit, AR-pretrained on the task corpus, 300 steps (= shipped gue_promoters)",
    "pretrained runs/gue_corpus/ar1000": "dit, AR-pretrained on the task corpus, 1,000 steps",
    "pretrained runs/gue_corpus/ar320": "dit, AR-pretrained on the task corpus, 320-base windows (batch 13), 300 steps",
    "pretrained runs/gue_corpus/mdlm": "dit, MDLM-pretrained on the task corpus, 300 steps",
    "pretrained ecoli": "dit, MDLM-pretrained on E. coli (shipped ecoli)",
    "pretrained gue_promoters": "dit, init=gue_promoters (shipped: AR-pretrained on the task corpus, 300 steps)",
}


def task_overrides(data_dir: Path, task: str) -> list[str]:
    """The ``task=csv`` overrides of one GUE task folder (train / dev as validation / test)."""
    folder = data_dir / task
    files = {split: folder / f"{split}.csv.gz" for split in ("train", "dev", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"--data-dir {data_dir}: missing {', '.join(missing)}")
    return ["task=csv", f"task.name=gue_{task}", f"task.train_path={files['train']}",
            f"task.val_path={files['dev']}", f"task.test_path={files['test']}"]


def gue_table(rows: list[dict], published: dict[str, dict[str, float]] | None = None) -> str:
    """Per task and row: test MCC over seeds (mean ± sd, 95 % t-interval), accuracy, CPU seconds per run; then the
    published rows of ``PUBLISHED_MCC``."""
    published = PUBLISHED_MCC if published is None else published
    lines = ["| task | model | seeds | test MCC | 95 % interval | test accuracy | train / test | CPU s per run |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        for row, overrides in dict.fromkeys((r["row"], r.get("overrides") or "") for r in mine):
            runs = [r for r in mine if r["row"] == row and (r.get("overrides") or "") == overrides]
            mcc_txt, span = mean_sd_text([float(r["mcc"]) for r in runs])
            acc_txt, _ = mean_sd_text([float(r["accuracy"]) for r in runs])
            cpu = statistics.fmean(float(r["cpu_s"]) for r in runs)
            label = LABELS.get(row, row) + (f"; `{overrides}`" if overrides else "")
            lines.append(f"| {task} | {label} | {len(runs)} | {mcc_txt} | {span} | {acc_txt} | "
                         f"{int(runs[0]['train']):,} / {int(runs[0]['test']):,} | {cpu:,.0f} |")
        for source, values in published.items():
            if task in values:
                lines.append(f"| {task} | *{source}* | | {values[task]:.3f} | | | official | |")
    return "\n".join(lines)


def main() -> None:
    register_resolvers()
    ap = arg_parser(__doc__)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/gue/prom"), help="GUE's prom/ folder")
    ap.add_argument("--tasks", nargs="+", choices=TASKS,
                    help="tasks to run (default prom_core_tata) and to show (default: every task recorded)")
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS), help="none: only --pretrained rows")
    ap.add_argument("--pretrained", nargs="*", default=["ecoli"], help="init= sources, one row each")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--csv", type=Path, default=Path(__file__).with_name("gue_runs.csv"))
    ap.add_argument("--md", type=Path, default=Path(__file__).with_name("gue_table.md"))
    ap.add_argument("--out-dir", type=Path, default=Path("runs/gue"), help="run folders")
    ap.add_argument("--table-only", action="store_true", help="write and print the table of the CSV, run nothing")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.max_epochs=5")
    args = ap.parse_args()
    rows = {**{r: ROWS[r] for r in args.rows}, **{f"pretrained {p}": [f"init={p}"] for p in args.pretrained}}
    key = " ".join(args.overrides)
    variant = re.sub(r"[^A-Za-z0-9_.-]+", "_", key) or "default"  # run folders: other overrides, other folders

    def recorded(every_variant: bool = False) -> list[dict]:
        """This invocation's runs (its overrides); ``every_variant``: every recorded run of the tasks."""
        return [r for r in read_runs(args.csv) if (every_variant or r["overrides"] == key)
                and r["task"] in (args.tasks or TASKS)]

    if not args.table_only:
        done = {(r["task"], r["row"], int(r["seed"])) for r in recorded()}
        for seed in args.seeds:  # seed-major: an interrupted table has whole seeds
            for task in args.tasks or ["prom_core_tata"]:
                for row, extra in rows.items():
                    if (task, row, seed) in done:
                        continue
                    overrides = [*task_overrides(args.data_dir, task), f"seed={seed}", "seeds=1", *extra,
                                 *args.overrides]
                    out = args.out_dir / task / row.replace(" ", "_").replace("=", "") / variant / f"seed-{seed}"
                    result = run_row("gue", task, row, seed, finetune_run(overrides, out), args.overrides)
                    append_run(args.csv, result, GUE_FIELDS)
                    print(f"[gue_table] {task} {row} seed {seed}: accuracy {result['accuracy']:.4f} MCC "
                          f"{result['mcc']:.4f} ({result['cpu_s']:.0f} CPU s)", flush=True)
    # the table of a run with overrides shows that variant; without, every variant, each row naming its overrides
    text = (f"GUE ({args.data_dir}); default protocol of configs/finetune.yaml"
            + (f"; overrides: {key}" if key else "; rows with overrides name them")
            + "\n\n" + gue_table(recorded(every_variant=not key)) + "\n")
    args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
