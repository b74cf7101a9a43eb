"""Learning-rate factors for ``torch.optim.lr_scheduler.LambdaLR``."""

from __future__ import annotations

import math
from functools import partial

SCHEDULES = ("constant", "cosine")


def _warmup_then(step: int, warmup: int, total: int, min_ratio: float, decay: str, warmup_offset: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + warmup_offset)
    if decay == "cosine":
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return 1.0


def warmup_schedule(warmup: int, total: int, min_ratio: float = 0.1, decay: str = "cosine", warmup_offset: int = 0):
    """Linear warm-up over ``warmup`` steps (reaching ``warmup / (warmup + warmup_offset)``), then constant or
    a cosine decay to ``min_ratio`` at step ``total``."""
    if decay not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {decay!r}")
    return partial(_warmup_then, warmup=warmup, total=total, min_ratio=min_ratio, decay=decay,
                   warmup_offset=warmup_offset)
