"""Reliability of the commands (issue 29, issue 30 item 7): every config checked by its typed model before any
work, inputs and outputs checked first, no data loss, no silently wrong result; one-line errors, exit status 2.

Table-driven: each row is one case of the issue, called in-process (``pytest.raises(ConfigError)``); a few
subprocess tests pin the ``error:`` line and the exit status."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mdlm_dna.api import reference_windows
from mdlm_dna.pretrain import run
from mdlm_dna.utils.errors import CheckpointError, ConfigError, DataError, RunDirError, UserError

from .conftest import TINY, compose_pretrain

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------
# data loss: metrics.csv keeps its rows when a finished run is run again or resumed


def _metrics(run_dir):
    return pd.read_csv(run_dir / "metrics.csv")


def test_finished_pretrain_run_again_or_resumed_keeps_every_metrics_row(tmp_path, one_thread):
    cfg = [*TINY, "trainer.log_every_n_steps=50", "checkpoint.every_n_train_steps=2"]
    run(compose_pretrain(*cfg, "trainer.max_steps=2"), tmp_path)
    first = _metrics(tmp_path)
    assert len(first) > 0 and first["val/bpb"].notna().any()
    run(compose_pretrain(*cfg, "trainer.max_steps=2"), tmp_path)  # finished: nothing rewritten
    pd.testing.assert_frame_equal(_metrics(tmp_path), first)
    run(compose_pretrain(*cfg, "trainer.max_steps=4"), tmp_path)  # resumed 2 -> 4: the step-2 row stays
    resumed = _metrics(tmp_path)
    pd.testing.assert_frame_equal(resumed.iloc[: len(first)], first)
    assert (resumed["step"] == 4).any() and resumed["val/bpb"].notna().sum() == 2


# ----------------------------------------------------------------------------------------------------
# every command's config: a bad value is one ConfigError naming the key, before any work or file


def _sample(tmp_path, **over):
    from mdlm_dna.sample import generate

    return generate({"ckpt": "ecoli", "num_samples": 2, "length": 16, "steps": 2, "metrics": False,
                     "plots": False, "device": "cpu", **over}, tmp_path / "s")


SAMPLE_CASES = [
    *[({k: "abc"}, k) for k in ("num_samples", "length", "steps", "batch_size", "seed", "block_len", "overlap",
                                "reference_windows")],
    ({"guidance": {"scale": "abc"}}, "guidance.scale"),
    ({"guidance": {"scale": float("nan")}}, "guidance.scale=nan: must be a finite number"),
    ({"guidance": {"scale": float("inf")}}, "guidance.scale=inf: must be a finite number"),
    ({"guidance": {"scale": -1.0}}, "guidance.scale=-1.0: must be >= 0"),
    ({"length": 8.7}, "length=8.7"),
    ({"length": 0}, "length=0: must be > 0"),
    ({"num_samples": 0}, "num_samples=0: must be > 0"),
    ({"block_len": 0}, "block_len=0: must be > 0"),
    ({"block_len": -4, "sampler": "sar"}, "block_len=-4: must be > 0"),
    ({"overlap": -1, "sampler": "sar"}, "overlap=-1: must be >= 0"),
    ({"block_len": 8, "overlap": 8, "sampler": "sar"}, "overlap=8 must be smaller than block_len=8"),
    ({"reference_windows": 0}, "reference_windows=0: must be > 0"),
    ({"reference_windows": -1}, "reference_windows=-1: must be > 0"),
    ({"sampler": "bogus"}, "sampler='bogus': must be one of"),
    ({"sar_inner": "bogus"}, "sar_inner='bogus': must be one of"),
    ({"dtype": "float16"}, "dtype='float16': must be one of"),
]


@pytest.mark.parametrize("over, message", SAMPLE_CASES)
def test_sample_config_errors_name_the_key_before_any_work(tmp_path, over, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _sample(tmp_path, **over)
    assert not (tmp_path / "s").exists()


def _score_input(tmp_path, text=">a\nACGTACGTAC\n>b\nACGTTTGCAA\n", name="in.fa"):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("over, message", [
    ({"t_samples": "abc"}, "t_samples='abc'"),
    ({"t_samples": 0}, "t_samples=0: must be > 0"),
    ({"seed": "abc"}, "seed='abc'"),
    ({"batch_size": -1}, "batch_size=-1: must be > 0"),
    ({"batch_size": 0}, "batch_size=0: must be > 0"),
    ({"count_n": "abc"}, "count_n='abc'"),
    ({"out": "SAME"}, "is the input file"),
    ({"out": "/nonexistent/dir/x.tsv"}, "the folder /nonexistent/dir does not exist"),
    ({"out": "DIR"}, "is a folder"),
])  # fmt: skip
def test_score_config_and_output_errors_before_any_work(tmp_path, over, message):
    from mdlm_dna.score import score

    fasta = _score_input(tmp_path)
    before = fasta.read_bytes()
    over = {k: (str(fasta) if v == "SAME" else str(tmp_path) if v == "DIR" else v) for k, v in over.items()}
    with pytest.raises(ConfigError, match=re.escape(message)):
        score({"ckpt": "ecoli", "input": str(fasta), "device": "cpu", **over})
    assert fasta.read_bytes() == before and sorted(p.name for p in fasta.parent.iterdir()) == ["in.fa"]


@pytest.mark.parametrize("text, name, message", [
    ("just some notes\nabout DNA\n", "notes.fa", "cannot be read as FASTA"),
    ("name,sequence\na,ACGT\nb,NA\nc,nan\n", "t.csv", "missing value in the 'sequence' column on line(s) 3, 4"),
    (">good\nACGT\n>bad\nACGJ\n", "x.fa", "record 'bad': invalid character 'J' (byte 74) at position 3"),
])  # fmt: skip
def test_score_input_errors_name_the_file(tmp_path, text, name, message):
    from mdlm_dna.score import score

    path = _score_input(tmp_path, text, name)
    with pytest.raises(DataError, match=re.escape(message)) as e:
        score({"ckpt": "ecoli", "input": str(path), "device": "cpu", "t_samples": 1})
    assert str(path) in str(e.value)


@pytest.mark.parametrize("over, message", [
    ({"t_samples": 0}, "t_samples=0: must be > 0"),
    ({"t_samples": "abc"}, "t_samples='abc'"),
    ({"max_windows": 0}, "max_windows=0: must be > 0"),
    ({"batch_size": 0}, "batch_size=0: must be > 0"),
    ({"split": "train"}, "split='train': must be one of"),
    ({"zero_shot_document": "page"}, "zero_shot_document='page'"),
    ({"seed": "x"}, "seed='x'"),
])  # fmt: skip
def test_evaluate_config_errors(over, message):
    from mdlm_dna.evaluate import evaluate

    with pytest.raises(ConfigError, match=re.escape(message)):
        evaluate({"ckpt": "ecoli", **over})


@pytest.mark.parametrize("over, message", [
    ({"t_samples": 0}, "t_samples=0: must be > 0"),
    ({"t_samples": -1}, "t_samples=-1: must be > 0"),
    ({"t_samples": "abc"}, "t_samples='abc'"),
    ({"max_windows": 0}, "max_windows=0: must be > 0"),
    ({"max_windows": -1}, "max_windows=-1: must be > 0"),
    ({"max_windows": "abc"}, "max_windows='abc'"),
])  # fmt: skip
def test_export_config_errors_before_any_file(tmp_path, over, message):
    from mdlm_dna.export import export

    with pytest.raises(ConfigError, match=re.escape(message)):
        export({"ckpt": "ecoli", "out": str(tmp_path / "e"), **over})
    assert not (tmp_path / "e").exists()


def _finetune_cfg(tmp_path, *overrides):
    from hydra import compose, initialize_config_dir

    from mdlm_dna.utils.resources import config_dir

    train = tmp_path / "train.csv"
    train.write_text("sequence,label\n" + "".join(f"ACGTACGT{'AC'[i % 2]},{i % 2}\n" for i in range(20)))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="finetune", overrides=["task=csv", f"task.train_path={train}", *overrides])
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


FINETUNE_NUMERIC = ["seed", "seeds", "data.batch_size", "data.eval_batch_size", "data.val_fraction",
                    "data.max_length", "data.rc_prob", "data.num_workers", "optim.lr", "optim.weight_decay",
                    "optim.warmup_fraction", "optim.min_lr_ratio", "trainer.max_epochs", "trainer.max_steps",
                    "task.max_length", "task.test_fraction", "task.min_class_examples", "head.dropout"]
FINETUNE_CASES = [
    *[(f"{k}=abc", k) for k in FINETUNE_NUMERIC],
    ("seed=-1", "seed=-1: must be >= 0"),
    ("seeds=0", "seeds=0: must be > 0"),
    ("data.batch_size=0", "data.batch_size=0: must be > 0"),
    ("data.eval_batch_size=-2", "data.eval_batch_size=-2: must be > 0"),
    ("data.val_fraction=0", "data.val_fraction=0: must be > 0"),
    ("data.val_fraction=1.5", "data.val_fraction=1.5: must be < 1"),
    ("task.test_fraction=2", "task.test_fraction=2: must be < 1"),
    ("data.max_length=0", "data.max_length=0: must be > 0"),
    ("data.num_workers=-1", "data.num_workers=-1: must be >= 0"),
    ("optim.lr=-1", "optim.lr=-1: must be > 0"),
    ("optim.lr=0", "optim.lr=0: must be > 0"),
    ("optim.min_lr_ratio=-1", "optim.min_lr_ratio=-1: must be >= 0"),
    ("optim.warmup_fraction=-1", "optim.warmup_fraction=-1: must be >= 0"),
    ("optim.weight_decay=-1", "optim.weight_decay=-1: must be >= 0"),
    ("data.rc_prob=-1", "data.rc_prob=-1: must be >= 0"),
    ("trainer.max_steps=0", "trainer.max_steps=0: must be a positive integer, or -1"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0: must be a positive integer, or -1"),
    ("trainer.max_epochs=-1", "the run would never end"),
    ("classifier=bogus", "classifier='bogus': must be one of"),
    ("head.pooling=max", "head.pooling='max': must be one of"),
    ("+bogus_key=1", "bogus_key=1: is not a setting of this command"),
    (("classifier=cnn", "init=ecoli"), "classifier=cnn trains the CNN baseline from scratch: init=ecoli"),
]


@pytest.mark.parametrize("override, message", FINETUNE_CASES)
def test_finetune_config_errors_before_any_file(tmp_path, override, message):
    from mdlm_dna.finetune import finetune

    overrides = override if isinstance(override, tuple) else (override,)
    with pytest.raises(ConfigError, match=re.escape(message)):
        finetune(_finetune_cfg(tmp_path, *overrides), tmp_path / "ft")
    assert not (tmp_path / "ft").exists()


def test_finetune_csv_without_train_path_says_so(tmp_path):
    from mdlm_dna.finetune import finetune

    cfg = _finetune_cfg(tmp_path)
    cfg["task"]["train_path"] = "???"
    with pytest.raises(ConfigError, match=r"task=csv needs task.train_path=TABLE"):
        finetune(cfg, tmp_path / "ft")


def test_finetune_bad_data_leaves_no_run_folder(tmp_path):
    from mdlm_dna.finetune import finetune

    cfg = _finetune_cfg(tmp_path)
    cfg["task"]["train_path"] = str(tmp_path / "missing.csv")
    with pytest.raises(UserError, match="missing.csv: sequence table not found"):
        finetune(cfg, tmp_path / "ft")
    assert not (tmp_path / "ft").exists()


def test_float_labels_are_refused_without_misleading_advice(tmp_path):
    from mdlm_dna.data.genomic_benchmarks import DatasetError, check_label_kinds

    table = pd.DataFrame({"sequence": ["ACGT"] * 4, "label": ["0.37", "1.5", "2.25", "0.1"]})
    with pytest.raises(DatasetError, match="continuous numbers") as e:
        check_label_kinds(table, "t.csv")
    assert "min_class_examples" not in str(e.value)


# ----------------------------------------------------------------------------------------------------
# the library: the same types and ranges as the commands


@pytest.fixture(scope="module")
def ecoli_model():
    from mdlm_dna import DiffusionLM

    return DiffusionLM.from_pretrained("ecoli", device="cpu")


@pytest.mark.parametrize("call, message", [
    (lambda m: m.sample(2, length=8.7, steps=2), "length=8.7"),
    (lambda m: m.sample(2, length=16, steps=2, guidance_scale=float("nan")), "guidance_scale=nan"),
    (lambda m: m.sample(2, length=16, steps=2, guidance_scale=-0.5), "guidance_scale=-0.5: must be >= 0"),
    (lambda m: m.sample(2, length=16, steps=0), "steps=0: must be > 0"),
    (lambda m: m.sample(2, length=16, steps=2, sampler="bogus"), "sampler='bogus'"),
    (lambda m: m.sample(2, length=16, steps=2, sampler="sar", block_len=0), "block_len=0: must be > 0"),
    (lambda m: m.sample(2, length=16, steps=2, sampler="sar", block_len=8, overlap=8), "overlap=8 must be smaller"),
    (lambda m: m.sample(2, length=16, steps=2, sampler="sar", overlap=-1), "overlap=-1: must be >= 0"),
    (lambda m: m.score([None]), "seqs=None"),
    (lambda m: m.score(["ACGT"], batch_size=-1), "batch_size=-1"),
    (lambda m: m.evaluate(t_samples=0), "t_samples=0: must be > 0"),
    (lambda m: m.evaluate(max_windows=0), "max_windows=0: must be > 0"),
    (lambda m: m.evaluate(split="train"), "split='train'"),
    (lambda m: reference_windows(m, 0), "length=0: must be > 0"),
    (lambda m: reference_windows(m, 64, max_windows=0), "max_windows=0: must be > 0"),
])  # fmt: skip
def test_library_arguments_are_checked(ecoli_model, call, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        call(ecoli_model)


def test_all_n_scores_nan_with_a_warning_not_a_perfect_score(ecoli_model):
    with pytest.warns(UserWarning, match="1 sequence.*no base to score"):
        table = ecoli_model.score(["NNNNNNNNNN", "ACGTACGTAC"], t_samples=1)
    assert np.isnan(table["bits_per_base"][0]) and table["tokens"][0] == 0
    assert np.isfinite(table["bits_per_base"][1]) and table["bits_per_base"][1] > 0


def test_u_and_iupac_are_converted_with_one_warning_that_counts_them(ecoli_model):
    with pytest.warns(UserWarning) as record:
        rna = ecoli_model.score(["ACGUACGU", "ACRYACGT", "ACGTACGT"], t_samples=2, seed=3)
    notes = [str(w.message) for w in record if "converted" in str(w.message)]
    assert notes == ["score(): 4 bases of 2 of 3 sequences converted: 2 U read as T, 2 IUPAC codes read as N"]
    dna = ecoli_model.score(["ACGTACGT"], t_samples=2, seed=3)
    assert rna["nelbo_nats"][0] == pytest.approx(dna["nelbo_nats"][0])  # U is T, not N


def test_prompts_and_infill_read_u_as_t_with_a_warning():
    from mdlm_dna.diffusion.prompts import parse_infill, parse_prefix

    with pytest.warns(UserWarning, match="prefix: 1 U read as T"):
        assert parse_prefix("acgu").tolist() == [0, 1, 2, 3]
    with pytest.warns(UserWarning, match="infill: 1 U read as T, 1 IUPAC code read as N"):
        assert parse_infill("ACGU-R").tolist() == [0, 1, 2, 3, 5, 4]
    with pytest.raises(ConfigError, match="prefix: invalid character 'X' at position 2"):
        parse_prefix("ACX")


def test_finetune_tables_read_u_as_t(caplog):
    from mdlm_dna.data.genomic_benchmarks import tokenize

    ids = tokenize(["ACGU"], "t.csv")
    assert ids[0].tolist() == [0, 1, 2, 3] and "1 U (RNA) read as T" in caplog.text


# ----------------------------------------------------------------------------------------------------
# bad model and classifier folders: a CheckpointError naming the file


def _copy_shipped(tmp_path):
    from mdlm_dna.artifacts.checkpoints import shipped_models

    folder = tmp_path / "model"
    shutil.copytree(shipped_models()["ecoli"], folder)
    return folder


@pytest.mark.parametrize("damage, names", [
    ("truncate", "model.safetensors"),
    ("format_only", "config.json"),
    ("not_json", "config.json"),
])  # fmt: skip
def test_damaged_model_folders_name_the_file(tmp_path, damage, names):
    from mdlm_dna import DiffusionLM

    folder = _copy_shipped(tmp_path)
    if damage == "truncate":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "format_only":
        (folder / "config.json").write_text(json.dumps({"format": "mdlm-dna"}))
    else:
        (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=re.escape(str(folder / names))):
        DiffusionLM.from_pretrained(str(folder), device="cpu")


@pytest.mark.parametrize("source, message", [
    ("FASTA", "not a checkpoint (pretrain's .ckpt files)"),
    ("/dev/null", "/dev/null: not a regular file or folder"),
])  # fmt: skip
def test_sources_that_are_not_models_get_a_clear_message(tmp_path, source, message):
    from mdlm_dna import DiffusionLM

    if source == "FASTA":
        source = str(tmp_path / "some.fa")
        Path(source).write_text(">a\nACGT\n")
    with pytest.raises(CheckpointError, match=re.escape(message)) as e:
        DiffusionLM.from_pretrained(source, device="cpu")
    assert "weights_only" not in str(e.value) and "issue" not in str(e.value)


@pytest.mark.parametrize("spec, message", [
    ("{broken", "cannot be read as JSON"),
    (json.dumps({"classifier": "cnn", "head": {}, "input_len": 8}), "no num_classes"),
])  # fmt: skip
def test_malformed_classifier_json_names_the_file(tmp_path, spec, message):
    from mdlm_dna.classifier import load_classifier

    (tmp_path / "classifier.json").write_text(spec)
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'classifier.json'}: {message}")):
        load_classifier(tmp_path)


# ----------------------------------------------------------------------------------------------------
# a run folder a pretrain holds is not written to


def test_sample_refuses_a_run_folder_a_pretrain_holds(tmp_path):
    from mdlm_dna.utils.rundir import RunLock, check_not_in_use, running_pretrain

    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        assert running_pretrain(run_dir / "samples" / "x.fa") == run_dir
        with pytest.raises(RunDirError, match="is in use by a running pretrain"):
            _sample(tmp_path, output=str(run_dir / "samples.fa"))
        with pytest.raises(RunDirError):
            check_not_in_use(run_dir / "export", "export")
    assert not (run_dir / "samples.fa").exists()
    assert running_pretrain(run_dir) is None  # released: writing is fine again
    check_not_in_use(run_dir / "samples.fa")


def test_sample_writes_where_asked_when_all_is_well(tmp_path):
    report = _sample(tmp_path, output=str(tmp_path / "o" / "s.fa"))
    assert Path(report["fasta"]).is_file() and report["num_samples"] == 2


# ----------------------------------------------------------------------------------------------------
# the command lines: one `error:` line, exit status 2, no run folder left behind


def _cli(module, *args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.mark.parametrize("module, args, message", [
    ("mdlm_dna.sample", ["ckpt=ecoli", "guidance.scale=nan", "hydra.run.dir=RUN"],
     "error: guidance.scale=nan: must be a finite number"),
    ("mdlm_dna.score", ["ckpt=ecoli", "input=in.fa", "out=in.fa"], "error: out=in.fa: is the input file"),
])  # fmt: skip
def test_cli_errors_are_one_line_exit_2_and_leave_no_folder(tmp_path, module, args, message):
    (tmp_path / "in.fa").write_text(">a\nACGT\n")
    args = [a.replace("RUN", str(tmp_path / "run")) for a in args]
    p = _cli(module, *args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith(message) and "Traceback" not in p.stderr
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "in.fa").read_text() == ">a\nACGT\n"
