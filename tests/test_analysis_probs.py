"""``probs``: one masked position per forward pass, checked against brute-force loops and exact toy models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdlm_dna.api import DiffusionLM
from mdlm_dna.train.lit_module import DiffusionModule
from mdlm_dna.utils.errors import ConfigError
from tests.conftest import TINY, compose_pretrain

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def randomised(m: DiffusionLM) -> DiffusionLM:
    """A fresh DiT predicts exactly uniform (its output layer starts at zero): perturb every weight, so that
    predictions differ between positions and a wrong window or site would show."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in m.objective.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def tiny(*overrides: str, seq_len: int = 32) -> DiffusionLM:
    torch.manual_seed(0)
    cfg = OmegaConf.to_container(compose_pretrain(*TINY, f"data.seq_len={seq_len}", *overrides), resolve=True)
    m = randomised(DiffusionLM(DiffusionModule(cfg), device="cpu"))
    p = m.probs([random_dna(seq_len, 99)])[0]
    assert np.ptp(p, axis=0).min() > 1e-3 and p.max() < 0.99  # neither uniform nor certain
    return m


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


@pytest.mark.parametrize("objective", ["mdlm", "sedd", "d3pm"])
def test_probs_equal_a_brute_force_loop_with_tiling_and_n(objective):
    m = tiny(f"objective={objective}")
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
    # forward windows mirrored: the reverse strand reads the same 32 bases around each position
    ids = torch.tensor(m.encode(rc))
    mapped = np.zeros((40, 4))
    for i in range(40):
        s = 40 - 32 - min(max(i - 16, 0), 40 - 32)
        x = ids[s : s + 32].clone()
        x[39 - i - s] = m.objective.mask_id
        with torch.no_grad():
            logits = m.objective.denoiser_logits(x[None], torch.zeros(1))[0, 39 - i - s, :4].double()
        mapped[i] = torch.softmax(logits, -1).numpy()[::-1]  # complement: A C G T -> T G C A
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


# ----------------------------------------------------------------------------------------------------
# an exact toy model: an order-1 Markov chain wrapped as a denoiser


class MarkovDenoiser(torch.nn.Module):
    """Logits at a masked position = the log-probability of the whole window with each base there (brute force
    over the chain), so the softmax is the chain's exact p(x_i | x_{-i})."""

    def __init__(self, seed: int = 0, vocab: int = 10):
        super().__init__()
        g = np.random.default_rng(seed)
        # N (id 4) breaks the chain: its transitions cost nothing (log 1), so windows holding N stay defined
        self.log_init = torch.zeros(5, dtype=torch.float64)
        self.log_init[:4] = torch.tensor(np.log(g.dirichlet(np.ones(4))))
        self.log_trans = torch.zeros(5, 5, dtype=torch.float64)
        self.log_trans[:4, :4] = torch.tensor(np.log(g.dirichlet(np.ones(4) * 0.5, size=4)))
        self.vocab = vocab

    def window_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_init[x[0]] + self.log_trans[x[:-1], x[1:]].sum()

    def forward(self, ids: torch.Tensor, sigma: torch.Tensor, labels=None) -> torch.Tensor:
        out = torch.zeros(*ids.shape, self.vocab, dtype=torch.float64)
        for r, l in (ids == 5).nonzero().tolist():
            for b in range(4):
                x = ids[r].clone()
                x[l] = b
                out[r, l, b] = self.window_log_prob(x)
        return out


def chain_conditional(chain: MarkovDenoiser, ids: list[int], i: int) -> np.ndarray:
    """The closed form: p(b | rest) proportional to p(b | x_{i-1}) p(x_{i+1} | b)."""
    lp = (chain.log_init if i == 0 else chain.log_trans[ids[i - 1]])[:4].clone()
    if i + 1 < len(ids):
        lp = lp + chain.log_trans[:4, ids[i + 1]]
    return torch.softmax(lp, 0).numpy()


def test_a_markov_chain_denoiser_gives_its_exact_conditionals_and_ism():
    m = tiny(seq_len=16)
    chain = MarkovDenoiser()
    m.module.objective.backbone = chain
    seq = random_dna(12, 5)
    ids = m.encode(seq)
    p = m.probs([seq])[0]
    expect = np.stack([chain_conditional(chain, ids, i) for i in range(12)])
    np.testing.assert_allclose(p, expect, atol=1e-9)
    x = m.ism(seq)
    for i in range(12):
        np.testing.assert_allclose(x[i], np.log(expect[i]) - np.log(expect[i, ids[i]]), atol=1e-9)
        assert x[i, ids[i]] == 0.0
    # dependencies of an order-1 chain: only neighbours move the prediction
    d = m.dependency_map(seq)
    far = np.abs(np.subtract.outer(np.arange(12), np.arange(12))) > 1
    assert np.abs(d[far]).max() < 1e-9 and d[~far & ~np.eye(12, dtype=bool)].min() > 1e-6


def test_caduceus_ps_strands_agree_exactly():
    torch.manual_seed(0)
    cfg = OmegaConf.to_container(compose_pretrain(
        "model=caduceus_ps", "model.d_model=8", "model.n_layers=2", "model.d_state=4", "model.scan_backend=torch",
        "model.markov_order=0",
        "data.seq_len=24",
        "ema.enabled=false"), resolve=True)
    m = DiffusionLM(DiffusionModule(cfg), device="cpu")
    seq = random_dna(30, 6)
    fwd, rev = m.probs([seq], strands="forward")[0], m.probs([seq], strands="reverse")[0]
    assert np.abs(fwd - 0.25).max() > 1e-4  # a random network predicts something
    np.testing.assert_allclose(fwd, rev, atol=1e-5)


def test_dependency_map_is_a_brute_force_log_odds_change():
    m = tiny(seq_len=16)
    seq = random_dna(10, 7)
    d = m.dependency_map(seq)
    base = brute_force_probs(m, seq)
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    i, j = 3, 6
    changes = []
    for b in "ACGT".replace(seq[j], ""):
        mut = seq[:j] + b + seq[j + 1 :]
        changes.append(np.abs(logit(brute_force_probs(m, mut)[i]) - logit(base[i])).max())
    assert d[i, j] == pytest.approx(max(changes), rel=1e-5) and d[j, j] == 0.0


def test_class_conditional_probs_use_the_label(ecoli_prefix):
    from tests.test_guidance import labelled_config

    torch.manual_seed(0)
    m = randomised(DiffusionLM(DiffusionModule(labelled_config(ecoli_prefix, "data.seq_len=16")), device="cpu"))
    seq = random_dna(16, 8)
    ids = torch.tensor(m.encode(seq))
    x = ids.clone()
    x[5] = m.objective.mask_id
    with torch.no_grad():
        logits = m.objective.denoiser_logits(x[None], torch.zeros(1), torch.tensor([1]))[0, 5, :4].double()
    p = m.probs([seq], label="yeast")[0]
    np.testing.assert_allclose(p[5], torch.softmax(logits, -1).numpy(), atol=1e-6)
    assert np.abs(p - m.probs([seq])[0]).max() > 1e-6  # the null class predicts otherwise
    s = m.score([seq], label="yeast", t_samples=2)["nelbo_nats"].iloc[0]
    assert s != pytest.approx(m.score([seq], t_samples=2)["nelbo_nats"].iloc[0], rel=1e-6)


def test_a_time_conditioned_network_gets_the_time_of_one_masked_position():
    m = tiny("model.time_conditioning=true", seq_len=16)
    seq = random_dna(16, 9)
    x = torch.tensor(m.encode(seq))
    x[4] = m.objective.mask_id
    t = torch.tensor([1.0 / (16 * (1 - m.config["noise"]["eps"]))])  # log-linear: 1 - alpha(t) = (1 - eps) t = 1/16
    with torch.no_grad():
        expect = torch.softmax(m.objective.denoiser_logits(x[None], t)[0, 4, :4].double(), -1).numpy()
        other = torch.softmax(m.objective.denoiser_logits(x[None], t * 8)[0, 4, :4].double(), -1).numpy()
    got = m.probs([seq])[0, 4]
    np.testing.assert_allclose(got, expect, atol=1e-6)
    assert np.abs(got - other).max() > 1e-6  # the time matters to this network
