"""AR vs MDLM vs SEDD vs D3PM on the same backbone, steps and tokens, on the embedded E. coli genome.

    OMP_NUM_THREADS=1 python benchmarks/objectives.py --steps 200             # small CPU version (~10 min)
    python benchmarks/objectives.py --steps 20000 model=dit_small trainer=gpu  # extra args are Hydra overrides

Each objective is trained with ``mdlm_dna.pretrain.run`` (identical data order, optimiser and backbone
size; AR uses the causal version of the backbone) and evaluated on the test split with
``mdlm_dna.evaluate.evaluate``. Diffusion NELBOs are upper bounds estimated with ``--t-samples`` noise
draws per window; AR's number is the exact NLL (one pass suffices, it is deterministic).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mdlm_dna.checkpoints import load_module  # noqa: E402
from mdlm_dna.evaluate import evaluate  # noqa: E402
from mdlm_dna.pretrain import run  # noqa: E402
from mdlm_dna.resources import config_dir, register_resolvers  # noqa: E402

OBJECTIVES = ("ar", "mdlm", "sedd", "d3pm")


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def bench_one(objective: str, args: argparse.Namespace, out_dir: Path) -> dict:
    run_dir = out_dir / objective
    overrides = [
        f"objective={objective}",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.steps}",
        f"checkpoint.every_n_train_steps={args.steps}",
        "trainer.enable_progress_bar=false",
        "resume=null",
        *(["model.causal=true"] if objective == "ar" else []),
        *args.overrides,
    ]
    cfg = compose_config("pretrain", overrides)
    start = time.perf_counter()
    result = run(cfg, run_dir)
    train_s = time.perf_counter() - start
    module, _ = load_module(result["last_ckpt"])
    params = sum(p.numel() for p in module.objective.parameters())
    t_samples = 1 if objective == "ar" else args.t_samples
    ev = evaluate(
        compose_config(
            "evaluate",
            [
                f"ckpt={result['last_ckpt']}",
                f"t_samples={t_samples}",
                "trainer.enable_progress_bar=false",
                *([f"max_windows={args.max_windows}"] if args.max_windows else []),
            ],
        )
    )
    tokens = result["global_step"] * cfg.data.batch_size * cfg.data.seq_len
    return {
        "objective": objective,
        "params": params,
        "steps": result["global_step"],
        "tokens": tokens,
        "bpb": ev["bits_per_base"],
        "t_samples": t_samples,
        "windows": ev["windows"],
        "train_s": train_s,
    }


def main() -> None:
    register_resolvers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--t-samples", type=int, default=4, help="noise draws per test window (diffusion)")
    parser.add_argument("--max-windows", type=int, default=None, help="evenly spaced test windows (default all)")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--out-dir", type=Path, default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. model=dit_small")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or Path(tmp)
        rows = [bench_one(obj, args, out_dir) for obj in args.objectives]

    ref = next((r["bpb"] for r in rows if r["objective"] == "ar"), None)
    print("\n| objective | params | steps | tokens | test bits/base | vs AR | t samples | windows | train time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        rel = f"{100 * (r['bpb'] / ref - 1):+.2f} %" if ref else "-"
        print(
            f"| {r['objective']} | {r['params']:,} | {r['steps']} | {r['tokens']:,} | {r['bpb']:.4f} | {rel} | "
            f"{r['t_samples']} | {r['windows']} | {r['train_s']:.0f} s |"
        )


if __name__ == "__main__":
    main()
