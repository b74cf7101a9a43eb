"""Compare classifiers on one task under one protocol: CNN baseline, backbone from scratch, pretrained backbone.

python benchmarks/finetune_table.py --ckpt RUN/checkpoints/last.ckpt --out /tmp/ft_table \\
    task=csv task.name=gue_prom_core_tata task.train_path=TRAIN.csv.gz task.val_path=DEV.csv.gz \\
    task.test_path=TEST.csv.gz trainer.max_epochs=3 data.batch_size=64 seeds=2

Every row runs ``mdlm_dna.finetune`` with the same overrides (same data, splits, seeds, epochs, optimiser);
prints one Markdown table with wall-clock training time per row and writes it to OUT/table.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from common import Stopwatch, arg_parser, compose_config

from mdlm_dna.finetune import finetune, to_markdown


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--ckpt", help="pretraining checkpoint for the 'pretrained' row (omit to skip that row)")
    ap.add_argument("--model", default="dit_tiny", help="backbone config for the 'from scratch' row")
    ap.add_argument("--out", default="outputs/finetune_table")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides shared by every row")
    args = ap.parse_args()
    rows = {"cnn": ["classifier=cnn"], "scratch": ["ckpt=null", f"model={args.model}"]}
    if args.ckpt:
        rows["pretrained"] = [f"ckpt={args.ckpt}"]
    tables, seconds = [], {}
    for name, extra in rows.items():
        cfg = compose_config("finetune", [*args.overrides, *extra])
        with Stopwatch() as watch:
            table = finetune(cfg, Path(args.out) / name)
        seconds[name] = watch.seconds
        runs = sorted((Path(args.out) / name).rglob("metrics.json"))
        table["parameters"] = json.loads(runs[0].read_text())["parameters"]
        table["wall_s"] = round(seconds[name], 1)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    md = to_markdown(table)
    extra = "\n".join(
        f"- {r.model}: {r.parameters:,} parameters, {r.wall_s:.0f} s wall-clock" for r in table.itertuples()
    )
    text = md + "\n" + extra + "\n"
    (Path(args.out) / "table.md").write_text(text)
    table.to_csv(Path(args.out) / "table.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
