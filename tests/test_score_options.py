"""Scoring options: both strands at once (``strands="both"``, mdlm_dna.diffusion.strands) and given context bases
(``score(context=C)``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdlm_dna.api import DiffusionLM
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.strands import both_strands, reverse_complement_index, strand_mixture
from mdlm_dna.train.lit_module import DiffusionModule
from mdlm_dna.utils.errors import ConfigError
from tests.conftest import TINY, compose_pretrain

COMP = NucleotideTokenizer.complement_ids
TOK = NucleotideTokenizer()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny(*overrides: str, base: tuple[str, ...] = tuple(TINY)) -> DiffusionLM:
    """A tiny model off its initialisation (random weights, so its two strands disagree)."""
    torch.manual_seed(0)
    cfg = OmegaConf.to_container(compose_pretrain(*base, "data.seq_len=32", *overrides), resolve=True)
    model = DiffusionLM(DiffusionModule(cfg), device="cpu")
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def dna(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


def noised(model: DiffusionLM, seqs: list[str], rate: float = 0.5, seed: int = 0) -> torch.Tensor:
    x = torch.tensor([model.encode(s) for s in seqs])
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(x.shape, generator=g) < rate, torch.full_like(x, TOK.mask_id), x)


def rc_rows(out: torch.Tensor) -> torch.Tensor:
    """[B, L, V] read from the other strand: positions reversed, bases complemented."""
    return out.flip(1)[..., list(COMP)]


def test_the_mixture_is_the_mean_of_the_two_strands_probabilities():
    """Against an independent computation: position by position, base by base, from the plain network."""
    model = tiny()
    objective = model.objective
    x, t = noised(model, [dna(32, 1), dna(32, 2)]), torch.tensor([0.5, 0.5])
    sigma = objective.schedule.sigma(t)
    with torch.no_grad():
        plain = torch.softmax(objective.denoiser_logits(x, t), -1)
        other = torch.softmax(objective.denoiser_logits(torch.tensor(COMP)[x].flip(1), t), -1)
        mixed = strand_mixture(objective.backbone, x, sigma, COMP, objective.excluded_ids).exp()
    for b in range(2):
        for i in range(32):
            for v in range(4):
                expected = 0.5 * (plain[b, i, v] + other[b, 31 - i, COMP[v]])
                assert float(mixed[b, i, v]) == pytest.approx(float(expected), rel=1e-5)
    assert torch.allclose(mixed.sum(-1), torch.ones(2, 32))
    assert float(mixed[..., objective.excluded_ids].max()) == 0.0  # [MASK], N and the special tokens: no mass
    assert not torch.allclose(mixed[..., :4], plain[..., :4], atol=1e-3)  # the strands disagree: it changes things


def test_the_mixture_is_exactly_strand_symmetric():
    """The conjoined model reads a window and its reverse complement as one molecule, bit for bit."""
    model = tiny()
    objective = model.objective
    x, sigma = noised(model, [dna(32, 3)]), torch.tensor([1.0])
    with torch.no_grad():
        forward = strand_mixture(objective.backbone, x, sigma, COMP, objective.excluded_ids)
        reverse = strand_mixture(objective.backbone, torch.tensor(COMP)[x].flip(1), sigma, COMP, objective.excluded_ids)
    assert torch.equal(forward, rc_rows(reverse))
    with torch.no_grad():  # the plain network is not
        plain = objective.denoiser_logits(x, torch.tensor([0.5]))
        plain_rc = objective.denoiser_logits(torch.tensor(COMP)[x].flip(1), torch.tensor([0.5]))
    assert not torch.allclose(torch.log_softmax(plain, -1), torch.log_softmax(rc_rows(plain_rc), -1), atol=1e-3)


def test_padding_stays_in_place_and_only_the_tokens_before_it_are_read_backwards():
    ids = torch.tensor([[0, 1, 2, 6, 6], [3, 3, 0, 1, 2]])
    index = reverse_complement_index(ids, pad_id=6)
    assert index.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0]]
    assert torch.equal(index.gather(1, index), torch.arange(5).expand(2, 5))  # an involution
    assert reverse_complement_index(ids, pad_id=None).tolist() == [[4, 3, 2, 1, 0]] * 2


def test_both_strands_scores_differ_from_forward_and_restore_the_model():
    model = tiny()
    seqs = [dna(40, 4), dna(32, 5)]
    forward = model.score(seqs, t_samples=4)
    both = model.score(seqs, t_samples=4, strands="both")
    assert not np.allclose(both["nelbo_nats"], forward["nelbo_nats"], rtol=1e-3)
    assert model.objective.strand_complement is None  # the plain model again afterwards
    assert np.allclose(model.score(seqs, t_samples=4)["nelbo_nats"], forward["nelbo_nats"])


def test_a_strand_equivariant_model_is_its_own_mixture():
    """Caduceus-PS predicts the reverse strand as the complement of the forward one: averaging changes nothing."""
    model = tiny("model=caduceus_ps", "model.d_model=8", "model.n_layers=2", "model.d_state=4",
                 "model.scan_backend=torch", "model.markov_order=0", base=())
    model.module.eval()
    seqs = [dna(32, 7), dna(32, 8)]
    forward = model.score(seqs, t_samples=4)["nelbo_nats"].to_numpy()
    both = model.score(seqs, t_samples=4, strands="both")["nelbo_nats"].to_numpy()
    np.testing.assert_allclose(both, forward, rtol=1e-5)


def test_evaluate_on_both_strands_reports_it(ecoli_prefix):
    model = tiny("ema.enabled=false")  # evaluate reads EMA weights when there are some: here the perturbed ones
    one = model.evaluate(split="validation", t_samples=2, max_windows=8, genome_path=str(ecoli_prefix))
    two = model.evaluate(split="validation", t_samples=2, max_windows=8, genome_path=str(ecoli_prefix),
                         strands="both")
    assert one["strands"] == "forward" and two["strands"] == "both"
    assert two["bits_per_base"] != pytest.approx(one["bits_per_base"], abs=1e-4)


@pytest.mark.parametrize("objective", ["ar", "sedd"])
def test_only_mdlm_mixes_strands(objective):
    model = tiny(f"objective={objective}", *(["model.causal=true"] if objective == "ar" else []))
    with pytest.raises(ConfigError, match="MDLM"):
        model.score([dna(32, 9)], t_samples=1, strands="both")


def test_text_has_no_other_strand():
    with pytest.raises(ConfigError, match="text"):
        with both_strands(tiny().objective, None):
            pass


def test_context_bases_are_given_and_not_scored():
    """``score(context=C)``: -log p(rest | first C). Against an independent computation: the objective's own NELBO
    with the first C positions left out of ``counted``, under the same noise draws as a plain score would use."""
    from mdlm_dna.evaluation.common_noise import batch_noise

    model = tiny()
    seq = dna(32, 10)
    scored = model.score([seq], t_samples=4, context=12)
    assert int(scored["tokens"].iloc[0]) == 20
    x = torch.tensor([model.encode(seq)])
    counted = torch.arange(32)[None, :] >= 12
    noise = batch_noise(0, [(0, None)], 32, 4, torch.device("cpu"))
    with torch.no_grad():
        nats = sum(float(model.objective.nelbo(x, generator=noise[k], counted=counted).per_sequence) for k in range(4))
    assert float(scored["nelbo_nats"].iloc[0]) == pytest.approx(nats / 4, rel=1e-5)
    plain = model.score([seq], t_samples=4)
    assert int(plain["tokens"].iloc[0]) == 32 and float(plain["nelbo_nats"].iloc[0]) != pytest.approx(nats / 4)
    # a longer sequence: the context sits in its first window only; every later window is scored whole
    long = dna(70, 11)
    assert int(model.score([long], t_samples=1, context=40)["tokens"].iloc[0]) == 30
    with pytest.raises(ConfigError, match="none left to score"):
        model.score([seq], context=32)
