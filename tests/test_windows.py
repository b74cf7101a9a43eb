import numpy as np
import pytest
import torch

from mdlm_dna.data.fasta import load_genome
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.data.windows import RandomWindows, ResumableSampler, TiledWindows, split_genome

tok = NucleotideTokenizer()


@pytest.fixture
def genome(ecoli_prefix, tmp_path):
    return load_genome(ecoli_prefix, cache_dir=tmp_path)


def _covered(intervals):
    return {(iv.start, iv.end) for iv in intervals}


def test_interval_split_never_overlaps_and_covers(genome):
    s = split_genome(genome, val_fraction=0.05, test_fraction=0.05)
    spans = sorted(iv for ivs in s.values() for iv in _covered(ivs))
    assert spans[0][0] == 0 and spans[-1][1] == len(genome)
    for left, right in zip(spans, spans[1:]):
        assert left[1] == right[0]  # contiguous, disjoint
    assert [len(iv) for iv in s["train"]] == [54_000]
    assert [len(iv) for iv in s["validation"]] == [3_000]


def test_windows_stay_inside_their_split(genome):
    s = split_genome(genome)
    train = RandomWindows(genome, s["train"], seq_len=100, num_samples=500, seed=1)
    lo, hi = s["train"][0].start, s["train"][0].end
    text = tok.decode(np.asarray(genome.ids).astype(np.int64))
    for i in range(20):
        w = tok.decode(train[i]["input_ids"])
        pos = text.find(w)
        assert pos >= 0 and lo <= pos and pos + 100 <= hi, "a training window must come from the training interval"
    val = TiledWindows(genome, s["validation"], seq_len=100)
    assert all(s["validation"][0].start <= st and st + 100 <= s["validation"][0].end for st in val.starts)


def test_random_windows_depend_only_on_seed_and_index(genome):
    s = split_genome(genome)
    a = RandomWindows(genome, s["train"], seq_len=64, num_samples=50, seed=3, rc_prob=0.5)
    b = RandomWindows(genome, s["train"], seq_len=64, num_samples=50, seed=3, rc_prob=0.5)
    c = RandomWindows(genome, s["train"], seq_len=64, num_samples=50, seed=4, rc_prob=0.5)
    for i in [0, 7, 49, 1234]:
        assert torch.equal(a[i]["input_ids"], b[i]["input_ids"])
    assert not all(torch.equal(a[i]["input_ids"], c[i]["input_ids"]) for i in range(10))


def test_rc_augmentation_produces_reverse_complements(genome):
    s = split_genome(genome)
    fwd = RandomWindows(genome, s["train"], seq_len=64, num_samples=10, seed=5, rc_prob=0.0)
    rc = RandomWindows(genome, s["train"], seq_len=64, num_samples=10, seed=5, rc_prob=1.0)
    for i in range(10):
        assert torch.equal(rc[i]["input_ids"], tok.reverse_complement(fwd[i]["input_ids"]))


def test_validation_windows_identical_across_runs(ecoli_prefix, tmp_path):
    g1 = load_genome(ecoli_prefix, cache_dir=tmp_path / "a")
    g2 = load_genome(ecoli_prefix, cache_dir=tmp_path / "b")
    v1 = TiledWindows(g1, split_genome(g1)["validation"], seq_len=128, max_windows=10)
    v2 = TiledWindows(g2, split_genome(g2)["validation"], seq_len=128, max_windows=10)
    assert len(v1) == 10 and np.array_equal(v1.starts, v2.starts)
    for i in range(10):
        assert torch.equal(v1[i]["input_ids"], v2[i]["input_ids"])


def test_mostly_n_windows_are_skipped(tmp_path):
    p = tmp_path / "n.fa"
    p.write_text(">r\n" + "A" * 100 + "N" * 300 + "C" * 100 + "\n")
    g = load_genome(p, cache_dir=tmp_path)
    iv = split_genome(g, 0.0, 0.0)["train"]
    tiled = TiledWindows(g, iv, seq_len=100)
    assert list(tiled.starts) == [0, 400]
    rnd = RandomWindows(g, iv, seq_len=100, num_samples=200, seed=0, max_n_fraction=0.5)
    for i in range(200):
        assert (rnd[i]["input_ids"] == tok.N).float().mean() <= 0.5


def test_record_split_and_short_records(tmp_path):
    p = tmp_path / "m.fa"
    p.write_text(">chr1\n" + "ACGT" * 100 + "\n>chr2\n" + "GGCC" * 100 + "\n>chrS\nACGT\n")
    g = load_genome(p, cache_dir=tmp_path)
    s = split_genome(g, val_records=["chr2"], test_records=["chrS"])
    assert [iv.record for iv in s["train"]] == ["chr1"]
    with pytest.raises(ValueError, match="chrX"):
        split_genome(g, val_records=["chrX"])
    with pytest.raises(ValueError, match="no training interval is at least seq_len=1000"):
        RandomWindows(g, s["train"], seq_len=1000, num_samples=1)


def test_soft_mask_is_returned_when_asked(tmp_path):
    p = tmp_path / "s.fa"
    p.write_text(">r\nACGTacgtACGTacgt\n")
    g = load_genome(p, cache_dir=tmp_path)
    item = TiledWindows(g, split_genome(g, 0, 0)["train"], seq_len=8, keep_soft_mask=True)[0]
    assert item["soft_mask"].tolist() == [False] * 4 + [True] * 4
    assert tok.decode(item["input_ids"]) == "ACGTACGT"


@pytest.mark.parametrize("world", [1, 2])
def test_resumable_sampler_skips_consumed_samples(world):
    full = [list(ResumableSampler(20, rank=r, world_size=world)) for r in range(world)]
    done = {"n": 8}
    resumed = [list(ResumableSampler(20, rank=r, world_size=world, progress=lambda e: done["n"])) for r in range(world)]
    for r in range(world):
        assert resumed[r] == full[r][8 // world :]
        assert len(ResumableSampler(20, rank=r, world_size=world, progress=lambda e: 8)) == len(full[r])
    s = ResumableSampler(20)
    s.set_epoch(2)
    assert list(s)[:3] == [40, 41, 42]
    assert sorted(i for f in full for i in f) == list(range(20))  # ranks partition the epoch
