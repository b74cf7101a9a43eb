"""GenomicBenchmarks loaders on real sample data: package layout, download path, coordinates + FASTA, tables."""

from __future__ import annotations

import gzip
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from Bio import SeqIO
from Bio.Seq import Seq

from mdlm_dna.data.classification import ClassificationDataConfig, ClassificationDataModule, collate
from mdlm_dna.data.genomic_benchmarks import (
    GB_TASKS,
    DatasetError,
    find_package_dir,
    load_coordinates,
    load_package_dir,
    load_tables,
    load_task,
    read_table,
    reverse_complement,
)
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.utils.resources import config_dir, data_dir

SAMPLE = data_dir() / "genomic_benchmarks_sample"
NONTATA_DIR = SAMPLE / "human_nontata_promoters"
MT = SAMPLE.parent / "genome_samples" / "MT-human.fa"  # shared with the genome tests
SHARED_COORDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomic_benchmarks" / "coordinates"


def _task_cfg(name: str) -> dict:
    return yaml.safe_load((config_dir() / "task" / f"{name}.yaml").read_text())


def _files(split: str, cls: str) -> list[Path]:
    return sorted((NONTATA_DIR / split / cls).glob("*.txt"))


# ---------------------------------------------------------------------------------------------- task configs


def test_all_nine_task_configs_match_the_official_metadata():
    assert len(GB_TASKS) == 9
    for name in GB_TASKS:
        cfg = _task_cfg(name)
        meta = yaml.safe_load((SAMPLE / "metadata" / name / "metadata.yaml").read_text())
        assert cfg["name"] == name
        assert cfg["classes"] == sorted(meta["classes"]), name
        assert cfg["num_classes"] == len(meta["classes"])
        assert cfg["max_length"] >= cfg["median_length"] > 0


@pytest.mark.skipif(not SHARED_COORDS.is_dir(), reason="the official coordinate files are not on this machine")
def test_task_config_sizes_and_lengths_match_the_coordinate_files():
    for name in GB_TASKS:
        cfg = _task_cfg(name)
        sizes, longest = {}, 0
        for split in ("train", "test"):
            frames = [pd.read_csv(SHARED_COORDS / name / split / f"{c}.csv.gz") for c in cfg["classes"]]
            sizes[split] = sum(len(f) for f in frames)
            longest = max(longest, *(int((f.end - f.start).max()) for f in frames))
        assert (sizes["train"], sizes["test"], longest) == (cfg["train_size"], cfg["test_size"], cfg["max_length"])


# ---------------------------------------------------------------------------------------------- package layout


def test_package_layout_loader_reads_real_sample_with_sorted_labels():
    data = load_package_dir(NONTATA_DIR, classes=["positive", "negative"], name="human_nontata_promoters")
    assert data.classes == ["negative", "positive"]
    assert data.label_mapping() == {"negative": 0, "positive": 1}
    for split, df in (("train", data.train), ("test", data.test)):
        for label, cls in enumerate(data.classes):
            files = _files(split, cls)
            got = df[df.label == label]
            assert len(got) == len(files) > 0
            assert sorted(got["sequence"]) == sorted(f.read_text().strip() for f in files)
    assert set(data.train["sequence"].str.len()) == {251}


def test_labels_follow_sorted_class_names_not_directory_order(tmp_path):
    for split in ("train", "test"):  # create the classes in reverse order: a listing may return them so
        for cls, seq in (("zeta", "AAAA"), ("mid", "CCCC"), ("alpha", "GGGG")):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "1.txt").write_text(seq + "\n")
    data = load_package_dir(tmp_path)
    assert data.classes == ["alpha", "mid", "zeta"]
    by_seq = dict(zip(data.train["sequence"], data.train["label"]))
    assert by_seq == {"GGGG": 0, "CCCC": 1, "AAAA": 2}


def test_package_layout_errors_name_the_file(tmp_path):
    root = tmp_path / "task"
    shutil.copytree(NONTATA_DIR, root)
    bad = root / "train" / "positive" / "empty.txt"
    bad.write_text("")
    with pytest.raises(DatasetError, match="empty.txt: empty sequence"):
        load_package_dir(root)
    bad.unlink()
    with pytest.raises(DatasetError, match="do not match the task's classes"):
        load_package_dir(root, classes=["enhancer", "ocr", "promoter"])
    shutil.rmtree(root / "test")
    with pytest.raises(DatasetError, match="no test/ folder"):
        load_package_dir(root)


def test_load_task_finds_the_package_dir_first(tmp_path):
    shutil.copytree(NONTATA_DIR, tmp_path / "human_nontata_promoters")
    cfg = {**_task_cfg("human_nontata_promoters"), "data_dir": str(tmp_path), "download": False}
    data = load_task(cfg)
    assert data.source.startswith("package layout") and len(data.test) == 40
    assert find_package_dir(tmp_path / "human_nontata_promoters", "x") == tmp_path / "human_nontata_promoters"


# ---------------------------------------------------------------------------------------------- download path


def test_download_path_calls_the_package_and_reads_what_it_wrote(tmp_path, monkeypatch):
    calls = []

    def download_dataset(name, version=None, dest_path=None, **kwargs):  # the package's signature
        calls.append((name, version, dest_path))
        shutil.copytree(NONTATA_DIR, Path(dest_path) / name)
        return Path(dest_path) / name

    loc2seq = types.ModuleType("genomic_benchmarks.loc2seq")
    loc2seq.download_dataset = download_dataset
    monkeypatch.setitem(sys.modules, "genomic_benchmarks", types.ModuleType("genomic_benchmarks"))
    monkeypatch.setitem(sys.modules, "genomic_benchmarks.loc2seq", loc2seq)
    cfg = {**_task_cfg("human_nontata_promoters"), "data_dir": str(tmp_path / "gb")}
    data = load_task(cfg)
    assert calls == [("human_nontata_promoters", 0, str(tmp_path / "gb"))]
    assert len(data.train) == 40 and data.classes == ["negative", "positive"]


def test_offline_without_data_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "genomic_benchmarks", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "genomic_benchmarks.loc2seq", None)
    cfg = {**_task_cfg("human_enhancers_cohn"), "data_dir": str(tmp_path)}
    with pytest.raises(DatasetError) as e:
        load_task(cfg)
    msg = str(e.value)
    assert "download_dataset('human_enhancers_cohn'" in msg
    assert str(tmp_path / "human_enhancers_cohn") in msg
    assert "task.coordinates_dir" in msg and "task.train_path" in msg


# ---------------------------------------------------------------------------------------------- coordinates


def _mt() -> str:
    return str(next(SeqIO.parse(MT, "fasta")).seq)


def _write_coords(root: Path, rows: dict[str, dict[str, list[tuple]]]) -> None:
    meta = {"version": 0, "classes": {c: {"type": "fa.gz", "url": "http://x/MT.fa.gz"} for c in rows}}
    (root / "mt_task").mkdir(parents=True)
    (root / "mt_task" / "metadata.yaml").write_text(yaml.safe_dump(meta))
    for cls, splits in rows.items():
        for split, recs in splits.items():
            (root / "mt_task" / split).mkdir(exist_ok=True)
            df = pd.DataFrame(recs, columns=["id", "region", "start", "end", "strand"])
            with gzip.open(root / "mt_task" / split / f"{cls}.csv.gz", "wt") as fh:
                df.to_csv(fh, index=False)


def test_intervals_become_sequences_strand_aware_on_a_real_fasta(tmp_path):
    mt = _mt()
    rows = {
        "heavy": {"train": [(1, "MT_human", 100, 160, "+"), (2, "MT_human", 16500, 16569, "-")],
                  "test": [(3, "MT_human", 0, 40, "-")]},
        "light": {"train": [(4, "MT_human", 5000, 5251, "-")], "test": [(5, "MT_human", 7000, 7033, "+")]},
    }  # fmt: skip
    _write_coords(tmp_path, rows)
    data = load_coordinates(tmp_path, "mt_task", MT)
    assert data.classes == ["heavy", "light"]
    expected = {
        1: mt[100:160],
        2: str(Seq(mt[16500:16569]).reverse_complement()),
        3: str(Seq(mt[0:40]).reverse_complement()),
        4: str(Seq(mt[5000:5251]).reverse_complement()),
        5: mt[7000:7033],
    }
    got = pd.concat([data.train, data.test]).set_index("id")
    for rid, seq in expected.items():
        assert got.loc[rid, "sequence"] == seq.upper()
    assert got.loc[4, "label"] == 1 and got.loc[1, "label"] == 0
    gz = tmp_path / "MT-human.fa.gz"  # plain gzip (not bgzip): read with Biopython instead of pyfaidx
    gz.write_bytes(gzip.compress(MT.read_bytes()))
    again = load_coordinates(tmp_path, "mt_task", gz)
    assert again.train["sequence"].tolist() == data.train["sequence"].tolist()
    assert reverse_complement("ACGTNacgt") == str(Seq("ACGTNacgt").reverse_complement())


def test_coordinates_tolerate_chr_naming_and_reject_bad_intervals(tmp_path):
    fa = tmp_path / "chrM.fa"
    fa.write_text(">chrM\n" + _mt() + "\n")
    _write_coords(tmp_path / "a", {"x": {"train": [(1, "MT", 10, 20, "+")], "test": [(2, "M", 10, 20, "-")]}})
    data = load_coordinates(tmp_path / "a", "mt_task", fa)
    assert data.train.sequence[0] == _mt()[10:20]
    _write_coords(tmp_path / "b", {"x": {"train": [(1, "chrM", 16000, 17000, "+")], "test": []}})
    with pytest.raises(DatasetError, match=r"train/x.csv.gz: row 1: interval chrM:16000-17000 .*outside"):
        load_coordinates(tmp_path / "b", "mt_task", fa)
    _write_coords(tmp_path / "c", {"x": {"train": [(1, "chr5", 1, 20, "+")], "test": []}})
    with pytest.raises(DatasetError, match="region 'chr5' is not in"):
        load_coordinates(tmp_path / "c", "mt_task", fa)


# ---------------------------------------------------------------------------------------------- tables


def test_csv_and_tsv_tables_on_real_samples(tmp_path):
    gue = SAMPLE / "gue_prom_core_tata_train_200.csv"
    raw = pd.read_csv(gue)
    data = load_tables(gue, SAMPLE / "gue_prom_core_tata_dev_60.csv", name="gue")
    assert data.classes == ["0", "1"]
    assert (data.train["label"].to_numpy() == raw["label"].to_numpy()).all()
    assert (data.train["sequence"].to_numpy() == raw["sequence"].to_numpy()).all()
    assert len(data.test) == 60 and data.val is None
    tsv = read_table(SAMPLE / "human_nontata_promoters_1200.tsv.gz")  # header seq<TAB>label (Hugging Face copy)
    assert len(tsv) == 1200 and set(tsv["sequence"].str.len()) == {251}
    # string labels: sorted, whatever order they first appear in; test labels must be known
    (tmp_path / "tr.tsv").write_text("sequence\tlabel\nACGT\tworm\nGGCC\thuman\nTTAA\tworm\n")
    (tmp_path / "te.tsv").write_text("sequence\tlabel\nACGT\thuman\n")
    data = load_tables(tmp_path / "tr.tsv", tmp_path / "te.tsv", min_class_examples=1)  # toy tables
    assert data.classes == ["human", "worm"] and data.train["label"].tolist() == [1, 0, 1]
    (tmp_path / "te2.tsv").write_text("sequence\tlabel\nACGT\tfly\n")
    with pytest.raises(DatasetError, match=r"te2.tsv: label\(s\) \['fly'\] not among"):
        load_tables(tmp_path / "tr.tsv", tmp_path / "te2.tsv", min_class_examples=1)


def test_numeric_labels_sort_numerically_and_bad_tables_are_named(tmp_path):
    rows = "\n".join(f"ACGT,{y}" for y in (10, 2, 1, 2))
    (tmp_path / "a.csv").write_text("sequence,label\n" + rows + "\n")
    data = load_tables(tmp_path / "a.csv", tmp_path / "a.csv", min_class_examples=1)
    assert data.classes == ["1", "2", "10"] and data.train["label"].tolist() == [2, 1, 0, 1]
    (tmp_path / "b.csv").write_text("dna,y\nACGT,1\n")
    with pytest.raises(DatasetError, match=r"b.csv: needs a 'sequence'"):
        read_table(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("sequence,label\nACGT,1\n,0\n")
    with pytest.raises(DatasetError, match=r"c.csv: line 3: empty sequence"):
        read_table(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("sequence,label\nACGT,1\nAC!T,0\n")
    with pytest.raises(DatasetError, match=r"d.csv: line 3: invalid character '!' at position 3"):
        read_table(tmp_path / "d.csv")


def test_test_fraction_holdout_is_fixed_and_disjoint():
    path = SAMPLE / "human_nontata_promoters_1200.tsv.gz"
    a = load_tables(path, test_fraction=0.25, seed=0)
    b = load_tables(path, test_fraction=0.25, seed=0)
    assert len(a.test) == 300 and len(a.train) == 900
    assert a.test["sequence"].tolist() == b.test["sequence"].tolist()
    assert sorted(a.train["sequence"].tolist() + a.test["sequence"].tolist()) == sorted(read_table(path)["sequence"])


# ---------------------------------------------------------------------------------------------- data module


def test_validation_split_is_seeded_and_test_untouched():
    data = load_tables(SAMPLE / "gue_prom_core_tata_train_200.csv", SAMPLE / "gue_prom_core_tata_dev_60.csv")
    cfg = ClassificationDataConfig(batch_size=16, val_fraction=0.1)
    a, b, c = (ClassificationDataModule(data, cfg, seed=s) for s in (1, 1, 2))
    assert a.sizes() == {"train": 180, "val": 20, "test": 60}
    assert a.frames["val"]["sequence"].tolist() == b.frames["val"]["sequence"].tolist()
    assert a.frames["val"]["sequence"].tolist() != c.frames["val"]["sequence"].tolist()
    assert a.frames["test"]["sequence"].tolist() == data.test["sequence"].tolist()
    assert sorted(a.frames["train"]["sequence"].tolist() + a.frames["val"]["sequence"].tolist()) == sorted(
        data.train["sequence"]
    )


def test_collate_pads_right_and_truncation_is_counted(caplog):
    x = torch.tensor([0, 1, 2])
    batch = collate([(x, 1), (x[:1], 0)])
    assert batch["input_ids"].tolist() == [[0, 1, 2], [0, 6, 6]]
    assert batch["lengths"].tolist() == [3, 1] and batch["labels"].tolist() == [1, 0]
    data = load_tables(SAMPLE / "gue_prom_core_tata_train_200.csv", SAMPLE / "gue_prom_core_tata_dev_60.csv")
    with caplog.at_level("WARNING"):
        dm = ClassificationDataModule(data, ClassificationDataConfig(max_length=50), seed=0)
    assert "60 of 60 sequences are longer than max_length=50" in caplog.text  # GUE prom_core: all 70 bp
    assert {len(x) for x in dm.datasets["test"].ids} == {50}
    tok = NucleotideTokenizer()
    assert dm.datasets["test"].ids[0].tolist() == tok.encode(data.test.sequence[0][:50])


def test_label_names_rename_hugging_face_integers_before_the_sorted_mapping():
    # The HF copies number human_ensembl_regulatory's classes promoter=0, enhancer=1, ocr=2 (not sorted). The
    # official coordinates tell them apart by length: promoters average 566 bp, OCRs are never over 593 bp.
    path = SAMPLE / "human_ensembl_regulatory_hf_90.tsv.gz"
    hf = {0: "promoter", 1: "enhancer", 2: "ocr"}
    data = load_tables(path, test_fraction=0.2, label_names=hf, classes=["enhancer", "ocr", "promoter"])
    assert data.label_mapping() == {"enhancer": 0, "ocr": 1, "promoter": 2}
    both = pd.concat([data.train, data.test])
    lengths = both["sequence"].str.len()
    assert lengths[both["label"] == 2].mean() > 500 > lengths[both["label"] != 2].mean()
    assert lengths[both["label"] == 1].max() <= 593
    raw = read_table(path)
    assert (both["label"].value_counts().sort_index().tolist()) == [30, 30, 30] and len(raw) == 90
    with pytest.raises(DatasetError, match=r"label\(s\) \['2'\] have no entry in task.label_names"):
        load_tables(path, test_fraction=0.2, label_names={0: "promoter", 1: "enhancer"})
