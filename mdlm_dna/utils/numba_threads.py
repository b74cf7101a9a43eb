"""Numba's threads beside torch's: which threading layer, and how many threads (used by every Numba kernel)."""

from __future__ import annotations

import os

import numba
import torch


def use_workqueue_threads() -> None:
    """Run Numba's ``prange`` loops on its own workqueue threads, not its OpenMP layer: the OpenMP pool's idle
    threads keep spinning beside torch's, and on the 2-core development machine torch's matrix products ran ~20x
    slower for the rest of the process after one CPU scan (``benchmarks/bench_numba_threading.py``; the scan itself
    was no faster). Numba fixes its layer on the first parallel launch, so this only applies if no parallel Numba
    code ran before and the user has not chosen one (NUMBA_THREADING_LAYER wins). The workqueue layer must not be
    entered from two Python threads at once; a model runs its kernels from one thread."""
    if os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER != "default":
        return
    numba.config.THREADING_LAYER = "workqueue"


def set_numba_threads() -> None:
    """Numba's threads follow torch's setting (tests and benchmarks pin it), capped by Numba's pool."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
