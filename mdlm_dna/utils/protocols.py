"""What library functions need from a loaded model, as a Protocol: :class:`mdlm_dna.DiffusionLM` has all of it.

Per-position analysis, model cards and transformers exports take a loaded model; typing them with this Protocol
instead of ``DiffusionLM`` lets them sit below ``api.py`` (which calls them) without importing it, so the package's
imports stay one-way. Any object with these members works, e.g. a wrapper that adds caching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class LanguageModel(Protocol):
    """A trained denoiser with its tokenizer and the run config it was trained with."""

    @property
    def config(self) -> dict[str, Any]: ...  # the run's config (model, objective, data, ...)

    @property
    def tokenizer(self) -> Any: ...  # NucleotideTokenizer or TextTokenizer

    @property
    def objective(self) -> torch.nn.Module: ...  # MDLM, AR, SEDD or D3PM, holding the backbone

    @property
    def objective_name(self) -> str: ...

    @property
    def backbone(self) -> torch.nn.Module: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def is_text(self) -> bool: ...

    @property
    def unit(self) -> str: ...  # "base" or "token": what bits are counted per

    @property
    def seq_len(self) -> int: ...  # the training window

    @property
    def classes(self) -> list[str] | None: ...  # class labels of a class-conditional model

    @property
    def num_parameters(self) -> int: ...

    def score(self, seqs: Sequence[str], **kwargs: Any) -> Any: ...  # NELBO / exact bits per unit

    def _encode_all(self, seqs: Sequence[str], what: str = ...) -> list[list[int]]: ...  # token ids, checked


@runtime_checkable
class SequenceClassifier(Protocol):
    """A trained classifier as exports need it: :class:`mdlm_dna.classifier.TrainedClassifier` has all of it."""

    model: torch.nn.Module  # ids, lengths -> logits [N, C]
    spec: dict[str, Any]  # what rebuilds the network (classifier.json)
    classes: list[str]
    source: Any  # the folder it was loaded from, or None

    @property
    def max_length(self) -> int: ...
