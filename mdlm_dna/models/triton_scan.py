"""The Mamba-1 selective scan as Triton kernels, forward and backward: no CUDA extension to compile.

Same arguments, shapes and fusions as mamba-ssm's ``selective_scan_fn``: ``delta_bias`` and softplus on
delta, the ``D`` skip, ``z`` gating by silu, B/C of shape [B, N, L] or grouped [B, G, N, L], float32 or
half precision inputs with float32 state and accumulation.

Layout of the work: one program per (batch row, block of ``block_d`` channels), holding the
[block_d, N] state in registers and walking L in tiles of ``chunk`` steps. Inside a tile, the
recurrence h_t = a_t h_{t-1} + b_t is solved by ``tl.associative_scan`` over the [block_d, N, chunk]
pairs (a, b), then the state entering the tile is added in, decayed. Only the state entering each tile
is saved ([B, L/chunk, D, N] in float32: 1/chunk of all the [B, D, N, L] states, N/chunk = 1/4 of a
float32 [B, D, L] tensor at N = 16 and 64-step tiles); the backward pass walks the tiles in reverse,
recomputes each tile's states from its saved entry state, and runs the adjoint recurrence
g_t = C_t dy_t + a_{t+1} g_{t+1} as a reverse associative scan. Gradients of the shared B and C are
summed over channels with float32 atomics (as mamba-ssm does), so they are not bit-reproducible; the
others are.

The kernels also run under Triton's CPU interpreter (``TRITON_INTERPRET=1`` set before triton is
imported), which is how the tests check them without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    """Compose x -> a1 x + b1, then x -> a2 x + b2: the first-order linear recurrence as a scan."""
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _softplus(x):
    """log(1 + e^x), and x itself above 20, as mamba-ssm."""
    return tl.where(x <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))), x)


@triton.jit
def _pick(x, idx, which):
    """x[..., which] for x [BD, BN, T]: Triton cannot index a register tensor, so mask and sum."""
    return tl.sum(tl.where(idx[None, None, :] == which, x, 0.0), axis=2)


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,  # inputs
    out_ptr, states_ptr, last_ptr,  # outputs
    dim, length, cpg,  # channels, L, channels per group of B/C
    s_ub, s_ud, s_bb, s_bg, s_bn,  # strides of u/delta/z/out [B, D, L] and of B/C [B, G, N, L]
    s_st, s_sd,  # strides of states [B, n_tiles, D, N] per tile and per channel (batch: n_tiles * s_st)
    N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    pid_b, pid_d = tl.program_id(0).to(tl.int64), tl.program_id(1)  # int64: offsets past 2**31 elements
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    idx_t = tl.arange(0, T)
    mask_d, mask_n = offs_d < dim, offs_n < N
    group = (pid_d * BLOCK_D) // cpg  # a block never straddles two groups (see _launch_config)
    n_tiles = tl.cdiv(length, T)

    dn_mask = mask_d[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    row = pid_b * s_ub + offs_d[:, None] * s_ud  # [BD, 1]
    bc_row = pid_b * s_bb + group * s_bg + offs_n[:, None] * s_bn  # [BN, 1]
    st_row = pid_b * n_tiles * s_st + offs_d[:, None] * s_sd + offs_n[None, :]  # [BD, BN]

    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for tile in range(0, n_tiles):
        offs_t = tile * T + idx_t
        mask_t = offs_t < length
        m = mask_d[:, None] & mask_t[None, :]
        bc_m = mask_n[:, None] & mask_t[None, :]
        tl.store(states_ptr + st_row + tile * s_st, h, mask=dn_mask)

        u = tl.load(u_ptr + row + offs_t[None, :], mask=m, other=0.0).to(tl.float32)
        dt = tl.load(delta_ptr + row + offs_t[None, :], mask=m, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias[:, None]
        if SOFTPLUS:
            dt = _softplus(dt)
        dt = tl.where(m, dt, 0.0)  # padding: decay 1 and no input, the state passes through
        Bt = tl.load(B_ptr + bc_row + offs_t[None, :], mask=bc_m, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + bc_row + offs_t[None, :], mask=bc_m, other=0.0).to(tl.float32)

        dA = tl.exp(dt[:, None, :] * A[:, :, None])  # [BD, BN, T]
        dBu = (dt * u)[:, None, :] * Bt[None, :, :]
        aa, bb = tl.associative_scan((dA, dBu), axis=2, combine_fn=_affine_combine)
        hs = aa * h[:, :, None] + bb
        y = tl.sum(hs * Ct[None, :, :], axis=1)  # [BD, T]
        h = _pick(hs, idx_t, T - 1)

        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            z = tl.load(z_ptr + row + offs_t[None, :], mask=m, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_ptr + row + offs_t[None, :], y.to(out_ptr.dtype.element_ty), mask=m)
    tl.store(last_ptr + (pid_b * dim + offs_d[:, None]) * N + offs_n[None, :], h, mask=dn_mask)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, states_ptr,  # forward inputs, saved states
    dout_ptr, dlast_ptr,  # incoming gradients
    du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr,  # gradients
    dim, length, cpg,
    s_ub, s_ud, s_bb, s_bg, s_bn, s_st, s_sd,
    s_gb, s_gg, s_gn,  # strides of the float32 dB/dC accumulators [B, G, N, L]
    N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_DLAST: tl.constexpr,
):
    pid_b, pid_d = tl.program_id(0).to(tl.int64), tl.program_id(1)  # int64: offsets past 2**31 elements
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    idx_t = tl.arange(0, T)
    mask_d, mask_n = offs_d < dim, offs_n < N
    group = (pid_d * BLOCK_D) // cpg
    n_tiles = tl.cdiv(length, T)

    dn_mask = mask_d[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    row = pid_b * s_ub + offs_d[:, None] * s_ud
    bc_row = pid_b * s_bb + group * s_bg + offs_n[:, None] * s_bn
    g_row = pid_b * s_gb + group * s_gg + offs_n[:, None] * s_gn
    st_row = pid_b * n_tiles * s_st + offs_d[:, None] * s_sd + offs_n[None, :]
    bd_off = pid_b * dim + offs_d  # [B, D] partial sums, reduced over the batch outside

    # adjoint state g_{t+1} entering each tile from the right (the last state's gradient at the end)
    if HAS_DLAST:
        g = tl.load(dlast_ptr + bd_off[:, None] * N + offs_n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    else:
        g = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for i in range(0, n_tiles):
        tile = n_tiles - 1 - i
        offs_t = tile * T + idx_t
        mask_t = offs_t < length
        m = mask_d[:, None] & mask_t[None, :]
        bc_m = mask_n[:, None] & mask_t[None, :]
        h0 = tl.load(states_ptr + st_row + tile * s_st, mask=dn_mask, other=0.0)

        u = tl.load(u_ptr + row + offs_t[None, :], mask=m, other=0.0).to(tl.float32)
        dt_raw = tl.load(delta_ptr + row + offs_t[None, :], mask=m, other=0.0).to(tl.float32)
        # delta one step ahead: a_{t+1} carries the adjoint from t+1 back to t (1 past the end)
        m_next = mask_d[:, None] & (offs_t + 1 < length)[None, :]
        dt_next = tl.load(delta_ptr + row + offs_t[None, :] + 1, mask=m_next, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt_raw += bias[:, None]
            dt_next += bias[:, None]
        dt = dt_raw
        if SOFTPLUS:
            dt = _softplus(dt_raw)
            dt_next = _softplus(dt_next)
        dt = tl.where(m, dt, 0.0)
        dt_next = tl.where(m_next, dt_next, 0.0)
        Bt = tl.load(B_ptr + bc_row + offs_t[None, :], mask=bc_m, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + bc_row + offs_t[None, :], mask=bc_m, other=0.0).to(tl.float32)

        # the tile's states again, from the saved entry state
        dA = tl.exp(dt[:, None, :] * A[:, :, None])
        dBu = (dt * u)[:, None, :] * Bt[None, :, :]
        aa, bb = tl.associative_scan((dA, dBu), axis=2, combine_fn=_affine_combine)
        hs = aa * h0[:, :, None] + bb  # [BD, BN, T]

        dout = tl.load(dout_ptr + row + offs_t[None, :], mask=m, other=0.0).to(tl.float32)
        if HAS_Z:
            y = tl.sum(hs * Ct[None, :, :], axis=1)
            if HAS_D:
                y += Dv[:, None] * u
            z = tl.load(z_ptr + row + offs_t[None, :], mask=m, other=0.0).to(tl.float32)
            sz = tl.sigmoid(z)
            dz = dout * y * sz * (1.0 + z * (1.0 - sz))
            tl.store(dz_ptr + row + offs_t[None, :], dz.to(dz_ptr.dtype.element_ty), mask=m)
            dy = dout * z * sz
        else:
            dy = dout
        dy = tl.where(m, dy, 0.0)

        # adjoint: g_t = C_t dy_t + a_{t+1} g_{t+1}, a reverse scan, plus the g entering from the right
        a_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
        pa, gg = tl.associative_scan((a_next, Ct[None, :, :] * dy[:, None, :]), axis=2,
                                     combine_fn=_affine_combine, reverse=True)
        gs = gg + pa * g[:, :, None]  # [BD, BN, T]
        g = _pick(gs, idx_t, 0)  # the earlier tile's last step reaches it through a_{t+1} (dt_next)

        gB = tl.sum(gs * Bt[None, :, :], axis=1)  # [BD, T]
        du = dt * gB
        if HAS_D:
            du += Dv[:, None] * dy
            dD_acc += tl.sum(dy * u, axis=1)
        # a_t h_{t-1} = h_t - dBu_t: no division by the decay, and no shifted copy of the states
        g_ah = gs * (hs - dBu)
        dA_acc += tl.sum(g_ah * dt[:, None, :], axis=2)
        ddt = u * gB + tl.sum(g_ah * A[:, :, None], axis=1)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(dt_raw)
        ddt = tl.where(m, ddt, 0.0)
        if HAS_BIAS:
            dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + row + offs_t[None, :], du.to(du_ptr.dtype.element_ty), mask=m)
        tl.store(ddelta_ptr + row + offs_t[None, :], ddt.to(ddelta_ptr.dtype.element_ty), mask=m)

        # B and C are shared by the channels of a group: sum this block's share, then atomically
        dBt = tl.sum(gs * (dt * u)[:, None, :], axis=0)  # [BN, T]
        dCt = tl.sum(hs * dy[:, None, :], axis=0)
        tl.atomic_add(dB_ptr + g_row + offs_t[None, :], dBt, mask=bc_m)
        tl.atomic_add(dC_ptr + g_row + offs_t[None, :], dCt, mask=bc_m)

    tl.store(dA_ptr + bd_off[:, None] * N + offs_n[None, :], dA_acc, mask=dn_mask)
    if HAS_D:
        tl.store(dD_ptr + bd_off, dD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_ptr + bd_off, dbias_acc, mask=mask_d)


# ----------------------------------------------------------------------------------------------------
# launch configuration


TILE_ELEMENTS = 1024  # [block_d, N, chunk] elements per tile: the backward kernel then fits in ~170 registers


def _launch_config(batch: int, dim: int, cpg: int | None, block_n: int, length: int, block_d: int | None,
                   chunk: int | None) -> tuple[int, int]:
    """(channels per program, steps per tile).

    Tiles of about TILE_ELEMENTS elements: ptxas (sm_90, 4 warps) gives the backward kernel 168 registers
    and no spills at 1024, and spills at 4096. At least 16 steps per tile (the saved states are N/chunk of
    all states), at most the next power of two above L; the rest goes to channels, as long as that
    leaves about 512 programs to fill the GPU. A block of channels never straddles two groups of B/C.
    """
    if chunk is None:
        chunk = min(64, max(16, triton.next_power_of_2(length)))
    if block_d is None:
        block_d = max(1, TILE_ELEMENTS // (block_n * chunk))
        while block_d > 1 and batch * triton.cdiv(dim, block_d) < 512:
            block_d //= 2
    for name, v in (("block_d", block_d), ("chunk", chunk)):
        if v < 1 or v & (v - 1):
            raise ValueError(f"{name} must be a power of two; got {v}")
    while cpg is not None and cpg % block_d:  # grouped B/C
        block_d //= 2
    return block_d, chunk


def _bc_view(t: Tensor) -> Tensor:
    """B or C as [B, G, N, L] (G = 1 for [B, N, L]) with unit stride over L."""
    t = t if t.stride(-1) == 1 else t.contiguous()
    return t.unsqueeze(1) if t.dim() == 3 else t


def _contig(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


class SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, block_d, chunk, num_warps):
        u, delta, z = _contig(u), _contig(delta), _contig(z)
        A = A.contiguous()
        D = D.contiguous() if D is not None else None
        delta_bias = delta_bias.contiguous() if delta_bias is not None else None
        batch, dim, length = u.shape
        n = A.shape[1]
        B4, C4 = _bc_view(B), _bc_view(C)
        groups = max(B4.shape[1], C4.shape[1])
        if C4.shape != B4.shape or C4.stride() != B4.stride():  # one group count and one set of strides
            B4, C4 = (t.expand(batch, groups, n, length).contiguous() for t in (B4, C4))
        cpg = dim // groups
        block_n = triton.next_power_of_2(n)
        bd, T = _launch_config(batch, dim, cpg if groups > 1 else None, block_n, length, block_d, chunk)
        n_tiles = triton.cdiv(length, T)
        out = torch.empty_like(u)
        states = u.new_empty(batch, n_tiles, dim, n, dtype=torch.float32)
        last = u.new_empty(batch, dim, n, dtype=torch.float32)
        grid = (batch, triton.cdiv(dim, bd))
        meta = dict(N=n, BLOCK_N=block_n, BLOCK_D=bd, T=T, HAS_D=D is not None, HAS_Z=z is not None,
                    HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus), num_warps=num_warps)
        _scan_fwd_kernel[grid](
            u, delta, A, B4, C4, D, z, delta_bias, out, states, last,
            dim, length, cpg, u.stride(0), u.stride(1), B4.stride(0), B4.stride(1), B4.stride(2),
            states.stride(1), states.stride(2), **meta,
        )
        ctx.save_for_backward(u, delta, A, B4, C4, D, z, delta_bias, states)
        ctx.meta, ctx.grid, ctx.groups, ctx.cpg = meta, grid, groups, cpg
        ctx.b_shape, ctx.c_shape, ctx.b_dtype, ctx.c_dtype = B.shape, C.shape, B.dtype, C.dtype
        ctx.set_materialize_grads(False)  # dlast stays None unless the last state is used
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B4, C4, D, z, delta_bias, states = ctx.saved_tensors
        batch, dim, length = u.shape
        n = A.shape[1]
        dout = _contig(dout) if dout is not None else torch.zeros_like(u)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = torch.empty_like(z) if z is not None else None
        dB = torch.zeros(batch, ctx.groups, n, length, device=u.device, dtype=torch.float32)
        dC = torch.zeros_like(dB)
        dA = u.new_empty(batch, dim, n, dtype=torch.float32)
        dD = u.new_empty(batch, dim, dtype=torch.float32) if D is not None else None
        dbias = u.new_empty(batch, dim, dtype=torch.float32) if delta_bias is not None else None
        dlast = dlast.contiguous() if dlast is not None else None
        _scan_bwd_kernel[ctx.grid](
            u, delta, A, B4, C4, D, z, delta_bias, states, dout, dlast,
            du, ddelta, dz, dB, dC, dA, dD, dbias,
            dim, length, ctx.cpg, u.stride(0), u.stride(1), B4.stride(0), B4.stride(1), B4.stride(2),
            states.stride(1), states.stride(2), dB.stride(0), dB.stride(1), dB.stride(2),
            HAS_DLAST=dlast is not None, **ctx.meta,
        )
        # [B, N, L] inputs were shared by every group: their gradient sums over the groups
        dB = (dB.sum(1) if len(ctx.b_shape) == 3 else dB).to(ctx.b_dtype)
        dC = (dC.sum(1) if len(ctx.c_shape) == 3 else dC).to(ctx.c_dtype)
        dA = dA.sum(0).to(A.dtype)
        dD = dD.sum(0).to(D.dtype) if D is not None else None
        dbias = dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None
        return du, ddelta, dA, dB, dC, dD, dz, dbias, None, None, None, None


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
    block_d: int | None = None,
    chunk: int | None = None,
    num_warps: int = 4,
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's ``selective_scan_fn`` in Triton: out [B, D, L] (and the last state [B, D, N], float32).

    ``block_d`` (channels per program), ``chunk`` (steps per tile; both powers of two) and ``num_warps``
    only tune speed; by default they follow the sizes (see ``_launch_config``).
    """
    if A.is_complex():
        raise NotImplementedError("complex A is not supported by the Triton selective scan")
    out, last = SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, block_d, chunk,
                                          num_warps)
    return (out, last) if return_last_state else out
