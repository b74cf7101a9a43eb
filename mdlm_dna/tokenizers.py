"""Character-level nucleotide tokenizer.

Ids are fixed so that checkpoints, caches and the backbones that need a
complement permutation (Caduceus) agree on them:

    A=0  C=1  G=2  T=3  N=4  [MASK]=5  [PAD]=6  [BOS]=7  [EOS]=8  [UNK]=9

Nucleotides come first so that ``ids < 4`` selects real bases and ``ids < 5``
selects anything that can appear in a genome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

BASES = "ACGTN"
SPECIAL_TOKENS = ("[MASK]", "[PAD]", "[BOS]", "[EOS]", "[UNK]")
IUPAC_AMBIGUITY = "RYSWKMBDHVU"  # U (RNA) is treated as ambiguous too: a DNA model has no U
SOFT_MASK_BIT = 0x80  # set on cached ids whose base was lower case (soft-masked repeat)


class TokenizerError(ValueError):
    """A sequence holds a character that is neither a nucleotide nor an IUPAC code."""


@dataclass
class EncodeStats:
    """Counts gathered while encoding, so that nothing is altered silently."""

    iupac_to_n: int = 0
    soft_masked: int = 0
    by_code: dict[str, int] = field(default_factory=dict)

    def add(self, other: EncodeStats) -> None:
        self.iupac_to_n += other.iupac_to_n
        self.soft_masked += other.soft_masked
        for k, v in other.by_code.items():
            self.by_code[k] = self.by_code.get(k, 0) + v


def _build_lut() -> np.ndarray:
    """byte -> id; 255 marks a byte that is not allowed."""
    lut = np.full(256, 255, dtype=np.uint8)
    for i, b in enumerate(BASES):
        lut[ord(b)] = i
        lut[ord(b.lower())] = i | SOFT_MASK_BIT
    for code in IUPAC_AMBIGUITY:
        lut[ord(code)] = BASES.index("N")
        lut[ord(code.lower())] = BASES.index("N") | SOFT_MASK_BIT
    return lut


_LUT = _build_lut()
_IUPAC_BYTES = np.frombuffer((IUPAC_AMBIGUITY + IUPAC_AMBIGUITY.lower()).encode(), dtype=np.uint8)


class NucleotideTokenizer:
    """Maps DNA text to ids and back; knows the complement of every id."""

    A, C, G, T, N = range(5)
    mask_id, pad_id, bos_id, eos_id, unk_id = range(5, 10)
    vocab = tuple(BASES) + SPECIAL_TOKENS
    vocab_size = len(vocab)
    num_bases = 4

    # tokens that genome windows never contain: a denoiser need not give them mass
    special_ids_not_in_data = (6, 7, 8, 9)

    # complement permutation over the whole vocabulary; special tokens map to themselves
    complement_ids: tuple[int, ...] = (3, 2, 1, 0, 4, 5, 6, 7, 8, 9)

    def encode_bytes(
        self, raw: bytes | np.ndarray, where: str = "<sequence>", offset: int = 0
    ) -> tuple[np.ndarray, EncodeStats]:
        """Encode ASCII sequence bytes to uint8 ids with the soft-mask bit kept.

        This is the fast path used to build genome caches. ``where`` names the
        file and record in error messages; ``offset`` is the position of
        ``raw[0]`` in that record, so a chunk's error names the record position.
        """
        arr = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray)) else raw
        ids = _LUT[arr]
        bad = np.flatnonzero(ids == 255)
        if bad.size:
            pos = int(bad[0])
            ch = chr(arr[pos])
            raise TokenizerError(
                f"{where}: invalid character {ch!r} (byte {arr[pos]}) at position {offset + pos:,} "
                f"({bad.size:,} invalid characters in total); expected A C G T N or an IUPAC code"
            )
        stats = EncodeStats()
        iupac = np.isin(arr, _IUPAC_BYTES)
        n_iupac = int(iupac.sum())
        if n_iupac:
            stats.iupac_to_n = n_iupac
            codes, counts = np.unique(arr[iupac] & 0xDF, return_counts=True)  # 0xDF upper-cases ASCII
            stats.by_code = {chr(c): int(n) for c, n in zip(codes, counts)}
        stats.soft_masked = int(np.count_nonzero(ids & SOFT_MASK_BIT))
        return ids, stats

    def encode(self, seq: str, add_special_tokens: bool = False, where: str = "<sequence>") -> list[int]:
        """Encode text to ids; lower case is upper-cased, IUPAC codes become N."""
        ids, _ = self.encode_bytes(seq.encode("ascii", errors="replace"), where=where)
        out = (ids & ~np.uint8(SOFT_MASK_BIT)).astype(np.int64).tolist()
        if add_special_tokens:
            out = [self.bos_id, *out, self.eos_id]
        return out

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids back to text; [MASK] shows as '-' so that partially masked samples stay aligned."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        chars = []
        for i in ids:
            i = int(i)
            if i < 5:
                chars.append(BASES[i])
            elif skip_special_tokens:
                continue
            elif i == self.mask_id:
                chars.append("-")
            else:
                chars.append(self.vocab[i])
        return "".join(chars)

    def reverse_complement(self, ids: torch.Tensor) -> torch.Tensor:
        """Reverse complement along the last dimension (works on any id tensor)."""
        table = torch.tensor(self.complement_ids, dtype=ids.dtype, device=ids.device)
        return table[ids].flip(-1)


def strip_soft_mask(ids: np.ndarray) -> np.ndarray:
    """Cached ids -> plain token ids."""
    return ids & np.uint8(~SOFT_MASK_BIT & 0xFF)
