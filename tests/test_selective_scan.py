"""Selective scan backends against the sequential reference, and the optional-kernel fallback logic."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import math
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from mdlm_dna.models import selective_scan as ss
from mdlm_dna.models.selective_scan import causal_conv1d, selective_scan

TORCH_VARIANTS = [
    pytest.param({}, id="defaults"),
    pytest.param({"chunk_size": 8, "intra_chunk": "scan"}, id="scan-T8"),
    pytest.param({"chunk_size": 7, "intra_chunk": "segsum"}, id="segsum-T7"),
    pytest.param({"chunk_size": 5, "intra_chunk": "scan", "block_len": 10}, id="scan-T5-blocks"),
    pytest.param({"chunk_size": 4, "intra_chunk": "segsum", "block_len": 8}, id="segsum-T4-blocks"),
]
SHAPES = [  # batch, channels, state, length, groups of B/C (None: [B, N, L])
    pytest.param((2, 6, 4, 37, None), id="odd-L"),
    pytest.param((1, 4, 3, 1, None), id="L1"),
    pytest.param((2, 6, 4, 50, 3), id="grouped"),
    pytest.param((3, 5, 2, 129, None), id="long"),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _fresh_kernels():
    ss.SCAN_KERNEL.reset()
    ss.CONV_KERNEL.reset()
    yield
    ss.SCAN_KERNEL.reset()
    ss.CONV_KERNEL.reset()


def make_inputs(b, d, n, L, groups, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    bc_shape = (b, n, L) if groups is None else (b, groups, n, L)
    return {
        "u": r(b, d, L),
        "delta": r(b, d, L),
        "A": -(torch.rand(d, n, generator=g, dtype=dtype) * 3 + 0.1),
        "B": r(*bc_shape),
        "C": r(*bc_shape),
        "D": r(d),
        "z": r(b, d, L),
        "delta_bias": r(d),
    }


def run(inputs, backend, **kw):
    """Output and gradients of a fixed random projection of it w.r.t. every input."""
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    y = selective_scan(**leaves, delta_softplus=True, backend=backend, **kw)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(y.dtype)
    grads = torch.autograd.grad((y * w).sum(), list(leaves.values()))
    return y, dict(zip(leaves, grads))


def test_reference_is_the_recurrence_written_out():
    """The reference against scalar Python loops over the textbook recurrence (independent of torch ops)."""
    x = make_inputs(1, 2, 3, 5, None)
    y = selective_scan(**x, delta_softplus=True, backend="reference")
    u, dl, A, B, C, D, z, db = (x[k].tolist() for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"))
    for d in range(2):
        h = [0.0] * 3
        for t in range(5):
            dt = math.log1p(math.exp(dl[0][d][t] + db[d]))
            h = [math.exp(dt * A[d][n]) * h[n] + dt * B[0][n][t] * u[0][d][t] for n in range(3)]
            out = sum(C[0][n][t] * h[n] for n in range(3)) + D[d] * u[0][d][t]
            out *= z[0][d][t] / (1 + math.exp(-z[0][d][t]))
            assert y[0, d, t].item() == pytest.approx(out, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kw", TORCH_VARIANTS)
def test_torch_backend_matches_reference_float64(shape, kw):
    x = make_inputs(*shape)
    y_ref, g_ref = run(x, "reference")
    y, g = run(x, "torch", **kw)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-9, atol=1e-9, msg=f"d out / d {name}")


@pytest.mark.parametrize("intra", ["scan", "segsum"])
def test_optional_arguments_left_out(intra):
    x = make_inputs(2, 4, 3, 23, None)
    for k in ("D", "z", "delta_bias"):
        x.pop(k)
    x["delta"] = x["delta"].abs()  # no softplus: delta must already be positive
    y_ref = selective_scan(**x, backend="reference")
    y = selective_scan(**x, backend="torch", chunk_size=4, intra_chunk=intra)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("intra", ["scan", "segsum"])
def test_float32_with_extreme_decays_stays_finite_and_accurate(intra):
    """Large delta * |A| (decays far below float32's range inside a chunk) must neither overflow nor NaN."""
    x = make_inputs(2, 8, 16, 300, None, dtype=torch.float32, seed=3)
    x["A"] = -torch.arange(1, 17, dtype=torch.float32).repeat(8, 1)
    x["delta"] = x["delta"] * 4 + 2  # softplus -> up to ~20 per step: log-decays down to -300 per step
    y_ref, g_ref = run({k: v.double() for k, v in x.items()}, "reference")
    y, g = run(x, "torch", chunk_size=32, intra_chunk=intra)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
    for name in g_ref:
        assert torch.isfinite(g[name]).all(), name
        torch.testing.assert_close(g[name].double(), g_ref[name], rtol=1e-3, atol=1e-3, msg=name)


def test_half_precision_inputs_are_computed_in_float32_and_returned_as_given():
    x = make_inputs(1, 4, 3, 20, None, dtype=torch.float32)
    xb = {k: v.to(torch.bfloat16) for k, v in x.items()}
    y = selective_scan(**xb, delta_softplus=True, backend="torch")
    assert y.dtype == torch.bfloat16
    ref = selective_scan(**{k: v.double() for k, v in xb.items()}, delta_softplus=True, backend="reference")
    torch.testing.assert_close(y.double(), ref, rtol=2e-2, atol=2e-2)


def test_bad_arguments_raise():
    x = make_inputs(1, 4, 3, 6, None)
    with pytest.raises(ValueError, match="unknown selective scan backend"):
        selective_scan(**x, backend="nope")
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(**{**x, "A": x["A"][:2]})
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**{**x, "B": x["B"][..., :5]})
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        selective_scan(**x, backend="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_backend_matches_reference():
    pytest.importorskip("mamba_ssm")
    x = make_inputs(2, 8, 4, 64, None, dtype=torch.float32)
    y_ref, g_ref = run(x, "reference")
    y, g = run({k: v.cuda() for k, v in x.items()}, "cuda")
    torch.testing.assert_close(y.cpu(), y_ref, rtol=1e-3, atol=1e-3)
    for name in g_ref:
        torch.testing.assert_close(g[name].cpu(), g_ref[name], rtol=1e-2, atol=1e-2, msg=name)


# ----------------------------------------------------------------------------------------------------
# the optional-kernel fallback, with fake packages in place of mamba_ssm / causal_conv1d


def _install_fake_mamba(monkeypatch, scan_fn):
    pkg = types.ModuleType("mamba_ssm")
    ops = types.ModuleType("mamba_ssm.ops")
    iface = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    iface.selective_scan_fn = scan_fn
    pkg.ops, ops.selective_scan_interface = ops, iface
    for mod in (pkg, ops, iface):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)


class _OSErrorOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import mamba_ssm`` fail the way a wheel built against another CUDA does."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] == "mamba_ssm":
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise OSError("libcudart.so.12: cannot open shared object file: No such file or directory")


@pytest.fixture
def pretend_cuda(monkeypatch):
    monkeypatch.setattr(ss, "_on_cuda", lambda t: True)


def test_kernel_is_not_imported_for_cpu_tensors(monkeypatch):
    calls = []
    _install_fake_mamba(monkeypatch, lambda *a: calls.append(a))
    selective_scan(**make_inputs(1, 4, 3, 6, None), backend="auto")
    assert calls == [] and ss.SCAN_KERNEL.state == "untried"


@pytest.mark.parametrize("failure", ["import-error", "os-error"])
def test_auto_falls_back_when_the_import_fails(monkeypatch, pretend_cuda, failure, caplog):
    monkeypatch.delitem(sys.modules, "mamba_ssm", raising=False)
    if failure == "import-error":
        monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # `import mamba_ssm` raises ImportError
    else:
        monkeypatch.setattr(sys, "meta_path", [_OSErrorOnImport(), *sys.meta_path])
    x = make_inputs(2, 4, 3, 9, None)
    with caplog.at_level(logging.INFO, logger="mdlm_dna.models"):
        y = selective_scan(**x, delta_softplus=True, backend="auto")
    torch.testing.assert_close(y, selective_scan(**x, delta_softplus=True, backend="reference"))
    assert ss.SCAN_KERNEL.state == "failed"
    assert any("not available" in r.message for r in caplog.records)
    with pytest.raises(RuntimeError, match="unavailable"):
        selective_scan(**x, backend="cuda")


def test_auto_falls_back_once_when_the_kernel_raises_at_call(monkeypatch, pretend_cuda, caplog):
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("selective_scan_cuda is not installed")

    _install_fake_mamba(monkeypatch, broken)
    x = make_inputs(2, 4, 3, 9, None)
    expected = selective_scan(**x, delta_softplus=True, backend="reference")
    with caplog.at_level(logging.WARNING, logger="mdlm_dna.models"):
        for _ in range(3):
            torch.testing.assert_close(selective_scan(**x, delta_softplus=True, backend="auto"), expected)
    assert len(calls) == 1  # tried once, then dropped for the rest of the process
    assert sum("failed when called" in r.message for r in caplog.records) == 1


def test_auto_uses_a_working_kernel(monkeypatch, pretend_cuda):
    calls = []

    def kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        calls.append(1)
        return ss._scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus) + 1.0  # recognisable

    _install_fake_mamba(monkeypatch, kernel)
    x = make_inputs(2, 4, 3, 9, None)
    y = selective_scan(**x, delta_softplus=True, backend="auto")
    torch.testing.assert_close(y, selective_scan(**x, delta_softplus=True, backend="reference") + 1.0)
    selective_scan(**x, delta_softplus=True, backend="cuda")
    assert len(calls) == 2


def test_conv_falls_back_once_when_causal_conv1d_raises(monkeypatch, pretend_cuda):
    calls = []
    fake = types.ModuleType("causal_conv1d")

    def broken(*a, **k):
        calls.append(1)
        raise RuntimeError("no kernel image is available for execution on the device")

    fake.causal_conv1d_fn = broken
    monkeypatch.setitem(sys.modules, "causal_conv1d", fake)
    x, w, b = torch.randn(2, 3, 10), torch.randn(3, 4), torch.randn(3)
    for _ in range(2):
        expected = causal_conv1d(x, w, b, "silu", backend="torch")
        torch.testing.assert_close(causal_conv1d(x, w, b, "silu"), expected)
    assert len(calls) == 1 and ss.CONV_KERNEL.state == "failed"


def test_nothing_from_the_kernels_is_imported_by_the_package():
    code = (
        "import sys, torch\n"
        "import mdlm_dna.models.caduceus as c, mdlm_dna.artifacts.caduceus_hf\n"
        "m = c.build_caduceus_ps({'d_model': 8, 'n_layers': 1}, 10, (3, 2, 1, 0, 4, 5, 6, 7, 8, 9))\n"
        "m(torch.randint(0, 10, (1, 12)), None)\n"
        "assert 'mamba_ssm' not in sys.modules and 'causal_conv1d' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------------
# causal conv


def test_causal_conv1d_is_mamba_ssms_padded_conv():
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((2, 5, 11), (5, 4), (5,)))
    conv = torch.nn.Conv1d(5, 5, 4, groups=5, padding=3, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(w[:, None]), conv.bias.copy_(b)
    torch.testing.assert_close(causal_conv1d(x, w, b, "silu"), F.silu(conv(x)[..., :11]))
    # causality written out: output t is sum_k w[k] * x[t - (W-1) + k]
    y = causal_conv1d(x, w, None)
    for t in range(11):
        expect = sum(w[:, k] * x[:, :, t - 3 + k] for k in range(4) if t - 3 + k >= 0)
        torch.testing.assert_close(y[:, :, t], expect)
