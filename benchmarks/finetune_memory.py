"""Peak memory and time of fine-tuning Caduceus-PS with and without activation checkpointing (CPU).

    OMP_NUM_THREADS=2 python benchmarks/finetune_memory.py --record benchmarks/finetune_memory.md
    python benchmarks/finetune_memory.py --model caduceus_ps --rows 1024 --length 101 --batch 256 --settings auto false

Each setting of ``model.checkpointing`` runs ``mdlm_dna.finetune`` (``task=csv``, the model from scratch, one
epoch) in a fresh process, so that its maximum resident set (``ru_maxrss``: the whole process, Python, torch and
the data included) is its own. The data are ``--rows`` random sequences of ``--length`` bases in two classes
(memory and time depend on the shapes, not on the letters), written to a temporary folder.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from common import Stopwatch, arg_parser, compose_config, peak_rss_bytes, write_record


def _table(path: Path, rows: int, length: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), length)) for _ in range(rows)]
    pd.DataFrame({"sequence": seqs, "label": rng.integers(0, 2, rows)}).to_csv(path, index=False)


def _one(overrides: list[str], out: str, threads: int, queue) -> None:
    """Child process: one fine-tuning run; reports its peak resident set (GiB) and seconds."""
    import torch

    from mdlm_dna.finetune import finetune
    from mdlm_dna.utils.resolvers import register_resolvers

    torch.set_num_threads(threads)
    register_resolvers()
    cfg = compose_config("finetune", overrides)
    with Stopwatch() as watch:
        finetune(cfg, Path(out))
    queue.put({"seconds": round(watch.seconds, 1), "peak_rss_gib": round(peak_rss_bytes() / 2**30, 2)})


def measure(model: str, setting: str, rows: int, length: int, batch: int, threads: int, folder: Path) -> dict:
    """One setting of model.checkpointing, in a fresh (spawned) process."""
    overrides = ["task=csv", f"task.train_path={folder / 'train.csv'}", f"task.test_path={folder / 'test.csv'}",
                 "init=null", f"model={model}", f"model.checkpointing={setting}", f"data.batch_size={batch}",
                 f"data.eval_batch_size={batch}", "trainer.max_epochs=1", "trainer.accelerator=cpu",
                 "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_one, args=(overrides, str(folder / f"run-{setting}"), threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return {"model": model, "checkpointing": setting, "rows": rows, "length": length, "batch": batch,
            "threads": threads, **result}


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--model", default="caduceus_ps")
    ap.add_argument("--settings", nargs="+", default=["auto", "false"], help="values of model.checkpointing")
    ap.add_argument("--rows", type=int, default=1024, help="training sequences (one epoch)")
    ap.add_argument("--length", type=int, default=101)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", type=Path, default=None, help="also write the table here (Markdown)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _table(folder / "train.csv", args.rows, args.length, 0)
        _table(folder / "test.csv", max(args.batch, 64), args.length, 1)
        table = pd.DataFrame([measure(args.model, s, args.rows, args.length, args.batch, args.threads, folder)
                              for s in args.settings])
    md = table.to_markdown(index=False)
    print(md)
    if args.record:
        write_record(args.record, "Fine-tuning memory: activation checkpointing on and off", md,
                     "peak_rss_gib: maximum resident set of the whole fine-tuning process; seconds: one epoch "
                     "plus validation and test.")


if __name__ == "__main__":
    main()
