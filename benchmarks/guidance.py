"""Judge class-conditional designs: for each class and guidance strength gamma, how often an independent
classifier calls the samples the target class, how close their k-mer spectrum is to held-out real DNA of
that class, how diverse they are and how novel against the training data.

    python benchmarks/guidance.py                                   # E. coli vs yeast chr I, tiny DiT, CPU
    python benchmarks/guidance.py --ckpt RUN                        # a conditional model trained elsewhere
    python benchmarks/guidance.py --paths ecoli=E.fa.gz fly=F.fa.gz --steps 5000 --overrides trainer=gpu

The judge (``mdlm_dna.evaluation.judges.KmerJudge``) is a multinomial logistic regression on both-strand 4-mer
frequencies, trained on real training windows of each class and nothing else (D-CFG uses no classifier,
so it is independent of the generator);
its own accuracy on held-out real windows is reported beside the table. Columns:

    target_frac   fraction of samples the judge assigns to the class asked for
    js_k4, js_k6  JS distance of the k-mer spectrum to the class's held-out real windows (0 = identical)
    gc            mean GC content (the class's real GC is in the judge line)
    div_js4       mean JS distance between two samples' 4-mer spectra (lower = less diverse)
    match_median  median longest exact match of a sample to the class's training genome (lower = more novel)

Rows ``guide = cfg`` are classifier-free guidance (D-CFG) of the conditional model; rows ``guide = cbg``
are classifier guidance (D-CBG, exact per-position reweighting) of the same network's unconditional (null
class) half by a noise-aware CNN (the GenomicBenchmarks baseline architecture) trained here on masked
training windows x_t: a different model family and different features from the judge's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import OLD_CPU_DEFAULTS, arg_parser, compose_config

from mdlm_dna import DiffusionLM
from mdlm_dna.classifier import train_classifier
from mdlm_dna.data import build_datamodule
from mdlm_dna.data.windows import RandomWindows, TiledWindows
from mdlm_dna.evaluation.judges import KmerJudge
from mdlm_dna.evaluation.metrics import GenomeIndex, gc_content, js_distance, kmer_spectrum, pairwise_kmer_distance
from mdlm_dna.utils.resources import data_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PATHS = [f"ecoli={data_file('GCF_000005845.2_ASM584v2_genomic.fna.gz')}",
                 f"yeast={data_file('genome_samples/ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz')}"]


def train_model(paths: list[str], seq_len: int, steps: int, overrides: list[str], out: Path) -> Path:
    from mdlm_dna.pretrain import run

    mapping = ", ".join(f"{p.split('=', 1)[0]}: {p.split('=', 1)[1]}" for p in paths)
    args = ["genome=labelled", f"genome.paths={{{mapping}}}", f"data.seq_len={seq_len}", f"trainer.max_steps={steps}",
            f"trainer.val_check_interval={steps}", f"checkpoint.every_n_train_steps={steps}", "data.val_max_windows=64",
            "trainer.enable_progress_bar=false", "model.time_conditioning=false", "optim.lr=3e-3",
            *OLD_CPU_DEFAULTS[1:], *overrides]  # as recorded (its own window length)
    run(compose_config("pretrain", args), out)
    return out


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--ckpt", help="a class-conditional model (run folder, .ckpt, export); default: train one")
    ap.add_argument("--paths", nargs="+", default=DEFAULT_PATHS, help="CLASS=FASTA, when training")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000, help="training steps, when training")
    ap.add_argument("--overrides", nargs="*", default=["model.d_model=64", "model.n_layers=2", "model.n_heads=2",
                                                       "model.cond_dim=64", "data.batch_size=32"])
    ap.add_argument("--num-samples", type=int, default=64)
    ap.add_argument("--sample-steps", type=int, default=64)
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0])
    ap.add_argument("--judge-windows", type=int, default=2000, help="real training windows per class for the judge")
    ap.add_argument("--test-windows", type=int, default=256, help="held-out real windows per class")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "guidance_table.md"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cbg-gammas", type=float, nargs="*", default=[1.0, 2.0, 4.0],
                    help="classifier-guidance strengths (none: skip D-CBG)")
    ap.add_argument("--cbg-epochs", type=int, default=10, help="epochs of the noise-aware guidance classifier")
    ap.add_argument("--cbg-samples", type=int, default=32, help="samples per D-CBG row (4 classifier rows per "
                    "masked position and step make it the costly part)")
    ap.add_argument("--save-model", help="export the trained conditional model here (save_pretrained)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    ckpt = a.ckpt or train_model(a.paths, a.seq_len, a.steps, a.overrides, Path(tempfile.mkdtemp(prefix="guide-")))
    t_train = time.perf_counter() - t0
    model = DiffusionLM.from_pretrained(ckpt, device=a.device)
    if a.save_model:
        model.save_pretrained(a.save_model)
    classes, L = model.classes, model.seq_len
    if not classes:
        raise SystemExit(f"{ckpt}: not a class-conditional model")
    dm = build_datamodule(model.config)
    dm.setup()

    train_ids, train_y, test_ids, indexes = [], [], {}, {}
    for c, g in enumerate(dm.genomes):
        rw = RandomWindows(g, dm.intervals(c, "train"), L, a.judge_windows, seed=123 + c)
        train_ids.append(np.stack([rw[i]["input_ids"].numpy() for i in range(len(rw))]))
        train_y.append(np.full(len(rw), c))
        tw = TiledWindows(g, dm.intervals(c, "test"), L, max_windows=a.test_windows)
        test_ids[c] = np.stack([tw[i]["input_ids"].numpy() for i in range(len(tw))])
        indexes[c] = GenomeIndex([np.asarray(g.ids[iv.start:iv.end]) for iv in dm.intervals(c, "train")], k=16)
    judge = KmerJudge().fit(np.concatenate(train_ids), np.concatenate(train_y), len(classes))
    judge_acc = {classes[c]: judge.accuracy(x, c) for c, x in test_ids.items()}
    real_gc = {classes[c]: float(gc_content(x).mean()) for c, x in test_ids.items()}

    guide_clf = None
    if a.cbg_gammas:  # classifier and judge see the same real windows, but not the same model or features
        guide_clf = train_classifier(np.concatenate(train_ids), np.concatenate(train_y), classes,
                                     epochs=a.cbg_epochs)
        preds = {c: guide_clf.log_probs(torch.tensor(x)).argmax(-1).numpy() for c, x in test_ids.items()}
        clf_acc = {classes[c]: float((p == c).mean()) for c, p in preds.items()}

    def row(c: int, name: str, guide: str, gamma: float, ids: np.ndarray) -> dict:
        return {"class": name, "guide": guide, "gamma": gamma, "target_frac": judge.accuracy(ids, c),
                "js_k4": js_distance(kmer_spectrum(ids, 4), kmer_spectrum(test_ids[c], 4)),
                "js_k6": js_distance(kmer_spectrum(ids, 6), kmer_spectrum(test_ids[c], 6)),
                "gc": float(gc_content(ids).mean()), "div_js4": pairwise_kmer_distance(ids, 4),
                "match_median": float(np.median(indexes[c].novelty(ids)[0]))}

    rows, t1 = [], time.perf_counter()
    for c, name in enumerate(classes):
        ref = test_ids[c]
        rows.append({"class": name, "guide": "real (test)", "gamma": "", "target_frac": judge_acc[name], "js_k4": 0.0,
                     "js_k6": 0.0, "gc": real_gc[name], "div_js4": pairwise_kmer_distance(ref[: a.num_samples], 4),
                     "match_median": float(np.median(indexes[c].novelty(ref[: a.num_samples])[0]))})
        for gamma in a.gammas:
            ids = model.sample_ids(a.num_samples, L, a.sample_steps, label=name, guidance_scale=gamma, seed=0,
                                   batch_size=a.num_samples).ids.numpy()
            rows.append(row(c, name, "cfg", gamma, ids))
        for gamma in a.cbg_gammas if guide_clf is not None else []:
            ids = model.sample_ids(a.cbg_samples, L, a.sample_steps, label=name, guidance_scale=gamma, seed=0,
                                   batch_size=a.cbg_samples, classifier=guide_clf, progress=False).ids.numpy()
            rows.append(row(c, name, "cbg", gamma, ids))
    t_sample = time.perf_counter() - t1
    table = pd.DataFrame(rows)
    device = str(model.device) + (f" ({torch.cuda.get_device_name()})" if model.device.type == "cuda" else "")
    head = (f"model: {ckpt} ({model.num_parameters / 1e6:.2f} M parameters, window {L}, classes {classes}); "
            f"{a.num_samples} samples (D-CBG: {a.cbg_samples}) x {a.sample_steps} steps per row; "
            f"judge: 4-mer logistic regression on "
            f"{a.judge_windows} real training windows per class, held-out accuracy "
            f"{', '.join(f'{k} {v:.3f}' for k, v in judge_acc.items())}; "
            + (f"D-CBG classifier: noise-aware CNN, {a.cbg_epochs} epochs, clean held-out accuracy "
               f"{', '.join(f'{k} {v:.3f}' for k, v in clf_acc.items())}; " if guide_clf is not None else "")
            + f"training {t_train:.0f} s, sampling "
            f"{t_sample:.0f} s on {device}, {torch.get_num_threads()} thread(s)")
    text = head + "\n\n" + table.to_markdown(index=False, floatfmt=".3f") + "\n"
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
