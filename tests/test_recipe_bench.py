"""benchmarks/recipe.py: what a candidate runs, and the training FLOPs its table and plot report."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import recipe  # noqa: E402

from mdlm_dna.data.tokenizers import BASES, SPECIAL_TOKENS  # noqa: E402
from mdlm_dna.train.flops import dit_flops_per_token  # noqa: E402

MODEL = {"d_model": 128, "n_layers": 4, "mlp_ratio": 4}
VOCAB = len(BASES) + len(SPECIAL_TOKENS)


def test_an_ar_candidate_is_causal_and_has_no_noise_times():
    overrides = recipe.candidate_overrides("ar300_s0")
    assert overrides[0] == "objective=ar" and "model.causal=true" in overrides
    assert not any(o.startswith("objective.time_sampling") for o in overrides)
    assert "trainer.max_steps=300" in overrides and "seed=0" not in overrides


def test_an_init_from_candidate_names_its_sources_checkpoint():
    overrides = recipe.candidate_overrides("ar600_mdlm43")
    assert overrides[-1] == f"init_from={recipe.RUNS / 'ar600' / 'checkpoints' / 'last.ckpt'}"
    assert "model.input_shift=true" in overrides and "trainer.max_steps=43" in overrides


def test_flops_count_the_source_and_match_the_600_step_mdlm():
    """Written out: tokens x FLOPs per token (the AR's causal attention is half the MDLM's), source included.
    AR 600 + MDLM 43 steps is the compute of MDLM 600 steps from scratch (to 0.1 %)."""
    tokens = 32 * 128
    mdlm = dit_flops_per_token(MODEL, VOCAB, 128) * tokens
    ar = dit_flops_per_token({**MODEL, "causal": True}, VOCAB, 128) * tokens
    assert recipe.train_flops("c5_s0") == 300 * mdlm
    assert recipe.train_flops("ar600") == 600 * ar
    assert recipe.train_flops("ar600_mdlm43") == 600 * ar + 43 * mdlm
    assert abs(recipe.train_flops("ar600_mdlm43") / (600 * mdlm) - 1) < 1e-3


def test_a_chain_candidate_counts_the_chain():
    """model.markov_order=6: the forward-backward over 4^6 states, 24 operations per state and token, on top."""
    assert "model.markov_order=6" in recipe.candidate_overrides("c5_mk6_s0")
    chain = 300 * 32 * 128 * 24 * 4**6
    assert recipe.train_flops("c5_mk6_s0") == recipe.train_flops("c5_s0") + chain


def test_chain_window_bits_are_the_chains_left_to_right_likelihood(monkeypatch):
    """Per-window bits of the chain reference, against MarkovChain.score of the whole test split (an independent
    computation): the windows tile the split, so their mean is its exact bits/base; and a longer-window
    candidate is scored on its own windows, never paired with 128-base ones."""
    import numpy as np

    from mdlm_dna.evaluation import markov

    rng = np.random.default_rng(0)
    splits = {"train": rng.integers(0, 4, 5000), "validation": rng.integers(0, 4, 600),
              "test": rng.integers(0, 4, 512 * 3)}
    monkeypatch.setattr(markov, "ecoli_splits", lambda cache_dir=None: splits)
    recipe.chain_window_bits.cache_clear()
    chain, _ = markov.MarkovChain.fit_select_alpha(splits["train"], splits["validation"], 3, markov.ALPHAS)
    for length in (128, 512):
        bits = recipe.chain_window_bits(length, 3)
        assert bits.shape == (len(splits["test"]) // length,)
        assert np.isclose(bits.mean(), chain.score(splits["test"]))
    recipe.chain_window_bits.cache_clear()
    assert recipe.candidate_overrides("c5_mk6b_L512_s0")[3:5] == ["data.seq_len=512", "data.batch_size=8"]
    assert not any(o.startswith("_") for o in recipe.candidate_overrides("c5_mk6b_L512_s0"))


def test_a_shipped_source_is_named_and_its_training_counted():
    """The seventh round's continuation of the shipped model: init_from its name, FLOPs = its 10,000 steps (its
    card) at the default shape + the 30,000 new ones."""
    overrides = recipe.candidate_overrides("ecoli_cont30k")
    assert overrides[-1] == "init_from=ecoli" and "trainer.max_steps=30000" in overrides
    step = dit_flops_per_token(MODEL, VOCAB, 128) * 32 * 128
    assert recipe.train_flops("ecoli_cont30k") == (10_000 + 30_000) * step


def test_a_long_candidate_runs_in_segments_and_adds_their_cpu_seconds(tmp_path, monkeypatch):
    """--stop-after: a segment that stops short of the steps is not scored and leaves its CPU seconds; the segment
    that finishes adds them up, then each bound asked for is one scored row; a segment at 2 threads runs with
    OMP_NUM_THREADS=2 and the rows say which thread counts the segments used."""
    import json
    import subprocess
    import types

    import pandas as pd

    monkeypatch.setattr(recipe, "RUNS", tmp_path)
    monkeypatch.setattr(recipe, "WINDOWS", tmp_path / "windows")
    monkeypatch.setattr(recipe, "RESULTS", tmp_path / "runs.csv")
    threads_seen = []

    def fake_run(cmd, env, log, segment):
        threads_seen.append(env["OMP_NUM_THREADS"])
        return 10.0

    monkeypatch.setattr(recipe, "run_timed", fake_run)
    steps = iter([1200, 30_000])
    monkeypatch.setattr(recipe, "trained_steps", lambda run_dir: next(steps))
    scored = []

    def fake_score(cmd, **kwargs):
        scored.append(cmd[-1])
        return types.SimpleNamespace(stdout=json.dumps({"bits_per_base": 1.9, "se": 0.003, "windows": 1813}))

    monkeypatch.setattr(subprocess, "run", fake_score)
    assert recipe.run_candidate("ecoli_cont30k", stop_after_minutes=60) == []
    assert json.loads((tmp_path / "ecoli_cont30k.cost_partial.json").read_text())["cpu_s"] == 10.0
    assert not scored and not (tmp_path / "runs.csv").exists()
    rows = recipe.run_candidate("ecoli_cont30k", bounds=("reference", "full"), threads=2)
    assert [r["bound"] for r in rows] == ["reference", "full"] and all(r["cpu_s"] == 20.0 for r in rows)
    assert threads_seen == ["1", "2"] and all(r["threads"] == "1+2" for r in rows)
    assert "bound='full'" in scored[1] and "windows/ecoli_cont30k/test_windows_ema_full.npy" in scored[1]
    assert (tmp_path / "windows" / "ecoli_cont30k").is_dir()  # made for the scoring process to save into
    assert not (tmp_path / "ecoli_cont30k.cost_partial.json").exists()
    assert json.loads((tmp_path / "ecoli_cont30k.cost.json").read_text())["threads"] == [1, 2]
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 2
    rows = recipe.run_candidate("ecoli_cont30k", bounds=("full",), strands=("forward", "both"))  # rescored only
    assert [r["strands"] for r in rows] == ["forward", "both"] and threads_seen == ["1", "2"]
    assert "strands='both'" in scored[-1] and "test_windows_ema_full_both.npy" in scored[-1]
    assert pd.read_csv(tmp_path / "runs.csv")["strands"].fillna("forward").tolist() == ["forward"] * 3 + ["both"]
    rows = recipe.run_candidate("ecoli_cont30k", strands=("both",), context=64)
    assert rows[0]["context"] == 64 and "context=64" in scored[-1] and "test_windows_ema_both_ctx64.npy" in scored[-1]


def test_a_stopped_segment_is_not_a_failure_but_other_exits_are(tmp_path):
    """run_timed: exit code 130 (pretrain stopped by checkpoint.stop_after_minutes, its state saved) is a segment's
    end when one was asked for, and a failure otherwise; its CPU seconds are returned."""
    import subprocess

    import pytest

    busy = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nsys.exit(130)"
    with (tmp_path / "log").open("w") as log:
        assert 0.25 < recipe.run_timed([sys.executable, "-c", busy], {}, log, segment=True) < 30
        with pytest.raises(subprocess.CalledProcessError):
            recipe.run_timed([sys.executable, "-c", busy], {}, log)
        with pytest.raises(subprocess.CalledProcessError):
            recipe.run_timed([sys.executable, "-c", "import sys; sys.exit(1)"], {}, log, segment=True)


def test_scored_windows_cover_the_test_split_in_order_with_the_bases_before_as_context():
    import numpy as np

    splits = {"validation": np.arange(100, 110), "test": np.arange(10)}
    assert [w.tolist() for w in recipe.scored_windows(splits, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    windows = recipe.scored_windows(splits, 4, context=2)
    assert windows[0].tolist() == [108, 109, 0, 1]  # the first window's context: the validation split's tail
    assert np.concatenate([w[2:] for w in windows]).tolist() == list(range(10))  # every test base once, in order


def test_continued_models_and_ar_initialised_ones_are_told_apart_through_their_sources():
    """The plot's series: an MDLM started from an AR run (directly or through another MDLM) is "AR -> MDLM"; the
    shipped model trained further, and that run trained further again (ecoli40k_L512 from ecoli_cont30k), are not."""
    assert recipe.from_ar("ar600_mdlm300") and recipe.from_ar("ar600")
    assert not recipe.from_ar("ecoli40k_L512") and not recipe.from_ar("ecoli_cont30k") and not recipe.from_ar("c5_s0")


def test_window_scores_are_kept_in_the_repository_and_older_run_folders_still_read(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(recipe, "WINDOWS", tmp_path / "kept")
    new = recipe.window_scores("c5_s0", bound="full")
    assert new == tmp_path / "kept" / "c5_s0" / "test_windows_ema_full.npy"
    older = tmp_path / "runs" / "c5_s0" / "test_windows_ema_full.npy"
    older.parent.mkdir(parents=True)
    older.write_bytes(b"")
    assert recipe.window_scores("c5_s0", bound="full") == older  # scored before the move
    assert recipe.window_scores("c5_s0", bound="full", saving=True) == new  # a rescoring goes to the repository
    new.parent.mkdir(parents=True)
    new.write_bytes(b"")
    assert recipe.window_scores("c5_s0", bound="full") == new  # a rescoring wins
