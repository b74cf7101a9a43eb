"""The README.md model card of an exported model, written from what the package knows about it."""

from __future__ import annotations

from typing import Any

from mdlm_dna.utils.protocols import LanguageModel


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _data_lines(config: dict[str, Any], batch: int | None = None) -> list[str]:
    """The card's data lines; ``batch``: samples per optimizer step as trained (the training record's)."""
    data = config.get("data") or {}
    if data.get("kind") == "text":
        tok = (data.get("tokenizer") or {}).get("name")
        hub = data.get("hub") if isinstance(data.get("hub"), dict) else {}
        corpus = data.get("name") or hub.get("path")  # (the conditional used to swallow a name without a hub)
        return [f"- corpus: {corpus or data.get('source', 'text')}", f"- tokenizer: {tok}",
                f"- rows of {data.get('seq_len')} tokens"]
    g = config.get("genome") or {}
    split = (f"train = first {1 - g.get('val_fraction', 0) - g.get('test_fraction', 0):.0%} of every record, "
             f"validation = next {g.get('val_fraction', 0):.0%}, test = last {g.get('test_fraction', 0):.0%}")
    if g.get("bed"):
        split = f"intervals of {g['bed']} (split map {g.get('split_map')})"
    elif g.get("val_records") or g.get("test_records"):
        split = f"validation records {g.get('val_records')}, test records {g.get('test_records')}"
    if g.get("paths"):  # a class-conditional model: one genome per class
        source = ["- classes (one genome each): " + ", ".join(f"{c} (`{p}`)" for c, p in g["paths"].items()),
                  f"- label dropout to the null class: {(config.get('objective') or {}).get('label_dropout')}"]
    elif data.get("kind") == "labelled_table":
        task = data.get("task") or {}
        source = [f"- classes: {data.get('classes')} from the task `{task.get('name')}` "
                  f"(`{task.get('train_path') or task.get('name')}`)"]
    else:
        source = [f"- genome: {g.get('name', 'unnamed')} (`{g.get('path')}`)"]
    batch = batch or data.get("global_batch_size") or data.get("batch_size")
    return [
        *source,
        f"- split: {split}",
        f"- windows of {data.get('seq_len')} bases, batch {batch}, "
        f"reverse-complement augmentation p = {data.get('rc_prob')}",
    ]


LICENSE = "apache-2.0"  # the package's licence (pyproject.toml), for weights it trained


def card_data(model: LanguageModel, meta: dict[str, Any], base_model: str | None = None):
    """The front matter, as ``huggingface_hub`` writes and checks it: library, licence, pipeline tag, tags, the
    data set, the base model of a fine-tune, and the metrics the export measured (a model-index)."""
    from huggingface_hub import EvalResult, ModelCardData

    config = model.config
    remote = "auto_map" in meta
    causal = model.objective_name == "ar"
    genome = (config.get("genome") or {}).get("name")
    data = config.get("data") or {}
    dataset = (data.get("name") or (data.get("hub") or {}).get("path")) if model.is_text else genome
    name = f"{config['model']['name']}-{model.objective_name}"
    unit = model.unit
    results = [
        EvalResult(task_type="text-generation" if causal else "fill-mask", dataset_type=str(dataset or "unknown"),
                   dataset_name=str(dataset or "unknown"), dataset_split=split, metric_type=f"bits_per_{unit}",
                   metric_name=f"{split} bits per {unit} ({'exact NLL' if causal else 'NELBO bound'})",
                   metric_value=round(float(r[f"bits_per_{unit}"]), 6))
        for split, r in sorted((meta.get("metrics") or {}).items())
        if isinstance(r, dict) and r.get(f"bits_per_{unit}") is not None
    ]
    tags = ["text" if model.is_text else "dna", "masked-diffusion", model.objective_name, config["model"]["name"]]
    if not model.is_text:
        tags.append("biology")
    if remote:
        tags.append("custom_code")
    return ModelCardData(
        library_name="transformers" if remote else "mdlm-dna",
        license=LICENSE,
        pipeline_tag="text-generation" if causal else "fill-mask",
        tags=tags,
        datasets=[str(dataset)] if dataset else None,
        base_model=base_model,
        model_name=name,
        eval_results=results or None,
    )


def model_card(model: LanguageModel, meta: dict[str, Any]) -> str:
    """Markdown: what the model is, what it was trained on and how, how well it does, how to use it."""
    config = model.config
    m, train, metrics = config["model"], meta.get("training", {}), meta.get("metrics", {})
    unit = model.unit
    noise = dict(config.get("noise") or {})
    arch = ", ".join(f"{k}={v}" for k, v in m.items() if k not in ("compile", "checkpointing", "name"))
    lines = [
        "---",
        card_data(model, meta).to_yaml(),
        "---",
        "",
        f"# {m['name']} {model.objective_name.upper()} model",
        "",
        f"A {model.objective_name.upper()} model ({model.num_parameters:,} parameters, backbone `{m['name']}`) "
        f"trained with mdlm-dna {meta.get('package_version', '')}.",
        "",
        "## Model",
        f"- backbone: `{m['name']}` ({arch})",
        f"- objective: `{model.objective_name}` ({config.get('objective')})",
        f"- noise schedule: `{noise.pop('name', None)}` {noise or ''}",
        f"- tokenizer: {'`' + model.tokenizer.name + '`' if model.is_text else 'nucleotide (A C G T N + specials)'}",
        f"- training window: {model.seq_len} {unit}s",
        f"- weights: {meta.get('weights', 'raw')}",
        "",
        "## Training data",
        *_data_lines(meta.get("run_config") or config, train.get("global_batch_size")),
        "",
        "## Training",
        f"- steps: {_fmt(train.get('global_step'))}",
        f"- tokens seen: {_fmt(train.get('tokens_seen'))}",
        f"- optimizer: AdamW {config.get('optim')}",
        f"- command: `{train.get('command') or 'not recorded'}`",
        "",
        "## Evaluation",
        f"| split | NELBO (nats/token) | bits/{unit} | standard error | windows x noise draws | perplexity |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("validation", "test"):
        r = metrics.get(split) or {}
        se = r.get(f"bits_per_{unit}_se")
        draws = f"{r['windows']:,} x {r.get('t_samples', 1)}" if r.get("windows") else "-"
        lines.append(f"| {split} | {_fmt(r.get('nelbo_nats_per_token'))} | {_fmt(r.get(f'bits_per_{unit}'))} | "
                     f"{'not recorded' if se is None or se != se else _fmt(se)} | {draws} | "
                     f"{_fmt(r.get('perplexity'))} |")
    lines += [
        "",
        "For diffusion objectives the NELBO is an upper bound on the negative log-likelihood (and the perplexity "
        "an upper bound); the AR baseline's is exact. The standard error is over the split's windows, each "
        "averaged over its noise draws.",
        "",
        *(["## Notes", "", str(meta["notes"]).strip(), ""] if meta.get("notes") else []),
        "## Usage",
        "```python",
        "from mdlm_dna import DiffusionLM",
        "m = DiffusionLM.from_pretrained(\"PATH_OR_HUB_ID\")",
        f"samples = m.sample(num_samples=8, length={model.seq_len}, steps=256, seed=0"
        + (f", label={model.classes[0]!r}, guidance_scale=2.0)   # classes: {model.classes}" if model.classes else ")"),
        "scores = m.score(samples)             # per-sequence NELBO and bits per base",
        "features = m.embed(samples)           # [8, d_model]",
        "```",
        "",
        *(_transformers_usage(model) if "auto_map" in meta else []),
        "```bash",
        "python -m mdlm_dna.sample ckpt=PATH_OR_HUB_ID num_samples=64",
        "python -m mdlm_dna.evaluate ckpt=PATH_OR_HUB_ID",
        "```",
        "",
    ]
    return "\n".join(lines)


def _transformers_usage(model: LanguageModel) -> list[str]:
    """How the folder loads with transformers alone (its remote code needs torch and transformers only)."""
    auto = "AutoModelForCausalLM" if model.objective_name == "ar" else "AutoModelForMaskedLM"
    example = "[BOS]ACGTNACGT" if model.objective_name == "ar" else "ACGTNACGT"
    return [
        "Without mdlm-dna (torch and transformers only; the remote code is plain PyTorch):",
        "",
        "```python",
        f"from transformers import AutoTokenizer, {auto}",
        "tok = AutoTokenizer.from_pretrained(\"PATH_OR_HUB_ID\", trust_remote_code=True)",
        f"model = {auto}.from_pretrained(\"PATH_OR_HUB_ID\", trust_remote_code=True)",
        f"logits = model(**tok([\"{example}\"], return_tensors=\"pt\")).logits"
        + ("   # the denoiser: [MASK] positions predict their base" if model.objective_name != "ar" else ""),
        "```",
        "",
    ]
