"""The linear probe: multinomial logistic regression on standardised features, its inverse
regularisation C chosen by nested cross-validation, fitted with L-BFGS on float32 products."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass

import numpy as np

from .chunked import column_moments, row_chunks, scatter_matrix

C_GRID = (0.01, 0.1, 1.0, 10.0)  # on a 2k-image set a 24-d layer scored 0.52 / 0.60 / 0.64 at C = 0.1 / 1 / 10
INNER_FOLDS = 3
INNER_HOLDOUT_FROM = 8_000  # from this many training rows, one stratified 3:1 split chooses C
INNER_MAX_ROWS = 8_000  # ... of at most this many rows; the refit at the chosen C uses every training row
TOL = 1e-3  # largest gradient entry of the mean loss at convergence (scikit-learn lbfgs criterion; 1e-3 as the earlier probe, docs/benchmarks.md, "Measured")
MAX_ITER = 500
FALLBACK_C = 0.1  # when a class has too few training images for an inner split (the earlier fixed C)
MAX_TRAIN = 20_000  # training rows per outer fold; beyond, a stratified sample (ProbeResult.n_train)
AXES_KEPT_BYTES = 256 * 2**20  # principal axes kept for the next probe of the same rows (_principal_axes)
CONTROL_ROWS = 1_000  # images of the label-permutation control (a stratified sample beyond): 0.2-1 s per layer


_axes_kept: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_axes_lock = threading.Lock()


@dataclass(frozen=True)
class ProbeResult:
    """Out-of-fold results of the probe.

    Attributes:
        accuracy: mean accuracy over the outer folds.
        accuracy_std: its standard deviation over the outer folds.
        predictions: (N,) out-of-fold predicted class index of every image (into sorted classes).
        chosen_c: the C used in each outer fold.
        n_train: training rows per fold (the largest fold's; capped at MAX_TRAIN).
    """

    accuracy: float
    accuracy_std: float
    predictions: np.ndarray
    chosen_c: tuple[float, ...]
    n_train: int = 0

    @property
    def c(self) -> float:
        """The C chosen most often over the outer folds (the smaller one on a tie)."""
        counts = Counter(self.chosen_c)
        return min(counts, key=lambda c: (-counts[c], c))


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, c: float, init=None, eigvals=None):  # type: ignore[no-untyped-def]
    """Multinomial logistic regression with an L2 penalty, as scikit-learn's LogisticRegression(C=c).

    Minimises mean cross-entropy + ||W||^2 / (2 C n) (scikit-learn's C * sum of losses + ||W||^2 / 2,
    divided by C n); the intercept is not penalised. L-BFGS (scipy, the solver scikit-learn uses) on
    a loss and gradient computed with float32 matrix products. Given the covariance eigenvalues of
    `x` (whose columns must then be its principal axes), each coordinate is rescaled by
    1 / sqrt(lambda_j / 10 + 1 / (C n)), an estimate of the inverse square root of the Hessian's
    diagonal: the same minimum, reached in tens of iterations instead of hundreds on correlated
    features.

    Args:
        x: (n, D) float32 array (standardised; rotated to principal axes with `eigvals`).
        y: (n,) int array of class indices.
        n_classes: number of classes (columns of W).
        c: inverse regularisation strength.
        init: (W, b) to start from (a warm start along a C path), or None for zeros.
        eigvals: (D,) covariance eigenvalues of x's columns, or None (no preconditioning).

    Returns:
        (W of shape (D, n_classes) float32, b of shape (n_classes,) float32).
    """
    from scipy.optimize import minimize

    n, d = x.shape
    lam = 1.0 / (2.0 * c * n)
    scale = np.ones(d) if eigvals is None else 1.0 / np.sqrt(np.clip(eigvals, 0, None) / 10 + 2 * lam)
    rows = np.arange(n)

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        u = theta[: d * n_classes].reshape(d, n_classes)
        w = u * scale[:, None]
        logits = x @ w.astype(np.float32) + theta[d * n_classes :].astype(np.float32)
        logits -= _row_max(logits)
        p = np.exp(logits)
        z = p.sum(1, keepdims=True)
        p /= z
        loss = float(np.mean(np.log(z[:, 0]) - logits[rows, y])) + lam * float((w * w).sum())
        p[rows, y] -= 1.0  # p minus the one-hot labels
        gw = (x.T @ p).astype(np.float64) / n + 2 * lam * w
        gb = p.sum(0, dtype=np.float64) / n
        return loss, np.concatenate([(gw * scale[:, None]).ravel(), gb])

    theta0 = np.zeros(d * n_classes + n_classes)
    if init is not None:
        theta0[: d * n_classes] = (np.asarray(init[0], np.float64) / scale[:, None]).ravel()
        theta0[d * n_classes :] = init[1]
    res = minimize(
        loss_grad,
        theta0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": MAX_ITER, "gtol": TOL, "ftol": 64 * np.finfo(float).eps, "maxcor": 10},
    )
    w = res.x[: d * n_classes].reshape(d, n_classes) * scale[:, None]
    return w.astype(np.float32), res.x[d * n_classes :].astype(np.float32)


def _row_max(a: np.ndarray) -> np.ndarray:
    """(n, 1) the largest entry of each row of a 2-D array with a few columns (the classes): a
    column at a time, the same numbers as a.max(1, keepdims=True) in an eighth of its time, which
    goes row by row (88 us against 10 us at 1,600 x 10, a third of a small fit's loss evaluation)."""
    if a.shape[1] > 64:
        return a.max(1, keepdims=True)
    top = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        np.maximum(top, a[:, j], out=top)
    return top[:, None]


def _predict(x: np.ndarray, wb: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return (x @ wb[0] + wb[1]).argmax(1)


def fit_predict(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, n_classes: int, c: float) -> np.ndarray:
    """The project's probe on one split: standardise with the training rows' statistics, turn to
    their principal axes, fit at `c` and predict the test rows' classes (float32 arrays, copied)."""
    mean, std = _moments(xtr)
    xtr = (xtr - mean) / std
    eig, vec = _principal_axes(xtr)
    wb = fit_logistic(xtr @ vec, ytr, n_classes, c, eigvals=eig)
    return _predict(((xte - mean) / std) @ vec, wb)


def outer_folds(y: np.ndarray, folds: int, random_state: int = 0) -> np.ndarray:
    """(N,) the outer fold of each row, as probe() splits them (stratified, shuffled)."""
    from sklearn.model_selection import StratifiedKFold

    fold = np.empty(len(y), dtype=np.int64)
    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for f, (_, test) in enumerate(outer.split(np.zeros(len(y)), y)):
        fold[test] = f
    return fold


def _stratified_sample(y: np.ndarray, size: int, random_state: int) -> np.ndarray:
    """Sorted positions of a stratified random sample of `size` of the labels `y` (all when fewer)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    if len(y) <= size:
        return np.arange(len(y))
    cv = StratifiedShuffleSplit(n_splits=1, train_size=size, random_state=random_state)
    return np.sort(next(cv.split(np.zeros(len(y)), y))[0])


def _inner_splits(y: np.ndarray, random_state: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three stratified folds; from INNER_HOLDOUT_FROM rows on, one stratified 3:1 split of at most
    INNER_MAX_ROWS rows (enough to rank a handful of C values, at a fraction of the cost)."""
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    if len(y) < INNER_HOLDOUT_FROM:
        folds = min(INNER_FOLDS, int(np.bincount(y)[np.unique(y)].min()))
        if folds < 2:  # a class with one training image: nothing to choose C on
            return []
        return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y))
    size = min(len(y), INNER_MAX_ROWS)
    cv = StratifiedShuffleSplit(n_splits=1, train_size=size * 3 // 4, test_size=size // 4, random_state=random_state)
    return list(cv.split(np.zeros(len(y)), y))


def _choose_c(
    xtr: np.ndarray, ytr: np.ndarray, eig: np.ndarray, n_classes: int, grid: tuple[float, ...], random_state: int
) -> tuple[float, tuple]:
    """The C of the grid with the best mean inner validation accuracy (ties: the smaller C), and
    the last inner fit at that C (a warm start for the refit); FALLBACK_C when a class is too small
    to split."""
    scores = np.zeros(len(grid))
    start: dict[float, tuple] = {}
    splits = _inner_splits(ytr, random_state)
    if not splits:
        return FALLBACK_C, None
    for tr, va in splits:
        x_in, y_in, x_va, y_va = xtr[tr], ytr[tr], xtr[va], ytr[va]
        wb = None
        for i, c in enumerate(sorted(grid)):  # strong to weak regularisation: each fit starts from the last
            wb = fit_logistic(x_in, y_in, n_classes, c, init=wb, eigvals=eig)
            scores[i] += float(np.mean(_predict(x_va, wb) == y_va))
            start[c] = wb
    best = sorted(grid)[int(np.argmax(scores))]  # argmax takes the first (smallest C) of equal scores
    return best, start[best]


def _principal_axes(xtr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Covariance eigenvalues (r,) and eigenvectors (D, r) of centred training rows, float32
    (read-only: they may be shared).

    With fewer rows than features only the r <= n directions the rows span are kept, found from
    the n x n Gram matrix: a penalised linear model's weights lie in that span, so the probe is
    unchanged while every fit and the decomposition get cheaper.

    The same rows give the same axes: a layer's probe and its compression curve decompose the same
    folds' training rows (up to CURVE_ROWS images), a D x D eigenproblem each (0.35 s single-threaded
    at D = 1280). The axes of the last rows decomposed are kept, keyed by the rows' bytes, up to
    AXES_KEPT_BYTES; a hit returns what the decomposition returned then.
    """
    key = (
        hashlib.blake2b(np.ascontiguousarray(xtr), digest_size=16).digest() + repr((xtr.shape, xtr.dtype.str)).encode()
    )
    with _axes_lock:
        if key in _axes_kept:
            _axes_kept.move_to_end(key)
            return _axes_kept[key]
    eig, vec = _decomposed(xtr)
    eig.flags.writeable = vec.flags.writeable = False
    with _axes_lock:
        _axes_kept[key] = (eig, vec)
        while sum(e.nbytes + v.nbytes for e, v in _axes_kept.values()) > AXES_KEPT_BYTES and len(_axes_kept) > 1:
            _axes_kept.popitem(last=False)
    return eig, vec


def _decomposed(xtr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, d = xtr.shape
    if n < d:
        gram = np.zeros((n, n))
        for part in row_chunks(d):  # column chunks
            c = xtr[:, part].astype(np.float64)
            gram += c @ c.T
        mu, u = np.linalg.eigh(gram)
        keep = mu > max(mu.max(), 1e-30) * 1e-9
        mu, u = mu[keep], u[:, keep]
        vec = (xtr.T @ (u / np.sqrt(mu)).astype(np.float32)).astype(np.float32)
        return (mu / n).astype(np.float32), vec
    eig, vec = np.linalg.eigh(scatter_matrix(xtr) / n)
    return eig.astype(np.float32), vec.astype(np.float32)


def probe(
    x: np.ndarray,
    y: np.ndarray,
    folds: int,
    *,
    rows: np.ndarray | None = None,
    c: float | None = None,
    grid: tuple[float, ...] = C_GRID,
    max_train: int | None = None,
    random_state: int = 0,
    reuse_c: bool = False,
) -> ProbeResult:
    """Cross-validated accuracy of a linear probe.

    Each outer stratified fold standardises the features with its training rows' statistics,
    turns them to their principal axes (a rotation: the probe is unchanged, but L-BFGS can be
    preconditioned, see fit_logistic) and fits multinomial logistic regression. With `c=None` the
    C of each outer fold is the grid value with the best accuracy in an inner cross-validation on
    that fold's training rows (see _inner_splits), so no test row influences its own prediction.
    A fold with more than `max_train` training rows fits on a stratified random sample of that
    many of them; every test row is still predicted.

    Args:
        x: (N, D) features (array or memory map; not modified).
        y: (len(rows),) class indices 0..n_classes-1 of the rows scored.
        folds: outer stratified folds (at least 2).
        rows: sorted rows of `x` to use (default: all).
        c: a fixed C (no inner search), or None to choose it by nested cross-validation.
        grid: the candidate values of C.
        max_train: most training rows per fold (default MAX_TRAIN).
        random_state: seed of the fold splits and samples.
        reuse_c: choose C by the inner search in the first outer fold only, and keep it for the
            others (a third of the fits; the later folds' C has seen their test rows in training).

    Returns:
        A ProbeResult (predictions in the order of `rows`).
    """
    from threadpoolctl import threadpool_limits

    y = np.asarray(y)
    max_train = MAX_TRAIN if max_train is None else max_train
    rows = np.arange(x.shape[0]) if rows is None else np.asarray(rows)
    n_classes = int(y.max()) + 1
    pred = np.empty(len(y), dtype=np.int64)
    accs, chosen, n_train = [], [], 0
    fold_of = outer_folds(y, folds, random_state)
    # one BLAS thread for small matrices: two OpenBLAS threads made small probes several times slower
    threads = 1 if min(len(y), max_train) * x.shape[1] < 4_000_000 else None
    with threadpool_limits(limits=threads, user_api="blas"):
        for fold in range(folds):
            train, test = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
            train = train[_stratified_sample(y[train], max_train, random_state + fold)]
            n_train = max(n_train, len(train))
            xtr = np.asarray(x[rows[train]], dtype=np.float32)  # sorted: sequential reads of a memory map
            mean, std = _moments(xtr)
            xtr -= mean
            xtr /= std
            eig, vec = _principal_axes(xtr)
            xtr = xtr @ vec
            ytr = y[train]
            if c is None:
                c_fold, init = _choose_c(xtr, ytr, eig, n_classes, grid, random_state + fold)
                if reuse_c:
                    c = c_fold
            else:
                c_fold, init = c, None
            wb = fit_logistic(xtr, ytr, n_classes, c_fold, init=init, eigvals=eig)
            del xtr
            for chunk in row_chunks(len(test)):
                part = test[chunk]
                xte = (np.asarray(x[rows[part]], dtype=np.float32) - mean) / std
                pred[part] = _predict(xte @ vec, wb)
            accs.append(float(np.mean(pred[test] == y[test])))
            chosen.append(float(c_fold))
    return ProbeResult(float(np.mean(accs)), float(np.std(accs)), pred, tuple(chosen), n_train)


def control(
    x: np.ndarray, y: np.ndarray, folds: int, *, rows: np.ndarray, c: float, random_state: int = 0
) -> ProbeResult:
    """The label-permutation control: the same probe, at the layer's chosen C, trained and tested
    on labels shuffled among the images (Hewitt & Liang 2019 give each word type a random label;
    images have no types, so the labels themselves are permuted). Held out, it reads what the probe
    scores when there is nothing to find, class frequencies kept; accuracy minus it is the
    selectivity. Scored on a stratified sample of at most CONTROL_ROWS images (a shuffled task
    needs no more to read chance; its spread is then that of CONTROL_ROWS images).

    Args:
        x: (N, D) features.
        y: (len(rows),) class indices of the rows scored.
        folds: outer stratified folds.
        rows: sorted rows of `x` scored.
        c: the inverse regularisation (the real probe's).
        random_state: seed of the sample, the permutation and the folds.
    """
    import warnings

    keep = _stratified_sample(y, CONTROL_ROWS, random_state)
    shuffled = np.random.default_rng(random_state).permutation(np.asarray(y)[keep])
    folds = max(2, min(folds, int(np.bincount(shuffled).max())))
    with warnings.catch_warnings():  # a class with fewer sampled images than folds: StratifiedKFold says so, and copes
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return probe(x, shuffled, folds, rows=np.asarray(rows)[keep], c=c, random_state=random_state)


def _moments(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of a float32 array, summed in float64 chunks; a
    constant feature gets a standard deviation of 1, as in scikit-learn's StandardScaler."""
    mean, std = column_moments(t)
    std[std < 1e-8 * np.maximum(np.abs(mean), 1.0)] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)
