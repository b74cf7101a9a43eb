"""embed: rc="mean", a choice of layer, center pooling, long inputs tiled, output names, bad values (issues 28, 29)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mdlm_dna import DiffusionLM
from mdlm_dna.analysis.embedding import pool, tiles
from mdlm_dna.embed import embed as embed_cli
from mdlm_dna.utils.errors import ConfigError

SEQS = ["ACGTTGCAAGGCTTACGATC", "GGGCCCATATTTACG"]


@pytest.fixture(scope="module")
def ecoli():
    return DiffusionLM.from_pretrained("ecoli", device="cpu")


def rc(seq: str) -> str:
    return seq[::-1].translate(str.maketrans("ACGT", "TGCA"))


def test_rc_mean_is_the_average_with_the_flipped_reverse_complement(ecoli):
    plain = ecoli.embed(SEQS, pooling=None)
    of_rc = ecoli.embed([rc(s) for s in SEQS], pooling=None)
    both = ecoli.embed(SEQS, pooling=None, rc="mean")
    for p, r, b in zip(plain, of_rc, both):
        assert np.allclose(b, 0.5 * (p + r[::-1]), atol=1e-6)
    # and the rc-averaged features are the same for a sequence and its reverse complement (flipped)
    back = ecoli.embed([rc(s) for s in SEQS], pooling=None, rc="mean")
    assert all(np.allclose(b, k[::-1], atol=1e-5) for b, k in zip(both, back))


def test_caduceus_ps_is_rc_invariant_so_rc_mean_changes_nothing():
    from omegaconf import OmegaConf

    from mdlm_dna.train.lit_module import DiffusionModule
    from tests.conftest import TINY, compose_pretrain

    base = [o for o in TINY if not o.startswith("model.") or o.startswith("model.markov")]
    config = OmegaConf.to_container(compose_pretrain(*base, "model=caduceus_ps", "model.d_model=16",
                                                     "model.n_layers=2"), resolve=True)
    m = DiffusionLM(DiffusionModule(config), device="cpu")
    plain = m.embed(SEQS, pooling=None)
    assert all(np.allclose(m.embed(SEQS, pooling=None, rc="mean")[i], plain[i], atol=1e-5) for i in range(2))
    of_rc = m.embed([rc(s) for s in SEQS], pooling=None)
    assert all(np.allclose(of_rc[i][::-1], plain[i], atol=1e-5) for i in range(2))


def test_layer_picks_a_block_output(ecoli):
    x = torch.tensor([ecoli.encode(SEQS[0])])
    states = {}
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: states.__setitem__(k, o)) for k, b in
             enumerate(ecoli.backbone.blocks)]
    with torch.no_grad():
        final = ecoli.backbone.hidden_states(x)
    for h in hooks:
        h.remove()
    got = {k: ecoli.embed(SEQS[:1], pooling=None, layer=k)[0] for k in (1, 2, -1, 0)}
    assert np.allclose(got[1], states[0][0].numpy(), atol=1e-6) and np.allclose(got[2], states[1][0].numpy())
    assert np.allclose(got[-1], states[3][0].numpy()) and not np.allclose(got[-1], final[0].numpy())
    assert np.allclose(got[0], ecoli.backbone.embed(x)[0].detach().numpy())
    assert np.allclose(ecoli.embed(SEQS[:1], pooling=None)[0], final[0].numpy(), atol=1e-6)  # layer=None
    with pytest.raises(ConfigError, match="layer=5: this model has 4 blocks"):
        ecoli.embed(SEQS, layer=5)


def test_center_pooling_averages_the_central_positions(ecoli):
    per_pos = ecoli.embed(SEQS, pooling=None)
    c = ecoli.embed(SEQS, pooling="center:6")
    assert np.allclose(c[0], per_pos[0][7:13].mean(0), atol=1e-6)  # 20 positions: 7..12
    assert np.allclose(c[1], per_pos[1][4:10].mean(0), atol=1e-6)  # 15 positions: 4..9
    assert np.allclose(pool(np.arange(5.0)[:, None], "center:1"), [2.0])
    with pytest.raises(ConfigError, match="center:18: sequence 1 has only 15 positions"):
        ecoli.embed(SEQS, pooling="center:18")
    for bad in ("center:0", "center:x", "median"):
        with pytest.raises(ConfigError, match="must be mean, first, last, center:K"):
            ecoli.embed(SEQS, pooling=bad)


def test_long_sequences_are_tiled_with_central_windows(ecoli):
    for length, window in ((300, 128), (129, 128), (1000, 64), (64, 64)):
        spans = tiles(length, window)
        covered = np.zeros(length, dtype=int)
        for a, b, lo, hi in spans:
            assert b - a <= window and a <= lo <= hi <= b
            covered[lo:hi] += 1
        assert (covered == 1).all()  # every position from exactly one window
    long = "".join(np.random.default_rng(0).choice(list("ACGT"), 700))
    per_pos = ecoli.embed([long], pooling=None)[0]
    assert per_pos.shape == (700, 128)
    a, b, lo, hi = tiles(700, 128)[2]  # a middle window gives exactly its positions' features
    alone = ecoli.embed([long[a:b]], pooling=None)[0]
    assert np.allclose(per_pos[lo:hi], alone[lo - a : hi - a], atol=1e-6)


def test_bad_arguments_and_converted_bases(ecoli):
    for kwargs, match in ((dict(batch_size=0), "batch_size=0: must be > 0"), (dict(batch_size=-1), "must be > 0"),
                          (dict(rc="max"), "rc='max'")):
        with pytest.raises(ConfigError, match=match):
            ecoli.embed(SEQS, **kwargs)
    with pytest.raises(ConfigError, match="no sequences"):
        ecoli.embed([])
    with pytest.warns(UserWarning, match=r"embed\(\): 3 bases of 2 of 2 sequences converted: 2 U read as T, 1 IUPAC"):
        ecoli.embed(["ACGUACGU", "ACGTRCGT"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ecoli.embed(["ACGTACGT"])


def test_cli_output_names(tmp_path):
    (tmp_path / "col").mkdir()
    for name in ("rep.1.fa", "rep.2.fa"):
        (tmp_path / "col" / name).write_text(">a\nACGTACGTAC\n>b\nGGGTTTAAAC\n")
    outs = [embed_cli({"ckpt": "ecoli", "input": str(tmp_path / "col" / n), "progress": False})
            for n in ("rep.1.fa", "rep.2.fa")]
    assert [o.name for o in outs] == ["rep.1.embeddings.npy", "rep.2.embeddings.npy"]
    (tmp_path / "o").mkdir()
    fa = str(tmp_path / "col" / "rep.1.fa")
    out = embed_cli({"ckpt": "ecoli", "input": fa, "out": str(tmp_path / "o" / "em_noext")})
    assert out.name == "em_noext.npy" and out.is_file() and (tmp_path / "o" / "em_noext.npy.names.txt").is_file()
    assert np.load(out).shape == (2, 128)
    per = embed_cli({"ckpt": "ecoli", "input": fa, "pooling": None, "out": str(tmp_path / "o" / "em_pp.npz")})
    assert per.name == "em_pp.npz" and len(np.load(per).files) == 2
    with pytest.raises(ConfigError, match="em_pp.npy: pooling=null writes .npz"):
        embed_cli({"ckpt": "ecoli", "input": fa, "pooling": None, "out": str(tmp_path / "o" / "em_pp.npy")})
    odd = tmp_path / "col" / "seqs.npy"  # a FASTA with an odd name
    odd.write_text(">a\nACGT\n")
    with pytest.raises(ConfigError, match="is the input file"):
        embed_cli({"ckpt": "ecoli", "input": str(odd), "out": str(odd)})
    assert odd.read_text() == ">a\nACGT\n"
    with pytest.raises(ConfigError, match="does not exist"):
        embed_cli({"ckpt": "ecoli", "input": fa, "out": str(tmp_path / "nope" / "x.npy")})
    assert not (tmp_path / "o" / "em_pp.npy").exists() and not (tmp_path / "o" / "em_pp.npy.npz").exists()


def test_cli_bad_batch_size_is_one_line(tmp_path, monkeypatch, capsys):
    from tests.test_export_folder import run_cli

    fa = tmp_path / "a.fa"
    fa.write_text(">a\nACGT\n")
    monkeypatch.chdir(tmp_path)  # Hydra writes <command>.log where it runs
    code, err = run_cli("mdlm_dna.embed", ["ckpt=ecoli", f"input={fa}", "batch_size=0"], monkeypatch, capsys)
    assert code == 2 and "batch_size=0: must be > 0" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.npy"))
