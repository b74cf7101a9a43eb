"""Nucleotide dependency maps: how much a substitution at j moves the model's prediction at i.

    dep[i, j] = max over the 3 substitutions b at j, and over the 4 bases c at i, of
                | logit p_i(c | x with b at j) - logit p_i(c | x) |,      logit p = log(p / (1 - p))

where p_i is the masked-site conditional at i (position i masked alone, as :func:`~.probs.probs`). This is the
nucleotide-dependency measure of Tomaz da Silva et al. (2024): large where i and j are coupled (base pairs of
a hairpin, the positions of a codon, a motif's core), near 0 where they are independent. The diagonal is 0.
N positions give NaN rows and columns. Cost: 3 L^2 + L network rows (L = length): meant for windows of about
the model's training length.

    >>> from mdlm_dna import DiffusionLM
    >>> model = DiffusionLM.from_pretrained("ecoli")
    >>> d = dependency_map(model, "TTGACAATTAATCATCGGCT")     # [L, L]
    >>> d.shape, float(d[3, 3])
    ((20, 20), 0.0)
"""

from __future__ import annotations

import warnings

import numpy as np

from mdlm_dna.analysis.ism import encode_one
from mdlm_dna.analysis.probs import NUM_BASES, Strands, _many_log_probs
from mdlm_dna.utils.protocols import LanguageModel

EPS = 1e-12


def log_odds(log_p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) from log p, stable near 0 and 1.

    >>> log_odds(np.log(np.array([0.5, 0.8])))
    array([0.        , 1.38629436])
    """
    p = np.clip(np.exp(log_p), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def mutants(ids: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Every single substitution of ``ids`` (3 per A/C/G/T position) and the position each one changes."""
    seqs, where = [], []
    for j in np.flatnonzero(ids < NUM_BASES):
        for b in range(NUM_BASES):
            if b != ids[j]:
                m = ids.copy()
                m[j] = b
                seqs.append(m)
                where.append(j)
    return seqs, np.asarray(where, dtype=np.int64)


def dependency_map(model: LanguageModel, seq: str, strands: Strands = "forward", label: str | int | None = None,
                   batch_size: int = 128, progress: bool | None = None) -> np.ndarray:
    """[L, L]: dep[i, j], how much a change at j moves the prediction at i (see the module docstring)."""
    ids = encode_one(model, seq)
    L = len(ids)
    if L > 2 * model.seq_len:
        warnings.warn(f"dependency_map of {L} bases costs {3 * L * L + L:,} network rows (3 L^2 + L); a window of "
                      f"about the model's {model.seq_len} bases is the usual size", stacklevel=2)
    seqs, where = mutants(ids)
    every = np.arange(L)
    lps = _many_log_probs(model, [ids, *seqs], [every] * (len(seqs) + 1), strands, label, batch_size, progress)
    ref = log_odds(lps[0])  # [L, 4]
    dep = np.full((L, L), np.nan)
    for lp, j in zip(lps[1:], where):
        change = np.abs(log_odds(lp) - ref).max(axis=1)  # [L]: over the 4 bases at i
        dep[:, j] = np.fmax(dep[:, j], change)  # NaN (not yet set) loses to any number
    known = ids < NUM_BASES
    dep[~known, :] = np.nan
    dep[:, ~known] = np.nan
    dep[np.flatnonzero(known), np.flatnonzero(known)] = 0.0
    return dep
