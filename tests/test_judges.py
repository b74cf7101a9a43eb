"""The k-mer judge: strand-agnostic features, and it tells apart classes that differ in composition."""

import numpy as np

from mdlm_dna.evaluation.judges import KmerJudge, kmer_features
from mdlm_dna.evaluation.metrics import kmer_spectrum


def test_features_are_the_mean_of_both_strands_and_rc_invariant():
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 4, 50)
    rc = (3 - seq)[::-1]
    f = kmer_features([seq], k=3)
    np.testing.assert_allclose(f[0], 0.5 * (kmer_spectrum([seq], 3) + kmer_spectrum([rc], 3)))
    np.testing.assert_array_equal(f, kmer_features([rc], k=3))
    assert kmer_features(["ACGTNACGT"], k=2).shape == (1, 16)  # N breaks k-mers, no error


def test_judge_separates_gc_rich_from_at_rich_and_not_shuffled_labels():
    rng = np.random.default_rng(1)

    def draw(n, gc):
        p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
        return rng.choice(4, size=(n, 200), p=p)

    train = np.concatenate([draw(200, 0.35), draw(200, 0.65)])
    y = np.repeat([0, 1], 200)
    judge = KmerJudge(k=2).fit(train, y)
    assert judge.accuracy(draw(100, 0.35), 0) > 0.95 and judge.accuracy(draw(100, 0.65), 1) > 0.95
    # two "classes" from one distribution: the held-out accuracy falls to chance
    blind = KmerJudge(k=2).fit(draw(400, 0.5), y)
    acc = (blind.predict(draw(400, 0.5)) == np.repeat([0, 1], 200)).mean()
    assert 0.4 < acc < 0.6, acc
    np.testing.assert_allclose(judge.predict_proba(train).sum(1), 1.0)
