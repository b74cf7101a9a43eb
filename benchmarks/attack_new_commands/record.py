"""Merge before/after case classes into benchmarks/attack_new_commands.md rows (manual notes for 'ran' cases)."""

import collections
import sys

# cases that exit 0 but are wrong, judged by reading the output (key: the case text)
WRONG = {
    "mdlm_dna.vep ckpt=ecoli vcf=emptyref.vcf fasta=g.fa out=out.tsv": "silently wrong (empty REF scored as insertion)",
    "mdlm_dna.vep ckpt=ecoli vcf=ok.vcf fasta=g.fa out=out.tsv vcf_out=scored.bw": "silently wrong (VCF named .bw)",
    "mdlm_dna.vep ckpt=ecoli vcf=ok.vcf fasta=g.fa out=out.bw": "silently wrong (a TSV under a .bw name)",
    "variant_effects(DataFrame pos=100.5)": "silently wrong (scored at pos 100)",
    "track(batch_size=0)": "silently accepted (batch_size=0)",
    "mdlm_dna.predict run=ftrun input=seqs.fa out=out.bw": "silently wrong (a TSV under a .bw name)",
}
MISLEADING = {
    "mdlm_dna.predict run=g.fa input=seqs.fa out=out.tsv": "error (misleading: 'no such folder' for a file)",
}


def load(path, api=False):
    out = {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            continue
        if api:
            cls, case, msg = parts[0], parts[1], parts[2]
            cls = {"ok": "ran", "error": "error", "EXC": "traceback", "crash": "crash (segfault)"}[cls]
        else:
            cls, case, msg = parts
        out[case] = (cls, msg)
    return out


# an earlier output of the same kind written into the model folder, overwritten as any out= is: not a loss
EARLIER_OUTPUTS = ("exp1/notes.tsv", "ftrun/results.tsv")


def judge(case, cls, after):
    if cls.startswith("data loss") and all(f in EARLIER_OUTPUTS for f in cls[11:-1].split(", ")):
        cls = "ran"
    if cls.startswith("data loss") and all(f.endswith((".names.txt", ".npy")) for f in cls[11:-1].split(", ")):
        cls = "ran"  # an earlier embed case's own output, not an input
    if cls == "ran":
        if not after and case in WRONG:
            return WRONG[case]
        return "correct"
    if not after and case in MISLEADING:
        return MISLEADING[case]
    if cls.startswith("exit 1"):
        return "error (Hydra's own, exit 1)"
    return cls


def key(j):
    if j.startswith("error (misleading"):
        return "misleading error"
    if j.startswith("error (Hydra"):
        return "error (Hydra, exit 1)"
    if j.startswith("error over"):
        return "error over several lines"
    return j.split(" (")[0]


before, after = load(sys.argv[1]), load(sys.argv[2])
bapi, aapi = load(sys.argv[3], True), load(sys.argv[4], True)
rows, cb, ca = [], collections.Counter(), collections.Counter()
for b, a, kind in ((before, after, "cli"), (bapi, aapi, "api")):
    for case in a:
        jb = judge(case, b.get(case, ("?", ""))[0], False)
        ja = judge(case, a[case][0], True)
        cb[key(jb)] += 1
        ca[key(ja)] += 1
        if kind == "cli":
            mod, *args = case.split()
            cmd, inp = mod.removeprefix("mdlm_dna."), " ".join(args)
        else:
            cmd, inp = "API", case
        rows.append(f"| {cmd} | `{inp}` | {jb} | {ja}: {a[case][1].removeprefix('error: ').replace('|', '/')[:110]} |")
print(len(rows), "cases")
print("before", dict(cb))
print("after", dict(ca))
open("rows.md", "w").write("\n".join(rows) + "\n")
open("counts.txt", "w").write(f"{len(rows)}\nbefore {dict(cb)}\nafter {dict(ca)}\n")
