"""Gene calls and variant consequence classes (mdlm_dna.analysis.genes), checked by hand on constructed genes."""

from __future__ import annotations

import numpy as np
import pytest

from mdlm_dna.analysis.genes import (
    Gene,
    coding_mask,
    codon_consequence,
    codon_position_track,
    gene_snvs,
    genetic_code,
    revcomp,
    upstream_offsets,
)
from mdlm_dna.utils.errors import DataError

# ATG GAA TGG TAA: Met Glu Trp stop, on the forward strand at 3..15 of FWD
CDS = "ATGGAATGGTAA"
FWD = "CCC" + CDS + "GG"
REV = "CC" + revcomp(CDS) + "CCC"  # the same gene on the reverse strand at 2..14


def classes(seq: str, gene: Gene) -> dict[tuple[int, str], str]:
    d = gene_snvs(seq, [gene])
    return {(int(r.pos), r.alt): r.consequence for r in d.itertuples()}


def test_table_11_code_and_starts():
    code, starts = genetic_code(11)
    assert len(code) == 64 and sorted(c for c, a in code.items() if a == "*") == ["TAA", "TAG", "TGA"]
    assert starts == {"TTG", "CTG", "ATT", "ATC", "ATA", "ATG", "GTG"}


@pytest.mark.parametrize("seq,gene", [(FWD, Gene(3, 15, 1)), (REV, Gene(2, 14, -1))])
def test_every_change_of_a_small_gene_classed_by_hand(seq, gene):
    got = classes(seq, gene)
    assert len(got) == 3 * len(CDS)

    def at(k: int, coding_alt: str) -> str:
        """the class of changing coding base k (gene orientation) to coding_alt, looked up by forward coordinates"""
        pos = gene.start + k if gene.strand == 1 else gene.end - 1 - k
        return got[(pos, coding_alt if gene.strand == 1 else revcomp(coding_alt))]

    # start codon ATG: GTG / TTG / CTG (k=0) and ATA/ATC/ATT (k=2) stay starts; the rest lose it
    assert [at(0, b) for b in "CGT"] == ["start_retained"] * 3
    assert [at(1, b) for b in "ACG"] == ["start_lost"] * 3
    assert [at(2, b) for b in "ACT"] == ["start_retained"] * 3
    # GAA (Glu): GAG synonymous, GAC/GAT Asp missense, TAA stop-gained, AAA/CAA missense
    assert at(5, "G") == "synonymous" and at(5, "C") == "missense" and at(5, "T") == "missense"
    assert at(3, "T") == "stop_gained" and at(3, "A") == "missense" and at(3, "C") == "missense"
    assert at(4, "C") == "missense"
    # TGG (Trp): TGA and TAG are stops, every other change missense; nothing synonymous
    assert at(8, "A") == "stop_gained" and at(7, "A") == "stop_gained"
    assert at(8, "C") == "missense" and at(6, "A") == "missense"
    # stop TAA: TAG / TGA keep a stop, the others lose it
    assert at(10, "G") == "stop_retained" and at(11, "G") == "stop_retained"
    assert at(9, "C") == "stop_lost" and at(10, "C") == "stop_lost" and at(11, "C") == "stop_lost"
    # the reference base recorded is the sequence's forward-strand base
    d = gene_snvs(seq, [gene])
    assert all(seq[p] == r for p, r in zip(d.pos, d.ref))
    assert (d.ref != d.alt).all()


def test_same_gene_on_both_strands_gives_the_same_classes():
    f = gene_snvs(FWD, [Gene(3, 15, 1)]).sort_values(["codon_index", "codon_pos", "alt_codon"])
    r = gene_snvs(REV, [Gene(2, 14, -1)]).sort_values(["codon_index", "codon_pos", "alt_codon"])
    assert f.consequence.tolist() == r.consequence.tolist()
    # counted by hand: ATG 6 retained + 3 lost; GAA 7 missense, 1 stop, 1 synonymous; TGG 7 missense, 2 stops;
    # TAA 7 stop-lost, 2 retained (TAG, TGA)
    assert f.consequence.value_counts().to_dict() == {"missense": 14, "start_retained": 6, "stop_lost": 7,
                                                        "start_lost": 3, "stop_gained": 3, "stop_retained": 2,
                                                        "synonymous": 1}


def test_codon_consequence_against_the_code_by_brute_force():
    code, _ = genetic_code(11)
    for ref, ra in code.items():
        if ra == "*":
            continue
        for alt, aa in code.items():
            want = "stop_gained" if aa == "*" else "synonymous" if aa == ra else "missense"
            assert codon_consequence(ref, alt, first=False, last=False) == want


def test_position_tracks():
    genes = [Gene(3, 15, 1), Gene(20, 26, -1)]
    assert coding_mask(30, genes).sum() == 18
    t = codon_position_track(30, genes)
    assert t[3:9].tolist() == [1, 2, 3, 1, 2, 3] and t[20:26].tolist() == [3, 2, 1, 3, 2, 1] and t[0] == 0
    up = upstream_offsets(30, genes, range(-3, 0))
    assert up.tolist() == [[0, 1, 2], [28, 27, 26]]
    assert np.all(codon_position_track(30, [Gene(3, 15, 1), Gene(9, 15, -1)])[9:15] == 0)  # overlap: ambiguous


def test_gene_finder_refuses_short_training_sequence():
    from mdlm_dna.analysis.genes import train_gene_finder

    with pytest.raises(DataError, match="20000"):
        train_gene_finder("ACGT" * 100)
