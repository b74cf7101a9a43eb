"""In-silico mutagenesis: the log-likelihood ratio of every substitution, read off the masked-site conditionals.

    llr[i, b] = log p(b at i | the rest) - log p(x_i at i | the rest)       (natural log; 0 at the reference)

with p from :func:`~mdlm_dna.analysis.probs.probs` (GPN's zero-shot score): one network row per position
(four for AR, exact), not one whole-sequence likelihood per substitution. Negative: the model finds the
substitution less likely than the reference base. N positions give NaN rows.

    >>> from mdlm_dna import DiffusionLM
    >>> model = DiffusionLM.from_pretrained("ecoli")
    >>> x = ism(model, "ACGT" * 50)
    >>> x.shape, float(x[0, 0])          # one row per position; 0 at the reference base (A)
    ((200, 4), 0.0)
"""

from __future__ import annotations

import numpy as np

from mdlm_dna.analysis.probs import NUM_BASES, Strands, _many_log_probs
from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.protocols import LanguageModel


def encode_one(model: LanguageModel, seq: str) -> np.ndarray:
    """One DNA string -> int64 ids (a clear error for a list or an empty string)."""
    if not isinstance(seq, str):
        raise ConfigError("pass one sequence (a string); for many, call once per sequence")
    return np.asarray(model._encode_all([seq])[0], dtype=np.int64)


def llr_from_log_probs(log_probs: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """[L, 4] log p(b) - log p(reference) per row; NaN rows where the reference is not A/C/G/T.

    >>> llr_from_log_probs(np.log(np.array([[0.5, 0.25, 0.125, 0.125]])), np.array([0])).round(4)  # log(1/2), ...
    array([[ 0.    , -0.6931, -1.3863, -1.3863]])
    """
    out = np.full(log_probs.shape, np.nan)
    known = ids < NUM_BASES
    out[known] = log_probs[known] - log_probs[known, ids[known]][:, None]
    return out


def ism(model: LanguageModel, seq: str, strands: Strands = "forward", label: str | int | None = None,
        batch_size: int = 128, progress: bool | None = None) -> np.ndarray:
    """[L, 4] llr of every substitution vs the reference base (0 at the reference), from the per-position
    conditionals (``strands="both"``: of their two-strand mean)."""
    ids = encode_one(model, seq)
    lp = _many_log_probs(model, [ids], [np.arange(len(ids))], strands, label, batch_size, progress)[0]
    return llr_from_log_probs(lp, ids)
