"""Does Caduceus-PS learn under MDLM? A tiny one trained on the embedded E. coli genome lowers the
validation bits/base of held-out sequence, and stays exactly RC-equivariant."""

from __future__ import annotations

import math

import torch

from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.models import build_backbone
from mdlm_dna.pretrain import run

from .conftest import compose_pretrain

STEPS = 300
MODEL = {"d_model": 24, "n_layers": 2, "d_state": 4}


def test_caduceus_ps_lowers_validation_bits_per_base(ecoli_prefix, tmp_path):
    # the first 60 kb of the embedded genome; validation is the held-out 5 % after the training part.
    # An untrained model scores about 2.43 bits/base (near-uniform over A C G T N); 2.32 = log2(5). N counts
    # here (data.count_n=true), so the threshold below needs the model to learn that N is absent, and more.
    cfg = compose_pretrain(
        "model=caduceus_ps", *(f"model.{k}={v}" for k, v in MODEL.items()), "model.markov_order=0",
        "genome=fasta", f"genome.path={ecoli_prefix}",
        "data.count_n=true", "data.seq_len=32", "data.batch_size=16", "data.eval_batch_size=64",
        "data.val_max_windows=64",
        "data.test_max_windows=32", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=50",
        "optim.lr=5e-3", "optim.warmup_steps=10", "ema.enabled=false", "eval.t_samples=4",
        f"trainer.max_steps={STEPS}", f"trainer.val_check_interval={STEPS}",
        f"checkpoint.every_n_train_steps={STEPS}",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster, and safe on a busy machine
    try:
        res = run(cfg, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    bpb = res["metrics"]["val/bpb"]
    assert bpb < 2.15 < math.log2(5), f"validation bits/base {bpb:.3f} after {STEPS} steps"

    # the trained backbone is still exactly reverse-complement equivariant
    tok = NucleotideTokenizer()
    state = torch.load(res["last_ckpt"], map_location="cpu", weights_only=False)["state_dict"]
    prefix = "objective.backbone."
    model = build_backbone({"name": "caduceus_ps", **MODEL}, tok.vocab_size, tok.complement_ids)
    model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    x = torch.randint(0, 5, (2, 50), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, out_rc = model.eval()(x, None), model(tok.reverse_complement(x), None)
    torch.testing.assert_close(out_rc, out.flip(1)[..., list(tok.complement_ids)], rtol=1e-5, atol=1e-5)
