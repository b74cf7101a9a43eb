"""The front page's figures: where the default run and the shipped models stand against order-k Markov chains.

    python benchmarks/headline.py                  # trains the default run if runs/headline/default is missing
    python benchmarks/headline.py --skip-default   # shipped models and chains only

Everything on the default E. coli split (train = first 90 %, validation = next 5 %, test = last 5 % of
NC_000913.3). The chains are fitted on train with add-alpha smoothing chosen on validation
(``benchmarks/markov_baselines.py``); the models are scored by ``DiffusionLM.evaluate`` on every test window with
16 draws of the noise (the MDLM bound, an upper bound on their negative log-likelihood). The default run is
``python -m mdlm_dna.pretrain`` with no overrides (150 steps of 8 x 512 bases with an order-6 chain under the
network, since 2026-12; 300 steps of 32 x 128 bases before), trained here if its folder does not exist yet,
and also scored window by window against the order-6 chain with ``--paired-draws`` (64) noise draws per window
(``paired_with_chain``). Writes ``benchmarks/headline.md``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common import ROOT, arg_parser, children_cpu_s, write_record
from markov_baselines import markov_table, to_markdown

RECORD = Path(__file__).with_name("headline.md")
SHIPPED = ("ecoli",)


def train_default(run_dir: Path) -> float:
    """``python -m mdlm_dna.pretrain`` as a newcomer runs it (all defaults), into ``run_dir``; its CPU seconds."""
    before = children_cpu_s()
    subprocess.run([sys.executable, "-m", "mdlm_dna.pretrain", f"hydra.run.dir={run_dir}"], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return children_cpu_s() - before


def default_recipe(run_dir: Path) -> str:
    """What the default run was, from its own config: steps, window and batch, the chain under it."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    chain = cfg["model"].get("markov_order") or 0
    return (f"{cfg['trainer']['max_steps']} steps of {cfg['data']['batch_size']} x {cfg['data']['seq_len']} bases"
            + (f", order-{chain} chain under the network" if chain else ""))


def paired_with_chain(run_dir: Path, t_samples: int) -> str:
    """The default run against the order-6 chain window by window (Markdown): ``recipe.score_test`` on the run's
    own window length with ``t_samples`` independent noise draws per window, minus the chain's bits on the same
    windows (``recipe.chain_window_bits``: each base from the six before it). The window-to-window spread is
    common to both and cancels; what is left is the NELBO's Monte-Carlo noise, so this resolves differences that
    the 16-draw figures of the table above cannot."""
    import tempfile

    import numpy as np
    import yaml
    from recipe import chain_window_bits, paired_difference, score_test

    length = int(yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["seq_len"])
    with tempfile.TemporaryDirectory() as tmp:
        res = score_test(str(run_dir / "checkpoints" / "last.ckpt"), t_samples, True, length,
                         save=str(Path(tmp) / "windows.npy"))
        mine = np.load(Path(tmp) / "windows.npy")
    chain = chain_window_bits(length, 6)
    diff, se = paired_difference(mine, chain)
    return ("| windows | noise draws | default run, bits/base +- SE | order-6 chain, same windows | "
            "default minus chain (paired) |\n|---:|---:|---:|---:|---:|\n"
            f"| {len(chain)} x {length} | {t_samples} | {res['bits_per_base']:.4f} +- {res['se']:.4f} | "
            f"{float(chain.mean()):.4f} | {diff:+.4f} +- {se:.4f} |")


def model_row(name: str, source: str) -> dict:
    """Test bits/base of one model (16 draws of the noise per window)."""
    from mdlm_dna import DiffusionLM

    model = DiffusionLM.from_pretrained(source)
    result = model.evaluate(split="test", t_samples=16)
    return {"model": name, "bits": result["bits_per_base"], "windows": result["windows"]}


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--default-run", type=Path, default=ROOT / "runs" / "headline" / "default")
    ap.add_argument("--skip-default", action="store_true", help="leave the default run out")
    ap.add_argument("--paired-draws", type=int, default=64,
                    help="noise draws per window for the default run's paired comparison with the chain (0: none)")
    args = ap.parse_args()
    chains = markov_table(8)
    rows = [{"model": f"order-{k} Markov chain" + (" (the best k on validation)" if r.best_on_validation else ""),
             "bits": r.test_bits, "windows": None}
            for k, r in chains.iterrows() if k in (0, 2, 6)]
    note = ""
    if not args.skip_default:
        if not (args.default_run / "checkpoints").is_dir():
            cpu = train_default(args.default_run)
            note = f" The default run was trained here ({cpu:.0f} CPU s)."
        rows.append(model_row(f"default `python -m mdlm_dna.pretrain` ({default_recipe(args.default_run)})",
                              str(args.default_run)))
    for name in SHIPPED:
        rows.append(model_row(f"shipped `{name}` (10,000 steps)", name))
    rows.sort(key=lambda r: -r["bits"])
    lines = ["| model (E. coli test split) | test bits/base | test windows |", "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['bits']:.4f} | {r['windows'] or ''} |")
    paired = ""
    if not args.skip_default and args.paired_draws:
        paired = ("\n\n## The default run against the order-6 chain, window by window\n\n"
                  + paired_with_chain(args.default_run, args.paired_draws))
    body = ("## Models against Markov chains\n\n" + "\n".join(lines) + paired
            + "\n\n## Order-k Markov chains (fitted on train, smoothing chosen on validation)\n\n"
            + to_markdown(chains))
    print(body)
    write_record(RECORD, "Where the models stand: test bits/base on the default E. coli split", body,
                 note="Models: `DiffusionLM.evaluate(split='test', t_samples=16)`, every test window." + note)


if __name__ == "__main__":
    main()
