"""The held-out figure's standard error over windows (evaluate, export's model card): the accumulator against
numpy, and the figure against an independent per-window scoring of the same split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mdlm_dna import DiffusionLM
from mdlm_dna.api import reference_windows
from mdlm_dna.train.window_spread import WindowSpread


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_accumulated_in_chunks_it_is_numpy_s_standard_error_of_the_mean():
    values = np.random.default_rng(0).normal(1.3, 0.4, size=1001)
    spread = WindowSpread()
    for chunk in np.array_split(values, 7):
        spread.update(torch.from_numpy(chunk))
    expected = values.std(ddof=1) / math.sqrt(len(values))
    assert float(spread.compute()) == pytest.approx(expected, rel=1e-4)
    spread.reset()
    spread.update(torch.tensor([2.0]))
    assert math.isnan(float(spread.compute()))  # one window: no spread to speak of


def test_evaluate_reports_the_spread_that_scoring_each_window_alone_shows():
    """64 test windows x 2 noise draws: evaluate's standard error against sd / sqrt(n) of the same windows scored
    one by one through ``score`` with other noise (so not equal, but the same quantity: within a factor 1.5;
    the sampling error of a standard deviation from 64 values is ~9 %)."""
    model = DiffusionLM.from_pretrained("ecoli", device="cpu")
    result = model.evaluate(split="test", t_samples=2, max_windows=64, trainer={"enable_progress_bar": False})
    se = result["bits_per_base_se"]
    windows = reference_windows(model, model.seq_len, max_windows=64)
    assert len(windows) == result["windows"] == 64
    seqs = ["".join("ACGTN"[int(i)] for i in w) for w in windows]  # token ids 0..4 are A C G T N
    per_window = model.score(seqs, t_samples=2, common_noise=False, seed=1)["bits_per_base"].to_numpy()
    independent = per_window.std(ddof=1) / math.sqrt(len(per_window))
    assert 1 / 1.5 < se / independent < 1.5, (se, independent)
    assert abs(result["bits_per_base"] - per_window.mean()) < 4 * math.hypot(se, independent)
