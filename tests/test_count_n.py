"""N bases in the loss (issue 18, item 4): bits/base over the A/C/G/T positions by default, N counted on request.

With ``data.count_n: false`` (the default) N positions are given context, as Caduceus's pretraining maps N to
padding: never masked, never predicted, counted in neither the NELBO nor the number of bases. These tests pin
the reported figure of a window holding N against a hand computation over its A/C/G/T positions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from mdlm_dna.api import DiffusionLM
from mdlm_dna.diffusion.ar import AR
from mdlm_dna.train.lit_module import DiffusionModule, seeded_generator
from tests.conftest import TINY, compose_pretrain
from tests.test_pinned_math import EXCLUDED, MASK, N_ID, KnownBackbone, V, log_softmax_np

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOWS = torch.tensor([
    [0, 1, 2, 3, 4, 4, 4, 4, 2, 1, 0, 3, 3, 4, 2, 2],
    [4, 4, 3, 3, 2, 2, 1, 0, 0, 0, 1, 2, 4, 4, 4, 4],
    [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 0, 0, 0, 0],  # no N at all
])


def module_with_known_backbone(*overrides: str) -> DiffusionModule:
    config = OmegaConf.to_container(compose_pretrain(*TINY, "data.seq_len=16", *overrides), resolve=True)
    config.pop("hydra", None)
    module = DiffusionModule(config).eval()
    module.objective.backbone = KnownBackbone(seed=4)
    return module


def hand_bits_per_base(module: DiffusionModule, count_n: bool) -> float:
    """Evaluation's noise redrawn by hand (no ``index``: the generator keyed by seed, stream 2, draw 0, batch 0,
    rank 0; a low-discrepancy lattice of t), then the log-linear MDLM NELBO summed over the masked counted
    positions, over the number of counted positions."""
    g = seeded_generator(torch.device("cpu"), module.seed, 2, 0, 0, 0)
    B = WINDOWS.shape[0]
    u0 = torch.rand(1, generator=g)
    t_min, eps = module.objective.t_min, module.objective.schedule.eps
    t = (t_min + (1 - t_min) * ((u0 + torch.arange(B) / B) % 1.0)).double().numpy()
    u = torch.rand(WINDOWS.shape, generator=g).numpy()
    x0 = WINDOWS.numpy()
    counted = np.ones_like(x0, dtype=bool) if count_n else x0 != N_ID
    nats = 0.0
    for b in range(B):
        one_minus_alpha = (1 - eps) * t[b]
        masked = (u[b] < one_minus_alpha) & counted[b]
        xt = np.where(masked, MASK, x0[b])
        z = module.objective.backbone.numpy_logits(xt, -math.log1p(-one_minus_alpha))
        z[:, EXCLUDED] = -np.inf
        if not count_n:  # N is context only: never predicted, the distribution is over A/C/G/T
            z[:, N_ID] = -np.inf
        logp = log_softmax_np(z)
        nll = -logp[np.arange(x0.shape[1]), x0[b]]
        nats += (1.0 / t[b]) * nll[masked].sum()  # -alpha'/(1 - alpha) = 1/t for the log-linear schedule
    return nats / counted.sum() / math.log(2)


@pytest.mark.parametrize("count_n", [False, True])
def test_eval_bits_per_base_counts_acgt_positions_only_by_default(count_n):
    """The test metric of a batch of windows with N runs equals the hand computation over its A/C/G/T positions
    (N visible as context, never masked, not counted); with ``data.count_n=true``, over every position.

    Catches: N positions left in the numerator or in the token count; N masked although given; the switch
    ignored.
    """
    module = module_with_known_backbone(*(["data.count_n=true"] if count_n else []))
    assert module.count_n is count_n
    module._eval_step({"input_ids": WINDOWS}, 0, module.test_nelbo, module.test_spread, stream=2)
    got = float(module.test_nelbo.compute()) / math.log(2)
    assert got == pytest.approx(hand_bits_per_base(module, count_n), rel=1e-5)


def test_the_default_is_acgt_and_differs_from_counting_n():
    """The module's own test metric under the default and under count_n=true (not the hand computation twice)."""
    got = {}
    for count_n in (False, True):
        module = module_with_known_backbone(*(["data.count_n=true"] if count_n else []))
        module._eval_step({"input_ids": WINDOWS}, 0, module.test_nelbo, module.test_spread, stream=2)
        got[count_n] = float(module.test_nelbo.compute())
    assert module_with_known_backbone().count_n is False
    assert got[False] != pytest.approx(got[True], rel=1e-3)


def test_training_loss_leaves_n_out_too():
    """The training step's loss uses the same positions: its tokens are the A/C/G/T ones of the batch."""
    module = module_with_known_backbone()
    seen = {}
    nelbo = module.objective.nelbo

    def spy(x0, **kw):
        out = nelbo(x0, **kw)
        seen["tokens"] = int(out.num_tokens.sum())
        return out

    module.objective.nelbo = spy
    module.training_step({"input_ids": WINDOWS}, 0)
    assert seen["tokens"] == int((WINDOWS != N_ID).sum())


class Bigram(nn.Module):
    """A causal 'backbone': the logits at position l depend only on the input token at l."""

    cfg = type("cfg", (), {"causal": True})()

    def __init__(self):
        super().__init__()
        self.W = torch.randn(V, V, generator=torch.Generator().manual_seed(9))

    def forward(self, ids, sigma):
        return self.W[ids]


def test_ar_nll_over_acgt_targets_with_n_as_context():
    """AR: the exact NLL summed over the A/C/G/T targets only, N still read as input, by hand."""
    bb = Bigram()
    obj = AR(bb, bos_id=7, pad_id=6, never_predict=(5, 6, 7, 8, 9))
    out = obj.nelbo(WINDOWS, counted=WINDOWS != N_ID)
    W = bb.W.double().numpy().copy()
    W[:, [5, 6, 7, 8, 9]] = -np.inf
    for b, row in enumerate(WINDOWS.numpy()):
        inputs = np.concatenate([[7], row[:-1]])
        z = W[inputs]
        logp = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
        keep = row != N_ID
        expected = -logp[np.arange(len(row)), row][keep].sum()
        assert float(out.per_sequence[b]) == pytest.approx(expected, rel=1e-5)
        assert int(out.num_tokens[b]) == int(keep.sum())


def test_score_reports_acgt_tokens_and_their_bits():
    """``DiffusionLM.score``: ``tokens`` are the A/C/G/T bases of each sequence, and its NELBO is the
    objective's over those positions; ``count_n=True`` counts every base."""
    module = module_with_known_backbone()
    model = DiffusionLM(module, device="cpu")
    seqs = ["ACGTNNNNGCATTNGG", "NNTTGGCAAACGNNNN", "CCCCGGGGTTTTAAAA"]
    table = model.score(seqs, t_samples=2)
    assert table["tokens"].tolist() == [sum(c in "ACGT" for c in s) for s in seqs]
    assert table["length"].tolist() == [16, 16, 16]
    every = model.score(seqs, t_samples=2, count_n=True)
    assert every["tokens"].tolist() == [16, 16, 16]
    # the sequence without N scores the same either way; the others do not
    assert every["nelbo_nats"][2] == pytest.approx(table["nelbo_nats"][2], rel=1e-6)
    assert every["nelbo_nats"][0] != pytest.approx(table["nelbo_nats"][0], rel=1e-3)
