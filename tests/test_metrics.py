"""Sequence metrics: exact values on small cases; real held-out windows are near themselves and far from random."""

from __future__ import annotations

import numpy as np
import pytest

from mdlm_dna.api import reference_windows
from mdlm_dna.evaluation.metrics import (
    gc_content,
    homopolymer_runs,
    js_distance,
    kmer_counts,
    kmer_spectrum,
    metrics_table,
    n_fraction,
    plot_gc_distribution,
    plot_kmer_spectrum,
    sequence_metrics,
    shuffled,
    uniform_random,
)
from mdlm_dna.utils.resources import data_file


@pytest.fixture(scope="module")
def real_windows(tmp_path_factory) -> np.ndarray:
    """400 held-out (test split) 256-base windows of the embedded E. coli genome."""
    cfg = {"genome": {"path": data_file("GCF_000005845.2_ASM584v2_genomic.fna.gz")}, "data": {}}
    return reference_windows(cfg, 256, 400, cache_dir=tmp_path_factory.mktemp("cache"))


def test_small_exact_values():
    assert gc_content(["GGCC", "AATT", "GCNN", "NNNN"])[:3].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(gc_content(["NNNN"])[0])
    assert n_fraction(["ACGN", "NNAA"]) == pytest.approx(3 / 8)
    c = kmer_counts(["ACGTNAC"], 2)
    assert c.sum() == 4 and c[0 * 4 + 1] == 2 and c[1 * 4 + 2] == 1 and c[2 * 4 + 3] == 1  # AC x2, CG, GT; none with N
    assert kmer_spectrum(["ACGT"], 1).tolist() == [0.25] * 4
    runs = homopolymer_runs(["AAACCNGT", "TTTTTTTTTTTTTTTTTTTTTTTTT"], max_run=20)
    assert runs[3] == 1 and runs[2] == 1 and runs[1] == 2 and runs[20] == 1 and runs.sum() == 5
    assert js_distance([1, 0], [1, 0]) == 0 and js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    ids = np.array([[0, 1, 2, 3], [3, 3, 3, 3]])
    assert gc_content(ids).tolist() == gc_content(["ACGT", "TTTT"]).tolist()


def test_real_vs_itself_is_zero_and_uniform_is_far(real_windows):
    ref = real_windows
    assert ref.shape == (400, 256)
    self_row = sequence_metrics(ref, ref)
    assert all(self_row[f"js_k{k}"] == 0 for k in range(1, 7)) and self_row["gc_abs_diff"] == 0
    half = sequence_metrics(ref[1::2], ref[::2])
    uni = sequence_metrics(uniform_random(200, 256), ref[::2])
    for k in (2, 3, 4):  # held-out real is several times closer to real than uniform random is
        assert half[f"js_k{k}"] < 0.5 * uni[f"js_k{k}"], (k, half, uni)
    assert half["js_k3"] < 0.04 and uni["js_k3"] > 0.08
    shuf = sequence_metrics(shuffled(ref[1::2]), ref[::2])
    assert shuf["js_k1"] < 0.02 < 0.05 < shuf["js_k3"]  # same composition, no 3-mer structure
    # a GC-rich generator is caught at k=1 and by GC content
    rich = np.random.default_rng(0).choice(4, size=(100, 256), p=[0.1, 0.4, 0.4, 0.1])
    r = sequence_metrics(rich, ref)
    assert r["gc_abs_diff"] > 0.2 and r["js_k1"] > 0.2


def test_table_and_plots(real_windows, tmp_path):
    gen = uniform_random(50, 256, seed=3)
    table = metrics_table({"generated": gen}, real_windows[:100])
    assert list(table.index) == ["generated", "real (reference itself)", "real (held-out subset)", "uniform random",
                                 "shuffled real"]
    assert (table["num"] == [50, 100, 50, 50, 50]).all()  # baselines as large as the generated set
    for col in ["gc_mean", "n_fraction", "homopolymer_js", *[f"js_k{k}" for k in range(1, 7)]]:
        assert col in table.columns
    assert table.loc["generated", "js_k3"] == pytest.approx(table.loc["uniform random", "js_k3"], abs=0.05)
    p1 = plot_kmer_spectrum(gen, real_windows, 3, tmp_path / "k3.png")
    p2 = plot_gc_distribution({"real": real_windows, "gen": gen}, tmp_path / "gc.png")
    for p in (p1, p2):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
