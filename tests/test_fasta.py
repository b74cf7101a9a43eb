import gzip
import logging

import numpy as np
import pytest

from mdlm_dna.data.fasta import FastaError, load_genome
from mdlm_dna.data.tokenizers import SOFT_MASK_BIT, NucleotideTokenizer, strip_soft_mask

from .conftest import ECOLI

tok = NucleotideTokenizer()


def _decode(genome, name):
    r = genome.record(name)
    return tok.decode(strip_soft_mask(np.asarray(genome.ids[r.offset : r.offset + r.length])).astype(np.int64))


def test_embedded_genome_is_ecoli(tmp_path):
    g = load_genome(ECOLI, cache_dir=tmp_path)
    assert [(r.name, r.length) for r in g.records] == [("NC_000913.3", 4_641_652)]
    counts = np.bincount(strip_soft_mask(np.asarray(g.ids)), minlength=5)
    assert counts[4] == 0 and abs(counts[1] + counts[2] - 0.508 * len(g)) < 0.002 * len(g)  # GC ~ 50.8 %


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fa"):
        load_genome(tmp_path / "nope.fa", cache_dir=tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.fa"
    p.write_text("")
    with pytest.raises(FastaError, match=r"empty\.fa: file is empty"):
        load_genome(p, cache_dir=tmp_path)


def test_not_fasta(tmp_path):
    p = tmp_path / "table.csv"
    p.write_text("chrom,start,end\nchr1,1,2\n")
    with pytest.raises(FastaError, match=r"table\.csv: does not look like FASTA.*'chrom,start,end'"):
        load_genome(p, cache_dir=tmp_path)


def test_bad_character_names_file_record_position(tmp_path):
    p = tmp_path / "bad.fa"
    p.write_text(">ok\nACGT\n>chrZ\nACGTAC\nGTXAC\n")
    with pytest.raises(FastaError, match=r"bad\.fa, record 'chrZ'.*'X'.*position 8\b"):
        load_genome(p, cache_dir=tmp_path)


def test_lower_case_n_runs_iupac_and_windows_line_endings(tmp_path):
    p = tmp_path / "mixed.fa"
    p.write_bytes(b">r1 some description\r\nACGTacgtNN\r\nNNNNRYacgt\r\nAC\r\n>r2\r\nGGGG\r\n")
    g = load_genome(p, cache_dir=tmp_path)
    assert [(r.name, r.length) for r in g.records] == [("r1", 22), ("r2", 4)]
    assert _decode(g, "r1") == "ACGTACGTNNNNNNNNACGTAC"
    r1 = np.asarray(g.ids[:22])
    assert list((r1 & SOFT_MASK_BIT) != 0) == [False] * 4 + [True] * 4 + [False] * 8 + [True] * 4 + [False] * 2
    assert g.stats["iupac_to_n"] == 2 and g.stats["soft_masked"] == 8


def test_irregular_line_lengths_fall_back_to_streaming(tmp_path, caplog):
    p = tmp_path / "irregular.fa"
    p.write_text(">r\nACGTACGTAC\nACG\nTTTTTTTT\n")
    with caplog.at_level(logging.INFO):
        g = load_genome(p, cache_dir=tmp_path)
    assert _decode(g, "r") == "ACGTACGTACACGTTTTTTTT"
    assert "Biopython" in caplog.text


def test_plain_gzip_and_bgzip_agree_with_plain(tmp_path):
    from Bio import bgzf

    text = ">a\n" + "ACGT" * 50 + "\n>b\n" + "GGCCA" * 30 + "\n"
    plain = tmp_path / "x.fa"
    plain.write_text(text)
    gz = tmp_path / "x.fa.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(text)
    bgz = tmp_path / "y.fa.gz"
    with bgzf.BgzfWriter(str(bgz), "wb") as fh:
        fh.write(text.encode())
    ref = load_genome(plain, cache_dir=tmp_path)
    for p in (gz, bgz):
        g = load_genome(p, cache_dir=tmp_path)
        assert [(r.name, r.length) for r in g.records] == [(r.name, r.length) for r in ref.records]
        assert np.array_equal(np.asarray(g.ids), np.asarray(ref.ids))


def test_short_records_skipped_with_warning(tmp_path, caplog):
    p = tmp_path / "short.fa"
    p.write_text(">tiny\nACG\n>empty\n>long\n" + "ACGT" * 30 + "\n")
    with caplog.at_level(logging.WARNING):
        g = load_genome(p, cache_dir=tmp_path, min_record_length=10)
    assert [r.name for r in g.records] == ["long"]
    assert "tiny (3 bp)" in caplog.text and "empty (0 bp)" in caplog.text


def test_all_records_too_short_is_an_error(tmp_path):
    p = tmp_path / "short.fa"
    p.write_text(">tiny\nACG\n")
    with pytest.raises(FastaError, match="no usable sequence"):
        load_genome(p, cache_dir=tmp_path, min_record_length=10)


def test_record_selection_and_duplicates(tmp_path):
    p = tmp_path / "multi.fa"
    p.write_text(">chr1\nAAAA\n>chr2\nCCCC\n>chr3\nGGGG\n")
    g = load_genome(p, cache_dir=tmp_path, records=["chr3", "chr1"])
    assert [r.name for r in g.records] == ["chr1", "chr3"]
    with pytest.raises(FastaError, match="records not found.*chrX"):
        load_genome(p, cache_dir=tmp_path, records=["chrX"])
    d = tmp_path / "dup.fa"
    d.write_text(">chr1\nAAAA\n>chr1\nCCCC\n")
    with pytest.raises((FastaError, ValueError), match="chr1"):
        load_genome(d, cache_dir=tmp_path)


def test_cache_is_reused_and_invalidated_on_change(tmp_path):
    p = tmp_path / "c.fa"
    p.write_text(">r\nACGT\n")
    cache = tmp_path / "cache"
    load_genome(p, cache_dir=cache)
    files = sorted(f.name for f in cache.glob("*.u8"))
    assert len(files) == 1
    load_genome(p, cache_dir=cache)
    assert sorted(f.name for f in cache.glob("*.u8")) == files
    p.write_text(">r\nACGTTTTT\n")
    g = load_genome(p, cache_dir=cache)
    assert g.records[0].length == 8
    assert not list(cache.glob("*.tmp*"))  # no temporary files left behind
