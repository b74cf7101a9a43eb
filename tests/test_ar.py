"""The autoregressive baseline against an independent computation, and its causal backbone."""

import pytest
import torch

from mdlm_dna.diffusion.ar import AR
from mdlm_dna.models import build_backbone
from mdlm_dna.models.dit import DiT, DiTConfig
from mdlm_dna.tokenizers import NucleotideTokenizer
from mdlm_dna.train.lit_module import build_objective

from .conftest import compose_pretrain

tok = NucleotideTokenizer()
SPECIAL = sorted({tok.mask_id, *tok.special_ids_not_in_data})


def random_causal_dit(seed=0, causal=True) -> DiT:
    torch.manual_seed(seed)
    m = DiT(DiTConfig(vocab_size=tok.vocab_size, d_model=16, n_layers=2, n_heads=2, cond_dim=16, causal=causal))
    for name, p in m.named_parameters():  # undo the zero init so that the logits depend on the context
        if "adaLN" in name or "lm_head" in name:
            torch.nn.init.normal_(p, std=0.5)
    return m.double().eval()


def make_ar(seed=0) -> AR:
    return AR(random_causal_dit(seed), bos_id=tok.bos_id, pad_id=tok.pad_id, never_predict=SPECIAL)


@torch.no_grad()
def loop_nll(backbone: DiT, x: list[int]) -> float:
    """-log p(x) by the chain rule, one prefix at a time: feed [BOS] x_<l alone, read the last position."""
    total = 0.0
    for pos in range(len(x)):
        prefix = torch.tensor([[tok.bos_id, *x[:pos]]])
        logits = backbone(prefix, None)[0, -1].clone()
        logits[SPECIAL] = float("-inf")
        total -= torch.log_softmax(logits, -1)[x[pos]].item()
    return total


def test_loss_is_the_exact_sequence_nll():
    obj = make_ar()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 5, (3, 12), generator=g)
    out = obj.nelbo(x0)
    assert out.num_tokens.tolist() == [12, 12, 12]
    expected = torch.tensor([loop_nll(obj.backbone, row.tolist()) for row in x0], dtype=torch.float64)
    torch.testing.assert_close(out.per_sequence, expected, rtol=1e-10, atol=1e-10)
    # deterministic: t and the generator change nothing
    torch.testing.assert_close(obj.nelbo(x0, t=torch.rand(3), generator=g).per_sequence, out.per_sequence)


def test_the_distribution_is_normalised_over_the_bases():
    # for L = 2 the NLLs of all 25 sequences over A C G T N must give probabilities summing to 1
    obj = make_ar(seed=1)
    xs = torch.cartesian_prod(torch.arange(5), torch.arange(5))
    with torch.no_grad():
        total = torch.exp(-obj.nelbo(xs).per_sequence).sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_causal_mask_blocks_the_future():
    obj = make_ar(seed=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (1, 16), generator=g)
    k = 9
    y = x.clone()
    y[0, k] = (x[0, k] + 1) % 4
    with torch.no_grad():
        lx, ly = obj.log_probs(x), obj.log_probs(y)
    # positions 0..k predict x_0..x_k from inputs [BOS] x_0..x_{k-1}: untouched by x_k
    torch.testing.assert_close(lx[:, : k + 1], ly[:, : k + 1], rtol=0, atol=0)
    assert not torch.allclose(lx[:, k + 1], ly[:, k + 1])  # the next prediction does see it
    # a bidirectional network would leak: the same check fails without the causal mask
    bi = random_causal_dit(seed=2, causal=False)
    with torch.no_grad():
        bx, by = bi(x, None), bi(y, None)
    assert not torch.allclose(bx[:, :k], by[:, :k])


def test_padding_is_neither_predicted_nor_counted():
    obj = make_ar()
    x0 = torch.tensor([[0, 1, 2, 3, tok.pad_id, tok.pad_id]])
    out = obj.nelbo(x0)
    assert out.num_tokens.tolist() == [4]
    torch.testing.assert_close(out.per_sequence, obj.nelbo(x0[:, :4]).per_sequence)


def test_builder_refuses_a_bidirectional_backbone_and_accepts_causal_ones():
    with pytest.raises(ValueError, match="model.causal=true"):
        build_objective(dict(compose_pretrain("objective=ar")), tok)
    obj = build_objective(dict(compose_pretrain("objective=ar", "model.causal=true")), tok)
    assert isinstance(obj, AR) and obj.backbone.cfg.causal
    mamba = build_backbone({"name": "mamba", "d_model": 16, "n_layers": 1}, tok.vocab_size, tok.complement_ids)
    AR(mamba, bos_id=tok.bos_id)
    with pytest.raises(ValueError, match="causal"):
        AR(
            build_backbone({"name": "bimamba", "d_model": 16, "n_layers": 1}, tok.vocab_size, tok.complement_ids),
            bos_id=tok.bos_id,
        )


def test_zero_init_starts_at_log4_nats_or_log5_when_n_counts():
    # the DiT starts from uniform logits: log 4 nats per base over A C G T (N is context only by default,
    # data.count_n=false), log 5 over A C G T N when N counts; like the diffusion objectives
    for count_n, states in ((False, 4.0), (True, 5.0)):
        cfg = dict(compose_pretrain("objective=ar", "model.causal=true", f"data.count_n={str(count_n).lower()}"))
        out = build_objective(cfg, tok).nelbo(torch.randint(0, 4, (2, 32)))
        torch.testing.assert_close(out.per_token, torch.log(torch.tensor(states)))
