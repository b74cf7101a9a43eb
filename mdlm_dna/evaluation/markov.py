"""Order-k Markov chains over A/C/G/T: the baseline every DNA language model has to beat.

A chain of order k predicts a base from the k bases before it, with add-alpha smoothed counts of the
training split. Its test bits/base is the yardstick for a model's NELBO (a model above the order-2
chain has learned less than dinucleotide statistics), and its samples are the baseline rows of the
sample-quality benchmark: they have the right k-mer spectrum up to k + 1 and nothing beyond, so they
show which sample metrics need more than short-range statistics (long ORFs, codon bias).

The first k bases of a sequence are predicted (and sampled) with the lower-order chains of the same
fit (base i from the i bases before it), so a score is the exact log-likelihood of the whole sequence
and a sampled prefix follows the training k-mer frequencies, i.e. the chain's stationary distribution.
Positions whose base or context holds N (id 4) are skipped when fitting and scoring.

    python benchmarks/markov_baselines.py      # the table of test bits/base for k = 0..8 on E. coli
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mdlm_dna.data.tokenizers import BASES, SOFT_MASK_BIT
from mdlm_dna.evaluation.metrics import SeqLike, SeqsLike, reverse_complement_ids, to_ids

ALPHAS = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def context_counts(seqs: SeqLike | SeqsLike, order: int) -> np.ndarray:
    """Counts [4**order, 4]: row = the ``order`` preceding bases (base-4 code, first most significant), column = next.

    Only windows of ``order + 1`` A/C/G/T bases are counted (an N anywhere in the window skips it).
    """
    counts = np.zeros(4 ** (order + 1), dtype=np.int64)
    for r in to_ids(seqs):
        n = len(r) - order
        if n <= 0:
            continue
        bad = r >= 4
        code = np.zeros(n, dtype=np.int64)
        invalid = np.zeros(n, dtype=bool)
        clean = np.where(bad, 0, r)
        for j in range(order + 1):
            code = code * 4 + clean[j : j + n]
            invalid |= bad[j : j + n]
        counts += np.bincount(code[~invalid], minlength=4 ** (order + 1))
    return counts.reshape(4**order, 4)


@dataclass
class MarkovChain:
    """An order-``order`` chain: ``counts[j]`` [4**j, 4] for every order j <= ``order`` (j < order for the prefix)."""

    order: int
    alpha: float = 1.0
    counts: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def fit(cls, seqs: SeqLike | SeqsLike, order: int, alpha: float = 1.0) -> MarkovChain:
        """Counts of (j+1)-mers, j = 0..order, over ``seqs`` (strings or token ids; N-containing windows skipped)."""
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        seqs = to_ids(seqs)
        return cls(order=order, alpha=float(alpha), counts=[context_counts(seqs, j) for j in range(order + 1)])

    @classmethod
    def fit_select_alpha(cls, train: SeqLike | SeqsLike, validation: SeqLike | SeqsLike, order: int,
                         alphas: Iterable[float] = ALPHAS) -> tuple[MarkovChain, dict[float, float]]:
        """Fit on ``train``, keep the alpha with the lowest validation bits/base; returns (chain, {alpha: bits})."""
        chain = cls.fit(train, order)
        val = context_counts(validation, order)  # the first k bases of a long split change nothing measurable
        scores = {}
        for a in alphas:
            chain.alpha = float(a)
            scores[float(a)] = chain._bits_from_counts(val)
        chain.alpha = min(scores, key=scores.get)
        return chain, scores

    def log2_probs(self, j: int | None = None) -> np.ndarray:
        """log2 P(next base | context) [4**j, 4] of the order-j table (default: the chain's own order)."""
        c = self.counts[self.order if j is None else j].astype(np.float64) + self.alpha
        return np.log2(c / c.sum(axis=1, keepdims=True))

    def probs(self, j: int | None = None) -> np.ndarray:
        """P(next base | context) [4**j, 4]; rows of unseen contexts are uniform (alpha > 0) or NaN (alpha = 0)."""
        c = self.counts[self.order if j is None else j].astype(np.float64) + self.alpha
        return c / c.sum(axis=1, keepdims=True)

    def _bits_from_counts(self, counts: np.ndarray) -> float:
        """bits/base of the positions with a full context, from their context counts [4**k, 4] (alpha selection)."""
        n = counts.sum()
        return float(-(counts * self.log2_probs()).sum() / n) if n else float("nan")

    def base_bits(self, ids: np.ndarray) -> np.ndarray:
        """-log2 P(base | the ``order`` bases before it) at every position of one A/C/G/T sequence, its first bases
        from the lower orders: per base what :meth:`score` averages (e.g. to compare windows with a model's).

        >>> chain = MarkovChain.fit(np.array([0, 1, 0, 1, 0, 1]), order=1, alpha=0.0)
        >>> chain.base_bits(np.array([0, 1, 0])).round(3).tolist()  # A from order 0 (half the bases), then certain
        [1.0, -0.0, -0.0]
        """
        ids = np.asarray(ids, dtype=np.int64)
        if (ids > 3).any():
            raise ValueError("MarkovChain.base_bits needs an A/C/G/T sequence (no N)")
        k, n = self.order, len(ids)
        bits = np.empty(n)
        for j in range(min(k, n)):  # the first bases, from the j bases before them
            ctx = int(sum(int(b) * 4 ** (j - 1 - i) for i, b in enumerate(ids[:j])))
            bits[j] = -self.log2_probs(j)[ctx, ids[j]]
        if n > k:
            ctx = np.zeros(n - k, dtype=np.int64)
            for i in range(k):  # the k-mer before each base, oldest digit first
                ctx = ctx * 4 + ids[i : n - k + i]
            bits[k:] = -self.log2_probs()[ctx, ids[k:]]
        return bits

    def score(self, seqs: SeqLike | SeqsLike) -> float:
        """bits/base of ``seqs``: exact -log2 likelihood (prefix from the lower orders) over all A/C/G/T positions."""
        total_bits, total = 0.0, 0
        logp = [self.log2_probs(j) for j in range(self.order + 1)]
        for r in to_ids(seqs):
            head = min(self.order, len(r))
            for j in range(head):  # base j of the sequence, from the j bases before it
                if (r[: j + 1] < 4).all():
                    ctx = 0
                    for b in r[:j]:
                        ctx = ctx * 4 + int(b)
                    total_bits -= logp[j][ctx, r[j]]
                    total += 1
            c = context_counts(r, self.order)
            total_bits -= float((c * logp[self.order]).sum())
            total += int(c.sum())
        return total_bits / total if total else float("nan")

    def sample(self, num: int, length: int, seed: int | np.random.Generator = 0) -> np.ndarray:
        """``num`` sequences of ``length`` ids [num, length]; first bases from the lower orders (stationary start)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        cum = [np.cumsum(self.probs(j), axis=1) for j in range(self.order + 1)]
        u = rng.random((num, length))
        out = np.zeros((num, length), dtype=np.int64)
        ctx = np.zeros(num, dtype=np.int64)
        mod = 4**self.order
        for i in range(length):
            j = min(i, self.order)
            c = cum[j][ctx]
            out[:, i] = np.minimum((u[:, i, None] >= c).sum(axis=1), 3)
            ctx = (ctx * 4 + out[:, i]) % mod if j == self.order else ctx * 4 + out[:, i]
        return out

    def sample_strings(self, num: int, length: int, seed: int | np.random.Generator = 0) -> list[str]:
        """:meth:`sample` decoded to A/C/G/T strings."""
        return ids_to_strings(self.sample(num, length, seed))


def ids_to_strings(ids: np.ndarray | Sequence[np.ndarray]) -> list[str]:
    """Id rows -> strings (A C G T N; anything else -> N)."""
    lut = np.frombuffer(BASES.encode() + b"N" * 251, dtype=np.uint8)
    return [lut[np.minimum(np.asarray(r, dtype=np.int64), 255)].tobytes().decode() for r in ids]


def ecoli_splits(cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """The package's default E. coli split (train / validation / test) as id arrays, via ``load_split_genome``."""
    from omegaconf import OmegaConf

    from mdlm_dna.data.datamodule import load_split_genome
    from mdlm_dna.utils.resolvers import register_resolvers
    from mdlm_dna.utils.resources import config_dir

    register_resolvers()
    g = OmegaConf.to_container(OmegaConf.load(config_dir() / "genome" / "ecoli.yaml"), resolve=True)
    genome, splits = load_split_genome(g, cache_dir)
    return {name: split_ids(genome, ivs) for name, ivs in splits.items()}


def split_ids(genome, intervals) -> np.ndarray | list[np.ndarray]:
    """The ids of a split's intervals (soft-mask bit cleared): one array for one interval, else a list."""
    parts = [np.asarray(genome.ids[iv.start : iv.end]) & ~np.uint8(SOFT_MASK_BIT) for iv in intervals]
    return parts[0] if len(parts) == 1 else parts


def fit_markov_prior(backbone, datamodule) -> None:
    """``model.markov_order``: fit the chain under the network (``models/markov_prior.py``) on the run's training
    split (``prior.strands``: its forward strand, or both), alpha chosen on validation. Nothing to do for a
    backbone without a chain or with a fitted one (a resumed run gets it back from its checkpoint)."""
    prior = getattr(backbone, "prior", None)
    if prior is None or bool(prior.fitted):
        return
    if not hasattr(datamodule, "splits"):
        raise ValueError("model.markov_order needs a genome run: its chain is fitted on the genome's training "
                         f"split, and this run's data ({type(datamodule).__name__}) has none")
    datamodule.setup("fit")
    train, validation = (split_ids(datamodule.genome, datamodule.splits[name]) for name in ("train", "validation"))
    if prior.strands == "both":
        train = [*to_ids(train), *(reverse_complement_ids(r) for r in to_ids(train))]
    chain, _ = MarkovChain.fit_select_alpha(train, validation, prior.order)
    prior.load_chain(chain.probs(), chain.counts[prior.order].sum(axis=1), chain.alpha)
