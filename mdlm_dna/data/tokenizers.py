"""Character-level nucleotide tokenizer.

Ids are fixed so that checkpoints, caches and the backbones that need a
complement permutation (Caduceus) agree on them:

    A=0  C=1  G=2  T=3  N=4  [MASK]=5  [PAD]=6  [BOS]=7  [EOS]=8  [UNK]=9

Nucleotides come first so that ``ids < 4`` selects real bases and ``ids < 5``
selects anything that can appear in a genome.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

BASES = "ACGTN"
SPECIAL_TOKENS = ("[MASK]", "[PAD]", "[BOS]", "[EOS]", "[UNK]")
IUPAC_AMBIGUITY = "RYSWKMBDHV"  # ambiguity codes -> N; U (RNA) is read as T, as the FASTA readers do
SOFT_MASK_BIT = 0x80  # set on cached ids whose base was lower case (soft-masked repeat)


class TokenizerError(ValueError):
    """A sequence holds a character that is neither a nucleotide nor an IUPAC code."""


@dataclass
class EncodeStats:
    """Counts gathered while encoding, so that nothing is altered silently."""

    iupac_to_n: int = 0
    soft_masked: int = 0
    by_code: dict[str, int] = field(default_factory=dict)
    u_as_t: int = 0

    def add(self, other: EncodeStats) -> None:
        self.iupac_to_n += other.iupac_to_n
        self.u_as_t += other.u_as_t
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
    lut[ord("U")], lut[ord("u")] = BASES.index("T"), BASES.index("T") | SOFT_MASK_BIT
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
        stats.u_as_t = int(np.count_nonzero((arr == ord("U")) | (arr == ord("u"))))
        stats.soft_masked = int(np.count_nonzero(ids & SOFT_MASK_BIT))
        return ids, stats

    def encode(self, seq: str, add_special_tokens: bool = False, where: str = "<sequence>") -> list[int]:
        """Encode text to ids; lower case is upper-cased, IUPAC codes become N, U (RNA) becomes T."""
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


# ----- text ------------------------------------------------------------------------------------


class TextTokenizer:
    """A Hugging Face tokenizer seen through the same small interface as :class:`NucleotideTokenizer`.

    MDLM needs a [MASK] id and a [PAD] id; a tokenizer without them (GPT-2) gets them appended
    after its vocabulary, as the MDLM reference code does, so existing ids never move. Documents are
    framed by ``bos_id`` / ``eos_id``: [CLS] / [SEP] for BERT, ``<|endoftext|>`` for both with GPT-2.
    """

    complement_ids = None  # text has no reverse complement

    def __init__(self, hf_tokenizer, name: str):
        tok = hf_tokenizer
        if tok.mask_token is None:
            tok.add_special_tokens({"mask_token": "[MASK]"})
        if tok.pad_token is None:
            tok.add_special_tokens({"pad_token": "[PAD]"})
        tok.model_max_length = 1 << 62  # documents are cut into rows by the data code, not truncated here
        self.hf, self.name = tok, name
        self.mask_id, self.pad_id = int(tok.mask_token_id), int(tok.pad_token_id)
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if bos is None or eos is None:
            raise ValueError(f"tokenizer {name!r} has neither BOS/EOS nor CLS/SEP tokens to frame documents")
        self.bos_id, self.eos_id = int(bos), int(eos)
        self.vocab_size = len(tok)
        # [PAD] never occurs inside a document: a denoiser need not give it mass
        self.special_ids_not_in_data = (self.pad_id,)

    def encode(self, text: str, add_special_tokens: bool = False, where: str = "<text>") -> list[int]:
        ids = self.encode_batch([text])[0]
        return [self.bos_id, *ids, self.eos_id] if add_special_tokens else ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of many documents at once, without special tokens.

        A corpus that contains the literal text "[MASK]" or "<|endoftext|>" gets it tokenized as text,
        never as the special token, so data can never inject masks or document breaks.
        """
        return self.hf(list(texts), add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if skip_special_tokens:
            return self.hf.decode(ids, skip_special_tokens=True)
        # keep masks visible and drop padding, so a partially denoised sample reads as text with holes
        ids = [i for i in ids if i != self.pad_id]
        return self.hf.decode(ids, skip_special_tokens=False)


def load_hf_tokenizer(name: str | None, path: str | None = None):
    """A local tokenizer directory when ``path`` is given, else the Hub name; offline errors say what to do."""
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ImportError("text data needs the `transformers` package: pip install 'mdlm-dna[text]'") from e
    if path:
        p = Path(path).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"tokenizer.path={path}: not a directory of tokenizer files")
        try:
            return AutoTokenizer.from_pretrained(str(p))
        except Exception as e:  # a folder without the files transformers needs
            raise ValueError(f"tokenizer.path={p}: cannot load a tokenizer from it ({e})") from e
    if not name:
        raise ValueError("set tokenizer.name (a Hugging Face Hub name) or tokenizer.path (a local directory)")
    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as e:
        raise OSError(
            f"cannot load tokenizer {name!r} from the Hugging Face Hub or its local cache ({e}). Offline, download its "
            f"files elsewhere (e.g. `huggingface-cli download {name} --local-dir DIR`) and pass tokenizer.path=DIR"
        ) from e


def build_tokenizer(tokenizer_cfg: dict | None):
    """The tokenizer a run's ``data.tokenizer`` config names; no config means the nucleotide tokenizer."""
    cfg = dict(tokenizer_cfg or {})
    name, path = cfg.get("name") or "nucleotide", cfg.get("path")
    if name == "nucleotide" and not path:
        return NucleotideTokenizer()
    if path and not Path(path).expanduser().is_dir():
        # a checkpoint that moved to another machine: its run config names a folder that is not here
        from mdlm_dna.utils.resources import data_dir

        shipped = data_dir() / "tokenizers" / name
        if not shipped.is_dir():
            raise FileNotFoundError(f"tokenizer.path={path}: not a directory of tokenizer files")
        warnings.warn(f"tokenizer.path={path} does not exist here; using the shipped copy of {name!r} ({shipped})",
                      stacklevel=2)
        path = str(shipped)
    return TextTokenizer(load_hf_tokenizer(name, path), name=name)


def conversion_note(seqs) -> str | None:
    """What reading ``seqs`` as DNA changes, for one warning per call (nothing altered silently), or None.

    >>> conversion_note(["ACGU", "ACRT", "ACGT"])
    '2 bases of 2 of 3 sequences converted: 1 U read as T, 1 IUPAC code read as N'
    """
    u = iupac = touched = 0
    for s in seqs:
        up = str(s).upper()
        nu, ni = up.count("U"), sum(up.count(c) for c in IUPAC_AMBIGUITY)
        u, iupac, touched = u + nu, iupac + ni, touched + bool(nu or ni)
    if not touched:
        return None
    parts = [f"{u:,} U read as T"] * bool(u) + [f"{iupac:,} IUPAC code{'s' * (iupac != 1)} read as N"] * bool(iupac)
    return (f"{u + iupac:,} base{'s' * (u + iupac != 1)} of {touched:,} of {len(seqs):,} sequence"
            f"{'s' * (len(seqs) != 1)} converted: {', '.join(parts)}")
