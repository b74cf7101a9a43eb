"""Step 3: Caduceus-PS training steps at the paper's 1k and 131k sizes on the Triton, mamba-ssm and torch scans."""

from __future__ import annotations

import time

from gpu_suite.framework import Suite, printed_rows, read_json, status_of, why


def step_caduceus(s: Suite, limit: float) -> None:
    title = "3 Caduceus-PS training"
    variants = ["triton", "cuda", "torch[segsum]"] if s.facts.get("mamba_installed") else ["triton", "torch[segsum]"]
    if s.dry:
        configs = [("1k size (d_model 4, 1 layer, tiny)", ["--device", "cpu", "--shapes", "1,4,32,4", "--model-shapes",
                                                          "1,32", "--model-set", "d_model=4", "n_layers=1",
                                                          "d_state=4", "--repeats", "1", "--threads", "1"], 1.0)]
        variants = ["torch[segsum]"]  # the Triton interpreter takes ~10 s a model step; step 1 covers Triton
    else:
        # the paper's 1k model (d_model 118, 4 layers: 471k parameters) at 32 x 1k tokens a step, and its 131k
        # model (configs/model/caduceus_ps_paper.yaml) at one 131k window; one scan shape of each's layers
        configs = [("paper 1k (d_model 118, 4 layers)", ["--shapes", "32,236,1024,16", "--model-shapes", "32,1024",
                                                         "--model-set", "d_model=118", "n_layers=4",
                                                         "--timeout", "60"], 0.45),
                   ("paper 131k (d_model 256, 16 layers)", ["--shapes", "1,512,131072,16", "--model-shapes",
                                                            "1,131072", "--timeout", "90"], 1.0)]
    t0 = time.monotonic()
    tps = s.facts.setdefault("train_tps", {})
    for i, (name, extra, share) in enumerate(configs):
        left = limit - (time.monotonic() - t0)
        out, printed = s.work / f"caduceus_{i}.json", s.work / f"caduceus_{i}.out"
        argv = ["python", "benchmarks/bench_selective_scan.py", *extra, "--variants", *variants,
                "--dtype", "bfloat16", "--json", str(out)]
        cmd = s.run(argv, max(5.0, left * share), capture=printed)
        data = read_json(out)
        if data is None:  # stopped before its JSON: the rows it printed as it went (scan rows have a D)
            done = printed_rows(printed)
            data = {"model": [r for r in done if "D" not in r], "scan": [r for r in done if "D" in r]}
        model_rows, scan_rows = data.get("model", []), data.get("scan", [])
        for kind, rows in (("training step", model_rows), ("scan fwd+bwd", scan_rows)):
            ms = {r.get("backend"): r.get("ms") for r in rows if r.get("ms")}
            for r in rows:
                shape = (f"B={r['B']} L={r['L']}" if kind == "training step"
                         else f"B={r.get('B')} D={r.get('D')} L={r.get('L')} N={r.get('N')}")
                what = f"{name}: {kind} {shape}, {r.get('backend')} scan"
                if not r.get("ms"):
                    s.add(title, what, status="fail", note=str(r.get("note", "no timing")), command=cmd.shown)
                    continue
                figures = {"ms": r["ms"], "tokens/s": r.get("tokens_per_s"), "peak MiB": r.get("peak_mib")}
                cuda_ms = ms.get("cuda")
                if cuda_ms and r.get("backend") != "cuda":
                    figures["speed vs mamba-ssm"] = cuda_ms / r["ms"]  # >= 0.8 is the goal for triton
                s.add(title, what, figures, "ok", str(r.get("note", "")), cmd.shown)
                if kind == "training step":
                    L = int(r["L"])
                    if (r.get("tokens_per_s") or 0) > tps.get(L, (0, ""))[0]:
                        tps[L] = (r["tokens_per_s"], f"caduceus_ps {r.get('backend')}")
                    if r.get("backend") == "triton" and cuda_ms:
                        s.facts.setdefault("triton_vs_cuda", []).append((name, cuda_ms / r["ms"]))
        if not model_rows and not scan_rows:
            s.add(title, f"{name}: training step", status=status_of(cmd, False), note=why(cmd), command=cmd.shown)
    if s.dry:
        s.add(title, "Triton and mamba-ssm scans", status="skipped", note="dry run: interpreter too slow; no mamba-ssm")
        s.add(title, "paper 131k (d_model 256, 16 layers)", status="skipped", note="dry run: a GPU size")
