"""The Triton selective scan against the float64 sequential reference, without a GPU.

The kernels run under Triton's CPU interpreter, which must be switched on (``TRITON_INTERPRET=1``)
before triton is first imported; so they run in one child process for the whole module, and this
process never imports triton. The child gets the inputs in a file and returns outputs and gradients in
another; the reference and every comparison run here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mdlm_dna.models import selective_scan as ss
from mdlm_dna.models.selective_scan import selective_scan

ROOT = Path(__file__).resolve().parents[1]
NEEDS_TRITON = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
TOLERANCES = {torch.float32: {"rtol": 6e-4, "atol": 2e-3}, torch.bfloat16: {"rtol": 3e-2, "atol": 5e-2}}

# name: (batch, channels, d_state, L, groups of B/C (None: [B, N, L]; a pair: B's, C's), dtype, kernel options,
#        fused extras)
CASES = {
    "odd-L-5-chunks": (2, 6, 4, 37, None, torch.float32, {"chunk": 8}, True),
    "L1": (1, 4, 3, 1, None, torch.float32, {}, True),
    "default-tiles": (1, 2, 16, 150, None, torch.float32, {}, True),  # the GPU launch: 64-step tiles, 3 of them
    "dstate16-3-chunks": (1, 5, 16, 40, None, torch.float32, {"chunk": 16, "block_d": 2}, True),
    "grouped": (2, 8, 4, 20, 2, torch.float32, {"chunk": 8}, True),
    "grouped-C-shared-B": (1, 6, 3, 11, (None, 3), torch.float32, {"chunk": 4}, True),
    "dstate64": (1, 2, 64, 17, None, torch.float32, {"chunk": 8}, True),
    "strided-views": (1, 4, 4, 13, None, torch.float32, {"chunk": 8, "views": True}, True),  # as Mamba passes them
    "bf16": (2, 4, 4, 33, None, torch.bfloat16, {"chunk": 16}, True),
    "bare": (1, 3, 5, 19, None, torch.float32, {"chunk": 8}, False),  # no D, z, delta_bias, softplus
}


def make_case(b, d, n, L, groups, dtype, fused, seed=0):
    """Random inputs (never zeros); A, D and delta_bias stay float32 as the models pass them."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, dt=dtype):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dt)

    g_b, g_c = groups if isinstance(groups, tuple) else (groups, groups)
    shape_b, shape_c = ((b, n, L) if k is None else (b, k, n, L) for k in (g_b, g_c))
    x = {
        "u": r(b, d, L),
        "delta": r(b, d, L),
        "A": -(torch.rand(d, n, generator=g, dtype=torch.float64) * 3 + 0.1),
        "B": r(*shape_b),
        "C": r(*shape_c),
        "D": r(d, dt=torch.float32),
        "z": r(b, d, L),
        "delta_bias": r(d, dt=torch.float32),
    }
    x["A"] = x["A"].float()
    if not fused:
        x = {k: v for k, v in x.items() if k not in ("D", "z", "delta_bias")}
    # weights of a random projection of the output and of the last state: the loss whose gradients we compare
    w = {"y": r(b, d, L, dt=torch.float64), "last": r(b, d, n, dt=torch.float64)}
    return x, w


def last_state_reference(u, delta, A, B, delta_bias=None, delta_softplus=False, **_):
    """h_L of the recurrence in float64, one step at a time (independent of the package's code)."""
    u, delta, A, B = (t.double() for t in (u, delta, A, B))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = torch.nn.functional.softplus(delta)
    if B.dim() == 4:
        B = B.repeat_interleave(u.shape[1] // B.shape[1], dim=1)
    else:
        B = B.unsqueeze(1)
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


def _interpreter_main(in_path: str, out_path: str) -> None:
    """Child process (TRITON_INTERPRET=1): every case through the Triton scan, once directly with the last
    state, once through the dispatcher."""
    from mdlm_dna.models.triton_scan import selective_scan_fn

    cases = torch.load(in_path)
    results = {}
    for name, case in cases.items():
        softplus = case["fused"]

        options = dict(case["options"])
        views = options.pop("views", False)

        def triton_scan(leaves, options=options, softplus=softplus, views=views):
            if views:  # the same values with L not the last-but-contiguous axis: [B, L, D] storage, transposed
                leaves = {k: v.transpose(-1, -2).contiguous().transpose(-1, -2) if v.dim() > 1 else v
                          for k, v in leaves.items()}
                assert not leaves["u"].is_contiguous() and leaves["B"].stride(-1) != 1
            return selective_scan_fn(**leaves, delta_softplus=softplus, return_last_state=True, **options)

        y, last, grads = loss_and_grads(case["x"], case["w"], triton_scan)
        via_dispatcher = selective_scan(**case["x"], delta_softplus=softplus, backend="triton")
        results[name] = {"y": y, "last": last, "grads": grads, "dispatcher": via_dispatcher}
    torch.save(results, out_path)


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    """Outputs and gradients of every case from the Triton kernels under the interpreter."""
    tmp = tmp_path_factory.mktemp("triton_scan")
    cases = {}
    for name, (b, d, n, L, groups, dtype, options, fused) in CASES.items():
        x, w = make_case(b, d, n, L, groups, dtype, fused)
        cases[name] = {"x": x, "w": w, "options": options, "fused": fused}
    torch.save(cases, tmp / "in.pt")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TRITON_CACHE_DIR": str(tmp / "triton_cache")}
    code = (
        f"from tests.test_triton_scan import _interpreter_main; _interpreter_main({str(tmp / 'in.pt')!r}, "
        f"{str(tmp / 'out.pt')!r})"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"the Triton interpreter run failed:\n{proc.stderr[-4000:]}")
    return cases, torch.load(tmp / "out.pt")


@NEEDS_TRITON
@pytest.mark.parametrize("name", list(CASES))
def test_triton_scan_matches_float64_reference(interpreted, name):
    cases, results = interpreted
    case, got = cases[name], results[name]
    x, fused = case["x"], case["fused"]
    tol = TOLERANCES[x["u"].dtype]

    def reference(leaves):
        y = selective_scan(**leaves, delta_softplus=fused, backend="reference")
        return y, last_state_reference(**leaves, delta_softplus=fused)

    x64 = {k: v.double() for k, v in x.items()}
    y_ref, last_ref, g_ref = loss_and_grads(x64, case["w"], reference)
    assert got["y"].dtype == x["u"].dtype and got["last"].dtype == torch.float32
    torch.testing.assert_close(got["y"].double(), y_ref, **tol, msg="output")
    torch.testing.assert_close(got["last"].double(), last_ref, **tol, msg="last state")
    torch.testing.assert_close(got["dispatcher"].double(), y_ref, **tol, msg="output through the dispatcher")
    assert set(got["grads"]) == set(x) and set(x) <= set(GRAD_NAMES)
    for k in x:
        assert got["grads"][k].dtype == x[k].dtype, k
        torch.testing.assert_close(got["grads"][k].double(), g_ref[k], **tol, msg=f"gradient of {k}")


def _model_main(out_path: str) -> None:
    """Child process (TRITON_INTERPRET=1): a tiny Caduceus-PS, forward and backward, on each backend."""
    from mdlm_dna.data.tokenizers import NucleotideTokenizer
    from mdlm_dna.models import build_backbone

    tok = NucleotideTokenizer()
    cfg = {"name": "caduceus_ps", "d_model": 8, "n_layers": 2, "d_state": 16, "d_conv": 4, "expand": 2}
    x = torch.randint(0, tok.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    results = {}
    for backend, dtype in (("reference", torch.float64), ("triton", torch.float32)):
        torch.manual_seed(0)
        model = build_backbone({**cfg, "scan_backend": backend}, tok.vocab_size, tok.complement_ids).to(dtype)
        logits = model(x, None)
        logits.double().square().mean().backward()
        results[backend] = {"logits": logits.detach().double(),
                            **{n: p.grad.double() for n, p in model.named_parameters()}}
    torch.save(results, out_path)


@NEEDS_TRITON
@pytest.mark.slow
def test_caduceus_ps_on_the_triton_backend_matches_the_reference(tmp_path):
    """The whole model through the dispatcher: strided views of x_proj's output, z from a chunk, RC streams."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "TRITON_CACHE_DIR": str(tmp_path)}
    code = f"from tests.test_triton_scan import _model_main; _model_main({str(tmp_path / 'out.pt')!r})"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = torch.load(tmp_path / "out.pt")
    ref, got = results["reference"], results["triton"]
    assert set(ref) == set(got) and len(ref) > 10
    for name in ref:  # every parameter's gradient, relative to its largest entry
        scale = ref[name].abs().max().clamp_min(1e-12)
        torch.testing.assert_close(got[name] / scale, ref[name] / scale, rtol=0, atol=1e-4, msg=name)


# ----------------------------------------------------------------------------------------------------
# the compiled path: the interpreter skips Triton's compiler, so compile for an H100 (sm_90) here too

LOW_PRECISION_PTRS = {"u", "delta", "B", "C", "z", "out", "dout", "du", "ddelta", "dz"}  # the rest: float32


def _compile_main() -> None:
    """Child process (no interpreter): both kernels through Triton's compiler and ptxas, for sm_90."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mdlm_dna.models import triton_scan as ts

    flag_sets = [("fp32", dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True), True),
                 ("bf16", dict(HAS_D=False, HAS_Z=False, HAS_BIAS=False, SOFTPLUS=False), False)]
    for dtype, flags, dlast in flag_sets:
        for kernel in (ts._scan_fwd_kernel, ts._scan_bwd_kernel):
            consts = dict(N=16, BLOCK_N=16, BLOCK_D=1, T=64, **flags)
            if kernel is ts._scan_bwd_kernel:
                consts["HAS_DLAST"] = dlast
            signature = {}
            for name in kernel.arg_names:
                if name in consts:
                    signature[name] = "constexpr"
                elif name.endswith("_ptr"):
                    signature[name] = f"*{dtype}" if name.removesuffix("_ptr") in LOW_PRECISION_PTRS else "*fp32"
                else:
                    signature[name] = "i32"
            compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=consts),
                                      target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
            assert compiled.asm["cubin"], kernel
            print(kernel.fn.__name__, dtype, "compiled")


@NEEDS_TRITON
def test_kernels_compile_for_an_h100(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(OMP_NUM_THREADS="1", TRITON_CACHE_DIR=str(tmp_path))  # a fresh cache: really compile
    code = "from tests.test_triton_scan import _compile_main; _compile_main()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("compiled") == 4


# ----------------------------------------------------------------------------------------------------
# the dispatcher's choice of backend (no triton import: fake kernels)


@pytest.fixture
def fake_kernels(monkeypatch):
    """Fake mamba-ssm and Triton kernels, and CPU tensors taken for CUDA ones by both checks."""
    calls = {"cuda": 0, "triton": 0}
    behaviour = {"cuda": "missing", "triton": "works"}

    def make(which, offset):
        def kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
            calls[which] += 1
            if behaviour[which] == "raises":  # cannot run on this GPU: the next implementation takes over
                raise RuntimeError("CUDA error: no kernel image is available") if which == "cuda" \
                    else TritonOutOfResources("shared memory")
            if behaviour[which] == "bug":  # any other error surfaces
                raise ValueError(f"{which} kernel exploded")
            return ss._scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus) + offset

        def loader():
            if behaviour[which] == "missing":
                raise ImportError(f"No module named {which}")
            return kernel

        return loader

    cuda = ss.OptionalKernel("fake mamba_ssm", make("cuda", 1.0), ss.SCAN_KERNEL.unavailable)
    triton_kernel = ss.OptionalKernel("fake triton", make("triton", 2.0), ss.TRITON_SCAN_KERNEL.unavailable)
    monkeypatch.setattr(ss, "SCAN_KERNEL", cuda)
    monkeypatch.setattr(ss, "TRITON_SCAN_KERNEL", triton_kernel)
    monkeypatch.setattr(ss, "_on_cuda", lambda t: True)
    monkeypatch.setattr(ss, "_triton_usable", lambda t: True)
    monkeypatch.setattr(ss, "_triton_auto", lambda t: True)
    return calls, behaviour


class TritonOutOfResources(Exception):
    """Stands for triton.runtime.errors.OutOfResources (Triton's own errors mean: not on this GPU)."""


TritonOutOfResources.__module__ = "triton.runtime.errors"


def test_a_kernel_bug_surfaces_instead_of_a_silent_fallback(fake_kernels):
    """Review item 6: any exception in a kernel switched the process to the slower scan with one log line."""
    calls, behaviour = fake_kernels
    for which, kernel in (("cuda", ss.SCAN_KERNEL), ("triton", ss.TRITON_SCAN_KERNEL)):
        ss.SCAN_KERNEL.reset(), ss.TRITON_SCAN_KERNEL.reset()
        behaviour.update(cuda="missing", triton="works")
        behaviour[which] = "bug"
        with pytest.raises(ValueError, match=f"{which} kernel exploded"):
            selective_scan(**_inputs(), delta_softplus=True, backend="auto")
        assert kernel.state == "ok" and calls[which] == 1  # a bug does not disable the kernel
        calls[which] = 0


def _inputs():
    x, _ = make_case(2, 4, 3, 9, None, torch.float32, True)
    return x


@pytest.mark.parametrize(
    "cuda, triton, chosen, offset",
    [
        ("works", "works", "cuda", 1.0),
        ("missing", "works", "triton", 2.0),
        ("raises", "works", "triton", 2.0),
        ("missing", "missing", "torch", 0.0),
        ("missing", "raises", "torch", 0.0),
    ],
)
def test_auto_order_is_cuda_then_triton_then_torch(fake_kernels, caplog, cuda, triton, chosen, offset):
    calls, behaviour = fake_kernels
    behaviour.update(cuda=cuda, triton=triton)
    x = _inputs()
    expected = ss._scan_reference(**x, delta_softplus=True) + offset
    with caplog.at_level(logging.INFO, logger="mdlm_dna.models"):
        for _ in range(2):
            torch.testing.assert_close(selective_scan(**x, delta_softplus=True, backend="auto"), expected)
    assert calls["cuda"] == (2 if cuda == "works" else 1 if cuda == "raises" else 0)
    assert calls["triton"] == (0 if chosen == "cuda" else 2 if triton == "works" else 1 if triton == "raises" else 0)
    failed = sum("failed when called" in r.message for r in caplog.records)
    assert failed == (cuda == "raises") + (triton == "raises" and chosen != "cuda")


def test_triton_backend_by_name_skips_mamba_ssm(fake_kernels):
    calls, behaviour = fake_kernels
    behaviour.update(cuda="works")
    x = _inputs()
    y = selective_scan(**x, delta_softplus=True, backend="triton")
    torch.testing.assert_close(y, ss._scan_reference(**x, delta_softplus=True) + 2.0)
    assert calls == {"cuda": 0, "triton": 1}
    behaviour.update(triton="missing")
    ss.TRITON_SCAN_KERNEL.reset()
    with pytest.raises(RuntimeError, match="Triton kernel is unavailable"):
        selective_scan(**x, backend="triton")


def test_triton_backend_needs_cuda_tensors_or_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = _inputs()
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        selective_scan(**x, backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match="float64"):
        selective_scan(**{k: v.double() for k, v in x.items()}, backend="triton")


def test_auto_never_runs_triton_on_cpu_tensors(monkeypatch):
    """The interpreter is for tests: off-GPU, auto stays with torch even when it is switched on."""
    calls = []
    fake = ss.OptionalKernel("fake triton", lambda: lambda *a, **k: calls.append(1))
    monkeypatch.setattr(ss, "TRITON_SCAN_KERNEL", fake)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = _inputs()
    torch.testing.assert_close(selective_scan(**x, backend="auto"), selective_scan(**x, backend="torch"))
    assert calls == [] and fake.state == "untried"
    assert not ss._triton_auto(x["u"])
