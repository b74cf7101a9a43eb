"""BED parsing, fold-to-split mapping, and windows sampled inside labelled intervals."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from Bio import SeqIO

from mdlm_dna.data.bed import BedError, assign_splits, check_against_genome, read_bed
from mdlm_dna.data.datamodule import GenomeDataModule, load_split_genome
from mdlm_dna.data.fasta import Genome, Record, load_genome
from mdlm_dna.data.prepare import genome_config
from mdlm_dna.data.tokenizers import NucleotideTokenizer, strip_soft_mask
from mdlm_dna.data.windows import (
    Interval,
    RandomWindows,
    TiledWindows,
    bed_splits,
    cross_split_overlap,
    fit_intervals,
    merge_intervals,
)
from mdlm_dna.utils.resources import data_dir

SAMPLES = data_dir() / "genome_samples"
BED_SAMPLE = SAMPLES / "sequences_human.every111.bed"  # every 111th line of Borzoi's hg38 fold BED
BORZOI_BED = Path("/work/shared/data/intervals/borzoi_hg38_folds/sequences_human.bed.gz")  # the whole file
YEAST = SAMPLES / "ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz"  # S. cerevisiae chr I, soft-masked, bgzip
MT = SAMPLES / "MT-human.fa"

# UCSC hg38.chrom.sizes, the chromosomes the Borzoi BED uses
HG38 = dict(
    chr1=248956422, chr2=242193529, chr3=198295559, chr4=190214555, chr5=181538259, chr6=170805979,
    chr7=159345973, chr8=145138636, chr9=138394717, chr10=133797422, chr11=135086622, chr12=133275309,
    chr13=114364328, chr14=107043718, chr15=101991189, chr16=90338345, chr17=83257441, chr18=80373285,
    chr19=58617616, chr20=64444167, chr21=46709983, chr22=50818468, chrX=156040895, chrY=57227415,
)  # fmt: skip

tok = NucleotideTokenizer()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----- parsing ------------------------------------------------------------------------------------


def test_real_borzoi_bed_folds_match_pandas():
    bed = read_bed(BED_SAMPLE)
    ref = pd.read_csv(BED_SAMPLE, sep="\t", header=None, names=["chrom", "start", "end", "fold"])
    assert len(bed) == len(ref) == 500
    assert [(iv.chrom, iv.start, iv.end, iv.label) for iv in bed] == list(ref.itertuples(index=False, name=None))
    assert {len(iv) for iv in bed} == {196_608}
    cfg = genome_config("hg38", Path("/x"))
    splits = assign_splits(bed, BED_SAMPLE, cfg["split_map"], cfg["default_split"])
    assert len(splits["test"]) == (ref["fold"] == "fold3").sum() > 0
    assert len(splits["validation"]) == (ref["fold"] == "fold4").sum() > 0
    assert len(splits["train"]) == (~ref["fold"].isin(["fold3", "fold4"])).sum()


@pytest.mark.parametrize("bed_file", [BED_SAMPLE, BORZOI_BED], ids=["sample", "whole"])
def test_real_borzoi_bed_lies_on_hg38(bed_file):
    genome = Genome(path=Path("hg38.fa"), records=[], ids=np.zeros(0, np.uint8), stats={})
    offset = 0
    for name, n in HG38.items():
        genome.records.append(Record(name, offset, n))
        offset += n
    cfg = genome_config("hg38", Path("/x"))
    splits = bed_splits(genome, _need(bed_file), cfg["split_map"], cfg["default_split"], merge=False)
    recs = {r.name: r for r in genome.records}
    for ivs in splits.values():
        for iv in ivs:
            r = recs[iv.record]
            assert r.offset <= iv.start < iv.end <= r.offset + r.length
    chrom, start, end, _ = pd.read_csv(bed_file, sep="\t", header=None, nrows=1).iloc[0]
    assert splits["train"][0] == Interval(chrom, recs[chrom].offset + start, recs[chrom].offset + end)
    merged = bed_splits(genome, bed_file, cfg["split_map"], cfg["default_split"])
    assert cross_split_overlap(merged) == 0  # Borzoi's folds are disjoint regions
    for k in merged:  # merging never adds a base outside the intervals, nor loses one
        assert sum(map(len, merged[k])) <= sum(map(len, splits[k]))
        assert _covered(merged[k]) == _covered(splits[k])


def _covered(ivs) -> int:
    """Bases covered by a set of intervals, counted independently of merge_intervals (pandas cummax)."""
    d = pd.DataFrame([(iv.start, iv.end) for iv in ivs], columns=["s", "e"]).sort_values(["s", "e"])
    prev_end = d["e"].cummax().shift(fill_value=0)
    return int((d["e"] - np.maximum(d["s"], prev_end)).clip(lower=0).sum())


def test_merge_and_cross_split_overlap_against_a_mask():
    rng = np.random.default_rng(0)
    ivs = {k: [] for k in ("train", "validation", "test")}
    mask = {k: np.zeros(5000, bool) for k in ivs}
    for _ in range(60):
        k = str(rng.choice(list(ivs)))
        s = int(rng.integers(0, 4900))
        e = s + int(rng.integers(1, 100))
        rec = "a" if e <= 2500 else "b" if s >= 2500 else None
        if rec is None:
            continue  # intervals never cross records
        ivs[k].append(Interval(rec, s, e))
        mask[k][s:e] = True
    merged = {k: merge_intervals(v) for k, v in ivs.items()}
    for k, m in merged.items():
        got = np.zeros(5000, bool)
        for iv in m:
            assert not got[iv.start : iv.end].any()  # merged intervals are disjoint
            got[iv.start : iv.end] = True
        assert np.array_equal(got, mask[k])
        assert all(a.end < b.start or a.record != b.record for a, b in zip(m, m[1:]))  # touching ones merged
    assert cross_split_overlap(merged) == int((sum(m.astype(int) for m in mask.values()) >= 2).sum())
    assert merge_intervals([Interval("a", 0, 10), Interval("b", 10, 20)]) == [
        Interval("a", 0, 10),
        Interval("b", 10, 20),
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("chr1\t100\n", r"line 3: expected at least 3 columns"),
        ("chr1\t1x0\t200\ttrain\n", r"line 3: start and end must be integers"),
        ("chr1\t300\t200\ttrain\n", r"line 3: need 0 <= start < end, got start=300, end=200"),
        ("chr1\t-5\t200\ttrain\n", r"line 3: need 0 <= start < end"),
    ],
)
def test_bad_line_is_named(tmp_path, line, message):
    p = _write(tmp_path / "bad.bed", "track name=x\nchr1\t0\t100\ttrain\n" + line)
    with pytest.raises(BedError, match=rf"bad\.bed, {message}"):
        read_bed(p)


def test_comments_gzip_spaces_and_standard_labels(tmp_path):
    text = "# header\nbrowser position chr1\n\nchr1 0 100 train\nchr1\t100\t150\tvalid\nchr2\t5\t60\ttest\n"
    p = tmp_path / "ok.bed.gz"
    p.write_bytes(gzip.compress(text.encode()))
    bed = read_bed(p)
    assert [(iv.chrom, iv.start, iv.end, iv.label, iv.line) for iv in bed] == [
        ("chr1", 0, 100, "train", 4),
        ("chr1", 100, 150, "valid", 5),
        ("chr2", 5, 60, "test", 6),
    ]
    s = assign_splits(bed, p)
    assert [len(s[k]) for k in ("train", "validation", "test")] == [1, 1, 1]


def test_unmapped_label_names_line(tmp_path):
    p = _write(tmp_path / "f.bed", "chr1\t0\t10\tfold0\nchr1\t10\t20\tfold9\n")
    bed = read_bed(p)
    with pytest.raises(BedError, match=r"f\.bed, line 2: label 'fold9' is not mapped"):
        assign_splits(bed, p, {"fold0": "train"})
    assert len(assign_splits(bed, p, {"fold0": "train"}, default_split="test")["test"]) == 1
    with pytest.raises(BedError, match="splits are"):
        assign_splits(bed, p, {"fold0": "training-set"})


def test_intervals_checked_against_chromosome_lengths(tmp_path):
    p = _write(tmp_path / "c.bed", "chr1\t0\t10\ttrain\nchr1\t10\t120\ttest\nchrUn\t0\t5\ttrain\n")
    bed = read_bed(p)
    with pytest.raises(BedError, match=r"c\.bed, line 2: chr1:10-120 ends past the chromosome \(100 bp\)"):
        check_against_genome(bed, p, {"chr1": 100, "chrUn": 50})
    with pytest.raises(BedError, match=r"c\.bed, line 3: chromosome 'chrUn' is not in the genome"):
        check_against_genome(bed, p, {"chr1": 1000})
    kept = check_against_genome(bed, p, {"chr1": 1000}, missing_chroms="skip")
    assert [iv.line for iv in kept] == [1, 2]


# ----- windows inside intervals ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def yeast(tmp_path_factory):
    """Real yeast chromosome I (230 kb, soft-masked) and its text, read independently with Biopython."""
    cache = tmp_path_factory.mktemp("bedcache")
    with gzip.open(YEAST, "rt") as fh:
        text = str(next(SeqIO.parse(fh, "fasta")).seq)
    return load_genome(YEAST, cache_dir=cache), text, cache


YEAST_BED = """NC_001133.9\t1000\t60000\ttrain
NC_001133.9\t60000\t80000\tvalid
NC_001133.9\t80000\t150000\ttrain
NC_001133.9\t152000\t153500\ttrain
NC_001133.9\t160000\t200000\ttest
"""


def _text_ids(text: str, start: int, n: int, rc: bool) -> np.ndarray:
    ids = np.array(tok.encode(text[start : start + n]), dtype=np.int64)
    return np.array(tok.complement_ids)[ids][::-1] if rc else ids


def test_training_windows_stay_inside_train_intervals(yeast, tmp_path):
    genome, text, _ = yeast
    bed = _write(tmp_path / "y.bed", YEAST_BED)
    splits = bed_splits(genome, bed)
    L = 2000
    train = fit_intervals(genome, splits["train"], L, "drop")
    assert [(iv.start, iv.end) for iv in train] == [(1000, 60000), (80000, 150000)]  # 1.5 kb interval dropped
    ds = RandomWindows(genome, train, seq_len=L, num_samples=400, seed=7, rc_prob=0.5)
    starts = []
    for i in range(len(ds)):
        pos, rc = ds.position(i)
        assert any(iv.start <= pos and pos + L <= iv.end for iv in train), pos
        starts.append(pos)
        if i < 20:
            assert np.array_equal(ds[i]["input_ids"].numpy(), _text_ids(text, pos, L, rc))
    # both intervals are used, in proportion to their number of window starts (58 001 vs 68 001)
    share = np.mean(np.array(starts) < 60000)
    assert 0.38 < share < 0.54


def _windows(loader):
    """The window dataset behind a loader (the DataModule may wrap it, e.g. to add sample indices)."""
    ds = loader.dataset
    while not isinstance(ds, (RandomWindows, TiledWindows)):
        ds = ds.dataset
    return ds


def test_split_labels_are_respected(yeast, tmp_path):
    genome, _, cache = yeast
    bed = _write(tmp_path / "y.bed", YEAST_BED)
    cfg = {"path": str(YEAST), "bed": str(bed)}
    dm = GenomeDataModule(cfg, {"seq_len": 1000, "batch_size": 4, "train_samples_per_epoch": 200}, 3, str(cache))
    dm.setup()
    val = _windows(dm.val_dataloader())
    test = _windows(dm.test_dataloader())
    assert sorted(val.starts.tolist()) == list(range(60000, 80000, 1000))
    assert test.starts.min() >= 160000 and test.starts.max() + 1000 <= 200000 and len(test) == 40
    held_out = [(60000, 80000), (160000, 200000)]
    train = _windows(dm.train_dataloader())
    for i in range(len(train)):
        pos, _ = train.position(i)
        assert all(pos + 1000 <= a or pos >= b for a, b in held_out)


def test_expand_rule_grows_short_intervals_inside_the_chromosome(yeast):
    genome, _, _ = yeast
    n = genome.records[0].length
    short = [
        Interval("NC_001133.9", 150000, 151500),
        Interval("NC_001133.9", 100, 600),
        Interval("NC_001133.9", n - 50, n),
    ]
    out = fit_intervals(genome, short, 4000, "expand")
    assert [(iv.start, iv.end) for iv in out] == [(150000 - 1250, 151500 + 1250), (0, 4000), (n - 4000, n)]
    assert fit_intervals(genome, short, 4000, "drop") == []
    assert fit_intervals(genome, short, n + 1, "expand") == []  # the chromosome itself is too short
    with pytest.raises(ValueError, match="short_intervals"):
        fit_intervals(genome, short, 10, "pad")


def test_chromosome_level_split_without_bed(yeast, tmp_path):
    _, text, _ = yeast
    mt = "".join(MT.read_text().split("\n", 1)[1].split())
    fa = _write(tmp_path / "three.fa", f">chrA\n{text[:100000]}\n>chrB\n{text[100000:]}\n>MT_human\n{mt}\n")
    cfg = {"path": str(fa), "val_records": ["MT_human"], "test_records": ["chrA"]}
    genome, splits = load_split_genome(cfg, str(tmp_path))
    names = {k: [iv.record for iv in v] for k, v in splits.items()}
    assert names == {"train": ["chrB"], "validation": ["MT_human"], "test": ["chrA"]}
    r = genome.record("MT_human")
    assert (splits["validation"][0].start, splits["validation"][0].end) == (r.offset, r.offset + 16_569)


def test_tiled_windows_skip_mostly_n_tiles(tmp_path):
    seq = "ACGT" * 50 + "N" * 200 + "acgt" * 50
    fa = _write(tmp_path / "n.fa", ">c\n" + seq + "\n")
    g = load_genome(fa, cache_dir=tmp_path)
    tiles = TiledWindows(g, [Interval("c", 0, 600)], seq_len=100, max_n_fraction=0.5)
    assert tiles.starts.tolist() == [0, 100, 400, 500]
    half = TiledWindows(g, [Interval("c", 150, 450)], seq_len=100, max_n_fraction=0.5)
    assert half.starts.tolist() == [150, 350]  # 50 % N is kept, 100 % is not
    assert (strip_soft_mask(np.asarray(g.ids[500:600])) == np.tile([0, 1, 2, 3], 25)).all()


def test_bed_training_windows_deterministic_across_workers_and_resume(yeast, tmp_path):
    """Same batches with 0 or 2 workers (pyfaidx path, handles opened after fork), and a resumed epoch
    continues with exactly the windows an uninterrupted one would have read next."""
    _, _, cache = yeast
    bed = _write(tmp_path / "y.bed", YEAST_BED)
    cfg = {"path": str(YEAST), "bed": str(bed), "reader": "pyfaidx"}
    data = {"seq_len": 512, "batch_size": 8, "train_samples_per_epoch": 64, "rc_prob": 0.5}

    def batches(workers: int) -> torch.Tensor:
        dm = GenomeDataModule(cfg, {**data, "num_workers": workers}, seed=9, cache_dir=str(cache))
        dm.setup()
        return torch.cat([b["input_ids"] for b in dm.train_dataloader()])

    full = batches(0)
    assert full.shape == (64, 512) and torch.equal(batches(2), full)
    dm = GenomeDataModule(cfg, data, seed=9, cache_dir=str(cache))
    dm.setup()
    loader = dm.train_dataloader()
    loader.sampler.progress = lambda epoch: 40  # as if 5 batches had been trained on before a restart
    assert torch.equal(torch.cat([b["input_ids"] for b in loader]), full[40:])
