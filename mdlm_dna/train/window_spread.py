"""The standard error of a held-out figure over its windows, accumulated like the figure itself (across batches
and devices).

A split's NELBO is a mean over windows of a Monte-Carlo estimate per window; the spread of the per-window values
(each averaged over its noise draws) says how far the figure would move with other windows and other draws: the
"+-" that lets two models, or a model and a Markov chain, be compared. Windows of a split have one length, so
the mean of the per-window values is the split's figure (up to windows with N bases, which weigh a little less in
the figure).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class WindowSpread(Metric):
    """Sum, sum of squares and count of per-window values; ``compute()`` -> standard error of their mean.

    >>> m = WindowSpread()
    >>> m.update(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    >>> round(float(m.compute()), 4)  # sd 1.291 / sqrt(4)
    0.6455
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("total", "total_sq", "count"):
            self.add_state(name, default=torch.tensor(0.0), dist_reduce_fx="sum")  # float32: MPS has no float64

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().float().flatten()
        self.total += values.sum()
        self.total_sq += (values**2).sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        if self.count < 2:
            return torch.tensor(float("nan"))
        mean = self.total / self.count
        var = (self.total_sq - self.count * mean**2).clamp_min(0) / (self.count - 1)
        return (var / self.count).sqrt()
