"""Loading reference (Hugging Face layout) Caduceus checkpoints: names, vocabulary rows, and the fused
add-norm swap, checked against a transcription of the reference network's channel-concatenated layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mdlm_dna.artifacts.caduceus_hf import load_caduceus, read_safetensors, reference_rows
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.models.mamba import BiMamba

TOK = NucleotideTokenizer()
# ours -> reference rows, written out: A C G T N [MASK] [PAD] [BOS] [EOS]=[SEP] [UNK]
ROWS = [7, 8, 9, 10, 11, 3, 4, 2, 1, 6]
N_STATE = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def reference_config(rcps=True, fused=True, d_model=118, n_layer=4):
    """config.json of kuleshov-group/caduceus-ps_seqlen-1k_d_model-118_n_layer-4_lr-8e-3 (ph: rcps false)."""
    return {
        "architectures": ["CaduceusForMaskedLM"],
        "model_type": "caduceus",
        "bidirectional": True,
        "bidirectional_strategy": "add",
        "bidirectional_weight_tie": True,
        "complement_map": {str(i): c for i, c in enumerate([*range(7), 10, 9, 8, 7, *range(11, 16)])},
        "d_model": d_model,
        "n_layer": n_layer,
        "fused_add_norm": fused,
        "rcps": rcps,
        "initializer_cfg": {"initializer_range": 0.02, "n_residuals_per_layer": 1, "rescale_prenorm_residual": True},
        "norm_epsilon": 1e-05,
        "pad_vocab_size_multiple": 8,
        "residual_in_fp32": False,
        "rms_norm": True,
        "ssm_cfg": {
            "bias": False,
            "conv_bias": True,
            "d_conv": 4,
            "d_state": N_STATE,
            "dt_init": "random",
            "dt_init_floor": 0.0001,
            "dt_max": 0.1,
            "dt_min": 0.001,
            "dt_rank": "auto",
            "dt_scale": 1.0,
            "expand": 2,
            "use_fast_path": True,
        },
        "torch_dtype": "float32",
        "transformers_version": "4.38.1",
        "vocab_size": 16,
    }


def ref_names(config):
    """The reference package's parameter names for this config (CaduceusForMaskedLM.state_dict())."""
    rcps, fused, pre = config["rcps"], config["fused_add_norm"], "caduceus.backbone."
    sub = "submodule." if rcps else ""
    norm_sub = "submodule." if rcps and not fused else ""
    return {
        "embedding": pre + "embeddings.word_embeddings." + ("embedding.weight" if rcps else "weight"),
        "mixer": lambda i, direction, p: f"{pre}layers.{i}.mixer.{sub}{direction}.{p}",
        "norm": lambda i: f"{pre}layers.{i}.norm.{norm_sub}weight",
        "norm_f": f"{pre}norm_f.{norm_sub}weight",
        "head": "lm_head.lm_head.weight" if rcps else "lm_head.weight",
    }


def fake_checkpoint(config, tied_copies: bool, seed=0):
    """Random tensors under the reference names and shapes. ``tied_copies``: also store the tied head and
    reverse projections (as torch.save does); without, one copy each (as save_pretrained's safetensors)."""
    g = torch.Generator().manual_seed(seed)
    d, n = config["d_model"], config["n_layer"]
    di, rank, V = 2 * d, math.ceil(d / 16), config["vocab_size"]
    names = ref_names(config)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    sd = {names["embedding"]: r(V, d, scale=0.5)}
    comp = torch.tensor([config["complement_map"][str(i)] for i in range(V)])
    if config["rcps"]:
        sd["caduceus.backbone.embeddings.word_embeddings.complement_map"] = comp.clone()
    for i in range(n):
        shared = {"in_proj.weight": r(2 * di, d, scale=d**-0.5), "out_proj.weight": r(d, di, scale=di**-0.5)}
        for direction in ("mamba_fwd", "mamba_rev"):
            dt = torch.exp(torch.rand(di, generator=g) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
            params = {
                "A_log": torch.log(torch.arange(1.0, N_STATE + 1)).repeat(di, 1) + r(di, N_STATE, scale=0.1),
                "D": 1 + r(di, scale=0.1),
                "conv1d.weight": r(di, 1, 4, scale=0.4),
                "conv1d.bias": r(di, scale=0.1),
                "x_proj.weight": r(rank + 2 * N_STATE, di, scale=di**-0.5),
                "dt_proj.weight": r(di, rank, scale=rank**-0.5),
                "dt_proj.bias": dt + torch.log(-torch.expm1(-dt)),
            }
            if direction == "mamba_fwd" or tied_copies:
                params.update(shared)
            for p, t in params.items():
                sd[names["mixer"](i, direction, p)] = t
        sd[names["norm"](i)] = 1 + r(d, scale=0.2)
    sd[names["norm_f"]] = 1 + r(d, scale=0.2)
    if tied_copies:
        sd[names["head"]] = sd[names["embedding"]]
    if config["rcps"]:
        sd["lm_head.complement_map"] = comp.clone()
    return sd


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """The safetensors format written by hand (8-byte header size, JSON header, raw data)."""
    dtypes = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bfloat16: "BF16"}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def save(tmp_path: Path, config, sd, fmt: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    if fmt == "safetensors":
        write_safetensors(tmp_path / "model.safetensors", sd)
    else:
        torch.save(sd, tmp_path / "pytorch_model.bin")
    return tmp_path


# ----------------------------------------------------------------------------------------------------
# the reference network, transcribed in its own [h_fwd, h_rc] channel layout


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rc_h(x):
    """RC of a hidden state: flip length and channels (the reference's RCPSWrapper.rc)."""
    return x.flip(-2, -1)


def reference_logits(sd, config, ref_ids, fused: bool):
    """CaduceusForMaskedLM.forward for an RCPS config: RCPSEmbedding, RCPSMambaBlock (``fused`` branch
    or not), RCPSWrapper(BiMambaWrapper), norm_f, RCPSLMHead, as modeling_caduceus.py / modeling_rcps.py."""
    d, names = config["d_model"], ref_names(config)
    comp = torch.tensor([config["complement_map"][str(i)] for i in range(config["vocab_size"])])
    E = sd[names["embedding"]].double()
    h = torch.cat([E[ref_ids], rc_h(E[comp[ref_ids.flip(-1)]])], dim=-1)
    residual = None
    for i in range(config["n_layer"]):
        w = sd[names["norm"](i)].double()
        if fused:  # the halves swap: the second half feeds the forward call
            r_f = h[..., d:] + (0 if residual is None else residual[..., d:])
            r_r = rc_h(h[..., :d]) + (0 if residual is None else rc_h(residual[..., :d]))
            h = torch.cat([rms_norm(r_f, w), rc_h(rms_norm(r_r, w))], dim=-1)
            residual = torch.cat([r_f, rc_h(r_r)], dim=-1)
        else:  # RCPSAddNormWrapper: each half in place
            residual = h if residual is None else h + residual
            fwd, rc = rms_norm(residual[..., :d], w), rc_h(rms_norm(rc_h(residual[..., d:]), w))
            h = torch.cat([fwd, rc], dim=-1)
        mixer = BiMamba(d, d_state=N_STATE).double()
        own = {}
        for k in mixer.state_dict():
            direction, p = k.split(".", 1)
            key = names["mixer"](i, direction, p)
            own[k] = sd[key] if key in sd else sd[names["mixer"](i, "mamba_fwd", p)]  # tied copies
        mixer.load_state_dict(own)
        h = torch.cat([mixer(h[..., :d]), rc_h(mixer(rc_h(h[..., d:])))], dim=-1)
    wf = sd[names["norm_f"]].double()
    res = h + residual
    h = torch.cat([rms_norm(res[..., :d], wf), rc_h(rms_norm(rc_h(res[..., d:]), wf))], dim=-1)
    return h[..., :d] @ E.T + h[..., d:].flip(-1) @ E[comp].T


# ----------------------------------------------------------------------------------------------------


def test_vocabulary_rows():
    assert reference_rows(TOK.vocab) == ROWS


@pytest.mark.parametrize("fmt,tied_copies", [("safetensors", False), ("bin", True)])
def test_every_checkpoint_tensor_lands(tmp_path, fmt, tied_copies):
    config = reference_config()
    sd = fake_checkpoint(config, tied_copies)
    model = load_caduceus(save(tmp_path, config, sd, fmt))
    names = ref_names(config)
    ours = model.state_dict()
    used = {"caduceus.backbone.embeddings.word_embeddings.complement_map", "lm_head.complement_map"}

    def expect(key, ref_key, rows=None):
        src = sd[ref_key] if ref_key in sd else None
        assert src is not None, ref_key
        used.add(ref_key)
        torch.testing.assert_close(ours.pop(key), src if rows is None else src[rows], rtol=0, atol=0, msg=key)

    expect("embedding.weight", names["embedding"], ROWS)
    expect("norm_f.weight", names["norm_f"])
    for i in range(config["n_layer"]):
        expect(f"layers.{i}.norm.weight", names["norm"](i))
        for direction in ("mamba_fwd", "mamba_rev"):
            for p in (
                "A_log",
                "D",
                "conv1d.weight",
                "conv1d.bias",
                "x_proj.weight",
                "dt_proj.weight",
                "dt_proj.bias",
                "in_proj.weight",
                "out_proj.weight",
            ):
                tied = direction == "mamba_rev" and p in ("in_proj.weight", "out_proj.weight")
                src = names["mixer"](i, "mamba_fwd" if tied and not tied_copies else direction, p)
                expect(f"layers.{i}.mixer.{direction}.{p}", src)
    assert ours == {}  # every model tensor came from the file
    if tied_copies:
        used.add(names["head"])
        torch.testing.assert_close(sd[names["head"]][ROWS], model.embedding.weight)
    assert used == set(sd)  # every file tensor went somewhere (or is a checked buffer / tied copy)


@pytest.mark.parametrize("fused", [True, False])
def test_loaded_model_computes_the_reference_network(tmp_path, fused):
    config = reference_config(fused=fused, d_model=24, n_layer=3)
    sd = fake_checkpoint(config, tied_copies=False, seed=1)
    path = save(tmp_path, config, sd, "safetensors")
    model = load_caduceus(path).double()
    ids = torch.randint(0, TOK.vocab_size, (2, 21), generator=torch.Generator().manual_seed(0))
    expected = reference_logits(sd, config, torch.tensor(ROWS)[ids], fused)[..., ROWS]
    with torch.no_grad():
        torch.testing.assert_close(model(ids, None), expected, rtol=1e-9, atol=1e-9)
        # the swap changes the function: the other path gives clearly different logits
        other = load_caduceus(path, rcps_swap_halves=not fused).double()(ids, None)
    assert (other - expected).abs().max() > 1e-2 * expected.abs().max()
    flipped = reference_logits(sd, config, torch.tensor(ROWS)[ids], not fused)[..., ROWS]
    torch.testing.assert_close(other, flipped, rtol=1e-9, atol=1e-9)


def test_loaded_ps_is_rc_equivariant(tmp_path):
    config = reference_config()
    model = load_caduceus(save(tmp_path, config, fake_checkpoint(config, False), "safetensors"))
    ids = torch.randint(0, TOK.vocab_size, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, out_rc = model(ids, None), model(TOK.reverse_complement(ids), None)
    torch.testing.assert_close(out_rc, out.flip(1)[..., list(TOK.complement_ids)], rtol=1e-5, atol=1e-5)


def test_ph_checkpoint(tmp_path):
    config = reference_config(rcps=False)
    sd = fake_checkpoint(config, tied_copies=True)
    assert "caduceus.backbone.layers.0.mixer.mamba_fwd.in_proj.weight" in sd
    path = save(tmp_path, config, sd, "bin")
    ph = load_caduceus(path)
    assert ph.cfg.posthoc and not ph.cfg.rcps and not ph.training
    emb = sd["caduceus.backbone.embeddings.word_embeddings.weight"]
    torch.testing.assert_close(ph.embedding.weight, emb[ROWS])
    ids = torch.randint(0, TOK.vocab_size, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out, out_rc = ph(ids, None), ph(TOK.reverse_complement(ids), None)
        torch.testing.assert_close(out_rc, out.flip(1)[..., list(TOK.complement_ids)], rtol=1e-5, atol=1e-5)
        bare = load_caduceus(path, backbone="bimamba")(ids, None)
        rc_bare = load_caduceus(path, backbone="bimamba")(TOK.reverse_complement(ids), None)
        torch.testing.assert_close(out, 0.5 * (bare + rc_bare.flip(1)[..., list(TOK.complement_ids)]))


def test_mismatches_raise(tmp_path):
    config = reference_config(d_model=16, n_layer=1)
    sd = fake_checkpoint(config, False)
    with pytest.raises(ValueError, match="unexpected tensor"):
        load_caduceus(save(tmp_path / "a", config, {**sd, "score.weight": torch.zeros(2, 16)}, "bin"))
    missing = {k: v for k, v in sd.items() if not k.endswith("mamba_rev.conv1d.bias")}
    with pytest.raises(ValueError, match="missing"):
        load_caduceus(save(tmp_path / "b", config, missing, "bin"))
    bad_comp = {**config, "complement_map": {**config["complement_map"], "7": 9, "9": 7}}
    with pytest.raises(ValueError, match="complement"):
        load_caduceus(save(tmp_path / "c", bad_comp, sd, "bin"))
    with pytest.raises(ValueError, match="only as caduceus_ps"):
        load_caduceus(save(tmp_path / "d", config, sd, "bin"), backbone="bimamba")


def test_safetensors_reader_without_the_package(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors", None)  # force the hand-written reader
    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.arange(5),
        "c": torch.randn(2, 2).to(torch.bfloat16),
        "d": torch.randn(7, dtype=torch.float64),
    }
    write_safetensors(tmp_path / "x.safetensors", tensors)
    back = read_safetensors(tmp_path / "x.safetensors")
    assert set(back) == set(tensors)
    for k in tensors:
        assert back[k].dtype == tensors[k].dtype and torch.equal(back[k], tensors[k]), k
