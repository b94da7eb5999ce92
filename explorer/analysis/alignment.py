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
  (their upper triangles);
- `procrustes`: the angular orthogonal-Procrustes shape distance of Williams et al. 2021, on the raw
  pooled features, each centred and scaled to unit Frobenius norm: arccos of the nuclear norm of
  XᵀY, 0 for the same shape up to rotation, reflection and scale, π/2 at most. It is a distance:
  lower is more similar.

The null: PERMUTATIONS seeded permutations of the second layer's images; each measure recomputed
from the permuted matrices (O(S^2) each: the Gram, neighbour and rank matrices are permuted, not
recomputed). `calibrated` = (score - null mean) / (1 - null mean): 0 is what unrelated layers
score, 1 identical ones; for the distance, calibrated = 1 - distance / null mean. The null's edge
is its 95th percentile (the 5th of a distance). A score is inside the null when its permutation
p-value, (1 + draws at least as similar) / (1 + draws), is above ALPHA. For a layer of one model
against every layer of another, the null of the maximum (of the minimum distance) over those
layers, under the same permutations, tests "the most similar layer".

The interval: BOOTSTRAPS seeded resamples of the sample's images, the same rows for both layers,
each measure recomputed from the resampled matrices (neighbourhoods as found on the whole sample;
pairs of an image with its own copy left out of RSA); low and high are the 2.5th and 97.5th
percentiles, taken relative to the resamples' median and placed at the score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .chunked import unit_rows
from .retrieval import stratified_rows

SAMPLE = 300  # images every S x S matrix is built on, at most (a pair costs about 0.5 s: 100 evaluations)
KNN = 10  # neighbours of cknna and mutual_knn (platonic-rep's usual k)
PERMUTATIONS = 50  # of the null, per pair of layers
BOOTSTRAPS = 50  # resamples of the interval, per pair of layers
MEASURES = ("cka", "cknna", "mutual_knn", "rsa", "procrustes")
DISTANCES = frozenset({"procrustes"})  # lower is more similar
ALPHA = 0.05  # a score whose permutation p-value is above this is inside its null
AUTO_MAX_LAYERS = 16  # "auto" tests every pair against its null up to this many layers (120 pairs, about 30 s)


def nulls_wanted(asked: bool | None, layers: int) -> bool:
    """Whether to test the pairs of `layers` layers against their nulls: as asked, or, asked
    nothing (None), up to AUTO_MAX_LAYERS layers (the pairs grow with the square of the layers)."""
    return asked if asked is not None else layers <= AUTO_MAX_LAYERS


@dataclass
class Prepared:
    """One layer on the sample: its Gram matrix (unit rows), neighbour mask, RDM ranks and shape."""

    gram: np.ndarray  # (S, S) float64
    knn: np.ndarray  # (S, S) bool: row i's k nearest others
    ranks: np.ndarray  # (S, S) float64: ranks of the correlation distances (upper triangle used)
    shape: np.ndarray  # (S, r) float64: the raw features centred, unit Frobenius norm, rotated to r <= S columns


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
    return Prepared(gram, knn, ranks, _shape(np.asarray(x, dtype=np.float64)))


def _shape(x: np.ndarray) -> np.ndarray:
    """x centred and scaled to unit Frobenius norm; wider than tall, rotated onto its S left
    singular directions (U Σ: the same shape, fewer columns)."""
    c = x - x.mean(0)
    norm = np.linalg.norm(c)
    c = c / norm if norm > 0 else c
    if c.shape[1] > c.shape[0]:
        u, sv, _ = np.linalg.svd(c, full_matrices=False)
        c = u * sv
    return c


def nuclear_norm(m: np.ndarray) -> float:
    """The sum of m's singular values, from the eigenvalues of the smaller of m mᵀ and mᵀ m."""
    small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(small), 0, None)).sum())


def procrustes_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Williams et al.'s angular shape distance of two centred, unit-norm (S, r) matrices."""
    return float(np.arccos(np.clip(nuclear_norm(a.T @ b), 0.0, 1.0)))


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC, in O(S^2) (the matrix product's sum from row sums)."""
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    return _hsic_hollow(kt, lt)


def _hsic_hollow(kt: np.ndarray, lt: np.ndarray) -> float:
    """hsic_unbiased of two matrices whose diagonals are already zero."""
    m = kt.shape[0]
    value = np.vdot(kt, lt.T) + kt.sum() * lt.sum() / ((m - 1) * (m - 2)) - 2 * kt.sum(0) @ lt.sum(1) / (m - 2)
    return float(value / (m * (m - 3)))


def _centred(k: np.ndarray) -> np.ndarray:
    return k - k.mean(0) - k.mean(1)[:, None] + k.mean()


def _cknna_part(ka: np.ndarray, kb: np.ndarray, ma: np.ndarray, mb: np.ndarray) -> float:
    """The unbiased HSIC of the two Grams kept where both layers call j a neighbour of i (a
    neighbour mask has no diagonal, so neither has the masked matrix)."""
    mask = ma & mb
    return _hsic_hollow(np.where(mask, ka, 0.0), np.where(mask, kb, 0.0))


def _rows(m: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return m if rows is None else m[rows][:, rows]


def _standard(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / max(float(v.std()), 1e-300)


def _self_terms(a: Prepared, b: Prepared) -> dict:
    """What a permutation of b's images leaves unchanged: a's centred Gram, both Grams' norms,
    each layer's CKNNA with itself, a's standardised distance ranks and b's (a permutation
    only reorders b's ranks, so their mean and spread stay)."""
    s = len(a.gram)
    iu = np.triu_indices(s, 1)
    ca = _centred(a.gram)
    zb = np.zeros((s, s))
    zb[iu] = _standard(b.ranks[iu])
    return {
        "iu": iu,
        "ca": ca,
        "norms": np.sqrt(np.sum(ca**2) * np.sum(_centred(b.gram) ** 2)),
        "aa": _cknna_part(a.gram, a.gram, a.knn, a.knn),
        "bb": _cknna_part(b.gram, b.gram, b.knn, b.knn),
        "za": _standard(a.ranks[iu]),
        "zb": zb + zb.T,
        "k": max(int(a.knn[0].sum()), 1),
    }


def measures(a: Prepared, b: Prepared, perm: np.ndarray | None = None, self_terms: dict | None = None) -> dict:
    """Every measure of (a, b), b's images permuted by `perm` (None: as they are). `self_terms`
    caches what a permutation leaves unchanged (_self_terms), across the calls of one pair."""
    terms = self_terms if self_terms is not None else {}
    if not terms:
        terms.update(_self_terms(a, b))
    gb, mb = _rows(b.gram, perm), _rows(b.knn, perm)
    # <H Ka H, Kb> = <H Ka H, H Kb H>: b's permuted Gram needs no centring
    cka = float(np.vdot(terms["ca"], gb) / terms["norms"]) if terms["norms"] > 0 else float("nan")
    denominator = np.sqrt(terms["aa"] * terms["bb"]) + 1e-6  # platonic-rep's guard
    cknna = _cknna_part(a.gram, gb, a.knn, mb) / denominator
    mutual = float(np.count_nonzero(a.knn & mb) / (len(mb) * terms["k"]))
    i, j = terms["iu"]
    zb = terms["zb"][i, j] if perm is None else terms["zb"][perm[i], perm[j]]
    rsa = float(np.dot(terms["za"], zb) / len(zb))  # Pearson's r of the ranks: Spearman's
    procrustes = procrustes_angle(a.shape, b.shape if perm is None else b.shape[perm])
    return {"cka": cka, "cknna": float(cknna), "mutual_knn": mutual, "rsa": rsa, "procrustes": procrustes}


@dataclass(frozen=True)
class _Resample:
    """What one layer brings to every pair on one bootstrap resample (built once per layer)."""

    gram: np.ndarray  # the resampled Gram
    knn: np.ndarray  # the resampled neighbour mask (rows and columns)
    centred: np.ndarray  # the resampled Gram, centred
    square: float  # the centred Gram's squared norm
    itself: float  # its CKNNA term with itself
    knn_rows: np.ndarray  # the drawn images' own neighbour rows
    shape: np.ndarray  # the drawn rows of its shape, centred and scaled again


def _resample(a: Prepared, rows: np.ndarray) -> _Resample:
    ga, ma = _rows(a.gram, rows), _rows(a.knn, rows)
    ca = _centred(ga)
    return _Resample(ga, ma, ca, np.sum(ca**2), _cknna_part(ga, ga, ma, ma), a.knn[rows], _shape(a.shape[rows]))


def _pair_resampled(a: _Resample, b: _Resample, ranks: tuple[np.ndarray, np.ndarray], k: int) -> dict:
    norms = np.sqrt(a.square * b.square)
    cka = float(np.vdot(a.centred, b.gram) / norms) if norms > 0 else float("nan")
    cknna = _cknna_part(a.gram, b.gram, a.knn, b.knn) / (np.sqrt(a.itself * b.itself) + 1e-6)
    mutual = float(np.count_nonzero(a.knn_rows & b.knn_rows) / (len(a.knn_rows) * k))  # each drawn image's own
    rsa = float(np.corrcoef(*ranks)[0, 1])
    procrustes = procrustes_angle(a.shape, b.shape)
    return {"cka": cka, "cknna": float(cknna), "mutual_knn": mutual, "rsa": rsa, "procrustes": procrustes}


def _drawn_pairs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j) images of a resample's distinct pairs: an image and its own copy are no pair."""
    i, j = np.triu_indices(len(rows), 1)
    distinct = rows[i] != rows[j]
    return rows[i[distinct]], rows[j[distinct]]


def resampled(a: Prepared, b: Prepared, rows: np.ndarray) -> dict:
    """Every measure of (a, b) on the images `rows` (a bootstrap resample: repeats allowed), the
    same rows for both layers; neighbourhoods and distance ranks as found on the whole sample."""
    i, j = _drawn_pairs(rows)
    k = max(int(a.knn[0].sum()), 1)
    return _pair_resampled(_resample(a, rows), _resample(b, rows), (a.ranks[i, j], b.ranks[i, j]), k)


@dataclass(frozen=True)
class PairScores:
    """One pair of layers: each measure's score and its null's draws."""

    score: dict[str, float]
    null: dict[str, np.ndarray]  # (PERMUTATIONS,) per measure
    boot: dict[str, np.ndarray]  # (BOOTSTRAPS,) per measure
    sample: int  # images the measures were computed on

    def row(self, measure: str) -> tuple[float, float, float, float]:
        """(score, null mean, the null's edge, calibrated): the edge is the 95th percentile of a
        similarity, the 5th of a distance."""
        return calibrate(measure, self.score[measure], self.null[measure])

    def interval(self, measure: str) -> tuple[float, float]:
        """The bootstrap's 95 % interval (NaN, NaN without resamples): the resamples' 2.5th and
        97.5th percentiles relative to their median, placed at the score (repeated images inflate
        CKA-like scores, so the resamples sit above the score; as similarity.cka_interval)."""
        draws = self.boot[measure]
        if not len(draws):
            return float("nan"), float("nan")
        low, mid, high = np.quantile(draws, [0.025, 0.5, 0.975])
        return float(self.score[measure] + low - mid), float(self.score[measure] + high - mid)


def calibrate(measure: str, score: float, draws: np.ndarray) -> tuple[float, float, float, float]:
    """(score, null mean, the null's edge on the similar side, calibrated score)."""
    mean = float(np.mean(draws))
    edge = float(np.quantile(draws, 0.05 if measure in DISTANCES else 0.95))
    return score, mean, edge, calibrated(measure, score, mean)


def calibrated(measure: str, score: float, null_mean: float) -> float:
    """0 at the null's mean, 1 for identical layers: (s - m) / (1 - m), or 1 - d / m for a distance."""
    if measure in DISTANCES:
        return 1 - score / null_mean if null_mean > 0 else float("nan")
    return (score - null_mean) / (1 - null_mean) if null_mean < 1 else float("nan")


def p_value(measure: str, score: float, draws: np.ndarray) -> float:
    """The permutation test's p-value: (1 + the draws at least as similar as the score) / (1 +
    the draws) (Phipson & Smyth 2010: never 0, exact under exchangeability; ties count against
    the score)."""
    at_least = np.sum(draws <= score) if measure in DISTANCES else np.sum(draws >= score)
    return float((1 + at_least) / (1 + len(draws)))


def inside_null(measure: str, score: float, draws: np.ndarray) -> bool:
    """Whether the score is no evidence of more similarity than shuffled images give: its
    permutation p-value is above ALPHA."""
    return p_value(measure, score, draws) > ALPHA


def permutations(s: int, count: int = PERMUTATIONS, random_state: int = 0) -> list[np.ndarray]:
    """The null's permutations of the sample: the same for every pair (so the maximum's null is a
    maximum over the same shuffles)."""
    rng = np.random.default_rng([random_state, 7])
    return [rng.permutation(s) for _ in range(count)]


def resamples(s: int, count: int = BOOTSTRAPS, random_state: int = 0) -> list[np.ndarray]:
    """The interval's bootstrap resamples of the sample: the same for every pair."""
    rng = np.random.default_rng([random_state, 8])
    return [np.sort(rng.integers(0, s, s)) for _ in range(count)]


def pair_scores(a: Prepared, b: Prepared, perms: list[np.ndarray], boots: list[np.ndarray] | None = None) -> PairScores:
    """Scores of (a, b), their permutation null and (with `boots`) their bootstrap draws."""
    return every_pair({"a": a, "b": b}, [("a", "b")], perms, boots)[("a", "b")]


def every_pair(
    prepared: dict[str, Prepared],
    pairs: list[tuple[str, str]],
    perms: list[np.ndarray],
    boots: list[np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[tuple[str, str], PairScores]:
    """pair_scores of every pair of prepared layers. Each resample of the interval resamples each
    layer once for all its pairs (the same numbers as pair by pair, a fraction of the work).
    `progress(done, total)` after each pair's null and each resample."""
    boots = boots or []
    total = len(pairs) + len(boots)
    scores, nulls = {}, {}
    for n, (a, b) in enumerate(pairs):
        terms: dict = {}
        scores[(a, b)] = measures(prepared[a], prepared[b], None, terms)
        nulls[(a, b)] = [measures(prepared[a], prepared[b], p, terms) for p in perms]
        if progress:
            progress(n + 1, total)
    again: dict[tuple[str, str], list[dict]] = {pair: [] for pair in pairs}
    used = sorted({name for pair in pairs for name in pair}, key=list(prepared).index)
    for n, rows in enumerate(boots):
        drawn = {name: _resample(prepared[name], rows) for name in used}
        i, j = _drawn_pairs(rows)
        ranks = {name: prepared[name].ranks[i, j] for name in used}
        for a, b in pairs:
            k = max(int(prepared[a].knn[0].sum()), 1)
            again[(a, b)].append(_pair_resampled(drawn[a], drawn[b], (ranks[a], ranks[b]), k))
        if progress:
            progress(len(pairs) + n + 1, total)
    return {
        pair: PairScores(
            scores[pair],
            {m: np.array([d[m] for d in nulls[pair]]) for m in MEASURES},
            {m: np.array([d[m] for d in again[pair]]) for m in MEASURES},
            len(prepared[pair[0]].gram),
        )
        for pair in pairs
    }


def max_null(pairs: list[PairScores], measure: str) -> tuple[float, np.ndarray]:
    """For one layer against several: (the best score, the null of the best over those layers
    under the same permutations). Best is the maximum of a similarity, the minimum of a distance."""
    pick = np.min if measure in DISTANCES else np.max
    best = float(pick([p.score[measure] for p in pairs]))
    return best, pick(np.stack([p.null[measure] for p in pairs]), axis=0)


@dataclass(frozen=True)
class MeasureMatrices:
    """One measure over every pair of layers, (L, L) each, symmetric; the diagonal is a layer with
    itself (the best score, calibrated 1, never inside the null)."""

    score: np.ndarray
    null_mean: np.ndarray
    edge: np.ndarray  # the null's 95th percentile (5th for a distance)
    calibrated: np.ndarray
    low: np.ndarray
    high: np.ndarray
    inside: np.ndarray  # bool: the score is inside the null
    sample: int


def measure_matrices(pairs: dict[tuple[str, str], PairScores], names: list[str], measure: str) -> MeasureMatrices:
    """`measure` of every pair of `names` (layer keys, as alignment_run keys its pairs) as matrices."""
    size = len(names)
    best = 0.0 if measure in DISTANCES else 1.0
    out = {f: np.full((size, size), np.nan) for f in ("score", "null_mean", "edge", "calibrated", "low", "high")}
    inside = np.zeros((size, size), dtype=bool)
    np.fill_diagonal(out["score"], best)
    np.fill_diagonal(out["calibrated"], 1.0)
    sample = 0
    index = {n: i for i, n in enumerate(names)}
    for (a, b), pair in pairs.items():
        if a not in index or b not in index:
            continue
        i, j = index[a], index[b]
        values = dict(zip(("score", "null_mean", "edge", "calibrated"), pair.row(measure)))
        values["low"], values["high"] = pair.interval(measure)
        for f, v in values.items():
            out[f][i, j] = out[f][j, i] = v
        inside[i, j] = inside[j, i] = inside_null(measure, values["score"], pair.null[measure])
        sample = pair.sample
    return MeasureMatrices(**out, inside=inside, sample=sample)
