"""``probs``: one masked position per forward pass, checked against brute-force loops and exact toy models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdlm_dna.api import DiffusionLM
from mdlm_dna.errors import ConfigError
from mdlm_dna.train.lit_module import DiffusionModule
from tests.conftest import TINY, compose_pretrain

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny(*overrides: str, seq_len: int = 32) -> DiffusionLM:
    torch.manual_seed(0)
    cfg = OmegaConf.to_container(compose_pretrain(*TINY, f"data.seq_len={seq_len}", *overrides), resolve=True)
    return DiffusionLM(DiffusionModule(cfg), device="cpu")


def random_dna(n: int, seed: int = 0) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


def brute_force_probs(m: DiffusionLM, seq: str) -> np.ndarray:
    """One forward pass per position, unbatched, each in the window centred on it (shifted at the ends)."""
    ids = torch.tensor(m.encode(seq))
    n, w = len(ids), min(m.seq_len, len(ids))
    out = np.full((n, 4), np.nan)
    for i in range(n):
        if ids[i] >= 4:
            continue
        s = min(max(i - w // 2, 0), n - w)
        x = ids[s : s + w].clone()
        x[i - s] = m.objective.mask_id
        with torch.no_grad():
            logits = m.objective.denoiser_logits(x[None], torch.zeros(1))[0, i - s, :4].double()
        out[i] = torch.softmax(logits, -1).numpy()
    return out


def test_probs_equal_a_brute_force_loop_with_tiling_and_n():
    m = tiny()
    seq = random_dna(70)
    seq = seq[:10] + "N" + seq[11:]
    p = m.probs([seq], batch_size=7)
    assert p.shape == (1, 70, 4)
    expect = brute_force_probs(m, seq)
    assert np.isnan(p[0, 10]).all() and np.isnan(expect[10]).all()
    np.testing.assert_allclose(p[0], expect, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(np.nansum(p[0], -1)[np.arange(70) != 10], 1.0, atol=1e-9)


def test_both_strands_average_the_reverse_complement_mapped_back():
    m = tiny()
    seq = random_dna(40, seed=1)
    rc = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    fwd, rev, both = (m.probs([seq], strands=s)[0] for s in ("forward", "reverse", "both"))
    mapped = brute_force_probs(m, rc)[::-1][:, ::-1]  # flip positions, complement bases (A C G T -> T G C A)
    np.testing.assert_allclose(rev, mapped, atol=1e-6)
    np.testing.assert_allclose(both, (fwd + mapped) / 2, atol=1e-6)


def test_unequal_lengths_give_a_list_and_batch_mates_do_not_matter():
    m = tiny()
    a, b = random_dna(20, 2), random_dna(50, 3)
    out = m.probs([a, b])
    assert isinstance(out, list) and [x.shape for x in out] == [(20, 4), (50, 4)]
    np.testing.assert_allclose(out[1], m.probs([b], batch_size=3)[0], atol=1e-6)


def test_ar_probs_are_the_exact_conditional_from_four_likelihoods():
    m = tiny("objective=ar", "model.causal=true", seq_len=16)
    seq = random_dna(20, 4)
    ids = torch.tensor(m.encode(seq))
    p = m.probs([seq])[0]
    for i in (0, 7, 19):
        s = min(max(i - 8, 0), 20 - 16)
        joint = []
        for b in range(4):
            x = ids[s : s + 16].clone()
            x[i - s] = b
            with torch.no_grad():
                joint.append(-float(m.objective.nelbo(x[None]).per_sequence[0]))
        np.testing.assert_allclose(p[i], torch.softmax(torch.tensor(joint, dtype=torch.float64), 0).numpy(),
                                   atol=1e-5)


def test_bad_arguments_are_one_clear_error():
    m = tiny()
    with pytest.raises(ConfigError, match="strands"):
        m.probs(["ACGT"], strands="up")
    with pytest.raises(ConfigError, match="not one string"):
        m.probs("ACGT")
    with pytest.raises(ConfigError, match="unconditional"):
        m.probs(["ACGT"], label="yeast")
