"""predict: a fine-tuned classifier applied to new sequences reproduces the fine-tune's own test metrics exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from mdlm_dna.classifier import accuracy_mcc, load_classifier
from mdlm_dna.finetune import finetune
from mdlm_dna.predict import predict
from mdlm_dna.utils.errors import CheckpointError, ConfigError, DataError
from mdlm_dna.utils.resources import config_dir, data_dir

SAMPLE = data_dir() / "genomic_benchmarks_sample"
TRAIN, TEST = SAMPLE / "gue_prom_core_tata_train_200.csv", SAMPLE / "gue_prom_core_tata_dev_60.csv"
FAST = ["trainer.max_epochs=2", "data.batch_size=32", "data.eval_batch_size=16", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "trainer.log_every_n_steps=5"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny_finetune(out, *overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="finetune", overrides=["task=csv", f"task.train_path={TRAIN}",
                                                         f"task.test_path={TEST}", *FAST, *overrides])
    finetune(cfg, out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    return {
        "cnn": tiny_finetune(root / "cnn", "classifier=cnn", "+cnn.embedding_dim=8"),
        "dit": tiny_finetune(root / "dit", "model=dit_tiny", "model.d_model=32", "model.n_layers=1",
                             "model.n_heads=2", "model.cond_dim=16", "head.conjoin_test=true"),
        "dit_attention": tiny_finetune(root / "dit_attention", "model=dit_tiny", "model.d_model=32",
                                       "model.n_layers=1", "model.n_heads=2", "model.cond_dim=16",
                                       "head.pooling=attention"),
        # the EMA of the weights is what is tested and saved (optim.ema_decay)
        "dit_ema": tiny_finetune(root / "dit_ema", "model=dit_tiny", "model.d_model=32", "model.n_layers=1",
                                 "model.n_heads=2", "model.cond_dim=16", "optim.ema_decay=0.9"),
        # a causal backbone reading both strands (head.strands=both), pooled by attention with position scores
        "dit_both": tiny_finetune(root / "dit_both", "model=dit_tiny", "model.d_model=32", "model.n_layers=1",
                                  "model.n_heads=2", "model.cond_dim=16", "model.causal=true",
                                  "head.pooling=attention", "head.strands=both", "head.position_bias=true"),
    }


@pytest.mark.parametrize("kind", ["cnn", "dit", "dit_attention", "dit_both", "dit_ema"])
def test_rescoring_the_test_split_reproduces_finetune_metrics_exactly(runs, kind, tmp_path):
    run = runs[kind]
    saved = json.loads((run / "metrics.json").read_text())
    table = predict({"run": str(run), "input": str(TEST), "out": str(tmp_path / "p.tsv")})
    back = pd.read_csv(tmp_path / "p.tsv", sep="\t", dtype={"label": str})
    truth = pd.read_csv(TEST)["label"].astype(str)
    assert list(back.columns) == ["name", "label", "p_0", "p_1"] and len(back) == len(truth) == saved["test"]
    assert back["name"].tolist() == [f"row_{i}" for i in range(len(truth))]  # the input's order
    assert np.allclose(back[["p_0", "p_1"]].sum(axis=1), 1.0)
    classes = load_classifier(run).classes
    acc, mcc = accuracy_mcc(truth.map(classes.index).to_numpy(), table["label"].map(classes.index).to_numpy(), 2)
    assert acc == saved["accuracy"] and mcc == saved["mcc"]  # exactly, not approximately
    assert (back["label"] == table["label"]).all()


def test_python_api_and_conjoin_test_is_honoured(runs):
    clf = load_classifier(runs["dit"])
    seqs = pd.read_csv(TEST)["sequence"].tolist()[:8]
    rc = [s[::-1].translate(str.maketrans("ACGT", "TGCA")) for s in seqs]
    a, b = clf.predict(seqs), clf.predict(rc)
    assert np.allclose(a[["p_0", "p_1"]], b[["p_0", "p_1"]], atol=1e-5)  # conjoin: RC-invariant predictions
    assert a["name"].tolist() == [f"seq_{i}" for i in range(8)]


def test_bad_inputs_are_one_line_errors_naming_the_file(runs, tmp_path):
    clf = load_classifier(runs["cnn"])
    with pytest.raises(DataError, match="invalid character 'Z'"):
        clf.predict(["ACGTZ"], names=["bad_one"])
    with pytest.raises(DataError, match="sequence 'long' has 1,000 bases; this classifier accepts at most"):
        clf.predict(["A" * 1000], names=["long"])
    assert len(clf.predict(["A" * 1000], truncate=True)) == 1
    with pytest.raises(ConfigError, match="batch_size=0"):
        clf.predict(["ACGT"], batch_size=0)
    with pytest.warns(UserWarning, match="U or IUPAC"):
        clf.predict(["ACGUR"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "classifier.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="classifier.json: cannot be read as JSON"):
        load_classifier(broken)
    (broken / "classifier.json").write_text(json.dumps({"classifier": "cnn", "head": {}}))
    with pytest.raises(CheckpointError, match="no num_classes, max_length"):
        load_classifier(broken)
    spec = json.loads((runs["cnn"] / "classifier.json").read_text())
    (broken / "classifier.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="classifier.safetensors: missing"):
        load_classifier(broken)
    (broken / "classifier.safetensors").write_bytes((runs["cnn"] / "classifier.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot load the classifier's weights"):
        load_classifier(broken)
    with pytest.raises(CheckpointError, match="a model folder .config.json., not a finetune run folder"):
        load_classifier(data_dir() / "models" / "ecoli")


def test_cli_bad_character_is_one_line_exit_2(runs, tmp_path, monkeypatch, capsys):
    from tests.test_export_folder import run_cli

    fa = tmp_path / "in.fa"
    fa.write_text(">ok\nACGTACGT\n>bad\nACGT*ACGT\n")
    monkeypatch.chdir(tmp_path)  # Hydra writes <command>.log where it runs
    code, err = run_cli("mdlm_dna.predict", [f"run={runs['cnn']}", f"input={fa}"], monkeypatch, capsys)
    assert code == 2, err
    assert "error: sequence 'bad': invalid character '*'" in err and "Traceback" not in err
    assert not (tmp_path / "in.predictions.tsv").exists()


@pytest.mark.parametrize("kind", ["cnn", "dit", "dit_attention", "dit_both"])
def test_classifier_export_loads_as_automodel_and_in_predict(runs, kind, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mdlm_dna.export import export

    folder = export({"ckpt": str(runs[kind]), "out": str(tmp_path / "exp")})
    meta = json.loads((folder / "config.json").read_text())
    assert meta["id2label"] == {"0": "0", "1": "1"} and "AutoModelForSequenceClassification" in meta["auto_map"]
    seqs = pd.read_csv(TEST)["sequence"].tolist()[:6]
    seqs[1] = seqs[1][:50]  # unequal lengths: right padding with an attention mask
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    hf = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    assert hf.config.id2label == {0: "0", 1: "1"}
    enc = tok(seqs, return_tensors="pt", padding=True)
    with torch.no_grad():
        probs = hf(**enc).logits.double().softmax(-1).numpy()
    ours = load_classifier(runs[kind]).predict(seqs, batch_size=16)
    assert np.allclose(probs, ours[["p_0", "p_1"]].to_numpy(), atol=1e-6)
    again = predict({"run": str(folder), "input": str(TEST), "out": str(tmp_path / "q.tsv")})
    first = predict({"run": str(runs[kind]), "input": str(TEST), "out": str(tmp_path / "r.tsv")})
    assert again["label"].equals(first["label"]) and np.allclose(again["p_0"], first["p_0"], atol=1e-7)
    card = (folder / "README.md").read_text()
    from huggingface_hub import ModelCard

    data = ModelCard(card, ignore_metadata_errors=False).data
    assert data.pipeline_tag == "text-classification" and data.eval_results[0].metric_type == "accuracy"
    with pytest.raises(CheckpointError, match="a fine-tuned classifier, not a language model"):
        from mdlm_dna import DiffusionLM

        DiffusionLM.from_pretrained(folder)


def test_a_classifier_saved_with_the_old_input_len_key_loads_and_predicts_the_same(runs, tmp_path):
    """Specs written before the key was renamed (``input_len`` -> ``max_length``) still load, unchanged in effect."""
    for kind in ("cnn", "dit"):
        spec = json.loads((runs[kind] / "classifier.json").read_text())
        assert "max_length" in spec and "input_len" not in spec
        old = tmp_path / kind
        old.mkdir()
        spec["input_len"] = spec.pop("max_length")
        (old / "classifier.json").write_text(json.dumps(spec))
        (old / "classifier.safetensors").write_bytes((runs[kind] / "classifier.safetensors").read_bytes())
        new_clf, old_clf = load_classifier(runs[kind]), load_classifier(old)
        assert old_clf.max_length == new_clf.max_length and old_clf.input_len == new_clf.input_len
        assert (old_clf.input_len is None) == (kind == "dit")
        seqs = pd.read_csv(TEST)["sequence"].tolist()[:6]
        pd.testing.assert_frame_equal(old_clf.predict(seqs), new_clf.predict(seqs))


def test_two_fine_tunes_never_write_one_run_folder(tmp_path):
    """finetune holds the run folder's lock: a second one into the same folder (the GUE table once ran two knob
    studies into one folder and both crashed on a shared metrics.csv) is a one-line error naming the holder."""
    from mdlm_dna.utils.errors import RunDirError
    from mdlm_dna.utils.rundir import RunLock

    out = tmp_path / "ft"
    with RunLock(out, kind="fine-tune"):
        with pytest.raises(RunDirError, match="in use by a running fine-tune"):
            tiny_finetune(out, "classifier=cnn", "+cnn.embedding_dim=8")
    assert not (out / "metrics.json").exists()
    tiny_finetune(out, "classifier=cnn", "+cnn.embedding_dim=8")  # released: the folder is usable again
    assert (out / "metrics.json").is_file() and (out / ".lock").is_file()


def test_a_run_cut_by_max_steps_inside_an_epoch_validates_its_last_weights(tmp_path):
    """180 training sequences in batches of 32 are 6 steps an epoch; max_steps=8 ends inside the second epoch. The
    run still validates at step 8, so the best-validation checkpoint can be the last, annealed weights."""
    run = tiny_finetune(tmp_path / "cut", "model=dit_tiny", "model.d_model=32", "model.n_layers=1", "model.n_heads=2",
                        "model.cond_dim=16", "trainer.max_epochs=5", "trainer.max_steps=8")
    metrics = pd.read_csv(run / "logs" / "metrics.csv")
    validated = metrics.dropna(subset=["val/mcc"])
    assert json.loads((run / "metrics.json").read_text())["steps"] == 8
    assert validated["step"].tolist() == [5, 7]  # after step 6 (the first epoch) and step 8 (0-based steps)
