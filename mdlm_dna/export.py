"""Export a trained model as a Hugging Face-style folder (safetensors, config.json, model card); optionally upload it.

    python -m mdlm_dna.export ckpt=runs/a out=export/ecoli-dit
    python -m mdlm_dna.export ckpt=runs/a out=export/ecoli-dit use_ema=false test=false
    python -m mdlm_dna.export ckpt=runs/a out=export/ecoli-dit push_to=user/ecoli-dit

The folder holds no optimizer state and loads with ``DiffusionLM.from_pretrained(DIR)`` or ``ckpt=DIR`` on
every command. The model card records validation / test bits per base measured here (``t_samples`` draws).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from mdlm_dna.api import DiffusionLM
from mdlm_dna.artifacts.export_folder import check_export_folder
from mdlm_dna.cli.entry import command_config, user_errors
from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.rundir import check_not_in_use
from mdlm_dna.utils.validation import CommandConfig, PositiveInt, Required, parse_config

register_resolvers()


class ExportConfig(CommandConfig):
    """configs/export.yaml's keys, typed (the YAML holds the defaults and the documentation)."""

    ckpt: Required
    out: Required
    use_ema: bool = True
    validation: bool = True
    test: bool = True
    t_samples: PositiveInt = 16
    max_windows: PositiveInt | None = None
    push_to: str | None = None
    private: bool = False
    cache_dir: str | None = None
    transformers: bool | None = None
    card_notes: str | None = None


def read_card_notes(path: str | None) -> str | None:
    """The Markdown of ``card_notes=FILE`` (None: keep the folder's earlier notes, if any)."""
    if path is None:
        return None
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise ConfigError(f"card_notes={path}: {'a folder, not a file' if file.exists() else 'no such file'} "
                          "(a Markdown file whose text becomes the model card's Notes section)")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"card_notes={path}: cannot be read as UTF-8 text ({e})") from e
    if not text.strip():
        raise ConfigError(f"card_notes={path}: the file is empty")
    return text


def export(cfg: DictConfig | dict[str, Any]) -> Path:
    usage = "python -m mdlm_dna.export ckpt=RUN out=DIR"
    cfg = command_config("export", cfg, {key: f"{key}= is required: {usage}" for key in ("ckpt", "out")})
    parse_config(cfg, ExportConfig)
    check_not_in_use(Path(str(cfg.out)).expanduser(), "export")  # a run folder a pretrain is writing
    source = Path(str(cfg.ckpt)).expanduser()
    is_run = (source / "checkpoints").is_dir()
    run_folders = (source.parent, source.parent.parent) if source.is_file() else (source,) * is_run
    check_export_folder(Path(str(cfg.out)).expanduser(), protected=run_folders)  # before any work: ., symlinks, ...
    if (source / "classifier.json").is_file():  # a fine-tune's run folder: an AutoModelForSequenceClassification
        return _export_classifier(source, Path(str(cfg.out)).expanduser(), cfg)
    notes = read_card_notes(cfg.card_notes)  # before any work: a missing file is an error now, not after the evaluation
    model = DiffusionLM.from_pretrained(str(cfg.ckpt), use_ema=bool(cfg.use_ema), cache_dir=cfg.cache_dir)
    metrics: dict[str, Any] = {}
    splits = [s for s in ("validation", "test") if cfg.get(s)]
    if model.is_text and splits:
        splits = []  # text corpora may need downloads: measure with `evaluate` and pass the figures yourself
    for split in splits:
        metrics[split] = model.evaluate(split=split, t_samples=int(cfg.t_samples), max_windows=cfg.max_windows,
                                        cache_dir=cfg.cache_dir)
        print(f"{split}: {metrics[split][f'bits_per_{model.unit}']:.4f} bits/{model.unit} "
              f"({metrics[split]['windows']} windows x {cfg.t_samples} draws)")
    out = model.save_pretrained(str(cfg.out), metrics=metrics, transformers=cfg.get("transformers"), notes=notes)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"exported {model} -> {out} ({size / 1e6:.2f} MB)")
    if cfg.push_to:
        url = model.push_to_hub(str(cfg.push_to), private=bool(cfg.private), token=os.environ.get("HF_TOKEN"))
        print(f"uploaded to {url}")
    return out


def _export_classifier(run: Path, out: Path, cfg: Any) -> Path:
    """``ckpt=`` a finetune run folder: the classifier's folder, with the fine-tune's test metrics in its card."""
    import json

    from mdlm_dna.classifier import load_classifier

    if cfg.get("card_notes"):
        raise ConfigError("card_notes: a classifier's card is written from its fine-tune's metrics; edit its README.md "
                          "after export")
    if cfg.push_to:
        raise ConfigError("push_to: upload a classifier's folder with `huggingface-cli upload REPO DIR` after export")
    metrics_file = run / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    folder = load_classifier(run).save_pretrained(out, metrics=metrics)
    print(f"exported the classifier {run} ({metrics.get('task', 'task not recorded')}) -> {folder} "
          f"(AutoModelForSequenceClassification; test accuracy {metrics.get('accuracy', 'not recorded')})")
    return folder


@hydra.main(config_path=str(config_dir()), config_name="export", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
