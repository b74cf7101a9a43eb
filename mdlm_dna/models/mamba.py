"""The Mamba mixer and its bidirectional wrapper.

``Mamba`` has exactly the parameters of mamba-ssm's ``mamba_ssm.modules.mamba_simple.Mamba`` (names,
shapes and initialisation), so state dicts move between the two; the computation runs through
``selective_scan`` and ``causal_conv1d``, which use mamba-ssm's kernels only when they work.
``BiMamba`` runs one Mamba forward and one on the reversed sequence and adds them, as Caduceus's
``BiMambaWrapper`` (Schiff et al. 2024), whose parameter names it keeps (``mamba_fwd``, ``mamba_rev``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .selective_scan import causal_conv1d, selective_scan


class Mamba(nn.Module):
    """Selective SSM mixer: [B, L, d_model] -> [B, L, d_model]."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        # the Conv1d module is kept for its parameters (weight [d_inner, 1, d_conv]), as in mamba-ssm
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

        # dt_proj: weights keep dt's variance at init; the bias is softplus^-1 of dt ~ LogUniform[min, max]
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant'; got {dt_init!r}")
        dt = torch.exp(
            torch.rand(self.d_inner, device=device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # the backbone's init zeroes every other Linear bias

        # S4D-real initialisation A = -(1..N) per channel, stored as log; D = 1 (skip); both in float32
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.out_proj(self.ssm(self.in_proj(hidden_states)))

    def ssm(self, xz: Tensor) -> Tensor:
        """Everything between the two projections: xz [B, L, 2*d_inner] -> y [B, L, d_inner].

        Split out so that BiMamba with tied projections can run in_proj/out_proj once for both directions.
        """
        x, z = xz.transpose(1, 2).chunk(2, dim=1)  # [B, d_inner, L] each
        x = causal_conv1d(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
        x_dbl = self.x_proj(x.transpose(1, 2))  # [B, L, dt_rank + 2N]
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # bias goes in as delta_bias, in float32
        A = -torch.exp(self.A_log.float())
        y = selective_scan(
            x, dt, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z=z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True, backend=self.scan_backend,
        )
        return y.transpose(1, 2)


class BiMamba(nn.Module):
    """A Mamba on the sequence plus a Mamba on the reversed sequence, flipped back and combined.

    With ``weight_tie`` the two share in_proj and out_proj (most of the parameters), as Caduceus does;
    ``mamba_rev.in_proj``/``out_proj`` are then the very same Parameters, so both names appear in the
    state dict. ``bidirectional=False`` gives a plain (causal) Mamba under the same names.
    """

    def __init__(self, d_model: int, bidirectional: bool = True, strategy: str = "add",
                 weight_tie: bool = True, **mamba_kwargs):
        super().__init__()
        if strategy not in ("add", "ew_multiply"):
            raise ValueError(f"bidirectional_strategy must be 'add' or 'ew_multiply'; got {strategy!r}")
        self.bidirectional, self.strategy, self.weight_tie = bidirectional, strategy, weight_tie
        self.mamba_fwd = Mamba(d_model, **mamba_kwargs)
        self.mamba_rev = Mamba(d_model, **mamba_kwargs) if bidirectional else None
        if bidirectional and weight_tie:
            self.mamba_rev.in_proj = self.mamba_fwd.in_proj
            self.mamba_rev.out_proj = self.mamba_fwd.out_proj

    def forward(self, hidden_states: Tensor) -> Tensor:
        if self.mamba_rev is None:
            return self.mamba_fwd(hidden_states)
        if self.weight_tie and self.strategy == "add":
            # in_proj and out_proj act per position, so they commute with the flip: run each once
            fwd, rev = self.mamba_fwd, self.mamba_rev
            xz = fwd.in_proj(hidden_states)
            y = fwd.ssm(xz) + rev.ssm(xz.flip(1)).flip(1)
            out = F.linear(y, fwd.out_proj.weight)
            return out if fwd.out_proj.bias is None else out + 2 * fwd.out_proj.bias
        out_fwd = self.mamba_fwd(hidden_states)
        out_rev = self.mamba_rev(hidden_states.flip(1)).flip(1)
        return out_fwd + out_rev if self.strategy == "add" else out_fwd * out_rev
