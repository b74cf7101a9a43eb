"""Embed sequences with a model's backbone: FASTA or table in, a NumPy array out.

    python -m mdlm_dna.embed ckpt=ecoli input=seqs.fa out=emb.npy                 # [N, d_model], mean pooling
    python -m mdlm_dna.embed ckpt=caduceus-folder input=seqs.fa pooling=null       # per position, .npz
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from mdlm_dna.api import DiffusionLM
from mdlm_dna.cli import command_config, user_errors
from mdlm_dna.resources import config_dir, register_resolvers
from mdlm_dna.seqio import read_sequences

register_resolvers()


def embed(cfg: DictConfig | dict[str, Any]) -> Path:
    usage = "python -m mdlm_dna.embed ckpt=MODEL input=SEQS.fa"
    cfg = command_config("embed", cfg, {key: f"{key}= is required: {usage}" for key in ("ckpt", "input")})
    pooling = None if cfg.pooling in (None, "null", "none") else str(cfg.pooling)
    names, seqs = read_sequences(str(cfg.input), column=str(cfg.column))
    model = DiffusionLM.from_pretrained(str(cfg.ckpt), use_ema=bool(cfg.use_ema), device=str(cfg.device),
                                        cache_dir=cfg.cache_dir)
    features = model.embed(seqs, pooling=pooling, batch_size=int(cfg.batch_size), progress=cfg.progress)
    stem = Path(str(cfg.input)).name.split(".")[0]
    out = Path(cfg.out) if cfg.out else Path(str(cfg.input)).with_name(
        f"{stem}.embeddings.{'npy' if pooling else 'npz'}")
    if pooling:
        np.save(out, features)
        shape = f"[{features.shape[0]}, {features.shape[1]}]"
    else:
        np.savez(out, *features)
        shape = f"{len(features)} arrays [L_i, {features[0].shape[1]}]"
    Path(str(out) + ".names.txt").write_text("\n".join(names) + "\n")
    print(f"{len(seqs)} sequences -> {out} ({shape}, pooling={pooling})")
    return out


@hydra.main(config_path=str(config_dir()), config_name="embed", version_base="1.3")
@user_errors
def main(cfg: DictConfig) -> None:
    embed(cfg)


if __name__ == "__main__":
    main()
