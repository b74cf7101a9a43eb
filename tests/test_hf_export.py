"""Exported folders are transformers remote-code models: the remote code restates our forward pass exactly, and
loads without mdlm_dna on the import path."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mdlm_dna import DiffusionLM
from mdlm_dna.models.dit import DiT as OurDiT
from mdlm_dna.models.dit import DiTConfig

pytest.importorskip("transformers")
TEMPLATES = Path(__file__).parents[1] / "mdlm_dna" / "artifacts" / "hf_export"


def tiny_model(*overrides: str) -> DiffusionLM:
    from omegaconf import OmegaConf

    from mdlm_dna.train.lit_module import DiffusionModule
    from tests.conftest import TINY, compose_pretrain

    mamba = any(o.startswith("model=") and "dit" not in o for o in overrides)
    base = [o for o in TINY if not o.startswith("model.") or o.startswith("model.markov")] if mamba else TINY
    config = OmegaConf.to_container(compose_pretrain(*base, *overrides), resolve=True)
    return DiffusionLM(DiffusionModule(config), device="cpu")


def remote_module(name: str):
    """A template imported from its file, as transformers imports it from an exported folder."""
    sys.path.insert(0, str(TEMPLATES))
    try:
        spec = importlib.util.spec_from_file_location(f"remote_{name}", TEMPLATES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(TEMPLATES))
    return module


def test_templates_do_not_import_mdlm_dna():
    import ast

    for path in TEMPLATES.glob("*_mdlm_dna.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert imported <= {"json", "os", "math", "torch", "transformers", "configuration_mdlm_dna"}, (path, imported)


@pytest.mark.parametrize("settings", [
    dict(conv_kernel=5, time_conditioning=False),
    dict(conv_kernel=0, time_conditioning=True),
    dict(conv_kernel=3, num_classes=3),
    dict(conv_kernel=3, causal=True),
])
def test_remote_dit_equals_ours_on_random_weights(settings):
    torch.manual_seed(0)
    ours = OurDiT(DiTConfig(vocab_size=10, d_model=32, n_layers=2, n_heads=2, cond_dim=16, **settings)).eval()
    with torch.no_grad():
        for p in ours.parameters():  # adaLN and the head start at zero: make every path count
            p.copy_(torch.randn_like(p) * 0.3)
    remote = remote_module("modeling_mdlm_dna")
    theirs = remote.DiT({"name": "dit", "d_model": 32, "n_layers": 2, "n_heads": 2, "cond_dim": 16, **settings},
                        10).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randint(0, 10, (3, 23))
    sigma = torch.tensor([0.0, 0.7, 3.0])
    labels = torch.tensor([0, 2, 3]) if settings.get("num_classes") else None
    with torch.no_grad():
        assert torch.equal(ours(x, sigma, labels=labels), theirs(x, sigma, labels=labels))
        assert torch.equal(ours.hidden_states(x, sigma, labels=labels), theirs.hidden_states(x, sigma, labels=labels))


def test_remote_tokenizer_gives_our_ids(tmp_path):
    m = DiffusionLM.from_pretrained("ecoli", device="cpu")
    folder = m.save_pretrained(tmp_path / "e")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    seqs = ["ACGTNACGT", "acgtRYu"]
    ids = tok(seqs)["input_ids"]
    assert ids == [m.encode(s) for s in seqs]
    assert tok(["ACGTNACGT"], return_tensors="pt")["input_ids"].tolist() == [m.encode("ACGTNACGT")]
    assert tok.mask_token_id == m.tokenizer.mask_id and tok.decode(ids[0]) == "ACGTNACGT"


def test_config_keeps_our_keys_beside_the_transformers_keys(tmp_path):
    m = DiffusionLM.from_pretrained("ecoli", device="cpu")
    folder = m.save_pretrained(tmp_path / "e")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == "mdlm-dna" and "run_config" in meta and meta["format_version"] == 2
    assert meta["model_type"] == "mdlm_dna"
    assert set(meta["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForMaskedLM", "AutoTokenizer"}
    assert meta["excluded_ids"] == m.objective.excluded_ids.tolist() and 5 in meta["excluded_ids"]


def test_ar_export_is_a_causal_lm(tmp_path):
    from transformers import AutoModelForCausalLM

    m = tiny_model("objective=ar", "model.causal=true", "model.conv_kernel=3")
    with torch.no_grad():
        for p in m.objective.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    folder = m.save_pretrained(tmp_path / "ar")
    assert "AutoModelForCausalLM" in json.loads((folder / "config.json").read_text())["auto_map"]
    hf = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    x = torch.randint(0, 4, (2, 17))
    x[:, 0] = m.tokenizer.bos_id
    with torch.no_grad():
        ours = m.backbone(x, None).index_fill(-1, m.objective.excluded_ids, float("-inf"))
        assert torch.equal(hf(input_ids=x).logits, ours)
    out = hf.generate(x[:1, :4], max_new_tokens=3, do_sample=True)  # transformers' sampler works too
    allowed = set(range(m.tokenizer.vocab_size)) - set(m.objective.excluded_ids.tolist())
    assert out.shape == (1, 7) and set(out[0, 4:].tolist()) <= allowed  # excluded tokens are never drawn


SCRIPT = r"""
import os, sys
sys.path = [p for p in sys.path if not os.path.exists(os.path.join(p, "mdlm_dna", "__init__.py"))]
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "mdlm_dna" or name.startswith("mdlm_dna."):
            raise ImportError("mdlm_dna is hidden")
sys.meta_path.insert(0, Block())
try:
    import mdlm_dna  # noqa
    sys.exit("mdlm_dna is importable")
except ImportError:
    pass
import numpy as np, torch
from transformers import AutoModelForMaskedLM, AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained("model", trust_remote_code=True)
model = AutoModelForMaskedLM.from_pretrained("model", trust_remote_code=True)
enc = tok(["ACGTNACGTAACCGGTTACGATCGA"], return_tensors="pt")
enc["input_ids"][0, 5:9] = tok.mask_token_id
with torch.no_grad():
    logits = model(**enc).logits
    hidden = AutoModel.from_pretrained("model", trust_remote_code=True)(**enc).last_hidden_state
np.save("ids.npy", enc["input_ids"].numpy())
np.save("logits.npy", logits.numpy())
np.save("hidden.npy", hidden.numpy())
assert "mdlm_dna" not in sys.modules
"""


def test_automodel_without_mdlm_dna_reproduces_our_logits(tmp_path):
    m = DiffusionLM.from_pretrained("ecoli", device="cpu")
    m.save_pretrained(tmp_path / "export")
    work = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "export", work / "model")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
    proc = subprocess.run([sys.executable, "-I", "-c", SCRIPT], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = torch.from_numpy(np.load(work / "ids.npy"))
    with torch.no_grad():
        ours = m.objective.denoiser_logits(ids, torch.full((1,), 0.5))
        hidden = m.backbone.hidden_states(ids)
    # bit-identical (float32, same machine): same operations in the same order on the same weights
    assert torch.equal(torch.from_numpy(np.load(work / "logits.npy")), ours)
    assert torch.equal(torch.from_numpy(np.load(work / "hidden.npy")), hidden)


@pytest.mark.parametrize("name,extra", [
    ("mamba", []), ("bimamba", ["model.bidirectional_weight_tie=false"]), ("caduceus_ps", []),
    ("caduceus_ph", ["model.time_conditioning=true"]),
])
def test_remote_mamba_family_equals_ours_within_1e_5(name, extra, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    m = tiny_model(f"model={name}", "model.d_model=16", "model.n_layers=2", *extra)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.objective.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder = m.save_pretrained(tmp_path / name, transformers=True)
    hf = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
    x = torch.randint(0, 6, (2, 19))
    with torch.no_grad():
        ours = m.objective.denoiser_logits(x, torch.full((2,), 0.3))
        sigma = m.objective.schedule.sigma(torch.full((2,), 0.3))
        theirs = hf(input_ids=x, sigma=sigma).logits
        finite = torch.isfinite(ours)
        assert torch.equal(finite, torch.isfinite(theirs))
        # a different scan (the plain recurrence vs our chunked / Numba scan): equal to float32 rounding
        assert torch.allclose(theirs[finite], ours[finite], atol=1e-5, rtol=1e-5)
        feats = AutoModel.from_pretrained(folder, trust_remote_code=True)(input_ids=x, sigma=sigma).last_hidden_state
        assert torch.allclose(feats, m.backbone.hidden_states(x, sigma), atol=1e-5, rtol=1e-5)


def test_remote_chain_model_equals_ours(tmp_path):
    """model.markov_order: the remote code restates the chain's forward-backward (dense, plain torch) and reads
    its tables from the weights; ours runs the CPU kernel over allowed states. Same logits to float32 rounding,
    at every masking level (a window with no visible base included)."""
    from transformers import AutoModelForMaskedLM

    m = tiny_model("model.markov_order=3")
    rng = np.random.default_rng(0)
    m.backbone.prior.load_chain(rng.dirichlet(np.ones(4), size=64), rng.integers(1, 50, 64), alpha=0.5)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.backbone.backbone.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder = m.save_pretrained(tmp_path / "chain", transformers=True)
    assert json.loads((folder / "config.json").read_text())["backbone"]["markov_order"] == 3
    hf = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
    x = torch.randint(0, 4, (4, 23))
    x[torch.rand(4, 23) < torch.tensor([[0.0], [0.3], [0.7], [1.0]])] = m.tokenizer.mask_id
    with torch.no_grad():
        ours = m.objective.denoiser_logits(x, torch.full((4,), 0.5))
        theirs = hf(input_ids=x).logits
        finite = torch.isfinite(ours)
        assert torch.equal(finite, torch.isfinite(theirs))
        assert torch.allclose(theirs[finite], ours[finite], atol=1e-5, rtol=1e-5)
        # the chain is in it: the network alone gives other logits
        assert not torch.allclose(theirs[finite], m.backbone.backbone(x, None)[finite], atol=1e-2)


def test_uncovered_objectives_get_no_remote_code_and_a_clear_refusal(tmp_path):
    from mdlm_dna.utils.errors import ConfigError

    m = tiny_model("objective=sedd")
    with pytest.raises(ConfigError, match="objective 'sedd' has no transformers remote code"):
        m.save_pretrained(tmp_path / "strict", transformers=True)
    assert not (tmp_path / "strict").exists()
    with pytest.warns(UserWarning, match="without transformers remote code"):
        folder = m.save_pretrained(tmp_path / "plain")
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    assert not (folder / "modeling_mdlm_dna.py").exists()
    DiffusionLM.from_pretrained(folder)


def test_model_card_front_matter_is_what_huggingface_hub_accepts(tmp_path):
    from huggingface_hub import ModelCard

    m = DiffusionLM.from_pretrained("ecoli", device="cpu")
    folder = m.save_pretrained(tmp_path / "e", metrics={"test": {"bits_per_base": 1.9, "nelbo_nats_per_token": 1.3}})
    text = (folder / "README.md").read_text()
    card = ModelCard(text, ignore_metadata_errors=False)  # parses the YAML and the model-index strictly
    data = card.data
    assert data.library_name == "transformers" and data.license == "apache-2.0" and data.pipeline_tag == "fill-mask"
    assert data.datasets == ["ecoli_k12_mg1655"] and {"dna", "mdlm", "custom_code"} <= set(data.tags)
    test = next(r for r in data.eval_results if r.dataset_split == "test")
    assert test.metric_type == "bits_per_base" and test.metric_value == 1.9
    assert ModelCard(str(card)).data.to_dict() == data.to_dict()  # round trip
    assert "AutoModelForMaskedLM.from_pretrained" in text and text.count("```") % 2 == 0


def test_class_conditional_model_takes_the_label_as_an_argument(tmp_path):
    from transformers import AutoModelForMaskedLM

    m = DiffusionLM.from_pretrained("ecoli_yeast", device="cpu")
    hf = AutoModelForMaskedLM.from_pretrained(m.save_pretrained(tmp_path / "ey"), trust_remote_code=True)
    assert hf.config.class_names == m.classes == ["ecoli", "yeast"]
    x = torch.randint(0, 6, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for labels in (None, torch.tensor([0, 1])):
            ours = m.objective.denoiser_logits(x, torch.full((2,), 0.4), labels=labels)
            assert torch.equal(hf(input_ids=x, class_labels=labels).logits, ours)


def test_text_model_folder_carries_its_hugging_face_tokenizer(tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from tests.conftest import TINY

    m = tiny_model(*[o for o in TINY if not o.startswith("data.seq_len")], "data=tinyshakespeare", "data.seq_len=32")
    with torch.no_grad():
        for p in m.objective.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    folder = m.save_pretrained(tmp_path / "text")
    assert not (folder / "tokenization_mdlm_dna.py").exists() and (folder / "tokenizer").is_dir()
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    ids = tok(["To be or not to be"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert ids[0].tolist() == m.tokenizer.encode("To be or not to be")
    hf = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        assert torch.equal(hf(input_ids=ids).logits, m.objective.denoiser_logits(ids, torch.full((1,), 0.5)))
    assert DiffusionLM.from_pretrained(folder).is_text
