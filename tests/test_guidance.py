"""Class-conditional MDLM and classifier-free guidance (D-CFG): exactness, label dropout, RC equivariance,
labelled data, and a tiny model that learns the GC content of two real genomes."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdlm_dna import DiffusionLM
from mdlm_dna.data import build_datamodule
from mdlm_dna.data.labelled import LabelledWindows, label_index, resolve_classes
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.diffusion.guidance import ClassifierFreeGuidance, tempered_product
from mdlm_dna.diffusion.mdlm import MDLM
from mdlm_dna.diffusion.noise import LogLinear
from mdlm_dna.diffusion.samplers import build_sampler, masked_init
from mdlm_dna.models import build_backbone
from mdlm_dna.pretrain import run
from mdlm_dna.sample import generate
from mdlm_dna.train.lit_module import DiffusionModule, dropped_labels
from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.resources import data_file
from tests.conftest import TINY, compose_pretrain

TOK = NucleotideTokenizer()
V, MASK = TOK.vocab_size, TOK.mask_id
YEAST = Path(data_file("genome_samples/ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz"))

pytestmark = pytest.mark.usefixtures("one_thread")


def conditional_mdlm(num_classes: int = 2, time_conditioning: bool = False, seed: int = 0) -> MDLM:
    """A tiny conditional DiT MDLM whose adaLN weights are random (zero-init would make labels inert)."""
    torch.manual_seed(seed)
    backbone = build_backbone({"name": "dit", "d_model": 32, "n_layers": 2, "n_heads": 2, "cond_dim": 16,
                               "time_conditioning": time_conditioning, "num_classes": num_classes}, V)
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if "adaLN" in name or "lm_head" in name:
                p.normal_(std=0.1)
        backbone.label_embed.table.weight.normal_(std=2.0)
    never = TOK.special_ids_not_in_data
    return MDLM(backbone, LogLinear(), mask_id=MASK, pad_id=TOK.pad_id, never_predict=never).eval()


class WithLabels:
    """Plain conditional sampling (no guidance code involved): the model with every row's label fixed."""

    def __init__(self, model: MDLM, label: int):
        self.model, self.label, self.mask_id, self.schedule = model, label, model.mask_id, model.schedule
        self.time_conditioned = model.backbone.cfg.time_conditioning

    def subs_log_probs(self, xt, t):
        return self.model.subs_log_probs(xt, t, labels=torch.full((xt.shape[0],), self.label))


# ----------------------------------------------------------------------------------------------------
# backbones


def test_unconditional_backbones_keep_their_parameters_and_refuse_labels():
    for name in ("dit", "caduceus_ps"):
        heads = {"n_heads": 2} if name == "dit" else {}
        plain = build_backbone({"name": name, "d_model": 16, "n_layers": 1, **heads}, V, TOK.complement_ids)
        assert not any("label" in k for k in plain.state_dict())
        with pytest.raises(ValueError, match="without num_classes"):
            plain(torch.zeros(1, 8, dtype=torch.long), None, labels=torch.zeros(1, dtype=torch.long))


def test_dit_label_enters_the_conditioning_and_none_is_the_null_class():
    model = conditional_mdlm().backbone
    x = torch.randint(0, 4, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y0, y1 = model(x, None, labels=torch.zeros(3, dtype=torch.long)), model(x, None, labels=torch.ones(3).long())
        assert (y0 - y1).abs().max() > 1e-3
        assert torch.equal(model(x, None), model(x, None, labels=torch.full((3,), 2)))


@pytest.mark.parametrize("time_conditioning", [False, True])
@pytest.mark.parametrize("swap", [True, False])
def test_caduceus_ps_stays_rc_equivariant_with_labels(time_conditioning, swap):
    torch.manual_seed(0)
    model = build_backbone({"name": "caduceus_ps", "d_model": 16, "n_layers": 2, "d_state": 4, "cond_dim": 8,
                            "num_classes": 3, "time_conditioning": time_conditioning, "rcps_swap_halves": swap},
                           V, TOK.complement_ids).double().eval()
    with torch.no_grad():
        for block in model.layers:
            block.ada.weight.normal_(std=0.3)
    x = torch.randint(0, V, (4, 33), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])  # 3 = the null class
    sigma = torch.full((4,), 0.7, dtype=torch.float64)
    with torch.no_grad():
        out = model(x, sigma, labels=labels)
        out_rc = model(TOK.reverse_complement(x), sigma, labels=labels)
        torch.testing.assert_close(out_rc, out.flip(1)[..., list(TOK.complement_ids)], rtol=1e-11, atol=1e-11)
        other = model(x, sigma, labels=torch.tensor([1, 2, 3, 0]))
        assert (out - other).abs().amax(dim=(1, 2)).min() > 1e-3  # every row's label matters


# ----------------------------------------------------------------------------------------------------
# D-CFG


class ToyConditional:
    """A denoiser whose conditional and unconditional SUBS distributions are fixed tables (any x_t)."""

    mask_id, time_conditioned = MASK, False

    def __init__(self, L: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.schedule = LogLinear()
        real = torch.zeros(V, dtype=torch.bool)
        real[:5] = True  # A C G T N
        self.tables = {}
        for y in (0, 1, 2):  # 2 = null
            logits = torch.randn(L, V, generator=g, dtype=torch.float64) * 2
            self.tables[y] = F.log_softmax(logits.masked_fill(~real, float("-inf")), -1)

    def subs_log_probs(self, xt, t, labels=None):
        labels = torch.full((xt.shape[0],), 2) if labels is None else labels
        logp = torch.stack([self.tables[int(y)] for y in labels])
        carry = torch.full_like(logp, float("-inf")).scatter_(-1, xt[..., None], 0.0)
        return torch.where((xt != MASK)[..., None], carry, logp)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 4.0])
def test_guided_distribution_is_the_analytic_tempered_product(gamma):
    toy = ToyConditional()
    guide = ClassifierFreeGuidance(toy, label=1, scale=gamma, null_label=2)
    xt = torch.tensor([[MASK, 2, MASK]])
    got = guide.subs_log_probs(xt, torch.ones(1)).exp()[0]
    pc, pu = toy.tables[1].exp().numpy(), toy.tables[2].exp().numpy()
    want = np.zeros_like(pc)
    want[:, :5] = pc[:, :5] ** gamma * pu[:, :5] ** (1 - gamma)  # over the real tokens A C G T N
    want = want / want.sum(-1, keepdims=True)
    np.testing.assert_allclose(got[0].numpy(), want[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[2].numpy(), want[2], rtol=1e-12, atol=1e-15)
    assert got[1, 2] == 1.0 and got[1].sum() == 1.0  # the unmasked position is carried over
    assert float(got[:, MASK].max()) == 0.0  # no mass on [MASK]
    # the sampler's per-step draws follow it: one step from all-[MASK] unmasks every position from p_gamma
    n = 20000
    res = build_sampler("ancestral", 1)(guide, masked_init(n, 3, MASK), torch.Generator().manual_seed(0))
    freq = np.stack([np.bincount(res.ids[:, pos].numpy(), minlength=V) / n for pos in range(3)])
    assert 0.5 * np.abs(freq - want).sum(-1).max() < 0.02


def test_tempered_product_endpoints_of_the_batched_formula():
    toy = ToyConditional()
    c, u = toy.tables[0][None], toy.tables[2][None]
    torch.testing.assert_close(tempered_product(c, u, 1.0), c, rtol=0, atol=1e-12)
    torch.testing.assert_close(tempered_product(c, u, 0.0), u, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sampler", ["ancestral", "cached", "sar"])
def test_gamma_zero_is_unconditional_and_one_is_conditional_bit_identically(sampler):
    model = conditional_mdlm()
    smp = build_sampler(sampler, 12, block_len=16, overlap=8)
    prefix = torch.tensor([0, 1, 2, 3])
    x0 = masked_init(5, 24, MASK, prefix)

    def draw(denoiser):
        return smp(denoiser, x0, torch.Generator().manual_seed(7)).ids

    uncond, cond1 = draw(model), draw(WithLabels(model, 1))
    assert torch.equal(draw(ClassifierFreeGuidance(model, 1, 0.0, 2)), uncond)
    assert torch.equal(draw(ClassifierFreeGuidance(model, 1, 1.0, 2)), cond1)
    assert not torch.equal(uncond, cond1)
    guided = draw(ClassifierFreeGuidance(model, 1, 3.0, 2))
    assert torch.equal(guided[:, :4], prefix.expand(5, -1)) and not (guided == MASK).any()


def test_guidance_runs_one_doubled_forward_pass_per_step():
    model = conditional_mdlm()
    calls = []
    forward = model.backbone.forward
    model.backbone.forward = lambda *a, **k: calls.append(a[0].shape[0]) or forward(*a, **k)
    guide = ClassifierFreeGuidance(model, 0, 2.0, 2)
    build_sampler("ancestral", 4)(guide, masked_init(3, 8, MASK), torch.Generator().manual_seed(0))
    assert calls == [6, 6, 6, 6] and guide.network_rows == 24


# ----------------------------------------------------------------------------------------------------
# training: label dropout


def test_label_dropout_rate_and_purity():
    labels = torch.ones(4096, dtype=torch.long)
    index = torch.arange(4096) + 3 * 4096  # step 3's samples
    rate = 0.1
    out = dropped_labels(labels, index, rate, null_label=2, block=4096, key=(0, 4), block_id=3)
    frac = float((out == 2).float().mean())
    assert abs(frac - rate) < 4 * (rate * (1 - rate) / 4096) ** 0.5
    assert set(out.unique().tolist()) == {1, 2}
    # a pure function of (seed, step, index): any split of the global batch gives the same coins
    parts = (slice(0, 1000), slice(1000, None))
    halves = [dropped_labels(labels[s], index[s], rate, 2, 4096, (0, 4), 3) for s in parts]
    assert torch.equal(torch.cat(halves), out)
    assert not torch.equal(dropped_labels(labels, index, rate, 2, 4096, (0, 4), 4), out)  # another step
    assert torch.equal(dropped_labels(labels, index, 0.0, 2, 4096, (0, 4), 3), labels)


def test_training_step_passes_dropped_labels(ecoli_prefix):
    cfg = labelled_config(ecoli_prefix, "objective.label_dropout=0.5", "data.batch_size=64")
    module = DiffusionModule(cfg)
    seen = []
    nelbo = module.objective.nelbo
    module.objective.nelbo = lambda x0, **k: seen.append(k.get("labels")) or nelbo(x0, **k)
    batch = {"input_ids": torch.randint(0, 4, (64, 64)), "label": torch.arange(64) % 2, "index": torch.arange(64)}
    module.training_step(batch, 0)
    dropped = seen[0] == 2
    assert 16 < int(dropped.sum()) < 48 and torch.equal(seen[0][~dropped], batch["label"][~dropped])


# ----------------------------------------------------------------------------------------------------
# labelled data, config, API errors


def labelled_config(ecoli_fasta: Path, *overrides: str) -> dict:
    from omegaconf import OmegaConf

    cfg = compose_pretrain(*TINY, "genome=labelled", f"genome.paths={{ecoli: {ecoli_fasta}, yeast: {YEAST}}}",
                           *overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def test_labelled_genomes_give_balanced_labelled_batches_and_record_classes(ecoli_prefix):
    cfg = resolve_classes(labelled_config(ecoli_prefix))
    assert cfg["data"]["classes"] == ["ecoli", "yeast"] and cfg["model"]["num_classes"] == 2
    dm = build_datamodule(cfg)
    train = dm.train_dataset(64)
    items = [train[i] for i in range(8)]
    assert [int(it["label"]) for it in items] == [0, 1] * 4
    again = build_datamodule(cfg).train_dataset(64)  # a new dataset, read in another order: the same item 5
    assert torch.equal(again[5]["input_ids"], items[5]["input_ids"]) and int(again[5]["label"]) == 1
    assert not torch.equal(again[3]["input_ids"], items[5]["input_ids"])
    val = dm.eval_dataset("validation")
    assert {int(val[i]["label"]) for i in range(len(val))} == {0, 1}
    proportional = LabelledWindows(train.datasets, 4000, 0, "proportional", weights=[3.0, 1.0])
    share = np.mean([proportional.route(i)[0] == 0 for i in range(4000)])
    assert abs(share - 0.75) < 0.03
    with pytest.raises(ConfigError, match="num_classes=3"):
        resolve_classes(labelled_config(ecoli_prefix, "+model.num_classes=3"))


def test_labelled_table_batches(tmp_path):
    rng = np.random.default_rng(0)
    rows = [("".join(rng.choice(list("ACGT"), size=int(rng.integers(20, 60)))), lab) for lab in ("pro", "enh")
            for _ in range(12)]
    (tmp_path / "t.csv").write_text("sequence,label\n" + "\n".join(f"{s},{lab}" for s, lab in rows) + "\n")
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_pretrain(*TINY, "data=labelled_table", "data.seq_len=32",
                                                  f"data.task.train_path={tmp_path / 't.csv'}",
                                                  "data.task.test_fraction=0.25"), resolve=True)
    resolve_classes(cfg)
    assert cfg["data"]["classes"] == ["enh", "pro"] and cfg["model"]["num_classes"] == 2
    dm = build_datamodule(cfg)
    train = dm._dataset("train", 16)
    items = [train[i] for i in range(4)]
    assert [int(it["label"]) for it in items] == [0, 1, 0, 1]
    assert all(it["input_ids"].shape == (32,) for it in items)
    test = dm._dataset("test")
    assert len(test) == 6 and (test[0]["input_ids"] == TOK.pad_id).any() == (len(test.ids[0]) < 32)


def test_label_errors_on_unconditional_and_unknown_labels(ecoli_prefix):
    from omegaconf import OmegaConf

    plain = DiffusionLM(DiffusionModule(OmegaConf.to_container(compose_pretrain(*TINY), resolve=True)), device="cpu")
    assert plain.classes is None
    with pytest.raises(ConfigError, match="unconditional"):
        plain.sample(2, 16, 4, label="ecoli")
    with pytest.raises(ValueError, match="needs a label"):
        plain.sample(2, 16, 4, guidance_scale=2.0)
    cond = DiffusionLM(DiffusionModule(labelled_config(ecoli_prefix)), device="cpu")
    assert cond.classes == ["ecoli", "yeast"]
    with pytest.raises(ConfigError, match="ecoli, yeast"):
        cond.sample(2, 16, 4, label="fly")
    assert label_index(cond.config, "yeast") == 1


# ----------------------------------------------------------------------------------------------------
# the end-to-end check: two real genomes of different GC content


def gc(seqs) -> float:
    s = "".join(seqs)
    acgt = sum(s.count(b) for b in "ACGT")
    return (s.count("G") + s.count("C")) / max(acgt, 1)


def fasta_gc(path: Path) -> float:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return gc(line.strip().upper() for line in fh if not line.startswith(">"))


def test_tiny_conditional_model_generates_each_genomes_gc_content(ecoli_prefix, tmp_path):
    cfg = compose_pretrain(
        *TINY, "genome=labelled", f"genome.paths={{ecoli: {ecoli_prefix}, yeast: {YEAST}}}", "data.seq_len=32",
        "data.batch_size=32", "trainer.max_steps=300", "trainer.val_check_interval=300", "data.val_max_windows=16",
        "optim.lr=1e-2", "model.time_conditioning=false", "checkpoint.every_n_train_steps=300",
    )  # ~25 s at one thread
    run(cfg, tmp_path / "run")
    model = DiffusionLM.from_pretrained(tmp_path / "run", device="cpu")
    assert model.classes == ["ecoli", "yeast"]
    target = {"ecoli": fasta_gc(ecoli_prefix), "yeast": fasta_gc(YEAST)}
    assert target["ecoli"] - target["yeast"] > 0.08
    got = {c: gc(model.sample(48, 32, 32, label=c, guidance_scale=1.0, seed=1)) for c in target}
    for c, other in itertools.permutations(target):
        assert abs(got[c] - target[c]) < abs(got[c] - target[other]), (got, target)
    # gamma = 0 ignores the label (same seed: the same samples); gamma = 2 pushes the classes further apart
    assert model.sample(8, 32, 16, label="ecoli", guidance_scale=0.0) == model.sample(8, 32, 16, label="yeast",
                                                                                      guidance_scale=0.0)
    sharp = {c: gc(model.sample(48, 32, 32, label=c, guidance_scale=2.0, seed=1)) for c in target}
    assert sharp["ecoli"] - sharp["yeast"] > got["ecoli"] - got["yeast"] > 0.05, (sharp, got)
    # the command line: label and guidance.scale, the report and FASTA say so, metrics against that class
    report = generate({"ckpt": str(tmp_path / "run"), "label": "yeast", "guidance": {"scale": 2.0}, "num_samples": 4,
                       "length": 32, "steps": 8, "reference_windows": 8, "plots": False, "device": "cpu",
                       "output": str(tmp_path / "yeast.fa")})
    assert report["label"] == "yeast" and report["guidance_scale"] == 2.0 and report["reference_windows"] == 8
    header = (tmp_path / "yeast.fa").read_text().splitlines()[0]
    assert "label=yeast guidance=classifier-free guidance_scale=2.0" in header
    with pytest.raises(ConfigError, match="not one of this model's classes"):
        generate({"ckpt": str(tmp_path / "run"), "label": "fly", "num_samples": 2, "metrics": False,
                  "device": "cpu", "output": str(tmp_path / "fly.fa")})
    # the class names travel with an export, and the export samples the same
    folder = model.save_pretrained(tmp_path / "export")
    again = DiffusionLM.from_pretrained(folder, device="cpu")
    assert again.classes == ["ecoli", "yeast"]
    kw = {"label": "yeast", "guidance_scale": 2.0, "seed": 3}
    assert again.sample(4, 32, 8, **kw) == model.sample(4, 32, 8, **kw)
