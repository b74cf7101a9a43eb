"""Apply a fine-tuned classifier to new sequences: FASTA or table in, TSV of predictions out.

    python -m mdlm_dna.predict run=runs/finetune/promoters input=new.fa out=predictions.tsv
    python -m mdlm_dna.predict run=RUN input=table.csv column=sequence truncate=true

The TSV has ``name``, ``label`` (the predicted class) and ``p_<class>`` per class, in the input's order; in Python
``load_classifier(RUN).predict(seqs)`` gives the same table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from omegaconf import DictConfig

from mdlm_dna.classifier import load_classifier
from mdlm_dna.cli.entry import command_config, user_errors
from mdlm_dna.cli.paths import check_output_file, local_path
from mdlm_dna.data.seqio import read_sequences
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.validation import CommandConfig, Device, PositiveInt, Required, parse_config

register_resolvers()
INPUT_SUFFIXES = (".gz", ".fa", ".fasta", ".fna", ".csv", ".tsv", ".txt")


class PredictConfig(CommandConfig):
    """configs/predict.yaml's keys, typed (the YAML holds the defaults and the documentation)."""

    run: Required
    input: Required
    column: str = "sequence"
    out: str | None = None
    batch_size: PositiveInt | None = None
    truncate: bool = False
    device: Device = "cpu"


def output_path(input_path: str, out: str | None, run: str | None = None) -> Path:
    """``out``, else ``<input without its suffixes>.predictions.tsv``; checked (:func:`check_output_file`): a
    .tsv / .txt name, not the input, not a file of the run folder, in a folder that exists."""
    if out:
        path = Path(out).expanduser()
    else:
        name = Path(input_path).name
        for s in INPUT_SUFFIXES:
            name = name.removesuffix(s)
        path = Path(input_path).with_name(f"{name}.predictions.tsv")
    inputs = [input_path, *(local_path(run) if run else [])]
    return check_output_file(path, "out", inputs, suffixes=(".tsv", ".tsv.gz", ".txt", ".txt.gz", ".tab"))


def predict(cfg: DictConfig | dict[str, Any]) -> pd.DataFrame:
    usage = "python -m mdlm_dna.predict run=FINETUNE_RUN input=SEQS.fa"
    cfg = command_config("predict", cfg, {key: f"{key}= is required: {usage}" for key in ("run", "input")})
    cfg = parse_config(cfg, PredictConfig)
    out = output_path(cfg.input, cfg.out, cfg.run)
    clf = load_classifier(cfg.run, device=cfg.device)
    names, seqs = read_sequences(cfg.input, column=cfg.column)
    table = clf.predict(seqs, names=names, batch_size=cfg.batch_size, truncate=cfg.truncate)
    table.to_csv(out, sep="\t", index=False)
    counts = ", ".join(f"{c}: {n}" for c, n in table["label"].value_counts().reindex(clf.classes, fill_value=0).items())
    print(f"{len(table)} sequences -> {out} ({counts})")
    return table


@hydra.main(config_path=str(config_dir()), config_name="predict", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
