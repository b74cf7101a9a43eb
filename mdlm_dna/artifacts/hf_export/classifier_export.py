"""A fine-tuned classifier as a folder that transformers loads (``AutoModelForSequenceClassification``, remote code)
and this package loads too (``load_classifier(DIR)``, ``python -m mdlm_dna.predict run=DIR``).

    export_classifier(load_classifier("runs/finetune/promoters"), "export/promoters")

The folder holds classifier.json (what rebuilds the network here), model.safetensors (the weights, under
``model.`` as the remote code names them), config.json (``id2label``, the backbone's settings, ``auto_map``),
the remote code, the tokenizer's files and a model card with the fine-tune's test metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mdlm_dna.artifacts.hf_export import BACKBONE_KEYS, BACKBONES, TEMPLATES, write_tokenizer_files
from mdlm_dna.utils.protocols import SequenceClassifier

CLASSIFIER_FORMAT = "mdlm-dna-classifier"
HF_PREFIX = "model."


def _inner(clf: SequenceClassifier):
    return clf.model.model if hasattr(clf.model, "on_test") else clf.model  # unwrap Conjoin


def classifier_settings(clf: SequenceClassifier) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json's ``classifier`` section, its ``backbone`` section) for the remote code."""
    from mdlm_dna.data.tokenizers import NucleotideTokenizer

    spec, head = clf.spec, dict(clf.spec.get("head") or {})
    section = {"kind": spec["classifier"], "num_classes": int(spec["num_classes"]),
               "max_length": int(spec["max_length"]), "pooling": head.get("pooling", "mean"),
               "position_bias": bool(head.get("position_bias")),
               "pad_mode": head.get("pad_mode", "pad"), "strands": head.get("strands", "forward"),
               "conjoin_test": bool(head.get("conjoin_test")), "conjoin_wrapper": hasattr(clf.model, "on_test"),
               "complement_ids": list(NucleotideTokenizer.complement_ids)}
    if spec["classifier"] == "cnn":  # the remote code's CNN pads or cuts every input to input_len
        return {**section, "input_len": int(spec["max_length"]), "cnn": dict(spec.get("cnn") or {})}, {"name": "cnn"}
    name = str(spec["model"]["name"])
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r} has no transformers remote code")
    backbone = _inner(clf).backbone
    settings = {"name": name, **{k: getattr(backbone.cfg, k) for k in BACKBONE_KEYS if hasattr(backbone.cfg, k)}}
    complement = getattr(backbone, "complement", None)
    if complement is not None:
        settings["complement_ids"] = [int(i) for i in complement.tolist()]
    return section, settings


def _card(clf: SequenceClassifier, metrics: dict[str, Any]) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    task = str(clf.spec.get("task") or metrics.get("task") or "classification")
    init = metrics.get("init")
    results = [EvalResult(task_type="text-classification", dataset_type=task, dataset_name=task, dataset_split="test",
                          metric_type=m, metric_value=round(float(metrics[m]), 6))
               for m in ("accuracy", "mcc", "f1") if metrics.get(m) is not None]
    hub_id = isinstance(init, str) and init.count("/") == 1 and not init.startswith((".", "/", "~"))
    data = ModelCardData(library_name="transformers", license="apache-2.0", pipeline_tag="text-classification",
                         tags=["dna", "biology", "mdlm-dna", "custom_code", str(clf.spec["classifier"])],
                         base_model=init if hub_id else None, model_name=f"{task}-classifier",
                         eval_results=results or None)
    body = "\n".join([
        f"# {task} classifier",
        "",
        f"A sequence classifier fine-tuned with mdlm-dna (`{clf.spec['classifier']}`; initialised from "
        f"`{init or 'random weights'}`), classes {clf.classes}, inputs up to {clf.max_length} bases.",
        "",
        "| split | accuracy | MCC | F1 |",
        "|---|---|---|---|",
        f"| test | {metrics.get('accuracy', 'n/a')} | {metrics.get('mcc', 'n/a')} | {metrics.get('f1', 'n/a')} |",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained(\"PATH_OR_HUB_ID\", trust_remote_code=True)",
        "model = AutoModelForSequenceClassification.from_pretrained(\"PATH_OR_HUB_ID\", trust_remote_code=True)",
        "probs = model(**tok([\"ACGT...\"], return_tensors=\"pt\", padding=True)).logits.softmax(-1)",
        "```",
        "",
        "```bash",
        "python -m mdlm_dna.predict run=PATH input=new.fa out=predictions.tsv",
        "```",
        "",
    ])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def export_classifier(clf: SequenceClassifier, out_dir: str | os.PathLike, metrics: dict[str, Any] | None = None,
                      overwrite: bool = True) -> Path:
    """Write the folder (see the module docstring); the same folder rules as ``DiffusionLM.save_pretrained``."""
    from safetensors.torch import save_file

    from mdlm_dna.artifacts.checkpoints import EXPORT_FORMAT_VERSION
    from mdlm_dna.artifacts.export_folder import (
        check_export_folder,
        install_files,
        usual_permissions,
    )
    from mdlm_dna.data.tokenizers import NucleotideTokenizer
    from mdlm_dna.utils.resources import package_version

    out = Path(out_dir).expanduser()
    protected = (clf.source,) if clf.source is not None else ()
    check_export_folder(out, overwrite=overwrite, protected=protected)
    section, backbone = classifier_settings(clf)
    metrics = dict(metrics or {})
    tok = NucleotideTokenizer()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        state = {HF_PREFIX + k: v.detach().cpu().clone().contiguous() for k, v in clf.model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "classifier.json").write_text(json.dumps(clf.spec, indent=1))
        here = Path(__file__).parent
        for name in TEMPLATES:
            shutil.copyfile(here / name, tmp / name)
        write_tokenizer_files(tok.vocab, clf.max_length, tmp)
        meta = {
            "format": CLASSIFIER_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "package_version": package_version(),
            "model_type": "mdlm_dna",
            "architectures": ["MDLMDNAForSequenceClassification"],
            "auto_map": {"AutoConfig": "configuration_mdlm_dna.MDLMDNAConfig",
                         "AutoModelForSequenceClassification": "modeling_mdlm_dna.MDLMDNAForSequenceClassification",
                         "AutoTokenizer": ["tokenization_mdlm_dna.MDLMDNATokenizer", None]},
            "classifier": section,
            "backbone": backbone,
            "id2label": {str(i): c for i, c in enumerate(clf.classes)},
            "label2id": {c: i for i, c in enumerate(clf.classes)},
            "vocab_size": tok.vocab_size,
            "pad_token_id": tok.pad_id, "mask_token_id": tok.mask_id, "bos_token_id": tok.bos_id,
            "eos_token_id": tok.eos_id,
            "metrics": metrics,
            "torch_dtype": "float32",
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=1))
        (tmp / "README.md").write_text(_card(clf, metrics))
        usual_permissions(tmp)
        install_files(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
