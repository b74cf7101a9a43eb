"""The logic of benchmarks/variant_effects.py on tiny inputs: AUROC, bootstrap, Markov window llr, information."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import variant_effects as ve  # noqa: E402

from mdlm_dna.analysis.genes import Gene  # noqa: E402
from mdlm_dna.evaluation.markov import MarkovChain  # noqa: E402


def brute_auroc(pos, neg) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_against_the_pair_count_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = rng.integers(0, 6, rng.integers(1, 15)).astype(float)  # many ties
        neg = rng.integers(0, 6, rng.integers(1, 15)).astype(float)
        assert ve.auroc(pos, neg) == pytest.approx(brute_auroc(pos, neg))
    assert ve.auroc(np.array([1.0]), np.array([])) != ve.auroc(np.array([1.0]), np.array([]))  # NaN


def test_bootstrap_is_the_percentile_of_resampled_brute_force_aurocs():
    rng = np.random.default_rng(1)
    a_pos, a_neg = rng.normal(1, 1, 12), rng.normal(0, 1, 9)
    b_pos, b_neg = a_pos + rng.normal(0, 1, 12), a_neg.copy()
    single, diff = ve.bootstrap_auroc(np.stack([a_pos, b_pos]), np.stack([a_neg, b_neg]), n_boot=200, seed=3)
    draw = np.random.default_rng(3)  # the same draws, in the same order: positives then negatives
    stats = []
    for _ in range(200):
        ip, ineg = draw.integers(0, 12, 12), draw.integers(0, 9, 9)
        stats.append([brute_auroc(a_pos[ip], a_neg[ineg]), brute_auroc(b_pos[ip], b_neg[ineg])])
    stats = np.array(stats)
    assert single[0] == pytest.approx(np.quantile(stats[:, 0], [0.025, 0.975]))
    assert single[1] == pytest.approx(np.quantile(stats[:, 1], [0.025, 0.975]))
    assert diff[0, 1] == pytest.approx(np.quantile(stats[:, 0] - stats[:, 1], [0.025, 0.975]))
    assert diff[0, 0].tolist() == [0.0, 0.0]


def window_log_likelihood(chain: MarkovChain, ids: np.ndarray) -> float:
    """natural-log likelihood of a whole A/C/G/T sequence from MarkovChain.score (bits/base x length)."""
    return -chain.score(ids) * len(ids) * math.log(2)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_markov_llr_is_the_window_likelihood_change(order):
    rng = np.random.default_rng(order)
    chain = MarkovChain.fit(rng.integers(0, 4, 3000), order, alpha=0.5)
    ids = rng.integers(0, 4, 40)
    window = 11
    positions = np.array([0, 1, 2, 5, 20, 37, 38, 39])  # window shifted at both ends, and centred
    lp = ve.markov_site_log_probs(chain, ids, positions, window)
    assert np.allclose(np.exp(lp).sum(1), 1)
    for i, p in enumerate(positions):
        s = int(np.clip(p - window // 2, 0, len(ids) - window))
        ll = []
        for b in range(4):
            x = ids.copy()
            x[p] = b
            ll.append(window_log_likelihood(chain, x[s : s + window]))
        for alt in range(4):
            want = ll[alt] - ll[ids[p]]
            got = ve.variant_llr(lp, np.array([i]), np.array([ids[p]]), np.array([alt]))[0]
            assert got == pytest.approx(want, abs=1e-9)


def test_markov_both_strands_averages_the_reverse_complement():
    rng = np.random.default_rng(5)
    chain = MarkovChain.fit(rng.integers(0, 4, 2000), 2, alpha=1.0)
    ids = rng.integers(0, 4, 30)
    pos = np.array([3, 15])
    fwd = ve.markov_site_log_probs(chain, ids, pos, 9)
    rc = 3 - ids[::-1]
    rev = ve.markov_site_log_probs(chain, rc, 29 - pos, 9)[:, ::-1]
    both = ve.markov_log_probs(chain, ids, pos, 9, "both")
    assert np.allclose(np.exp(both), (np.exp(fwd) + np.exp(rev)) / 2)


def test_information_and_sd_matches():
    with np.errstate(divide="ignore"):
        lp = np.log(np.array([[0.25] * 4, [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]))
    assert ve.information(lp).tolist() == pytest.approx([0.0, 2.0, 1.0])
    # a forward gene at 30 with AGGA at -12..-9, and a reverse gene whose upstream (read on its strand) has GGAG
    seq = list("A" * 80)
    seq[18:22] = "AGGA"  # offsets -12..-9 of a gene starting at 30
    seq[30:33] = "ATG"
    seq[60:63] = "CAT"  # reverse gene 54..63, start codon at 60..62 (reverse strand), upstream at 63..82
    gene_r = Gene(54, 63, -1)
    up_rev = [63 + k for k in range(19, -1, -1)]  # offsets -20..-1 -> positions 82..63
    seq += list("A" * 10)
    # offset -10..-7 of the reverse gene: positions 72..69, coding-strand bases G G A G -> forward C T C C at 69..72
    for p, b in zip([72, 71, 70, 69], "GGAG"):
        seq[p] = {"A": "T", "C": "G", "G": "C", "T": "A"}[b]
    s = "".join(seq)
    genes = [Gene(30, 39, 1), gene_r]
    from mdlm_dna.analysis.genes import upstream_offsets

    up = upstream_offsets(len(s), genes, ve.UPSTREAM)
    assert up[1].tolist() == up_rev
    hit = ve.sd_matches(s, genes, up)
    offs = list(ve.UPSTREAM)
    assert [offs[j] for j in np.flatnonzero(hit[0])] == [-12, -11, -10, -9]
    assert [offs[j] for j in np.flatnonzero(hit[1])] == [-10, -9, -8, -7]


def test_markdown_says_where_the_model_stands():
    import pandas as pd

    def row(section, scorer, strands, stat, value, lo, hi):
        return {"section": section, "scorer": scorer, "strands": strands, "statistic": stat, "value": value,
                "lo": lo, "hi": hi, "n": "5 / 5", "seconds": 1.0}

    rows = []
    for comp, (m, c, a) in {"stop_gained vs synonymous": (0.7, 0.6, 0.72),
                            "missense vs synonymous": (0.5, 0.55, 0.5)}.items():
        rows += [row("auroc", "ecoli (MDLM, shipped)", "both", comp, m, m - 0.05, m + 0.05),
                 row("auroc", "Markov order 2", "forward", comp, c, c - 0.05, c + 0.05),
                 row("auroc", "AR dit_tiny (600 steps)", "forward", comp, a, a - 0.05, a + 0.05),
                 row("auroc difference", "Markov order 2", "forward", f"{comp}: shipped model minus this", m - c,
                     m - c - 0.02, m - c + 0.02),
                 row("auroc difference", "AR dit_tiny (600 steps)", "forward", f"{comp}: shipped model minus this",
                     m - a, m - a - 0.03, m - a + 0.03),
                 row("auroc", "MDLM dit_tiny (600 steps)", "both", comp, 0.6, 0.55, 0.65),
                 row("equal compute", "AR dit_tiny (600 steps)", "forward",
                     f"{comp}: MDLM dit_tiny (600 steps) minus this", 0.6 - a, 0.6 - a - 0.01, 0.6 - a + 0.01)]
    facts = {"genes": 3, "test_bases": 1000, "snvs": 90, "window": 128, "sampled": {"synonymous": 5},
             "sd_fraction": 0.5, "total_seconds": 60.0, "ar_train_seconds": 120.0, "ar_steps": 600}
    md = ve.to_markdown(pd.DataFrame(rows + ve.fact_rows(facts)))
    lines = md.splitlines()
    stop = next(x for x in lines if x.startswith("- stop_gained"))
    assert "is above the best Markov chain (Markov order 2" in stop
    assert "not distinguishable from the AR model" in stop
    assert "is below the best Markov chain" in next(x for x in lines if x.startswith("- missense"))
    assert "| ecoli (MDLM, shipped) | both | 0.700 [0.650, 0.750] | - |" in md
    equal = next(x for x in lines if x.startswith("- stop_gained vs synonymous, at equal training compute"))
    assert "MDLM dit_tiny (600 steps) 0.600 [0.550, 0.650] is below AR dit_tiny (600 steps) (forward)" in equal


def test_markdown_of_a_record_with_another_model_and_no_ar_baseline():
    """``--ar-run none --model LABEL=CKPT``: the extra model is a row paired against the shipped one, no AR verdict
    and no AR training cost are claimed."""
    import pandas as pd

    rows = []
    for comp in ("stop_gained vs synonymous", "missense vs synonymous"):
        for scorer, strands, v in (("ecoli (MDLM, shipped)", "both", 0.70), ("chain 512", "both", 0.64),
                                   ("Markov order 6", "both", 0.62)):
            rows.append({"section": "auroc", "scorer": scorer, "strands": strands, "statistic": comp, "value": v,
                         "lo": v - 0.03, "hi": v + 0.03, "n": "5 / 5", "seconds": 2.0})
            if scorer != "ecoli (MDLM, shipped)":
                rows.append({"section": "auroc difference", "scorer": scorer, "strands": strands,
                             "statistic": f"{comp}: shipped model minus this", "value": 0.70 - v,
                             "lo": 0.70 - v - 0.02, "hi": 0.70 - v + 0.02, "n": "5 / 5", "seconds": float("nan")})
    facts = {"genes": 3, "test_bases": 1000, "snvs": 90, "window": 128, "sampled": {"synonymous": 5},
             "sd_fraction": 0.5, "total_seconds": 60.0}
    md = ve.to_markdown(pd.DataFrame(rows + ve.fact_rows(facts)))
    assert "| chain 512 | both | 0.640 [0.610, 0.670] | +0.060 [+0.040, +0.080] |" in md
    stop = next(x for x in md.splitlines() if x.startswith("- stop_gained"))
    assert "above the best Markov chain (Markov order 6" in stop and "AR model" not in stop
    assert "AR baseline" not in md and md.rstrip().endswith("1 min for this record.")
    assert ve.parse_models(["a=b=c"]) == {"a": "b=c"}
    with pytest.raises(SystemExit, match="LABEL=CKPT"):
        ve.parse_models(["nolabel"])
