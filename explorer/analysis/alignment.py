"""Similarity between layers as researchers report it now, each against its permutation null
(Gröger et al. 2026: raw global scores are inflated by width and depth; the same pair with the
images' correspondence shuffled says what unrelated layers would score).

Measures, on the unit-length pooled features of a seeded sample of at most SAMPLE images (each
needs an S x S matrix; stratified by class where there are labels), following the definitions of
Huh et al. 2024 (platonic-rep's metrics):

- `cka`: linear CKA, the biased HSIC of the two Gram matrices (Kornblith et al. 2019);
- `cknna`: CKA restricted to mutual k-nearest neighbours, with the unbiased HSIC (Huh et al. 2024);
- `mutual_knn`: the mean share of an image's k nearest neighbours the two layers have in common;
- `rsa`: the Spearman correlation of the two layers' correlation-distance dissimilarity matrices
  (their upper triangles).

The null: PERMUTATIONS seeded permutations of the second layer's images; each measure recomputed
from the permuted matrices (O(S^2) each: the Gram, neighbour and rank matrices are permuted, not
recomputed). `calibrated` = (score - null mean) / (1 - null mean): 0 is what unrelated layers
score, 1 identical ones; a score at or below the null's 95th percentile is inside the null. For a
layer of one model against every layer of another, the null of the maximum over those layers
(the same permutations) tests "the most similar layer"."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunked import unit_rows
from .retrieval import stratified_rows

SAMPLE = 500  # images every S x S matrix is built on, at most
KNN = 10  # neighbours of cknna and mutual_knn (platonic-rep's usual k)
PERMUTATIONS = 50  # of the null, per pair of layers
MEASURES = ("cka", "cknna", "mutual_knn", "rsa")


@dataclass
class Prepared:
    """One layer on the sample: its Gram matrix (unit rows), neighbour mask and RDM ranks."""

    gram: np.ndarray  # (S, S) float64
    knn: np.ndarray  # (S, S) bool: row i's k nearest others
    ranks: np.ndarray  # (S, S) float64: ranks of the correlation distances (upper triangle used)


def sample_rows(n: int, labels: np.ndarray | None, size: int = SAMPLE, random_state: int = 0) -> np.ndarray:
    """Sorted rows of the sample: stratified by class with labels, else uniform."""
    if labels is not None:
        return stratified_rows(np.asarray(labels), size, random_state)
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng([random_state, 6]).choice(n, size, replace=False))


def prepare(x: np.ndarray, k: int = KNN) -> Prepared:
    """The sample's matrices of one layer: x is (S, D), the sample's rows."""
    from scipy.stats import rankdata

    u = unit_rows(np.asarray(x, dtype=np.float32), dtype=np.float64)
    gram = u @ u.T
    s = len(u)
    k = min(k, s - 1)
    masked = gram.copy()
    np.fill_diagonal(masked, -np.inf)
    top = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    knn = np.zeros((s, s), dtype=bool)
    knn[np.arange(s)[:, None], top] = True
    c = u - u.mean(1, keepdims=True)
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    rdm = 1.0 - c @ c.T  # correlation distance between images
    iu = np.triu_indices(s, 1)
    ranks = np.zeros((s, s))
    ranks[iu] = rankdata(rdm[iu])
    ranks = ranks + ranks.T
    return Prepared(gram, knn, ranks)


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC, in O(S^2) (the matrix product's sum from row sums)."""
    m = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    value = np.sum(kt * lt.T) + kt.sum() * lt.sum() / ((m - 1) * (m - 2)) - 2 * kt.sum(0) @ lt.sum(1) / (m - 2)
    return float(value / (m * (m - 3)))


def _centred(k: np.ndarray) -> np.ndarray:
    return k - k.mean(0) - k.mean(1)[:, None] + k.mean()


def _cknna_part(ka: np.ndarray, kb: np.ndarray, ma: np.ndarray, mb: np.ndarray) -> float:
    mask = ma & mb
    return hsic_unbiased(np.where(mask, ka, 0.0), np.where(mask, kb, 0.0))


def measures(a: Prepared, b: Prepared, perm: np.ndarray | None = None, self_terms: dict | None = None) -> dict:
    """Every measure of (a, b), b's images permuted by `perm` (None: as they are). `self_terms`
    caches what depends on one layer alone (its centred Gram's norm, its CKNNA self-similarity)."""
    if perm is None:
        gb, mb, rb = b.gram, b.knn, b.ranks
    else:
        gb, mb, rb = b.gram[np.ix_(perm, perm)], b.knn[np.ix_(perm, perm)], b.ranks[np.ix_(perm, perm)]
    terms = self_terms if self_terms is not None else {}
    if "ca" not in terms:
        terms["ca"] = _centred(a.gram)
        terms["cb"] = _centred(b.gram)  # a permutation leaves its norm and self-similarity unchanged
        terms["aa"] = _cknna_part(a.gram, a.gram, a.knn, a.knn)
        terms["bb"] = _cknna_part(b.gram, b.gram, b.knn, b.knn)
        terms["norms"] = np.sqrt(np.sum(terms["ca"] ** 2) * np.sum(terms["cb"] ** 2))
    cka = float(np.sum(terms["ca"] * _centred(gb)) / terms["norms"]) if terms["norms"] > 0 else float("nan")
    denominator = np.sqrt(terms["aa"] * terms["bb"]) + 1e-6  # platonic-rep's guard
    cknna = _cknna_part(a.gram, gb, a.knn, mb) / denominator
    k = max(int(a.knn[0].sum()), 1)
    mutual = float(np.mean((a.knn & mb).sum(1) / k))
    iu = np.triu_indices(len(a.gram), 1)
    rsa = float(np.corrcoef(a.ranks[iu], rb[iu])[0, 1])
    return {"cka": cka, "cknna": float(cknna), "mutual_knn": mutual, "rsa": rsa}


@dataclass(frozen=True)
class PairScores:
    """One pair of layers: each measure's score and its null's draws."""

    score: dict[str, float]
    null: dict[str, np.ndarray]  # (PERMUTATIONS,) per measure

    def row(self, measure: str) -> tuple[float, float, float, float]:
        """(score, null mean, null 95th percentile, calibrated)."""
        s, draws = self.score[measure], self.null[measure]
        mean, p95 = float(np.mean(draws)), float(np.quantile(draws, 0.95))
        calibrated = (s - mean) / (1 - mean) if mean < 1 else float("nan")
        return s, mean, p95, calibrated


def permutations(s: int, count: int = PERMUTATIONS, random_state: int = 0) -> list[np.ndarray]:
    """The null's permutations of the sample: the same for every pair (so the maximum's null is a
    maximum over the same shuffles)."""
    rng = np.random.default_rng([random_state, 7])
    return [rng.permutation(s) for _ in range(count)]


def pair_scores(a: Prepared, b: Prepared, perms: list[np.ndarray]) -> PairScores:
    """Scores of (a, b) and their permutation null."""
    terms: dict = {}
    score = measures(a, b, None, terms)
    draws = [measures(a, b, p, terms) for p in perms]
    return PairScores(score, {m: np.array([d[m] for d in draws]) for m in MEASURES})


def max_null(pairs: list[PairScores], measure: str) -> tuple[float, float, float]:
    """For one layer against several: (the best score, the null's 95th percentile of the maximum
    over those layers under the same permutations, its mean)."""
    best = max(p.score[measure] for p in pairs)
    draws = np.max(np.stack([p.null[measure] for p in pairs]), axis=0)
    return best, float(np.quantile(draws, 0.95)), float(np.mean(draws))
