"""Shared fixtures: an isolated token cache, real genome files, and a tiny run config."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir, data_file

register_resolvers()

ECOLI = Path(data_file("GCF_000005845.2_ASM584v2_genomic.fna.gz"))

# A CPU-friendly run: a 2-layer DiT on 64-base windows, a few steps.
TINY = [
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.cond_dim=32",
    "data.seq_len=64",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "data.val_max_windows=32",
    "data.test_max_windows=32",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "optim.warmup_steps=2",
    "eval.t_samples=1",
    "model.markov_order=0",  # pretraining's auto would put a chain under every test model (tests of it say so)
]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own token cache; nothing is written to the home folder."""
    monkeypatch.setenv("MDLM_DNA_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and immune to a busy machine's oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ecoli_prefix(tmp_path_factory) -> Path:
    """The first 60 kb of the embedded E. coli genome as a plain FASTA (real sequence, fast to use)."""
    with gzip.open(ECOLI, "rt") as fh:
        header = fh.readline()
        seq = "".join(line.strip() for line in fh)[:60_000]
    path = tmp_path_factory.mktemp("fasta") / "ecoli_60k.fa"
    path.write_text(header + "\n".join(seq[i : i + 80] for i in range(0, len(seq), 80)) + "\n")
    return path


def compose_pretrain(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="pretrain", overrides=list(overrides))
