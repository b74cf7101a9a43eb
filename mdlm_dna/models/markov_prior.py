"""A Markov-chain prior under a denoiser: the network learns what an order-k chain does not know.

An MDLM denoiser predicts each masked base from every visible base. For an order-k Markov chain that
prediction has an exact form, the posterior of a hidden Markov model over k-mer states (forward-backward):
``MarkovPosterior`` computes it for a whole batch of partly masked windows. ``ChainResidual`` adds its log
to any backbone's logits, so a network whose last layer starts at zero (the DiT's does) starts as the exact
chain denoiser and its training learns the residual: codon structure, repeats, anything beyond k bases.
It is the diffusion analogue of GeCo3's neural mixer over context models.

    python -m mdlm_dna.pretrain model.markov_order=6      # the chain is fitted on the training split at start

The chain (add-alpha counts of the training split, alpha chosen on validation) is a buffer of the model:
it is saved with the weights and never trained.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

AUTO_ORDER = 6  # what model.markov_order=auto gives a run it applies to (resolve_markov_order)
STRANDS = ("forward", "both")  # the strands of the training split the chain is counted on
NUM_BASES = 4  # A, C, G, T are ids 0..3 of the nucleotide tokenizer; any other id constrains nothing
OTHER_LOGIT = -10.0  # added to every non-base logit (N, special tokens): the chain gives them no mass


def resolve_markov_order(config: dict) -> int:
    """``model.markov_order=auto`` (pretraining's default) as a number, written back into ``config``: an order-6
    chain for an MDLM on genome data trained on a CPU, none otherwise.

    Why these runs: a small MDLM trained for minutes on a CPU has not learnt what counting k-mers gives (the
    default 300 steps end 0.019 bits/base above the order-6 chain without it), and the CPU kernel makes the chain
    cheap there (~10 % of a step). Text has no chain; AR, SEDD and D3PM models do not predict masked bases from
    both sides; on GPUs the chain runs as the dense torch pass, sequential over positions, whose cost at long
    windows nobody has measured: a GPU run asks for it with ``model.markov_order=6``.

    >>> cfg = {"model": {"markov_order": "auto"}, "data": {"kind": "genome"}, "objective": {"name": "mdlm"},
    ...        "trainer": {"accelerator": "cpu"}}
    >>> resolve_markov_order(cfg), cfg["model"]["markov_order"]
    (6, 6)
    >>> resolve_markov_order({**cfg, "model": {"markov_order": "auto"}, "trainer": {"accelerator": "gpu"}})
    0
    """
    model = config["model"]
    order = model.get("markov_order", 0)
    if order == "auto":
        data, objective = config.get("data") or {}, config.get("objective") or {}
        tokenizer = (data.get("tokenizer") or {}).get("name", "nucleotide")
        applies = (data.get("kind") == "genome" and tokenizer == "nucleotide"
                   and objective.get("name", "mdlm") == "mdlm" and not model.get("causal", False)
                   and str((config.get("trainer") or {}).get("accelerator", "cpu")) == "cpu")
        order = AUTO_ORDER if applies else 0
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"model.markov_order must be auto or an order k >= 0 (0: no chain), got {order!r}")
    model["markov_order"] = order
    return order


class MarkovPosterior(nn.Module):
    """log P(base at l | every visible base) under an order-``order`` chain, at every position.

    >>> prior = MarkovPosterior(order=2)  # unfitted: uniform, so every posterior is uniform
    >>> prior(torch.tensor([[0, 5, 2]])).exp().round(decimals=2).tolist()[0][1]
    [0.25, 0.25, 0.25, 0.25]
    """

    def __init__(self, order: int, strands: str = "both"):
        """``strands``: count the chain on the training split's forward strand, or on both (as a network trained
        with reverse-complement augmentation sees it)."""
        super().__init__()
        if order < 1:
            raise ValueError(f"model.markov_order must be >= 1 (or 0 for no chain), got {order}")
        if strands not in STRANDS:
            raise ValueError(f"model.markov_strands must be one of {STRANDS}, got {strands!r}")
        self.order, self.strands, self.num_states = order, strands, NUM_BASES**order
        self.register_buffer("trans", torch.full((self.num_states, NUM_BASES), 1.0 / NUM_BASES))
        self.register_buffer("init", torch.full((self.num_states,), 1.0 / self.num_states))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        # digit j of state s (the base j places after the state's oldest one)
        codes = torch.arange(self.num_states)
        digits = torch.stack([(codes // NUM_BASES ** (order - 1 - j)) % NUM_BASES for j in range(order)])
        self.register_buffer("digits", digits, persistent=False)

    @torch.no_grad()
    def load_chain(self, trans: np.ndarray, kmer_counts: np.ndarray, alpha: float) -> None:
        """Set the chain: ``trans`` [4**k, 4] P(next | k-mer), ``kmer_counts`` [4**k] counts of the k-mers
        (smoothed with ``alpha``: the distribution of the first k-mer of a window)."""
        if trans.shape != (self.num_states, NUM_BASES) or kmer_counts.shape != (self.num_states,):
            raise ValueError(f"an order-{self.order} chain needs [{self.num_states}, 4] probabilities and "
                             f"[{self.num_states}] k-mer counts, got {trans.shape} and {kmer_counts.shape}")
        init = kmer_counts.astype(np.float64) + alpha
        self.trans.copy_(torch.as_tensor(trans, dtype=torch.float32))
        self.init.copy_(torch.as_tensor(init / init.sum(), dtype=torch.float32))
        self.fitted.fill_(True)

    def _forward_step(self, a: torch.Tensor) -> torch.Tensor:
        """P(next state) from P(state): s = (oldest, rest) -> s' = (rest, new base)."""
        rest = self.num_states // NUM_BASES
        p = self.trans.view(NUM_BASES, rest, NUM_BASES)
        return (a.view(-1, NUM_BASES, rest, 1) * p).sum(1).reshape(-1, self.num_states)

    def _backward_step(self, v: torch.Tensor) -> torch.Tensor:
        """sum over s' of T(s, s') v(s')."""
        rest = self.num_states // NUM_BASES
        p = self.trans.view(NUM_BASES, rest, NUM_BASES)
        return (v.view(-1, 1, rest, NUM_BASES) * p).sum(-1).reshape(-1, self.num_states)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L] ids -> [B, L, 4] log posterior of each position's base given the visible bases of its row.

        A visible base's own posterior is a point mass on it; masked, N, padding and special ids are hidden.
        Rows shorter than ``order`` are read as if preceded by hidden positions. On a CPU the Numba kernel
        (``cpu_chain.py``) walks only the states the visible bases allow, 5x to 100x less work than the dense
        torch path, which GPUs run (``backend``: "auto", "numba" or "torch")."""
        pad = max(0, self.order - input_ids.shape[1])
        ids = torch.nn.functional.pad(input_ids, (pad, 0), value=NUM_BASES) if pad else input_ids
        if self.backend == "numba" or (self.backend == "auto" and ids.device.type == "cpu"):
            from mdlm_dna.models.cpu_chain import chain_posterior  # compiles once per machine (cached on disk)

            post = chain_posterior(ids, self.trans, self.init, self.order).to(ids.device)
        else:
            # rows are independent: a batch whose forward messages (B x L x 4**k floats) would pass
            # ``max_message_floats`` is done in row blocks (256 windows of 512 bases at k = 6 would hold 2 GB)
            rows = max(1, self.max_message_floats // max(1, ids.shape[1] * self.num_states))
            post = torch.cat([self._dense_posterior(block) for block in ids.split(rows)])
        post = post / post.sum(-1, keepdim=True).clamp_min(1e-30)
        return post.clamp_min(1e-30).log()[:, pad:]

    backend = "auto"
    max_message_floats = 2**25  # 128 MB of float32 forward messages at a time (torch backend)

    def _dense_posterior(self, ids: torch.Tensor) -> torch.Tensor:
        """Unnormalised posterior weights [B, L, 4] over all 4**k states at every step (rows of length >= k)."""
        k = self.order
        B, L = ids.shape
        visible = ids < NUM_BASES
        base = ids.clamp(max=NUM_BASES - 1)
        # emission at each position, per newest base of the state: 1 where hidden, one-hot where visible
        emit = torch.where(visible[:, :, None], torch.nn.functional.one_hot(base, NUM_BASES).float(), 1.0)
        first = torch.ones(B, self.num_states, device=ids.device)
        for j in range(k):  # the first state holds positions 0..k-1
            first = first * (~visible[:, j, None] | (self.digits[j][None, :] == base[:, j, None])).float()
        alphas = torch.empty(B, L - k + 1, self.num_states, device=ids.device)
        a = self.init[None, :] * first
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-30)
        alphas[:, 0] = a
        for pos in range(k, L):
            a = (self._forward_step(a).view(B, -1, NUM_BASES) * emit[:, pos, None]).view(B, -1)
            a = a / a.sum(-1, keepdim=True).clamp_min(1e-30)
            alphas[:, pos - k + 1] = a
        post = torch.empty(B, L, NUM_BASES, device=ids.device)
        b = torch.ones(B, self.num_states, device=ids.device)
        for pos in range(L - 1, k - 1, -1):  # positions k..L-1: the newest base of the state there
            post[:, pos] = (alphas[:, pos - k + 1] * b).view(B, -1, NUM_BASES).sum(1)
            b = self._backward_step((b.view(B, -1, NUM_BASES) * emit[:, pos, None]).view(B, -1))
            b = b / b.sum(-1, keepdim=True).clamp_min(1e-30)
        g = alphas[:, 0] * b  # the first state: positions 0..k-1 are its digits
        for j in range(k):
            post[:, j] = g.view(B, NUM_BASES**j, NUM_BASES, -1).sum((1, 3))
        return post


class ChainResidual(nn.Module):
    """A backbone whose logits are added to an order-k chain's log posterior (see the module docstring)."""

    def __init__(self, backbone: nn.Module, order: int, strands: str = "both"):
        super().__init__()
        self.backbone = backbone
        self.prior = MarkovPosterior(order, strands)

    def __getattr__(self, name: str):
        """Anything else (``d_model``, ``cfg``, the embedding, ``supports_attention_mask``) is the network's: code
        that reads a backbone's settings reads them through the wrapper."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("backbone"), name)

    def forward(self, input_ids: torch.Tensor, sigma: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        logits = self.backbone(input_ids, sigma, **kwargs)
        prior = self.prior(input_ids).to(logits.dtype)
        other = torch.full((*prior.shape[:2], logits.shape[-1] - NUM_BASES), OTHER_LOGIT,
                           dtype=logits.dtype, device=logits.device)
        return logits + torch.cat([prior, other], dim=-1)

    def hidden_states(self, input_ids: torch.Tensor, sigma: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return self.backbone.hidden_states(input_ids, sigma, **kwargs)
