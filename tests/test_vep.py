"""Variant effects: exact llr on toy models, VCF edge cases, REF checks, contig ends, scored VCF out."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch

from mdlm_dna.analysis.vcf import read_variants, write_vcf
from mdlm_dna.utils.errors import DataError
from tests.test_analysis_probs import MarkovDenoiser, chain_conditional, random_dna, tiny

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """Two contigs: chr1 (40 bases, lower case in part) and chrM (10 bases, shorter than the window), N at 30."""
    seq1 = random_dna(40, 11)
    seq1 = seq1[:29] + "N" + seq1[30:]
    seq2 = random_dna(10, 12)
    path = tmp_path_factory.mktemp("ref") / "ref.fa"
    path.write_text(f">chr1 test\n{seq1[:20].lower()}\n{seq1[20:]}\n>chrM\n{seq2}\n")
    return path, {"chr1": seq1, "chrM": seq2}


def write(tmp_path, records: list[str], name: str = "v.vcf") -> str:
    text = HEADER + "".join(r.replace(" ", "\t") + "\n" for r in records)
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def chain_model():
    m = tiny(seq_len=16)
    m.module.objective.backbone = MarkovDenoiser(seed=3)
    return m


def test_snv_llr_is_the_exact_chain_log_ratio_at_contig_ends_and_with_chr_prefixes(chain_model, genome, tmp_path):
    path, seqs = genome
    s = seqs["chr1"]
    pick = {1: "first base", 20: "middle", 40: "last base"}
    records = [f"1 {p} . {s[p - 1]} {'G' if s[p - 1] != 'G' else 'T'} . . ." for p in pick]
    v = chain_model.variant_effects(write(tmp_path, records, "v.vcf.gz"), fasta=path)
    assert list(v["status"]) == ["scored"] * 3 and list(v["chrom"]) == ["1"] * 3
    chain = chain_model.backbone
    for row in v.itertuples():
        p0 = row.pos - 1
        start = int(np.clip(p0 - 8, 0, 40 - 16))  # the window: 16 bases, centred, shifted at the contig ends
        ids = chain_model.encode(s[start : start + 16])
        cond = chain_conditional(chain, ids, p0 - start)
        expect = np.log(cond["ACGT".index(row.alt)] / cond["ACGT".index(row.ref)])
        assert row.llr == pytest.approx(expect, abs=1e-9) and row.method == "masked site"
        assert row.p_ref == pytest.approx(cond["ACGT".index(row.ref)], abs=1e-9)


def test_vcf_edge_cases_are_split_reported_or_refused(chain_model, genome, tmp_path):
    path, seqs = genome
    s = seqs["chr1"]
    records = [
        f"chr1 5 rs1 {s[4]} {'AC' if s[4] not in 'AC' else 'GT'}".replace("AC", "A,C").replace("GT", "G,T") + " . . .",
        f"chr1 6 . {s[5]} <DEL> . . .",
        f"chr1 7 . {s[6]} * . . .",
        "chr1 30 . N A . . .",  # N in the reference
        "chr9 3 . A C . . .",  # chromosome not in the FASTA
        f"chrM 3 . {seqs['chrM'][2].lower()} {'A' if seqs['chrM'][2] != 'A' else 'C'} . . .",  # short contig, lower
        f"chr1 8 . {s[7]} . . . .",  # no ALT
        f"chr1 9 . {s[8]} N . . .",  # unknown ALT base
    ]
    v = chain_model.variant_effects(write(tmp_path, records), fasta=path)
    assert len(v) == 9 and list(v["id"][:2]) == ["rs1", "rs1"]
    assert list(v["status"]) == ["scored", "scored", "symbolic", "symbolic", "n_in_reference", "no_chrom", "scored",
                                 "no_alt", "not_acgtn"]
    assert v["llr"][v["status"] == "scored"].notna().all() and v["llr"][v["status"] != "scored"].isna().all()
    assert "<DEL>" in v["note"][2]


def test_ref_mismatch_is_one_error_naming_the_first_or_dropped_with_a_status(chain_model, genome, tmp_path):
    path, seqs = genome
    s = seqs["chr1"]
    wrong = "A" if s[9] != "A" else "C"
    records = [f"chr1 10 . {wrong} G . . .", f"chr1 11 . {s[10]} {'T' if s[10] != 'T' else 'A'} . . .",
               "chr1 45 . A C . . ."]
    vcf = write(tmp_path, records)
    with pytest.raises(DataError, match=rf"2 of 3 variants do not match .*FASTA has {s[9]} at chr1:10.*past the end"):
        chain_model.variant_effects(vcf, fasta=path)
    with pytest.warns(UserWarning, match="2 variants do not match"):
        v = chain_model.variant_effects(vcf, fasta=path, on_mismatch="drop")
    assert list(v["status"]) == ["ref_mismatch", "scored", "ref_mismatch"]


def test_empty_vcf_and_foreign_chromosomes_are_one_clear_error(chain_model, genome, tmp_path):
    path, _ = genome
    with pytest.raises(DataError, match="no variant records"):
        chain_model.variant_effects(write(tmp_path, []), fasta=path)
    with pytest.raises(DataError, match="none of its chromosomes .*chr7.* wrong reference"):
        chain_model.variant_effects(write(tmp_path, ["chr7 3 . A C . . ."]), fasta=path)
    with pytest.raises(DataError, match="line 4: POS"):
        chain_model.variant_effects(write(tmp_path, ["chr1 3 . A C . . .", "chr1 x . A C . . ."]), fasta=path)


def test_ar_indels_and_mnvs_get_the_exact_log_likelihood_change(genome, tmp_path):
    path, seqs = genome
    m = tiny("objective=ar", "model.causal=true", seq_len=16)
    s = seqs["chr1"]
    records = [f"chr1 12 . {s[11:13]} {'GA' if s[11:13] != 'GA' else 'TT'} . . .",  # MNV
               f"chr1 15 . {s[14]} {s[14]}AC . . .",  # insertion of 2
               f"chr1 18 . {s[17:20]} {s[17]} . . ."]  # deletion of 2
    v = m.variant_effects(write(tmp_path, records), fasta=path)
    assert list(v["kind"]) == ["mnv", "indel", "indel"] and (v["status"] == "scored").all()

    def loglik(text: str) -> float:
        with torch.no_grad():
            return -float(m.objective.nelbo(torch.tensor([m.encode(text)])).per_sequence[0])

    for row in v.itertuples():
        p0, width = row.pos - 1, 16 - max(0, len(row.alt) - len(row.ref))
        start = int(np.clip(p0 + len(row.ref) // 2 - width // 2, 0, 40 - width))
        ref_w = s[start : start + width]
        alt_w = ref_w[: p0 - start] + row.alt + ref_w[p0 - start + len(row.ref) :]
        assert len(alt_w) <= 16
        assert row.llr == pytest.approx(loglik(alt_w) - loglik(ref_w), abs=1e-4)


def test_scored_vcf_round_trips_with_the_llr_in_info(chain_model, genome, tmp_path):
    path, seqs = genome
    s = seqs["chr1"]
    vcf = write(tmp_path, [f"chr1 5 rs1 {s[4]} {'A' if s[4] != 'A' else 'C'} 50 PASS DP=3", "chr1 6 . A <DEL> . . ."])
    table = read_variants(vcf)
    v = chain_model.variant_effects(table, fasta=path)
    out = write_vcf(pd.concat([v, table[["qual", "filter", "info"]]], axis=1), tmp_path / "scored.vcf",
                    table.attrs["vcf_header"])
    back = read_variants(out)
    assert list(back["pos"]) == [5, 6] and back["info"][0].startswith("DP=3;MDLM_LLR=")
    assert float(back["info"][0].split("MDLM_LLR=")[1].split(";")[0]) == pytest.approx(v["llr"][0], rel=1e-5)
    assert back["info"][1].endswith("MDLM_LLR=.;MDLM_STATUS=symbolic")
    assert any(h.startswith("##INFO=<ID=MDLM_LLR") for h in back.attrs["vcf_header"])


# ----------------------------------------------------------------------------------------------------
# the command lines (in process where possible: each subprocess start costs seconds)


def ecoli_vcf(fasta, tmp_path) -> tuple[str, str]:
    lines = fasta.read_text().splitlines()
    name, seq = lines[0][1:].split()[0], "".join(lines[1:])
    records = [f"{name} 100 snv1 {seq[99]} {'A' if seq[99] != 'A' else 'G'} . PASS .",
               f"{name} 5000 del1 {seq[4999:5002]} {seq[4999]} . PASS .",
               f"{name} 7000 sv1 {seq[6999]} <INV> . PASS ."]
    return write(tmp_path, records, "ecoli.vcf.gz"), name


def test_vep_and_track_commands_write_their_outputs(ecoli_prefix, tmp_path):
    import pyBigWig

    from mdlm_dna.track import track as track_cli
    from mdlm_dna.vep import vep

    vcf, name = ecoli_vcf(ecoli_prefix, tmp_path)
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(ecoli_prefix.read_bytes())  # pyfaidx writes its index next to the FASTA
    scores = vep({"ckpt": "ecoli", "vcf": vcf, "fasta": str(fasta), "device": "cpu", "t_samples": 2,
                  "vcf_out": str(tmp_path / "scored.vcf")})
    table = pd.read_csv(tmp_path / "ecoli.vep.tsv", sep="\t")
    assert list(table["status"]) == ["scored", "scored", "symbolic"] and table["llr"][:2].notna().all()
    assert list(scores["method"][:2]) == ["masked site", "window NELBO difference (2 draws, common random numbers)"]
    assert "MDLM_LLR=" in (tmp_path / "scored.vcf").read_text()
    (tmp_path / "r.bed").write_text(f"{name}\t1000\t1100\n")
    out = track_cli({"ckpt": "ecoli", "fasta": str(fasta), "bed": str(tmp_path / "r.bed"),
                     "out": str(tmp_path / "s.bw"), "device": "cpu"})
    bw = pyBigWig.open(str(out))
    values = np.array(bw.values(name, 1000, 1100))
    bw.close()
    assert np.isfinite(values).all() and 0.5 < values.mean() < 3.5  # bits of surprisal of real E. coli DNA


def test_command_errors_are_one_line_exit_2(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "mdlm_dna.vep", "ckpt=ecoli", f"vcf={tmp_path}/none.vcf", "fasta=x.fa"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: vcf={tmp_path}/none.vcf: no such file"]
    (tmp_path / "g.fa").write_text(">c\nACGT\n")
    (tmp_path / "r.bed").write_text("c\t0\t2\n")
    r = subprocess.run([sys.executable, "-m", "mdlm_dna.track", "ckpt=ecoli", f"fasta={tmp_path}/g.fa",
                        f"bed={tmp_path}/r.bed", "out=t.txt", "stat=surprise"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "stat='surprise'" in r.stderr


def test_a_table_works_like_a_vcf(chain_model, genome, tmp_path):
    path, seqs = genome
    s = seqs["chr1"]
    alt = "A" if s[4] != "A" else "C"
    (tmp_path / "v.csv").write_text(f"Chrom,Pos,Ref,Alt,id\nchr1,5,{s[4]},{alt},x1\n")
    (tmp_path / "v.vcf").write_text(HEADER + f"chr1\t5\tx1\t{s[4]}\t{alt}\t.\t.\t.\n")
    a = chain_model.variant_effects(tmp_path / "v.csv", fasta=path)
    b = chain_model.variant_effects(tmp_path / "v.vcf", fasta=path)
    pd.testing.assert_frame_equal(a, b)
    (tmp_path / "bad.csv").write_text("chrom,position,alt\nchr1,5,A\n")
    with pytest.raises(DataError, match="needs columns chrom, pos"):
        chain_model.variant_effects(tmp_path / "bad.csv", fasta=path)
