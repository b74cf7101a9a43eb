"""Zero-shot variant effects: a VCF (or a table) and the reference FASTA in, one scored row per ALT allele out.

    llr = log p(ALT) / p(REF)        (natural log; negative: the model finds the ALT allele less likely)

- SNVs: the site masked alone in a window of the model's training length centred on it (shifted, not
  truncated, at a contig end), llr = log p(alt | rest) - log p(ref | rest) (GPN's score; exact for AR models;
  ``strands="both"``: from the mean of the two strands' probabilities).
- Multi-base substitutions and indels: the difference of the window's NELBO, ref minus alt, each a Monte-Carlo
  estimate of -log p with ``t_samples`` draws under common random numbers (see ``DiffusionLM.score``); for an AR
  model both are exact log-likelihoods, so the llr is exact. The window holds the REF allele near its centre and
  is short enough that the ALT window still fits the training length.

Every input row comes back, in order, with a ``status``: ``scored``, or why not (``symbolic``, ``not_acgtn``,
``no_alt``, ``no_chrom``, ``n_in_reference``, ``too_long``, ``ref_mismatch`` when ``on_mismatch="drop"``) and a
``note`` in words. REF is checked against the FASTA (lower case accepted, ``chr`` prefixes matched); mismatches
are one error naming the first few unless ``on_mismatch="drop"``.

    >>> from pathlib import Path
    >>> from mdlm_dna import DiffusionLM
    >>> model = DiffusionLM.from_pretrained("ecoli")
    >>> _ = Path("genome.fa").write_text(">chr1\\n" + "TTGACAATTAATCATCGGCTCGTATAATGTGTGG" * 8 + "\\n")
    >>> header = "##fileformat=VCFv4.2\\n#CHROM\\tPOS\\tID\\tREF\\tALT\\tQUAL\\tFILTER\\tINFO\\n"
    >>> records = ["chr1\\t4\\trs1\\tA\\tG\\t.\\t.\\t.", "chr1\\t9\\trs2\\tT\\t<DEL>\\t.\\t.\\t."]
    >>> _ = Path("calls.vcf").write_text(header + "\\n".join(records) + "\\n")
    >>> v = variant_effects(model, "calls.vcf", fasta="genome.fa")
    >>> v[["id", "kind", "status"]].values.tolist()
    [['rs1', 'snv', 'scored'], ['rs2', 'indel', 'symbolic']]
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mdlm_dna.analysis.probs import Strands, _many_log_probs
from mdlm_dna.analysis.vcf import read_variants
from mdlm_dna.utils.errors import ConfigError, DataError
from mdlm_dna.utils.protocols import LanguageModel

BASE_ID = {b: i for i, b in enumerate("ACGTN")}
OUT_COLUMNS = ["chrom", "pos", "id", "ref", "alt", "kind", "llr", "p_ref", "p_alt", "method", "status", "note"]
SHOWN_MISMATCHES = 3


def open_fasta(fasta: str | Path):
    """A pyfaidx index of the reference (built next to it on first use); a clear error when it cannot be read."""
    from pyfaidx import Fasta, FastaIndexingError

    path = Path(fasta)
    if not path.is_file():
        raise DataError(f"FASTA {path} does not exist")
    try:
        return Fasta(str(path), as_raw=True, sequence_always_upper=True, rebuild=False)
    except (FastaIndexingError, ValueError, OSError) as e:
        raise DataError(f"FASTA {path} cannot be indexed ({e}); a bgzipped FASTA needs `bgzip`, "
                        f"a plain gzip one must be decompressed") from None


def match_chromosomes(names: list[str], contigs: list[str]) -> dict[str, str | None]:
    """Each variant chromosome name -> the FASTA contig it means: exact, else with or without a ``chr`` prefix.

    >>> match_chromosomes(["chr1", "2", "X"], ["1", "chr2"])
    {'chr1': '1', '2': 'chr2', 'X': None}
    """
    have = set(contigs)
    out: dict[str, str | None] = {}
    for name in names:
        bare = name[3:] if name.lower().startswith("chr") else name
        out[name] = next((c for c in (name, bare, f"chr{bare}", f"Chr{bare}", f"CHR{bare}") if c in have), None)
    return out


def allele_problem(ref: str, alt: str) -> tuple[str, str] | None:
    """(status, note) when the allele pair cannot be scored as sequence; None when it can."""
    if ref in (".", "") or ref.startswith("<"):
        return "not_acgtn", f"REF {ref!r} is not a sequence (VCF REF holds at least one base)"
    if alt in (".", ""):
        return "no_alt", "no ALT allele (monomorphic record)"
    if alt.startswith("<") or alt == "*" or "[" in alt or "]" in alt or alt.startswith(".") or alt.endswith("."):
        return "symbolic", f"symbolic ALT {alt!r} (structural variant, breakend or overlapping deletion) is not scored"
    bad = set((ref + alt).upper()) - set("ACGTN")
    if bad:
        return "not_acgtn", f"allele holds {''.join(sorted(bad))!r}: only A C G T N alleles are scored"
    if "N" in alt.upper():
        return "not_acgtn", "ALT holds N (an unknown base): not scored"
    if ref.upper() == alt.upper():
        return "no_alt", "ALT equals REF"
    return None


def check_rows(table: pd.DataFrame, where: str) -> None:
    """A DataError naming the first row with a missing chrom / pos / ref / alt or a ``pos`` that is not a whole
    number >= 1 (a DataFrame from Python: ``pos=100.5`` or ``-5`` must not be rounded or wrap around the contig).

    >>> check_rows(pd.DataFrame({"chrom": ["1"], "pos": [0], "ref": ["A"], "alt": ["C"]}), "t")
    Traceback (most recent call last):
    mdlm_dna.utils.errors.DataError: t, row 1: pos '0' is not a whole number >= 1 (positions are 1-based)
    """
    rows = table["line"].to_numpy() if "line" in table else np.arange(1, len(table) + 1)
    what = "line" if "line" in table else "row"
    for col in ("chrom", "pos", "ref", "alt"):
        missing = table[col].isna().to_numpy()
        if missing.any():
            raise DataError(f"{where}, {what} {rows[missing.argmax()]}: no {col} value")
    pos = pd.to_numeric(table["pos"], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(pos) & (pos >= 1) & (pos == np.floor(pos)))
    if bad.any():
        k = int(bad.argmax())
        raise DataError(f"{where}, {what} {rows[k]}: pos {str(table['pos'].iloc[k])!r} is not a whole number >= 1 "
                        f"(positions are 1-based)")


def kind_of(ref: str, alt: str) -> str:
    if len(ref) == len(alt):
        return "snv" if len(ref) == 1 else "mnv"
    return "indel"


def _window(pos0: int, span: int, width: int, contig_len: int) -> tuple[int, int]:
    """[start, end) of a ``width``-long window holding [pos0, pos0 + span) near its centre, inside the contig."""
    w = min(width, contig_len)
    start = pos0 + span // 2 - w // 2
    return int(np.clip(start, 0, contig_len - w)), w


def _ids(text: str) -> np.ndarray:
    return np.array([BASE_ID.get(c, 4) for c in text], dtype=np.int64)


def variant_effects(model: LanguageModel, variants: str | Path | pd.DataFrame, fasta: str | Path,
                    strands: Strands = "forward", on_mismatch: Literal["error", "drop"] = "error",
                    t_samples: int = 16, seed: int = 0, label: str | int | None = None, batch_size: int = 128,
                    progress: bool | None = None) -> pd.DataFrame:
    """One row per ALT allele of ``variants`` (a VCF, a table, or a DataFrame with chrom, pos, ref, alt), in
    order: chrom, pos, id, ref, alt, kind (snv | mnv | indel), llr, p_ref, p_alt (SNVs), method, status, note."""
    if on_mismatch not in ("error", "drop"):
        raise ConfigError(f"on_mismatch must be 'error' or 'drop', got {on_mismatch!r}")
    if strands not in ("forward", "reverse", "both"):
        raise ConfigError(f"strands must be forward, reverse or both, got {strands!r}")
    where = str(variants) if not isinstance(variants, pd.DataFrame) else "the variants table"
    table = variants.copy() if isinstance(variants, pd.DataFrame) else read_variants(variants)
    missing = {"chrom", "pos", "ref", "alt"} - set(table.columns)
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(sorted(missing))}")
    if table.empty:
        raise DataError(f"{where}: no variants to score")
    check_rows(table, where)
    ref_genome = open_fasta(fasta)
    contigs = list(ref_genome.keys())
    chrom_map = match_chromosomes(sorted({str(c) for c in table["chrom"]}), contigs)
    if not any(chrom_map.values()):
        raise DataError(f"{where}: none of its chromosomes ({', '.join(list(chrom_map)[:5])}) is in {fasta} "
                        f"(which has {', '.join(contigs[:5])}{', ...' if len(contigs) > 5 else ''}): wrong reference?")

    out = pd.DataFrame({
        "chrom": table["chrom"].astype(str).to_numpy(), "pos": table["pos"].astype(np.int64).to_numpy(),
        "id": table["id"].astype(str).to_numpy() if "id" in table else ".",
        "ref": table["ref"].astype(str).to_numpy(), "alt": table["alt"].astype(str).to_numpy(),
    })
    out["kind"] = [kind_of(r, a) for r, a in zip(out["ref"], out["alt"])]
    out["llr"], out["p_ref"], out["p_alt"] = np.nan, np.nan, np.nan
    out["method"], out["status"], out["note"] = "", "scored", ""
    lengths = {c: len(ref_genome[c]) for c in contigs}
    mismatches, snvs, others = [], [], []
    for i, (chrom, pos, ref, alt) in enumerate(zip(out["chrom"], out["pos"], out["ref"], out["alt"])):
        problem = allele_problem(ref, alt)
        contig = chrom_map.get(chrom)
        if problem is None and contig is None:
            problem = "no_chrom", f"chromosome {chrom!r} is not in the FASTA"
        if problem is None:
            clen, pos0, ref_u = lengths[contig], int(pos) - 1, ref.upper()
            found = ref_genome[contig][pos0 : pos0 + len(ref)] if pos0 < clen else ""
            if pos0 + len(ref) > clen:
                mismatches.append(i)
                problem = "ref_mismatch", f"{chrom}:{pos} is past the end of {contig} (length {clen:,})"
            elif "N" in found or "N" in ref_u:
                problem = "n_in_reference", f"the reference has N at {chrom}:{pos} ({found}): not scored"
            elif found != ref_u:
                mismatches.append(i)
                problem = "ref_mismatch", f"REF {ref} but the FASTA has {found} at {chrom}:{pos}"
            elif len(ref) > model.seq_len // 2 or len(alt) > model.seq_len // 2:
                problem = "too_long", f"alleles longer than half the model's window ({model.seq_len}) are not scored"
        if problem is not None:
            out.loc[i, ["status", "note"]] = problem
            continue
        (snvs if out.at[i, "kind"] == "snv" else others).append((i, contig, int(pos) - 1))
    if mismatches and on_mismatch == "error":
        shown = "; ".join(str(out.at[i, "note"]) for i in mismatches[:SHOWN_MISMATCHES])
        raise DataError(f"{where}: {len(mismatches)} of {len(out)} variants do not match {fasta} ({shown}"
                        f"{'; ...' if len(mismatches) > SHOWN_MISMATCHES else ''}): wrong reference build? "
                        f"on_mismatch=drop reports them as ref_mismatch and scores the rest")
    if mismatches:
        warnings.warn(f"{len(mismatches)} variants do not match the reference: reported with status ref_mismatch, "
                      f"not scored", stacklevel=2)
    _score_snvs(model, out, snvs, ref_genome, lengths, strands, label, batch_size, progress)
    _score_others(model, out, others, ref_genome, lengths, strands, t_samples, seed, label, batch_size, progress)
    return out[OUT_COLUMNS]


def _score_snvs(model, out, snvs, ref_genome, lengths, strands, label, batch_size, progress) -> None:
    if not snvs:
        return
    windows, sites = [], []
    for _, contig, pos0 in snvs:
        start, w = _window(pos0, 1, model.seq_len, lengths[contig])
        windows.append(_ids(ref_genome[contig][start : start + w]))
        sites.append(np.array([pos0 - start]))
    lps = _many_log_probs(model, windows, sites, strands, label, batch_size, progress)
    rows = [i for i, _, _ in snvs]
    ref = np.array([BASE_ID[out.at[i, "ref"].upper()] for i in rows])
    alt = np.array([BASE_ID[out.at[i, "alt"].upper()] for i in rows])
    lp = np.concatenate(lps)
    k = np.arange(len(rows))
    out.loc[rows, "llr"] = lp[k, alt] - lp[k, ref]
    out.loc[rows, "p_ref"] = np.exp(lp[k, ref])
    out.loc[rows, "p_alt"] = np.exp(lp[k, alt])
    out.loc[rows, "method"] = "masked site" + (" (exact, AR)" if model.objective_name == "ar" else "")


def _score_others(model, out, others, ref_genome, lengths, strands, t_samples, seed, label, batch_size,
                  progress) -> None:
    if not others:
        return
    ref_seqs, alt_seqs = [], []
    for i, contig, pos0 in others:
        ref, alt = out.at[i, "ref"].upper(), out.at[i, "alt"].upper()
        width = model.seq_len - max(0, len(alt) - len(ref))  # the ALT window must fit the training length too
        start, w = _window(pos0, len(ref), width, lengths[contig])
        window = ref_genome[contig][start : start + w]
        at = pos0 - start
        ref_seqs.append(window)
        alt_seqs.append(window[:at] + alt + window[at + len(ref) :])
    seqs = ref_seqs + alt_seqs
    if strands != "forward":
        rc = [s[::-1].translate(str.maketrans("ACGTN", "TGCAN")) for s in seqs]
        seqs = seqs + rc if strands == "both" else rc
    nats = model.score(seqs, t_samples=t_samples, batch_size=batch_size, seed=seed, progress=progress,
                       label=label)["nelbo_nats"].to_numpy()
    nats = nats.reshape(-1, 2, len(others)).mean(axis=0)  # [ref | alt, variant], strands averaged
    rows = [i for i, _, _ in others]
    out.loc[rows, "llr"] = nats[0] - nats[1]
    exact = model.objective_name == "ar"
    out.loc[rows, "method"] = "window log-likelihood difference (exact, AR)" if exact else \
        f"window NELBO difference ({t_samples} draws, common random numbers)"
