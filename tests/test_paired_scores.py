"""benchmarks/paired_scores.py: paired differences over the same test bases, whatever the two windows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import paired_scores  # noqa: E402
import recipe  # noqa: E402


def test_pairing_unequal_windows_is_the_difference_over_the_same_bases():
    """Per-base bits written out: windows of 3 and of 2 bases over 12 bases pair over blocks of 6, and the
    difference is that of per-base means over those blocks, computed here from the bases themselves."""
    rng = np.random.default_rng(0)
    base_a, base_b = rng.random(12), rng.random(13)  # B scored one base more: left out
    a = base_a.reshape(4, 3).mean(1)
    b = base_b[:12].reshape(6, 2).mean(1)
    r = paired_scores.paired(a, 3, b, 2)
    per_block = base_a.reshape(2, 6).mean(1) - base_b[:12].reshape(2, 6).mean(1)
    assert r["bases"] == 12 and r["blocks"] == 2
    assert r["difference"] == pytest.approx(per_block.mean())
    assert r["se"] == pytest.approx(per_block.std(ddof=1) / np.sqrt(2))
    assert r["a"] == pytest.approx(base_a.mean()) and r["b"] == pytest.approx(base_b[:12].mean())


def test_too_few_common_blocks_is_an_error():
    with pytest.raises(ValueError, match="too few"):
        paired_scores.paired(np.ones(1), 512, np.ones(4), 128)


def test_a_context_window_scores_the_block_the_pairing_assumes():
    """Window i of a scoring with context C scores test bases [i (L - C), (i + 1)(L - C)): the blocks start at the
    split's first base, as a plain scoring's windows do."""
    splits = {"validation": np.arange(1000, 1100), "test": np.arange(40)}
    length, context = 8, 3
    for i, w in enumerate(recipe.scored_windows(splits, length, context)):
        block = length - context
        assert w[context:].tolist() == splits["test"][i * block : (i + 1) * block].tolist()
    assert recipe.scored_windows(splits, length, context)[0][:context].tolist() == [1097, 1098, 1099]


def test_one_chain_scored_in_two_window_lengths_differs_by_nothing():
    """The same exact per-base figures grouped as 128- and 512-base windows: pairing must bring them onto the same
    bases (a misaligned grouping would read a difference of the DNA's spread, ~0.01)."""
    r = paired_scores.compare("markov6", "markov6:L512")
    assert r["bases"] == (231_936 // 512) * 512
    assert abs(r["difference"]) < 1e-12 and r["se"] < 1e-12
    assert r["a"] == pytest.approx(1.9378, abs=5e-4)  # the reference figure of the order-6 chain


def test_missing_scores_are_not_run_when_asked_not_to(tmp_path, monkeypatch):
    monkeypatch.setattr(paired_scores, "WINDOWS", tmp_path)
    assert paired_scores.compare("no_such_model:L512", "markov6", run=False) is None
    assert "not scored" in paired_scores.table([("x", "no_such_model", "markov6")], run=False)
    np.save(paired_scores.window_path(paired_scores.Scoring.parse("kept:L512"), 16), np.full(453, 2.0))
    r = paired_scores.compare("kept:L512", "markov6", run=False)
    assert r["a"] == 2.0 and r["difference"] == pytest.approx(2.0 - r["b"])


def test_a_bad_scoring_names_itself():
    with pytest.raises(ValueError, match="ecoli:ctx600:L512"):
        paired_scores.Scoring.parse("ecoli:ctx600:L512")
