"""An MDLM's test bits/base before its first step, started from random weights or from a trained AR model.

    python benchmarks/init_from_probe.py --source runs/recipe/ar300_s1     # an AR run of the default DiT

Why the shift matters for ``pretrain init_from=AR_RUN``: the AR backbone predicts token l where it read token
l - 1. Copied into an MDLM that reads token l at position l, every weight loses that meaning; with
``model.input_shift=true`` the MDLM reads a start vector and the tokens shifted by one, the AR's layout. Each row
builds the default pretraining config's MDLM (``python -m mdlm_dna.pretrain``'s, with the source's model
settings), initialises it as the row says (``mdlm_dna.artifacts.init_from``, as ``pretrain init_from=`` does) and
scores it with ``DiffusionLM.evaluate`` on the first ``--windows`` test windows with ``--draws`` noise draws
each. Writes ``benchmarks/init_from_probe.md``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from common import arg_parser, compose_config, write_record
from omegaconf import OmegaConf

from mdlm_dna.api import DiffusionLM
from mdlm_dna.artifacts.checkpoints import load_module
from mdlm_dna.artifacts.init_from import init_from
from mdlm_dna.train.lit_module import DiffusionModule
from mdlm_dna.utils.resolvers import register_resolvers

RECORD = Path(__file__).with_name("init_from_probe.md")
ROWS = {  # label -> (model.input_shift, initialise from the source)
    "random (the MDLM's own start)": (False, False),
    "AR weights copied, no shift": (False, True),
    "AR weights, shift kept (`model.input_shift=true`)": (True, True),
}


def step0_bits(source: str, shift: bool, from_source: bool, windows: int, draws: int) -> float:
    src, _ = load_module(source, use_ema=True)
    model = {k: v for k, v in src.config["model"].items() if k not in ("causal", "input_shift")}
    overrides = [f"model.{k}={v}" for k, v in model.items() if not isinstance(v, (dict, list)) and v is not None]
    composed = compose_config("pretrain", [*overrides, "model.causal=false", f"model.input_shift={shift}",
                                           "objective=mdlm"])
    config = OmegaConf.to_container(composed, resolve=True)
    torch.manual_seed(0)
    module = DiffusionModule(config)
    if from_source:
        init_from(module, source)
    lm = DiffusionLM(module, device="cpu")
    return lm.evaluate(split="test", t_samples=draws, max_windows=windows)["bits_per_base"]


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--source", required=True, help="an AR run (objective=ar, model.causal=true) of the default DiT")
    ap.add_argument("--windows", type=int, default=256)
    ap.add_argument("--draws", type=int, default=4)
    args = ap.parse_args()
    register_resolvers()
    lines = ["| initialisation | test bits/base at step 0 |", "|---|---:|"]
    for label, (shift, from_source) in ROWS.items():
        bits = step0_bits(args.source, shift, from_source, args.windows, args.draws)
        lines.append(f"| {label} | {bits:.4f} |")
        print(lines[-1], flush=True)
    write_record(RECORD, "An MDLM before its first step: random, or from an AR model", "\n".join(lines),
                 note=f"Source: `{args.source}`; the first {args.windows} test windows x {args.draws} draws.")


if __name__ == "__main__":
    main()
