"""Both strands at once: the denoiser averaged with its reading of the reverse complement.

A DNA window and its reverse complement are the same molecule, but a strand-blind network (the DiT) gives
two different predictions for it. Averaging them, probability by probability, is the Caduceus paper's
post-hoc conjoining (Schiff et al. 2024, "-PH") applied to the language model itself:

    p(x_0 | z_t) = 1/2 p_theta(x_0 | z_t) + 1/2 RC[p_theta(. | RC(z_t))]

where RC reverses the positions and complements the bases. The mixture is a denoiser like any other
(at each masked position a distribution over the four bases), so MDLM's NELBO computed with it is an upper
bound on -log p of the conjoined model: a likelihood as valid as the plain one, for a model that is exactly
strand-symmetric. It costs two network calls per evaluation. For a model that is RC-equivariant already
(Caduceus-PS) the two halves agree and the mixture is the model itself.

Each half is normalised over the ids the objective may predict before the halves are mixed (the excluded
ids, [MASK] and the special tokens, carry untrained logits), and right padding stays where it is: only the
tokens before it are reverse-complemented.

    >>> import torch
    >>> from mdlm_dna import DiffusionLM
    >>> model = DiffusionLM.from_pretrained("ecoli")
    >>> x = torch.tensor([model.encode("ACGTTGCA" * 16)])
    >>> x[0, 60] = model.tokenizer.mask_id
    >>> with both_strands(model.objective, model.tokenizer.complement_ids):
    ...     conjoined = model.objective.subs_log_probs(x, torch.tensor([0.5]))[0, 60].exp()
    >>> plain = model.objective.subs_log_probs(x, torch.tensor([0.5]))[0, 60].exp()
    >>> round(float(conjoined.sum()), 5), bool((conjoined - plain).abs().max() > 1e-4)
    (1.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from mdlm_dna.utils.errors import ConfigError


def reverse_complement_index(input_ids: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """[B, L] positions: row b reads its own tokens backwards up to its padding, the padding in place.

    Gathering the ids (or a [B, L, ...] output) with it twice gives them back: it is an involution.

    >>> reverse_complement_index(torch.tensor([[0, 1, 2, 6, 6]]), pad_id=6).tolist()
    [[2, 1, 0, 3, 4]]
    """
    B, L = input_ids.shape
    pos = torch.arange(L, device=input_ids.device).expand(B, L)
    lengths = (input_ids != pad_id).sum(-1, keepdim=True) if pad_id is not None else torch.full((B, 1), L,
                                                                                                 device=pos.device)
    return torch.where(pos < lengths, lengths - 1 - pos, pos)


def strand_mixture(backbone: nn.Module, input_ids: torch.Tensor, sigma: torch.Tensor | None,
                   complement_ids: Sequence[int], excluded_ids: torch.Tensor, pad_id: int | None = None,
                   **kwargs) -> torch.Tensor:
    """[B, L, V] log of the two strands' mean prediction (see the module docstring): a normalised
    log-distribution, so an objective's own log-softmax leaves it unchanged.

    ``excluded_ids``: the ids the objective never predicts (given -inf before each strand is normalised).
    """
    complement = torch.as_tensor(complement_ids, dtype=torch.long, device=input_ids.device)
    excluded = excluded_ids.to(input_ids.device)

    def log_probs(logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits.float().index_fill(-1, excluded, float("-inf")), dim=-1)

    index = reverse_complement_index(input_ids, pad_id)
    forward = log_probs(backbone(input_ids, sigma, **kwargs))
    reverse = log_probs(backbone(complement[input_ids.gather(1, index)], sigma, **kwargs))
    # back to the forward strand's positions and bases: position i was read at index[i], base b as complement[b]
    reverse = reverse.gather(1, index[..., None].expand_as(reverse))[..., complement]
    return torch.logaddexp(forward, reverse) - math.log(2.0)


@contextmanager
def both_strands(objective: nn.Module, complement_ids: Sequence[int] | None) -> Iterator[None]:
    """Inside: ``objective`` scores and denoises with :func:`strand_mixture` (its network and parameters
    unchanged, so EMA weights and checkpoints see the same model).

    MDLM only: its network's output is a distribution over clean tokens, which two strands can share. SEDD's
    scores are ratios, not probabilities; AR's conditionals see one side only, the other strand's the other
    side, so their mean is no likelihood at all.
    """
    from mdlm_dna.diffusion.mdlm import MDLM

    if type(objective) is not MDLM:
        raise ConfigError(f"strands='both' is defined for MDLM models; this one is {type(objective).__name__}")
    if complement_ids is None:
        raise ConfigError("strands='both' needs a DNA model: text has no reverse complement")
    saved = objective.strand_complement
    objective.strand_complement = tuple(complement_ids)
    try:
        yield
    finally:
        objective.strand_complement = saved
