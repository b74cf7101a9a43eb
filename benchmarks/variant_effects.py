"""What the model knows about genes: zero-shot variant effects and per-base information on held-out E. coli.

    python benchmarks/variant_effects.py    # the record: 10-16 min on a busy 2-core CPU, +36 min the first time
                                            # (it trains the 600-step AR and MDLM baselines, then reuses them)
    python benchmarks/variant_effects.py --per-class 200 --max-order 6 --ic-sites 500    # a quick look
    python benchmarks/variant_effects.py --ar-run none --mdlm-run none --max-order 6 \
        --model "chain=RUN/checkpoints/last.ckpt" --out benchmarks/variant_effects_chain.csv   # another model

Genes are called with pyrodigal trained on the training split (first 90 % of NC_000913.3) and predicted on the
test split only (last 5 %, the package's own split, never seen in training); every single-nucleotide change
inside them is classed with table 11 (:mod:`mdlm_dna.analysis.genes`). A seeded subsample of each class is
scored by

- the shipped ``ecoli`` model: llr = log p(alt | rest) - log p(ref | rest), one masked site in a window of the
  model's training length centred on it, both strands' probabilities averaged (``DiffusionLM.probs`` machinery);
- the AR baseline of the same size (dit_tiny, causal, 600 steps: the recipe of ``benchmarks/paper_claims.py``;
  trained here if ``--ar-run`` holds no checkpoint): llr = the exact change in the window's log-likelihood
  (forward strand), and the same with both strands' conditionals averaged;
- an MDLM trained exactly like that AR baseline (same size, data, steps): the comparison at equal training
  compute (the shipped model trained 10,000 steps);
- order-k Markov chains, k = 0..10, fitted on the training split (smoothing chosen on validation): llr = the exact
  change in the log-likelihood of the same window.

Negative llr = the change is less likely = predicted more damaging, so each AUROC is P(llr of a damaging change
< llr of a synonymous one), ties counted one half; 0.5 is chance. Intervals: percentile bootstrap over variants
(both classes resampled). Per-base information (2 - entropy of p(base | rest), bits) is compared inside and
outside genes, by codon position, and upstream of start codons (Shine-Dalgarno: AGGAGG and its 4-mers) for the
model and two chains. Writes benchmarks/variant_effects.csv and .md (with the wall time of each part) and prints
the table.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import OLD_CPU_DEFAULTS, arg_parser, compose_config

from mdlm_dna.analysis.genes import call_genes, codon_position_track, gene_snvs, train_gene_finder, upstream_offsets
from mdlm_dna.analysis.probs import centred_windows, positions_log_probs
from mdlm_dna.evaluation.markov import ALPHAS, MarkovChain, ecoli_splits

HERE = Path(__file__).resolve().parent
COMPARISONS = (("stop_gained", "synonymous"), ("missense", "synonymous"))
SD_CORES = ("AGGA", "GGAG", "GAGG")  # the 4-mers of the Shine-Dalgarno consensus AGGAGG
SD_OFFSETS = range(-15, -4)  # -15..-5 before the first base of the start codon
UPSTREAM = range(-20, 0)


# ----- statistics ---------------------------------------------------------------------------------------------
def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties given their mean rank.

    >>> average_ranks(np.array([3.0, 1.0, 3.0]))
    array([2.5, 1. , 2.5])
    """
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = mean_rank[group]
    return ranks


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(tie) / 2 (the Mann-Whitney U over n_pos * n_neg).

    >>> auroc(np.array([2.0, 3.0]), np.array([1.0, 2.0]))
    0.875
    """
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    r = average_ranks(np.r_[pos, neg])
    u = r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def bootstrap_auroc(positive: np.ndarray, negative: np.ndarray, n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of the AUROCs of several scorers of the same variants, and of their differences.

    ``positive`` [S, n_pos], ``negative`` [S, n_neg]: scores of S scorers. Each resample draws variants (each
    class with replacement) once for all scorers, so the interval of a difference is paired. Returns
    (intervals [S, 2], difference intervals [S, S, 2] of row minus column)."""
    pos, neg = np.atleast_2d(positive), np.atleast_2d(negative)
    rng = np.random.default_rng(seed)
    stats = np.empty((n_boot, len(pos)))
    for b in range(n_boot):
        ip, ineg = rng.integers(0, pos.shape[1], pos.shape[1]), rng.integers(0, neg.shape[1], neg.shape[1])
        stats[b] = [auroc(p[ip], n[ineg]) for p, n in zip(pos, neg)]
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    single = np.quantile(stats, q, axis=0).T
    diff = np.quantile(stats[:, :, None] - stats[:, None, :], q, axis=0)  # [2, S, S]
    return single, np.moveaxis(diff, 0, -1)


# ----- Markov chains: p(base at i | the rest of the window) ---------------------------------------------------
def markov_site_log_probs(chain: MarkovChain, ids: np.ndarray, positions: np.ndarray, window: int) -> np.ndarray:
    """[P, 4] natural-log p(b at i | the rest of the window) under ``chain``: the window's exact log-likelihood
    with b at i (first bases of the window from the lower orders, as :meth:`MarkovChain.score`), normalised
    over b. The window is ``window`` long, centred on i and shifted inside ``ids`` (as the model's).
    So ``lp[alt] - lp[ref]`` is exactly the change in the window's log-likelihood. Sequences of A/C/G/T only.
    """
    ids = np.asarray(ids, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    start, site = centred_windows(len(ids), positions, window)
    w = min(int(window), len(ids))
    win = ids[start[:, None] + np.arange(w)[None, :]]  # [P, w]
    if (win > 3).any():
        raise ValueError("markov_site_log_probs needs A/C/G/T windows (no N)")
    k = chain.order
    logp = [np.log(chain.probs(j)) for j in range(k + 1)]
    rows = np.arange(len(positions))
    out = np.zeros((len(positions), 4))
    for b in range(4):
        x = win.copy()
        x[rows, site] = b
        for d in range(k + 1):  # the terms of positions site .. site + k, the only ones the base at site enters
            j = site + d
            inside = j < w
            c = np.minimum(k, j)  # context length: the window's first bases use the lower orders
            for cj in np.unique(c[inside]):
                sel = inside & (c == cj)
                r, jj = rows[sel], j[sel]
                code = np.zeros(len(r), dtype=np.int64)
                for t in range(cj):
                    code = code * 4 + x[r, jj - cj + t]
                out[sel, b] += logp[cj][code, x[r, jj]]
    return out - np.logaddexp.reduce(out, axis=1, keepdims=True)


def fit_chains(splits: dict, max_order: int) -> dict[int, MarkovChain]:
    """Order-k chains k = 0..max_order fitted on the training split, smoothing chosen on validation."""
    return {k: MarkovChain.fit_select_alpha(splits["train"], splits["validation"], k, ALPHAS)[0]
            for k in range(max_order + 1)}


def information(lp: np.ndarray) -> np.ndarray:
    """Information content (bits) 2 - H(p) of each row of natural-log probabilities [..., 4].

    >>> information(np.log(np.array([[0.25] * 4, [1.0, 0, 0, 0]]))).round(6).tolist()
    [0.0, 2.0]
    """
    p = np.exp(lp)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=-1)
    return 2.0 - h


# ----- models --------------------------------------------------------------------------------------------------
def train_baseline(run_dir: Path, steps: int = 600, seed: int = 0, objective: str = "ar") -> tuple[Path, float]:
    """A model of the shipped model's size (dit_tiny; causal for AR) trained on E. coli as paper_claims.py does;
    returns its last checkpoint and the training wall time in seconds (both reused when ``run_dir`` already holds
    a checkpoint; the time is kept in ``run_dir/train_seconds.txt``, NaN if unknown)."""
    existing = sorted(run_dir.glob("**/last.ckpt"))
    record = run_dir / "train_seconds.txt"
    if existing:
        return existing[0], float(record.read_text()) if record.exists() else float("nan")
    from mdlm_dna.pretrain import run
    from mdlm_dna.utils.resolvers import register_resolvers

    register_resolvers()
    overrides = ["genome=ecoli", *OLD_CPU_DEFAULTS, f"objective={objective}",
                 *(["model.causal=true"] if objective == "ar" else []),
                 f"seed={seed}", f"trainer.max_steps={steps}",
                 f"trainer.val_check_interval={steps}", f"checkpoint.every_n_train_steps={steps}",
                 "trainer.enable_progress_bar=false", "resume=null"]
    cfg = compose_config("pretrain", overrides)
    t = time.perf_counter()
    ckpt = Path(run(cfg, run_dir)["last_ckpt"])
    seconds = time.perf_counter() - t
    record.write_text(f"{seconds:.1f}\n")
    return ckpt, seconds


def model_site_log_probs(model, ids: np.ndarray, positions: np.ndarray, strands: str) -> np.ndarray:
    """[P, 4] log p(b | rest) from a package model at ``positions`` of ``ids`` (windows centred, as ``probs``);
    each distinct position is predicted once."""
    unique, inverse = np.unique(np.asarray(positions), return_inverse=True)
    return positions_log_probs(model, ids, unique, strands=strands, batch_size=256)[inverse]


def variant_llr(site_lp: np.ndarray, site_index: np.ndarray, ref: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """llr = log p(alt) - log p(ref) of each variant from the log-probabilities of its site.

    >>> variant_llr(np.log(np.array([[0.5, 0.25, 0.125, 0.125]])), np.array([0]), np.array([0]), np.array([1]))
    array([-0.69314718])
    """
    return site_lp[site_index, alt] - site_lp[site_index, ref]


# ----- the benchmark -------------------------------------------------------------------------------------------
def sample_variants(snvs: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Up to ``per_class`` variants of each compared class, seeded; positions inside one gene only."""
    cover = snvs.groupby("pos")["gene"].nunique()
    single = snvs[snvs["pos"].map(cover) == 1]
    classes = sorted({c for pair in COMPARISONS for c in pair})
    parts = []
    for i, c in enumerate(classes):
        rows = single[single["consequence"] == c]
        parts.append(rows.sample(n=min(per_class, len(rows)), random_state=seed + i))
    return pd.concat(parts, ignore_index=True)


def ic_sites(length: int, genes, n_sites: int, seed: int) -> dict[str, np.ndarray]:
    """Positions whose information is measured: every base -20..-1 upstream of each start codon, and ``n_sites``
    random bases each inside one gene (codon position known) and outside genes and upstream regions."""
    rng = np.random.default_rng(seed)
    codon = codon_position_track(length, genes)
    up = upstream_offsets(length, genes, UPSTREAM)
    cover = np.zeros(length, dtype=np.int64)
    for g in genes:
        cover[g.start : g.end] += 1
    upstream_mask = np.zeros(length, dtype=bool)
    upstream_mask[up[up >= 0]] = True
    coding = np.flatnonzero(codon > 0)
    intergenic = np.flatnonzero((cover == 0) & ~upstream_mask)
    return {"coding": np.sort(rng.choice(coding, min(n_sites, len(coding)), replace=False)),
            "intergenic": np.sort(rng.choice(intergenic, min(n_sites, len(intergenic)), replace=False)),
            "upstream": up, "codon": codon}


def sd_matches(seq: str, genes, up: np.ndarray) -> np.ndarray:
    """[G, len(UPSTREAM)] bool: the upstream base lies in an SD core 4-mer (read in the gene's orientation) that
    lies wholly within -15..-5 of the start codon. ``up`` from :func:`upstream_offsets` over ``UPSTREAM``."""
    comp = str.maketrans("ACGT", "TGCA")
    hit = np.zeros(up.shape, dtype=bool)
    offs = list(UPSTREAM)
    lo, hi = offs.index(SD_OFFSETS[0]), offs.index(SD_OFFSETS[-1])
    for i, g in enumerate(genes):
        if (up[i] < 0).any():
            continue
        s = "".join(seq[p] for p in up[i])
        if g.strand == -1:
            s = s.translate(comp)  # up[i] already runs 5' to 3' in the gene's orientation
        for a in range(lo, hi - 2):
            if s[a : a + 4] in SD_CORES:
                hit[i, a : a + 4] = True
    return hit


def markov_log_probs(chain: MarkovChain, ids: np.ndarray, positions: np.ndarray, window: int,
                     strands: str) -> np.ndarray:
    """:func:`markov_site_log_probs` on the forward strand, or ``strands="both"``: the mean of the forward and
    the reverse-complement strand's probabilities (as the model's ``strands="both"``)."""
    fwd = markov_site_log_probs(chain, ids, positions, window)
    if strands == "forward":
        return fwd
    rc = (3 - np.asarray(ids, dtype=np.int64))[::-1]
    rev = markov_site_log_probs(chain, rc, len(ids) - 1 - np.asarray(positions), window)[:, ::-1]
    return np.log((np.exp(fwd) + np.exp(rev)) / 2)


def information_rows(name: str, lp: dict[str, np.ndarray], sites: dict, sd_hit: np.ndarray, ids: np.ndarray,
                     seconds: float) -> list[dict]:
    """Mean information (bits) inside vs outside genes, by codon position, upstream of starts and at SD bases."""
    ic = {k: information(v) for k, v in lp.items()}
    surprisal = {k: -lp[k][np.arange(len(lp[k])), ids[pos]] / math.log(2)
                 for k, pos in (("coding", sites["coding"]), ("intergenic", sites["intergenic"]))}
    codon = sites["codon"][sites["coding"]]
    offs = list(UPSTREAM)
    window = np.zeros(len(offs), dtype=bool)
    window[offs.index(SD_OFFSETS[0]) : offs.index(SD_OFFSETS[-1]) + 1] = True
    full = (sites["upstream"] >= 0).all(axis=1)
    up_ic = ic["upstream"][full]
    hit = sd_hit[full]
    values = {
        "information in genes": ic["coding"].mean(),
        "information outside genes": ic["intergenic"].mean(),
        "surprisal in genes": surprisal["coding"].mean(),
        "surprisal outside genes": surprisal["intergenic"].mean(),
        **{f"information at codon position {c}": ic["coding"][codon == c].mean() for c in (1, 2, 3)},
        "information -15..-5 upstream of starts": up_ic[:, window].mean(),
        "information at SD-core bases in -15..-5": up_ic[hit].mean(),
        "information at other bases in -15..-5": up_ic[~hit & window[None, :]].mean(),
        "information -20..-16 and -4..-1 upstream": up_ic[:, ~window].mean(),
    }
    return [{"section": "information", "scorer": name, "strands": "both", "statistic": k, "value": float(v),
             "lo": float("nan"), "hi": float("nan"), "n": "", "seconds": round(seconds, 1)} for k, v in values.items()]


def run_benchmark(per_class: int = 500, max_order: int = 10, ic_sites_n: int = 1500, n_boot: int = 1000,
                  seed: int = 0, ar_run: Path | None = None, ar_steps: int = 600, cache_dir: str | None = None,
                  mdlm_run: Path | None = None, extra: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Every number of the record: AUROC rows, paired differences, information rows; and the run's facts.

    ``extra``: label -> model name or checkpoint, more models scored like the shipped one (both strands, windows of
    each model's own training length), each paired against it. ``ar_run`` None: no AR baseline rows."""
    from mdlm_dna import DiffusionLM

    facts: dict = {}
    t0 = time.perf_counter()
    splits = ecoli_splits(cache_dir)
    test = np.asarray(splits["test"], dtype=np.int64)
    seq = "".join("ACGTN"[i] for i in test)
    finder = train_gene_finder("".join("ACGTN"[i] for i in splits["train"]))
    genes = call_genes(finder, seq)
    snvs = gene_snvs(seq, genes)
    variants = sample_variants(snvs, per_class, seed)
    facts.update(test_bases=len(seq), genes=len(genes), genes_plus=sum(g.strand == 1 for g in genes),
                 snvs=len(snvs), class_counts=snvs["consequence"].value_counts().to_dict(),
                 sampled=variants["consequence"].value_counts().to_dict(), gene_seconds=time.perf_counter() - t0)
    sites, site_index = np.unique(variants["pos"].to_numpy(), return_inverse=True)
    ref = variants["ref"].map("ACGT".index).to_numpy()
    alt = variants["alt"].map("ACGT".index).to_numpy()
    scores: dict[tuple[str, str], np.ndarray] = {}
    seconds: dict[tuple[str, str], float] = {}
    rows: list[dict] = []

    model = DiffusionLM.from_pretrained("ecoli")
    window = model.seq_len
    facts["window"] = window
    t = time.perf_counter()
    scores[("ecoli (MDLM, shipped)", "both")] = variant_llr(model_site_log_probs(model, test, sites, "both"),
                                                            site_index, ref, alt)
    seconds[("ecoli (MDLM, shipped)", "both")] = time.perf_counter() - t
    others = {label: DiffusionLM.from_pretrained(src) for label, src in (extra or {}).items()}
    for label, other in others.items():
        t = time.perf_counter()
        scores[(label, "both")] = variant_llr(model_site_log_probs(other, test, sites, "both"), site_index, ref, alt)
        seconds[(label, "both")] = time.perf_counter() - t

    t = time.perf_counter()
    chains = fit_chains(splits, max_order)
    facts["chain_fit_seconds"] = time.perf_counter() - t
    for k, chain in chains.items():
        for strands in ("forward", "both"):
            t = time.perf_counter()
            scores[(f"Markov order {k}", strands)] = variant_llr(markov_log_probs(chain, test, sites, window, strands),
                                                                 site_index, ref, alt)
            seconds[(f"Markov order {k}", strands)] = time.perf_counter() - t

    if ar_run is not None:
        ar_ckpt, facts["ar_train_seconds"] = train_baseline(ar_run, ar_steps)
        ar = DiffusionLM.from_pretrained(ar_ckpt)
        facts["ar_steps"] = ar_steps
        for strands in ("forward", "both"):
            t = time.perf_counter()
            name = f"AR dit_tiny ({ar_steps} steps)"
            scores[(name, strands)] = variant_llr(model_site_log_probs(ar, test, sites, strands), site_index, ref,
                                                  alt)
            seconds[(name, strands)] = time.perf_counter() - t
    equal = None
    if mdlm_run is not None:  # an MDLM trained exactly like the AR baseline: the equal-compute comparison
        ckpt, facts["mdlm_train_seconds"] = train_baseline(mdlm_run, ar_steps, objective="mdlm")
        equal = (f"MDLM dit_tiny ({ar_steps} steps)", "both")
        t = time.perf_counter()
        scores[equal] = variant_llr(model_site_log_probs(DiffusionLM.from_pretrained(ckpt), test, sites, "both"),
                                    site_index, ref, alt)
        seconds[equal] = time.perf_counter() - t

    keys = list(scores)
    for damaging, neutral in COMPARISONS:
        is_pos = (variants["consequence"] == damaging).to_numpy()
        is_neg = (variants["consequence"] == neutral).to_numpy()
        pos = np.stack([-scores[k][is_pos] for k in keys])
        neg = np.stack([-scores[k][is_neg] for k in keys])
        single, diff = bootstrap_auroc(pos, neg, n_boot, seed)
        for i, (name, strands) in enumerate(keys):
            rows.append({"section": "auroc", "scorer": name, "strands": strands,
                         "statistic": f"{damaging} vs {neutral}", "value": auroc(pos[i], neg[i]),
                         "lo": single[i, 0], "hi": single[i, 1], "n": f"{is_pos.sum()} / {is_neg.sum()}",
                         "seconds": round(seconds[(name, strands)], 1)})
        for i, (name, strands) in enumerate(keys[1:], start=1):  # the shipped model minus each other scorer
            rows.append({"section": "auroc difference", "scorer": name, "strands": strands,
                         "statistic": f"{damaging} vs {neutral}: shipped model minus this",
                         "value": auroc(pos[0], neg[0]) - auroc(pos[i], neg[i]), "lo": diff[0, i, 0],
                         "hi": diff[0, i, 1], "n": f"{is_pos.sum()} / {is_neg.sum()}", "seconds": float("nan")})
        if equal is not None:  # the equal-compute MDLM minus each AR row
            e = keys.index(equal)
            for i, (name, strands) in enumerate(keys):
                if name.startswith("AR"):
                    rows.append({"section": "equal compute", "scorer": name, "strands": strands,
                                 "statistic": f"{damaging} vs {neutral}: {equal[0]} minus this",
                                 "value": auroc(pos[e], neg[e]) - auroc(pos[i], neg[i]), "lo": diff[e, i, 0],
                                 "hi": diff[e, i, 1], "n": f"{is_pos.sum()} / {is_neg.sum()}",
                                 "seconds": float("nan")})

    where = ic_sites(len(test), genes, ic_sites_n, seed)
    hit = sd_matches(seq, genes, where["upstream"])
    full = (where["upstream"] >= 0).all(axis=1)
    facts["sd_fraction"] = float(hit[full].any(axis=1).mean())
    groups = {"coding": where["coding"], "intergenic": where["intergenic"],
              "upstream": where["upstream"].clip(min=0).reshape(-1)}
    for name, scorer in (("ecoli (MDLM, shipped)", lambda p: model_site_log_probs(model, test, p, "both")),
                         *((label, lambda p, m=m: model_site_log_probs(m, test, p, "both"))
                           for label, m in others.items()),
                         *((f"Markov order {k}", lambda p, c=chains[k]: markov_log_probs(c, test, p, window, "both"))
                           for k in (2, 6) if k in chains)):
        t = time.perf_counter()
        lp = {g: scorer(p) for g, p in groups.items()}
        lp["upstream"] = lp["upstream"].reshape(*where["upstream"].shape, 4)  # [genes, offsets, 4]
        rows += information_rows(name, lp, where, hit, test, time.perf_counter() - t)
    facts["total_seconds"] = time.perf_counter() - t0
    return pd.DataFrame(rows), facts


# ----- the record ----------------------------------------------------------------------------------------------
def fact_rows(facts: dict) -> list[dict]:
    """The run's facts (counts, costs) as record rows, so the Markdown is rebuilt from the CSV alone."""
    flat = {}
    for k, v in facts.items():
        if isinstance(v, dict):
            flat.update({f"{k}: {c}": n for c, n in v.items()})
        else:
            flat[k] = v
    return [{"section": "run", "scorer": "", "strands": "", "statistic": k, "value": float(v), "lo": float("nan"),
             "hi": float("nan"), "n": "", "seconds": float("nan")} for k, v in flat.items()]


def _ci(v: float, lo: float, hi: float, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def verdict(diff: pd.Series, other: str) -> str:
    """'above' / 'below' / 'level with' ``other``, from the paired bootstrap interval of shipped minus other."""
    if diff.lo > 0:
        word = "above"
    elif diff.hi < 0:
        word = "below"
    else:
        word = "not distinguishable from"
    return f"{word} {other} (difference {_ci(diff.value, diff.lo, diff.hi, True)})"


def to_markdown(record: pd.DataFrame) -> str:
    """The tables and the plain-words verdicts of a record written by :func:`run_benchmark`."""
    run = record[record.section == "run"].set_index("statistic")["value"]
    au = record[record.section == "auroc"]
    df = record[record.section == "auroc difference"]
    shipped = au.scorer.iloc[0]
    key = ["scorer", "strands", "statistic"]
    a = au.set_index(key)
    d = df.set_index(key)
    stop, mis = (f"{x} vs {y}" for x, y in COMPARISONS)
    lines = [f"Held-out genes: {int(run['genes'])} complete genes called by pyrodigal (trained on the training "
             f"90 %) on the test split ({int(run['test_bases']):,} bases, last 5 % of NC_000913.3); "
             f"{int(run['snvs']):,} single-nucleotide changes inside them, of which scored (seeded subsample, "
             f"sites in one gene only): " + ", ".join(f"{c} {int(v)}" for c, v in
                                                     ((s.split(': ')[1], run[s]) for s in run.index
                                                      if s.startswith("sampled: "))) + ". "
             f"Window {int(run['window'])} bases centred on the site. AUROC = P(a damaging change gets a lower "
             f"llr than a synonymous one); 0.5 = chance; [95 % bootstrap]; 'shipped - this' is paired.", "",
             "| scorer | strands | stop-gained vs synonymous | shipped - this | missense vs synonymous | "
             "shipped - this | seconds |", "|---|---|---|---|---|---|---|"]
    for (name, strands), _ in au.groupby(["scorer", "strands"], sort=False):
        cells = []
        for comp in (stop, mis):
            r = a.loc[(name, strands, comp)]
            cells.append(_ci(r.value, r.lo, r.hi))
            dk = (name, strands, f"{comp}: shipped model minus this")
            cells.append(_ci(d.loc[dk].value, d.loc[dk].lo, d.loc[dk].hi, True) if dk in d.index else "-")
        lines.append(f"| {name} | {strands} | {' | '.join(cells)} | {a.loc[(name, strands, stop)].seconds:.0f} |")
    lines += ["", "**Where the shipped model stands**:"]
    for comp in (stop, mis):
        chains = au[au.scorer.str.startswith("Markov") & (au.statistic == comp)]
        best = chains.loc[chains.value.idxmax()]
        ar = au[au.scorer.str.startswith("AR") & (au.statistic == comp)]
        mine = a.loc[(shipped, "both", comp)]
        text = (f"- {comp}: the shipped model's AUROC {_ci(mine.value, mine.lo, mine.hi)} is "
                + verdict(d.loc[(best.scorer, best.strands, f"{comp}: shipped model minus this")],
                          f"the best Markov chain ({best.scorer}, {best.strands}, {best.value:.3f})"))
        if len(ar):
            best_ar = ar.loc[ar.value.idxmax()]
            text += " and " + verdict(d.loc[(best_ar.scorer, best_ar.strands, f"{comp}: shipped model minus this")],
                                      f"the AR model of the same size ({best_ar.scorer}, {best_ar.strands}, "
                                      f"{best_ar.value:.3f})")
        lines.append(text + ".")
    eq = record[record.section == "equal compute"]
    for comp in (stop, mis):
        for _, r in eq[eq.statistic.str.startswith(comp)].iterrows():
            other = r.statistic.split(": ", 1)[1].removesuffix(" minus this")
            mine = a.loc[(other, "both", comp)]
            lines.append(f"- {comp}, at equal training compute: {other} {_ci(mine.value, mine.lo, mine.hi)} is "
                         + verdict(r, f"{r.scorer} ({r.strands})") + ".")
    info = record[record.section == "information"]
    if len(info):
        scorers = list(dict.fromkeys(info.scorer))
        t = info.pivot(index="statistic", columns="scorer", values="value")
        order = list(dict.fromkeys(info.statistic))
        lines += ["", f"Per-base information (bits, 2 - entropy of p(base | rest), both strands) and surprisal "
                      f"(-log2 p(reference base)); SD cores ({', '.join(SD_CORES)}) found in -15..-5 of "
                      f"{100 * run['sd_fraction']:.0f} % of the genes.", "",
                  "| statistic | " + " | ".join(scorers) + " |", "|---" * (len(scorers) + 1) + "|"]
        lines += [f"| {s} | " + " | ".join(f"{t.loc[s, c]:.4f}" for c in scorers) + " |" for s in order]
    cost = (f"Cost on a shared, busy 2-core CPU (other jobs running): {run['total_seconds'] / 60:.0f} min for this "
            "record")
    if "ar_train_seconds" in run.index:
        cost += (f", not counting the AR baseline's training ({run['ar_train_seconds'] / 60:.0f} min for "
                 f"{int(run['ar_steps'])} steps, once; reused from its run folder afterwards"
                 + (f"; the equal-compute MDLM's {run['mdlm_train_seconds'] / 60:.0f} min likewise"
                    if "mdlm_train_seconds" in run.index else "") + ")")
    lines += ["", cost + "."]
    return "\n".join(lines)


def parse_models(specs: list[str]) -> dict[str, str]:
    """``LABEL=CKPT`` arguments -> {label: checkpoint}.

    >>> parse_models(["chain 512=runs/x/last.ckpt"])
    {'chain 512': 'runs/x/last.ckpt'}
    """
    bad = [s for s in specs if "=" not in s]
    if bad:
        raise SystemExit(f"--model takes LABEL=CKPT, got {bad}")
    return dict(s.split("=", 1) for s in specs)


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--per-class", type=int, default=500, help="variants scored per class (seeded subsample)")
    ap.add_argument("--max-order", type=int, default=10, help="Markov chains of order 0..this")
    ap.add_argument("--ic-sites", type=int, default=1500, help="random bases inside and outside genes (each)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ar-run", type=Path, default=Path("runs/variant_effects/ecoli_ar_seed0"),
                    help="run folder of the AR baseline (trained there when it holds no checkpoint); 'none': no AR "
                         "rows")
    ap.add_argument("--ar-steps", type=int, default=600, help="training steps of the AR (and equal-compute MDLM) run")
    ap.add_argument("--mdlm-run", type=Path, default=Path("runs/variant_effects/ecoli_mdlm_seed0"),
                    help="run folder of an MDLM trained like the AR baseline (trained there when empty); "
                         "'none' skips the equal-compute row")
    ap.add_argument("--model", nargs="*", default=[], metavar="LABEL=CKPT",
                    help="more models scored like the shipped one (a shipped name or a checkpoint), one row each")
    ap.add_argument("--out", type=Path, default=HERE / "variant_effects.csv")
    ap.add_argument("--table-only", action="store_true", help="rebuild the Markdown from the CSV record")
    args = ap.parse_args()
    if args.table_only:
        record = pd.read_csv(args.out)
    else:
        table, facts = run_benchmark(args.per_class, args.max_order, args.ic_sites, args.n_boot, args.seed,
                                     None if str(args.ar_run) == "none" else args.ar_run, args.ar_steps,
                                     mdlm_run=None if str(args.mdlm_run) == "none" else args.mdlm_run,
                                     extra=parse_models(args.model))
        facts["per_class"], facts["n_boot"], facts["seed"] = args.per_class, args.n_boot, args.seed
        record = pd.concat([table, pd.DataFrame(fact_rows(facts))], ignore_index=True)
        record.to_csv(args.out, index=False)
    md = to_markdown(record)
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
