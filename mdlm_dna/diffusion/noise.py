"""Noise schedules for absorbing-state diffusion: alpha(t) = P(token still unmasked at time t).

A schedule knows alpha(t) and its derivative on t in [0, 1], with alpha(0) = 1
and alpha(1) close to 0. The MDLM loss weight -alpha'(t) / (1 - alpha(t)) and
the conditioning signal sigma(t) = -log alpha(t) follow from those two. Each
schedule computes 1 - alpha(t) directly where cancellation would lose digits
near t = 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


class NoiseSchedule(ABC):
    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor: ...

    def one_minus_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.alpha(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Total noise -log alpha(t): what time-conditioned backbones see."""
        return -torch.log(self.alpha(t))

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """-alpha'(t) / (1 - alpha(t)), the weight of each masked token's cross-entropy."""
        return -self.alpha_prime(t) / self.one_minus_alpha(t)


class LogLinear(NoiseSchedule):
    """alpha(t) = 1 - (1 - eps) t: sigma(t) = -log(1 - (1 - eps) t), the MDLM default."""

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def alpha(self, t):
        return 1.0 - (1.0 - self.eps) * t

    def alpha_prime(self, t):
        return torch.full_like(t, -(1.0 - self.eps))

    def one_minus_alpha(self, t):
        return (1.0 - self.eps) * t

    def sigma(self, t):
        return -torch.log1p(-(1.0 - self.eps) * t)


class Cosine(NoiseSchedule):
    """alpha(t) = eps + (1 - eps) cos(pi t / 2)."""

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def alpha(self, t):
        return self.eps + (1.0 - self.eps) * torch.cos(0.5 * math.pi * t)

    def alpha_prime(self, t):
        return -(1.0 - self.eps) * 0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def one_minus_alpha(self, t):
        # 1 - cos(x) = 2 sin^2(x / 2), exact near t = 0
        return (1.0 - self.eps) * 2.0 * torch.sin(0.25 * math.pi * t) ** 2


class Geometric(NoiseSchedule):
    """sigma(t) = sigma_min^(1-t) sigma_max^t, alpha = exp(-sigma) (the SEDD / MDLM geometric schedule)."""

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.log_ratio = math.log(sigma_max / sigma_min)

    def sigma(self, t):
        return self.sigma_min ** (1.0 - t) * self.sigma_max**t

    def alpha(self, t):
        return torch.exp(-self.sigma(t))

    def alpha_prime(self, t):
        s = self.sigma(t)
        return -s * self.log_ratio * torch.exp(-s)

    def one_minus_alpha(self, t):
        return -torch.expm1(-self.sigma(t))


SCHEDULES = {"loglinear": LogLinear, "cosine": Cosine, "geometric": Geometric}


def build_schedule(name: str, **kwargs) -> NoiseSchedule:
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)
