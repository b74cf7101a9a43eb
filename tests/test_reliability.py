"""Faults and bad inputs (issue 20): exact resume after Ctrl-C / SIGTERM, one process per run folder, clean
errors naming the file or key, and no silent change of the data (BED leakage, U, whitespace, stray labels)."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

from mdlm_dna.cli.entry import check_infill_length, user_errors, user_message
from mdlm_dna.data.bed import BedError
from mdlm_dna.data.datamodule import load_split_genome
from mdlm_dna.data.fasta import FastaError, load_genome, open_genome_pyfaidx
from mdlm_dna.data.genomic_benchmarks import DatasetError, load_tables
from mdlm_dna.data.tokenizers import strip_soft_mask
from mdlm_dna.pretrain import run
from mdlm_dna.train.callbacks import AtomicCheckpointIO
from mdlm_dna.utils.errors import CheckpointError, ConfigError, DataError, RunDirError, UserError
from mdlm_dna.utils.rundir import RunLock, remove_stale_temp_files

from .conftest import TINY, compose_pretrain

REPO = Path(__file__).resolve().parents[1]
# 20 steps: a periodic save at 8 and 16, validation at 10 and 20; dropout: the global RNG must travel too
COMMON = ["trainer.max_steps=20", "trainer.val_check_interval=10", "checkpoint.every_n_train_steps=8",
          "model.dropout=0.1"]  # fmt: skip


def tiny_cfg(fasta: Path, *extra: str):
    return compose_pretrain(*TINY, "genome=fasta", f"genome.path={fasta}", *COMMON, *extra)


def _state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)


def assert_same_run(a: Path, b: Path) -> None:
    """Same final weights, EMA, optimizer state and metrics.csv (tolerance 0), same checkpoint files."""
    sa, sb = _state(a / "checkpoints/last.ckpt"), _state(b / "checkpoints/last.ckpt")
    assert sa["global_step"] == sb["global_step"]
    assert sa["loops"]["fit_loop"]["epoch_progress"] == sb["loops"]["fit_loop"]["epoch_progress"]
    for k in sa["state_dict"]:
        torch.testing.assert_close(sa["state_dict"][k], sb["state_dict"][k], rtol=0, atol=0, msg=k)
    for k in sa["ema"]["shadow"]:
        torch.testing.assert_close(sa["ema"]["shadow"][k], sb["ema"]["shadow"][k], rtol=0, atol=0, msg=k)
    oa, ob = sa["optimizer_states"][0]["state"], sb["optimizer_states"][0]["state"]
    for i in oa:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(oa[i][k], ob[i][k], rtol=0, atol=0)
    pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv"), check_exact=True)
    assert sorted(os.listdir(a / "checkpoints")) == sorted(os.listdir(b / "checkpoints"))
    assert not [p for p in os.listdir(b / "checkpoints") if "-v" in p]  # no last-v1.ckpt / best-v1.ckpt


class SignalAt(pl.Callback):
    """Sends this process a signal at a given step, as Ctrl-C (SIGINT) or a scheduler (SIGTERM) would."""

    def __init__(self, step: int, sig: int):
        self.step, self.sig = step, sig

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


@pytest.fixture(scope="module")
def straight(ecoli_prefix, tmp_path_factory, one_thread) -> Path:
    d = tmp_path_factory.mktemp("straight") / "run"
    run(tiny_cfg(ecoli_prefix), d)
    return d


# ----------------------------------------------------------------------------------------------------
# items 1-2: a signal, then the same command again, gives the uninterrupted run exactly


@pytest.mark.parametrize(
    "sig, at",
    [
        (signal.SIGINT, 11),  # after the periodic save at 8 (item 1: last.ckpt was overwritten at the end of fit)
        (signal.SIGTERM, 5),  # before any periodic save (item 2: last.ckpt stayed at 5, last-v1/v2 copies)
        (signal.SIGINT, 10),  # at a validation step: the save waits for the validation, as the run would
    ],
)
def test_signal_then_resume_equals_uninterrupted_run(ecoli_prefix, straight, tmp_path, one_thread, sig, at):
    d = tmp_path / "run"
    res = run(tiny_cfg(ecoli_prefix), d, extra_callbacks=[SignalAt(at, sig)])
    assert res["interrupted"] and res["global_step"] == at
    s = _state(d / "checkpoints/last.ckpt")
    assert s["global_step"] == at and s["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 0
    stale = d / "checkpoints" / ".last.ckpt.tmp99999"  # as a kill during a checkpoint write leaves it
    stale.write_bytes(b"\0" * 1000)
    resumed = run(tiny_cfg(ecoli_prefix), d)  # the same command, the same folder
    assert resumed["global_step"] == 20 and not resumed["interrupted"]
    assert not stale.exists()
    assert_same_run(straight, d)


def test_stop_after_minutes_stops_each_segment_and_the_run_ends_as_if_uninterrupted(ecoli_prefix, straight,
                                                                                    tmp_path, one_thread):
    """checkpoint.stop_after_minutes: each invocation trains until the deadline, saves as Ctrl-C does and stops;
    the same command continues; the run at its end equals the uninterrupted one exactly."""
    d = tmp_path / "run"
    segment = tiny_cfg(ecoli_prefix, "checkpoint.stop_after_minutes=1e-6")  # past after the first step
    first = run(segment, d)
    assert first["interrupted"] and first["global_step"] == 1
    assert _state(d / "checkpoints/last.ckpt")["global_step"] == 1
    second = run(segment, d)
    assert second["interrupted"] and second["global_step"] == 2
    rest = run(tiny_cfg(ecoli_prefix), d)
    assert rest["global_step"] == 20 and not rest["interrupted"]
    assert_same_run(straight, d)


def test_finished_run_run_again_changes_nothing(ecoli_prefix, straight, tmp_path, one_thread):
    d = tmp_path / "run"
    run(tiny_cfg(ecoli_prefix), d)
    before = (d / "checkpoints/last.ckpt").read_bytes()
    again = run(tiny_cfg(ecoli_prefix), d)
    assert again["global_step"] == 20 and (d / "checkpoints/last.ckpt").read_bytes() == before
    assert_same_run(straight, d)


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **kw.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


@pytest.mark.slow  # two command-line starts and ~20 training steps: about a minute on 2 busy cores
def test_cli_sigterm_then_resume_equals_uninterrupted_run(ecoli_prefix, tmp_path, one_thread):
    """The real command line: SIGTERM at whatever step it reaches after the first periodic save, status 130, then
    the same command (up to 3 steps further) equals a straight run to that step. A constant learning rate and a
    fixed epoch length make the straight run independent of the interrupted run's max_steps."""
    fixed = ["optim.schedule=constant", "data.train_samples_per_epoch=4000", "trainer.val_check_interval=400",
             "checkpoint.every_n_train_steps=3"]  # fmt: skip
    d = tmp_path / "run"
    args = ["mdlm_dna.pretrain", *TINY, "genome=fasta", f"genome.path={ecoli_prefix}", f"hydra.run.dir={d}",
            "model.dropout=0.1", *fixed]  # fmt: skip
    proc = _cli([*args, "trainer.max_steps=400"])
    t0 = time.time()
    while not (d / "checkpoints/step0000003.ckpt").exists():
        assert proc.poll() is None and time.time() - t0 < 240, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    stopped = _state(d / "checkpoints/last.ckpt")["global_step"]
    assert f"Interrupted at step {stopped};" in out and 3 <= stopped < 400
    proc = _cli([*args, f"trainer.max_steps={stopped + 3}"])
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    ref = tmp_path / "straight"
    run(compose_pretrain(*TINY, "genome=fasta", f"genome.path={ecoli_prefix}", "model.dropout=0.1", *fixed,
                         f"trainer.max_steps={stopped + 3}"), ref)  # fmt: skip
    assert_same_run(ref, d)


# ----------------------------------------------------------------------------------------------------
# item 3: one process per run folder; a resume is validated before anything is written


_HOLD = "import sys, time; from mdlm_dna.utils.rundir import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"  # noqa: E501


def test_a_second_process_is_refused_and_the_lock_dies_with_its_holder(ecoli_prefix, tmp_path):
    d = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(d)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"{d} is in use by another run \(pid {holder.pid} on "):
            run(tiny_cfg(ecoli_prefix), d)
        assert sorted(p.name for p in d.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, the kernel drops the lock
        holder.wait()
    with RunLock(d):
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    d = tmp_path / "run"
    d.mkdir()
    (d / ".lock").write_text(json.dumps({"pid": 2**22 + 17, "host": os.uname().nodename, "started": "earlier"}))
    with caplog.at_level(logging.WARNING), RunLock(d) as lock:
        assert lock.holder()["pid"] == os.getpid()
    assert "taking over the lock of pid 4194321" in caplog.text and "no longer running" in caplog.text
    assert RunLock(d).holder().get("released")


def test_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="FASTA file not found"):
        run(tiny_cfg(tmp_path / "missing.fa"), tmp_path / "run")
    with RunLock(tmp_path / "run"):
        pass


def test_cli_second_process_gets_one_error_line(ecoli_prefix, tmp_path):
    d = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(d)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        p = _cli(["mdlm_dna.pretrain", "genome=fasta", f"genome.path={ecoli_prefix}", f"hydra.run.dir={d}"])
        out, err = p.communicate(timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert p.returncode == 2, err
    assert err.strip().splitlines() == [err.strip()] and err.startswith(f"error: {d} is in use by another run")


def test_resume_with_another_model_fails_before_writing(ecoli_prefix, tmp_path, one_thread):
    d = tmp_path / "run"
    run(tiny_cfg(ecoli_prefix, "trainer.max_steps=2", "trainer.val_check_interval=2"), d)
    config = (d / "config.yaml").read_bytes()
    with pytest.raises(ConfigError, match=r"last\.ckpt holds another model.*model\.name='mamba' \(the checkpoint has 'dit'\)"):  # noqa: E501
        no_dit = [o for o in TINY if not o.startswith("model.") or o.startswith("model.markov")]
        run(compose_pretrain(*no_dit, "genome=fasta", f"genome.path={ecoli_prefix}", "model=mamba"), d)
    assert (d / "config.yaml").read_bytes() == config


def test_resume_of_a_checkpoint_that_predates_an_option_compares_the_weights(ecoli_prefix, tmp_path, one_thread):
    # a checkpoint written before model.conv_kernel existed has no such key, so the config check cannot see
    # that conv_kernel=3 adds parameters: the weight shapes must, before anything is written
    d = tmp_path / "run"
    run(tiny_cfg(ecoli_prefix, "model.conv_kernel=0", "trainer.max_steps=2", "trainer.val_check_interval=2"), d)
    ckpt = d / "checkpoints/last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    del state["hyper_parameters"]["config"]["model"]["conv_kernel"]
    torch.save(state, ckpt)
    config = (d / "config.yaml").read_bytes()
    with pytest.raises(ConfigError, match=r"holds weights of another model.*not in the checkpoint: objective\.backbone\.blocks\.0\.local"):  # noqa: E501
        run(tiny_cfg(ecoli_prefix, "model.conv_kernel=3"), d)
    assert (d / "config.yaml").read_bytes() == config


def test_corrupt_last_checkpoint_is_a_clear_error(ecoli_prefix, tmp_path):
    ckpt = tmp_path / "run/checkpoints/last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(CheckpointError, match=r"last\.ckpt: cannot be read as a checkpoint.*resume=PATH"):
        run(tiny_cfg(ecoli_prefix), tmp_path / "run")
    assert not (tmp_path / "run/config.yaml").exists()


# ----------------------------------------------------------------------------------------------------
# item 8: out-of-range settings are refused at start-up, naming the key, before anything is written


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.rc_prob=2.0", "data.rc_prob"),
        ("checkpoint.every_n_train_steps=0", "checkpoint.every_n_train_steps"),
        ("data.seq_len=0", "data.seq_len"),
        ("data.seq_len=-5", "data.seq_len"),
        ("data.seq_len=abc", "data.seq_len"),
        ("optim.lr=fast", "optim.lr"),
        ("optim.lr=-0.1", "optim.lr"),
        ("trainer.max_steps=0", "trainer.max_steps"),
        ("data.max_n_fraction=1.5", "data.max_n_fraction"),
    ],
)
def test_out_of_range_settings_name_the_key(ecoli_prefix, tmp_path, override, key):
    with pytest.raises(ConfigError, match=rf"^{key}=.*must be"):
        run(tiny_cfg(ecoli_prefix, override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_infill_and_a_different_length_disagree():
    check_infill_length(None, 12)
    check_infill_length(12, 12)
    with pytest.raises(ConfigError, match=r"length=1024 but infill has 12 positions"):
        check_infill_length(1024, 12)


# ----------------------------------------------------------------------------------------------------
# item 4: train / held-out overlap in a BED is an error naming both lines; the opt-in subtracts it


def _bed_genome(ecoli_prefix: Path, tmp_path: Path, bed_text: str, **extra) -> dict:
    bed = tmp_path / "splits.bed"
    bed.write_text(bed_text)
    return {"name": "bed", "path": str(ecoli_prefix), "bed": str(bed), "reader": "array", **extra}


def test_bed_overlap_between_splits_is_an_error(ecoli_prefix, tmp_path):
    chrom = ecoli_prefix.read_text().split()[0][1:]
    text = f"{chrom}\t0\t30000\ttrain\n{chrom}\t20000\t40000\tvalid\n{chrom}\t45000\t60000\ttest\n"
    g = _bed_genome(ecoli_prefix, tmp_path, text)
    with pytest.raises(BedError, match=r"splits\.bed: line 1 \(.*:0-30000, train\) and line 2 \(.*:20000-40000, "
                                       r"validation\) overlap by 10,000 bp.*genome\.split_overlaps=subtract"):
        load_split_genome(g, str(tmp_path / "cache"))


def test_bed_overlap_subtract_removes_held_out_bases_from_train(ecoli_prefix, tmp_path, caplog):
    chrom = ecoli_prefix.read_text().split()[0][1:]
    text = (f"{chrom}\t0\t30000\ttrain\n{chrom}\t20000\t40000\tvalid\n{chrom}\t35000\t50000\ttest\n"
            f"{chrom}\t48000\t60000\ttrain\n")  # fmt: skip
    g = _bed_genome(ecoli_prefix, tmp_path, text, split_overlaps="subtract")
    with caplog.at_level(logging.WARNING):
        _, splits = load_split_genome(g, str(tmp_path / "cache"))
    span = {k: [(iv.start, iv.end) for iv in v] for k, v in splits.items()}
    assert span == {"train": [(0, 20000), (50000, 60000)], "validation": [(20000, 35000)], "test": [(35000, 50000)]}
    assert "split_overlaps=subtract removed 12,000 bp from train and 5,000 bp from validation" in caplog.text


# ----------------------------------------------------------------------------------------------------
# items 5-6: U is read as T, whitespace inside sequence lines is dropped; both counted, whichever reader


SEQ = "ACGTTGCAACGGATCCATGCAAGTTCAGGCATTACGGATCAGTACGATCAGGATCC"  # 56 bases
LINES = [SEQ[i : i + 8] for i in range(0, 56, 8)]
CASES = {  # name: (FASTA text of SEQ, whitespace characters in its sequence lines)
    "space inside lines": (">r\n" + "\n".join(f"{x[:3]} {x[3:]}" for x in LINES) + "\n", 7),
    "trailing spaces": (">r\n" + "\n".join(x + "  " for x in LINES) + "\n", 14),
    "tab inside lines": (">r\n" + "\n".join(f"{x[:5]}\t{x[5:]}" for x in LINES) + "\n", 7),
    "one space, ragged lines": (">r\n" + LINES[0] + " " + LINES[1] + "\n" + "\n".join(LINES[2:]) + "\n", 1),
}


def _both_readers(text: str, tmp_path: Path):
    """The same FASTA read by pyfaidx (plain, regular lines) or Biopython (gzip) and by genome.reader=pyfaidx."""
    plain, gz = tmp_path / "g.fa", tmp_path / "g.fa.gz"
    plain.write_text(text)
    gz.write_bytes(gzip.compress(text.encode()))
    return load_genome(plain, cache_dir=tmp_path / "c1"), load_genome(gz, cache_dir=tmp_path / "c2")


def _bases(genome) -> str:
    return "".join("ACGTN"[i] for i in strip_soft_mask(np.asarray(genome.ids[0 : len(genome)])))


@pytest.mark.parametrize("case", list(CASES))
def test_whitespace_is_dropped_and_counted_the_same_by_both_readers(case, tmp_path):
    text, n = CASES[case]
    a, b = _both_readers(text, tmp_path)
    assert _bases(a) == _bases(b) == SEQ
    assert a.stats["whitespace_dropped"] == b.stats["whitespace_dropped"] == n


def test_rna_u_is_read_as_t_and_counted(tmp_path, caplog):
    rna = SEQ.replace("T", "U")
    text = ">rna\n" + "\n".join(rna[i : i + 8] for i in range(0, 56, 8)) + "\n"
    with caplog.at_level(logging.WARNING):
        a, b = _both_readers(text, tmp_path)
    assert _bases(a) == _bases(b) == SEQ and "N" not in _bases(a)
    assert a.stats["u_as_t"] == b.stats["u_as_t"] == SEQ.count("T") and a.stats["iupac_to_n"] == 0
    assert f"{SEQ.count('T')} U read as T" in caplog.text
    p = open_genome_pyfaidx(tmp_path / "g.fa", cache_dir=tmp_path / "c3")  # the reader that never caches
    assert _bases(p) == SEQ


# ----------------------------------------------------------------------------------------------------
# errors that were tracebacks: each names the file


def test_duplicate_record_names_in_a_plain_fasta(tmp_path):
    p = tmp_path / "dup.fa"
    p.write_text(">chr1\nACGTACGT\n>chr1\nACGTACGT\n")
    with pytest.raises(FastaError, match=r"dup\.fa: record name 'chr1' occurs twice"):
        load_genome(p, cache_dir=tmp_path)


def test_truncated_gzip_and_bgzip_name_the_file(tmp_path):
    from Bio import bgzf

    text = ">r\n" + "\n".join(SEQ * 50 for _ in range(200)) + "\n"
    gz = gzip.compress(text.encode())
    (tmp_path / "cut.fa.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(FastaError, match=r"cut\.fa\.gz: truncated or corrupt compressed file"):
        load_genome(tmp_path / "cut.fa.gz", cache_dir=tmp_path / "c1")
    with bgzf.BgzfWriter(str(tmp_path / "full.fa.gz")) as fh:
        fh.write(text)
    data = (tmp_path / "full.fa.gz").read_bytes()
    (tmp_path / "cut.bgz.fa.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FastaError, match=r"cut\.bgz\.fa\.gz: truncated or corrupt"):
        load_genome(tmp_path / "cut.bgz.fa.gz", cache_dir=tmp_path / "c2")


def test_all_n_genome_says_so(tmp_path):
    p = tmp_path / "n.fa"
    p.write_text(">r\n" + "\n".join("N" * 80 for _ in range(100)) + "\n")
    from mdlm_dna.data.datamodule import GenomeDataModule

    dm = GenomeDataModule({"path": str(p)}, {"seq_len": 64, "batch_size": 4, "train_samples_per_epoch": 8}, 0,
                          str(tmp_path / "c"))  # fmt: skip
    dm.setup()
    with pytest.raises(DataError, match=r"n\.fa: all 6 windows of the validation split have more than "
                                        r"data\.max_n_fraction=0\.5 N"):
        dm.val_dataloader()
    with pytest.raises(DataError, match=r"n\.fa: 100 random training windows in a row .* all N"):
        next(iter(dm.train_dataloader()))


# ----------------------------------------------------------------------------------------------------
# item 7: stray labels are errors naming the rows, not classes of their own


def _table(tmp_path: Path, labels: list[str], name: str = "train.csv") -> Path:
    rows = ["sequence,label", *(f"{'ACGT' * (1 + i % 3)},{lab}" for i, lab in enumerate(labels))]
    p = tmp_path / name
    p.write_text("\n".join(rows) + "\n")
    return p


@pytest.mark.parametrize("stray", ["1.5", "promoter"])
def test_a_stray_label_is_refused_naming_its_line(tmp_path, stray):
    labels = ["0", "1"] * 10
    labels[7] = stray
    train = _table(tmp_path, labels)
    with pytest.raises(DatasetError, match=rf"train\.csv: the labels are integers except on 1 row\(s\): line 9 \('{stray}'\)"):  # noqa: E501
        load_tables(train, test_fraction=0.2)


def test_rare_classes_and_single_class_tables(tmp_path):
    train = _table(tmp_path, ["a"] * 10 + ["b"] * 10 + ["c"] * 2)
    with pytest.raises(DatasetError, match=r"1 class\(es\) with fewer than 5 rows: 'c': line 22 .*line 23.*min_class_examples=1"):  # noqa: E501
        load_tables(train, test_fraction=0.2)
    assert load_tables(train, test_fraction=0.2, min_class_examples=1).classes == ["a", "b", "c"]
    single = _table(tmp_path, ["0"] * 12, "one.csv")
    with pytest.raises(DatasetError, match=r"one\.csv: every row has the label '0'; a classifier needs at least two"):
        load_tables(single, test_fraction=0.2)


# ----------------------------------------------------------------------------------------------------
# a full disk: said before the write, with the size needed; the previous checkpoint stays


def test_full_disk_is_one_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    import mdlm_dna.utils.rundir as rundir

    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(RunDirError, match=r"not enough space for checkpoint last\.ckpt in .*needs about 5\.0 MB, "
                                          r"0\.0 MB free"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1_000_000)}, target)
    monkeypatch.undo()

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(RunDirError, match=r"no space left while writing .*last\.ckpt.*previous checkpoint is intact"):
        io.save_checkpoint({"step": 3}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=False) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".last.ckpt.tmp123").write_bytes(b"x")
    (tmp_path / "last.ckpt").write_bytes(b"y")
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == [".last.ckpt.tmp123"]
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# ----------------------------------------------------------------------------------------------------
# user errors reach the user as one line and status 2; bugs and HYDRA_FULL_ERROR=1 keep the traceback


def test_user_errors_decorator(capsys, monkeypatch):
    @user_errors
    def bad_value():
        raise ConfigError("data.rc_prob=2.0: must be a probability in [0, 1]")

    @user_errors
    def bug():
        raise KeyError("a bug")

    with pytest.raises(SystemExit) as e:
        bad_value()
    assert e.value.code == 2 and capsys.readouterr().err == "error: data.rc_prob=2.0: must be a probability in [0, 1]\n"
    with pytest.raises(KeyError):
        bug()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError):
        bad_value()
    assert isinstance(ConfigError("x"), UserError) and isinstance(ConfigError("x"), ValueError)
    assert user_message(OSError(errno.ENOSPC, "No space left on device", "/runs/a/x")) == (
        "no space left on the device: /runs/a/x; free some space or write to another folder"
    )
    assert user_message(FileNotFoundError(errno.ENOENT, "No such file or directory", "a.fa")) == (
        "No such file or directory: a.fa"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["data.rc_prob=2.0"], "error: data.rc_prob=2.0: must be <= 1"),
        pytest.param(["genome=fasta", "genome.path=DUP"], "error: DUP: record name 'chr1' occurs twice",
                     marks=pytest.mark.slow),  # fmt: skip
    ],
)
def test_cli_pretrain_user_errors_are_one_line(tmp_path, args, message):
    dup = tmp_path / "dup.fa"
    dup.write_text(">chr1\nACGTACGT\n>chr1\nACGTACGT\n")
    args = [a.replace("DUP", str(dup)) for a in args]
    p = _cli(["mdlm_dna.pretrain", *TINY, f"hydra.run.dir={tmp_path}/r", *args])
    out, err = p.communicate(timeout=120)
    message = message.replace("DUP", str(dup))
    assert p.returncode == 2 and err.strip().splitlines()[-1].startswith(message), err[-3000:]
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err and not (tmp_path / "r/.hydra").exists()
    if args[0].startswith("data."):  # a bad value is refused before the run folder is written to: none is left
        assert not (tmp_path / "r").exists()


def test_user_errors_outside_a_hydra_run_folder(capsys):
    """A config composed in-process (tests, notebooks, --help) sets Hydra's state without a run folder: a user error
    is still one line, not omegaconf's MissingMandatoryValue from the run-folder clean-up."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from mdlm_dna.utils.resources import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        HydraConfig.instance().set_config(compose(config_name="score", return_hydra_config=True))

    @user_errors
    def bad_value():
        raise ConfigError("t_samples=0: must be > 0")

    try:
        with pytest.raises(SystemExit) as e:
            bad_value()
    finally:
        HydraConfig.instance().cfg = None
    assert e.value.code == 2 and capsys.readouterr().err == "error: t_samples=0: must be > 0\n"
