"""The autoregressive baseline against an independent computation, and its causal backbone."""

import pytest
import torch

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.ar import AR
from mdlm_dna.models import build_backbone
from mdlm_dna.models.dit import DiT, DiTConfig
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


def test_ar_samples_follow_the_models_chain_rule_probabilities():
    """AR.sample draws x_l ~ p(. | x_<l): over 3-base sequences the sample frequencies match the probabilities
    of the independent chain-rule loop (chi-square over the 5^3 sequences with N allowed), a prefix is kept
    and the special tokens never appear."""
    ar = make_ar(seed=3)
    n = 20_000
    x = ar.sample(n, 3, torch.Generator().manual_seed(0))
    assert x.shape == (n, 3) and not torch.isin(x, torch.tensor(SPECIAL)).any()
    seqs, counts = torch.unique(x, dim=0, return_counts=True)
    probs = {tuple(s.tolist()): torch.exp(torch.tensor(-loop_nll(ar.backbone, s.tolist()))).item() for s in seqs}
    assert abs(sum(probs.values()) - 1) < 0.02  # almost all the mass was visited
    expected = torch.tensor([probs[tuple(s.tolist())] for s in seqs]) * n
    chi2 = (((counts - expected) ** 2) / expected).sum().item()
    assert chi2 < len(seqs) + 5 * (2 * len(seqs)) ** 0.5  # mean + 5 sd of a chi-square with that many cells
    pre = ar.sample(16, 5, torch.Generator().manual_seed(1), prefix=torch.tensor([2, 3]))
    assert (pre[:, :2] == torch.tensor([2, 3])).all()


def test_api_samples_an_ar_model_and_refuses_diffusion_only_options(tmp_path):
    from mdlm_dna.api import DiffusionLM
    from mdlm_dna.pretrain import run
    from mdlm_dna.utils.errors import ConfigError

    cfg = compose_pretrain("objective=ar", "model.causal=true", "trainer.max_steps=2", "trainer.val_check_interval=2",
                           "checkpoint.every_n_train_steps=2", "data.batch_size=4", "data.seq_len=16",
                           "model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.cond_dim=16",
                           "trainer.enable_progress_bar=false", "resume=null")
    result = run(cfg, tmp_path / "ar")
    m = DiffusionLM.from_pretrained(str(result["last_ckpt"]))
    res = m.sample_ids(5, length=12, prefix="ACG", seed=0, batch_size=2)
    assert len(res.sequences) == 5 and all(len(s) == 12 and s.startswith("ACG") for s in res.sequences)
    assert res.settings["sampler"] == "ar" and res.sequence_evals == 5 * 9
    assert m.sample(3, length=8, seed=1) == m.sample(3, length=8, seed=1)
    with pytest.raises(ConfigError, match="diffusion model"):
        m.sample(2, infill="ACNNT")
    from mdlm_dna.sample import generate  # the command line's path

    report = generate({"ckpt": str(result["last_ckpt"]), "num_samples": 2, "length": 8, "metrics": False,
                       "plots": False}, tmp_path / "out")
    assert report["sampler"] == "ar" and report["network_evals_per_sample"] == 8
    assert (tmp_path / "out" / "samples.fa").read_text().startswith(">sample_0 sampler=ar seed=0\n")
