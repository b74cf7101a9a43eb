"""The Mamba-1 selective scan on CPUs: Numba kernels, forward and backward, in O(B·D·N) working memory.

Same arguments, shapes and semantics as mamba-ssm's ``selective_scan_fn`` (and ``triton_scan.py``):
``delta_bias`` and softplus on delta, the ``D`` skip, ``z`` gating by silu, B/C of shape [B, N, L] or
grouped [B, G, N, L]; float32 compute and state for float32 / bfloat16 / float16 inputs.

Why this shape of code. The recurrence h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t is sequential in L
but independent across channels, and a CPU core is fastest walking L once with the state in cache and
SIMD lanes across channels. So the kernels take a block of ``LANES`` (32) channels of one batch row at a
time, hold its [N, LANES] state and step through L, ``chunk`` (64) steps at a time: a chunk's u, delta and z
are first copied into [chunk, LANES] tiles, from either memory layout as it comes ([B, D, L], like the
conv output u, or [B, L, D], like Mamba's delta and z: torch never copies a tensor into another layout),
delta's bias and softplus and z's gate are done over whole tiles, and the step loop reads the tiles.

Every inner loop runs over the lanes with a fixed trip count, which LLVM turns into vector code, given a few
things: ``_exp`` written with a polynomial and bit operations (Numba's ``math.exp`` is a scalar libm call;
its rounding by a magic-number addition, not a compare and conversions); the per-block helpers compiled
with their arrays marked ``noalias`` (else LLVM guards the short lane loops with overlap checks and leaves
them scalar); ``error_model="numpy"`` (no zero-division branch in the gate's divisions); and the sums over
lanes (dB, dC) over a trip count LLVM cannot see, because a constant one is unrolled into a chain of
dependent scalar FMAs. Blocks of all batch rows run in parallel (``prange``) on Numba's threads, as many as
``torch.get_num_threads()``.

Memory. Nothing of size [B, D, N, L] is made: the forward pass keeps only the state entering every
``chunk`` steps ([B, L/chunk, N, D] float32, 1/4 of a float32 [B, D, L] tensor at N = 16 and 64-step
chunks), as our Triton kernel does on GPUs; the backward pass walks the chunks in reverse, recomputes
each chunk's states, decays and outputs from its entry state into per-block buffers (about 0.3 MB), and
runs the adjoint recurrence g_t = C_t dy_t + a_{t+1} g_{t+1} backwards through them. The gradients of B
and C, shared by the channels of a group, are summed per block and added into one of ``PARTS`` (at most
8) partial sums per batch row, which torch adds up: a fixed order, so the results do not depend on the
number of threads, and every batch row is computed alone (Caduceus-PS stays exactly RC-equivariant).
Autograd keeps only the inputs (which the network holds anyway) and the chunk states; gradients are
written in their input's memory layout.

Numba compiles the kernels when this module is first imported (one signature each; ``cache=True`` keeps
the machine code on disk next to this file, or in Numba's user cache when that is read-only): about
10-25 s once, 1-2 s for later processes. Importing this module needs numba; ``selective_scan`` falls
back to the torch backend when it cannot.
"""

from __future__ import annotations

import logging
import math
import os

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.extending import intrinsic
from torch import Tensor

from mdlm_dna.utils.numba_threads import set_numba_threads, use_workqueue_threads


def _prefer_512_bit_vectors() -> None:
    """Let LLVM use 512-bit vectors on AVX-512 CPUs: by default it keeps to 256 bits there ("prefer-256-bit",
    against the clock slow-down of early AVX-512 chips), which leaves these FP-bound kernels ~20 % slower
    (measured on an AVX-512 Xeon: one layer forward 5.9 -> 4.5 ms, backward 12 -> 10 ms). Numba's CPU features
    are per process and read when its code generator starts, so this only applies if nothing compiled with
    Numba before this module and the user has not set NUMBA_CPU_FEATURES (which then wins);
    ``MDLM_DNA_NUMBA_256=1`` keeps Numba's default.

    It is done here, when the kernels are compiled (this module is imported lazily, on the first CPU scan of a
    Mamba-family model), and nowhere else; but Numba reads the setting once per process, so any Numba code compiled
    later in the same process also prefers 512-bit vectors. That is logged (INFO) and documented in the README."""
    if numba.config.CPU_FEATURES is not None or os.environ.get("MDLM_DNA_NUMBA_256") == "1":
        return
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features().flatten()
    except Exception:  # no way to ask: keep Numba's default
        return
    if "+avx512f" in features.split(","):
        numba.config.CPU_FEATURES = features + ",-prefer-256-bit"
        logging.getLogger(__name__).info(
            "Numba set to prefer 512-bit vectors for this process (faster CPU scan on AVX-512; applies to any Numba "
            "code compiled later too); MDLM_DNA_NUMBA_256=1 or NUMBA_CPU_FEATURES keeps your own setting")


_prefer_512_bit_vectors()


use_workqueue_threads()  # the layer is fixed before any kernel runs

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


@intrinsic
def _float32_bits(typingctx, value):
    """The bit pattern of a float32 as an int32 (LLVM bitcast: vectorises)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


_MAGIC = np.float32(1.5 * 2**23)  # x + _MAGIC rounds x to an integer (|x| < 2^22), which sits in the low bits
_MAGIC_BITS = np.int32(0x4B400000)  # the bit pattern of _MAGIC


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _exp(x):
    """exp of a float32, clamped to [_EXP_MIN, _EXP_MAX]: within 2 ulp of expf (Cephes' polynomial).

    k = round(x / ln 2) by the magic-number addition, whose bits also hold k as an integer: no compare,
    select or conversions (20 % of the kernels' time went there). No reassociation here: the rounding and
    the two-part reduction x - k ln2 must keep their order.
    """
    x = min(max(x, _EXP_MIN), _EXP_MAX)
    kr = x * _LOG2E + _MAGIC
    kf = kr - _MAGIC
    r = x - kf * _LN2_HI - kf * _LN2_LO  # |r| <= ln2 / 2
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    p = p * r * r + r + _ONE
    return p * _bits_as_float32((_float32_bits(kr) - _MAGIC_BITS + 127) << 23)  # times 2^k, k in [-63, 127]


_L0, _L1, _L2 = np.float32(7.0376836292e-2), np.float32(-1.1514610310e-1), np.float32(1.1676998740e-1)
_L3, _L4, _L5 = np.float32(-1.2420140846e-1), np.float32(1.4249322787e-1), np.float32(-1.6668057665e-1)
_L6, _L7, _L8 = np.float32(2.0000714765e-1), np.float32(-2.4999993993e-1), np.float32(3.3333331174e-1)
_SQRT2 = np.float32(1.4142135623730951)


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _log1p_unit(y):
    """log(1 + y) for y in [0, 1] (Cephes' logf polynomial on 1 + y, then Goldberg's correction for the
    rounding of 1 + y): within a few ulp, branch-free, so that it vectorises."""
    m = _ONE + y
    big = m > _SQRT2
    f = (m * _HALF if big else m) - _ONE  # in [sqrt(2)/2 - 1, sqrt(2) - 1]
    z = f * f
    p = ((((((((_L0 * f + _L1) * f + _L2) * f + _L3) * f + _L4) * f + _L5) * f + _L6) * f + _L7) * f + _L8) * f * z
    e = _ONE if big else _F0
    log_m = f + (p - _HALF * z + e * _LN2_LO) + e * _LN2_HI
    d = m - _ONE  # exact
    return y if d == _F0 else log_m * (y / d)


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), as torch's softplus (which returns x itself past 20: the
    same float32 there)."""
    return max(x, _F0) + _log1p_unit(_exp(-abs(x)))


class _NoAliasCompiler(CompilerBase):
    """Numba's nopython pipeline with every array argument marked ``noalias`` (as Numba marks its parfor
    bodies). Without it LLVM must guard the lane loops with overlap checks between the many small
    arrays, finds them too costly for 16 iterations and leaves the loops scalar (4-8x slower)."""

    def define_pipelines(self):
        self.state.flags.noalias = True
        return [DefaultPassBuilder.define_nopython_pipeline(self.state)]


def _lane_jit(fn=None, **options):
    """For the per-block helpers: their array arguments never overlap. ``error_model="numpy"``: no
    zero-division checks, whose branches would keep the gate's divisions scalar."""
    if fn is None:
        return lambda f: _lane_jit(f, **options)
    return njit(cache=True, fastmath=_FASTMATH, error_model="numpy", pipeline_class=_NoAliasCompiler,
                **options)(fn)


@_lane_jit
def _tile_in(src, ld, base, t0, rows, d0, w, length, dim, tile):
    """Steps t0 .. t0+rows-1 of channels d0 .. d0+w-1 of a flat [L, D] (``ld``) or [D, L] array (one batch row
    from ``base`` on) into tile[:rows, :w]. Both branches read memory in order, so torch never has to copy
    Mamba's tensors into another layout (u comes as [B, D, L], delta and z as views of [B, L, D])."""
    if ld:
        for i in range(rows):
            row = base + (t0 + i) * dim + d0
            for c in range(w):
                tile[i, c] = src[row + c]
    else:
        for c in range(w):
            col = base + (d0 + c) * length + t0
            for i in range(rows):
                tile[i, c] = src[col + i]


@_lane_jit
def _tile_out(dst, ld, base, t0, rows, d0, w, length, dim, tile):
    """The inverse of ``_tile_in``: tile[:rows, :w] into the flat array."""
    if ld:
        for i in range(rows):
            row = base + (t0 + i) * dim + d0
            for c in range(w):
                dst[row + c] = tile[i, c]
    else:
        for c in range(w):
            col = base + (d0 + c) * length + t0
            for i in range(rows):
                dst[col + i] = tile[i, c]


@_lane_jit
def _delta_tile(raw_t, dt_t, rows, bias_l, softplus):
    """dt = softplus(raw + bias) (or raw + bias) over a tile, in vector code."""
    if softplus:
        for i in range(rows):
            for c in range(LANES):
                dt_t[i, c] = _softplus(raw_t[i, c] + bias_l[c])
    else:
        for i in range(rows):
            for c in range(LANES):
                dt_t[i, c] = raw_t[i, c] + bias_l[c]


@_lane_jit
def _forward_block(u, raw, z, out, ld_u, ld_raw, ld_z, base, b_g, c_g, states, last, a_blk, d_l, bias_l, h,
                   u_t, raw_t, dt_t, z_t, y_t, x_l, y_l, d0, w, chunk, has_z, softplus, save):
    """Channels d0 .. d0+w-1 of one batch row through all L steps, ``chunk`` steps at a time (lanes past w are
    padding: A = 0, u = 0, so decay 1, no input, state 0).

    u, raw (delta before bias and softplus), z: flat [B, L, D] (ld_*) or [B, D, L] arrays, this row from
    ``base`` on; out: flat [B, L, D]; b_g, c_g: [L, N] of this block's group; states: [L/chunk, N, D] (written
    when ``save``); last: [D, N]; a_blk: [N, LANES] = A of the lanes; d_l, bias_l: D and delta's bias of the
    lanes; h: the [N, LANES] state (zero on entry); *_t: [chunk, LANES] tiles; x_l, y_l: [LANES].
    """
    length, dim = b_g.shape[0], states.shape[2]
    n_state = h.shape[0]
    for k in range((length + chunk - 1) // chunk):
        t0 = k * chunk
        rows = min(length, t0 + chunk) - t0
        if save:
            for n in range(n_state):
                for c in range(w):
                    states[k, n, d0 + c] = h[n, c]
        _tile_in(u, ld_u, base, t0, rows, d0, w, length, dim, u_t)
        _tile_in(raw, ld_raw, base, t0, rows, d0, w, length, dim, raw_t)
        _delta_tile(raw_t, dt_t, rows, bias_l, softplus)
        for i in range(rows):
            for c in range(LANES):
                x_l[c] = dt_t[i, c] * u_t[i, c]
                y_l[c] = d_l[c] * u_t[i, c]  # the D skip
            for n in range(n_state):
                b_n, c_n = b_g[t0 + i, n], c_g[t0 + i, n]
                for c in range(LANES):
                    h_new = _exp(dt_t[i, c] * a_blk[n, c]) * h[n, c] + x_l[c] * b_n
                    h[n, c] = h_new
                    y_l[c] += c_n * h_new
            for c in range(LANES):
                y_t[i, c] = y_l[c]
        if has_z:
            _tile_in(z, ld_z, base, t0, rows, d0, w, length, dim, z_t)
            for i in range(rows):
                for c in range(LANES):
                    y_t[i, c] *= z_t[i, c] / (_ONE + _exp(-z_t[i, c]))
        _tile_out(out, True, base, t0, rows, d0, w, length, dim, y_t)
    for n in range(n_state):
        for c in range(w):
            last[d0 + c, n] = h[n, c]


@_lane_jit
def _backward_block(u, raw, z, dout, du, draw, dz, ld_u, ld_raw, ld_z, ld_dout, base, b_g, c_g, states, db_g,
                    dc_g, a_blk, d_l, bias_l, gc, da_acc, dd_acc, dbias_acc, hs, decays, ys, g_buf,
                    u_t, raw_t, dt_t, z_t, dy_t, du_t, ddt_t, x_l, dx_l, ddt_l, d0, w, chunk, has_z, softplus,
                    lanes):
    """The adjoint of ``_forward_block`` for one block, chunk by chunk from the end: recompute the chunk's
    decays, states and outputs from its saved entry state, then step backwards with
    g_t = dL/dh_t = C_t dy_t + a_{t+1} g_{t+1} (``gc`` carries a_{t+1} g_{t+1}; it enters holding
    dL/d(last state)).

    Arrays as ``_forward_block``, plus dout, du, draw (the gradient of raw delta: through the softplus), dz:
    flat, du / draw / dz in the layouts of u / raw / z; db_g, dc_g: [L, N] partial sums of this block's part;
    gc, da_acc: [N, LANES]; dd_acc, dbias_acc: [LANES]; hs: [chunk + 1, N, LANES] (hs[i + 1]: the state after
    step t0 + i); decays: [chunk, N, LANES]; ys: [chunk, LANES] (<C_t, h_t>, for dz); g_buf: [N, LANES];
    *_t: [chunk, LANES] tiles; x_l, dx_l, ddt_l: [LANES]; lanes: LANES, as a value (see the lane sums).
    """
    length, dim = b_g.shape[0], states.shape[2]
    n_state = gc.shape[0]
    for k in range((length + chunk - 1) // chunk - 1, -1, -1):
        t0 = k * chunk
        rows = min(length, t0 + chunk) - t0
        for n in range(n_state):
            for c in range(w):
                hs[0, n, c] = states[k, n, d0 + c]
        _tile_in(u, ld_u, base, t0, rows, d0, w, length, dim, u_t)
        _tile_in(raw, ld_raw, base, t0, rows, d0, w, length, dim, raw_t)
        _delta_tile(raw_t, dt_t, rows, bias_l, softplus)
        for i in range(rows):  # recompute
            for c in range(LANES):
                x_l[c] = dt_t[i, c] * u_t[i, c]
                ys[i, c] = _F0
            for n in range(n_state):
                b_n, c_n = b_g[t0 + i, n], c_g[t0 + i, n]
                for c in range(LANES):
                    a_t = _exp(dt_t[i, c] * a_blk[n, c])
                    decays[i, n, c] = a_t
                    h_new = a_t * hs[i, n, c] + x_l[c] * b_n
                    hs[i + 1, n, c] = h_new
                    ys[i, c] += c_n * h_new
        # the gate: d out -> dy (of the scan's output plus the D skip), dz
        _tile_in(dout, ld_dout, base, t0, rows, d0, w, length, dim, dy_t)
        if has_z:
            _tile_in(z, ld_z, base, t0, rows, d0, w, length, dim, z_t)
            for i in range(rows):
                for c in range(LANES):
                    zz = z_t[i, c]
                    sig = _ONE / (_ONE + _exp(-zz))
                    g_out = dy_t[i, c]
                    dy_t[i, c] = g_out * zz * sig
                    z_t[i, c] = g_out * (ys[i, c] + d_l[c] * u_t[i, c]) * sig * (_ONE + zz * (_ONE - sig))  # dz
            _tile_out(dz, ld_z, base, t0, rows, d0, w, length, dim, z_t)
        for i in range(rows - 1, -1, -1):  # the adjoint
            t = t0 + i
            for c in range(LANES):
                x_l[c] = dt_t[i, c] * u_t[i, c]
                dx_l[c] = _F0  # d / d(delta u)
                ddt_l[c] = _F0  # d / d(delta) through the decays
            for n in range(n_state):
                b_n, c_n = b_g[t, n], c_g[t, n]
                for c in range(LANES):
                    g_t = c_n * dy_t[i, c] + gc[n, c]
                    a_t = decays[i, n, c]
                    g_buf[n, c] = g_t
                    dx_l[c] += g_t * b_n
                    s = g_t * hs[i, n, c] * a_t
                    ddt_l[c] += s * a_blk[n, c]
                    da_acc[n, c] += s * dt_t[i, c]
                    gc[n, c] = a_t * g_t
            # sums over the lanes, over a trip count LLVM cannot see (``lanes`` = LANES, passed from Python): a
            # constant one gets the loop unrolled into a chain of dependent scalar FMAs (3x slower); a runtime
            # one gets the loop vectorizer's reduction (vector accumulators, one horizontal sum)
            for n in range(n_state):
                sum_b = _F0
                sum_c = _F0
                for c in range(lanes):
                    sum_b += g_buf[n, c] * x_l[c]
                    sum_c += dy_t[i, c] * hs[i + 1, n, c]
                db_g[t, n] += sum_b
                dc_g[t, n] += sum_c
            for c in range(LANES):
                du_t[i, c] = dy_t[i, c] * d_l[c] + dx_l[c] * dt_t[i, c]
                ddt_t[i, c] = ddt_l[c] + dx_l[c] * u_t[i, c]
        for i in range(rows):
            for c in range(LANES):
                dd_acc[c] += dy_t[i, c] * u_t[i, c]
            if softplus:  # through the softplus: times sigmoid(raw + bias)
                for c in range(LANES):
                    ddt_t[i, c] *= _ONE / (_ONE + _exp(-(raw_t[i, c] + bias_l[c])))
            for c in range(LANES):
                dbias_acc[c] += ddt_t[i, c]
        _tile_out(du, ld_u, base, t0, rows, d0, w, length, dim, du_t)
        _tile_out(draw, ld_raw, base, t0, rows, d0, w, length, dim, ddt_t)


@njit(cache=True, error_model="numpy")
def _block(blk, blocks_per_group, cpg):
    """Block index -> (group, first channel, channels in it): blocks never straddle two groups of B/C."""
    g = blk // blocks_per_group
    d0 = g * cpg + (blk % blocks_per_group) * LANES
    return g, d0, min(LANES, (g + 1) * cpg - d0)


@njit(cache=True, error_model="numpy")
def _lanes(vec, d0, w):
    """A per-channel vector's values for the block's lanes (zero past w)."""
    out = np.zeros(LANES, np.float32)
    for c in range(w):
        out[c] = vec[d0 + c]
    return out


@njit(cache=True, error_model="numpy")
def _tile(chunk):
    return np.zeros((chunk, LANES), np.float32)


def _arr(ndim: int, layout: str = "C") -> types.Array:
    return types.Array(types.float32, ndim, layout)


# one signature each: compiled once (or loaded from the cache) when this module is imported, instead of
# once per combination of argument layouts. u, delta, z and their gradients are flat arrays with a flag for
# their layout ([B, L, D] or [B, D, L]); B and C may have a group axis expanded with stride 0 ("A").
_F1, _B, _I = _arr(1), types.boolean, types.int64
_FORWARD_SIG = types.void(_F1, _F1, _F1, _B, _B, _B, _F1, _F1, _arr(2), _arr(4, "A"), _arr(4, "A"), _B, _B, _B, _I,
                          _I, _F1, _arr(4), _arr(3))
_BACKWARD_SIG = types.void(_F1, _F1, _F1, _B, _B, _B, _F1, _F1, _arr(2), _arr(4, "A"), _arr(4, "A"), _arr(4), _F1,
                           _B, _arr(3), _B, _B, _I, _I, _I, _F1, _F1, _F1, _arr(2), _arr(2), _arr(3), _arr(5),
                           _arr(5), _I)


@njit(_FORWARD_SIG, parallel=True, cache=True, error_model="numpy")
def _forward_kernel(u, raw, z, ld_u, ld_raw, ld_z, bias, D, A, Bm, Cm, has_z, softplus, save, cpg, chunk, out,
                    states, last):
    """out = (<C_t, h_t> + D u) * silu(z) with delta = softplus(raw + bias) (or raw + bias), blocks of all
    batch rows in parallel.

    u, raw, z: flat [batch, L, D] (ld_*) or [batch, D, L]; bias, D: [D]; A: [D, N]; Bm, Cm: [batch, G, L, N];
    out: flat [batch, L, D]; states: [batch, L/chunk, N, D] (the state entering every chunk, when ``save``);
    last: [batch, D, N].
    """
    batch, length = Bm.shape[0], Bm.shape[2]
    dim, n_state = A.shape[0], A.shape[1]
    blocks_per_group = (cpg + LANES - 1) // LANES
    n_blocks = Bm.shape[1] * blocks_per_group
    for job in prange(batch * n_blocks):
        b = job // n_blocks
        g, d0, w = _block(job % n_blocks, blocks_per_group, cpg)
        a_blk = np.zeros((n_state, LANES), np.float32)
        for n in range(n_state):
            for c in range(w):
                a_blk[n, c] = A[d0 + c, n]
        _forward_block(u, raw, z, out, ld_u, ld_raw, ld_z, b * length * dim, Bm[b, g], Cm[b, g], states[b], last[b],
                       a_blk, _lanes(D, d0, w), _lanes(bias, d0, w), np.zeros((n_state, LANES), np.float32),
                       _tile(chunk), _tile(chunk), _tile(chunk), _tile(chunk), _tile(chunk),
                       np.zeros(LANES, np.float32), np.zeros(LANES, np.float32), d0, w, chunk, has_z, softplus,
                       save)


@njit(_BACKWARD_SIG, parallel=True, cache=True, error_model="numpy")
def _backward_kernel(u, raw, z, ld_u, ld_raw, ld_z, bias, D, A, Bm, Cm, states, dout, ld_dout, dlast, has_z,
                     softplus, cpg, chunk, parts, du, draw, dz, dD, dbias, dA, dB, dC, lanes):
    """Gradients of sum(dout * out) + sum(dlast * last) w.r.t. u, raw delta, z, D, delta's bias, A, Bm, Cm.

    Shapes as ``_forward_kernel``; dout: flat, layout ld_dout; du, draw, dz: flat, in the layouts of u, raw, z;
    dlast: [batch, D, N]; dD, dbias: [batch, D]; dA: [batch, D, N]; dB, dC: [batch, parts, G, L, N], zero on
    entry: each part (a fixed run of blocks) sums into its own, so that the result does not depend on the
    threads.
    """
    batch, length = Bm.shape[0], Bm.shape[2]
    dim, n_state = A.shape[0], A.shape[1]
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
            da_acc = np.zeros((n_state, LANES), np.float32)
            dd_acc = np.zeros(LANES, np.float32)
            dbias_acc = np.zeros(LANES, np.float32)
            _backward_block(u, raw, z, dout, du, draw, dz, ld_u, ld_raw, ld_z, ld_dout, b * length * dim, Bm[b, g],
                            Cm[b, g], states[b], dB[b, p, g], dC[b, p, g], a_blk, _lanes(D, d0, w),
                            _lanes(bias, d0, w), gc, da_acc, dd_acc, dbias_acc,
                            np.zeros((chunk + 1, n_state, LANES), np.float32),
                            np.zeros((chunk, n_state, LANES), np.float32), _tile(chunk),
                            np.zeros((n_state, LANES), np.float32), _tile(chunk), _tile(chunk), _tile(chunk),
                            _tile(chunk), _tile(chunk), _tile(chunk), _tile(chunk), np.zeros(LANES, np.float32),
                            np.zeros(LANES, np.float32), np.zeros(LANES, np.float32), d0, w, chunk, has_z, softplus,
                            lanes)
            for c in range(w):
                dD[b, d0 + c] = dd_acc[c]
                dbias[b, d0 + c] = dbias_acc[c]
                for n in range(n_state):
                    dA[b, d0 + c, n] = da_acc[n, c]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _flat(t: Tensor) -> tuple[np.ndarray, bool]:
    """A [B, D, L] tensor as a flat float32 array and whether its memory is [B, L, D] (True) or [B, D, L]:
    no copy for either layout (Mamba's u is the one, its delta and z the other); anything else is made
    contiguous."""
    t = t.detach().float()
    if t.transpose(1, 2).is_contiguous():
        return _np(t.transpose(1, 2).reshape(-1)), True
    return _np(t.contiguous().reshape(-1)), False


def _empty(shape: torch.Size, ld: bool) -> Tensor:
    """An uninitialised float32 [B, D, L] tensor with [B, L, D] (``ld``) or [B, D, L] memory."""
    batch, dim, length = shape
    return torch.empty(batch, length, dim).transpose(1, 2) if ld else torch.empty(batch, dim, length)


class _Scan(torch.autograd.Function):
    """The whole selective scan. u, delta, z [B, D, L] in any layout; delta_bias, D [D]; A [D, N]; B, C
    [B, G, L, N] float32 (a group axis expanded with stride 0 is fine). Returns out [B, L, D] and the last
    state [B, D, N].

    Saved for backward: the inputs themselves (which the rest of the network keeps anyway) and the chunk
    states. The kernels read and write [B, L, D] and [B, D, L] memory as it is, and do delta's bias and
    softplus (and, going back, their gradient) themselves: no layout copy and no elementwise pass in torch.
    """

    @staticmethod
    def forward(ctx, u, delta, delta_bias, z, D, A, Bm, Cm, softplus: bool, chunk: int):
        batch, dim, length = u.shape
        n_state, groups = A.shape[1], Bm.shape[1]
        need_grad = any(ctx.needs_input_grad[:8])
        has_z = z is not None
        zeros = u.new_zeros(dim, dtype=torch.float32)
        bias = delta_bias.float().contiguous() if delta_bias is not None else zeros
        D_ = D.float().contiguous() if D is not None else zeros
        A_ = A.float().contiguous()
        out = u.new_empty(batch, length, dim, dtype=torch.float32)
        # without backward only the last state is kept
        states = out.new_empty(batch, -(-length // chunk) if need_grad else 1, n_state, dim)
        last = out.new_empty(batch, dim, n_state)
        set_numba_threads()
        (u_f, ld_u), (raw_f, ld_raw) = _flat(u), _flat(delta)
        z_f, ld_z = _flat(z) if has_z else (u_f, ld_u)
        _forward_kernel(u_f, raw_f, z_f, ld_u, ld_raw, ld_z, _np(bias), _np(D_), _np(A_), _np(Bm), _np(Cm), has_z,
                        softplus, need_grad, dim // groups, chunk, _np(out.view(-1)), _np(states), _np(last))
        if need_grad:
            ctx.save_for_backward(u, delta, z, bias, D_, A_, Bm, Cm, states)
        ctx.chunk, ctx.softplus, ctx.has_d, ctx.has_bias = chunk, softplus, D is not None, delta_bias is not None
        ctx.set_materialize_grads(False)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, z, bias, D, A, Bm, Cm, states = ctx.saved_tensors
        batch, dim, length = u.shape
        n_state, groups = A.shape[1], Bm.shape[1]
        cpg = dim // groups
        parts = min(PARTS, groups * -(-cpg // LANES))
        has_z = z is not None
        (u_f, ld_u), (raw_f, ld_raw) = _flat(u), _flat(delta)
        z_f, ld_z = _flat(z) if has_z else (u_f, ld_u)
        dout = Bm.new_zeros(batch, length, dim) if dout is None else dout
        dout_f, ld_dout = _flat(dout.transpose(1, 2))
        dlast = Bm.new_zeros(batch, dim, n_state) if dlast is None else dlast.float().contiguous()
        # gradients in their input's layout: mixing [B, D, L] and [B, L, D] strides sends torch's elementwise
        # kernels down a slow path (rows 4 KiB apart at L = 1024), e.g. in the silu backward of Mamba's conv
        du, ddelta = _empty(u.shape, ld_u), _empty(u.shape, ld_raw)
        dz = _empty(u.shape, ld_z) if has_z else du  # a placeholder never written
        dD, dbias = Bm.new_empty(batch, dim), Bm.new_empty(batch, dim)
        dA = Bm.new_empty(batch, dim, n_state)
        dB = Bm.new_zeros(batch, parts, groups, length, n_state)
        dC = torch.zeros_like(dB)
        set_numba_threads()
        _backward_kernel(u_f, raw_f, z_f, ld_u, ld_raw, ld_z, _np(bias), _np(D), _np(A), _np(Bm), _np(Cm),
                         _np(states), dout_f, ld_dout, _np(dlast), has_z, ctx.softplus, cpg, ctx.chunk, parts,
                         _flat(du)[0], _flat(ddelta)[0], _flat(dz)[0], _np(dD), _np(dbias), _np(dA), _np(dB),
                         _np(dC), LANES)
        return (du.to(u.dtype), ddelta.to(delta.dtype), dbias.sum(0) if ctx.has_bias else None,
                dz.to(z.dtype) if has_z else None, dD.sum(0) if ctx.has_d else None, dA.sum(0), dB.sum(1),
                dC.sum(1), None, None)


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
