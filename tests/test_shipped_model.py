"""The shipped E. coli model (data/models/ecoli): loads offline by name, samples, reproduces its recorded figure."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mdlm_dna import DiffusionLM
from mdlm_dna.artifacts.checkpoints import shipped_models
from mdlm_dna.utils.resources import data_dir


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def ecoli() -> DiffusionLM:
    return DiffusionLM.from_pretrained("ecoli", device="cpu")


def test_shipped_model_loads_offline_by_name_and_samples(ecoli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "ecoli" in shipped_models() and ecoli.loaded.kind == "shipped"
    folder = data_dir() / "models" / "ecoli"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 10e6  # a few MB, safetensors
    seqs = ecoli.sample(num_samples=2, length=ecoli.seq_len + 40, steps=8, seed=0, progress=False)
    assert [len(s) for s in seqs] == [ecoli.seq_len + 40] * 2 and set("".join(seqs)) <= set("ACGT")
    card = (folder / "README.md").read_text()
    assert "python -m mdlm_dna.pretrain" in card and "| test |" in card


# Monte-Carlo noise of the test NELBO: one draw of one 128-base window has sd 0.44 bits/base (measured over the
# 1,813 test windows with two seeds; the windows themselves add no error here, all of them are scored)
DRAW_SD, TEST_WINDOWS, DRAWS = 0.44, 1813, 3


def split_windows(model: DiffusionLM, n: int | None = None) -> list[str]:
    """Non-overlapping windows of the model's own length on the E. coli test split (all, or ``n``), as text."""
    from mdlm_dna.api import reference_windows

    return [model.tokenizer.decode(r) for r in reference_windows(model, model.seq_len, n)]


def pooled_bits(scores) -> float:
    """Bits/base over all scored tokens of ``DiffusionLM.score``'s table (as the recorded figures are pooled)."""
    return float(scores["nelbo_nats"].sum() / scores["tokens"].sum() / math.log(2))


def within_3_se(now: float, recorded: float, draw_sd: float, windows: int, draws: int, recorded_draws: int) -> bool:
    """Whether a fresh figure and a recorded one over the same ``windows`` differ by less than 3 standard errors of
    their difference, each figure's error the Monte-Carlo noise of its draws (``draw_sd`` per window and draw)."""
    se_now = draw_sd / math.sqrt(windows * draws)
    se_recorded = draw_sd / math.sqrt(windows * recorded_draws)
    return abs(now - recorded) < 3 * math.hypot(se_now, se_recorded)


def test_shipped_model_reproduces_its_figure_and_is_below_every_markov_chain(ecoli):
    """Re-measured over all 1,813 test windows x 3 noise draws (Monte-Carlo SE 0.44 / sqrt(5,439) = 0.006
    bits/base; ~40 CPU-s on the busy 2-core test machine), the model is below every order-k Markov chain
    (k = 0..8, each fitted here on the training split, smoothing chosen on validation): the best, order 6 at
    1.9378, is 0.021 = 3.6 SE above the recorded 1.9163, so the claim itself is tested, not a constant. The
    fresh figure agrees with the recorded one (16 draws) within 3 SE of their difference."""
    from mdlm_dna.evaluation.markov import ALPHAS, MarkovChain, ecoli_splits

    recorded = json.loads((data_dir() / "models" / "ecoli" / "config.json").read_text())["metrics"]["test"]
    assert recorded["windows"] == TEST_WINDOWS and recorded["t_samples"] >= 4
    now = ecoli.evaluate(split="test", t_samples=DRAWS, trainer={"enable_progress_bar": False})["bits_per_base"]
    assert within_3_se(now, recorded["bits_per_base"], DRAW_SD, TEST_WINDOWS, DRAWS, recorded["t_samples"]), now
    splits = ecoli_splits()
    chains = {k: MarkovChain.fit_select_alpha(splits["train"], splits["validation"], k, ALPHAS)[0].score(
        splits["test"]) for k in range(9)}
    assert now < min(chains.values()), (now, chains)


def test_shipped_model_has_learned_dna_beyond_composition(ecoli):
    """Real held-out windows score better than the same windows shuffled (same composition, no order)."""
    import numpy as np

    n = 48
    real = split_windows(ecoli, n)
    rng = np.random.default_rng(0)
    shuffled = ["".join(rng.permutation(list(s))) for s in real]
    scores = ecoli.score(real + shuffled, t_samples=8, progress=False)["bits_per_base"].to_numpy()
    gap = scores[n:] - scores[:n]  # paired: each window against its own shuffle
    se = gap.std(ddof=1) / np.sqrt(n)
    # the 300-step default (conv_kernel 5) gives ~0.1 bits/base; the model shipped before it, at the base
    # composition, 0.006
    assert gap.mean() > max(0.03, 3 * se), (gap.mean(), se)


# The second shipped E. coli model: `ecoli` trained 30,000 steps more (benchmarks/recipe.py, candidate ecoli_cont30k)
LONG = "ecoli_40k"


@pytest.fixture(scope="module")
def ecoli_40k() -> DiffusionLM:
    return DiffusionLM.from_pretrained(LONG, device="cpu")


def test_the_longer_trained_model_reproduces_its_figure_and_beats_the_model_it_started_from(ecoli, ecoli_40k):
    """Both models score all 1,813 test windows with the same 3 noise draws per window (noise keyed by window):
    ``ecoli_40k``'s figure agrees with its recorded one (16 draws) within 3 SE of their difference (Monte-Carlo SE
    0.44 / sqrt(5,439) = 0.006), and it is better than the ``ecoli`` it was trained from, window by window, by
    more than 0.01 bits/base and more than 3 standard errors of the paired difference (recorded: 0.0225). The
    shipped ``ecoli``'s own test above ties that model to the Markov chains. ~80 CPU-s."""
    folder = data_dir() / "models" / LONG
    card = (folder / "README.md").read_text()
    assert "python -m mdlm_dna.pretrain" in card and "init_from=ecoli" in card and "| test |" in card
    recorded = json.loads((folder / "config.json").read_text())["metrics"]["test"]
    assert recorded["windows"] == TEST_WINDOWS and recorded["t_samples"] >= 16
    seqs = split_windows(ecoli_40k)
    assert len(seqs) == TEST_WINDOWS
    longer, start = (m.score(seqs, t_samples=DRAWS, common_noise=False, progress=False) for m in (ecoli_40k, ecoli))
    now = pooled_bits(longer)
    assert within_3_se(now, recorded["bits_per_base"], DRAW_SD, TEST_WINDOWS, DRAWS, recorded["t_samples"]), now
    gain = (start["bits_per_base"] - longer["bits_per_base"]).to_numpy()
    se_gain = gain.std(ddof=1) / math.sqrt(len(gain))
    assert gain.mean() > max(0.01, 3 * se_gain), (gain.mean(), se_gain)


def test_reading_both_strands_lowers_the_bound_of_the_longer_trained_model(ecoli_40k):
    """``strands="both"`` (the denoiser averaged with its reading of the reverse complement) scores the same
    1,813 test windows under the same 3 noise draws lower than the model alone, by more than 0.001 bits/base and
    3 standard errors of the paired difference (recorded with 16 draws: 0.0023 +- 0.0002, recipe_runs.csv).
    ~60 CPU-s."""
    seqs = split_windows(ecoli_40k)
    one, both = (ecoli_40k.score(seqs, t_samples=DRAWS, common_noise=False, progress=False, strands=s)
                 for s in ("forward", "both"))
    gain = (one["bits_per_base"] - both["bits_per_base"]).to_numpy()
    se_gain = gain.std(ddof=1) / math.sqrt(len(gain))
    assert gain.mean() > max(0.001, 3 * se_gain), (gain.mean(), se_gain)


# The third: `ecoli_40k` adapted to 512-base windows for 7,000 steps (benchmarks/recipe.py, candidate ecoli40k_L512)
WIDE = "ecoli_47k"
GECO3 = 1.892  # GeCo3 (level 16) on the same test bases, reading the chromosome in order (issue 31)
# Monte-Carlo noise of one draw of one 512-base test window: sd 0.19 bits/base (two independent 1-draw scorings of
# the 453 windows differ by sd 0.188 x sqrt(2), under the full bound and under the reference estimate alike)
WIDE_DRAW_SD, WIDE_WINDOWS, WIDE_DRAWS = 0.19, 453, 6


def test_the_512_base_model_is_below_the_best_dna_compressor_on_its_full_bound():
    """The sampler's whole NELBO (``bound="full"``, the figure to set beside a compressor's code length) of every
    512-base test window, 6 noise draws each (Monte-Carlo SE 0.19 / sqrt(2,718) = 0.0036): below GeCo3's 1.892, a
    margin of 0.014 = 3.8 SE as recorded, and within 3 SE of the figure recorded with 16 draws
    (``benchmarks/recipe_runs.csv``). ~90 CPU-s."""
    import pandas as pd

    model = DiffusionLM.from_pretrained(WIDE, device="cpu")
    folder = data_dir() / "models" / WIDE
    card = (folder / "README.md").read_text()
    assert "init_from=" in card and "| test |" in card and model.seq_len == 512
    runs = pd.read_csv(Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_runs.csv", dtype=str)
    plain = (runs["strands"].fillna("forward") == "forward") & (runs["context"].fillna("0") == "0")
    row = runs[(runs["name"] == "ecoli40k_L512") & (runs["bound"] == "full") & plain].iloc[-1]
    seqs = split_windows(model)
    assert len(seqs) == WIDE_WINDOWS == int(row["windows"])
    now = pooled_bits(model.score(seqs, t_samples=WIDE_DRAWS, common_noise=False, progress=False, bound="full"))
    assert within_3_se(now, float(row["test_bpb"]), WIDE_DRAW_SD, WIDE_WINDOWS, WIDE_DRAWS, int(row["t_samples"])), now
    assert now < GECO3, now


def test_shipped_models_name_their_genome_by_the_shipped_file_not_a_path_of_the_machine_that_trained_them():
    """A model trained elsewhere recorded that machine's absolute genome path: loading it then warns and falls back
    (ecoli_47k's export did, from a git worktree). Every shipped config names the genome through ``data_file``."""
    for name, folder in shipped_models().items():
        genome = json.loads((Path(folder) / "config.json").read_text())["run_config"].get("genome") or {}
        path = str(genome.get("path") or "")
        assert not path.startswith("/"), (name, path)
