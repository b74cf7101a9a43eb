"""How fast ``python -m mdlm_dna.vep`` scores variants: variants/s with the shipped model, by variant kind and strands.

    OMP_NUM_THREADS=1 python benchmarks/vep_speed.py [--snvs 500 --indels 40 --repeats 3 --threads 1 --device cpu]

Random variants at random positions of the embedded E. coli genome (REF from the genome, seed 0), scored with
``DiffusionLM.variant_effects`` exactly as the command does (reading the FASTA, windows, batching; not loading
the model). SNVs cost one network row of the 128-base window per strand; multi-base variants and indels cost
2 windows x ``t_samples`` NELBO draws per strand. Writes benchmarks/vep_speed.md (the machine named in it) and
prints the table. Wall-clock times: on a shared machine they depend on what else runs, so each timing is repeated
and the best (least disturbed) and the median are reported, with the variants per CPU-second of the process
(the steadier figure on a busy machine; one torch thread).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import time_calls

from mdlm_dna.api import DiffusionLM
from mdlm_dna.utils.resources import data_file

RECORD = Path(__file__).with_name("vep_speed.md")


def genome_fasta(folder: Path) -> tuple[Path, str, str]:
    """The embedded E. coli chromosome as a plain FASTA (pyfaidx cannot index plain gzip)."""
    with gzip.open(data_file("GCF_000005845.2_ASM584v2_genomic.fna.gz"), "rt") as fh:
        header = fh.readline()
        seq = "".join(line.strip() for line in fh if not line.startswith(">"))
    name = header[1:].split()[0]
    path = folder / "ecoli.fa"
    path.write_text(f">{name}\n" + "\n".join(seq[i : i + 80] for i in range(0, len(seq), 80)) + "\n")
    return path, name, seq.upper()


def random_variants(name: str, seq: str, n_snv: int, n_indel: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for pos in rng.integers(1, len(seq) - 10, n_snv):
        ref = seq[pos - 1]
        rows.append((name, int(pos), ref, rng.choice([b for b in "ACGT" if b != ref])))
    for k, pos in enumerate(rng.integers(1, len(seq) - 10, n_indel)):
        ref = seq[pos - 1 : pos + 2]
        rows.append((name, int(pos), ref, ref[0]) if k % 2 else (name, int(pos), ref[0], ref[0] + "GA"))
    return pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snvs", type=int, default=500)
    ap.add_argument("--indels", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3, help="each timing repeated; best and median reported")
    ap.add_argument("--t-samples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--machine", default="2-core CPU, shared with other jobs (timings are upper bounds)")
    ap.add_argument("--out", type=Path, default=RECORD)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = DiffusionLM.from_pretrained("ecoli", device=args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fasta, name, seq = genome_fasta(Path(tmp))
        variants = random_variants(name, seq, args.snvs, args.indels)
        snvs, indels = variants.iloc[: args.snvs], variants.iloc[args.snvs :]
        model.variant_effects(snvs.iloc[:200], fasta, progress=False)  # warm-up (and the FASTA index)
        for label, table, kw in [
            ("SNV, forward strand", snvs, {}),
            ("SNV, both strands", snvs, {"strands": "both"}),
            (f"indel, forward, t_samples={args.t_samples}", indels, {"t_samples": args.t_samples}),
        ]:
            if len(table) == 0:
                continue
            # on a busy machine the CPU time of this process is the steadier figure
            t = time_calls(lambda table=table, kw=kw: model.variant_effects(
                table, fasta, progress=False, batch_size=args.batch_size, **kw), args.repeats)
            assert (t.result["status"] == "scored").all(), t.result["status"].value_counts()
            best, median, cpu = t.best, t.median, min(t.cpu_seconds)
            rows.append({"variants": label, "n": len(table), "repeats": args.repeats,
                         "wall_s (best)": round(best, 2), "wall_s (median)": round(median, 2),
                         "variants/s wall (best)": round(len(table) / best, 1),
                         "variants/s wall (median)": round(len(table) / median, 1),
                         "variants per CPU-second": round(len(table) / cpu, 1),
                         "min per 10k (best wall)": round(10_000 / (len(table) / best) / 60, 2)})
    table = pd.DataFrame(rows)
    text = table.to_markdown(index=False)
    cpu = platform.processor() or platform.machine()
    header = (f"# Variant-effect scoring speed\n\nShipped `ecoli` model (DiT, 1.03 M parameters, 128-base window), "
              f"device {args.device}, torch threads {args.threads}, batch_size {args.batch_size}; machine: "
              f"{args.machine} ({cpu}, {os.cpu_count()} cores reported). Command:\n\n"
              f"    OMP_NUM_THREADS={args.threads} python benchmarks/vep_speed.py --snvs {args.snvs} "
              f"--indels {args.indels} --repeats {args.repeats} --t-samples {args.t_samples} --threads {args.threads} "
              f"--device {args.device}\n\n")
    args.out.write_text(header + text + "\n")
    print(text)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
