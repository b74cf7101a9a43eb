"""Tracks (bigWig / bedGraph round trip) and plots (they draw, and draw the data given)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mdlm_dna.analysis import plots  # noqa: E402
from mdlm_dna.analysis.tracks import track  # noqa: E402
from mdlm_dna.utils.errors import ConfigError, DataError  # noqa: E402
from tests.test_analysis_probs import random_dna, tiny  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def model():
    return tiny(seq_len=16)


@pytest.fixture
def genome(tmp_path):
    seq = random_dna(60, 21)
    seq = seq[:25] + "N" + seq[26:]
    fa = tmp_path / "g.fa"
    fa.write_text(f">chrA\n{seq}\n>chrB\n{random_dna(30, 22)}\n")
    bed = tmp_path / "r.bed"
    bed.write_text("A\t20\t30\nchrA\t28\t35\nchrB\t0\t5\n")  # chr prefix matched; overlaps merged
    return fa, bed, seq


@pytest.mark.parametrize("suffix", [".bw", ".bedgraph"])
def test_track_round_trips_and_equals_probs(model, genome, tmp_path, suffix):
    import pyBigWig

    fa, bed, seq = genome
    out = track(model, fa, bed, stat="surprisal", out=tmp_path / f"s{suffix}")
    # expected: -log2 p(ref) with each base masked in the window centred on it within the whole contig
    p = model.probs([seq])[0]
    expect = -np.log2(p[np.arange(60), ["ACGTN".index(c) if c != "N" else 0 for c in seq]])
    expect[25] = np.nan
    if suffix == ".bw":
        bw = pyBigWig.open(str(out))
        got = np.array(bw.values("chrA", 20, 35))
        assert bw.chroms() == {"chrA": 60, "chrB": 30} and len(bw.intervals("chrB")) == 5
        bw.close()
    else:
        lines = [ln.split("\t") for ln in out.read_text().splitlines()]
        got = np.full(15, np.nan)
        for c, s, _e, v in lines:
            if c == "chrA":
                got[int(s) - 20] = float(v)
        assert sum(c == "chrB" for c, *_ in lines) == 5
    np.testing.assert_allclose(got, expect[20:35], rtol=1e-5, equal_nan=True)


def test_track_entropy_and_bad_inputs(model, genome, tmp_path):
    import pyBigWig

    fa, bed, seq = genome
    out = track(model, fa, bed, stat="entropy", out=tmp_path / "h.bw")
    bw = pyBigWig.open(str(out))
    p = model.probs([seq])[0][20]
    assert bw.values("chrA", 20, 21)[0] == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-5)
    bw.close()
    with pytest.raises(ConfigError, match="suffix"):
        track(model, fa, bed, out=tmp_path / "x.txt")
    (tmp_path / "bad.bed").write_text("chrZ\t0\t5\n")
    with pytest.raises(DataError, match="chrZ.*not in the FASTA"):
        track(model, fa, tmp_path / "bad.bed", out=tmp_path / "x.bw")
    (tmp_path / "bad.bed").write_text("chrB\t0\t50\n")
    with pytest.raises(DataError, match="past the end"):
        track(model, fa, tmp_path / "bad.bed", out=tmp_path / "x.bw")


def test_logo_matrix_is_information_scaled():
    p = np.array([[0.5, 0.5, 0, 0], [0.25] * 4, [np.nan] * 4])
    m = plots.logo_matrix(p).to_numpy()
    np.testing.assert_allclose(m[0], [0.5, 0.5, 0, 0])  # 1 bit of information, split
    np.testing.assert_allclose(m[1:], 0, atol=1e-12)
    np.testing.assert_allclose(plots.logo_matrix(p, "probability").to_numpy()[0], p[0])
    x = plots.ism_matrix(np.array([[0, -1, -2, -3.0]]), "A").to_numpy()
    np.testing.assert_allclose(x, [[2.0, 0, 0, 0]])


def test_plots_draw_the_data_given(tmp_path):
    rng = np.random.default_rng(0)
    seq = random_dna(24, 23)
    p = rng.dirichlet(np.ones(4), size=24)
    llr = np.log(p) - np.log(p[np.arange(24), ["ACGT".index(c) for c in seq]])[:, None]
    dep = rng.random((24, 24))
    for i, ax in enumerate([plots.logo(p, title="logo"), plots.ism_logo(llr, seq),
                            plots.ism_heatmap(llr, seq), plots.dependency_heatmap(dep, seq)]):
        ax.figure.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 1000
    ism_ax, dep_ax = plots.ism_heatmap(llr, seq), plots.dependency_heatmap(dep, seq)
    np.testing.assert_array_equal(ism_ax.images[0].get_array(), llr.T)
    np.testing.assert_array_equal(dep_ax.images[0].get_array(), dep)
    assert [t.get_text() for t in dep_ax.get_yticklabels()] == list(seq)
    logo_ax = plots.logo(p, kind="probability")
    assert len(logo_ax.patches) >= 24 * 4 - 4 and math.isclose(logo_ax.get_ylim()[1], 1.0, rel_tol=0.05)
    plt.close("all")
