"""Mamba mixer layout, BiMamba, and the reverse-complement properties of the Caduceus backbones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.models import available_backbones, build_backbone
from mdlm_dna.models.caduceus import Caduceus, make_config
from mdlm_dna.models.mamba import BiMamba, Mamba
from mdlm_dna.models.selective_scan import selective_scan

TOK = NucleotideTokenizer()
COMP = TOK.complement_ids
V = TOK.vocab_size
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
SMALL = {"d_model": 16, "n_layers": 2, "d_state": 4}


class MambaSimpleLayout(nn.Module):
    """mamba_ssm.modules.mamba_simple.Mamba's parameters, written from its definition (bias=False,
    conv_bias=True, dt_rank = ceil(d_model / 16)), with its non-fused forward path."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2):
        super().__init__()
        d_inner, self.dt_rank, self.d_state = expand * d_model, math.ceil(d_model / 16), d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.zeros(d_inner, d_state))
        self.D = nn.Parameter(torch.zeros(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, h):
        L = h.shape[1]
        x, z = (self.in_proj.weight @ h.transpose(1, 2)).chunk(2, dim=1)  # [B, d_inner, L]
        x = F.silu(self.conv1d(x)[..., :L])
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = self.dt_proj.weight @ dt.transpose(1, 2)
        y = selective_scan(
            x,
            dt,
            -torch.exp(self.A_log),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D,
            z=z,
            delta_bias=self.dt_proj.bias,
            delta_softplus=True,
            backend="reference",
        )
        return self.out_proj(y.transpose(1, 2))


pytestmark = pytest.mark.usefixtures("one_thread")


def rc(ids: torch.Tensor) -> torch.Tensor:
    return TOK.reverse_complement(ids)


def rc_logits(logits: torch.Tensor) -> torch.Tensor:
    return logits.flip(1)[..., list(COMP)]


def random_ids(batch=3, length=33, seed=0):
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def build(name, dtype=torch.float64, **cfg):
    torch.manual_seed(0)
    return build_backbone({"name": name, **SMALL, **cfg}, V, COMP).to(dtype)


def train_step(model, lr=1e-2):
    """One AdamW step on a masked-token loss (train mode), so that no parameter keeps its init."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    x = random_ids(4, 40, seed=5)
    noisy = torch.where(torch.rand(x.shape, generator=torch.Generator().manual_seed(6)) < 0.5, TOK.mask_id, x)
    F.cross_entropy(model(noisy, torch.full((4,), 0.7)).flatten(0, 1).float(), x.flatten()).backward()
    opt.step()
    return model.eval()


def equivariance_error(model, x):
    with torch.no_grad():
        return (model(rc(x), None) - rc_logits(model(x, None))).abs().max().item()


# ----------------------------------------------------------------------------------------------------
# the Mamba mixer


def test_mamba_state_dict_interchanges_with_mamba_simple_layout():
    ours, theirs = Mamba(24, d_state=8), MambaSimpleLayout(24, d_state=8)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    theirs.load_state_dict(a, strict=True)
    ours.load_state_dict(MambaSimpleLayout(24, d_state=8).state_dict(), strict=True)


def test_mamba_initialisation_follows_mamba_simple():
    m = Mamba(40, d_state=6, dt_min=0.002, dt_max=0.05)
    assert m.dt_rank == 3 and m.d_inner == 80
    torch.testing.assert_close(m.A_log, torch.log(torch.arange(1.0, 7.0)).repeat(80, 1))
    torch.testing.assert_close(m.D, torch.ones(80))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.002 * 0.999 and dt.max() <= 0.05 * 1.001
    assert m.dt_proj.weight.abs().max() <= 3**-0.5
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.conv1d.bias is not None


def test_mamba_forward_matches_mamba_simple_slow_path():
    torch.manual_seed(0)
    ours = Mamba(20, d_state=5).double()
    theirs = MambaSimpleLayout(20, d_state=5).double()
    theirs.load_state_dict(ours.state_dict())
    h = torch.randn(2, 17, 20, dtype=torch.float64)
    torch.testing.assert_close(ours(h), theirs(h), rtol=1e-10, atol=1e-10)


def test_unidirectional_mamba_is_causal_and_bimamba_is_not():
    x = random_ids(2, 30)
    y = x.clone()
    y[:, 20] = (y[:, 20] + 1) % 4
    for name, causal in (("mamba", True), ("bimamba", False)):
        m = build(name).eval()
        with torch.no_grad():
            d = (m(x, None) - m(y, None)).abs().amax(dim=(0, 2))
        assert (d[:20].max() == 0) == causal, name
        assert d[20:].max() > 1e-6


def test_bimamba_tied_fast_path_equals_two_directions():
    torch.manual_seed(0)
    m = BiMamba(12, d_state=4).double()
    assert m.mamba_rev.in_proj.weight is m.mamba_fwd.in_proj.weight
    assert m.mamba_rev.out_proj.weight is m.mamba_fwd.out_proj.weight
    assert m.mamba_rev.conv1d.weight is not m.mamba_fwd.conv1d.weight
    h = torch.randn(2, 19, 12, dtype=torch.float64)
    expected = m.mamba_fwd(h) + m.mamba_rev(h.flip(1)).flip(1)
    torch.testing.assert_close(m(h), expected, rtol=1e-12, atol=1e-12)
    untied = BiMamba(12, d_state=4, weight_tie=False, strategy="ew_multiply").double()
    assert untied.mamba_rev.in_proj.weight is not untied.mamba_fwd.in_proj.weight
    torch.testing.assert_close(untied(h), untied.mamba_fwd(h) * untied.mamba_rev(h.flip(1)).flip(1))


# ----------------------------------------------------------------------------------------------------
# reverse-complement equivariance


@pytest.mark.parametrize("name", ["caduceus_ps", "caduceus_ph"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 1e-5)])
def test_rc_equivariant_at_init_and_after_a_step(name, dtype, tol):
    model, x = build(name, dtype).eval(), random_ids()
    assert equivariance_error(model, x) < tol
    train_step(model)
    assert equivariance_error(model, x) < tol
    with torch.no_grad():  # the step moved the model: the check is not about a constant output
        assert model(x, None).std() > 1e-3


@pytest.mark.parametrize("name", ["caduceus_ps", "caduceus_ph"])
def test_rc_invariant_features(name):
    model, x = train_step(build(name)), random_ids()
    with torch.no_grad():
        h, h_rc = model.hidden_states(x), model.hidden_states(rc(x))
        assert h.shape == (3, 33, SMALL["d_model"])
        torch.testing.assert_close(h_rc, h.flip(1), rtol=1e-11, atol=1e-11)
        mask = torch.ones_like(x, dtype=torch.bool)
        mask[:, -5:] = False
        torch.testing.assert_close(model.pooled(rc(x), mask=mask.flip(1)), model.pooled(x, mask=mask))
        full, full_rc = model.hidden_states_full(x), model.hidden_states_full(rc(x))
    if name == "caduceus_ps":
        assert full.shape == (3, 33, 2 * SMALL["d_model"])
        torch.testing.assert_close(full_rc, full.flip(1, 2), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("name", ["mamba", "bimamba"])
def test_plain_backbones_are_not_rc_equivariant(name):
    model, x = train_step(build(name)), random_ids()
    with torch.no_grad():
        scale = model(x, None).abs().max().item()
    assert equivariance_error(model, x) > 0.05 * scale


@pytest.mark.parametrize("swap", [True, False])
def test_ps_with_time_conditioning_is_equivariant_and_uses_sigma(swap):
    model = build("caduceus_ps", time_conditioning=True, cond_dim=8, rcps_swap_halves=swap).eval()
    x = random_ids()
    s1, s2 = torch.full((3,), 0.2, dtype=torch.float64), torch.full((3,), 3.0, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model(x, s1), model(x, s2))  # adaLN starts at zero: no effect yet
        for block in model.layers:
            block.ada.weight.normal_(std=0.3)
        assert (model(x, s1) - model(x, s2)).abs().max() > 1e-3
        torch.testing.assert_close(model(rc(x), s1), rc_logits(model(x, s1)), rtol=1e-11, atol=1e-11)


def test_sigma_is_ignored_without_time_conditioning():
    model, x = build("caduceus_ps").eval(), random_ids()
    with torch.no_grad():
        assert torch.equal(model(x, torch.full((3,), 0.1, dtype=torch.float64)), model(x, None))


def test_ph_training_modes():
    x = random_ids()
    plain = build("caduceus_ph").train()
    conjoin = build("caduceus_ph", posthoc_train="conjoin").train()
    augment = build("caduceus_ph", posthoc_train="augment").train()
    with torch.no_grad():
        assert equivariance_error(plain, x) > 1e-3  # plain training forward: the bare BiMamba
        assert equivariance_error(conjoin, x) < 1e-11
        # augment: each sample is seen either as is or reverse-complemented, mapped back
        bare = build("bimamba").eval()
        one, other = bare(x, None), rc_logits(bare(rc(x), None))
        out = augment(x, None)
        for i in range(x.shape[0]):
            assert torch.allclose(out[i], one[i]) or torch.allclose(out[i], other[i])


# ----------------------------------------------------------------------------------------------------
# builders, configs, sizes


def test_builders_and_contract():
    assert {"mamba", "bimamba", "caduceus_ps", "caduceus_ph"} <= set(available_backbones())
    x = random_ids(2, 21)
    for name in ("mamba", "bimamba", "caduceus_ps", "caduceus_ph"):
        m = build(name, torch.float32)
        assert m.d_model == SMALL["d_model"]
        assert m(x, torch.rand(2)).shape == (2, 21, V)
        assert m.hidden_states(x).shape == (2, 21, SMALL["d_model"])
    with pytest.raises(ValueError, match="unknown caduceus_ps config keys"):
        build_backbone({"name": "caduceus_ps", "d_modle": 8}, V, COMP)
    with pytest.raises(ValueError, match="fixes rcps"):
        build_backbone({"name": "bimamba", "rcps": True}, V, COMP)
    with pytest.raises(ValueError, match="need complement_ids"):
        build_backbone({"name": "caduceus_ps"}, V, None)
    with pytest.raises(ValueError, match="involution"):
        build_backbone({"name": "caduceus_ph"}, V, (1, 2, 3, 0, 4, 5, 6, 7, 8, 9))
    build_backbone({"name": "bimamba"}, V, None)  # needs no complement


def test_scan_backends_agree_inside_the_model():
    x = random_ids()
    with torch.no_grad():
        ref = build("caduceus_ps", scan_backend="reference")(x, None)
        out = build("caduceus_ps", scan_backend="torch")(x, None)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("d_model,n_layers,expected", [(118, 4, 470_702), (256, 4, 1_934_592), (256, 16, 7_725_312)])
def test_parameter_count_of_published_caduceus_ps(d_model, n_layers, expected):
    """Unique parameters of the published checkpoints' shapes (16-row padded vocabulary, tied head and
    tied in/out projections): 4 * 118 * ... summed by hand for d_model=118 gives 470,702."""
    comp16 = (0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15)
    m = Caduceus(make_config("caduceus_ps", {"d_model": d_model, "n_layers": n_layers}, 16), comp16)
    assert sum(p.numel() for p in m.parameters()) == expected


@pytest.mark.parametrize("file", ["mamba", "bimamba", "caduceus_ps", "caduceus_ph", "caduceus_ps_paper"])
def test_model_configs_build(file):
    text = (CONFIGS / f"{file}.yaml").read_text()
    cfg = yaml.safe_load(text)
    assert next(iter(cfg)) == "name" and cfg["name"] in available_backbones()
    model = build_backbone(cfg, V, COMP)
    assert model.d_model == cfg["d_model"] and len(model.layers) == cfg["n_layers"]
    if file != "caduceus_ps_paper":
        with torch.no_grad():
            assert model(random_ids(1, 16), torch.zeros(1)).shape == (1, 16, V)
