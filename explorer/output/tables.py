"""A comparison's results as tidy DataFrames: what the CSV files hold (export.py writes them) and
what the Python API's Comparison methods return."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..analysis import per_run
from ..analysis.alignment import ALPHA, MEASURES, calibrate, max_null, p_value
from ..analysis.few_shot import shots_name

if TYPE_CHECKING:
    from ..record import Comparison

SIMILARITY_KINDS = ("cka", "cka_debiased", "overlap")


def compression_table(comp: Comparison) -> pd.DataFrame:
    """One row per (model, layer, k): the probe on the top k principal components and on a random
    projection to k dimensions."""
    rows = []
    for run in comp.runs:
        for layer in run.features:
            curve = comp.compression.get(run.key(layer, comp.multi))
            if curve is None:
                continue
            for k, pca, rnd in zip(curve.ks.tolist(), curve.pca_acc.tolist(), curve.random_acc.tolist()):
                rows.append((run.label, layer, k, pca, rnd, curve.n_images))
    return pd.DataFrame(rows, columns=["model", "layer", "k", "probe_acc", "random_projection_acc", "n_images"])


RETRIEVAL_COLUMNS = [
    "model", "layer", "precision_at_1", "map_at_r", "r_precision", "map_at_r_low", "map_at_r_high",
    "verification_auc", "tar_at_far_0.01", "queries", "images", "pairs", "sampled",
]  # fmt: skip
FEW_SHOT_COLUMNS = ["model", "layer", "shots", "method", "accuracy", "accuracy_low", "accuracy_high", "episodes"]
UNSEEN_COLUMNS = [
    "model", "layer", "projection", "k", "map_at_r", "map_at_r_low", "map_at_r_high", "precision_at_1",
    "seen_classes", "unseen_classes", "queries", "images",
]  # fmt: skip


def _layers(comp: Comparison):  # type: ignore[no-untyped-def]
    """(model label, layer, layer key) of every layer, in order."""
    return ((run.label, layer, run.key(layer, comp.multi)) for run in comp.runs for layer in run.features)


ALIGNMENT_COLUMNS = [
    "model_a", "layer_a", "model_b", "layer_b", "measure", "score", "null_mean", "null_p95", "calibrated", "low",
    "high", "inside_null", "sample", "p_value",
]  # fmt: skip


def alignment_table(comp: Comparison) -> pd.DataFrame:
    """similarity.csv: one row per pair of layers and measure (analysis/alignment.py): the score on
    the sample, its permutation null's mean and edge (`null_p95`: the 95th percentile of a
    similarity, the 5th of the distance `procrustes`), the calibrated score, the bootstrap interval
    (`low`, `high`), whether it is inside the null (its permutation `p_value` above 0.05) and the
    sample's size. Across models, a row with `layer_b` = `*` is layer_a's most similar layer of
    model_b, against the null of the best over model_b's layers (no interval)."""
    owner = {r.key(n, comp.multi): (r.label, n) for r in comp.runs for n in r.features}
    rows = []

    def add(names: tuple, measure: str, score: float, draws: np.ndarray, interval: tuple, sample: int) -> None:
        _, mean, edge, calibrated_score = calibrate(measure, score, draws)
        p = p_value(measure, score, draws)
        rows.append((*names, measure, score, mean, edge, calibrated_score, *interval, p > ALPHA, sample, p))

    for (a, b), pair in comp.alignment.items():
        for m in MEASURES:
            add((*owner[a], *owner[b]), m, pair.score[m], pair.null[m], pair.interval(m), pair.sample)
    if comp.multi:
        for ka, (model_a, layer_a) in owner.items():
            for run in comp.runs:
                if run.label == model_a:
                    continue
                pairs = [comp.alignment.get((ka, kb)) or comp.alignment.get((kb, ka)) for kb in comp.layer_keys(run)]
                pairs = [p for p in pairs if p is not None]
                for m in MEASURES if pairs else ():
                    best, draws = max_null(pairs, m)
                    add((model_a, layer_a, run.label, "*"), m, best, draws, (np.nan, np.nan), pairs[0].sample)
    return pd.DataFrame(rows, columns=ALIGNMENT_COLUMNS)


DIMENSION_COLUMNS = [
    "model", "layer", "node", "dim", "eff_dim", "twonn_id", "twonn_low", "twonn_high", "rankme", "twonn_sample",
    "minimum",
]  # fmt: skip


def dimension_table(comp: Comparison) -> pd.DataFrame:
    """One row per (model, layer): its width, effective dimension (participation ratio), intrinsic
    dimension by TwoNN with its 95 % interval and sample, RankMe, and whether the layer is its
    model's TwoNN minimum (analysis/intrinsic.py)."""
    rows = []
    for run in comp.runs:
        keys = [(layer, run.key(layer, comp.multi)) for layer in run.features]
        ids = [comp.intrinsic[k].twonn if k in comp.intrinsic else np.nan for _, k in keys]
        lowest = int(np.nanargmin(ids)) if not np.all(np.isnan(ids)) else -1
        for i, (layer, key) in enumerate(keys):
            s, d = comp.scores[key], comp.intrinsic.get(key)
            rows.append(
                (
                    run.label,
                    layer,
                    run.nodes[layer],
                    s.dim,
                    s.eff_dim,
                    d and d.twonn,
                    d and d.twonn_low,
                    d and d.twonn_high,
                    d and d.rankme,
                    d and d.sample,
                    i == lowest,
                )
            )
    return pd.DataFrame(rows, columns=DIMENSION_COLUMNS)


def retrieval_table(comp: Comparison) -> pd.DataFrame:
    """One row per (model, layer): retrieval (precision@1, MAP@R with its interval, R-precision)
    and verification (ROC AUC, TAR at FAR 0.01) by cosine on the pooled features, with the queries,
    images and pairs scored and whether they were sampled (analysis/retrieval.py)."""
    rows = []
    for model, layer, key in _layers(comp):
        r = comp.retrieval_scores.get(key)
        if r is not None:
            rows.append(
                (
                    model,
                    layer,
                    r.precision_at_1,
                    r.map_at_r,
                    r.r_precision,
                    r.map_at_r_low,
                    r.map_at_r_high,
                    r.verification_auc,
                    r.tar_at_far,
                    r.queries,
                    r.images,
                    r.pairs,
                    r.sampled,
                )
            )
    return pd.DataFrame(rows, columns=RETRIEVAL_COLUMNS)


def few_shot_table(comp: Comparison) -> pd.DataFrame:
    """One row per (model, layer, shots, method): the mean accuracy over the episodes with its 95 %
    interval (analysis/few_shot.py); `shots` is 1, 2, 5, 10, 20 or all."""
    rows = []
    for model, layer, key in _layers(comp):
        f = comp.few_shot_curves.get(key)
        if f is None:
            continue
        for i in range(len(f.shots)):
            rows.append(
                (
                    model,
                    layer,
                    shots_name(int(f.shots[i])),
                    str(f.method[i]),
                    f.accuracy[i],
                    f.low[i],
                    f.high[i],
                    int(f.episodes[i]),
                )
            )
    return pd.DataFrame(rows, columns=FEW_SHOT_COLUMNS)


def unseen_table(comp: Comparison) -> pd.DataFrame:
    """One row per (model, layer, projection, k): retrieval on the half of the classes the
    projection never saw (analysis/unseen.py); projection `none` is the layer unprojected."""
    rows = []
    for model, layer, key in _layers(comp):
        u = comp.unseen_curves.get(key)
        if u is None:
            continue
        seen, unseen = len(u.seen), len(u.unseen)
        for i in range(len(u.k)):
            rows.append(
                (
                    model,
                    layer,
                    str(u.method[i]),
                    int(u.k[i]),
                    u.map_at_r[i],
                    u.map_at_r_low[i],
                    u.map_at_r_high[i],
                    u.precision_at_1[i],
                    seen,
                    unseen,
                    u.queries,
                    u.images,
                )
            )
    return pd.DataFrame(rows, columns=UNSEEN_COLUMNS)


def layer_matrix(comp: Comparison, kind: str = "cka") -> pd.DataFrame:
    """The square matrix of `kind` (cka, cka_debiased or overlap) between every pair of layer keys."""
    if kind not in SIMILARITY_KINDS:
        raise ValueError(f"similarity {kind!r} is not one of {', '.join(SIMILARITY_KINDS)}")
    sim = comp.layer_similarity
    matrix = {"cka": sim.cka, "cka_debiased": sim.cka_debiased, "overlap": comp.overlap}[kind]
    return pd.DataFrame(matrix, index=pd.Index(sim.names, name="layer"), columns=sim.names)


def similarity_pairs(comp: Comparison) -> pd.DataFrame:
    """One row per pair of layer keys: plain CKA with its 95 % bootstrap interval over the images,
    debiased CKA, neighbourhood overlap, and how many images the bootstrap resampled."""
    sim = comp.layer_similarity
    a, b = np.triu_indices(len(sim.names), k=1)
    low = sim.cka_low if sim.cka_low is not None else np.full_like(sim.cka, np.nan)
    high = sim.cka_high if sim.cka_high is not None else np.full_like(sim.cka, np.nan)
    return pd.DataFrame(
        {
            "layer_a": [sim.names[i] for i in a],
            "layer_b": [sim.names[j] for j in b],
            "cka": sim.cka[a, b],
            "cka_low": low[a, b],
            "cka_high": high[a, b],
            "cka_debiased": sim.cka_debiased[a, b],
            "overlap": comp.overlap[a, b],
            "bootstrap_images": sim.boot_images,
            "images": len(comp.dataset),
        }
    )


def _label_column(comp: Comparison) -> Sequence[str]:
    return comp.dataset.labels if comp.dataset.labels is not None else [""] * len(comp.dataset)


def movers_table(comp: Comparison) -> pd.DataFrame:
    """One row per image: the share of its 10 nearest neighbours that changed between each pair of
    consecutive layers of each model, and the first layer where most of its 5 nearest neighbours
    share its class (`never`; no such column without labels)."""
    cols: dict[str, object] = {"file": comp.dataset.names, "label": _label_column(comp)}
    for run in comp.runs:
        mv = per_run.movers(comp, run)
        for j in range(len(mv.layers) - 1):
            cols[f"changed {mv.layers[j]} -> {mv.layers[j + 1]}"] = mv.changed[:, j]
        if comp.dataset.labels is not None:
            names = np.array([*mv.layers, "never"], dtype=object)
            cols[f"first agreeing layer ({run.label})"] = names[mv.first_agreeing]  # NEVER (-1) is the last
    return pd.DataFrame(cols)


def class_pairs_table(comp: Comparison) -> pd.DataFrame:
    """One row per pair of classes: at each layer of each model, the share of the two classes'
    images the probe takes for the other (out of fold), and the first layer where that share is
    under 5 % (`never`)."""
    classes = comp.dataset.classes
    a, b = np.triu_indices(len(classes), k=1)
    cols: dict[str, object] = {"class_a": [classes[i] for i in a], "class_b": [classes[i] for i in b]}
    for run in comp.runs:
        pairs = per_run.class_pairs(comp, run)
        if pairs is None:
            continue
        for j, layer in enumerate(pairs.layers):
            cols[f"confused {layer}"] = pairs.confusion[j][a, b]
        names = np.array([*pairs.layers, "never"], dtype=object)
        cols[f"first apart ({run.label})"] = names[pairs.first_apart[a, b]]
    return pd.DataFrame(cols)


def emergence_table(comp: Comparison, selected: Sequence[int]) -> pd.DataFrame:
    """Per model and layer, the out-of-fold accuracy of the probe that tells the selected images
    from the rest (balanced: chance 0.5)."""
    rows = []
    for run in comp.runs:
        got = per_run.emergence(comp, run, selected)
        for layer, acc, std in zip(got.layers, got.accuracy, got.accuracy_std):
            rows.append((run.label, layer, acc, std, got.n_selected, got.n_used))
    return pd.DataFrame(rows, columns=["model", "layer", "accuracy", "accuracy_std", "n_selected", "n_used"])


def projection_frame(comp: Comparison, key: str, coords: np.ndarray | None = None) -> pd.DataFrame:
    """One layer's projection: index, path, label, x, y (and z), one row per image."""
    ds = comp.dataset
    xy = comp.projections[key].coords if coords is None else coords
    df = pd.DataFrame({"index": np.arange(len(ds)), "path": ds.names, "label": _label_column(comp)})
    for i, axis in enumerate("xyz"[: xy.shape[1]]):
        df[axis] = xy[:, i]
    return df
