"""The new commands (vep, track, predict, embed, export folders) attacked as a careless user: every bad input is one
``error:`` line with exit status 2 and no output written, never a traceback, a silently wrong result or a clobbered
file. Cases and their classes before and after the fixes: benchmarks/attack_new_commands.md."""

from __future__ import annotations

import gzip
import importlib
import random
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from mdlm_dna import DiffusionLM
from mdlm_dna.analysis import read_variants, track
from mdlm_dna.analysis.variants import open_fasta
from mdlm_dna.classifier import load_classifier
from mdlm_dna.utils.errors import UserError

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def ecoli():
    return DiffusionLM.from_pretrained("ecoli", device="cpu")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A two-contig genome, VCFs, BEDs and sequences a careless user might pass (names as in the record)."""
    root = tmp_path_factory.mktemp("attack")
    rng = random.Random(0)
    g = {name: "".join(rng.choice("ACGT") for _ in range(n)) for name, n in (("chr1", 600), ("chr2", 300))}
    (root / "g.fa").write_text("".join(f">{k}\n{v}\n" for k, v in g.items()))
    ref = g["chr1"][99]
    alt = "A" if ref != "A" else "C"
    snv = f"chr1\t100\t.\t{ref}\t{alt}\t.\t.\t.\n"
    text = {
        "ok.vcf": HEADER + snv,
        "emptyref.vcf": HEADER + f"chr1\t100\t.\t\t{alt}\t.\t.\t.\n",
        "odd.vcf": HEADER + "".join(f"chr1\t100\t.\t{ref}\t{a}\t.\t.\t.\n" for a in ("*", "<DEL>", "N", ".", "R"))
        + f"chr1\t100\t.\t{ref.lower()}\t{alt.lower()}\t.\t.\t.\n",
        "badpos.vcf": HEADER + f"chr1\tabc\t.\t{ref}\t{alt}\t.\t.\t.\n",
        "pos0.vcf": HEADER + f"chr1\t0\t.\t{ref}\t{alt}\t.\t.\t.\n",
        "hdronly.vcf": HEADER,
        "ok.bed": "chr1\t100\t110\n",
        "past.bed": "chr1\t590\t610\n",
        "rev.bed": "chr1\t200\t100\n",
        "unk.bed": "chr9\t1\t10\n",
        "seqs.fa": f">s1\n{g['chr1'][:60]}\n",
        "notfasta.fa": "hello world\nthis is not fasta\n",
    }
    for name, body in text.items():
        (root / name).write_text(body)
    (root / "corrupt.vcf.gz").write_bytes(gzip.compress((HEADER + snv).encode())[:30])
    run = root / "run"  # a finetune run folder as far as the output checks look (they run before it is read)
    run.mkdir()
    (run / "classifier.json").write_text('{"kept": true}')
    (root / "adir").mkdir()
    open_fasta(root / "g.fa")  # the index pyfaidx writes on first use, made now: the cases below must write nothing
    return root


@pytest.fixture(scope="module")
def model_folder(ecoli, files):
    folder = ecoli.save_pretrained(files / "model")
    (folder / "notes.tsv").write_text("mine\n")
    return folder


def run_cli(module: str, args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """A command line run in this process: its exit status and stderr."""
    main = importlib.import_module(module).main
    monkeypatch.setattr(sys, "argv", [module, *args])
    try:
        main()
    except SystemExit as e:
        return e.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


VEP = ["mdlm_dna.vep", "ckpt=ecoli", "fasta=g.fa"]
TRACK = ["mdlm_dna.track", "ckpt=ecoli", "fasta=g.fa"]
PREDICT = ["mdlm_dna.predict", "run=run"]
EMBED = ["mdlm_dna.embed", "ckpt=ecoli"]

# (command line, a phrase of the one-line error); the first group failed before the fixes (traceback, wrong
# file written, several lines), the rest are a sample of those that were already right.
ERRORS = [
    (VEP + ["vcf=ok.vcf", "out=o.tsv", "device=tpu"], "device='tpu': must be auto, cpu"),
    (TRACK + ["bed=ok.bed", "out=o.bw", "device=tpu"], "device='tpu'"),
    (PREDICT + ["input=seqs.fa", "device=tpu"], "device='tpu'"),
    (EMBED + ["input=seqs.fa", "out=e.npy", "device=tpu"], "device='tpu'"),
    (VEP + ["vcf=corrupt.vcf.gz", "out=o.tsv"], "damaged or truncated gzip"),
    (VEP + ["vcf=ok.vcf", "out=o.tsv", "vcf_out=scored.bw"], "vcf_out=scored.bw: must end with .vcf"),
    (VEP + ["vcf=ok.vcf", "out=o.bw"], "out=o.bw: must end with .tsv"),
    (PREDICT + ["input=seqs.fa", "out=run/classifier.json"], "is a file of the input folder run"),
    (["mdlm_dna.predict", "run=g.fa", "input=seqs.fa"], "g.fa: a file, not a folder"),
    (EMBED + ["input=notfasta.fa", "out=e.npy"], "notfasta.fa: cannot be read as FASTA"),
    # already right before the fixes
    (VEP + ["vcf=ok.vcf", "out=o.tsv", "t_samples=0"], "t_samples=0: must be > 0"),
    (VEP + ["vcf=ok.vcf", "out=o.tsv", "t_samples=nan"], "must be a finite number"),
    (VEP + ["vcf=ok.vcf", "out=o.tsv", "batch_size=1.5"], "batch_size=1.5"),
    (VEP + ["vcf=ok.vcf", "out=o.tsv", "strands=up"], "strands='up'"),
    (VEP + ["vcf=ok.vcf", "out=ok.vcf"], "is the input file"),
    (VEP + ["vcf=ok.vcf", "out=nodir/o.tsv"], "does not exist"),
    (VEP + ["vcf=ok.vcf", "out=adir"], "is a folder"),
    (VEP + ["vcf=missing.vcf", "out=o.tsv"], "vcf=missing.vcf: no such file"),
    (VEP + ["vcf=hdronly.vcf", "out=o.tsv"], "no variant records"),
    (VEP + ["vcf=badpos.vcf", "out=o.tsv"], "line 3: POS 'abc'"),
    (VEP + ["vcf=pos0.vcf", "out=o.tsv"], "line 3: POS '0'"),
    (TRACK + ["bed=past.bed", "out=o.bw"], "past the end of chr1"),
    (TRACK + ["bed=rev.bed", "out=o.bw"], "need 0 <= start < end"),
    (TRACK + ["bed=unk.bed", "out=o.bw"], "'chr9' is not in the FASTA"),
    (TRACK + ["bed=ok.bed", "out=o.tsv"], "the track format follows the suffix"),
    (TRACK + ["bed=ok.bed", "out=o.bw", "batch_size=-2"], "batch_size=-2: must be > 0"),
    (PREDICT + ["input=seqs.fa", "batch_size=0"], "batch_size=0: must be > 0"),
    (PREDICT + ["input=seqs.fa", "out=seqs.fa"], "is the input file"),
]


@pytest.mark.parametrize("argv, phrase", ERRORS, ids=[" ".join(a[1:]) for a, _ in ERRORS])
def test_bad_command_line_is_one_error_line_and_writes_nothing(argv, phrase, files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    def state():  # every file but Hydra's job log
        return {p: p.stat().st_mtime_ns for p in files.rglob("*") if p.is_file() and p.suffix != ".log"}

    before = state()
    code, err = run_cli(argv[0], argv[1:], monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], err
    assert state() == before  # nothing written or touched


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_before_loading(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    code, err = run_cli("mdlm_dna.predict", ["run=run", "input=seqs.fa", "device=cuda"], monkeypatch, capsys)
    assert code == 2 and "no CUDA GPU is visible" in err


@pytest.mark.parametrize("out", ["config.json", "README.md", ".mdlm-dna-files.json"])
def test_vep_never_overwrites_a_file_of_the_model_folder(out, model_folder, files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    kept = {p.name: p.read_bytes() for p in model_folder.iterdir()}
    code, err = run_cli("mdlm_dna.vep", [f"ckpt={model_folder}", "vcf=ok.vcf", "fasta=g.fa", f"out=model/{out}"],
                        monkeypatch, capsys)
    assert code == 2 and "is a file of the input folder" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in model_folder.iterdir()} == kept


def test_an_earlier_output_in_the_model_folder_can_be_written_again(model_folder, files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    args = [f"ckpt={model_folder}", "vcf=ok.vcf", "fasta=g.fa", "out=model/notes.tsv"]
    assert run_cli("mdlm_dna.vep", args, monkeypatch, capsys)[0] == 0
    assert (model_folder / "notes.tsv").read_text().startswith("chrom\tpos")


def test_empty_ref_is_not_scored_as_an_insertion(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    assert run_cli("mdlm_dna.vep", VEP[1:] + ["vcf=emptyref.vcf", "out=emptyref.tsv"], monkeypatch, capsys)[0] == 0
    row = pd.read_csv(files / "emptyref.tsv", sep="\t", keep_default_na=False).iloc[0]
    assert row["status"] == "not_acgtn" and row["llr"] == "" and "REF" in row["note"]


def test_odd_alleles_get_a_status_each_and_lowercase_is_scored(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    assert run_cli("mdlm_dna.vep", VEP[1:] + ["vcf=odd.vcf", "out=odd.tsv"], monkeypatch, capsys)[0] == 0
    status = pd.read_csv(files / "odd.tsv", sep="\t")["status"].tolist()
    assert status == ["symbolic", "symbolic", "not_acgtn", "no_alt", "not_acgtn", "scored"]


def test_scored_vcf_out_bgz_is_gzip(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    args = VEP[1:] + ["vcf=ok.vcf", "out=s.tsv", "vcf_out=s.vcf.bgz"]
    assert run_cli("mdlm_dna.vep", args, monkeypatch, capsys)[0] == 0
    assert (files / "s.vcf.bgz").read_bytes()[:2] == b"\x1f\x8b" and len(read_variants(files / "s.vcf.bgz")) == 1


def _table(files, **change):
    g = "".join(line for line in (files / "g.fa").read_text().splitlines()[1:2])
    ref = g[99]
    table = pd.DataFrame({"chrom": ["chr1"], "pos": [100], "ref": [ref], "alt": ["A" if ref != "A" else "C"]})
    return table.assign(**change)


@pytest.mark.parametrize("change, phrase", [
    ({"pos": [100.5]}, "pos '100.5' is not a whole number"),   # was scored at 100
    ({"pos": [-5]}, "pos '-5' is not a whole number"),          # was read from the contig's end (Python slice)
    ({"pos": ["x"]}, "pos 'x'"),                                # was a ValueError from int()
    ({"pos": [np.nan]}, "no pos value"),                        # was IntCastingNaNError
    ({"ref": [None]}, "no ref value"),                          # was a TypeError
])
def test_variant_effects_dataframe_rows_are_checked(change, phrase, ecoli, files):
    with pytest.raises(UserError, match="the variants table, row 1") as e:
        ecoli.variant_effects(_table(files, **change), files / "g.fa")
    assert phrase in str(e.value)


def test_library_functions_check_their_arguments(ecoli, files):
    with pytest.raises(UserError, match="batch_size=0: must be > 0"):
        track(ecoli, files / "g.fa", files / "ok.bed", out=files / "t.bw", batch_size=0)
    with pytest.raises(UserError, match="model must be a DiffusionLM"):
        track(None, files / "g.fa", files / "ok.bed", out=files / "t.bw")
    with pytest.raises(UserError, match="read_variants"):
        read_variants(None)
    with pytest.raises(UserError, match="load_classifier"):
        load_classifier(None)
    assert not (files / "t.bw").exists()
