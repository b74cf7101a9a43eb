"""Input files for the attack on vep / track / predict / embed / export (benchmarks/attack_new_commands.md).

ATTACK_DIR=/tmp/atk python benchmarks/attack_new_commands/setup_files.py"""

import gzip
import os
import random
import shutil
import sys
from pathlib import Path

ROOT = Path(os.environ.get("ATTACK_DIR", "/tmp/atk"))
ROOT.mkdir(parents=True, exist_ok=True)
os.chdir(ROOT)
random.seed(0)
g = {
    "chr1": "".join(random.choice("ACGT") for _ in range(3000)),
    "chr2": "".join(random.choice("ACGT") for _ in range(1500)),
}
with open("g.fa", "w") as f:
    for k, v in g.items():
        f.write(f">{k}\n" + "\n".join(v[i : i + 60] for i in range(0, len(v), 60)) + "\n")
H = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def rec(c, p, ref=None, alt=None):
    ref = ref or g[c][p - 1]
    alt = alt or ("A" if ref != "A" else "C")
    return f"{c}\t{p}\t.\t{ref}\t{alt}\t.\t.\t.\n"


open("ok.vcf", "w").write(H + rec("chr1", 100) + rec("chr1", 200) + rec("chr2", 50))
open("nohdr.vcf", "w").write(rec("chr1", 100) + rec("chr1", 200))
open("badpos.vcf", "w").write(H + "chr1\tabc\t.\tA\tC\t.\t.\t.\n")
open("pos0.vcf", "w").write(H + "chr1\t0\t.\tA\tC\t.\t.\t.\n")
open("posbig.vcf", "w").write(H + rec("chr1", 100) + "chr1\t99999\t.\tA\tC\t.\t.\t.\n")
r = g["chr1"][99]
open("lower.vcf", "w").write(H + rec("chr1", 100, r.lower(), ("a" if r != "A" else "c")))
open("nalt.vcf", "w").write(H + rec("chr1", 100, None, "N"))
open("dot.vcf", "w").write(H + rec("chr1", 100, None, "."))
open("star.vcf", "w").write(H + rec("chr1", 100, None, "*"))
open("del.vcf", "w").write(H + rec("chr1", 100, None, "<DEL>"))
open("multi.vcf", "w").write(H + rec("chr1", 100, None, "A,C,G,T"))
open("dup.vcf", "w").write(H + rec("chr1", 100) + rec("chr1", 100))
open("indel.vcf", "w").write(
    H + rec("chr1", 100, g["chr1"][99:103], g["chr1"][99]) + rec("chr1", 300, g["chr1"][299], g["chr1"][299] + "ACG")
)
open("unkchr.vcf", "w").write(H + rec("chr1", 100) + "chr9\t10\t.\tA\tC\t.\t.\t.\n")
open("allunk.vcf", "w").write(H + "chr9\t10\t.\tA\tC\t.\t.\t.\n")
open("mismatch.vcf", "w").write(H + rec("chr1", 100, "A" if r != "A" else "C", "G" if r != "G" else "T"))
open("empty.vcf", "w").write("")
open("hdronly.vcf", "w").write(H)
open("fourcol.vcf", "w").write(H + "chr1\t100\t.\tA\n")
open("spaces.vcf", "w").write(H + "chr1 100 . A C . . .\n")
open("negpos.vcf", "w").write(H + "chr1\t-5\t.\tA\tC\t.\t.\t.\n")
open("floatpos.vcf", "w").write(H + "chr1\t100.0\t.\tA\tC\t.\t.\t.\n")
open("emptyref.vcf", "w").write(H + "chr1\t100\t.\t\tC\t.\t.\t.\n")
open("refdot.vcf", "w").write(H + "chr1\t100\t.\t.\tC\t.\t.\t.\n")
open("crlf.vcf", "w").write((H + rec("chr1", 100)).replace("\n", "\r\n"))
open("nref.vcf", "w").write(H + rec("chr1", 100, "N", "A"))
open("iupac.vcf", "w").write(H + rec("chr1", 100, None, "R"))
open("info.vcf", "w").write(
    H.replace("#CHROM", '##INFO=<ID=DP,Number=1,Type=Integer,Description="d">\n#CHROM')
    + rec("chr1", 100).replace("\t.\n", "\tDP=5\n")
)
with gzip.open("ok.vcf.gz", "wt") as f:
    f.write(H + rec("chr1", 100))
open("corrupt.vcf.gz", "wb").write(gzip.compress((H + rec("chr1", 100)).encode())[:30])
open("notgz.vcf.gz", "w").write(H + rec("chr1", 100))
open("binary.vcf", "wb").write(bytes(range(256)) * 4)
open("ok.csv", "w").write(f"chrom,pos,ref,alt\nchr1,100,{r},{'A' if r != 'A' else 'C'}\n")
open("badcols.csv", "w").write("a,b\n1,2\n")
open("emptyfield.csv", "w").write("chrom,pos,ref,alt\nchr1,,A,C\n")
open("nanpos.csv", "w").write("chrom,pos,ref,alt\nchr1,nan,A,C\n")
open("ok.tsv", "w").write(f"chrom\tpos\tref\talt\nchr1\t100\t{r}\t{'A' if r != 'A' else 'C'}\n")
open("hdronly.csv", "w").write("chrom,pos,ref,alt\n")
# BED
open("ok.bed", "w").write("chr1\t100\t140\nchr2\t10\t30\n")
open("past.bed", "w").write("chr1\t2990\t3010\n")
open("rev.bed", "w").write("chr1\t200\t100\n")
open("unk.bed", "w").write("chr9\t1\t10\n")
open("nochr.bed", "w").write("1\t100\t110\n")
open("eq.bed", "w").write("chr1\t100\t100\n")
open("neg.bed", "w").write("chr1\t-5\t10\n")
open("text.bed", "w").write("chr1\tabc\t10\n")
open("overlap.bed", "w").write("chr1\t100\t150\nchr1\t120\t160\n")
open("empty.bed", "w").write("")
open("hdr.bed", "w").write("track name=x\nbrowser position chr1\n#c\nchr1\t100\t110\n")
open("onecol.bed", "w").write("chr1\n")
open("spaces.bed", "w").write("chr1 100 110\n")
open("float.bed", "w").write("chr1\t100.5\t110\n")
# FASTA variants
open("empty.fa", "w").write("")
open("notfasta.fa", "w").write("hello world\nthis is not fasta\n")
with gzip.open("g.fa.gz", "wt") as f:
    f.write(open("g.fa").read())
open("dupnames.fa", "w").write(">chr1\nACGT\n>chr1\nACGT\n")
open("ragged.fa", "w").write(">chr1\nACGTACGT\nACG\nACGTACGT\n")
# sequences for predict
open("seqs.fa", "w").write(">s1\n" + g["chr1"][:70] + "\n>s2\n" + g["chr1"][100:170] + "\n")
open("long.fa", "w").write(">s1\n" + g["chr1"][:2000] + "\n")
open("bad.fa", "w").write(">s1\nACGTXYZ\n")
open("seqs.csv", "w").write("name,sequence\na," + g["chr1"][:70] + "\n")
open("nocol.csv", "w").write("name,seq\na,ACGT\n")
open("emptyseq.fa", "w").write(">s1\n\n>s2\nACGT\n")
open("dupname.fa", "w").write(">s1\nACGT\n>s1\nACGT\n")
os.makedirs("adir", exist_ok=True)
# a tiny finetune run (tests/test_predict.py's recipe), an exported model, and pristine copies to restore
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
if not Path("ftrun/classifier.json").is_file():
    from test_predict import tiny_finetune

    tiny_finetune(ROOT / "ftrun", "classifier=cnn", "+cnn.embedding_dim=8")
from mdlm_dna import DiffusionLM  # noqa: E402

if not Path("exp1/config.json").is_file():
    DiffusionLM.from_pretrained("ecoli", device="cpu").save_pretrained("exp1")
Path("exp1/notes.tsv").write_text("mine\n")
Path("afile.txt").write_text("x\n")
os.makedirs("nonexport", exist_ok=True)
Path("nonexport/notes.txt").write_text("hi\n")
for sub in ("ftrun", "exp1"):
    os.makedirs(f"pristine/{sub}", exist_ok=True)
    for f in Path(sub).iterdir():
        if f.is_file():
            shutil.copy2(f, f"pristine/{sub}/")
for f in Path(".").iterdir():
    if f.is_file() and f.suffix in (".vcf", ".gz", ".bed", ".fa", ".csv", ".tsv", ".txt"):
        shutil.copy2(f, "pristine/")
