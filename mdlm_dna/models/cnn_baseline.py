"""The GenomicBenchmarks paper's small CNN (Grešová et al. 2023), the reference row of every table.

As ``genomic_benchmarks.models.torch.CNN``: an embedding (dim 100), three Conv1d(kernel 8) blocks
with 16, 8 and 4 channels, each BatchNorm + ReLU + MaxPool(2), then flatten -> Linear(512) ->
Linear(out). Inputs are padded (or cut) to a fixed ``input_len``, the task's longest sequence. One
change: ``num_classes`` logits with cross-entropy instead of one sigmoid unit with binary
cross-entropy, so three-class tasks (human_ensembl_regulatory) work too; for two classes the two are
the same model family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class CNNConfig:
    num_classes: int
    input_len: int
    vocab_size: int = 10
    pad_id: int = 6
    embedding_dim: int = 100
    channels: tuple[int, ...] = (16, 8, 4)
    kernel_size: int = 8
    hidden: int = 512


class CNNBaseline(nn.Module):
    def __init__(self, cfg: CNNConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
        layers: list[nn.Module] = []
        c_in = cfg.embedding_dim
        for c in cfg.channels:
            layers += [nn.Conv1d(c_in, c, cfg.kernel_size), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(2)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        length = cfg.input_len
        for _ in cfg.channels:
            length = (length - cfg.kernel_size + 1) // 2
        if length < 1:
            raise ValueError(f"input_len={cfg.input_len} is too short for {len(cfg.channels)} conv+pool blocks")
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Linear(c_in * length, cfg.hidden), nn.Linear(cfg.hidden, cfg.num_classes)
        )

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        L = input_ids.shape[1]
        if L < self.cfg.input_len:
            input_ids = F.pad(input_ids, (0, self.cfg.input_len - L), value=self.cfg.pad_id)
        x = self.embeddings(input_ids[:, : self.cfg.input_len]).transpose(1, 2)
        return self.dense(self.conv(x))


def build_cnn(num_classes: int, input_len: int, **kwargs) -> CNNBaseline:
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    return CNNBaseline(CNNConfig(num_classes=num_classes, input_len=int(input_len), **kwargs))
