"""The one config/argument checking mechanism (mdlm_dna/utils/validation.py): every command's YAML against its model,
and the one-line errors it gives."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mdlm_dna.embed import EmbedConfig
from mdlm_dna.evaluate import EvaluateConfig
from mdlm_dna.export import ExportConfig
from mdlm_dna.predict import PredictConfig
from mdlm_dna.sample import SampleConfig
from mdlm_dna.score import ScoreConfig
from mdlm_dna.track import TrackConfig
from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.resources import config_dir
from mdlm_dna.utils.validation import CommandConfig, PositiveInt, Probability, Required, checked, parse_config
from mdlm_dna.vep import VepConfig

# command name -> its config model; every command with a flat YAML belongs here
COMMAND_MODELS = {"score": ScoreConfig, "sample": SampleConfig, "evaluate": EvaluateConfig, "export": ExportConfig,
                  "vep": VepConfig, "track": TrackConfig, "embed": EmbedConfig, "predict": PredictConfig}


@pytest.mark.parametrize("name", sorted(COMMAND_MODELS))
def test_every_yaml_key_is_declared_and_the_defaults_pass(name):
    raw = OmegaConf.load(config_dir() / f"{name}.yaml")
    raw.pop("hydra", None)
    model = COMMAND_MODELS[name]
    assert set(raw.keys()) == set(model.model_fields), "YAML keys and the model's fields differ"
    required = [k for k in raw.keys() if OmegaConf.is_missing(raw, k)]
    filled = {**OmegaConf.to_container(raw, throw_on_missing=False), **{k: "x" for k in required}}
    parse_config(filled, model)


class Toy(CommandConfig):
    ckpt: Required
    n: PositiveInt = 3
    p: Probability = 0.5
    out: str | None = None


@pytest.mark.parametrize(
    "given, message",
    [
        ({"ckpt": "???"}, "ckpt='???': is required; set it on the command line (ckpt=...)"),
        ({"ckpt": "a", "n": "abc"}, "n='abc': must be a valid integer"),
        ({"ckpt": "a", "n": 0}, "n=0: must be > 0"),
        ({"ckpt": "a", "n": True}, "n=True: must be a number, not true/false"),
        ({"ckpt": "a", "n": 2.5}, "n=2.5: must be a valid integer"),
        ({"ckpt": "a", "p": float("nan")}, "p=nan: must be a finite number"),
        ({"ckpt": "a", "p": 1.5}, "p=1.5: must be <= 1"),
        ({"ckpt": "a", "nn": 1}, "nn=1: is not a setting of this command"),
    ],
)
def test_one_line_that_names_the_key(given, message):
    with pytest.raises(ConfigError) as e:
        parse_config(given, Toy)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_numbers_for_text_keys_become_text():
    assert parse_config({"ckpt": 3, "out": 12}, Toy).out == "12"


def test_checked_names_the_argument():
    @checked
    def f(seqs: list[str], batch_size: PositiveInt = 4) -> int:
        return batch_size

    assert f(["A"], 2) == 2
    with pytest.raises(ConfigError, match=r"f\(\): batch_size=-1: must be > 0"):
        f(["A"], batch_size=-1)
    with pytest.raises(ConfigError, match="seqs"):
        f([None])


def test_library_score_checks_its_arguments():
    from mdlm_dna import DiffusionLM

    tiny_model = DiffusionLM.from_pretrained("ecoli", device="cpu")
    with pytest.raises(ConfigError, match="batch_size=-1"):
        tiny_model.score(["ACGTACGT"], batch_size=-1)
    with pytest.raises(ConfigError, match="t_samples=0"):
        tiny_model.score(["ACGTACGT"], t_samples=0)


# commands whose YAML composes config groups: the keys each model declares exist where it declares them, and the
# composed defaults pass (the other keys of a group pass through to the code that reads them)
NESTED_MODELS = {
    "pretrain": ("mdlm_dna.pretrain", "PretrainConfig", []),
    "finetune": ("mdlm_dna.finetune", "FinetuneConfig", ["task=csv", "task.train_path=train.csv"]),
}


def _declared(model, data, where=""):
    from pydantic import BaseModel

    for field, info in model.model_fields.items():
        assert field in data, f"{where}{field} is declared in {model.__name__} but is no key of the composed config"
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(data[field], dict):
            _declared(sub, data[field], f"{where}{field}.")


@pytest.mark.parametrize("name", sorted(NESTED_MODELS))
def test_nested_command_models_match_the_composed_yaml(name):
    import importlib

    from hydra import compose, initialize_config_dir

    module, cls, overrides = NESTED_MODELS[name]
    model = getattr(importlib.import_module(module), cls)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    parse_config(data, model)
    _declared(model, data)
    if issubclass(model, CommandConfig):  # a flat top level: every key typed
        assert set(data) == set(model.model_fields)
