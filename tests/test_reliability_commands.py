"""Reliability of the commands (issue 29, issue 30 item 7): every config checked by its typed model before any
work, inputs and outputs checked first, no data loss, no silently wrong result; one-line errors, exit status 2.

Table-driven: each row is one case of the issue, called in-process (``pytest.raises(ConfigError)``); a few
subprocess tests pin the ``error:`` line and the exit status."""

from __future__ import annotations

import pandas as pd
import pytest

from mdlm_dna.pretrain import run

from .conftest import TINY, compose_pretrain


# ----------------------------------------------------------------------------------------------------
# data loss: metrics.csv keeps its rows when a finished run is run again or resumed


def _metrics(run_dir):
    return pd.read_csv(run_dir / "metrics.csv")


def test_finished_pretrain_run_again_or_resumed_keeps_every_metrics_row(tmp_path, one_thread):
    cfg = [*TINY, "trainer.log_every_n_steps=50", "checkpoint.every_n_train_steps=2"]
    run(compose_pretrain(*cfg, "trainer.max_steps=2"), tmp_path)
    first = _metrics(tmp_path)
    assert len(first) > 0 and first["val/bpb"].notna().any()
    run(compose_pretrain(*cfg, "trainer.max_steps=2"), tmp_path)  # finished: nothing rewritten
    pd.testing.assert_frame_equal(_metrics(tmp_path), first)
    run(compose_pretrain(*cfg, "trainer.max_steps=4"), tmp_path)  # resumed 2 -> 4: the step-2 row stays
    resumed = _metrics(tmp_path)
    pd.testing.assert_frame_equal(resumed.iloc[: len(first)], first)
    assert (resumed["step"] == 4).any() and resumed["val/bpb"].notna().sum() == 2
