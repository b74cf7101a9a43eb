"""The Numba CPU selective scan (``cpu_scan.py``) against the float64 sequential reference, and its place in
the dispatcher: outputs, last state and all eight gradients; Caduceus-PS on it stays RC-equivariant."""

from __future__ import annotations

import logging
import os

import pytest
import torch
import torch.nn.functional as F

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.models import build_backbone
from mdlm_dna.models import selective_scan as ss
from mdlm_dna.models.selective_scan import selective_scan

cpu_scan = pytest.importorskip("mdlm_dna.models.cpu_scan", reason="numba is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

TOLERANCES = {torch.float32: {"rtol": 6e-4, "atol": 2e-3}, torch.bfloat16: {"rtol": 3e-2, "atol": 5e-2}}

# name: (batch, channels, d_state, L, groups of B/C (None: [B, N, L]; a pair: B's, C's), dtype, chunk, fused
#        extras (D, z, delta_bias, softplus), views as Mamba passes them)
CASES = {
    "odd-L-5-chunks": (2, 6, 4, 37, None, torch.float32, 8, True, False),
    "L1": (1, 4, 3, 1, None, torch.float32, 64, True, False),
    "long-3-chunks": (3, 5, 2, 129, None, torch.float32, 64, True, False),
    "chunk-1": (1, 3, 4, 9, None, torch.float32, 1, True, False),
    "two-blocks-padded": (2, 40, 16, 50, None, torch.float32, 16, True, False),  # 40 channels: 32 + 8 lanes
    "grouped": (2, 6, 4, 50, 3, torch.float32, 16, True, False),
    "grouped-blocks-of-18": (1, 36, 5, 70, 2, torch.float32, 32, True, False),
    "grouped-C-shared-B": (1, 6, 3, 11, (None, 3), torch.float32, 4, True, False),
    "strided-views": (2, 12, 4, 13, None, torch.float32, 8, True, True),
    "bf16": (2, 4, 4, 33, None, torch.bfloat16, 16, True, False),
    "bare": (1, 3, 5, 19, None, torch.float32, 8, False, False),  # no D, z, delta_bias, softplus
}


def make_case(b, d, n, L, groups, dtype, fused, seed=0):
    """Random inputs (never zeros; delta positive when there is no softplus); weights of a random projection
    of the output and of the last state, the loss whose gradients are compared."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, dt=dtype):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dt)

    g_b, g_c = groups if isinstance(groups, tuple) else (groups, groups)
    shape_b, shape_c = ((b, n, L) if k is None else (b, k, n, L) for k in (g_b, g_c))
    x = {
        "u": r(b, d, L),
        "delta": r(b, d, L),
        "A": -(torch.rand(d, n, generator=g, dtype=torch.float64) * 3 + 0.1).float(),
        "B": r(*shape_b),
        "C": r(*shape_c),
        "D": r(d, dt=torch.float32),
        "z": r(b, d, L),
        "delta_bias": r(d, dt=torch.float32),
    }
    if not fused:
        x = {k: v for k, v in x.items() if k not in ("D", "z", "delta_bias")}
        x["delta"] = x["delta"].abs() + 0.05
    w = {"y": r(b, d, L, dt=torch.float64), "last": r(b, d, n, dt=torch.float64)}
    return x, w


def last_state_reference(u, delta, A, B, delta_bias=None, delta_softplus=False, **_):
    """h_L of the recurrence in float64, one step at a time (independent of the package's code)."""
    u, delta, A, B = (t.double() for t in (u, delta, A, B))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B = B.repeat_interleave(u.shape[1] // B.shape[1], dim=1) if B.dim() == 4 else B.unsqueeze(1)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    for t in range(u.shape[-1]):
        h = torch.exp(delta[..., t, None] * A) * h + (delta[..., t] * u[..., t])[..., None] * B[..., t]
    return h


def loss_and_grads(x, w, scan):
    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    y, last = scan(leaves)
    loss = (y.double() * w["y"]).sum() + (last.double() * w["last"]).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return y.detach(), last.detach(), dict(zip(leaves, grads))


def as_mamba_views(leaves):
    """The same values with the channels as the contiguous axis ([B, L, D] storage, transposed), as Mamba
    passes delta, z, B and C."""
    return {k: v.transpose(-1, -2).contiguous().transpose(-1, -2) if v.dim() > 1 and k != "A" else v
            for k, v in leaves.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_numba_scan_matches_float64_reference(name):
    b, d, n, L, groups, dtype, chunk, fused, views = CASES[name]
    x, w = make_case(b, d, n, L, groups, dtype, fused)
    tol = TOLERANCES[dtype]

    def numba_scan(leaves):
        if views:
            leaves = as_mamba_views(leaves)
            assert leaves["u"].stride(1) == 1 and leaves["B"].stride(-2) == 1
        return cpu_scan.selective_scan_fn(**leaves, delta_softplus=fused, return_last_state=True, chunk=chunk)

    def reference(leaves):
        y = selective_scan(**leaves, delta_softplus=fused, backend="reference")
        return y, last_state_reference(**leaves, delta_softplus=fused)

    y, last, grads = loss_and_grads(x, w, numba_scan)
    y_ref, last_ref, g_ref = loss_and_grads({k: v.double() for k, v in x.items()}, w, reference)
    assert y.dtype == dtype and last.dtype == torch.float32 and y.shape == x["u"].shape
    torch.testing.assert_close(y.double(), y_ref, **tol, msg="output")
    torch.testing.assert_close(last.double(), last_ref, **tol, msg="last state")
    assert set(grads) == set(x)
    for k in x:
        assert grads[k].dtype == x[k].dtype and grads[k].shape == x[k].shape, k
        torch.testing.assert_close(grads[k].double(), g_ref[k], **tol, msg=f"gradient of {k}")
    via_dispatcher = selective_scan(**x, delta_softplus=fused, backend="numba")
    torch.testing.assert_close(via_dispatcher, y, rtol=0, atol=0)


def test_layouts_give_the_same_bits_and_gradients_in_the_inputs_layouts():
    """The kernels read [B, D, L] and [B, L, D] memory as it is (no layout copy): u contiguous with delta, z, B, C
    transposed views (as Mamba passes them), everything transposed, a non-dense slice (z from a chunk of a
    wider tensor) and no delta bias all give the bits of the all-contiguous call, and each gradient comes back
    in its input's memory layout."""
    x, w = make_case(2, 40, 4, 45, None, torch.float32, True, seed=5)
    del x["delta_bias"]  # softplus without a bias

    def run(leaves):
        return cpu_scan.selective_scan_fn(**leaves, delta_softplus=True, return_last_state=True, chunk=16)

    base = loss_and_grads(x, w, run)
    views = as_mamba_views(x)
    mamba = {**views, "u": x["u"]}
    wide = torch.cat([x["z"], torch.zeros_like(x["z"])], dim=1)  # z a non-dense [B, D, L] slice
    sliced = {**x, "z": wide[:, : x["z"].shape[1]]}
    for name, inputs in (("mamba", mamba), ("all views", views), ("non-dense z", sliced)):
        leaves = {k: v.clone().requires_grad_() if k == "z" and name == "non-dense z" else v for k, v in inputs.items()}
        y, last, grads = loss_and_grads(leaves, w, run)
        assert torch.equal(y, base[0]) and torch.equal(last, base[1]), name
        for k in x:
            assert torch.equal(grads[k], base[2][k]), (name, k)
    # gradients in the layout of their input: a [B, L, D]-stored delta gets a [B, L, D]-stored gradient
    leaves = {k: v.detach().requires_grad_() for k, v in mamba.items()}
    y = cpu_scan.selective_scan_fn(**leaves, delta_softplus=True)
    y.sum().backward()
    assert leaves["delta"].grad.stride(1) == 1 and leaves["z"].grad.stride(1) == 1
    assert leaves["u"].grad.is_contiguous()


def test_checkpointing_around_the_scan_keeps_the_numba_kernel():
    """Non-reentrant activation checkpointing ends a recomputation by raising from inside the scan's forward
    (its save_for_backward); the dispatcher must let that pass, not drop the Numba kernel for the rest of
    the process (as it did), and the gradients equal those without checkpointing."""
    from torch.utils.checkpoint import checkpoint

    x, w = make_case(1, 8, 4, 20, None, torch.float32, True, seed=2)

    def scan(leaves):
        y = selective_scan(**leaves, delta_softplus=True, backend="numba")
        return y, y.new_zeros(1)

    def checkpointed(leaves):
        y = checkpoint(lambda *a: selective_scan(*a, delta_softplus=True, backend="numba"),
                       leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"], leaves["z"],
                       leaves["delta_bias"], use_reentrant=False)
        return y, y.new_zeros(1)

    w = {**w, "last": torch.zeros(1, dtype=torch.float64)}
    _, _, g_plain = loss_and_grads(x, w, scan)
    _, _, g_ckpt = loss_and_grads(x, w, checkpointed)
    assert ss.NUMBA_SCAN_KERNEL.state == "ok"
    for k in g_plain:
        assert torch.equal(g_plain[k], g_ckpt[k]), k


def test_exp_and_softplus_match_float64():
    """The kernels' own exp (clamped at e^-43.7, as the state needs) and softplus against float64 torch."""
    from numba import njit

    @njit
    def apply(fn_id, x, out):
        for i in range(x.size):
            out[i] = cpu_scan._exp(x[i]) if fn_id == 0 else cpu_scan._softplus(x[i])

    x = torch.linspace(-43, 88, 400_001, dtype=torch.float32)
    out = torch.empty_like(x)
    apply(0, x.numpy(), out.numpy())
    ulp = 2.0**-24
    assert ((out.double() / x.double().exp() - 1).abs().max() < 3 * ulp)
    x = torch.linspace(-40, 60, 400_001, dtype=torch.float32)
    apply(1, x.numpy(), out.numpy())
    assert ((out.double() / F.softplus(x.double()) - 1).abs().max() < 4 * ulp)
    tiny = torch.tensor([-60.0, -200.0])
    apply(1, tiny.numpy(), out[:2].numpy())
    assert (out[:2] > 0).all() and (out[:2] < 1e-18).all()  # floored at ~1e-19: no effect on the scan


def test_extreme_decays_stay_finite_and_accurate():
    """delta * |A| down to -300 per step: decays far below float32's range must neither overflow nor NaN."""
    x, w = make_case(2, 8, 16, 100, None, torch.float32, True, seed=3)
    x["A"] = -torch.arange(1, 17, dtype=torch.float32).repeat(8, 1)
    x["delta"] = x["delta"] * 4 + 2
    y, last, g = loss_and_grads(x, w, lambda v: cpu_scan.selective_scan_fn(**v, delta_softplus=True,
                                                                           return_last_state=True, chunk=16))
    y_ref, _, g_ref = loss_and_grads({k: v.double() for k, v in x.items()}, w, lambda v: (
        selective_scan(**v, delta_softplus=True, backend="reference"), last_state_reference(**v, delta_softplus=True)))
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
    for k in g_ref:
        assert torch.isfinite(g[k]).all(), k
        torch.testing.assert_close(g[k].double(), g_ref[k], rtol=1e-3, atol=1e-3, msg=k)


def test_results_do_not_depend_on_the_number_of_threads():
    """Channels blocks run in parallel; dB and dC are summed per fixed part, so the bits do not change."""
    x, w = make_case(2, 70, 4, 30, None, torch.float32, True)

    def run(threads):
        torch.set_num_threads(threads)
        try:
            return loss_and_grads(x, w, lambda v: cpu_scan.selective_scan_fn(**v, delta_softplus=True,
                                                                              return_last_state=True))
        finally:
            torch.set_num_threads(1)

    (y1, l1, g1), (y2, l2, g2) = run(1), run(2)
    assert torch.equal(y1, y2) and torch.equal(l1, l2)
    for k in g1:
        assert torch.equal(g1[k], g2[k]), k


def test_saves_nothing_of_size_n_times_l():
    """What autograd keeps for backward: inputs-sized tensors and the chunk-entry states, never a [B, D, N, L]
    tensor (the chunked torch scan's memory problem)."""
    b, d, n, L = 1, 64, 16, 256
    x, _ = make_case(b, d, n, L, None, torch.float32, True)
    leaves = {k: v.requires_grad_() for k, v in x.items()}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        selective_scan(**leaves, delta_softplus=True, backend="numba")
    assert saved and max(saved) <= b * d * L
    assert sum(saved) < 6 * b * d * L  # here 3.8x (u, delta, z, A, D, B, C and the states); [B, D, N, L] is 16x


def test_auto_picks_numba_on_cpu_and_torch_for_float64(monkeypatch):
    calls = []
    real = ss.NUMBA_SCAN_KERNEL.get()
    spy = ss.OptionalKernel("spy numba", lambda: lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(ss, "NUMBA_SCAN_KERNEL", spy)
    x, _ = make_case(1, 4, 3, 9, None, torch.float32, True)
    y = selective_scan(**x, delta_softplus=True)
    assert calls == [1]
    torch.testing.assert_close(y, selective_scan(**x, delta_softplus=True, backend="torch"), rtol=1e-4, atol=1e-5)
    selective_scan(**{k: v.double() for k, v in x.items()}, delta_softplus=True)
    assert calls == [1]  # float64: the exact torch path
    with pytest.raises(ValueError, match="float32"):
        selective_scan(**{k: v.double() for k, v in x.items()}, backend="numba")


def test_auto_falls_back_to_torch_without_numba(monkeypatch, caplog):
    def missing():
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(ss, "NUMBA_SCAN_KERNEL", ss.OptionalKernel("numba selective scan", missing))
    x, _ = make_case(2, 4, 3, 9, None, torch.float32, True)
    with caplog.at_level(logging.INFO, logger="mdlm_dna.models"):
        y = selective_scan(**x, delta_softplus=True)
    assert torch.equal(y, selective_scan(**x, delta_softplus=True, backend="torch"))
    assert any("not available" in r.message for r in caplog.records)
    with pytest.raises(RuntimeError, match="Numba kernel is unavailable"):
        selective_scan(**x, backend="numba")


def test_auto_falls_back_only_when_numba_cannot_compile(monkeypatch):
    """Review item 6: a Numba typing/compilation error means "unavailable" (torch scan); any other error is a bug
    or a wrong input and surfaces instead of a silent 10-20x slower run."""
    from numba.core.errors import TypingError

    def failing(err):
        def kernel(*args, **kwargs):
            raise err
        return kernel

    x, _ = make_case(2, 4, 3, 9, None, torch.float32, True)
    torch_y = selective_scan(**x, delta_softplus=True, backend="torch")
    kernel = ss.OptionalKernel("numba selective scan", lambda: failing(TypingError("no matching signature")),
                               ss.NUMBA_SCAN_KERNEL.unavailable)
    monkeypatch.setattr(ss, "NUMBA_SCAN_KERNEL", kernel)
    assert torch.equal(selective_scan(**x, delta_softplus=True), torch_y) and kernel.state == "failed"
    kernel = ss.OptionalKernel("numba selective scan", lambda: failing(IndexError("index 9 is out of bounds")),
                               ss.NUMBA_SCAN_KERNEL.unavailable)
    monkeypatch.setattr(ss, "NUMBA_SCAN_KERNEL", kernel)
    with pytest.raises(IndexError, match="out of bounds"):
        selective_scan(**x, delta_softplus=True)
    assert kernel.state == "ok"


def test_caduceus_ps_on_numba_is_rc_equivariant_and_matches_the_reference():
    """The whole model through the dispatcher (views of x_proj's output, z from a chunk, both RC streams):
    exactly RC-equivariant (to the bit) at init and after a training step on the Numba scan, which computes
    every batch row on its own, in a fixed order; its logits and every parameter's gradient agree with the
    float64 reference backend."""
    tok = NucleotideTokenizer()
    comp = list(tok.complement_ids)
    cfg = {"name": "caduceus_ps", "d_model": 8, "n_layers": 2, "d_state": 16}
    x = torch.randint(0, tok.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))

    def build(backend, dtype):
        torch.manual_seed(0)
        return build_backbone({**cfg, "scan_backend": backend}, tok.vocab_size, tok.complement_ids).to(dtype)

    def rc_error(model):
        with torch.no_grad():
            return (model(tok.reverse_complement(x), None) - model(x, None).flip(1)[..., comp]).abs().max().item()

    model = build("numba", torch.float32)
    ref = build("reference", torch.float64)
    assert rc_error(model) == 0.0
    results = {}
    for name, m in (("numba", model), ("reference", ref)):
        logits = m(x, None)
        logits.double().square().mean().backward()
        results[name] = {"logits": logits.detach().double(), **{k: p.grad.double() for k, p in m.named_parameters()}}
    for k in results["reference"]:  # every parameter's gradient, relative to its largest entry
        scale = results["reference"][k].abs().max().clamp_min(1e-12)
        torch.testing.assert_close(results["numba"][k] / scale, results["reference"][k] / scale, rtol=0, atol=1e-4,
                                   msg=k)
    torch.optim.SGD(model.parameters(), lr=0.1).step()  # moved off its init, gradients through the Numba scan
    assert rc_error(model) == 0.0


def test_kernels_run_on_numba_workqueue_threads_unless_the_user_chose():
    """Numba's OpenMP pool slowed torch ~20x for the rest of the process (benchmarks/bench_numba_threading.py):
    the package picks the workqueue layer, in a fresh process, and leaves a user's own choice alone."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from mdlm_dna.models.selective_scan import selective_scan\n"
        "import numba\n"
        "x = [torch.randn(1, 32, 16), torch.randn(1, 32, 16), -torch.rand(32, 4), torch.randn(1, 4, 16),"
        " torch.randn(1, 4, 16)]\n"
        "selective_scan(*x, backend='numba')\n"
        "print(numba.threading_layer())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "workqueue"


def test_a_users_threading_layer_wins(monkeypatch):
    import numba

    from mdlm_dna.utils.numba_threads import use_workqueue_threads

    monkeypatch.setattr(numba.config, "THREADING_LAYER", "default")
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "omp")
    use_workqueue_threads()
    assert numba.config.THREADING_LAYER == "default"
    monkeypatch.delenv("NUMBA_THREADING_LAYER")
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "tbb")
    use_workqueue_threads()
    assert numba.config.THREADING_LAYER == "tbb"
