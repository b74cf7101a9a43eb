"""How much the reference NELBO estimate leaves out, and where MDLM models stand against exact likelihoods with it in.

    python benchmarks/bound_gap.py --model ecoli "default=runs/headline/default/checkpoints/last.ckpt"
    python benchmarks/bound_gap.py --model ecoli --t-samples 4 --max-windows 200     # a quick look

What training minimises and the MDLM reference code reports is not the whole bound of the sampler: the tokens
that alpha(1) = eps (1e-3) leaves unmasked at t = 1 are never paid for (a sampler starts from all-[MASK]), and the
mean over t in [t_min, 1] stands for the integral over [0, 1]. ``DiffusionLM.score(bound="full")`` scores the
whole bound (``MDLM.full_bound``). Each model is scored both ways on every non-overlapping test window of its own length
(E. coli, last 5 %), with the same noise per window (paired); the exact likelihoods beside them are order-k
Markov chains fitted on the training split, on its forward strand (the issue's reference figures) and on both
strands (as the chain under ``model.markov_order`` is), scored left to right across the whole test split. For a
model with a chain under its network, the last column is what the network adds: the model minus the same model
with the network silenced (zero logits: the chain's exact posterior alone), paired.
Writes benchmarks/bound_gap.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from common import arg_parser, write_record

RECORD = Path(__file__).with_name("bound_gap.md")


def test_windows(length: int, max_windows: int | None) -> list[str]:
    """The E. coli test split's non-overlapping windows of ``length`` bases (an even subset of ``max_windows``)."""
    from mdlm_dna.data.tokenizers import BASES
    from mdlm_dna.evaluation.markov import ecoli_splits

    ids = ecoli_splits()["test"]
    seqs = ["".join(BASES[i] for i in ids[a : a + length]) for a in range(0, len(ids) - length + 1, length)]
    if max_windows and max_windows < len(seqs):
        seqs = [seqs[i] for i in np.linspace(0, len(seqs) - 1, max_windows).astype(int)]
    return seqs


def score_both(ckpt: str, t_samples: int, max_windows: int | None) -> dict[str, float]:
    """Reference and full-bound test bits/base of one model, on the same windows and noise; their difference is
    paired window by window."""
    from mdlm_dna import DiffusionLM

    model = DiffusionLM.from_pretrained(ckpt, device="cpu")
    seqs = test_windows(model.seq_len, max_windows)
    out: dict[str, float] = {"windows": len(seqs), "length": model.seq_len}
    per_window = {}
    for bound in ("reference", "full"):
        df = model.score(seqs, t_samples=t_samples, progress=False, common_noise=False, bound=bound)
        per_window[bound] = df["bits_per_base"].to_numpy()
        out[bound] = float(df["nelbo_nats"].sum() / df["tokens"].sum() / math.log(2))
        out[f"{bound}_se"] = float(per_window[bound].std(ddof=1) / math.sqrt(len(seqs)))
    diff = per_window["full"] - per_window["reference"]
    out["gap"], out["gap_se"] = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))
    prior = getattr(model.objective.backbone, "prior", None)
    if prior is not None:  # a chain under the network: what the network adds to it (reference estimates, paired)
        with silent_network(model):
            alone = model.score(seqs, t_samples=t_samples, progress=False, common_noise=False)["bits_per_base"]
        d = per_window["reference"] - alone.to_numpy()
        out["net"], out["net_se"] = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
    return out


@contextmanager
def silent_network(model) -> Iterator[None]:
    """Inside: the network under a chain (``ChainResidual``) returns zero logits, so the denoiser is the chain's
    exact posterior alone."""
    import torch

    net = model.objective.backbone.backbone
    vocab = net.lm_head.out_features
    net.forward = lambda ids, sigma=None, **kwargs: torch.zeros(*ids.shape, vocab, device=ids.device)
    try:
        yield
    finally:
        del net.forward  # the instance attribute goes; the class's forward is back


def chain_rows(orders: list[int]) -> list[tuple[int, float, float]]:
    """(order, test bits/base fitted on the forward strand, fitted on both strands), alpha chosen on validation."""
    from mdlm_dna.evaluation.markov import MarkovChain, ecoli_splits
    from mdlm_dna.evaluation.metrics import reverse_complement_ids

    s = ecoli_splits()
    rows = []
    for k in orders:
        fwd, _ = MarkovChain.fit_select_alpha(s["train"], s["validation"], k)
        both, _ = MarkovChain.fit_select_alpha([s["train"], reverse_complement_ids(s["train"])], s["validation"], k)
        rows.append((k, fwd.score(s["test"]), both.score(s["test"])))
    return rows


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--model", nargs="+", default=["ecoli"], metavar="[LABEL=]CKPT",
                    help="shipped names, run folders or checkpoints, each optionally labelled")
    ap.add_argument("--t-samples", type=int, default=16, help="noise draws per window")
    ap.add_argument("--max-windows", type=int, default=None, help="an even subset of the test windows")
    ap.add_argument("--orders", type=int, nargs="*", default=[5, 6, 7, 8], help="Markov chain orders")
    ap.add_argument("--record", type=Path, default=RECORD, help="the Markdown record to write")
    args = ap.parse_args()
    lines = ["| model | window | windows | reference estimate, bits/base +- SE | full bound +- SE | "
             "full - reference (paired) | chain models: minus the chain alone (paired) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for spec in args.model:
        label, _, ckpt = spec.rpartition("=")
        r = score_both(ckpt, args.t_samples, args.max_windows)
        lines.append(f"| {label or ckpt} | {r['length']} | {r['windows']} | {r['reference']:.4f} +- "
                     f"{r['reference_se']:.4f} | {r['full']:.4f} +- {r['full_se']:.4f} | "
                     f"{r['gap']:+.4f} +- {r['gap_se']:.4f} | "
                     + (f"{r['net']:+.4f} +- {r['net_se']:.4f} |" if "net" in r else "|"))
        print(lines[-1], flush=True)
    lines += ["", "Exact likelihoods on the same split (left to right over the whole test split):", "",
              "| Markov order | fitted on the forward strand | fitted on both strands |", "| ---: | ---: | ---: |"]
    for k, fwd, both in chain_rows(args.orders):
        lines.append(f"| {k} | {fwd:.4f} | {both:.4f} |")
    body = "\n".join(lines)
    write_record(args.record, "The MDLM bound in full, beside exact likelihoods (E. coli test split)", body,
                 note=f"{args.t_samples} noise draws per window, the same for both estimates; one thread.")
    print(body)


if __name__ == "__main__":
    main()
