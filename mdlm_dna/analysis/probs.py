"""p(base at i | every other base): one forward pass with only position i masked.

For a masked diffusion model (MDLM, SEDD, D3PM) the denoiser's prediction at the single masked position of
an otherwise clean window *is* the model's conditional p(x_i | x_{-i}) (exact when the network ignores the
time, as the shipped models do; a time-conditioned network is given the noise level at which one position of
the window is masked on average, 1 - alpha(t) = 1 / L). SEDD's concrete scores at that position are
normalised over A, C, G, T, which gives the same conditional. For the AR baseline the conditional is exact by
the chain rule: p(x_i = b | x_{-i}) is proportional to p(window with b at i), four likelihoods of the window
(4 forward passes per position instead of one).

Windows. Each position is predicted in its own window of the training length centred on it, shifted (not
truncated) at the ends of the sequence: the position is as central as it can be, whatever the sequence's
length (a window of even length W puts it at index W // 2). A sequence shorter than the window is one window.
The reverse strand reads the same window, reverse-complemented, so a strand-symmetric model (Caduceus-PS)
gives both strands exactly the same prediction. Rows of equal window length are batched; the cost
is one network row per position (four for AR), per strand.

N bases are given as context (as in training) and get NaN rows.

    >>> from mdlm_dna import DiffusionLM
    >>> model = DiffusionLM.from_pretrained("ecoli")
    >>> p = probs(model, ["ACGTACGT" * 40])
    >>> p.shape, bool(np.allclose(p.sum(-1), 1))   # rows sum to 1
    ((1, 320, 4), True)
    >>> [a.shape for a in probs(model, ["ACGT", "ACGTAC"])]     # unequal lengths: a list of arrays
    [(4, 4), (6, 4)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.protocols import LanguageModel

Strands = Literal["forward", "reverse", "both"]
NUM_BASES = 4
COMPLEMENT = np.array([3, 2, 1, 0])  # A C G T -> T G C A (ids 0..3)


@dataclass
class Sites:
    """Rows to predict: position ``site`` of the window ``source[start : start + length]``.

    ``sources`` are id arrays (uint8 or int64); a row refers to one by index, so a long sequence is stored once
    however many of its positions are asked for."""

    sources: list[np.ndarray]
    src: np.ndarray  # [R] index into sources
    start: np.ndarray  # [R] window start within the source
    length: np.ndarray  # [R] window length
    site: np.ndarray  # [R] the masked position, within the window

    def __len__(self) -> int:
        return len(self.src)


def centred_windows(n: int, positions: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, site-in-window) of the ``window``-long window centred on each position of an n-long sequence,
    shifted to lie inside it; the whole sequence when it is shorter.

    >>> centred_windows(10, np.array([0, 5, 9]), 4)
    (array([0, 3, 6]), array([0, 2, 3]))
    """
    positions = np.asarray(positions, dtype=np.int64)
    w = min(int(window), int(n))
    start = np.clip(positions - w // 2, 0, n - w)
    return start, positions - start


def check_dna(model: LanguageModel) -> None:
    if model.is_text:
        raise ConfigError("per-base probabilities need a DNA model; this one reads text")
    if model.objective_name not in ("mdlm", "sedd", "d3pm", "ar"):
        raise ConfigError(f"per-base probabilities need a masked diffusion or AR objective, not "
                          f"{model.objective_name!r}")


def label_tensor(model: LanguageModel, label: str | int | None) -> int | None:
    """The class index a class-conditional model is asked about (None: the unconditional model)."""
    if label is None:
        return None
    if model.objective_name == "ar":
        raise ConfigError("label= needs a class-conditional diffusion model; this model is AR")
    from mdlm_dna.data.labelled import label_index

    return label_index(model.config, label)


def one_masked_time(objective: torch.nn.Module, length: int) -> torch.Tensor:
    """The time t at which 1 - alpha(t) = 1 / length (one of ``length`` positions masked on average), by
    bisection on the schedule; only a time-conditioned network reads it."""
    lo, hi = torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    target = 1.0 / max(int(length), 1)
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(objective.schedule.one_minus_alpha(mid)) < target:
            lo = mid
        else:
            hi = mid
    return hi


def _batch_ids(sites: Sites, rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([
        sites.sources[sites.src[r]][sites.start[r] : sites.start[r] + sites.length[r]] for r in rows
    ]).astype(np.int64))


@torch.no_grad()
def site_log_probs(model: LanguageModel, sites: Sites, label: str | int | None = None, batch_size: int = 128,
                   progress: bool | None = None) -> np.ndarray:
    """[R, 4] float64 log p(base | the rest of the window) at each row's site (natural log, over A, C, G, T).

    The low-level call behind :func:`probs`, ISM, dependency maps and variant effects: any windows, any sites."""
    from mdlm_dna.diffusion.samplers import is_time_conditioned, progress_bar

    check_dna(model)
    cls = label_tensor(model, label)
    out = np.full((len(sites), NUM_BASES), np.nan)
    if len(sites) == 0:
        return out
    ar = model.objective_name == "ar"
    per_row = NUM_BASES if ar else 1
    step = max(1, int(batch_size) // per_row)
    jobs = []
    for n in np.unique(sites.length):
        rows = np.flatnonzero(sites.length == n)
        jobs += [rows[b : b + step] for b in range(0, len(rows), step)]
    timed = bool(is_time_conditioned(model.objective))
    times: dict[int, torch.Tensor] = {}
    for rows in progress_bar(jobs, progress and len(jobs) > 1, desc="positions", unit="batch"):
        x = _batch_ids(sites, rows).to(model.device)
        site = torch.from_numpy(sites.site[rows]).to(model.device)
        if ar:
            lp = _ar_site_log_probs(model.objective, x, site)
        else:
            n = x.shape[1]
            if n not in times:
                times[n] = one_masked_time(model.objective, n) if timed else torch.zeros(1, dtype=torch.float64)
            t = times[n].to(model.device, torch.float32).expand(len(rows))
            xt = x.clone()
            xt[torch.arange(len(rows)), site] = model.objective.mask_id
            labels = None if cls is None else torch.full((len(rows),), cls, dtype=torch.long, device=model.device)
            logits = model.objective.denoiser_logits(xt, t, labels)
            picked = logits[torch.arange(len(rows)), site, :NUM_BASES].double()
            lp = torch.log_softmax(picked, dim=-1)
        out[rows] = lp.cpu().numpy()
    return out


def _ar_site_log_probs(objective: torch.nn.Module, x: torch.Tensor, site: torch.Tensor) -> torch.Tensor:
    """Exact log p(x_i = b | x_{-i}) for an AR model: the window's log-likelihood with each base b at i,
    normalised over b (the terms before i are the same for every b and cancel)."""
    B, n = x.shape
    variants = x[:, None, :].expand(B, NUM_BASES, n).clone()
    variants[torch.arange(B), :, site] = torch.arange(NUM_BASES, device=x.device)
    flat = variants.reshape(B * NUM_BASES, n)
    logp = objective.log_probs(flat).double().gather(-1, flat[..., None]).squeeze(-1)  # [4B, n]
    after = torch.arange(n, device=x.device)[None, :] >= site.repeat_interleave(NUM_BASES)[:, None]
    joint = torch.where(after, logp, torch.zeros_like(logp)).sum(-1).reshape(B, NUM_BASES)
    return torch.log_softmax(joint, dim=-1)


def positions_log_probs(model: LanguageModel, seq_ids: np.ndarray, positions: np.ndarray, strands: Strands = "forward",
                        label: str | int | None = None, batch_size: int = 128,
                        progress: bool | None = None) -> np.ndarray:
    """[P, 4] log-probabilities at ``positions`` of one id sequence, each in the window centred on it.

    ``strands="both"``: the mean of the forward probabilities and the reverse-complement strand's (complemented
    and mapped back), returned as its log; "reverse": the reverse-complement strand's alone. N positions: NaN."""
    return _many_log_probs(model, [seq_ids], [positions], strands, label, batch_size, progress)[0]


def _many_log_probs(model: LanguageModel, seqs: list[np.ndarray], positions: list[np.ndarray], strands: Strands,
                    label: str | int | None, batch_size: int, progress: bool | None) -> list[np.ndarray]:
    if strands not in ("forward", "reverse", "both"):
        raise ConfigError(f"strands must be forward, reverse or both, got {strands!r}")
    window = model.seq_len
    sources, src, start, length, site, owner = [], [], [], [], [], []
    for k, (ids, pos) in enumerate(zip(seqs, positions)):
        ids = np.asarray(ids)
        pos = np.asarray(pos, dtype=np.int64)
        known = np.flatnonzero(ids[pos] < NUM_BASES)  # N (and anything else) is context only: NaN rows
        keep = pos[known]
        n = len(ids)
        fwd_start, fwd_site = centred_windows(n, keep, window)
        w = min(window, n)
        for strand in (("forward", "reverse") if strands == "both" else (strands,)):
            if strand == "forward":
                sources.append(ids)
                s, local = fwd_start, fwd_site
            else:  # the same window read on the other strand: a strand-symmetric model agrees exactly
                sources.append(np.where(ids < NUM_BASES, 3 - ids, ids)[::-1].copy())
                s, local = n - w - fwd_start, w - 1 - fwd_site
            src.append(np.full(len(keep), len(sources) - 1))
            start.append(s)
            length.append(np.full(len(keep), w))
            site.append(local)
            owner.append((k, strand, known))
    sites = Sites(sources, *(np.concatenate(a).astype(np.int64) if a else np.zeros(0, np.int64)
                             for a in (src, start, length, site)))
    lp = site_log_probs(model, sites, label, batch_size, progress)
    out = [np.full((len(p), NUM_BASES), np.nan) for p in positions]
    prob_sum = [np.zeros((len(p), NUM_BASES)) for p in positions]
    offset = 0
    for k, strand, known in owner:  # rows come back in the order they were asked for
        rows = lp[offset : offset + len(known)]
        offset += len(known)
        if strand == "reverse":
            rows = rows[:, COMPLEMENT]
        prob_sum[k][known] += np.exp(rows)
    count = 2.0 if strands == "both" else 1.0
    for k, _, known in owner[:: 2 if strands == "both" else 1]:
        out[k][known] = np.log(prob_sum[k][known] / count)
    return out


def probs(model: LanguageModel, seqs: Sequence[str], strands: Strands = "forward", batch_size: int = 128,
          progress: bool | None = None, label: str | int | None = None) -> np.ndarray | list[np.ndarray]:
    """p(base at i | every other base) for every position of every sequence, float64 over A, C, G, T.

    One array [N, L, 4] when all sequences have the same length, else a list of [L_i, 4] arrays (in input
    order). Rows sum to 1; N bases get NaN rows. ``strands``: forward, reverse (the reverse-complement strand's
    prediction, complemented and mapped back) or both (the mean of the two). ``label``: a class of a
    class-conditional model. ``batch_size``: network rows per forward pass."""
    encoded = [np.asarray(ids, dtype=np.int64) for ids in model._encode_all(seqs)]
    lps = _many_log_probs(model, encoded, [np.arange(len(ids)) for ids in encoded], strands, label, batch_size,
                          progress)
    ps = [np.exp(lp) for lp in lps]
    return np.stack(ps) if len({len(p) for p in ps}) == 1 else ps
