"""The Mamba-1 selective scan on CPUs: Numba kernels, forward and backward, in O(B·D·N) working memory.

Same arguments, shapes and semantics as mamba-ssm's ``selective_scan_fn`` (and ``triton_scan.py``):
``delta_bias`` and softplus on delta, the ``D`` skip, ``z`` gating by silu, B/C of shape [B, N, L] or
grouped [B, G, N, L]; float32 compute and state for float32 / bfloat16 / float16 inputs.

Why this shape of code. The recurrence h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t is sequential in L
but independent across channels, and a CPU core is fastest walking L once with the state in cache and
SIMD lanes across channels. So the kernels take a block of ``LANES`` (32) channels of one batch row at a
time, hold its [N, LANES] state and step through L, in the [B, L, D] layout where a step's channels are
adjacent (Mamba's delta and z already are; u is transposed once). Every inner loop runs over the lanes
with a fixed trip count, which LLVM turns into vector code, given three things: ``_exp`` written with a
polynomial and bit operations (Numba's ``math.exp`` is a scalar libm call); the per-block helpers
compiled with their arrays marked ``noalias`` (else LLVM guards the short lane loops with overlap checks
and leaves them scalar); and ``error_model="numpy"`` (no zero-division branch in the gate's divisions).
Blocks of all batch rows run in parallel (``prange``) on Numba's threads, as many as
``torch.get_num_threads()``.

Memory. Nothing of size [B, D, N, L] is made: the forward pass keeps only the state entering every
``chunk`` steps ([B, L/chunk, N, D] float32, 1/4 of a float32 [B, D, L] tensor at N = 16 and 64-step
chunks), as our Triton kernel does on GPUs; the backward pass walks the chunks in reverse, recomputes
each chunk's states, decays and outputs from its entry state into per-block buffers (about 0.5 MB), and
runs the adjoint recurrence g_t = C_t dy_t + a_{t+1} g_{t+1} backwards through them. The gradients of B
and C, shared by the channels of a group, are summed per block and added into one of ``PARTS`` (at most
8) partial sums per batch row, which torch adds up: a fixed order, so the results do not depend on the
number of threads, and every batch row is computed alone (Caduceus-PS stays exactly RC-equivariant).

The D skip and the z gate are fused into the kernels; delta's bias and softplus are done by torch (one
elementwise pass each way). Autograd keeps only the inputs (which the network holds anyway) and the chunk
states: the layout copies, bias and softplus are redone in the backward pass.

Numba compiles the kernels when this module is first imported (one signature each; ``cache=True`` keeps
the machine code on disk next to this file, or in Numba's user cache when that is read-only): about
10-25 s once, 1-2 s for later processes. Importing this module needs numba; ``selective_scan`` falls
back to the torch backend when it cannot.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
import torch.nn.functional as F
from llvmlite import ir
from numba import njit, prange, types
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.extending import intrinsic
from torch import Tensor

LANES = 32  # channels per block: the inner loops' fixed trip count, one AVX-512 / two AVX2 float32 vectors
CHUNK = 64  # steps between saved states (backward memory O(B·D·N·L / CHUNK); buffer per block ~ CHUNK·N·LANES)
PARTS = 8  # partial sums of dB and dC per batch row (the backward pass's parallelism at batch 1)

# fastmath: contraction into FMAs, and reassociation so that the dB/dC sums over lanes vectorise
_FASTMATH = {"contract", "reassoc"}

_F0 = np.float32(0.0)
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 split in two (Cephes): k * _LN2_HI is exact for |k| < 2^9
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MAX = np.float32(88.0)
# exp floored at sqrt(smallest normal float32) ~ 1e-19, as the torch backend: such decays wipe the state
# anyway, and the floor keeps subnormal floats (an order of magnitude slower on CPUs) out of the state
_EXP_MIN = np.float32(0.5 * math.log(np.finfo(np.float32).tiny))
_P0, _P1, _P2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
_P3, _P4, _P5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
_HALF, _ONE = np.float32(0.5), np.float32(1.0)


@intrinsic
def _bits_as_float32(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of an integer (LLVM bitcast: vectorises)."""

    def codegen(context, builder, sig, args):
        value = args[0]
        if value.type.width > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _exp(x):
    """exp of a float32, clamped to [_EXP_MIN, _EXP_MAX]: within 2 ulp of expf (Cephes' polynomial).

    No reassociation here: the two-part reduction x - k ln2 must keep its order.
    """
    x = min(max(x, _EXP_MIN), _EXP_MAX)
    t = x * _LOG2E
    k = np.int32(t + (_HALF if t >= _F0 else -_HALF))  # round to nearest
    kf = np.float32(k)
    r = x - kf * _LN2_HI - kf * _LN2_LO  # |r| <= ln2 / 2
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    p = p * r * r + r + _ONE
    return p * _bits_as_float32((k + 127) << 23)  # times 2^k, k in [-63, 127]


class _NoAliasCompiler(CompilerBase):
    """Numba's nopython pipeline with every array argument marked ``noalias`` (as Numba marks its parfor
    bodies). Without it LLVM must guard the lane loops with overlap checks between the many small
    arrays, finds them too costly for 16 iterations and leaves the loops scalar (4-8x slower)."""

    def define_pipelines(self):
        self.state.flags.noalias = True
        return [DefaultPassBuilder.define_nopython_pipeline(self.state)]


def _lane_jit(fn):
    """For the per-block helpers: their array arguments never overlap. ``error_model="numpy"``: no
    zero-division checks, whose branches would keep the gate's divisions scalar."""
    return njit(cache=True, fastmath=_FASTMATH, error_model="numpy", pipeline_class=_NoAliasCompiler)(fn)


@_lane_jit
def _forward_block(u, dt, z, out, b_g, c_g, states, last, a_blk, d_l, h, dt_l, x_l, u_l, z_l, y_l,
                   d0, w, chunk, has_z):
    """Channels d0 .. d0+w-1 of one batch row through all L steps (lanes past w are padding: A = 0,
    delta = 0, so decay 1, no input, state 0).

    u, dt, z, out: [L, D] rows of this batch row; b_g, c_g: [L, N] of this block's group; states:
    [L/chunk, N, D]; last: [D, N]; a_blk: [N, LANES] = A of the lanes; d_l: D of the lanes; h: the
    [N, LANES] state (zero on entry); the rest per-step scratch of LANES.
    """
    n_state = h.shape[0]
    for t in range(u.shape[0]):
        if t % chunk == 0:
            k = t // chunk
            for n in range(n_state):
                for c in range(w):
                    states[k, n, d0 + c] = h[n, c]
        for c in range(w):
            dt_l[c] = dt[t, d0 + c]
            u_l[c] = u[t, d0 + c]
        for c in range(LANES):
            x_l[c] = dt_l[c] * u_l[c]
            y_l[c] = d_l[c] * u_l[c]  # the D skip
        for n in range(n_state):
            b_n, c_n = b_g[t, n], c_g[t, n]
            for c in range(LANES):
                h_new = _exp(dt_l[c] * a_blk[n, c]) * h[n, c] + x_l[c] * b_n
                h[n, c] = h_new
                y_l[c] += c_n * h_new
        if has_z:
            for c in range(w):
                z_l[c] = z[t, d0 + c]
            for c in range(LANES):
                y_l[c] *= z_l[c] / (_ONE + _exp(-z_l[c]))
        for c in range(w):
            out[t, d0 + c] = y_l[c]
    for n in range(n_state):
        for c in range(w):
            last[d0 + c, n] = h[n, c]


@_lane_jit
def _backward_block(u, dt, z, dout, b_g, c_g, states, du, ddt, dz, db_g, dc_g, a_blk, d_l, gc, da_acc, dd_acc,
                    hs, decays, ys, g_buf, dt_l, x_l, u_l, z_l, dout_l, dy_l, dx_l, ddt_l,
                    d0, w, chunk, has_z):
    """The adjoint of ``_forward_block`` for one block, chunk by chunk from the end: recompute the chunk's
    decays, states and outputs from its saved entry state, then step backwards with
    g_t = dL/dh_t = C_t dy_t + a_{t+1} g_{t+1} (``gc`` carries a_{t+1} g_{t+1}; it enters holding
    dL/d(last state)).

    Arrays as ``_forward_block``, plus dout, du, ddt, dz: [L, D]; db_g, dc_g: [L, N] partial sums of this
    block's part; gc, da_acc: [N, LANES]; dd_acc: [LANES]; hs: [chunk + 1, N, LANES] (hs[i + 1]: the state
    after step t0 + i); decays: [chunk, N, LANES]; ys: [chunk, LANES] (<C_t, h_t>, for dz); g_buf: [N, LANES].
    """
    length = u.shape[0]
    n_state = gc.shape[0]
    for k in range((length + chunk - 1) // chunk - 1, -1, -1):
        t0 = k * chunk
        t1 = min(length, t0 + chunk)
        for n in range(n_state):
            for c in range(w):
                hs[0, n, c] = states[k, n, d0 + c]
        for t in range(t0, t1):  # recompute
            i = t - t0
            for c in range(w):
                dt_l[c] = dt[t, d0 + c]
                u_l[c] = u[t, d0 + c]
            for c in range(LANES):
                x_l[c] = dt_l[c] * u_l[c]
                ys[i, c] = _F0
            for n in range(n_state):
                b_n, c_n = b_g[t, n], c_g[t, n]
                for c in range(LANES):
                    a_t = _exp(dt_l[c] * a_blk[n, c])
                    decays[i, n, c] = a_t
                    h_new = a_t * hs[i, n, c] + x_l[c] * b_n
                    hs[i + 1, n, c] = h_new
                    ys[i, c] += c_n * h_new
        for t in range(t1 - 1, t0 - 1, -1):  # the adjoint
            i = t - t0
            for c in range(w):
                dt_l[c] = dt[t, d0 + c]
                u_l[c] = u[t, d0 + c]
                dout_l[c] = dout[t, d0 + c]
            # the gate: d out -> dy (of the scan's output plus the D skip), dz
            if has_z:
                for c in range(w):
                    z_l[c] = z[t, d0 + c]
                for c in range(LANES):
                    sig = _ONE / (_ONE + _exp(-z_l[c]))
                    dy_l[c] = dout_l[c] * z_l[c] * sig
                    dout_l[c] *= (ys[i, c] + d_l[c] * u_l[c]) * sig * (_ONE + z_l[c] * (_ONE - sig))  # now dz
                for c in range(w):
                    dz[t, d0 + c] = dout_l[c]
            else:
                for c in range(LANES):
                    dy_l[c] = dout_l[c]
            for c in range(LANES):
                x_l[c] = dt_l[c] * u_l[c]
                dd_acc[c] += dy_l[c] * u_l[c]
                dx_l[c] = _F0  # d / d(delta u)
                ddt_l[c] = _F0  # d / d(delta) through the decays
            for n in range(n_state):
                b_n, c_n = b_g[t, n], c_g[t, n]
                for c in range(LANES):
                    g_t = c_n * dy_l[c] + gc[n, c]
                    a_t = decays[i, n, c]
                    g_buf[n, c] = g_t
                    dx_l[c] += g_t * b_n
                    s = g_t * hs[i, n, c] * a_t
                    ddt_l[c] += s * a_blk[n, c]
                    da_acc[n, c] += s * dt_l[c]
                    gc[n, c] = a_t * g_t
            # sums over the lanes in loops of their own (a reduction next to stores does not vectorise)
            for n in range(n_state):
                sum_b = _F0
                sum_c = _F0
                for c in range(LANES):
                    sum_b += g_buf[n, c] * x_l[c]
                    sum_c += dy_l[c] * hs[i + 1, n, c]
                db_g[t, n] += sum_b
                dc_g[t, n] += sum_c
            for c in range(w):
                du[t, d0 + c] = dy_l[c] * d_l[c] + dx_l[c] * dt_l[c]
                ddt[t, d0 + c] = ddt_l[c] + dx_l[c] * u_l[c]


@njit(cache=True, error_model="numpy")
def _block(blk, blocks_per_group, cpg):
    """Block index -> (group, first channel, channels in it): blocks never straddle two groups of B/C."""
    g = blk // blocks_per_group
    d0 = g * cpg + (blk % blocks_per_group) * LANES
    return g, d0, min(LANES, (g + 1) * cpg - d0)


def _arr(ndim: int, layout: str = "C") -> types.Array:
    return types.Array(types.float32, ndim, layout)


# one signature each: compiled once (or loaded from the cache) when this module is imported, instead of
# once per combination of argument layouts. B and C may have a group axis expanded with stride 0 ("A").
_FORWARD_SIG = types.void(_arr(3), _arr(3), _arr(3), _arr(1), _arr(2), _arr(4, "A"), _arr(4, "A"), types.boolean,
                          types.int64, types.int64, _arr(3), _arr(4), _arr(3))
_BACKWARD_SIG = types.void(_arr(3), _arr(3), _arr(3), _arr(1), _arr(2), _arr(4, "A"), _arr(4, "A"), _arr(4),
                           _arr(3), _arr(3), types.boolean, types.int64, types.int64, types.int64,
                           _arr(3), _arr(3), _arr(3), _arr(2), _arr(3), _arr(5), _arr(5))


@njit(_FORWARD_SIG, parallel=True, cache=True, error_model="numpy")
def _forward_kernel(u, dt, z, D, A, Bm, Cm, has_z, cpg, chunk, out, states, last):
    """out = (<C_t, h_t> + D u) * silu(z), blocks of all batch rows in parallel.

    u, dt (delta after bias and softplus), z, out: [batch, L, D]; D: [D]; A: [D, N]; Bm, Cm: [batch, G, L, N];
    states: [batch, L/chunk, N, D] (the state entering every chunk); last: [batch, D, N].
    """
    batch = u.shape[0]
    n_state = A.shape[1]
    blocks_per_group = (cpg + LANES - 1) // LANES
    n_blocks = Bm.shape[1] * blocks_per_group
    for job in prange(batch * n_blocks):
        b = job // n_blocks
        g, d0, w = _block(job % n_blocks, blocks_per_group, cpg)
        a_blk = np.zeros((n_state, LANES), np.float32)
        for n in range(n_state):
            for c in range(w):
                a_blk[n, c] = A[d0 + c, n]
        d_l = np.zeros(LANES, np.float32)
        for c in range(w):
            d_l[c] = D[d0 + c]
        _forward_block(u[b], dt[b], z[b], out[b], Bm[b, g], Cm[b, g], states[b], last[b], a_blk, d_l,
                       np.zeros((n_state, LANES), np.float32), np.zeros(LANES, np.float32),
                       np.zeros(LANES, np.float32), np.zeros(LANES, np.float32), np.zeros(LANES, np.float32),
                       np.zeros(LANES, np.float32), d0, w, chunk, has_z)


@njit(_BACKWARD_SIG, parallel=True, cache=True, error_model="numpy")
def _backward_kernel(u, dt, z, D, A, Bm, Cm, states, dout, dlast, has_z, cpg, chunk, parts,
                     du, ddt, dz, dD, dA, dB, dC):
    """Gradients of sum(dout * out) + sum(dlast * last) w.r.t. u, dt, z, D, A, Bm, Cm.

    Shapes as ``_forward_kernel``; dout, du, ddt, dz: [batch, L, D]; dlast: [batch, D, N]; dD: [batch, D];
    dA: [batch, D, N]; dB, dC: [batch, parts, G, L, N], zero on entry: each part (a fixed run of blocks)
    sums into its own, so that the result does not depend on the threads.
    """
    batch = u.shape[0]
    n_state = A.shape[1]
    blocks_per_group = (cpg + LANES - 1) // LANES
    n_blocks = Bm.shape[1] * blocks_per_group
    for job in prange(batch * parts):
        b, p = job // parts, job % parts
        for blk in range(p * n_blocks // parts, (p + 1) * n_blocks // parts):
            g, d0, w = _block(blk, blocks_per_group, cpg)
            a_blk = np.zeros((n_state, LANES), np.float32)
            gc = np.zeros((n_state, LANES), np.float32)
            for n in range(n_state):
                for c in range(w):
                    a_blk[n, c] = A[d0 + c, n]
                    gc[n, c] = dlast[b, d0 + c, n]
            d_l = np.zeros(LANES, np.float32)
            for c in range(w):
                d_l[c] = D[d0 + c]
            da_acc = np.zeros((n_state, LANES), np.float32)
            dd_acc = np.zeros(LANES, np.float32)
            _backward_block(u[b], dt[b], z[b], dout[b], Bm[b, g], Cm[b, g], states[b], du[b], ddt[b], dz[b],
                            dB[b, p, g], dC[b, p, g], a_blk, d_l, gc, da_acc, dd_acc,
                            np.zeros((chunk + 1, n_state, LANES), np.float32),
                            np.zeros((chunk, n_state, LANES), np.float32), np.zeros((chunk, LANES), np.float32),
                            np.zeros((n_state, LANES), np.float32), np.zeros(LANES, np.float32),
                            np.zeros(LANES, np.float32), np.zeros(LANES, np.float32), np.zeros(LANES, np.float32),
                            np.zeros(LANES, np.float32), np.zeros(LANES, np.float32), np.zeros(LANES, np.float32),
                            np.zeros(LANES, np.float32), d0, w, chunk, has_z)
            for c in range(w):
                dD[b, d0 + c] = dd_acc[c]
                for n in range(n_state):
                    dA[b, d0 + c, n] = da_acc[n, c]


def _set_threads() -> None:
    """Numba's threads follow torch's setting (tests and benchmarks pin it), capped by Numba's pool."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _ld(t: Tensor) -> Tensor:
    """[B, D, L] -> float32 [B, L, D], contiguous: the kernels' layout, with the lanes of a step adjacent.
    Free for Mamba's delta and z (transposed views of [B, L, D] already); one copy for u."""
    return t.float().transpose(1, 2).contiguous()


def _grad_like(g: Tensor, ref: Tensor) -> Tensor:
    """A gradient in the kernels' [B, L, D] layout, returned as [B, D, L] with the memory layout of its input:
    mixing [B, D, L] and [B, L, D] strides sends torch's elementwise kernels down to a slow path (rows 4 KiB
    apart at L = 1024), e.g. in the silu backward of Mamba's conv."""
    g = g.transpose(1, 2)
    return g if ref.stride(1) == 1 else g.contiguous()


def _delta(delta: Tensor, delta_bias: Tensor | None, softplus: bool) -> tuple[Tensor, Tensor]:
    """(delta + bias, its softplus or itself) in the kernels' layout."""
    raw = _ld(delta)
    if delta_bias is not None:
        raw = raw + delta_bias.float()
    return raw, (F.softplus(raw) if softplus else raw)


class _Scan(torch.autograd.Function):
    """The whole selective scan. u, delta, z [B, D, L] as given (any layout); delta_bias, D [D]; A [D, N];
    B, C [B, G, L, N] float32 (a group axis expanded with stride 0 is fine). Returns out [B, L, D] and
    the last state [B, D, N].

    Saved for backward: the inputs themselves (which the rest of the network keeps anyway) and the chunk
    states; the layout copies, delta's bias and softplus are redone in the backward pass.
    """

    @staticmethod
    def forward(ctx, u, delta, delta_bias, z, D, A, Bm, Cm, softplus: bool, chunk: int):
        batch, dim, length = u.shape
        n_state, groups = A.shape[1], Bm.shape[1]
        need_grad = any(ctx.needs_input_grad[:8])
        chunk = chunk if need_grad else max(length, 1)  # no backward: only the first (zero) state is saved
        has_z = z is not None
        u_l, z_l = _ld(u), _ld(z) if has_z else None
        dt = _delta(delta, delta_bias, softplus)[1]
        D_ = D.float().contiguous() if D is not None else u_l.new_zeros(dim)
        A_ = A.float().contiguous()
        out = torch.empty_like(u_l)
        states = u_l.new_empty(batch, -(-length // chunk), n_state, dim)
        last = u_l.new_empty(batch, dim, n_state)
        _set_threads()
        _forward_kernel(_np(u_l), _np(dt), _np(z_l if has_z else u_l), _np(D_), _np(A_), _np(Bm), _np(Cm), has_z,
                        dim // groups, chunk, _np(out), _np(states), _np(last))
        if need_grad:
            ctx.save_for_backward(u, delta, delta_bias, z, D_, A_, Bm, Cm, states)
        ctx.chunk, ctx.softplus, ctx.has_d = chunk, softplus, D is not None
        ctx.set_materialize_grads(False)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, delta_bias, z, D, A, Bm, Cm, states = ctx.saved_tensors
        batch, dim, length = u.shape
        n_state, groups = A.shape[1], Bm.shape[1]
        cpg = dim // groups
        parts = min(PARTS, groups * -(-cpg // LANES))
        has_z = z is not None
        u_l, z_l = _ld(u), _ld(z) if has_z else None
        raw, dt = _delta(delta, delta_bias, ctx.softplus)
        dout = torch.zeros_like(u_l) if dout is None else dout.float().contiguous()
        dlast = u_l.new_zeros(batch, dim, n_state) if dlast is None else dlast.float().contiguous()
        du, ddt = torch.empty_like(u_l), torch.empty_like(u_l)
        dz = torch.empty_like(u_l) if has_z else du  # a placeholder never written
        dD, dA = u_l.new_empty(batch, dim), u_l.new_empty(batch, dim, n_state)
        dB = u_l.new_zeros(batch, parts, groups, length, n_state)
        dC = torch.zeros_like(dB)
        _set_threads()
        _backward_kernel(_np(u_l), _np(dt), _np(z_l if has_z else u_l), _np(D), _np(A), _np(Bm), _np(Cm),
                         _np(states), _np(dout), _np(dlast), has_z, cpg, ctx.chunk, parts,
                         _np(du), _np(ddt), _np(dz), _np(dD), _np(dA), _np(dB), _np(dC))
        if ctx.softplus:
            ddt = ddt * torch.sigmoid(raw)
        dbias = ddt.sum((0, 1)) if delta_bias is not None else None
        return (_grad_like(du, u), _grad_like(ddt, delta), dbias, _grad_like(dz, z) if has_z else None,
                dD.sum(0) if ctx.has_d else None, dA.sum(0), dB.sum(1), dC.sum(1), None, None)


def _bc_view(t: Tensor, groups: int) -> Tensor:
    """B or C ([B, N, L] or [B, G, N, L]) as float32 [B, groups, L, N] with the N values of a step
    adjacent (Mamba's x_proj output already is, up to its row stride); a shared one expanded (no copy)."""
    t = t.float()
    t = t.unsqueeze(1) if t.dim() == 3 else t
    t = t.transpose(2, 3)
    return (t if t.stride(3) == 1 else t.contiguous()).expand(-1, groups, -1, -1)


def selective_scan_fn(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    chunk: int = CHUNK,
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's ``selective_scan_fn`` on CPU tensors: out [B, D, L] (and the last state [B, D, N], float32).

    ``chunk`` (steps between the states saved for backward) trades memory only: the work is the same.
    """
    if u.device.type != "cpu":
        raise ValueError("the Numba selective scan runs on CPU tensors")
    if A.is_complex():
        raise NotImplementedError("complex A is not supported")
    if u.dtype == torch.float64:
        raise ValueError("the Numba selective scan computes in float32; use the torch backend for float64")
    groups = max(t.shape[1] if t.dim() == 4 else 1 for t in (B, C))
    out, last = _Scan.apply(u, delta, delta_bias, z, D, A, _bc_view(B, groups), _bc_view(C, groups),
                            bool(delta_softplus), max(1, int(chunk)))
    out = out.transpose(1, 2).to(u.dtype)  # [B, D, L], a view of [B, L, D] memory as Mamba's out_proj wants it
    return (out, last) if return_last_state else out
