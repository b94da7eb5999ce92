"""Label efficiency of one layer: accuracy against the number of labelled images per class
("shots"), by two ways of using the layer on classes known from a few images:

- `prototype`: each class is the mean of its support images' unit-length features, and a query
  takes the class of the nearest mean by cosine (no training);
- `probe`: the project's linear probe (probe.fit_predict) trained on the support images.

Each point is the mean over seeded episodes. An episode draws, for every class taking part,
`shots` support images and up to QUERIES_PER_CLASS other images as queries; with `all`, the
queries are held out and every other image of the class is support. Both methods and every
layer see the same episodes (the draws depend on the labels and the seed only), so their curves
are paired. The interval is mean +- 1.96 standard errors over the episodes, as few-shot papers
report it.

Cost does not grow with N for the numbered shots: episodes draw from a pool of at most
POOL_PER_CLASS images of at most MAX_WAYS classes, read once per layer. `all` reads each class's
unit-length sum in one pass over the layer, and the probe there is the layer's cross-validated
probe, read off its out-of-fold predictions (trained on the other folds); given none, it trains on
at most ALL_PROBE_ROWS images (a stratified sample)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunked import row_chunks
from .probe import fit_predict
from .retrieval import stratified_rows

ALL = 0  # the `shots` value of "every image of the class but the queries"
SHOTS = (1, 2, 5, 10, 20, ALL)
METHODS = ("prototype", "probe")
QUERIES_PER_CLASS = 15  # the field's usual query count per class and episode
POOL_PER_CLASS = 100  # images per class the numbered shots draw from (all of a smaller class)
MAX_WAYS = 100  # classes taking part; beyond, a seeded choice of this many, the same for every layer
EPISODES = {"prototype": 100, "probe": 5}  # per shots value; `all`: ALL_EPISODES
ALL_EPISODES = 3
ALL_PROBE_ROWS = 5_000  # the probe's training rows at `all`, at most (a stratified sample)
Z95 = 1.96


def shots_name(shots: int) -> str:
    """`1`, `5`, ..., or `all`."""
    return "all" if shots == ALL else str(shots)


@dataclass(frozen=True)
class FewShot:
    """One layer's few-shot curve: one entry per (shots, method) measured, shots increasing, `all` last.

    Attributes:
        shots: (M,) int, ALL (0) for all.
        method: (M,) `prototype` or `probe`.
        accuracy, low, high: (M,) mean accuracy over the episodes and its 95 % interval.
        episodes: (M,) episodes run.
        ways: (M,) classes taking part (those with enough images for the shots).
    """

    shots: np.ndarray
    method: np.ndarray
    accuracy: np.ndarray
    low: np.ndarray
    high: np.ndarray
    episodes: np.ndarray
    ways: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        return dict(self.__dict__)

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> FewShot:
        return cls(**{k: a[k] for k in cls.__dataclass_fields__})

    def at(self, shots: int, method: str) -> float | None:
        """The accuracy at (shots, method), None where not measured."""
        hit = np.flatnonzero((self.shots == shots) & (self.method == method))
        return float(self.accuracy[hit[0]]) if len(hit) else None

    def probe_pays_from(self) -> int | None:
        """The fewest shots at which the probe's interval lies above the prototype's accuracy
        (None: at no shots measured). Read it as the label budget from which training a head pays."""
        for s in sorted(set(self.shots.tolist()), key=lambda v: (v == ALL, v)):
            hp = np.flatnonzero((self.shots == s) & (self.method == "probe"))
            pp = self.at(s, "prototype")
            if len(hp) and pp is not None and self.low[hp[0]] > pp:
                return int(s)
        return None


@dataclass(frozen=True)
class _Classes:
    """The classes taking part and where their images are."""

    ids: np.ndarray  # class indices taking part, sorted
    rows: list[np.ndarray]  # each one's rows of the layer, sorted
    pool: list[np.ndarray]  # each one's pool: sorted positions into `rows`


def _classes(y: np.ndarray, random_state: int) -> _Classes:
    counts = np.bincount(y)
    ids = np.flatnonzero(counts >= 2)
    rng = np.random.default_rng([random_state, 1])
    if len(ids) > MAX_WAYS:
        ids = np.sort(rng.choice(ids, MAX_WAYS, replace=False))
    order = np.argsort(y, kind="stable")
    start = np.concatenate([[0], np.cumsum(counts)])
    rows = [order[start[c] : start[c + 1]] for c in ids]
    pool = [np.sort(rng.choice(len(r), min(len(r), POOL_PER_CLASS), replace=False)) for r in rows]
    return _Classes(ids, rows, pool)


def _episode(classes: _Classes, shots: int, rng: np.random.Generator) -> tuple[list, list, np.ndarray]:
    """(support rows per class, query rows per class, which classes take part) of one episode;
    rows are the layer's. Numbered shots draw from each class's pool; `all` draws its queries from
    the pool and keeps every other image of the class as support."""
    support, queries, part = [], [], []
    for k, (rows, pool) in enumerate(zip(classes.rows, classes.pool)):
        if shots == ALL:
            perm = rng.permutation(pool)
            q = min(QUERIES_PER_CLASS, len(rows) // 2)
            queries.append(rows[perm[:q]])
            support.append(np.delete(rows, perm[:q]))
            part.append(k)
        elif len(pool) >= shots + 1:
            perm = rng.permutation(pool)
            support.append(rows[perm[:shots]])
            queries.append(rows[perm[shots : shots + min(QUERIES_PER_CLASS, len(pool) - shots)]])
            part.append(k)
    return support, queries, np.array(part, dtype=np.int64)


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def prototype_predict(support: np.ndarray, support_y: np.ndarray, queries: np.ndarray, ways: int) -> np.ndarray:
    """Nearest class mean by cosine: each class the mean of its unit-length support rows."""
    means = np.zeros((ways, support.shape[1]))
    np.add.at(means, support_y, _unit(support.astype(np.float64)))
    return (_unit(queries.astype(np.float64)) @ _unit(means).T).argmax(1)


class _Rows:
    """Rows of a layer read once: the pool of every class (for the numbered shots and the queries
    of `all`), and each class's sum of unit-length rows (for the prototypes of `all`)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, classes: _Classes) -> None:
        self.x = x
        self.class_ids = classes.ids
        self.pool_rows = np.sort(np.concatenate([r[p] for r, p in zip(classes.rows, classes.pool)]))
        self.pool = np.asarray(x[self.pool_rows], dtype=np.float32)
        which = np.full(len(y), -1)
        which[np.concatenate(classes.rows)] = np.repeat(np.arange(len(classes.rows)), [len(r) for r in classes.rows])
        self.unit_sums = np.zeros((len(classes.rows), x.shape[1]))
        for part in row_chunks(len(y)):
            k = which[part]
            keep = k >= 0
            if keep.any():
                np.add.at(self.unit_sums, k[keep], _unit(np.asarray(x[part][keep], dtype=np.float64)))

    def pooled(self, rows: np.ndarray) -> np.ndarray:
        """The features of these rows of the layer, each in the pool."""
        return self.pool[np.searchsorted(self.pool_rows, rows)]


def _accuracy(
    method: str,
    data: _Rows,
    shots: int,
    episode: tuple[list, list, np.ndarray],
    c: float,
    random_state: int,
    held_out: np.ndarray | None,
) -> float:
    """One episode's accuracy by `method`: the share of its queries given their own class."""
    support, queries, part = episode
    ways = len(queries)
    qy = np.repeat(np.arange(ways), [len(q) for q in queries])
    if method == "probe" and shots == ALL and held_out is not None:  # the cross-validated probe's own answers
        rows = np.concatenate(queries)
        truth = data.class_ids[part][qy]
        scored = held_out[rows] >= 0
        return float(np.mean(held_out[rows][scored] == truth[scored])) if scored.any() else float("nan")
    xq = data.pooled(np.concatenate(queries))
    if method == "prototype" and shots == ALL:  # the class sums less the queries: no pass over the support
        means = data.unit_sums[part] - np.stack([_unit(data.pooled(q).astype(np.float64)).sum(0) for q in queries])
        pred = (_unit(xq.astype(np.float64)) @ _unit(means).T).argmax(1)
        return float(np.mean(pred == qy))
    sy = np.repeat(np.arange(ways), [len(s) for s in support])
    rows = np.concatenate(support)
    if shots == ALL:
        keep = stratified_rows(sy, ALL_PROBE_ROWS, random_state)
        rows, sy = rows[keep], sy[keep]
        order = np.argsort(rows)
        xs = np.asarray(data.x[rows[order]], dtype=np.float32)[np.argsort(order)]
    else:
        xs = data.pooled(rows)
    if method == "prototype":
        pred = prototype_predict(xs, sy, xq, ways)
    else:
        pred = fit_predict(xs, sy, xq, ways, c)
    return float(np.mean(pred == qy))


def few_shot_curve(
    x: np.ndarray,
    y: np.ndarray,
    *,
    c: float,
    shots: tuple[int, ...] = SHOTS,
    methods: tuple[str, ...] = METHODS,
    episodes: dict[str, int] | None = None,
    all_episodes: int = ALL_EPISODES,
    held_out: np.ndarray | None = None,
    random_state: int = 0,
) -> FewShot | None:
    """One layer's few-shot curve (None: fewer than two classes have two images).

    Args:
        x: (N, D) features (array or memory map; not modified), one row per labelled image.
        y: (N,) class indices.
        c: the probe's inverse regularisation (the layer's, chosen by its cross-validated probe).
        shots: support images per class to measure; ALL for all. A value is measured where at
            least two classes have an image more than it.
        methods: `prototype`, `probe`.
        episodes: episodes per method (default EPISODES); all_episodes: at `all`.
        held_out: (N,) the layer's cross-validated probe's out-of-fold predictions (class indices
            of `y`, -1 where it did not score an image): the probe at `all` is then read off them
            on the episode's queries, trained on the other folds, instead of trained again (a
            query of a class the probe left out, too small for its folds, is not counted there).
            Not used when more than MAX_WAYS classes make the episodes choose among them.
        random_state: seed of every draw: the same seed, the same episodes.
    """
    from threadpoolctl import threadpool_limits

    y = np.asarray(y)
    episodes = episodes or EPISODES
    classes = _classes(y, random_state)
    if len(classes.ids) < 2:
        return None
    if held_out is not None and len(classes.ids) < np.sum(np.bincount(y) >= 2):
        held_out = None  # the probe answers among every class; with a choice of classes, train it on theirs
    data = _Rows(x, y, classes)
    out: dict[str, list] = {k: [] for k in FewShot.__dataclass_fields__}
    with threadpool_limits(limits=1, user_api="blas"):
        for s in shots:
            for method in methods:
                runs = all_episodes if s == ALL else episodes[method]
                accs, ways = [], 0
                for e in range(runs):
                    rng = np.random.default_rng([random_state, 2, s, e])
                    episode = _episode(classes, s, rng)
                    if len(episode[2]) < 2:
                        break
                    ways = len(episode[2])
                    accs.append(_accuracy(method, data, s, episode, c, random_state + e, held_out))
                if not accs:
                    continue
                mean = float(np.mean(accs))
                half = Z95 * float(np.std(accs, ddof=1)) / np.sqrt(len(accs)) if len(accs) > 1 else float("nan")
                for k, v in zip(
                    FewShot.__dataclass_fields__, (s, method, mean, mean - half, mean + half, len(accs), ways)
                ):
                    out[k].append(v)
    if not out["shots"]:
        return None
    return FewShot(
        np.array(out["shots"], dtype=np.int64),
        np.array(out["method"], dtype=str),
        np.array(out["accuracy"]),
        np.array(out["low"]),
        np.array(out["high"]),
        np.array(out["episodes"], dtype=np.int64),
        np.array(out["ways"], dtype=np.int64),
    )
