"""The compression curve for classes a projection never saw: how much of a layer's retrieval
survives when the layer is squeezed to k dimensions by a projection learned on other classes.

The labelled classes are split in two halves by the seed. A projection to k dimensions is fitted
on the images of the first half only (PCA: the top k principal axes; LDA: the top k discriminant
axes of the first half's labels), then the second half's images are retrieved among themselves
(retrieval.py's MAP@R and precision@1, cosine on the projected features) at each k. The row
`none` is the layer itself, unprojected, on the same images and queries.

Cost: the projection is fitted on at most FIT_ROWS images; the second half is retrieved among
at most TEST_ROWS of its images (a stratified sample) with at most QUERIES queries, so it does not
grow with N. With a sample, R is counted within the sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunked import unit_rows
from .compression import widths
from .retrieval import query_sample, query_scores, stratified_rows
from .uncertainty import mean_interval

FIT_ROWS = 5_000  # images of the seen classes a projection is fitted on, at most (LDA's shrinkage is O(n D^2))
TEST_ROWS = 3_000  # images of the unseen classes retrieved among themselves, at most
QUERIES = 600  # of them queries, at most (a stratified sample): each width is one retrieval
DRAWS = 1_000  # bootstrap resamples of each width's MAP@R interval
PROJECTIONS = ("pca", "lda")


@dataclass(frozen=True)
class Projector:
    """A learned linear bottleneck: z = (features - mean) @ weights, then L2-normalised for cosine."""

    method: str
    mean: np.ndarray  # (D,) float32
    weights: np.ndarray  # (D, k) float32, columns in order of importance

    def __call__(self, x: np.ndarray, k: int | None = None) -> np.ndarray:
        w = self.weights if k is None else self.weights[:, :k]
        return (np.asarray(x, dtype=np.float32) - self.mean) @ w


def fit_projection(x: np.ndarray, y: np.ndarray, method: str, k: int | None = None) -> Projector:
    """Fit a projection on these images (and, for LDA, their classes).

    Args:
        x: (n, D) float32 features of the images to fit on.
        y: (n,) their class indices (LDA only).
        method: `pca` (scikit-learn's PCA) or `lda` (LinearDiscriminantAnalysis, eigen solver with
            Ledoit-Wolf shrinkage, which copes with D above n; its SVD solver where the shrunk
            within-class covariance is still singular).
        k: dimensions kept (default: all the method gives: min(n, D) for PCA, classes - 1 for LDA).

    Raises:
        ValueError: `k` above what the method gives, or an unknown method.
    """
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x = np.asarray(x, dtype=np.float32)
    most = min(x.shape) if method == "pca" else min(len(np.unique(y)) - 1, x.shape[1])
    if k is not None and k > most:
        raise ValueError(
            f"{method.upper()} on {x.shape[0]} images"
            + (f" of {len(np.unique(y))} classes" if method == "lda" else "")
            + f" gives at most {most} dimensions; {k} were asked for"
        )
    if method == "pca":
        pca = PCA(n_components=min(k or most, most), svd_solver="covariance_eigh").fit(x)
        return Projector("pca", pca.mean_.astype(np.float32), pca.components_.T.astype(np.float32))
    if method == "lda":
        try:
            lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(x, y)
        except np.linalg.LinAlgError:  # a within-class covariance the shrinkage left singular (dead ReLU units)
            lda = LinearDiscriminantAnalysis(solver="svd").fit(x, y)  # rank-aware: at most its rank
            most = min(most, lda.scalings_.shape[1])
            if k is not None and k > most:
                raise ValueError(f"LDA on these images gives at most {most} dimensions; {k} were asked for") from None
        return Projector("lda", x.mean(0), lda.scalings_[:, : min(k or most, most)].astype(np.float32))
    raise ValueError(f"projection {method!r}: use one of {', '.join(PROJECTIONS)}")


@dataclass(frozen=True)
class UnseenCurve:
    """Retrieval on the unseen half of the classes, against the dimensions a projection keeps.

    Attributes:
        method: (M,) `none`, `pca` or `lda`.
        k: (M,) dimensions kept (the layer's width for `none`).
        map_at_r, map_at_r_low, map_at_r_high, precision_at_1: (M,) on the unseen half.
        seen, unseen: class indices the projection was fitted on, and retrieved on.
        queries, images: queries scored and images retrieved among.
    """

    method: np.ndarray
    k: np.ndarray
    map_at_r: np.ndarray
    map_at_r_low: np.ndarray
    map_at_r_high: np.ndarray
    precision_at_1: np.ndarray
    seen: np.ndarray
    unseen: np.ndarray
    queries: int
    images: int

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> UnseenCurve:
        return cls(**{k: (int(a[k]) if k in ("queries", "images") else a[k]) for k in cls.__dataclass_fields__})

    def smallest_k(self, method: str, keep: float = 0.95) -> int | None:
        """The fewest dimensions whose MAP@R is at least `keep` times the unprojected layer's."""
        full = self.map_at_r[self.method == "none"]
        rows = np.flatnonzero(self.method == method)
        hit = [int(self.k[i]) for i in rows if len(full) and self.map_at_r[i] >= keep * full[0]]
        return min(hit) if hit else None


def split_classes(y: np.ndarray, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(seen, unseen): the classes with at least two images, shuffled by the seed and halved."""
    able = np.flatnonzero(np.bincount(y) >= 2)
    perm = np.random.default_rng([random_state, 3]).permutation(able)
    half = len(perm) // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def unseen_curve(
    x: np.ndarray, y: np.ndarray, *, methods: tuple[str, ...] = PROJECTIONS, random_state: int = 0
) -> UnseenCurve | None:
    """One layer's unseen-class compression curve (None: fewer than 4 classes with two images).

    Args:
        x: (N, D) features (array or memory map; not modified), one row per labelled image.
        y: (N,) class indices.
        methods: the projections to learn.
        random_state: seed of the class split and the samples.
    """
    y = np.asarray(y)
    seen, unseen = split_classes(y, random_state)
    if len(seen) < 2 or len(unseen) < 2:
        return None
    fit_rows = np.flatnonzero(np.isin(y, seen))
    fit_rows = fit_rows[stratified_rows(y[fit_rows], FIT_ROWS, random_state)]
    test_rows = np.flatnonzero(np.isin(y, unseen))
    test_rows = test_rows[stratified_rows(y[test_rows], TEST_ROWS, random_state)]
    x_fit, y_fit = np.asarray(x[fit_rows], dtype=np.float32), y[fit_rows]
    x_test, y_test = np.asarray(x[test_rows], dtype=np.float32), y[test_rows]
    queries = query_sample(y_test, QUERIES, random_state)
    out: dict[str, list] = {
        k: [] for k in ("method", "k", "map_at_r", "map_at_r_low", "map_at_r_high", "precision_at_1")
    }

    def measure(method: str, k: int, z: np.ndarray) -> None:
        p1, ap, _ = query_scores(unit_rows(z), y_test, queries)
        low, high = mean_interval(ap, draws=DRAWS, random_state=random_state)
        for key, v in zip(out, (method, k, float(ap.mean()), low, high, float(p1.mean()))):
            out[key].append(v)

    measure("none", x.shape[1], x_test)
    for method in methods:
        projector = fit_projection(x_fit, y_fit, method)
        z = projector(x_test)
        for k in widths(z.shape[1]):
            measure(method, k, z[:, :k])
    return UnseenCurve(
        np.array(out["method"], dtype=str),
        np.array(out["k"], dtype=np.int64),
        *(np.array(out[c]) for c in ("map_at_r", "map_at_r_low", "map_at_r_high", "precision_at_1")),
        seen,
        unseen,
        len(queries),
        len(test_rows),
    )
