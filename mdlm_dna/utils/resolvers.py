"""Hydra resolvers the command configs use: ``${data_file:NAME}`` and ``${command_help:NAME}``."""

from __future__ import annotations

from omegaconf import OmegaConf

from mdlm_dna.utils.resources import data_file


def command_help(name: str) -> str:
    """``--help`` of ``python -m mdlm_dna.NAME``, built from the comments of ``configs/NAME.yaml``."""
    from mdlm_dna.utils.config_docs import help_text  # lazy: only --help needs it

    return help_text(name)


def register_resolvers() -> None:
    """``${data_file:NAME}`` in configs points at a file shipped with the package; ``${command_help:NAME}``
    is a command's help text (each command YAML sets ``hydra.help.template`` to it)."""
    if not OmegaConf.has_resolver("data_file"):
        OmegaConf.register_new_resolver("data_file", data_file)
    if not OmegaConf.has_resolver("command_help"):
        OmegaConf.register_new_resolver("command_help", command_help)
