"""AR vs MDLM vs SEDD vs D3PM at equal compute, on two real genomes and several seeds, with intervals.

    OMP_NUM_THREADS=1 python benchmarks/paper_claims.py                  # CPU version: 2 genomes x 3 seeds x 4
    python benchmarks/paper_claims.py --table-only                       # the table from the runs recorded so far
    python benchmarks/paper_claims.py --steps 20000 --csv gpu_runs.csv model=dit_small trainer=gpu
    python benchmarks/paper_claims.py --genomes ecoli --objectives mdlm --csv benchmarks/paper_ablations_runs.csv \
        objective.num_steps=1000                                           # an ablation (one per call)
    python benchmarks/paper_claims.py --genomes ecoli --objectives mdlm --csv benchmarks/paper_ablations_runs.csv \
        objective.num_steps=1000 objective.carry_over=false          # cumulative: paired with the T = 1000 rows too
    python benchmarks/paper_claims.py --ablations benchmarks/paper_ablations_runs.csv   # against the defaults

Every run trains one objective with ``mdlm_dna.pretrain.run`` (same backbone size, optimiser, data order
and tokens for a given seed; AR uses the causal version of the backbone) and scores the test split with
``mdlm_dna.evaluate.evaluate`` (bits per A/C/G/T base; diffusion NELBOs are upper bounds estimated with
``--t-samples`` noise draws per window, AR's figure is its exact NLL). One CSV row per run is appended as
soon as it finishes, and runs already in the CSV are skipped: an interrupted table resumes.

The table gives, per genome and objective, the mean over seeds, the standard deviation, a 95 % t-interval
and the perplexity 2^bits. Differences between objectives are paired by seed (the same seed gives the same
initial weights where shapes agree, the same windows in the same order): a difference is called
significant when its paired 95 % t-interval excludes zero. The MDLM paper's hg38 figures (Caduceus
backbone, perplexity; diffusion models are upper bounds) are printed beside ours as a gap to AR in percent.

Genomes: ``ecoli`` is the shipped default (E. coli K-12, 4.6 Mb); ``dmel4`` is the shipped D. melanogaster
chromosome 4 (1.35 Mb, soft-masked, repeat-rich), split like it by the end of the record (90 / 5 / 5 %).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from itertools import combinations
from pathlib import Path

from common import OLD_CPU_DEFAULTS, append_run, arg_parser, compose_config, read_runs
from seed_stats import interval

from mdlm_dna.artifacts.checkpoints import load_module
from mdlm_dna.evaluate import evaluate
from mdlm_dna.pretrain import run
from mdlm_dna.utils.resolvers import register_resolvers
from mdlm_dna.utils.resources import data_dir

OBJECTIVES = ("ar", "mdlm", "sedd", "d3pm")
DMEL4 = data_dir() / "genome_samples" / "DmelanDM6_4_GCF_000001215.4_Release_6_plus_ISO1_MT_genomic.fna.gz"
GENOMES = {"ecoli": ["genome=ecoli"], "dmel4": ["genome=fasta", f"genome.path={DMEL4}"]}
# The MDLM paper (Sahoo et al. 2024, Table on hg38 with the Caduceus backbone): test perplexity, diffusion
# models as upper bounds. Plaid has no counterpart here.
PAPER_PPL = {"ar": 3.067, "mdlm": 3.199, "sedd": 3.216, "plaid": 3.240}
FIELDS = ["genome", "objective", "seed", "steps", "tokens", "params", "bpb", "t_samples", "windows", "train_s",
          "eval_s", "overrides"]


def train_and_score(genome: str, objective: str, seed: int, args: argparse.Namespace) -> dict:
    variant = "".join(c if c.isalnum() else "-" for c in "_".join(args.overrides))
    run_dir = args.out_dir / f"{genome}_{objective}{'_' + variant if variant else ''}_seed{seed}"
    overrides = [
        *GENOMES[genome],
        f"objective={objective}",
        f"seed={seed}",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.steps}",
        f"checkpoint.every_n_train_steps={args.steps}",
        "trainer.enable_progress_bar=false",
        "resume=null",
        *(["model.causal=true"] if objective == "ar" else []),
        *OLD_CPU_DEFAULTS,  # the shape the recorded rows were trained with, and no chain (the objectives alone)
        *args.overrides,
    ]
    cfg = compose_config("pretrain", overrides)
    start = time.perf_counter()
    result = run(cfg, run_dir)
    train_s = time.perf_counter() - start
    module, _ = load_module(result["last_ckpt"])
    params = sum(p.numel() for p in module.objective.parameters())
    t_samples = 1 if objective == "ar" else args.t_samples
    start = time.perf_counter()
    ev = evaluate(compose_config("evaluate", [
        f"ckpt={result['last_ckpt']}",
        f"t_samples={t_samples}",
        "trainer.enable_progress_bar=false",
        *([f"max_windows={args.max_windows}"] if args.max_windows else []),
    ]))
    return {
        "genome": genome, "objective": objective, "seed": seed, "steps": result["global_step"],
        "tokens": result["global_step"] * cfg.data.batch_size * cfg.data.seq_len, "params": params,
        "bpb": round(float(ev["bits_per_base"]), 5), "t_samples": t_samples, "windows": ev["windows"],
        "train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - start, 1),
        "overrides": " ".join(args.overrides),
    }


def read_rows(path: Path) -> list[dict]:
    return [{**r, "seed": int(r["seed"]), "bpb": float(r["bpb"])} for r in read_runs(path)]


def table(rows: list[dict]) -> str:
    """The README table: per genome and objective, then the paired differences."""
    lines = ["| genome | objective | seeds | test bits/base (mean) | sd | 95 % interval | perplexity | "
             "gap to AR (ours) | gap to AR (paper, hg38) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    pairs = ["", "Paired differences (row minus column objective, same seeds; * = 95 % interval excludes 0):", "",
             "| genome | difference | seeds | mean | 95 % interval | significant |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for genome in dict.fromkeys(r["genome"] for r in rows):
        by_obj = {o: {r["seed"]: r["bpb"] for r in rows if r["genome"] == genome and r["objective"] == o}
                  for o in OBJECTIVES}
        ar_ppl = 2 ** statistics.fmean(by_obj["ar"].values()) if by_obj["ar"] else None
        for obj, by_seed in by_obj.items():
            if not by_seed:
                continue
            mean, sd, half = interval(list(by_seed.values()))
            ppl = 2 ** mean
            ours = f"{100 * (ppl / ar_ppl - 1):+.2f} %" if ar_ppl and obj != "ar" else "-"
            paper = (f"{100 * (PAPER_PPL[obj] / PAPER_PPL['ar'] - 1):+.2f} %" if obj in PAPER_PPL and obj != "ar"
                     else ("(3.067)" if obj == "ar" else "-"))
            span = f"{mean - half:.4f} .. {mean + half:.4f}" if not math.isnan(half) else "-"
            sd_text = f"{sd:.4f}" if not math.isnan(sd) else "-"
            lines.append(f"| {genome} | {obj} | {len(by_seed)} | {mean:.4f} | {sd_text} | {span} | {ppl:.4f} | "
                         f"{ours} | {paper} |")
        for a, b in combinations(OBJECTIVES, 2):
            seeds = sorted(set(by_obj[a]) & set(by_obj[b]))
            if len(seeds) < 2:
                continue
            diffs = [by_obj[b][s] - by_obj[a][s] for s in seeds]
            mean, _, half = interval(diffs)
            significant = abs(mean) > half
            pairs.append(f"| {genome} | {b} - {a} | {len(seeds)} | {mean:+.4f} | {mean - half:+.4f} .. "
                         f"{mean + half:+.4f} | {'*' if significant else ''} |")
    return "\n".join(lines + (pairs if len(pairs) > 5 else []))


def ablation_table(base: list[dict], variants: list[dict]) -> str:
    """One row per objective variant (its Hydra overrides) against the default runs of the same genome and
    seeds: mean, 95 % interval, and the paired difference to the default with its interval. A variant whose
    overrides extend another variant's (the paper's cumulative ablations) is also paired with that one."""
    lines = ["| genome | objective | variant | seeds | test bits/base (mean) | 95 % interval | minus default (paired) "
             "| 95 % interval | minus the variant it extends (paired) | 95 % interval |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def paired(by_seed: dict, ref: dict) -> tuple[str, str]:
        seeds = sorted(set(by_seed) & set(ref))
        if len(seeds) < 2:
            return "-", "-"
        d_mean, _, d_half = interval([by_seed[k] - ref[k] for k in seeds])
        star = " *" if abs(d_mean) > d_half else ""
        return f"{d_mean:+.4f}{star}", f"{d_mean - d_half:+.4f} .. {d_mean + d_half:+.4f}"

    keys = dict.fromkeys((r["genome"], r["objective"]) for r in variants)
    for genome, objective in keys:
        ref = {r["seed"]: r["bpb"] for r in base if (r["genome"], r["objective"]) == (genome, objective)}
        groups = {"": ref}
        for r in variants:
            if (r["genome"], r["objective"]) == (genome, objective):
                groups.setdefault(r["overrides"], {})[r["seed"]] = r["bpb"]
        for name, by_seed in groups.items():
            mean, _, half = interval(list(by_seed.values()))
            span = f"{mean - half:.4f} .. {mean + half:.4f}" if not math.isnan(half) else "-"
            cells = ["-", "-", "-", "-"]
            if name:
                cells[:2] = paired(by_seed, ref)
                mine = set(name.split())
                parents = [g for g in groups if g and set(g.split()) < mine]
                if parents:
                    parent = max(parents, key=lambda g: len(g.split()))
                    diff, span2 = paired(by_seed, groups[parent])
                    cells[2:] = [f"{diff} (vs {parent})", span2]
            lines.append(f"| {genome} | {objective} | {name or 'default'} | {len(by_seed)} | {mean:.4f} | {span} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines + ["", "\\* : the paired 95 % interval excludes zero."])


def main() -> None:
    register_resolvers()
    parser = arg_parser(__doc__)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--genomes", nargs="+", default=list(GENOMES), choices=list(GENOMES))
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--t-samples", type=int, default=4, help="noise draws per test window (diffusion)")
    parser.add_argument("--max-windows", type=int, default=None, help="evenly spaced test windows (default all)")
    parser.add_argument("--csv", type=Path, default=Path(__file__).with_name("paper_claims_runs.csv"))
    parser.add_argument("--out-dir", type=Path, default=Path("runs/paper_claims"), help="run folders")
    parser.add_argument("--table-only", action="store_true", help="print the table of the CSV and stop")
    parser.add_argument("--ablations", type=Path, default=None,
                        help="a CSV of runs with overrides (e.g. objective.num_steps=1000): print them against the "
                             "default runs of --csv (same steps, seeds and genome) and stop")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=dit_small")
    args = parser.parse_args()

    key = " ".join(args.overrides)
    rows = [r for r in read_rows(args.csv) if int(r["steps"]) == args.steps and r["overrides"] == key]
    if args.ablations:
        variants = [r for r in read_rows(args.ablations) if int(r["steps"]) == args.steps]
        print(ablation_table(rows, variants))
        return
    if not args.table_only:
        done = {(r["genome"], r["objective"], r["seed"]) for r in rows}
        for seed in args.seeds:  # seed-major: an interrupted table has whole seeds
            for genome in args.genomes:
                for objective in args.objectives:
                    if (genome, objective, seed) in done:
                        continue
                    row = train_and_score(genome, objective, seed, args)
                    append_run(args.csv, row, FIELDS)
                    print(f"[paper_claims] {genome} {objective} seed {seed}: {row['bpb']:.4f} bits/base "
                          f"({row['train_s']:.0f} s training, {row['eval_s']:.0f} s scoring)", flush=True)
    rows = [r for r in read_rows(args.csv) if int(r["steps"]) == args.steps and r["overrides"] == key]
    print(f"{args.steps} training steps per run" + (f", overrides: {key}" if key else "") + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
