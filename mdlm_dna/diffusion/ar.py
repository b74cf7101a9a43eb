"""Autoregressive baseline: next-token prediction with the causal version of the same backbone.

The input is the window shifted right by one with [BOS] in front, [BOS] x_1 ... x_{L-1}, and the
target is x_1 ... x_L, so every base of the window is predicted and

    NLL(x) = sum_l -log p_theta(x_l | x_<l)

is the exact negative log-likelihood in nats. It is returned in the same ``NELBO`` container as the
diffusion objectives (per_sequence = summed NLL, num_tokens = L), so bits/base are comparable; it is
deterministic, so ``t`` and ``generator`` are accepted and ignored. The network conditions on nothing
(sigma = None).

The backbone must already be causal: for the DiT that is ``model.causal=true``, for the Mamba family
``model=mamba``. The builder refuses a bidirectional backbone rather than rebuilding it behind the
user's back, so the saved run config always describes the network that was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mdlm_dna.diffusion.mdlm import NELBO, Randomness, counted_positions


def is_causal(backbone: nn.Module) -> bool | None:
    """True / False when the backbone's config says whether position l sees only positions <= l; None if unknown."""
    cfg = getattr(backbone, "cfg", None)
    if hasattr(cfg, "causal"):  # DiT
        return bool(cfg.causal)
    if hasattr(cfg, "bidirectional"):  # Mamba family: only plain 'mamba' is causal
        return not (cfg.bidirectional or getattr(cfg, "rcps", False) or getattr(cfg, "posthoc", False))
    return None


class AR(nn.Module):
    """Exact next-token NLL around a causal backbone ``(ids, None) -> logits``."""

    def __init__(
        self,
        backbone: nn.Module,
        bos_id: int,
        pad_id: int | None = None,
        never_predict: Sequence[int] = (),
        check_causal: bool = True,
    ):
        """``never_predict``: ids that cannot occur in clean data (for DNA the special tokens): zero mass,
        exactly as MDLM's denoiser, so both models spread their probability over the same tokens."""
        super().__init__()
        if check_causal and not is_causal(backbone):
            raise ValueError(
                f"objective=ar needs a causal backbone, got {type(backbone).__name__} with "
                f"{getattr(backbone, 'cfg', None)!r}; use model.causal=true for the DiT or model=mamba"
            )
        self.backbone, self.bos_id, self.pad_id = backbone, bos_id, pad_id
        self.register_buffer(
            "excluded_ids", torch.tensor(sorted(set(never_predict)), dtype=torch.long), persistent=False
        )

    def log_probs(self, x0: torch.Tensor) -> torch.Tensor:
        """log p_theta(x_l = v | x_<l) for every position l and token v: [B, L, V] (at least float32)."""
        bos = torch.full_like(x0[:, :1], self.bos_id)
        logits = self.backbone(torch.cat([bos, x0[:, :-1]], dim=1), None)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        if len(self.excluded_ids):
            logits = logits.index_fill(-1, self.excluded_ids, float("-inf"))
        return F.log_softmax(logits, dim=-1)

    def nelbo(self, x0: torch.Tensor, t: torch.Tensor | None = None, generator: Randomness = None,
              counted: torch.Tensor | None = None) -> NELBO:
        """Exact per-sequence NLL in nats (padding neither predicted nor counted).

        ``counted`` [B, L] bool: the positions whose prediction counts (default: all but padding); the others
        (e.g. N bases) stay in the input as context.
        """
        nll = -self.log_probs(x0).gather(-1, x0[..., None]).squeeze(-1)  # [B, L]
        counts = counted_positions(x0, self.pad_id, counted)
        per_seq = torch.where(counts, nll, torch.zeros_like(nll)).sum(-1)
        return NELBO(per_sequence=per_seq, num_tokens=counts.sum(-1))

    @torch.no_grad()
    def sample(self, num: int, length: int, generator: torch.Generator | None = None,
               prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Ancestral samples x_l ~ p_theta(. | x_<l), left to right: [num, length] ids, ``prefix`` [P] kept.

        One network call per generated position on the whole prefix so far (no key/value cache: the
        baseline's samples are for judging, not for speed); draws in float64, as the diffusion samplers.
        """
        device = self.excluded_ids.device
        x = torch.empty(num, 0, dtype=torch.long, device=device)
        if prefix is not None:
            x = prefix.to(device)[None].expand(num, -1).clone()
        bos = torch.full((num, 1), self.bos_id, dtype=torch.long, device=device)
        while x.shape[1] < length:
            logits = self.backbone(torch.cat([bos, x], dim=1), None)[:, -1].double()
            if len(self.excluded_ids):
                logits = logits.index_fill(-1, self.excluded_ids, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            x = torch.cat([x, nxt], dim=1)
        return x
