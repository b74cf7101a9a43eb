"""The order-k chain under the denoiser (model.markov_order): its posterior is exact, the network starts as the
chain, and a run fits it on its own training split and keeps it in its checkpoint."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mdlm_dna.artifacts.checkpoints import load_module
from mdlm_dna.evaluation.markov import MarkovChain, fit_markov_prior, split_ids
from mdlm_dna.models import build_backbone
from mdlm_dna.models.markov_prior import OTHER_LOGIT, MarkovPosterior, resolve_markov_order
from mdlm_dna.pretrain import run

from .conftest import TINY, compose_pretrain

MASK = 5


def brute_force_posterior(ids: list[int], init: np.ndarray, trans: np.ndarray, order: int) -> np.ndarray:
    """P(base at l | visible bases) by enumerating every sequence that agrees with the visible bases."""
    n = max(len(ids), order)
    full = [MASK] * (n - len(ids)) + ids  # a short row is read as preceded by hidden positions
    post = np.zeros((n, 4))
    for x in itertools.product(range(4), repeat=n):
        if any(t < 4 and t != b for t, b in zip(full, x)):
            continue
        state = int("".join(map(str, x[:order])), 4)
        p = init[state]
        for b in x[order:]:
            p *= trans[state, b]
            state = (state % 4 ** (order - 1)) * 4 + b
        for pos, b in enumerate(x):
            post[pos, b] += p
    return (post / post.sum(1, keepdims=True))[n - len(ids):]


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("order, length, rows_per_block", [(1, 5, None), (2, 6, None), (3, 6, None), (3, 2, None),
                                                           (2, 6, 2)])
def test_posterior_is_exact(order, length, rows_per_block, backend):
    """Both backends (the CPU kernel over allowed states, the dense torch path), also when the torch path does a
    batch in row blocks (5 rows as 2 + 2 + 1: ``max_message_floats``)."""
    rng = np.random.default_rng(order * 10 + length)
    prior = MarkovPosterior(order)
    prior.backend = backend
    if rows_per_block:
        prior.max_message_floats = rows_per_block * length * 4**order
    prior.load_chain(rng.dirichlet(np.ones(4), size=4**order), rng.integers(1, 50, 4**order), alpha=0.5)
    ids = torch.tensor(rng.integers(0, 4, (5, length)))
    ids[torch.tensor(rng.random((5, length)) < 0.5)] = MASK
    ids[0, 0], ids[1, -1] = 4, 6  # an N and a [PAD] constrain nothing either
    got = prior(ids).exp().double().numpy()
    init, trans = prior.init.double().numpy(), prior.trans.double().numpy()
    for row in range(ids.shape[0]):
        want = brute_force_posterior(ids[row].tolist(), init, trans, order)
        np.testing.assert_allclose(got[row], want, atol=1e-5, err_msg=f"row {ids[row].tolist()}")


def test_backends_agree_on_long_windows_at_every_noise_level():
    """At k = 6 over 4,096 states, on windows from all but empty to fully masked (too long to enumerate)."""
    rng = np.random.default_rng(6)
    prior = MarkovPosterior(6)
    prior.load_chain(rng.dirichlet(np.ones(4) * 0.3, size=4**6), rng.integers(1, 50, 4**6), alpha=0.5)
    ids = torch.tensor(rng.integers(0, 4, (6, 70)))
    ids[torch.tensor(rng.random((6, 70)) < np.linspace(0, 1, 6)[:, None])] = MASK
    prior.backend = "torch"
    dense = prior(ids)
    prior.backend = "numba"
    torch.testing.assert_close(prior(ids).exp(), dense.exp(), atol=2e-6, rtol=0)


@pytest.mark.parametrize("changes, order", [
    ({}, 6),
    ({"data": {"kind": "text", "tokenizer": {"name": "gpt2"}}}, 0),
    ({"objective": {"name": "ar"}}, 0),
    ({"objective": {"name": "sedd"}}, 0),
    ({"trainer": {"accelerator": "gpu"}}, 0),
    ({"model": {"markov_order": "auto", "causal": True}}, 0),
    ({"model": {"markov_order": 4}}, 4),  # a number is kept wherever the run is
    ({"model": {"markov_order": 0}}, 0),
])
def test_auto_order_is_for_cpu_mdlm_genome_runs(changes, order):
    config = {"model": {"markov_order": "auto"}, "data": {"kind": "genome", "tokenizer": {"name": "nucleotide"}},
              "objective": {"name": "mdlm"}, "trainer": {"accelerator": "cpu"}, **changes}
    assert resolve_markov_order(config) == order and config["model"]["markov_order"] == order


def test_unresolved_auto_order_and_bad_orders_are_refused():
    with pytest.raises(ValueError, match="resolve it first"):
        build_backbone({"name": "dit", "d_model": 16, "n_layers": 1, "n_heads": 2, "markov_order": "auto"}, 8)
    with pytest.raises(ValueError, match="must be auto or an order"):
        resolve_markov_order({"model": {"markov_order": "six"}})


def test_network_starts_as_the_chain():
    """The DiT's output layer starts at zero: the wrapped model's bases get the chain's log posterior."""
    torch.manual_seed(0)
    cfg = {"name": "dit", "d_model": 32, "n_layers": 1, "n_heads": 2, "cond_dim": 32, "markov_order": 2}
    model = build_backbone(cfg, vocab_size=10)
    rng = np.random.default_rng(0)
    model.prior.load_chain(rng.dirichlet(np.ones(4), size=16), rng.integers(1, 9, 16), alpha=1.0)
    ids = torch.tensor([[0, MASK, 2, MASK, MASK, 3, 1]])
    logits = model(ids, None)
    torch.testing.assert_close(logits[..., :4], model.prior(ids))
    assert (logits[..., 4:] == OTHER_LOGIT).all()
    with pytest.raises(ValueError, match="markov_order must be >= 1"):
        MarkovPosterior(0)
    with pytest.raises(ValueError, match="markov_strands must be one of"):
        MarkovPosterior(2, "reverse")


@pytest.mark.parametrize("strands", ["both", "forward"])
def test_run_fits_the_chain_on_its_training_split(ecoli_prefix, tmp_path, strands):
    common = [*TINY, "genome=fasta", f"genome.path={ecoli_prefix}", "trainer.max_steps=2",
              "trainer.val_check_interval=2", "eval.t_samples=4"]
    cfg = compose_pretrain(*common, "model.markov_order=3", f"model.markov_strands={strands}")
    res = run(cfg, tmp_path / "r")
    plain = run(compose_pretrain(*common), tmp_path / "plain")  # same seed, same validation noise
    module, _ = load_module(res["last_ckpt"])
    prior = module.objective.backbone.prior
    assert bool(prior.fitted)

    from omegaconf import OmegaConf

    from mdlm_dna.data.datamodule import load_split_genome

    genome, splits = load_split_genome(OmegaConf.to_container(cfg.genome, resolve=True))
    train = split_ids(genome, splits["train"])
    if strands == "both":  # written out: A<->T, C<->G, reversed
        train = [train, np.array([3 - b if b < 4 else b for b in train[::-1]])]
    chain, _ = MarkovChain.fit_select_alpha(train, split_ids(genome, splits["validation"]), 3)
    torch.testing.assert_close(prior.trans, torch.as_tensor(chain.probs(), dtype=torch.float32))
    if strands == "both":  # a classifier fine-tuned from it reads the network's states and carries no chain
        from mdlm_dna.classifier import build_classifier

        head = {"pooling": "mean", "dropout": 0.0, "freeze_backbone": False, "pad_mode": "pad"}
        clf, _, spec = build_classifier({"classifier": "backbone", "init": res["last_ckpt"], "head": head}, 2, 64)
        assert type(clf.backbone).__name__ == "DiT" and spec["model"]["markov_order"] == 0
    # after two steps the plain network knows little more than base composition; the chain knows 3-mers
    assert res["metrics"]["val/bpb"] < plain["metrics"]["val/bpb"] - 0.01


def test_default_pretraining_puts_an_order_6_chain_under_the_network(ecoli_prefix, tmp_path):
    """``python -m mdlm_dna.pretrain`` as shipped (markov_order=auto, a CPU trainer, an MDLM on a genome); a text
    run of the same command gets none."""
    tiny = [o for o in TINY if not o.startswith("model.markov_order")]
    res = run(compose_pretrain(*tiny, "genome=fasta", f"genome.path={ecoli_prefix}", "trainer.max_steps=1",
                               "trainer.val_check_interval=1"), tmp_path / "r")
    module, _ = load_module(res["last_ckpt"])
    assert module.config["model"]["markov_order"] == 6 and module.objective.backbone.prior.order == 6
    assert bool(module.objective.backbone.prior.fitted)
    assert "markov_order: 6" in (tmp_path / "r" / "config.yaml").read_text()  # the run's record says what it got
    text = OmegaConf.to_container(compose_pretrain(*tiny, "data=tinyshakespeare"), resolve=True)
    assert text["model"]["markov_order"] == "auto" and resolve_markov_order(text) == 0


def test_a_run_without_a_genome_is_refused():
    model = build_backbone({"name": "dit", "d_model": 32, "n_layers": 1, "n_heads": 2, "cond_dim": 32,
                            "markov_order": 2}, vocab_size=10)

    class TextData:  # a datamodule with no genome splits
        pass

    with pytest.raises(ValueError, match="markov_order needs a genome run.*TextData"):
        fit_markov_prior(model, TextData())
