"""Retrieval and verification on one layer, with no training: how well cosine similarity on the
layer's pooled features finds the other images of a class (precision@1, R-precision and MAP@R,
as Musgrave et al. 2020, "A Metric Learning Reality Check", define them) and tells a same-class
pair from a different-class pair (ROC AUC and TAR at a false-accept rate).

Every image is in the reference set; a query is never its own match, and a query whose class has
no other image is not scored (pytorch-metric-learning's AccuracyCalculator does the same).
Cost is O(Q N D) for Q queries: up to MAX_QUERIES every labelled image is a query, beyond that a
sample stratified by class. Pairs: all of them up to MAX_PAIRS, beyond that a stratified sample
of MAX_PAIRS same-class and MAX_PAIRS different-class pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunked import row_chunks, unit_rows
from .uncertainty import mean_interval

MAX_QUERIES = 2_000  # queries scored against all N images: 2,000 x 100k x 1,280 is about 10 s on 2 cores
MAX_PAIRS = 50_000  # same-class and different-class pairs each, at most (all pairs when fewer): AUC's error ~0.002
FAR = 0.01  # the false-accept rate at which the true-accept rate is read
QUERY_CHUNK = 256  # queries per matrix product, at most
BLOCK_VALUES = 16_000_000  # similarities held at once (64 MB of float32): fewer queries per block at large N


@dataclass(frozen=True)
class Retrieval:
    """Retrieval and verification scores of one layer.

    Attributes:
        precision_at_1: share of queries whose nearest other image has their class.
        map_at_r: mean over queries of AP@R: with R the number of other images of the query's
            class, the mean over the first R results of the precision at each relevant one (0 at
            irrelevant ones).
        r_precision: mean share of the query's class among its first R results.
        map_at_r_low, map_at_r_high: 95 % bootstrap interval of map_at_r over the queries.
        verification_auc: ROC AUC of cosine similarity, same-class pairs against different-class pairs.
        tar_at_far: share of same-class pairs accepted at the threshold that accepts FAR of the
            different-class pairs.
        queries: queries scored; images: the reference set's size.
        pairs: same-class and different-class pairs scored, together.
        sampled: whether the queries or the pairs are a sample.
    """

    precision_at_1: float
    map_at_r: float
    r_precision: float
    map_at_r_low: float
    map_at_r_high: float
    verification_auc: float
    tar_at_far: float
    queries: int
    images: int
    pairs: int
    sampled: bool

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Retrieval:
        kinds = {"sampled": bool, "queries": int, "images": int, "pairs": int}
        return cls(**{k: kinds.get(k, float)(a[k]) for k in cls.__dataclass_fields__})


def stratified_rows(y: np.ndarray, size: int, random_state: int = 0) -> np.ndarray:
    """Sorted positions of a random sample of `size` of the labels `y` (all when fewer), each class
    in proportion to its size (largest remainders rounded up). Unlike scikit-learn's stratified
    splits it takes any number of classes, more than `size` (thousands of identities) included:
    a class too small for its share may then be left out."""
    y = np.asarray(y)
    if len(y) <= size:
        return np.arange(len(y))
    rng = np.random.default_rng([random_state, 4])
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = counts * size / len(y)
    take = np.floor(exact).astype(np.int64)
    short = size - int(take.sum())
    take[np.argsort(-(exact - take), kind="stable")[:short]] += 1
    order = np.argsort(inverse, kind="stable")
    start = np.concatenate([[0], np.cumsum(counts)])
    picked = [
        rng.choice(order[start[c] : start[c + 1]], take[c], replace=False) for c in range(len(classes)) if take[c]
    ]
    return np.sort(np.concatenate(picked))


def query_sample(y: np.ndarray, max_queries: int = MAX_QUERIES, random_state: int = 0) -> np.ndarray:
    """Sorted rows that are queries: every row whose class has another image, or a sample of
    `max_queries` of them stratified by class (each class in proportion to its size)."""
    counts = np.bincount(y)
    able = np.flatnonzero(counts[y] >= 2)
    if len(able) <= max_queries:
        return able
    return able[stratified_rows(y[able], max_queries, random_state)]


def query_scores(xn: np.ndarray, y: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: (precision@1, AP@R, R-precision), each (Q,) float64.

    A block of queries at a time: their similarities to every image, the first R of each row
    found by one partition (R the largest of the block) and sorted, and the three read off the
    relevance mask with cumulative sums, with no loop over queries.

    Args:
        xn: (N, D) unit-length rows (the reference set, queries included).
        y: (N,) class indices.
        queries: rows of `xn` to score; each class must have another image.
    """
    counts = np.bincount(y)
    n = len(y)
    p1 = np.empty(len(queries))
    ap = np.empty(len(queries))
    rp = np.empty(len(queries))
    # a block's similarities and its first R of each row stay under BLOCK_VALUES values each
    step = int(max(1, min(QUERY_CHUNK, BLOCK_VALUES // max(n, 1))))
    for a in range(0, len(queries), step):
        rows = queries[a : a + step]
        sims = xn[rows] @ xn.T
        sims[np.arange(len(rows)), rows] = -np.inf  # a query is not its own match
        r = counts[y[rows]] - 1
        k = int(r.max())
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.argsort(-sims, axis=1)
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable"), 1)
        del sims
        rel = (y[top] == y[rows][:, None]) & (np.arange(k)[None, :] < r[:, None])
        hits = np.cumsum(rel, axis=1)
        block = slice(a, a + len(rows))
        p1[block] = rel[:, 0]
        rp[block] = hits[np.arange(len(rows)), r - 1] / r
        ap[block] = np.where(rel, hits / np.arange(1, k + 1), 0.0).sum(1) / r
    return p1, ap, rp


def verification_pairs(
    y: np.ndarray, max_pairs: int = MAX_PAIRS, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Pairs of images (a, b, same class) to verify: every unordered pair when there are at most
    `max_pairs` of each kind, else `max_pairs` same-class and `max_pairs` different-class pairs
    drawn with each class's share in proportion to its pairs (so the sample's AUC estimates the
    all-pairs AUC). The last item says whether it is a sample."""
    n = len(y)
    counts = np.bincount(y)
    same_total = int(np.sum(counts * (counts - 1) // 2))
    diff_total = n * (n - 1) // 2 - same_total
    if same_total <= max_pairs and diff_total <= max_pairs:
        a, b = np.triu_indices(n, 1)
        return a, b, y[a] == y[b], False
    rng = np.random.default_rng(random_state)
    order = np.argsort(y, kind="stable")
    start = np.concatenate([[0], np.cumsum(counts)])
    pos_a, pos_b, neg_a, neg_b = [], [], [], []
    pos_share = counts * (counts - 1) / max(2 * same_total, 1)
    neg_share = counts * (n - counts) / max(2 * diff_total, 1)
    pos_n = rng.multinomial(min(max_pairs, same_total), pos_share) if same_total else np.zeros(len(counts), int)
    neg_n = rng.multinomial(min(max_pairs, diff_total), neg_share) if diff_total else np.zeros(len(counts), int)
    for c, (m, k) in enumerate(zip(pos_n, neg_n)):
        members = order[start[c] : start[c + 1]]
        if m:
            i = rng.integers(0, len(members), m)
            j = (i + rng.integers(1, len(members), m)) % len(members)  # another image of the class
            pos_a.append(members[i])
            pos_b.append(members[j])
        if k:
            others = n - len(members)
            o = rng.integers(0, others, k)  # the o-th image outside the class, in class order
            o = np.where(o >= start[c], o + len(members), o)
            neg_a.append(members[rng.integers(0, len(members), k)])
            neg_b.append(order[o])
    a = np.concatenate(pos_a + neg_a).astype(np.int64)
    b = np.concatenate(pos_b + neg_b).astype(np.int64)
    same = np.concatenate([np.ones(int(pos_n.sum()), bool), np.zeros(int(neg_n.sum()), bool)])
    return a, b, same, True


def pair_similarity(xn: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each pair of unit rows, float64."""
    out = np.empty(len(a))
    for part in row_chunks(len(a)):
        out[part] = np.einsum("ij,ij->i", xn[a[part]], xn[b[part]], dtype=np.float64)
    return out


def verification(similarity: np.ndarray, same: np.ndarray, far: float = FAR) -> tuple[float, float]:
    """(ROC AUC, true-accept rate at false-accept rate `far`) of pair similarities (scikit-learn's
    roc_auc_score and roc_curve); nan without both kinds of pair."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if same.all() or not same.any():
        return float("nan"), float("nan")
    fpr, tpr, _ = roc_curve(same, similarity)
    return float(roc_auc_score(same, similarity)), float(tpr[fpr <= far].max())


def retrieval_scores(
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_queries: int = MAX_QUERIES,
    max_pairs: int = MAX_PAIRS,
    random_state: int = 0,
) -> Retrieval | None:
    """Retrieval and verification scores of one layer (None: no class has two images).

    Args:
        x: (N, D) features (array or memory map; not modified), one row per labelled image.
        y: (N,) class indices.
        max_queries, max_pairs: above these, a stratified sample (Retrieval.sampled).
        random_state: seed of the samples and the bootstrap.
    """
    y = np.asarray(y)
    queries = query_sample(y, max_queries, random_state)
    if len(queries) == 0:
        return None
    xn = unit_rows(x)
    p1, ap, rp = query_scores(xn, y, queries)
    low, high = mean_interval(ap, random_state=random_state)
    a, b, same, pairs_sampled = verification_pairs(y, max_pairs, random_state)
    auc, tar = verification(pair_similarity(xn, a, b), same)
    return Retrieval(
        float(p1.mean()),
        float(ap.mean()),
        float(rp.mean()),
        low,
        high,
        auc,
        tar,
        len(queries),
        len(y),
        len(a),
        pairs_sampled or len(queries) < int(np.sum(np.bincount(y)[y] >= 2)),
    )
