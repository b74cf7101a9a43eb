"""Run command-line cases in this process and classify each: error (one line, exit 2), error over N lines,
traceback, hang, data loss (an input, model or run file changed: restored from pristine/), ran (exit 0).

    SRC=/path/to/checkout ATTACK_DIR=/tmp/atk python run_cases.py cases/vep.txt ... > after.txt"""

import os
import sys

sys.path.insert(0, os.environ.get("SRC", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
import contextlib
import glob
import importlib
import io
import shutil
import signal

os.chdir(os.environ.get("ATTACK_DIR", "/tmp/atk"))
CASES = [l.rstrip("\n") for f in sys.argv[1:] for l in open(f) if l.strip() and not l.startswith("#")]
INPUTS = [
    p
    for p in glob.glob("*")
    if os.path.isfile(p)
    and p.endswith((".vcf", ".gz", ".bed", ".fa", ".csv", ".tsv", ".txt"))
    and p not in ("out.tsv",)
]


def snap(mod):
    files = list(INPUTS) + glob.glob("ftrun/*.json") + glob.glob("ftrun/*.safetensors")
    if mod != "mdlm_dna.export":
        files += glob.glob("exp1/*")
    return {f: (os.path.getsize(f), os.stat(f).st_mtime_ns) for f in files if os.path.isfile(f)}


def alarm(*a):
    raise TimeoutError("hang")


signal.signal(signal.SIGALRM, alarm)
for line in CASES:
    mod, *args = line.split()
    for f in (
        "out.tsv",
        "out.bw",
        "out.bedgraph",
        "scored.vcf",
        "ok.vep.tsv",
        "seqs.predictions.tsv",
        "emb.npy",
        "emb.tsv.npy",
        "seqs.fa.npy",
        "scored.bw",
        "out.bw",
        "scored.vcf.bgz",
    ):
        if os.path.exists(f):
            os.remove(f)
    before = snap(mod)
    err, outb = io.StringIO(), io.StringIO()
    sys.argv = [mod, *args]
    signal.alarm(120)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outb):
            importlib.import_module(mod).main()
        code = "0"
    except SystemExit as e:
        code = str(e.code)
    except TimeoutError:
        code = "HANG"
    except BaseException:
        code = "EXC"
    signal.alarm(0)
    e = err.getvalue()
    after = snap(mod)
    lost = [f for f in before if after.get(f) != before[f]]
    if lost:
        for f in lost:
            src = os.path.join("pristine", f)
            if os.path.exists(src):
                shutil.copy2(src, f)
    lines = [l for l in e.splitlines() if l.strip()]
    nerr = 0
    for k, l in enumerate(lines):
        if l.startswith("error:"):
            nerr = len(lines) - k
            break
    if "Traceback" in e:
        cls = "traceback"
    elif code == "HANG":
        cls = "hang"
    elif lost:
        cls = "data loss (" + ", ".join(lost) + ")"
    elif code == "2":
        cls = "error" if nerr == 1 else f"error over {nerr} lines"
    elif code == "0":
        cls = "ran"
    else:
        cls = f"exit {code}"
    msg = next(
        (l for l in lines if l.startswith("error:")),
        lines[-1] if lines else (outb.getvalue().strip().splitlines() or [""])[-1],
    )
    print(f"{cls}\t{line}\t{msg[:200]}", flush=True)
