"""Plots a biologist reads: sequence logos (logomaker), ISM and dependency-map heatmaps. Each returns its Axes.

    >>> from mdlm_dna import DiffusionLM
    >>> m, seq = DiffusionLM.from_pretrained("ecoli"), "TTGACAATTAATCATCGGCT"
    >>> ax = logo(m.probs([seq])[0])                    # information-scaled logo of p(base | rest)
    >>> ax = ism_heatmap(m.ism(seq), seq)               # llr of every substitution, reference bases outlined
    >>> ax = dependency_heatmap(m.dependency_map(seq), seq)
    >>> ax.figure.savefig("deps.png")
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BASES = list("ACGT")
MAX_TICKS = 200  # label every base up to this length


def _axes(ax, width: float, height: float):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))[1]


def logo_matrix(probs: np.ndarray, kind: str = "information") -> pd.DataFrame:
    """[L, 4] glyph heights: ``information``: p(b) * (2 - H) with H the entropy in bits (the classic logo; a
    position the model is sure of stands 2 bits tall), or ``probability``: p(b). NaN rows (N bases) are 0.

    >>> logo_matrix(np.array([[1.0, 0, 0, 0]])).to_numpy()
    array([[2., 0., 0., 0.]])
    """
    p = np.nan_to_num(np.asarray(probs, dtype=np.float64))
    if kind == "information":
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1, keepdims=True)
        p = p * np.where(p.sum(axis=1, keepdims=True) > 0, 2.0 - h, 0.0)
    elif kind != "probability":
        raise ValueError(f"kind must be 'information' or 'probability', got {kind!r}")
    return pd.DataFrame(p, columns=BASES)


def ism_matrix(llr: np.ndarray, seq: str) -> pd.DataFrame:
    """[L, 4]: at the reference base, minus the mean llr of its 3 substitutions (tall: the model dislikes every
    change there); 0 elsewhere: the usual ISM logo."""
    llr = np.nan_to_num(np.asarray(llr, dtype=np.float64))
    out = np.zeros_like(llr)
    for i, b in enumerate(seq.upper()):
        if b in "ACGT":
            out[i, "ACGT".index(b)] = -llr[i].sum() / 3.0
    return pd.DataFrame(out, columns=BASES)


def logo(probs: np.ndarray, kind: str = "information", ax=None, title: str | None = None):
    """Sequence logo of per-position probabilities [L, 4] (``kind``: information | probability)."""
    import logomaker

    m = logo_matrix(probs, kind)
    ax = _axes(ax, max(4.0, len(m) / 8), 2.0)
    logomaker.Logo(m, ax=ax, color_scheme="classic")
    ax.set_ylabel("bits" if kind == "information" else "probability")
    ax.set_xlabel("position")
    if title:
        ax.set_title(title)
    return ax


def ism_logo(llr: np.ndarray, seq: str, ax=None, title: str | None = None):
    """Logo of an ISM map: each reference base as tall as the mean llr loss of substituting it."""
    import logomaker

    m = ism_matrix(llr, seq)
    ax = _axes(ax, max(4.0, len(m) / 8), 2.0)
    logomaker.Logo(m, ax=ax, color_scheme="classic")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("-mean llr (nats)")
    ax.set_xlabel("position")
    if title:
        ax.set_title(title)
    return ax


def _sequence_ticks(ax, seq: str, axis: str) -> None:
    if len(seq) > MAX_TICKS:
        return
    ticks = np.arange(len(seq))
    if axis in ("x", "both"):
        ax.set_xticks(ticks, list(seq), fontsize=6, fontfamily="monospace")
    if axis in ("y", "both"):
        ax.set_yticks(ticks, list(seq), fontsize=6, fontfamily="monospace")


def ism_heatmap(llr: np.ndarray, seq: str, ax=None, title: str | None = None):
    """Heatmap of llr [L, 4] as 4 rows (A C G T) by L positions, diverging around 0, the sequence below."""
    import matplotlib.pyplot as plt

    llr = np.asarray(llr, dtype=np.float64)
    ax = _axes(ax, max(4.0, len(seq) / 6), 2.2)
    lim = float(np.nanmax(np.abs(llr))) if np.isfinite(llr).any() else 1.0
    im = ax.imshow(llr.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(4), BASES)
    _sequence_ticks(ax, seq, "x")
    plt.colorbar(im, ax=ax, label="llr (nats)", fraction=0.03)
    if title:
        ax.set_title(title)
    return ax


def dependency_heatmap(dep: np.ndarray, seq: str, ax=None, title: str | None = None, vmax: float | None = None):
    """Heatmap of a dependency map [L, L] (row i: the predicted position, column j: the substituted one) with
    the sequence on both axes."""
    import matplotlib.pyplot as plt

    dep = np.asarray(dep, dtype=np.float64)
    size = max(4.0, min(12.0, len(seq) / 10))
    ax = _axes(ax, size + 1, size)
    im = ax.imshow(dep, cmap="Reds", vmin=0, vmax=vmax, interpolation="nearest")
    _sequence_ticks(ax, seq, "both")
    ax.set_xlabel("substituted position j")
    ax.set_ylabel("predicted position i")
    plt.colorbar(im, ax=ax, label="max |log-odds change|", fraction=0.04)
    if title:
        ax.set_title(title)
    return ax
