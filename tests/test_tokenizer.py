import numpy as np
import pytest
import torch

from mdlm_dna.data.tokenizers import SOFT_MASK_BIT, NucleotideTokenizer, TokenizerError

tok = NucleotideTokenizer()


def test_ids_are_documented_values():
    assert [tok.encode(b)[0] for b in "ACGTN"] == [0, 1, 2, 3, 4]
    assert (tok.mask_id, tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (5, 6, 7, 8, 9)
    assert tok.vocab_size == 10


def test_round_trip_and_lower_case():
    seq = "ACGTNNACGTTGCA"
    assert tok.decode(tok.encode(seq)) == seq
    assert tok.encode("acgtn") == tok.encode("ACGTN")  # soft-masked repeats are upper-cased


def test_special_tokens_round_trip():
    ids = tok.encode("ACG", add_special_tokens=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "[BOS]ACG[EOS]"
    assert tok.decode(ids, skip_special_tokens=True) == "ACG"
    assert tok.decode([0, tok.mask_id, 3]) == "A-T"


def test_reverse_complement_on_ids():
    x = torch.tensor(tok.encode("AACGTN"))
    assert tok.decode(tok.reverse_complement(x)) == "NACGTT"
    rng = torch.Generator().manual_seed(0)
    batch = torch.randint(0, tok.vocab_size, (4, 33), generator=rng)
    assert torch.equal(tok.reverse_complement(tok.reverse_complement(batch)), batch)
    # the complement is an involution over the whole vocabulary
    comp = torch.tensor(tok.complement_ids)
    assert torch.equal(comp[comp], torch.arange(tok.vocab_size))


def test_iupac_codes_become_n_and_are_counted():
    ids, stats = tok.encode_bytes(b"ACRYwkN")
    assert list(ids & 0x7F) == [0, 1, 4, 4, 4, 4, 4]
    assert stats.iupac_to_n == 4
    assert stats.by_code == {"R": 1, "Y": 1, "W": 1, "K": 1}
    assert stats.soft_masked == 2
    assert (ids[4] & SOFT_MASK_BIT) and not (ids[2] & SOFT_MASK_BIT)


def test_rna_u_is_read_as_t_and_counted_as_the_fasta_readers_do():
    ids, stats = tok.encode_bytes(b"ACGUuT")
    assert list(ids & 0x7F) == [0, 1, 2, 3, 3, 3] and stats.u_as_t == 2 and stats.iupac_to_n == 0
    assert ids[4] & SOFT_MASK_BIT
    assert tok.decode(tok.encode("GGU")) == "GGT"


def test_table_sequences_report_what_was_changed(caplog):
    import logging

    from mdlm_dna.data.genomic_benchmarks import tokenize

    with caplog.at_level(logging.WARNING):
        out = tokenize(["ACGU", "ACRN"], where="t.csv")
    assert [list(o) for o in out] == [[0, 1, 2, 3], [0, 1, 4, 4]]
    assert "t.csv: 1 U (RNA) read as T" in caplog.text and "1 IUPAC ambiguity codes mapped to N" in caplog.text


def test_bad_character_names_position():
    with pytest.raises(TokenizerError, match=r"genome.fa, record 'chr1'.*'X'.*position 3\b"):
        tok.encode_bytes(b"ACGXTT", where="genome.fa, record 'chr1'")
    with pytest.raises(TokenizerError, match="'-'"):
        tok.encode("AC-GT")


def test_encode_bytes_accepts_arrays():
    arr = np.frombuffer(b"GATTACA", dtype=np.uint8)
    ids, _ = tok.encode_bytes(arr)
    assert tok.decode(ids.astype(np.int64)) == "GATTACA"


def test_bad_character_position_counts_from_offset():
    # genome caches encode records in chunks: the error must name the position in the record
    with pytest.raises(TokenizerError, match=r"position 1,000,002\b"):
        tok.encode_bytes(b"ACXT", where="g.fa, record 'r'", offset=1_000_000)
