"""GenomicBenchmarks: CNN, DiT and Caduceus from scratch and each pretrained model, over seeds, beside published rows.

    python benchmarks/genomic_benchmarks_table.py                       # the nine tasks (the package downloads them)
    python benchmarks/genomic_benchmarks_table.py task.data_dir=DIR     # ... from a folder in the package's layout
    OMP_NUM_THREADS=1 python benchmarks/genomic_benchmarks_table.py \\
        --tables ../shared/data/genomic_benchmarks/sequences            # only the carrier tables at hand (see below)
    python benchmarks/genomic_benchmarks_table.py --table-only [--tables DIR]
    ... --seeds 1 2 3 -- data.batch_size=32 trainer.max_epochs=5     # `--` ends a list option before overrides

Rows: ``cnn`` (``classifier=cnn``: the GenomicBenchmarks paper's CNN), ``dit`` and ``caduceus`` (``model=dit_tiny``,
``model=caduceus_ps``, random initialisation), and one row per ``--pretrained`` model (``init=NAME``: a shipped
name, a run folder, an exported or Hugging Face folder). Every row runs ``mdlm_dna.finetune`` under the same
protocol (``configs/finetune.yaml``: the Caduceus paper's; extra Hydra overrides apply to every row) and the same
seeds; each seed draws its own validation split and initialisation. One CSV row per run is appended as soon as it
finishes and runs already in the CSV are skipped, so an interrupted table resumes.

``--tables DIR``: when the official splits cannot be had (no network), the carrier tables of
``TABLE_FILES`` stand in: one file per task with columns ``seq`` and ``label``, each a part of ONE official split
(the whole human_nontata_promoters test split; 500-per-class subsamples of the human_ensembl_regulatory and
human_ocr_ensembl train splits). A fixed ``--test-fraction`` of each is held out as the test set (the same for
every seed and row). Such figures compare our rows with each other, not with the published ones: less training
data and another test set. The published rows are printed beside them only for scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import Stopwatch, append_run, arg_parser, compose_config, read_runs
from seed_stats import mean_sd_text

from mdlm_dna.data.genomic_benchmarks import GB_TASKS
from mdlm_dna.finetune import finetune
from mdlm_dna.utils.resolvers import register_resolvers

ROWS = {"cnn": ["classifier=cnn"], "dit": ["init=null", "model=dit_tiny"],
        "caduceus": ["init=null", "model=caduceus_ps"]}
# task -> (carrier file, its integer labels -> our class names). The Hugging Face copies behind these files number
# human_ensembl_regulatory's classes promoter=0, enhancer=1, ocr=2, and the binary tasks negative=0, positive=1.
TABLE_FILES = {
    "human_nontata_promoters": ("promoters_nontata_test.tsv.gz", {0: "negative", 1: "positive"}),
    "human_ensembl_regulatory": ("regulatory_ensembl_train.tsv.gz", {0: "promoter", 1: "enhancer", 2: "ocr"}),
    "human_ocr_ensembl": ("open_chromatin_train.tsv.gz", {0: "negative", 1: "positive"}),
}
FIELDS = ["data", "task", "row", "seed", "accuracy", "mcc", "f1", "majority", "train", "val", "test", "epochs",
          "parameters", "train_s", "overrides"]
# Published test accuracies on the official splits: source -> task -> accuracy.
# - "CNN (GB repo)": ML-Bioinfo-CEITEC/genomic_benchmarks experiments/README.md @ 605d8539830e, PyTorch CNN (%).
# - "HyenaDNA (its paper)": Nguyen et al. 2023 (arXiv:2306.15794v2) Table 4.1, pretrained HyenaDNA (%).
# - "... (Caduceus paper)": Schiff et al. 2024 (arXiv:2403.03234v2) Table 1, mean over 5 seeds of 5-fold CV (their
#   +- is max - min over seeds, so it is not printed); CNN and HyenaDNA re-run by them, hence other numbers.
_TASK_ORDER = ("human_nontata_promoters", "human_ensembl_regulatory", "human_ocr_ensembl",
               "dummy_mouse_enhancers_ensembl", "demo_coding_vs_intergenomic_seqs", "demo_human_or_worm",
               "human_enhancers_cohn", "human_enhancers_ensembl", "drosophila_enhancers_stark")


def _by_task(values: tuple[float | None, ...], scale: float = 1.0) -> dict[str, float]:
    return {t: v * scale for t, v in zip(_TASK_ORDER, values) if v is not None}


PUBLISHED: dict[str, dict[str, float]] = {
    "CNN (GB repo)": _by_task((84.6, 93.3, 68.0, 69.0, 87.6, 93.0, 69.5, 68.9, 58.6), 0.01),
    "HyenaDNA (its paper)": _by_task((96.6, 93.8, 80.9, 85.1, 91.3, 96.6, 74.2, 89.2, None), 0.01),
    "CNN (Caduceus paper)": _by_task((0.861, 0.872, 0.698, 0.715, 0.892, 0.942, 0.702, 0.744, None)),
    "HyenaDNA (Caduceus paper)": _by_task((0.944, 0.869, 0.783, 0.780, 0.904, 0.964, 0.729, 0.849, None)),
    "Caduceus-PH (Caduceus paper)": _by_task((0.946, 0.872, 0.828, 0.754, 0.915, 0.973, 0.747, 0.893, None)),
    "Caduceus-PS (Caduceus paper)": _by_task((0.945, 0.873, 0.818, 0.793, 0.910, 0.968, 0.745, 0.900, None)),
}


def finetune_run(overrides: list[str], out: Path) -> dict:
    """Run ``mdlm_dna.finetune`` once with ``overrides`` into ``out``: its metrics.json plus wall and CPU seconds.

    >>> m = finetune_run(["task=human_ocr_ensembl", "classifier=cnn"], Path("/tmp/ocr_cnn"))  # doctest: +SKIP
    >>> sorted(m)[:3]  # doctest: +SKIP
    ['accuracy', 'cpu_s', 'epochs']
    """
    cfg = compose_config("finetune", overrides)
    with Stopwatch() as watch:
        finetune(cfg, out)
    m = json.loads((out / "metrics.json").read_text())
    return {**m, "train_s": round(watch.seconds, 1), "cpu_s": round(watch.cpu_seconds, 1)}


def run_row(data: str, task: str, row: str, seed: int, m: dict, overrides: list[str]) -> dict:
    """One CSV row (the columns of FIELDS, plus cpu_s) of a finished run's metrics ``m``."""
    return {"data": data, "task": task, "row": row, "seed": seed,
            "accuracy": round(m["accuracy"], 5), "mcc": round(m["mcc"], 5), "f1": round(m["f1"], 5),
            "majority": round(m["majority_rate"], 5), "train": m["train"], "val": m["val"], "test": m["test"],
            "epochs": m["epochs"], "parameters": m["parameters"], "train_s": m["train_s"], "cpu_s": m["cpu_s"],
            "overrides": " ".join(overrides)}


def run_cell(task: str, row: str, extra: list[str], seed: int, args: argparse.Namespace) -> dict:
    overrides = [f"task={task}", f"seed={seed}", "seeds=1", *extra, *args.overrides]
    if args.tables:
        name, labels = TABLE_FILES[task]
        label_map = "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"
        overrides += ["task.download=false", f"task.train_path={args.tables / name}",
                      f"task.test_fraction={args.test_fraction}", f"task.label_names={label_map}"]
    out = args.out_dir / ("tables" if args.tables else "official") / task / row.replace(" ", "-") / f"seed-{seed}"
    row_ = run_row("tables" if args.tables else "official", task, row, seed, finetune_run(overrides, out),
                   args.overrides)
    row_.pop("cpu_s")  # this CSV's columns predate it
    return row_


def table(rows: list[dict], published: dict[str, dict[str, float]] | None = None) -> str:
    """Per task and row: mean accuracy and MCC over seeds with the 95 % t-interval, then the published rows
    (default: ``PUBLISHED``)."""
    published = PUBLISHED if published is None else published
    cost = bool(rows) and all(r.get("cpu_s") for r in rows)  # a "CPU s per run" column when every run has one
    lines = ["| task | model | seeds | train / test | test accuracy | 95 % interval | MCC | majority class |"
             + (" CPU s per run |" if cost else ""),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if cost else "")]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        for row in dict.fromkeys(r["row"] for r in mine):
            runs = [r for r in mine if r["row"] == row]
            acc_txt, span = mean_sd_text([float(r["accuracy"]) for r in runs])
            mcc_txt, _ = mean_sd_text([float(r["mcc"]) for r in runs])
            lines.append(f"| {task} | {row} | {len(runs)} | {int(runs[0]['train']):,} / {int(runs[0]['test']):,} | "
                         f"{acc_txt} | {span} | {mcc_txt} | {float(runs[0]['majority']):.3f} |"
                         + (f" {statistics.fmean(float(r['cpu_s']) for r in runs):,.0f} |" if cost else ""))
        for source, accs in published.items():
            if task in accs:
                lines.append(f"| {task} | *{source}* | | official | {accs[task]:.3f} | | | |" + (" |" if cost else ""))
    return "\n".join(lines)


def main() -> None:
    register_resolvers()
    ap = arg_parser(__doc__)
    ap.add_argument("--tasks", nargs="+", default=None, help="default: the nine (with --tables: those of TABLE_FILES)")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--pretrained", nargs="*", default=["ecoli"], help="init= sources, one row each")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--tables", type=Path, default=None, help="a folder with the carrier tables of TABLE_FILES")
    ap.add_argument("--test-fraction", type=float, default=0.3, help="held out of each carrier table (--tables)")
    ap.add_argument("--csv", type=Path, default=Path(__file__).with_name("genomic_benchmarks_runs.csv"))
    ap.add_argument("--out-dir", type=Path, default=Path("runs/genomic_benchmarks"), help="run folders")
    ap.add_argument("--table-only", action="store_true", help="print the table of the CSV and stop")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.max_epochs=5")
    args = ap.parse_args()
    data = "tables" if args.tables else "official"
    tasks = args.tasks or (list(TABLE_FILES) if args.tables else list(GB_TASKS))
    if args.tables:
        missing = [t for t in tasks if t not in TABLE_FILES or not (args.tables / TABLE_FILES[t][0]).exists()]
        if missing:
            raise SystemExit(f"--tables {args.tables}: no carrier table for {missing} (known: {TABLE_FILES})")
    rows = {**{r: ROWS[r] for r in args.rows}, **{f"pretrained {p}": [f"init={p}"] for p in args.pretrained}}
    key = " ".join(args.overrides)

    def recorded() -> list[dict]:
        return [r for r in read_runs(args.csv) if r["data"] == data and r["overrides"] == key and r["task"] in tasks]

    if not args.table_only:
        done = {(r["task"], r["row"], int(r["seed"])) for r in recorded()}
        for seed in args.seeds:  # seed-major: an interrupted table has whole seeds
            for task in tasks:
                for row, extra in rows.items():
                    if (task, row, seed) in done:
                        continue
                    result = run_cell(task, row, extra, seed, args)
                    append_run(args.csv, result, FIELDS)
                    print(f"[gb_table] {task} {row} seed {seed}: accuracy {result['accuracy']:.4f} MCC "
                          f"{result['mcc']:.4f} ({result['train_s']:.0f} s)", flush=True)
    print(f"data: {data}" + (f" ({args.tables}, {args.test_fraction:.0%} held out as test)" if args.tables else "")
          + (f"; overrides: {key}" if key else "") + "\n")
    print(table(recorded()))


if __name__ == "__main__":
    main()
