"""Protein-coding genes and what a single-nucleotide change does to them: the ground truth for variant scores.

A DNA model that has learned genes should find a premature stop codon less likely than a change that keeps
the protein. To ask it, one needs genes (called here with pyrodigal, trained on sequence the model was
trained on and applied to held-out sequence) and the consequence of every substitution inside them, read
with the bacterial genetic code (NCBI table 11)::

    finder = train_gene_finder(train_seq)                  # str of A/C/G/T, >= 20 kb
    genes = call_genes(finder, heldout_seq)                # complete genes, 0-based half-open, both strands
    snvs = gene_snvs(heldout_seq, genes)                   # DataFrame: pos, ref, alt, consequence, ...

Consequences (VEP / Sequence Ontology names): ``synonymous`` (same amino acid), ``missense`` (another amino
acid), ``stop_gained`` (a sense codon becomes a stop), ``stop_lost`` (the stop codon becomes a sense codon),
``start_lost`` (the first codon is no longer a table-11 start codon), and the two that keep the signal:
``stop_retained`` (stop to another stop) and ``start_retained`` (one start codon to another, e.g. ATG to GTG).
Positions and bases are always on the forward strand of the given sequence; ``strand``, the codon and the
amino acids are in the gene's orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mdlm_dna.utils.errors import DataError

BASES = "ACGT"
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
CONSEQUENCES = ("synonymous", "missense", "stop_gained", "stop_lost", "start_lost", "stop_retained",
                "start_retained")
MIN_TRAINING_LENGTH = 20_000  # pyrodigal refuses shorter training sequences


def revcomp(seq: str) -> str:
    """Reverse complement of an A/C/G/T/N string.

    >>> revcomp("ATGC")
    'GCAT'
    """
    return seq.translate(_COMPLEMENT)[::-1]


def genetic_code(table: int = 11) -> tuple[dict[str, str], frozenset[str]]:
    """({codon: amino acid, stops: '*'}, start codons) of an NCBI translation table (Biopython's tables).

    >>> code, starts = genetic_code(11)
    >>> code["TAA"], code["ATG"], sorted(starts)[:3]
    ('*', 'M', ['ATA', 'ATC', 'ATG'])
    """
    from Bio.Data.CodonTable import unambiguous_dna_by_id

    t = unambiguous_dna_by_id[table]
    code = dict(t.forward_table)
    code.update({c: "*" for c in t.stop_codons})
    return code, frozenset(t.start_codons)


@dataclass(frozen=True)
class Gene:
    """A gene call: ``seq[start:end]`` (0-based, half-open, forward coordinates) on ``strand`` +1 or -1,
    from its start codon to its stop codon inclusive."""

    start: int
    end: int
    strand: int
    score: float = float("nan")

    def __len__(self) -> int:
        return self.end - self.start

    def coding(self, seq: str) -> str:
        """The gene's coding sequence, 5' to 3' in its orientation (start codon first).

        >>> Gene(2, 8, -1).coding("AACATTTTGG")
        'AAAATG'
        """
        s = seq[self.start : self.end]
        return s if self.strand == 1 else revcomp(s)


def train_gene_finder(train_seq: str, table: int = 11):
    """A pyrodigal ``GeneFinder`` trained (single-genome mode) on ``train_seq`` with translation ``table``.

    Train on the model's training split, never on the sequence the genes are then called on."""
    import pyrodigal

    if len(train_seq) < MIN_TRAINING_LENGTH:
        raise DataError(f"gene finder training needs >= {MIN_TRAINING_LENGTH} bases, got {len(train_seq)}")
    finder = pyrodigal.GeneFinder(meta=False)
    finder.train(train_seq.encode(), translation_table=table)
    return finder


def call_genes(finder, seq: str, complete: bool = True) -> list[Gene]:
    """Genes of ``seq`` found by a trained ``finder`` (both strands), sorted by start. ``complete``: only genes
    with both their start and their stop codon inside ``seq`` (no partial genes at the ends)."""
    out = []
    for g in finder.find_genes(seq.encode()):
        if complete and (g.partial_begin or g.partial_end):
            continue
        out.append(Gene(start=g.begin - 1, end=g.end, strand=int(g.strand), score=float(g.score)))
    return sorted(out, key=lambda g: (g.start, g.end))


def codon_consequence(ref_codon: str, alt_codon: str, first: bool, last: bool, table: int = 11) -> str:
    """The consequence of changing ``ref_codon`` to ``alt_codon`` (gene orientation); ``first``/``last``: the
    codon is the gene's start / stop codon.

    >>> codon_consequence("GAA", "TAA", False, False)
    'stop_gained'
    >>> codon_consequence("ATG", "GTG", True, False)
    'start_retained'
    """
    code, starts = genetic_code(table)
    if first:
        return "start_retained" if alt_codon in starts else "start_lost"
    ref_aa, alt_aa = code[ref_codon], code[alt_codon]
    if last or ref_aa == "*":
        return "stop_retained" if alt_aa == "*" else "stop_lost"
    if alt_aa == "*":
        return "stop_gained"
    return "synonymous" if alt_aa == ref_aa else "missense"


def gene_snvs(seq: str, genes: list[Gene], table: int = 11) -> pd.DataFrame:
    """Every single-nucleotide change inside every gene, one row per (gene, position, alternative base).

    Columns: ``pos`` (0-based, forward strand of ``seq``), ``ref``, ``alt`` (forward-strand bases), ``gene``
    (index into ``genes``), ``strand``, ``codon_index`` (0 = start codon), ``codon_pos`` (1..3, gene
    orientation), ``ref_codon``, ``alt_codon``, ``ref_aa``, ``alt_aa`` and ``consequence``. A position inside
    two overlapping genes has a row for each. Genes whose sequence holds a base other than A/C/G/T are skipped.
    """
    code, _ = genetic_code(table)
    cols: dict[str, list] = {k: [] for k in ("pos", "ref", "alt", "gene", "strand", "codon_index", "codon_pos",
                                             "ref_codon", "alt_codon", "ref_aa", "alt_aa", "consequence")}
    for gi, g in enumerate(genes):
        cds = g.coding(seq)
        if len(cds) % 3 or set(cds) - set(BASES):
            continue
        n_codons = len(cds) // 3
        for k in range(len(cds)):
            ci, cp = divmod(k, 3)
            ref_codon = cds[3 * ci : 3 * ci + 3]
            pos = g.start + k if g.strand == 1 else g.end - 1 - k
            for b in BASES:
                if b == cds[k]:
                    continue
                alt_codon = ref_codon[:cp] + b + ref_codon[cp + 1 :]
                fwd_ref, fwd_alt = (cds[k], b) if g.strand == 1 else (revcomp(cds[k]), revcomp(b))
                for key, v in (("pos", pos), ("ref", fwd_ref), ("alt", fwd_alt), ("gene", gi),
                               ("strand", g.strand), ("codon_index", ci), ("codon_pos", cp + 1),
                               ("ref_codon", ref_codon), ("alt_codon", alt_codon), ("ref_aa", code[ref_codon]),
                               ("alt_aa", code[alt_codon]),
                               ("consequence", codon_consequence(ref_codon, alt_codon, ci == 0, ci == n_codons - 1,
                                                                 table))):
                    cols[key].append(v)
    return pd.DataFrame(cols)


def coding_mask(length: int, genes: list[Gene]) -> np.ndarray:
    """[length] bool: True inside any gene (from its start codon to its stop codon).

    >>> coding_mask(6, [Gene(1, 4, 1)]).astype(int)
    array([0, 1, 1, 1, 0, 0])
    """
    mask = np.zeros(length, dtype=bool)
    for g in genes:
        mask[max(g.start, 0) : min(g.end, length)] = True
    return mask


def codon_position_track(length: int, genes: list[Gene]) -> np.ndarray:
    """[length] int: the codon position (1, 2, 3, in the gene's orientation) of each base inside exactly one
    gene; 0 outside genes and where genes overlap (the position is ambiguous there).

    >>> codon_position_track(8, [Gene(1, 7, -1)])
    array([0, 3, 2, 1, 3, 2, 1, 0])
    """
    track = np.zeros(length, dtype=np.int64)
    cover = np.zeros(length, dtype=np.int64)
    for g in genes:
        k = np.arange(len(g))
        pos = g.start + k if g.strand == 1 else g.end - 1 - k
        ok = (pos >= 0) & (pos < length)
        track[pos[ok]] = k[ok] % 3 + 1
        cover[pos[ok]] += 1
    track[cover != 1] = 0
    return track


def upstream_offsets(length: int, genes: list[Gene], offsets: range = range(-20, 0)) -> np.ndarray:
    """[G, len(offsets)] forward-strand positions at ``offsets`` bases before each gene's start codon (gene
    orientation: -1 is the base just 5' of the first base of the start codon); -1 where off the sequence.

    >>> upstream_offsets(20, [Gene(5, 11, 1), Gene(2, 8, -1)], range(-2, 0)).tolist()
    [[3, 4], [9, 8]]
    """
    out = np.full((len(genes), len(offsets)), -1, dtype=np.int64)
    for i, g in enumerate(genes):
        for j, o in enumerate(offsets):
            p = g.start + o if g.strand == 1 else g.end - 1 - o
            if 0 <= p < length:
                out[i, j] = p
    return out
