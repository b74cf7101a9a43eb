"""The pyfaidx path returns exactly the windows of the array path; both are safe across DataLoader workers."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mdlm_dna.data.datamodule import load_split_genome
from mdlm_dna.data.fasta import FastaError, PyfaidxIds, load_genome, open_genome_pyfaidx
from mdlm_dna.data.windows import RandomWindows, TiledWindows, split_genome
from mdlm_dna.utils.resources import data_dir

SAMPLES = data_dir() / "genome_samples"
YEAST = SAMPLES / "ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz"  # bgzip, soft-masked
MT = SAMPLES / "MT-human.fa"


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    """A plain multi-record FASTA of real sequence (yeast chr I in three pieces, human MT) with soft-masking,
    N runs, IUPAC codes, and lines of 70 bases."""
    d = tmp_path_factory.mktemp("readers")
    with gzip.open(YEAST, "rt") as fh:
        yeast = "".join(fh.read().split("\n", 1)[1].split())
    mt = "".join(MT.read_text().split("\n", 1)[1].split())
    seqs = {"Chr1": yeast[:90000], "Chr2": yeast[90000:150000], "Chr3": mt, "Chr4": yeast[150000:]}
    lines = []
    for name, seq in seqs.items():
        seq = seq.replace("ACGTA", "acgtR", 200).replace("TTTTTT", "NNNNNN", 300).replace("GGC", "ggW", 100)
        lines += [f">{name} piece", *(seq[i : i + 70] for i in range(0, len(seq), 70))]
    p = d / "mixed.fa"
    p.write_text("\n".join(lines) + "\n")
    return p


def _pair(path: Path, cache: Path, **kw):
    return load_genome(path, cache_dir=cache, **kw), open_genome_pyfaidx(path, cache_dir=cache, **kw)


@pytest.mark.parametrize("which", ["plain multi-record", "bgzip soft-masked"])
def test_pyfaidx_path_equals_array_path(which, multi, tmp_path):
    path = multi if which.startswith("plain") else YEAST
    arr, pyf = _pair(path, tmp_path, min_record_length=1000)
    assert [(r.name, r.offset, r.length) for r in pyf.records] == [(r.name, r.offset, r.length) for r in arr.records]
    for r in arr.records:  # every base, soft-mask bit included
        assert np.array_equal(
            pyf.ids[r.offset : r.offset + r.length], np.asarray(arr.ids[r.offset : r.offset + r.length])
        )
    assert arr.stats["soft_masked"] > 0 and (arr.stats["iupac_to_n"] > 0 or which.startswith("bgzip"))
    for kind in ("random", "tiled"):
        s_arr, s_pyf = split_genome(arr), split_genome(pyf)
        if kind == "random":
            a = RandomWindows(arr, s_arr["train"], 500, 200, seed=2, rc_prob=0.5, keep_soft_mask=True)
            b = RandomWindows(pyf, s_pyf["train"], 500, 200, seed=2, rc_prob=0.5, keep_soft_mask=True)
        else:
            a = TiledWindows(arr, s_arr["test"], 300, keep_soft_mask=True)
            b = TiledWindows(pyf, s_pyf["test"], 300, keep_soft_mask=True)
        assert len(a) == len(b) > 0
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["soft_mask"], y["soft_mask"])


def test_records_filter_and_errors(multi, tmp_path):
    arr, pyf = _pair(multi, tmp_path, records=["Chr2", "Chr4"])
    assert [r.name for r in pyf.records] == [r.name for r in arr.records] == ["Chr2", "Chr4"]
    r = pyf.records[0]
    with pytest.raises(IndexError, match="inside one record"):
        pyf.ids[r.offset + r.length - 5 : r.offset + r.length + 5]
    with pytest.raises(FastaError, match="records not found"):
        open_genome_pyfaidx(multi, cache_dir=tmp_path, records=["Chr9"])
    gz = tmp_path / "plain.fa.gz"
    gz.write_bytes(gzip.compress(multi.read_bytes()))
    with pytest.raises(FastaError, match=r"plain\.fa\.gz: plain gzip cannot be read at random positions"):
        open_genome_pyfaidx(gz, cache_dir=tmp_path)


class _WithPid(Dataset):
    def __init__(self, ds: RandomWindows):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        item = self.ds[i]
        ids: PyfaidxIds = self.ds.genome.ids
        return item["input_ids"], torch.tensor([os.getpid(), ids._pid, id(ids._fa)])


def test_workers_open_their_own_handle_and_match(multi, tmp_path):
    arr, pyf = _pair(multi, tmp_path)
    s = split_genome(pyf)
    ds = RandomWindows(pyf, s["train"], 256, 48, seed=5, rc_prob=0.5)
    _ = ds[0]  # the parent opens a handle before the workers fork
    parent_fa = pyf.ids._fa
    assert pyf.ids._pid == os.getpid()
    ref = RandomWindows(arr, split_genome(arr)["train"], 256, 48, seed=5, rc_prob=0.5)
    want = torch.stack([ref[i]["input_ids"] for i in range(len(ref))])
    loader = DataLoader(_WithPid(ds), batch_size=8, num_workers=2, multiprocessing_context="fork")
    got, pids = zip(*loader)
    assert torch.equal(torch.cat(got), want)
    pids = torch.cat(pids)
    assert (pids[:, 0] == pids[:, 1]).all()  # each worker reads through a handle it opened itself
    assert os.getpid() not in set(pids[:, 0].tolist()) and len(set(pids[:, 0].tolist())) == 2
    assert pyf.ids._fa is parent_fa  # and the parent's handle is untouched


def test_genome_pickles_as_file_names(multi, tmp_path):
    arr, pyf = _pair(multi, tmp_path)
    blob = pickle.dumps(arr)
    assert len(blob) < 10_000 < len(arr)  # not a copy of the bases
    back = pickle.loads(blob)
    assert np.array_equal(np.asarray(back.ids), np.asarray(arr.ids)) and isinstance(back.ids, np.memmap)
    _ = pyf.ids[0:10]
    back = pickle.loads(pickle.dumps(pyf))
    assert back.ids._fa is None and np.array_equal(back.ids[0:100], np.asarray(arr.ids[0:100]))


def test_spawned_workers_match(multi, tmp_path):
    """spawn / forkserver workers (macOS, Python >= 3.14) receive a pickled genome and read the same windows."""
    cfg = {"path": str(multi), "reader": "array"}
    arr, s = load_split_genome(cfg, str(tmp_path))
    ds = RandomWindows(arr, s["train"], 128, 16, seed=1)
    want = torch.stack([ds[i]["input_ids"] for i in range(16)])
    loader = DataLoader(ds, batch_size=8, num_workers=1, multiprocessing_context="spawn")
    assert torch.equal(torch.cat([b["input_ids"] for b in loader]), want)
