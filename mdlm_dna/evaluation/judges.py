"""Independent judges of designed DNA: which class does a sequence look like?

A design is only as credible as the judge that scores it, and a judge must not share the generator's
model or features (D-CFG uses no classifier; classifier guidance uses a CNN on masked inputs), so the
judge here is a different model family: a multinomial logistic regression on both-strand k-mer
frequencies (strand-agnostic: a sequence and its reverse complement look the same), trained with
full-batch L-BFGS in float64 on real sequences of each class. Report its accuracy on held-out real
sequences beside any score it gives to designs.
"""

from __future__ import annotations

import numpy as np
import torch

from mdlm_dna.evaluation.metrics import SeqsLike, kmer_spectrum, reverse_complement_ids, to_ids


def kmer_features(seqs: SeqsLike, k: int = 4) -> np.ndarray:
    """Both-strand k-mer frequencies [N, 4^k]; N bases break k-mers (see :func:`kmer_spectrum`)."""
    rows = []
    for r in to_ids(seqs):
        rows.append(0.5 * (kmer_spectrum([r], k) + kmer_spectrum([reverse_complement_ids(r)], k)))
    return np.stack(rows)


class KmerJudge:
    """Logistic regression on k-mer frequencies: ``fit(seqs, labels)``, ``predict``, ``predict_proba``."""

    def __init__(self, k: int = 4, l2: float = 1e-3, classes: list[str] | None = None):
        self.k, self.l2, self.classes = int(k), float(l2), classes

    def fit(self, seqs: SeqsLike, labels: np.ndarray | list[int], num_classes: int | None = None) -> KmerJudge:
        x = torch.tensor(kmer_features(seqs, self.k))
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        n = int(num_classes or (len(self.classes) if self.classes else int(y.max()) + 1))
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        x = (x - self.mu) / self.sd
        self.w = torch.zeros(x.shape[1], n, dtype=torch.float64, requires_grad=True)
        self.b = torch.zeros(n, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([self.w, self.b], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ self.w + self.b, y) + self.l2 * (self.w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    def predict_proba(self, seqs: SeqsLike) -> np.ndarray:
        x = (torch.tensor(kmer_features(seqs, self.k)) - self.mu) / self.sd
        with torch.no_grad():
            return torch.softmax(x @ self.w + self.b, -1).numpy()

    def predict(self, seqs: SeqsLike) -> np.ndarray:
        return self.predict_proba(seqs).argmax(-1)

    def accuracy(self, seqs: SeqsLike, label: int) -> float:
        """Fraction of ``seqs`` assigned to class ``label``."""
        return float((self.predict(seqs) == label).mean())
