"""Sample quality against the number of sampling steps T: generative perplexity under an AR judge, k-mer
distances to held-out real DNA and diversity (issue 18, item 3).

    python benchmarks/quality_vs_steps.py --judge RUN_OF_AN_AR_MODEL             # the shipped model `ecoli`
    python benchmarks/quality_vs_steps.py --model RUN --judge AR_RUN --steps 8 32 128 512 --samples 512

The MDLM paper judges text samples by their perplexity under GPT-2 ("Gen PPL"). For DNA the judge is an
autoregressive model of our own, trained on the same genome and split (e.g. ``python -m mdlm_dna.pretrain
objective=ar model.causal=true trainer.max_steps=600``, or an AR run of ``benchmarks/paper_claims.py``): its
exact likelihood of each sample, as bits per base and as a perplexity 2^bits. A lower Gen PPL alone is not
"better": repetitive, low-entropy sequence scores low too. So every row also has the k-mer Jensen-Shannon
distances to held-out real windows (k = 3, 4, 6), the GC spread and the diversity within the set (mean
pairwise 4-mer JS distance between samples). Reference rows: held-out real test windows (what real DNA
scores under the judge), the judge's own samples, and uniform random sequence.

Samples are model-window long (``seq_len``, 128 bases for the CPU default), drawn with the cached sampler
(``--sampler``) from one seed; every T uses the same seed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from common import add_model_option, arg_parser

from mdlm_dna.api import DiffusionLM, reference_windows
from mdlm_dna.data.tokenizers import NucleotideTokenizer
from mdlm_dna.evaluation.metrics import (
    gc_content,
    js_distance,
    kmer_spectrum,
    pairwise_kmer_distance,
    uniform_random,
)

LN2 = float(np.log(2.0))


def as_strings(ids: np.ndarray) -> list[str]:
    tok = NucleotideTokenizer()
    return [tok.decode(list(map(int, r))) for r in ids]


def row(name: str, seqs: list[str], judge: DiffusionLM, reference: list[str], seconds: float | None) -> dict:
    scores = judge.score(seqs, progress=False)
    bits = float(scores["nelbo_nats"].sum() / scores["tokens"].sum() / LN2)
    gc = gc_content(seqs)
    out = {"set": name, "num": len(seqs), "judge_bits_per_base": bits, "gen_ppl": 2.0**bits,
           "gc_mean": float(np.nanmean(gc)), "gc_std": float(np.nanstd(gc)),
           "pairwise_js4": pairwise_kmer_distance(seqs, k=4), "seconds": seconds}
    for k in (3, 4, 6):
        out[f"js_k{k}"] = js_distance(kmer_spectrum(seqs, k), kmer_spectrum(reference, k))
    return out


def main() -> None:
    parser = arg_parser(__doc__)
    add_model_option(parser, help_="the diffusion model (shipped name, run, .ckpt)")
    parser.add_argument("--judge", required=True, help="an AR model of the same genome (run folder or .ckpt)")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 256, 1024])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--sampler", default="cached", help="cached | ancestral | auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    model = DiffusionLM.from_pretrained(args.model)
    judge = DiffusionLM.from_pretrained(args.judge)
    if judge.objective_name != "ar":
        raise SystemExit(f"--judge {args.judge}: an {judge.objective_name} model; the judge must be AR (exact NLL)")
    length = model.seq_len
    real = reference_windows(model, length, max_windows=2 * args.samples)
    reference, held_out = as_strings(real[::2]), as_strings(real[1::2])  # disjoint sets of test windows

    rows = []
    for T in args.steps:
        start = time.perf_counter()
        seqs = model.sample(args.samples, length=length, steps=T, sampler=args.sampler, seed=args.seed,
                            batch_size=64, progress=False)
        rows.append(row(f"{args.model}, T = {T}", seqs, judge, reference, time.perf_counter() - start))
        print(f"[quality_vs_steps] T = {T}: Gen PPL {rows[-1]['gen_ppl']:.4f}", flush=True)
    start = time.perf_counter()
    ar_seqs = judge.sample(args.samples, length=length, steps=length, seed=args.seed, batch_size=64, progress=False)
    rows.append(row("the AR judge's own samples", ar_seqs, judge, reference, time.perf_counter() - start))
    rows.append(row("real held-out windows (test split)", held_out, judge, reference, None))
    rows.append(row("uniform random", as_strings(uniform_random(args.samples, length, seed=args.seed)), judge,
                    reference, None))

    print(f"\nmodel {args.model}, judge {args.judge}; {args.samples} samples x {length} bases, sampler "
          f"{args.sampler}, seed {args.seed}; reference: {len(reference)} test windows\n")
    print("| set | judge bits/base | Gen PPL | JS k=3 | JS k=4 | JS k=6 | GC mean | GC sd | pairwise JS k=4 | "
          "sampling s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        secs = f"{r['seconds']:.1f}" if r["seconds"] is not None else "-"
        print(f"| {r['set']} | {r['judge_bits_per_base']:.4f} | {r['gen_ppl']:.4f} | {r['js_k3']:.4f} | "
              f"{r['js_k4']:.4f} | {r['js_k6']:.4f} | {r['gc_mean']:.3f} | {r['gc_std']:.3f} | "
              f"{r['pairwise_js4']:.3f} | {secs} |")
    if args.csv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
