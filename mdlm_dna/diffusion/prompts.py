"""Prompts and in-filling templates -> token ids, for DNA and text models alike.

A template marks the positions to generate with [MASK]; every other position is given and never changes
during sampling (see ``mdlm_dna.diffusion.samplers``).
"""

from __future__ import annotations

import warnings

import torch

from mdlm_dna.data.tokenizers import BASES, IUPAC_AMBIGUITY, NucleotideTokenizer, TextTokenizer, conversion_note
from mdlm_dna.utils.errors import ConfigError

MASK_CHARS = "-?"
_TO_N = str.maketrans(IUPAC_AMBIGUITY, "N" * len(IUPAC_AMBIGUITY))


def _as_dna(text: str, what: str, allowed: str = "") -> str:
    """Upper case, U read as T and IUPAC codes as N (one warning with the counts, as the FASTA readers do);
    any other character (except ``allowed``) is an error naming it and its position."""
    up = str(text).strip().upper()
    for i, ch in enumerate(up):
        if ch not in BASES and ch not in IUPAC_AMBIGUITY and ch != "U" and ch not in allowed:
            raise ConfigError(f"{what}: invalid character {str(text).strip()[i]!r} at position {i}; expected A C G T "
                              f"N (U, IUPAC codes){' or ' + ' / '.join(allowed) if allowed else ''}")
    note = conversion_note([up])
    if note:
        warnings.warn(f"{what}: {note.split(': ', 1)[1]}", stacklevel=3)
    return up.replace("U", "T").translate(_TO_N)


def parse_prefix(text: str) -> torch.Tensor:
    """A prompt of A C G T N (any case; U read as T, IUPAC codes as N, with a warning) -> ids."""
    text = _as_dna(text, "prefix")
    return torch.tensor([BASES.index(c) for c in text], dtype=torch.long)


def parse_infill(text: str, n_is_mask: bool = False) -> torch.Tensor:
    """A template with '-' / '?' (and N with ``n_is_mask``) at the positions to generate -> ids with [MASK]
    (U read as T, IUPAC codes as N, with a warning)."""
    ids = []
    for ch in _as_dna(text, "infill", allowed=MASK_CHARS):
        if ch in MASK_CHARS or (n_is_mask and ch == "N"):
            ids.append(NucleotideTokenizer.mask_id)
        else:
            ids.append(BASES.index(ch))
    if not ids:
        raise ConfigError("infill: empty template")
    if NucleotideTokenizer.mask_id not in ids:
        raise ConfigError("infill: nothing to generate (mark the positions to fill with '-')")
    return torch.tensor(ids, dtype=torch.long)


def parse_text_prefix(text: str, tok: TextTokenizer) -> torch.Tensor:
    """A text prompt -> [BOS] + its ids: samples then read as the continuation of a document's start."""
    ids = tok.encode(str(text))
    if not ids:
        raise ConfigError("prefix: empty text")
    return torch.tensor([tok.bos_id, *ids], dtype=torch.long)


def parse_text_infill(text: str, tok: TextTokenizer) -> torch.Tensor:
    """A text template with [MASK] tokens at the positions to generate -> [BOS] + ids + [EOS]."""
    ids = tok.hf(str(text), add_special_tokens=False)["input_ids"]  # here "[MASK]" is meant as the special token
    if tok.mask_id not in ids:
        raise ConfigError(f"infill: nothing to generate (write {tok.hf.mask_token} where tokens are to be generated)")
    return torch.tensor([tok.bos_id, *ids, tok.eos_id], dtype=torch.long)


def token_entropy(ids: torch.Tensor) -> float:
    """Mean over samples of the entropy (nats) of each sample's token histogram: low values flag repetition."""
    out = []
    for row in ids:
        _, counts = torch.unique(row, return_counts=True)
        p = counts.double() / counts.sum()
        out.append(float(-(p * p.log()).sum()))
    return sum(out) / max(len(out), 1)
