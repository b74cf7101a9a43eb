"""Classification heads on a pretrained backbone: padding-aware pooling, RC conjoining, reading both strands,
freezing.

Batches are right-padded (``input_ids`` [B, L] with [PAD] after each sequence's ``lengths[b]`` real
tokens). Pooling looks only at real positions: ``mean`` divides by the real length (never by L, and
never by zero), ``last`` reads position ``lengths - 1`` (not -1, which is padding), ``first`` reads
position 0, ``attention`` weights the real positions by a learned softmax of their features (starting as
``mean``: its scorer is zero at first), so a long input can be read where its signal is. Ambiguous bases
(N) are real input and are pooled like any base, so an all-N sequence gives finite features and a finite
loss.

Pooling cannot undo what padding does inside the backbone. A backbone with
``supports_attention_mask`` (the DiT) gets the padding mask, so no token attends to [PAD] and a
sequence's features do not depend on its batch mates. The bidirectional Mamba family scans through
[PAD], so in a batch of unequal lengths its features depend on the longest sequence beside it:
``pad_mode="group"`` runs the backbone on sub-batches of equal length (no padding at all; exact,
slower on variable-length tasks); ``"pad"`` (default) runs the padded batch, as the reference
harnesses do. Fixed-length tasks are the same either way.

``strands="both"`` reads each sequence twice, as given and reverse-complemented, and gives every position the
states of both reads side by side (the second realigned to the forward positions). A causal (AR-pretrained)
backbone then sees every position from both sides without changing a weight (dropping its causal mask does
not keep what pretraining taught it), and, unlike conjoining, the head still knows which strand is which:
promoters are oriented.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

POOLINGS = ("mean", "first", "last", "attention")
PAD_MODES = ("pad", "group")
STRANDS = ("forward", "both")


def valid_mask(lengths: Tensor, seq_len: int) -> Tensor:
    """[B, L] bool, True at real positions."""
    return torch.arange(seq_len, device=lengths.device)[None, :] < lengths[:, None]


def pool(hidden: Tensor, lengths: Tensor, mode: str = "mean") -> Tensor:
    """[B, L, D] -> [B, D] over the first ``lengths[b]`` positions of each row (``attention``: ``AttentionPool``)."""
    if mode == "mean":
        w = valid_mask(lengths, hidden.shape[1]).to(hidden.dtype)[..., None]
        return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)
    if mode == "first":
        return hidden[:, 0]
    if mode == "last":
        idx = (lengths - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    raise ValueError(f"unknown pooling {mode!r}; choose one of {POOLINGS}")


class AttentionPool(nn.Module):
    """[B, L, D] -> [B, D]: a softmax over each row's real positions of a learned score of their features.

    The score starts at zero, so an untrained pool is exactly ``mean`` pooling; training moves the weight to
    the positions that tell the classes apart (a promoter's core in a 300-base window).

    ``max_positions`` adds a learned score per position (0 .. max_positions - 1, also zero at first). A backbone
    with rotary or no position encoding gives every position features that say nothing of where it is, so the
    feature score alone cannot prefer "30 bases before the TSS" in windows aligned on the TSS (GUE's promoter
    tasks); the position score can. Rows longer than ``max_positions`` are refused.

    >>> AttentionPool(4)(torch.ones(2, 3, 4), torch.tensor([3, 1])).tolist()
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    >>> pool_ = AttentionPool(1, max_positions=3)
    >>> _ = pool_.position_score.data.copy_(torch.tensor([0.0, 0.0, 50.0]))  # all weight on the third position
    >>> pool_(torch.tensor([[[1.0], [2.0], [7.0]]]), torch.tensor([3])).tolist()
    [[7.0]]
    """

    def __init__(self, d_model: int, max_positions: int | None = None):
        super().__init__()
        self.score = nn.Linear(d_model, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        self.max_positions = max_positions
        if max_positions is not None:  # absent otherwise: older classifiers keep their parameter names
            if max_positions < 1:
                raise ValueError(f"max_positions must be positive, got {max_positions}")
            self.position_score = nn.Parameter(torch.zeros(max_positions))

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        real = valid_mask(lengths.clamp(min=1), hidden.shape[1])  # an empty row reads its first position
        score = self.score(hidden).squeeze(-1).float()
        if self.max_positions is not None:
            if hidden.shape[1] > self.max_positions:
                raise ValueError(f"a batch of {hidden.shape[1]} positions; the position score was built for at most "
                                 f"{self.max_positions} (the classifier's max_length)")
            score = score + self.position_score[: hidden.shape[1]].float()
        score = score.masked_fill(~real, float("-inf"))
        return (torch.softmax(score, dim=1).to(hidden.dtype)[..., None] * hidden).sum(dim=1)


def reversed_positions(lengths: Tensor, seq_len: int) -> Tensor:
    """[B, L]: the position ``lengths[b] - 1 - l`` that position l mirrors inside row b's real prefix (0 past it)."""
    pos = torch.arange(seq_len, device=lengths.device)[None, :]
    return (lengths[:, None] - 1 - pos).clamp(min=0)


def reverse_complement_padded(input_ids: Tensor, lengths: Tensor, complement: Tensor, pad_id: int) -> Tensor:
    """Reverse-complement each row's real prefix; padding stays on the right. An involution."""
    src = reversed_positions(lengths, input_ids.shape[1])
    rc = complement.to(input_ids.device)[input_ids.gather(1, src)]
    return torch.where(valid_mask(lengths, input_ids.shape[1]), rc, torch.full_like(input_ids, pad_id))


def align_reverse(states: Tensor, lengths: Tensor) -> Tensor:
    """States of reverse-complemented rows [B, L, D] moved to the forward positions: row b's position l takes
    the state at ``lengths[b] - 1 - l`` (padding positions get the first position's; pooling ignores them).

    >>> align_reverse(torch.tensor([[[0.0], [1.0], [2.0]]]), torch.tensor([2])).flatten().tolist()
    [1.0, 0.0, 0.0]
    """
    src = reversed_positions(lengths, states.shape[1])
    return states.gather(1, src[..., None].expand(-1, -1, states.shape[-1]))


class SequenceClassifier(nn.Module):
    """backbone.hidden_states -> pooling -> dropout -> linear; optionally with a frozen backbone, optionally
    reading both strands (``strands="both"``: ``complement_ids`` and ``pad_id`` of the tokenizer needed), optionally
    with a learned score per position in the attention pool (``position_bias``: ``max_length`` needed)."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        pooling: str = "mean",
        dropout: float = 0.0,
        freeze_backbone: bool = False,
        pad_mode: str = "pad",
        strands: str = "forward",
        complement_ids: Sequence[int] | None = None,
        pad_id: int | None = None,
        position_bias: bool = False,
        max_length: int | None = None,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad_mode {pad_mode!r}; choose one of {PAD_MODES}")
        if strands not in STRANDS:
            raise ValueError(f"unknown strands {strands!r}; choose one of {STRANDS}")
        if strands == "both" and (complement_ids is None or pad_id is None):
            raise ValueError("strands='both' needs the tokenizer's complement_ids and pad_id")
        if position_bias and (pooling != "attention" or max_length is None):
            raise ValueError("position_bias=True scores positions inside the attention pool: it needs "
                             "pooling='attention' and the classifier's max_length")
        self.backbone, self.pooling, self.freeze_backbone = backbone, pooling, freeze_backbone
        self.pad_mode, self.strands, self.pad_id = pad_mode, strands, pad_id
        if strands == "both":
            self.register_buffer("complement", torch.tensor(list(complement_ids), dtype=torch.long), persistent=False)
        width = int(backbone.d_model) * (2 if strands == "both" else 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)
        if pooling == "attention":  # absent otherwise: classifiers with other poolings keep their parameter names
            self.attention = AttentionPool(width, max_positions=max_length if position_bias else None)
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> SequenceClassifier:
        super().train(mode)
        if self.freeze_backbone:  # a frozen backbone is a fixed feature extractor: no dropout in it
            self.backbone.eval()
        return self

    def _hidden(self, input_ids: Tensor, **kwargs) -> Tensor:
        """The backbone's states; without gradients when frozen (the attention pool still learns)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            return self.backbone.hidden_states(input_ids, **kwargs)

    def _read(self, input_ids: Tensor, lengths: Tensor, **kwargs) -> Tensor:
        """[B, L, D] states; with both strands [B, L, 2D]: the forward read's, then the reverse complement's
        realigned (one backbone call on the two reads stacked)."""
        if self.strands == "forward":
            return self._hidden(input_ids, **kwargs)
        rc = reverse_complement_padded(input_ids, lengths, self.complement, self.pad_id)
        kwargs = {k: torch.cat([v, v]) for k, v in kwargs.items()}  # the padding mask: padding stays on the right
        fwd, rev = self._hidden(torch.cat([input_ids, rc]), **kwargs).chunk(2)
        return torch.cat([fwd, align_reverse(rev, lengths)], dim=-1)

    def _pool(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        return self.attention(hidden, lengths) if self.pooling == "attention" else pool(hidden, lengths, self.pooling)

    def features(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        """Pooled backbone features [B, d_model] (both strands: [B, 2 d_model])."""
        if self.pad_mode == "pad":
            padded = bool((lengths < input_ids.shape[1]).any())  # no mask for a full batch: keeps flash SDPA
            if padded and getattr(self.backbone, "supports_attention_mask", False):
                mask = valid_mask(lengths.clamp(min=1), input_ids.shape[1])  # an empty row still attends to one key
                return self._pool(self._read(input_ids, lengths, attention_mask=mask), lengths)
            return self._pool(self._read(input_ids, lengths), lengths)
        out = None  # group: one backbone call per distinct length, on unpadded ids
        for n in lengths.unique().tolist():
            rows = (lengths == n).nonzero().squeeze(1)
            pooled = self._pool(self._read(input_ids[rows, :n], lengths[rows]), lengths[rows])
            out = pooled.new_empty(len(lengths), pooled.shape[1]) if out is None else out
            out = out.index_copy(0, rows, pooled)
        return out

    def forward(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(input_ids, lengths)))


class Conjoin(nn.Module):
    """Average a classifier's logits over a sequence and its reverse complement ("conjoin").

    Exactly invariant to reverse-complementing the input, for any wrapped model. By default only at
    evaluation (Caduceus' ``conjoin_test``); ``train=True`` also conjoins during training.
    """

    def __init__(
        self, model: nn.Module, complement_ids: Sequence[int], pad_id: int, train: bool = False, test: bool = True
    ):
        super().__init__()
        self.model, self.pad_id, self.on_train, self.on_test = model, pad_id, train, test
        self.register_buffer("complement", torch.tensor(list(complement_ids), dtype=torch.long), persistent=False)

    def forward(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        if not (self.on_train if self.training else self.on_test):
            return self.model(input_ids, lengths)
        rc = reverse_complement_padded(input_ids, lengths, self.complement, self.pad_id)
        both = self.model(torch.cat([input_ids, rc]), torch.cat([lengths, lengths]))
        fwd, rev = both.chunk(2)
        return 0.5 * (fwd + rev)
