"""mdlm-dna: masked diffusion language models (MDLM) for DNA, with the same code path for text.

    from mdlm_dna import DiffusionLM
    m = DiffusionLM.from_pretrained("ecoli")
    m.sample(num_samples=4, length=256)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mdlm_dna.utils.resources import package_version

__all__ = ["DiffusionLM", "__version__"]

__version__ = package_version()

if TYPE_CHECKING:
    from mdlm_dna.api import DiffusionLM


def __getattr__(name: str):
    # lazy: `python -m mdlm_dna.prepare` and friends need not import torch and Lightning first
    if name == "DiffusionLM":
        from mdlm_dna.api import DiffusionLM

        return DiffusionLM
    raise AttributeError(f"module 'mdlm_dna' has no attribute {name!r}")
