"""Sample-quality metrics (ORFs, codon usage, novelty, diversity) and Markov chains, on inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdlm_dna.evaluation.markov import MarkovChain, context_counts, ids_to_strings
from mdlm_dna.evaluation.metrics import (
    CODONS,
    GenomeIndex,
    Orf,
    codon_usage,
    distinct_kmer_fraction,
    find_orfs,
    js_counting_noise,
    js_distance,
    kmer_spectrum,
    ks_distance,
    orf_stats,
    pairwise_kmer_distance,
    sample_quality_row,
)

COMP = str.maketrans("ACGT", "TGCA")


def rc(s: str) -> str:
    return s.translate(COMP)[::-1]


# ----- open reading frames ---------------------------------------------------------------------------------------


def test_orf_forward_frames_and_reverse_strand():
    assert find_orfs("ATGAAATAG") == [Orf(0, 9, "+", 0)]
    assert find_orfs("CATGAAATAGC") == [Orf(1, 10, "+", 1)]
    assert find_orfs("CCATGAAATGA") == [Orf(2, 11, "+", 2)]  # TGA stop, frame 2
    assert find_orfs("ATGAAATAG")[0].codons == 3
    # the same ORF on the minus strand: forward coordinates, frame counted on its own strand
    assert find_orfs("CTATTTCAT") == [Orf(0, 9, "-", 0)]
    assert find_orfs("G" + rc("ATGAAATAA") + "GG") == [Orf(1, 10, "-", 2)]  # rc strand: CC + ORF + C
    assert find_orfs("GGG" + rc("ATGCCCTAG")) == [Orf(3, 12, "-", 0)]


def test_orf_nested_starts_overlaps_and_consecutive():
    # an in-frame ATG inside an ORF starts no second ORF: one ORF from the first ATG
    assert find_orfs("ATGAAAATGCCCTAA") == [Orf(0, 15, "+", 0)]
    # after a stop, the next ATG of the frame starts the next ORF
    assert find_orfs("ATGTAAATGCCCTGA") == [Orf(0, 6, "+", 0), Orf(6, 15, "+", 0)]
    assert find_orfs("TAAATGTAA") == [Orf(3, 9, "+", 0)]
    # frame 0 ATG CAT GCC TAA and frame 1 ATG CCT AAG TAG overlap on [4, 12)
    seq = "ATGCATGCCTAAGTAG"
    assert find_orfs(seq) == [Orf(0, 12, "+", 0), Orf(4, 16, "+", 1)]
    # its minus strand (CTACTTAGGCATGCAT) has an ATG with no stop after it: only a partial ORF
    assert find_orfs(seq, include_partial=True) == [Orf(0, 6, "-", 1, complete=False), Orf(0, 12, "+", 0),
                                                    Orf(4, 16, "+", 1)]


def test_orf_without_stop_and_min_length():
    assert find_orfs("ATGAAACCC") == []
    assert find_orfs("ATGAAACCCG", include_partial=True) == [Orf(0, 9, "+", 0, complete=False)]
    assert find_orfs("CCCCCC") == [] and find_orfs("TAATAGTGA") == []
    orf = "ATG" + "GCC" * 40 + "TAA"  # 42 codons
    assert find_orfs(orf, min_codons=42) == [Orf(0, 126, "+", 0)] and find_orfs(orf, min_codons=43) == []
    assert find_orfs("ATGNNNTAA") == [Orf(0, 9, "+", 0)]  # a codon with N is neither start nor stop


def test_orf_stats_and_codon_usage_on_a_known_sequence():
    seq = "C" * 50 + "ATG" + "GCC" * 40 + "TAA" + "C" * 50  # one complete ORF, 42 codons; no other complete one
    for s in (seq, rc(seq)):
        st = orf_stats([s], min_codons=30)
        assert st["lengths"].tolist() == [42]
        assert st["coverage"] == pytest.approx(126 / 226) and st["per_kb"] == pytest.approx(1000 / 226)
        assert st["mean_codons"] == 42
        counts = st["codon_counts"]  # read on the ORF's own strand, ATG and stop included
        assert counts.sum() == 42 and counts[CODONS.index("GCC")] == 40
        assert counts[CODONS.index("ATG")] == 1 and counts[CODONS.index("TAA")] == 1
        u = codon_usage([s], min_codons=30)
        assert u[CODONS.index("GCC")] == pytest.approx(40 / 42) and u.sum() == pytest.approx(1)
    assert orf_stats([seq], min_codons=43)["lengths"].size == 0 and orf_stats([seq], 43)["coverage"] == 0
    # two ORFs on opposite strands that overlap: coverage counts each base once
    two = "ATG" + "GCC" * 40 + "TAA" + "C" * 10
    both = two + rc(two)
    st = orf_stats([both], min_codons=30)
    assert sorted(st["lengths"].tolist()) == [42, 42] and st["coverage"] == pytest.approx(252 / 272)


def test_ks_distance():
    assert ks_distance([1, 2, 3], [1, 2, 3]) == 0
    assert ks_distance([1, 2], [3, 4]) == 1
    assert ks_distance([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)


# ----- novelty and diversity -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def genome() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 4, 100_000)


@pytest.fixture(scope="module")
def index(genome) -> GenomeIndex:
    return GenomeIndex([genome], k=32)


def test_copied_sample_is_found_on_both_strands(genome, index):
    copy = genome[40_000:41_024]
    lm, ident = index.novelty([copy, 3 - copy[::-1]])
    assert lm.tolist() == [1024, 1024] and ident.tolist() == [1.0, 1.0]
    assert index.longest_match(ids_to_strings([copy])[0]) == 1024


def test_random_sample_is_novel_and_a_planted_segment_is_measured(genome, index):
    rnd = np.random.default_rng(1).integers(0, 4, (4, 1024))
    lm, ident = index.novelty(rnd)
    assert (lm < 24).all() and (lm >= 8).all() and (ident == 0).all()
    planted = rnd[0].copy()
    planted[300:400] = genome[5_000:5_100]
    lm, ident = index.novelty([planted])
    assert 100 <= lm[0] <= 110
    assert ident[0] == pytest.approx((100 - 31) / (1024 - 31))


def _naive_longest(query: str, text: str) -> int:
    best = 0
    for i in range(len(query)):
        n = best + 1
        while i + n <= len(query) and query[i : i + n] in text:
            best, n = n, n + 1
    return best


@pytest.mark.parametrize("k", [32, 6])
def test_longest_match_equals_brute_force(k):
    rng = np.random.default_rng(k)
    g = rng.integers(0, 4, 3000)
    text = ids_to_strings([g])[0] + "|" + rc(ids_to_strings([g])[0])
    idx = GenomeIndex([g], k=k)
    for length in (10, 40, 75):
        q = rng.integers(0, 4, 200)
        a = int(rng.integers(0, 3000 - length))
        q[50 : 50 + length] = g[a : a + length] if length != 40 else 3 - g[a : a + length][::-1]
        s = ids_to_strings([q])[0]
        assert idx.longest_match(q) == _naive_longest(s, text), (k, length)
    with_n = "N" + ids_to_strings([g[100:160]])[0] + "N"  # a match stops at an N
    assert idx.longest_match(with_n) == 60


def test_diversity():
    x = np.random.default_rng(0).integers(0, 4, (8, 512))
    assert distinct_kmer_fraction(x, 32) == 1.0
    assert distinct_kmer_fraction(np.concatenate([x, x]), 32) == pytest.approx(0.5)
    assert pairwise_kmer_distance(np.stack([x[0]] * 5), 4) == 0
    assert pairwise_kmer_distance(x, 4) > 0.2


def test_counting_noise_formula_matches_simulation():
    p = np.random.default_rng(0).dirichlet(np.ones(256))
    rng = np.random.default_rng(1)
    n = 50_000
    d = [js_distance(rng.multinomial(n, p), rng.multinomial(n, p)) for _ in range(20)]
    assert np.mean(d) == pytest.approx(js_counting_noise(4, n, n), rel=0.1)


def test_sample_quality_row_real_vs_random(genome, index):
    real = genome[: 64 * 512].reshape(64, 512)
    row = sample_quality_row(real, real, index)
    assert row["js_k3"] == 0 and row["codon_js"] == 0 and row["orf_len_ks"] == 0
    assert row["match_median"] == 512 and row["id32"] == 1
    rnd = sample_quality_row(np.random.default_rng(2).integers(0, 4, (64, 512)), real, index)
    assert rnd["match_max"] < 32 and rnd["id32"] == 0 and rnd["distinct32"] == 1


# ----- Markov chains -------------------------------------------------------------------------------------------


def test_markov_recovers_a_known_transition_matrix():
    T = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1], [0.05, 0.05, 0.05, 0.85], [0.25, 0.25, 0.25, 0.25]])
    truth = MarkovChain(order=1, alpha=0.0, counts=[np.array([[1, 1, 1, 1]]), T * 1e6])  # counts -> probs = T
    seq = truth.sample(1, 200_000, seed=0)[0]
    fit = MarkovChain.fit(seq, 1, alpha=1.0)
    assert np.abs(fit.probs() - T).max() < 0.01
    assert fit.counts[1].sum() == 200_000 - 1
    # an order-2 fit of an order-1 chain finds every context's row equal to its last base's row
    fit2 = MarkovChain.fit(seq, 2, alpha=1.0)
    assert np.abs(fit2.probs().reshape(4, 4, 4) - T[None]).max() < 0.03


def test_markov_bits_per_base_by_hand():
    chain = MarkovChain.fit("AACA", 1, alpha=1.0)
    # order 0: A 3, C 1 -> P(A) = 4/8; order 1: after A: A 1, C 1 -> P(C|A) = 2/6; after C: A 1 -> P(A|C) = 2/5
    expected = (-math.log2(4 / 8) - math.log2(2 / 6) - math.log2(2 / 5)) / 3
    assert chain.score("ACA") == pytest.approx(expected)
    assert chain.score(["ACA", "ACA"]) == pytest.approx(expected)
    # order 0 is the cross-entropy with the smoothed base composition
    c0 = MarkovChain.fit("AACA", 0, alpha=1.0)
    assert c0.score("AG") == pytest.approx((-math.log2(4 / 8) - math.log2(1 / 8)) / 2)
    # windows with N are skipped when counting
    assert context_counts("ACNGT", 1).sum() == 2


def test_markov_alpha_selection_and_sampling_is_seeded():
    rng = np.random.default_rng(0)
    train, val = rng.integers(0, 4, 5000), rng.integers(0, 4, 5000)
    chain, scores = MarkovChain.fit_select_alpha(train, val, 3)
    assert chain.alpha == min(scores, key=scores.get) and len(scores) > 3
    assert max(scores.values()) > min(scores.values())  # smoothing matters for 256 contexts x 4 on 5 kb
    a, b, c = chain.sample(4, 300, seed=5), chain.sample(4, 300, seed=5), chain.sample(4, 300, seed=6)
    assert a.shape == (4, 300) and (a == b).all() and (a != c).any() and set(np.unique(a)) <= {0, 1, 2, 3}
    assert chain.sample_strings(4, 300, seed=5) == ids_to_strings(a)


def test_markov_samples_have_the_training_kmer_spectrum():
    rng = np.random.default_rng(3)
    train = MarkovChain(order=2, alpha=0.5, counts=[rng.integers(1, 9, (1, 4)), rng.integers(1, 9, (4, 4)),
                                                    rng.integers(1, 50, (16, 4))]).sample(1, 100_000, seed=1)[0]
    chain = MarkovChain.fit(train, 2, alpha=0.1)
    s = chain.sample(50, 2000, seed=2)
    assert js_distance(kmer_spectrum(s, 3), kmer_spectrum([train], 3)) < 0.02
    start = chain.sample(4000, 2, seed=4)  # the first bases follow the training 1- and 2-mer frequencies
    assert js_distance(kmer_spectrum(start[:, :1], 1), kmer_spectrum([train], 1)) < 0.05
    assert js_distance(kmer_spectrum(start, 2), kmer_spectrum([train], 2)) < 0.08
    uniform_start = np.random.default_rng(0).integers(0, 4, (4000, 2))
    assert js_distance(kmer_spectrum(uniform_start, 2), kmer_spectrum([train], 2)) > 0.1


def test_markov_reproduces_the_ecoli_reference_figures():
    from mdlm_dna.evaluation.markov import ecoli_splits

    sp = ecoli_splits()
    for k, ref in {0: 2.0001, 2: 1.9664, 6: 1.9378}.items():
        chain, _ = MarkovChain.fit_select_alpha(sp["train"], sp["validation"], k)
        assert chain.score(sp["test"]) == pytest.approx(ref, abs=1e-4), k


@pytest.mark.slow
def test_sample_quality_benchmark_runs(tmp_path):
    """The benchmark end to end at a small size, a Markov chain standing in for the model (~30 s: genome index)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(root / "benchmarks" / "sample_quality.py"), "--model", "markov2", "--num-samples", "16",
           "--length", "256", "--max-markov", "1", "--out", str(tmp_path), "--plots"]
    subprocess.run(cmd, check=True, cwd=root, capture_output=True, timeout=600)
    res = json.loads((tmp_path / "table.json").read_text())
    rows = res["table"]
    assert list(rows) == ["model (markov2)", "markov order 0", "markov order 1", "uniform random",
                          "real (train windows)", "real (validation)", "real: test half vs half",
                          "counting noise (expected)", "real (test, the reference)"]
    assert rows["model (markov2)"]["js_k3"] < rows["uniform random"]["js_k3"]
    assert rows["real (train windows)"]["id32"] == 1 and rows["model (markov2)"]["id32"] < 0.01
    assert rows["real (test, the reference)"]["js_k6"] == 0
    assert set(res["columns"]) <= set(rows["model (markov2)"]) | {"num"}
    assert all((tmp_path / p).exists() for p in ("kmer3.png", "orf_length.png", "gc.png", "table.md", "table.csv"))
