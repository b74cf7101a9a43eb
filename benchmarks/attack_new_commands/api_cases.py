"""Python API cases: ok / error (a UserError) / EXC (any other exception), one line each.

SRC=/path/to/checkout python api_cases.py > api_after.txt"""

import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, os.environ.get("SRC", str(Path(__file__).resolve().parents[2])))
os.chdir(os.environ.get("ATTACK_DIR", "/tmp/atk"))
warnings.simplefilter("ignore")
import pandas as pd  # noqa: E402  (after sys.path: SRC picks the checkout)

from mdlm_dna import DiffusionLM  # noqa: E402  (after sys.path: SRC picks the checkout)
from mdlm_dna.analysis import read_variants, track, write_vcf  # noqa: E402  (after sys.path: SRC picks the checkout)
from mdlm_dna.classifier import load_classifier  # noqa: E402  (after sys.path: SRC picks the checkout)
from mdlm_dna.utils.errors import UserError  # noqa: E402  (after sys.path: SRC picks the checkout)

m = DiffusionLM.from_pretrained("ecoli", device="cpu")
clf = load_classifier("ftrun")
L = open("g.fa").read().split("\n")
C1 = "".join(L[1:51])
r = C1[99]
df = pd.DataFrame({"chrom": ["chr1"], "pos": [100], "ref": [r], "alt": ["A" if r != "A" else "C"]})
cases = {
    "variant_effects(t_samples=0)": lambda: m.variant_effects("ok.vcf", "g.fa", t_samples=0),
    "variant_effects(batch_size=-1)": lambda: m.variant_effects("ok.vcf", "g.fa", batch_size=-1),
    "variant_effects(strands='x')": lambda: m.variant_effects("ok.vcf", "g.fa", strands="x"),
    "variant_effects(variants=123)": lambda: m.variant_effects(123, "g.fa"),
    "variant_effects(fasta=None)": lambda: m.variant_effects("ok.vcf", None),
    "variant_effects(DataFrame)": lambda: m.variant_effects(df, "g.fa"),
    "variant_effects(DataFrame pos=0)": lambda: m.variant_effects(df.assign(pos=[0]), "g.fa"),
    "variant_effects(DataFrame pos=-5)": lambda: m.variant_effects(df.assign(pos=[-5]), "g.fa"),
    "variant_effects(DataFrame pos='x')": lambda: m.variant_effects(df.assign(pos=["x"]), "g.fa"),
    "variant_effects(DataFrame pos=NaN)": lambda: m.variant_effects(df.assign(pos=[float("nan")]), "g.fa"),
    "variant_effects(DataFrame pos=100.5)": lambda: m.variant_effects(df.assign(pos=[100.5]), "g.fa"),
    "variant_effects(DataFrame ref=None)": lambda: m.variant_effects(df.assign(ref=[None]), "g.fa"),
    "variant_effects(DataFrame no alt col)": lambda: m.variant_effects(df.drop(columns="alt"), "g.fa"),
    "variant_effects(DataFrame empty)": lambda: m.variant_effects(df.iloc[:0], "g.fa"),
    "variant_effects(DataFrame chrom int)": lambda: m.variant_effects(df.assign(chrom=[1]), "g.fa"),
    "variant_effects(DataFrame non-range index)": lambda: m.variant_effects(
        pd.concat([df, df.assign(pos=[200], ref=[C1[199]])]).set_index(pd.Index([5, 3])), "g.fa"
    ),
    "track(batch_size=0)": lambda: track(m, "g.fa", "ok.bed", out="out.bw", batch_size=0),
    "track(stat='x')": lambda: track(m, "g.fa", "ok.bed", stat="x", out="out.bw"),
    "track(out='x.tsv')": lambda: track(m, "g.fa", "ok.bed", out="x.tsv"),
    "track(out=bed)": lambda: track(m, "g.fa", "ok.bed", out="ok.bed"),
    "track(out=nodir/x.bw)": lambda: track(m, "g.fa", "ok.bed", out="nodir/x.bw"),
    "track(strands='x')": lambda: track(m, "g.fa", "ok.bed", out="out.bw", strands="x"),
    "track(model=None)": lambda: track(None, "g.fa", "ok.bed", out="out.bw"),
    "write_vcf(out=nodir/x.vcf)": lambda: write_vcf(m.variant_effects("ok.vcf", "g.fa"), "nodir/x.vcf"),
    "read_variants(None)": lambda: read_variants(None),
    "predict('ACGT' string)": lambda: clf.predict("ACGTACGT"),
    "predict([])": lambda: clf.predict([]),
    "predict([None])": lambda: clf.predict([None]),
    "predict(batch_size=0)": lambda: clf.predict(["ACGT"], batch_size=0),
    "predict(names wrong length)": lambda: clf.predict(["ACGT", "ACGA"], names=["a"]),
    "predict(['ACGX'])": lambda: clf.predict(["ACGX"]),
    "predict([''])": lambda: clf.predict([""]),
    "predict(lowercase)": lambda: clf.predict(["acgtacgt"]),
    "load_classifier(None)": lambda: load_classifier(None),
    "load_classifier('g.fa')": lambda: load_classifier("g.fa"),
    "save_pretrained(out=g.fa)": lambda: clf.save_pretrained("g.fa"),
    "save_pretrained(out=ftrun)": lambda: clf.save_pretrained("ftrun"),
}
only = sys.argv[1:]
for name, fn in cases.items():
    if only and name not in only:
        continue
    try:
        res = fn()
        cls = "ok"
        msg = repr(res)[:150].replace("\n", " | ")
    except UserError as e:
        cls = "error"
        msg = type(e).__name__ + ": " + str(e)[:200]
    except Exception as e:
        cls = "EXC"
        msg = type(e).__name__ + ": " + str(e)[:200].replace("\n", " ")
    print(f"{cls}\t{name}\t{msg}", flush=True)
