"""The sampling entry point: FASTA + JSON report from a tiny checkpoint; prompts, in-filling, SAR; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdlm_dna.artifacts.checkpoints import CheckpointError
from mdlm_dna.diffusion.prompts import parse_infill, parse_prefix
from mdlm_dna.pretrain import run
from mdlm_dna.sample import generate

from .conftest import TINY, compose_pretrain

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_ckpt(ecoli_prefix, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run")
    cfg = compose_pretrain(*TINY, "genome=fasta", f"genome.path={ecoli_prefix}", "trainer.max_steps=3",
                           "trainer.val_check_interval=3", "model.time_conditioning=false")
    return Path(run(cfg, d)["last_ckpt"])


def cfg(ckpt: Path, out: Path, **kw) -> dict:
    base = dict(ckpt=str(ckpt), num_samples=4, length=64, steps=16, sampler="ancestral", sar_inner="ancestral",
                block_len=None, overlap=None, allow_time_conditioned_cache=False, prefix=None, infill=None,
                infill_n_is_mask=False, dtype="float64", batch_size=3, use_ema=True, seed=0, device="cpu",
                output=str(out), metrics=True, reference_windows=32, plots=True, genome_path=None, cache_dir=None)
    base.update(kw)
    return base


def read_fasta(path: Path) -> list[str]:
    seqs = []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            seqs.append("")
        else:
            seqs[-1] += line
    return seqs


def test_generate_writes_fasta_report_and_plots(tiny_ckpt, tmp_path):
    rep = generate(cfg(tiny_ckpt, tmp_path / "s.fa", sampler="cached"))
    seqs = read_fasta(tmp_path / "s.fa")
    assert len(seqs) == 4 and all(len(s) == 64 and set(s) <= set("ACGTN") for s in seqs)
    saved = json.loads((tmp_path / "s.fa.json").read_text())
    assert saved["network_calls"] == rep["network_calls"] > 0 and saved["sequence_evals_saved_by_cache"] > 0
    assert saved["network_evals_per_sample"] < 16  # the cache skipped some steps
    assert {"generated", "uniform random", "shuffled real"} <= set(saved["metrics"])
    assert "js_k6" in saved["metrics"]["generated"] and saved["reference_windows"] > 10
    assert all(Path(p).exists() for p in saved["plots"])
    # same seed, same samples; the uncached sampler gives the same sequences (the model ignores time)
    generate(cfg(tiny_ckpt, tmp_path / "t.fa", metrics=False))
    assert read_fasta(tmp_path / "t.fa") == seqs


def test_prefix_infill_and_sar(tiny_ckpt, tmp_path):
    generate(cfg(tiny_ckpt, tmp_path / "p.fa", prefix="acgTNNGG", metrics=False))
    assert all(s.startswith("ACGTNNGG") for s in read_fasta(tmp_path / "p.fa"))

    template = "ACGTACGT" + "-" * 20 + "TTTTGGGG" + "?" * 4
    generate(cfg(tiny_ckpt, tmp_path / "i.fa", infill=template, length=None, metrics=False))
    for s in read_fasta(tmp_path / "i.fa"):
        assert len(s) == len(template)
        assert all(a == b for a, b in zip(s, template) if b not in "-?") and "-" not in s

    rep = generate(cfg(tiny_ckpt, tmp_path / "l.fa", sampler="sar", length=150, overlap=16, plots=False))
    assert [len(s) for s in read_fasta(tmp_path / "l.fa")] == [150] * 4 and rep["length"] == 150


def test_bad_input_is_a_clear_error(tiny_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="nope.ckpt: no such file or folder"):
        generate(cfg(tmp_path / "nope.ckpt", tmp_path / "x.fa"))
    with pytest.raises(ValueError, match="infill sets the length"):
        generate(cfg(tiny_ckpt, tmp_path / "x.fa", infill="AC--GT", length=64))
    with pytest.raises(ValueError, match="invalid character 'X' at position 2"):
        generate(cfg(tiny_ckpt, tmp_path / "x.fa", prefix="ACXT"))
    with pytest.raises(ValueError, match="length=0: must be > 0"):
        generate(cfg(tiny_ckpt, tmp_path / "x.fa", length=0))
    with pytest.raises(ValueError, match="shorter than length"):
        generate(cfg(tiny_ckpt, tmp_path / "x.fa", prefix="ACGT" * 20))
    with pytest.raises(ValueError, match="nothing to generate"):
        parse_infill("ACGT")
    assert parse_prefix("acgtn").tolist() == [0, 1, 2, 3, 4]
    assert parse_infill("AN-", n_is_mask=True).tolist() == [0, 5, 5]


def test_command_line(tiny_ckpt, tmp_path):
    out = tmp_path / "cli.fa"
    ok = subprocess.run(
        [sys.executable, "-m", "mdlm_dna.sample", f"ckpt={tiny_ckpt}", "num_samples=2", "length=32", "steps=8",
         f"output={out}", "reference_windows=16", "plots=false", f"hydra.run.dir={tmp_path / 'h'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(read_fasta(out)) == 2 and json.loads(out.with_suffix(".fa.json").read_text())["network_calls"] == 8
    assert "uniform random" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "mdlm_dna.sample", f"ckpt={tiny_ckpt}", "prefix=ACGJ", "num_samples=1",
         f"hydra.run.dir={tmp_path / 'h2'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 2 and "invalid character 'J' at position 3" in bad.stderr  # U would be read as T


def test_config_parses_infill_templates():
    from hydra import compose, initialize_config_dir

    from mdlm_dna.utils.resources import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        c = compose(config_name="sample", overrides=["ckpt=x", "infill=AC--GT??NN", "sampler=sar"])
    assert c.infill == "AC--GT??NN" and c.sampler == "sar" and c.dtype == "float64"
