"""Exponential moving average of the weights, kept in float32 and saved with every checkpoint."""

from __future__ import annotations

import torch
from torch import nn


def warmed_up_decay(decay: float, num_updates: float) -> float:
    """min(decay, (1 + n) / (10 + n)) after n updates: early averages do not keep the initialisation.

    >>> warmed_up_decay(0.9999, 0)
    0.1
    """
    return min(decay, (1 + num_updates) / (10 + num_updates))


class EMA:
    """Shadow copy of a module's floating-point parameters.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so a
    short run (a few hundred CPU steps) does not evaluate weights that are
    still mostly the initialisation, while a long run gets the full decay.
    """

    def __init__(self, module: nn.Module, decay: float = 0.9999, warmup: bool = True):
        self.decay, self.warmup = decay, warmup
        self.num_updates = 0
        self.shadow = {n: p.detach().float().clone() for n, p in module.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return warmed_up_decay(self.decay, self.num_updates)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.current_decay()
        pairs = [(self.shadow[n], p) for n, p in module.named_parameters() if n in self.shadow]
        if len(pairs) != len(self.shadow):
            raise RuntimeError(
                f"EMA: the module's parameter names no longer match the EMA's ({len(pairs)} of {len(self.shadow)} "
                "found); was the model wrapped (FSDP) after the EMA was made?"
            )
        if pairs and pairs[0][0].device != pairs[0][1].device:
            for n, p in module.named_parameters():
                if n in self.shadow:
                    self.shadow[n] = self.shadow[n].to(p.device)
            pairs = [(self.shadow[n], p) for n, p in module.named_parameters() if n in self.shadow]
        # one fused kernel over all parameters instead of one small kernel per tensor
        torch._foreach_lerp_([s for s, _ in pairs], [p.detach().float() for _, p in pairs], 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def swap_in(self, module: nn.Module) -> None:
        """Give the module the EMA weights, keeping its training weights for :meth:`restore`."""
        params = dict(module.named_parameters())
        self._backup = {n: params[n].detach().clone() for n in self.shadow}
        self.copy_to(module)

    @torch.no_grad()
    def restore(self, module: nn.Module) -> None:
        """Put back the training weights saved by :meth:`swap_in` (nothing to do if none were saved)."""
        params = dict(module.named_parameters())
        for n, b in (getattr(self, "_backup", None) or {}).items():
            params[n].copy_(b)
        self._backup = None

    def copy_to(self, module: nn.Module) -> None:
        params = dict(module.named_parameters())
        with torch.no_grad():
            for n, s in self.shadow.items():
                params[n].copy_(s)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the model's parameters: {sorted(missing)[:5]}")
        self.num_updates = state["num_updates"]
        for n, s in state["shadow"].items():
            self.shadow[n] = s.to(self.shadow[n].device, torch.float32).clone()
