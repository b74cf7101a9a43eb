"""init_from: an MDLM started from a trained AR model of the same architecture (mdlm_dna/artifacts/init_from.py)."""

from __future__ import annotations

import gzip

import pytest
import torch

from mdlm_dna.artifacts.checkpoints import load_module
from mdlm_dna.artifacts.init_from import causal_to_centred, init_from
from mdlm_dna.models.dit import LocalMixer
from mdlm_dna.pretrain import run
from mdlm_dna.train.lit_module import DiffusionModule
from mdlm_dna.utils.errors import ConfigError

from .conftest import ECOLI, TINY, compose_pretrain

AR_STEPS = 300


def tiny(*extra: str, fasta=None) -> dict:
    genome = ["genome=fasta", f"genome.path={fasta}"] if fasta else []
    return dict(compose_pretrain(*TINY, *genome, *extra))


@pytest.fixture(scope="module")
def ar_run(tmp_path_factory, ecoli_prefix, one_thread):
    """A tiny AR DiT trained on 54 kb of E. coli (a few seconds): the source."""
    out = tmp_path_factory.mktemp("ar")
    cfg = compose_pretrain(*TINY, "genome=fasta", f"genome.path={ecoli_prefix}", "objective=ar", "model.causal=true",
                           f"trainer.max_steps={AR_STEPS}", f"trainer.val_check_interval={AR_STEPS}",
                           f"checkpoint.every_n_train_steps={AR_STEPS}", "resume=null")
    run(cfg, out)
    return out


def mdlm(fasta, *extra: str, seed: int = 0) -> DiffusionModule:
    torch.manual_seed(seed)
    return DiffusionModule(tiny("model.input_shift=true", *extra, fasta=fasta))


def test_centred_kernel_mixes_the_same_left_neighbours():
    """Brute force: the re-centred kernel's output at l is sum over offsets o in -2..0 of w_causal(o) h[l + o]."""
    torch.manual_seed(0)
    k, channels, length = 5, 3, 12
    w = torch.randn(channels, 1, k)
    centred = LocalMixer(channels, k)
    centred.conv.weight.data = causal_to_centred(w)
    h = torch.randn(1, length, channels)
    expected = torch.zeros_like(h)
    for pos in range(length):
        for offset in (-2, -1, 0):  # the causal kernel's tap j sits at offset j - (k - 1)
            if pos + offset >= 0:
                expected[0, pos] += w[:, 0, offset + k - 1] * h[0, pos + offset]
    assert torch.allclose(centred(h), expected, atol=1e-6)


def test_a_shifted_causal_copy_computes_the_ar_exactly(ar_run, ecoli_prefix):
    """The shift is wired right: a causal, input-shifted target initialised from the AR gives, on x, the AR's
    logits on [BOS] x_1 .. x_{L-1} at every position (start vector = the AR's [BOS] embedding)."""
    src, _ = load_module(ar_run, use_ema=True)
    target = mdlm(ecoli_prefix, "model.causal=true", seed=1)
    info = init_from(target, str(ar_run))
    assert info["source_objective"] == "ar" and info["start_from_bos"] and not info["causal_to_bidirectional"]
    x = torch.randint(0, 4, (3, 64))
    bos = torch.full_like(x[:, :1], target.tokenizer.bos_id)
    with torch.no_grad():
        want = src.objective.backbone(torch.cat([bos, x[:, :-1]], 1), None)
        got = target.objective.backbone(x, None)
    assert torch.allclose(got, want, atol=1e-5)


def test_every_tensor_maps_and_the_ema_restarts_from_it(ar_run, ecoli_prefix):
    src, _ = load_module(ar_run, use_ema=True)
    target = mdlm(ecoli_prefix, seed=2)
    info = init_from(target, str(ar_run))
    assert info["causal_to_bidirectional"]
    s, t = src.objective.backbone.state_dict(), target.objective.backbone.state_dict()
    assert set(t) == set(s) | {"start"}
    conv = {k for k in s if ".local.conv." in k}
    assert conv
    for key in s:
        want = causal_to_centred(s[key]) if key in conv else s[key]
        assert torch.equal(t[key], want), key
    assert torch.equal(t["start"], s["embed.weight"][target.tokenizer.bos_id])
    params = dict(target.objective.named_parameters())
    assert all(torch.equal(v, params[n].float()) for n, v in target.ema.shadow.items())


def test_an_ar_run_initialises_the_network_under_a_chain(ar_run, ecoli_prefix):
    """A chain MDLM (pretraining's default on a CPU) takes the AR's network; its chain stays its own (the run
    counts it on its training split), untouched by the source."""
    src, _ = load_module(ar_run, use_ema=True)
    target = mdlm(ecoli_prefix, "model.markov_order=2", seed=2)
    chain_before = target.objective.backbone.prior.trans.clone()
    init_from(target, str(ar_run))
    net = target.objective.backbone.backbone
    for key, value in src.objective.backbone.state_dict().items():
        if ".local.conv." not in key:
            assert torch.equal(net.state_dict()[key], value), key
    assert torch.equal(target.objective.backbone.prior.trans, chain_before)


def test_another_architecture_is_refused_naming_the_difference(ar_run, ecoli_prefix):
    with pytest.raises(ConfigError, match=r"model\.d_model: source 32, target 48"):
        init_from(mdlm(ecoli_prefix, "model.d_model=48"), str(ar_run))


def test_the_initialised_mdlm_starts_below_a_random_one_on_real_dna(ar_run, ecoli_prefix, tmp_path):
    """On E. coli windows far from the 54 kb the AR saw, the first NELBO (same windows, same noise) of the MDLM
    initialised from the AR is below the random initialisation's (uniform predictions); the
    pretrain hook (init_from=RUN) gives the run the same start."""
    with gzip.open(ECOLI, "rt") as fh:
        fh.readline()
        seq = "".join(line.strip() for line in fh)[2_000_000:2_000_000 + 64 * 128]
    fresh = mdlm(ecoli_prefix, seed=3)
    x = torch.tensor([fresh.tokenizer.encode(seq[i : i + 64]) for i in range(0, len(seq), 64)])

    def bits(module: DiffusionModule) -> float:
        total = 0.0
        with torch.no_grad():
            for k in range(8):
                out = module.objective.nelbo(x, generator=torch.Generator().manual_seed(k))
                total += float(out.per_sequence.sum() / out.num_tokens.sum())
        return total / 8 / torch.log(torch.tensor(2.0)).item()

    random_bits = bits(fresh)
    init_from(fresh, str(ar_run))
    initialised = bits(fresh)
    print(f"first NELBO, bits/base: random init {random_bits:.4f}, from the AR {initialised:.4f}")
    assert initialised < random_bits - 0.005, (initialised, random_bits)  # measured: 2.0052 vs 2.0189

    cfg = compose_pretrain(*TINY, "genome=fasta", f"genome.path={ecoli_prefix}", "model.input_shift=true",
                           f"init_from={ar_run}", "trainer.max_steps=1", "trainer.val_check_interval=1",
                           "resume=null")
    result = run(cfg, tmp_path / "mdlm")
    module, _ = load_module(result["last_ckpt"], use_ema=False)
    src, _ = load_module(ar_run, use_ema=True)
    emb = module.objective.backbone.embed.weight[:4]  # one step of Adam moves a weight by at most ~lr
    assert (emb - src.objective.backbone.embed.weight[:4]).abs().max() < 0.01
