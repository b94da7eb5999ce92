"""What is derived from each layer's features, each result cached under the layer's key, its
settings and the versions of the libraries that compute it: the kNN graph, the scores, the
projection, and the similarity between layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..code_identity import identities
from ..config import MetricSpec, ProjectionSpec
from ..data.datasets import ImageDataset
from ..extraction.backend import FOLD_BATCHNORM
from ..extraction.latency import layer_latency, machine
from ..extraction.layer_features import ModelRun
from ..networks.cost import cut_costs
from ..networks.sources import source_of
from ..progress import StageProgress
from ..store import FeatureCache, analysis_versions, library_versions, make_key
from .alignment import MEASURES, PairScores, every_pair, permutations, prepare, resamples, sample_rows
from .compression import CompressionCurve, compression_curve
from .few_shot import FewShot, few_shot_curve
from .intrinsic import IntrinsicDimension, intrinsic_dimension
from .lanes import one_thread
from .leaderboard import LayerCost
from .logme import logme
from .neighbors import GRAPH_K, KnnGraph, knn_graph, overlap_matrix
from .probe import FALLBACK_C
from .projection import Projection
from .projection_lanes import project_layers
from .retrieval import Retrieval, retrieval_scores
from .scorers import scorer_values
from .scores import LayerScores, label_plan, score_layer
from .similarity import Similarity, cka_interval, layer_similarity
from .unseen import UnseenCurve, unseen_curve


def analysis_settings(stage: str) -> dict[str, Any]:
    """What shapes a derived result besides its inputs, part of its key: the versions of the
    libraries that compute it and the code identity of its stage (code_identity.py: the modules'
    code, their constants included)."""
    return {"versions": analysis_versions(), "code": identities(stage)}


class _Stored(Protocol):
    def to_arrays(self) -> dict[str, np.ndarray]: ...


def _layer_key(run: ModelRun, node: str, stage: str, parts: dict[str, Any]) -> str:
    """The store key of one layer's result of `stage`: its layer's key, `parts` and the stage's
    settings (versions, code)."""
    return make_key(stage, {"layer": run.store_keys[node], **parts, "settings": analysis_settings(stage)})


def _per_layer(
    run: ModelRun,
    cache: FeatureCache,
    stage: str,
    parts: dict[str, Any],
    compute: Callable[[str, np.ndarray], _Stored],
    load: Callable[[dict[str, np.ndarray]], Any],
    progress: StageProgress | None,
    title: str,
) -> dict[str, Any]:
    """One result per layer of a run, each read from the store under its layer's key, `parts`
    and the stage's settings (versions, code), or computed by `compute(node, features)` on one
    thread (one_thread) and stored."""
    out: dict[str, Any] = {}
    for i, (node, feats) in enumerate(run.features.items()):
        if progress:
            progress(title, i, len(run.features))
        key = _layer_key(run, node, stage, parts)
        got = cache.get_result(key)
        if got is None:
            with one_thread():
                result = compute(node, feats)
            cache.put_result(key, result.to_arrays())
        else:
            result = load(got)
        out[node] = result
    if progress:
        progress(title, len(run.features), len(run.features))
    return out


def graph_run(run: ModelRun, cache: FeatureCache, progress: StageProgress | None = None) -> dict[str, KnnGraph]:
    """The cosine kNN graph of every layer of a run (neighbors.py)."""
    return _per_layer(
        run,
        cache,
        "graph",
        {"k": GRAPH_K},
        lambda node, feats: knn_graph(feats, GRAPH_K),
        KnnGraph.from_arrays,
        progress,
        f"neighbour graphs {run.label}",
    )


def intrinsic_run(
    run: ModelRun, cache: FeatureCache, random_state: int = 0, progress: StageProgress | None = None
) -> dict[str, IntrinsicDimension]:
    """The intrinsic dimension (TwoNN, with its interval) and RankMe of every layer of a run (intrinsic.py)."""
    return _per_layer(
        run,
        cache,
        "intrinsic",
        {"random_state": random_state},
        lambda node, feats: intrinsic_dimension(feats, random_state=random_state),
        IntrinsicDimension.from_arrays,
        progress,
        f"intrinsic dimension {run.label}",
    )


def labels_array(dataset: ImageDataset) -> np.ndarray | None:
    return np.asarray(dataset.labels) if dataset.labels is not None else None


def _labels_part(dataset: ImageDataset, spec: MetricSpec) -> dict[str, Any]:
    """What a label metric's key holds besides its layer: the labels and the metric settings."""
    return {"labels": make_key("labels", {"labels": list(dataset.labels or [])}), "spec": spec.__dict__}


def layer_stored(
    dataset: ImageDataset,
    run: ModelRun,
    node: str,
    spec: MetricSpec,
    projection: ProjectionSpec,
    cache: FeatureCache,
    *,
    leaderboard: bool = True,
    first_only: bool = False,
) -> bool:
    """Whether a layer was analysed before (a file check each, nothing read): its scores, its
    projection (unless `none`) and, unless `first_only` (what a first view reads), the last of its
    other measures (the scorers with the leaderboard, else the unseen-class curve where there
    are labels), which a first view's run leaves to the next."""
    labels = _labels_part(dataset, spec)
    keys = [_layer_key(run, node, "scores", labels)]
    if projection.method != "none":
        keys.append(_layer_key(run, node, "projection", {"spec": projection.__dict__}))
    if not first_only and leaderboard:
        keys.append(_layer_key(run, node, "scorers", labels))
    elif not first_only and dataset.labels is not None:
        keys.append(_layer_key(run, node, "unseen", labels))
    return all(cache.has_result(k) for k in keys)


def score_run(
    dataset: ImageDataset,
    run: ModelRun,
    spec: MetricSpec,
    cache: FeatureCache,
    graphs: dict[str, KnnGraph],
    progress: StageProgress | None = None,
) -> dict[str, LayerScores]:
    """Scores of every layer of a run, keyed also by the labels and the metric settings."""
    y = labels_array(dataset)
    return _per_layer(
        run,
        cache,
        "scores",
        _labels_part(dataset, spec),
        lambda node, feats: score_layer(feats, y, spec, graphs.get(node)),
        LayerScores.from_arrays,
        progress,
        f"scoring {run.label}",
    )


def project_run(
    run: ModelRun,
    spec: ProjectionSpec,
    cache: FeatureCache,
    graphs: dict[str, KnnGraph] | None = None,
    progress: StageProgress | None = None,
) -> dict[str, Projection]:
    """Projections of every layer of a run (UMAP from the layer's kNN graph), keyed also by the
    projection settings (project_runs for one run)."""
    return project_runs([run], spec, cache, {run.label: graphs or {}}, progress)[run.label]


def project_runs(
    runs: list[ModelRun],
    spec: ProjectionSpec,
    cache: FeatureCache,
    graphs: dict[str, dict[str, KnnGraph]],
    progress: StageProgress | None = None,
) -> dict[str, dict[str, Projection]]:
    """{run label: {layer: projection}} of every layer of every run ({run label: its layers'
    graphs}). The layers not stored yet, of all the runs together, are projected first, side by
    side on both cores where that pays (projection_lanes.py), and stored; then each run's are read."""
    parts = {"spec": spec.__dict__}
    title = f"projecting ({spec.method.upper()})"
    out: dict[str, dict[str, Projection]] = {r.label: {} for r in runs}
    missing: dict[str, tuple[np.ndarray, KnnGraph | None]] = {}
    where: dict[str, tuple[str, str]] = {}
    for r in runs:
        for node, feats in r.features.items():
            key = _layer_key(r, node, "projection", parts)
            got = cache.get_result(key)  # read once: a stored projection is used as read here
            if got is not None:
                out[r.label][node] = Projection.from_arrays(got)
            else:
                missing[key] = (feats, graphs.get(r.label, {}).get(node))
                where[key] = (r.label, node)
    finished = 0

    def store(key: str, got: Projection) -> None:
        nonlocal finished
        cache.put_result(key, got.to_arrays())
        out[where[key][0]][where[key][1]] = got
        finished += 1
        if progress:
            progress(title, finished, len(missing))

    if missing:
        project_layers(missing, spec, store)
    return {r.label: {node: out[r.label][node] for node in r.features} for r in runs}


def similarity_run(
    runs: list[ModelRun],
    multi: bool,
    graphs: dict[str, KnnGraph],
    cache: FeatureCache,
    progress: StageProgress | None,
    *,
    random_state: int = 0,
) -> tuple[Similarity, np.ndarray]:
    """Plain and debiased CKA (plain with its bootstrap interval, seeded by `random_state`) and the
    neighbourhood overlap between every pair of layers, cached under the layers' keys and the seed
    (5 s of a cached 100k analysis's 8 layers otherwise, on every visit)."""
    feats = {r.key(n, multi): f for r in runs for n, f in r.features.items()}
    store_keys = [r.store_keys[n] for r in runs for n in r.features]
    key = make_key(
        "similarity",
        {
            "layers": store_keys,
            "names": list(feats),
            "settings": analysis_settings("similarity"),
            "random_state": random_state,
        },
    )
    got = cache.get_result(key)
    if got is not None and list(got["names"]) == list(feats):
        return Similarity(
            list(feats), got["cka"], got["cka_debiased"], got["cka_low"], got["cka_high"], int(got["boot_images"])
        ), got["overlap"]
    with one_thread():  # computed here or by a lane's worker (layer_lanes.py): the same numbers
        if progress:
            progress("layer similarity (CKA)", 0, 1)
        similarity = layer_similarity(feats)
        if progress:
            progress("CKA intervals", 0, 1)
        low, high, m = (
            cka_interval(feats, similarity.cka, random_state=random_state)
            if feats
            else (similarity.cka, similarity.cka, 0)
        )
        similarity = Similarity(similarity.names, similarity.cka, similarity.cka_debiased, low, high, m)
        if progress:
            progress("neighbourhood overlap", 0, 1)
        overlap = overlap_matrix({k: graphs[k] for k in similarity.names})
    cache.put_result(
        key,
        {
            "names": np.array(similarity.names, dtype=str),
            "cka": similarity.cka,
            "cka_debiased": similarity.cka_debiased,
            "cka_low": low,
            "cka_high": high,
            "boot_images": np.array(m),
            "overlap": overlap,
        },
    )
    return similarity, overlap


def alignment_run(
    runs: list[ModelRun],
    multi: bool,
    labels: np.ndarray | None,
    cache: FeatureCache,
    progress: StageProgress | None,
    *,
    random_state: int = 0,
) -> dict[tuple[str, str], PairScores]:
    """CKA, CKNNA, mutual kNN and RSA of every pair of layers on one sample, each with its
    permutation null (alignment.py), cached under the layers' keys, the labels and the seed."""
    feats = {r.key(n, multi): f for r in runs for n, f in r.features.items()}
    names = list(feats)
    key = make_key(
        "alignment",
        {
            "layers": [r.store_keys[n] for r in runs for n in r.features],
            "names": names,
            "labels": make_key("labels", {"labels": [] if labels is None else labels.tolist()}),
            "settings": analysis_settings("alignment"),
            "random_state": random_state,
        },
    )
    got = cache.get_result(key)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    if got is not None and list(got["names"]) == names:
        return {
            pair: PairScores(
                {m: float(got["score"][j, k]) for k, m in enumerate(MEASURES)},
                {m: got["null"][j, k] for k, m in enumerate(MEASURES)},
                {m: got["boot"][j, k] for k, m in enumerate(MEASURES)},
                int(got["sample"]),
            )
            for j, pair in enumerate(pairs)
        }
    rows = sample_rows(len(next(iter(feats.values()))) if feats else 0, labels, random_state=random_state)
    perms = permutations(len(rows), random_state=random_state)
    boots = resamples(len(rows), random_state=random_state)
    prepared = {}
    for i, name in enumerate(names):
        if progress:
            progress("similarity measures", i, len(names) + len(pairs) + len(boots))
        with one_thread():
            prepared[name] = prepare(np.asarray(feats[name][rows], dtype=np.float32))
    steps = len(names) + len(pairs) + len(boots)
    with one_thread():  # computed here or by a lane's worker (layer_lanes.py): the same numbers
        out = every_pair(
            prepared,
            pairs,
            perms,
            boots,
            (lambda done, _: progress("similarity measures", len(names) + done, steps)) if progress else None,
        )
    cache.put_result(
        key,
        {
            "names": np.array(names, dtype=str),
            "score": np.array([[out[p].score[m] for m in MEASURES] for p in pairs]).reshape(len(pairs), len(MEASURES)),
            "null": np.array([[out[p].null[m] for m in MEASURES] for p in pairs]).reshape(
                len(pairs), len(MEASURES), len(perms)
            ),
            "boot": np.array([[out[p].boot[m] for m in MEASURES] for p in pairs]).reshape(
                len(pairs), len(MEASURES), len(boots)
            ),
            "sample": np.array(len(rows)),
        },
    )
    return out


class _Value:
    """One number as a stored result."""

    def __init__(self, value: float | None) -> None:
        self.value = value

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"value": np.array(np.nan if self.value is None else self.value)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> _Value:
        v = float(a["value"])
        return cls(None if np.isnan(v) else v)


def _scored_classes_run(
    dataset: ImageDataset,
    run: ModelRun,
    spec: MetricSpec,
    cache: FeatureCache,
    stage: str,
    score: Callable[[np.ndarray, np.ndarray], Any],
    stored: type,
    progress: StageProgress | None,
    title: str,
) -> dict[str, Any]:
    """`stored(score(x, y))` of every layer of a run for the classes the probe scores (x those
    images' features, y their classes), `stored(None)` without labels; cached per layer."""
    plan = label_plan(labels_array(dataset), spec.folds)

    def compute(node: str, feats: np.ndarray) -> Any:
        if plan.note:
            return stored(None)
        x = feats if len(plan.rows) == feats.shape[0] else feats[plan.rows]  # a copy only when classes are left out
        return stored(score(x, plan.y))

    return _per_layer(run, cache, stage, _labels_part(dataset, spec), compute, stored.from_arrays, progress, title)


def logme_run(
    dataset: ImageDataset, run: ModelRun, spec: MetricSpec, cache: FeatureCache, progress: StageProgress | None = None
) -> dict[str, float | None]:
    """LogME of every layer of a run (logme.py) for the classes the probe scores; None without labels."""
    got = _scored_classes_run(dataset, run, spec, cache, "logme", logme, _Value, progress, f"LogME {run.label}")
    return {n: v.value for n, v in got.items()}


class _Scores:
    """A layer's training-free scores (scorers.py) as a stored result; NaN where not applicable."""

    NAMES = ("h_score", "transrate")

    def __init__(self, values: dict[str, float] | None) -> None:
        self.values = values

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {n: np.array(np.nan if self.values is None else self.values[n]) for n in self.NAMES}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> _Scores:
        values = {n: float(a[n]) for n in cls.NAMES}
        return cls(None if all(np.isnan(v) for v in values.values()) else values)


def scorers_run(
    dataset: ImageDataset, run: ModelRun, spec: MetricSpec, cache: FeatureCache, progress: StageProgress | None = None
) -> dict[str, dict[str, float] | None]:
    """The regularised H-score and TransRate of every layer of a run (scorers.py) for the classes
    the probe scores; None without labels."""
    got = _scored_classes_run(
        dataset, run, spec, cache, "scorers", scorer_values, _Scores, progress, f"scorers {run.label}"
    )
    return {n: v.values for n, v in got.items()}


class _Absent:
    """A stored "not applicable" (no labels, too few classes), so it is not computed again."""

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"absent": np.array(True)}


def _new_class_run(
    dataset: ImageDataset,
    run: ModelRun,
    spec: MetricSpec,
    cache: FeatureCache,
    stage: str,
    compute: Callable[[np.ndarray, np.ndarray], _Stored | None],
    load: Callable[[dict[str, np.ndarray]], Any],
    progress: StageProgress | None,
    title: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new-class measure of every layer of a run, on every labelled image (None where it does
    not apply: no labels, too few classes); `extra`: what else its key holds."""
    if dataset.labels is None:
        return {n: None for n in run.features}
    y = np.unique(np.asarray(dataset.labels), return_inverse=True)[1]
    got = _per_layer(
        run,
        cache,
        stage,
        {**_labels_part(dataset, spec), **(extra or {})},
        lambda node, feats: compute(feats, y) or _Absent(),
        lambda a: None if "absent" in a else load(a),
        progress,
        title,
    )
    return {n: (None if isinstance(v, _Absent) else v) for n, v in got.items()}


def retrieval_run(
    dataset: ImageDataset, run: ModelRun, spec: MetricSpec, cache: FeatureCache, progress: StageProgress | None = None
) -> dict[str, Retrieval | None]:
    """Retrieval and verification of every layer of a run (retrieval.py)."""
    return _new_class_run(
        dataset,
        run,
        spec,
        cache,
        "retrieval",
        lambda x, y: retrieval_scores(x, y, random_state=spec.random_state),
        Retrieval.from_arrays,
        progress,
        f"retrieval {run.label}",
    )


def few_shot_run(
    dataset: ImageDataset,
    run: ModelRun,
    spec: MetricSpec,
    cache: FeatureCache,
    scores: dict[str, LayerScores],
    progress: StageProgress | None = None,
) -> dict[str, FewShot | None]:
    """The few-shot curve of every layer of a run (few_shot.py): the probe at each layer's C, and
    at `all` the layer's cross-validated probe's out-of-fold predictions."""
    c = {n: scores[n].probe_c or FALLBACK_C for n in run.features}
    out: dict[str, FewShot | None] = {}
    for node in run.features:  # one layer at a time: each has its own C in its key
        out |= _new_class_run(
            dataset,
            _some_layers(run, [node]),
            spec,
            cache,
            "few_shot",
            lambda x, y, node=node: few_shot_curve(
                x, y, c=c[node], held_out=scores[node].predicted, random_state=spec.random_state
            ),
            FewShot.from_arrays,
            None,
            "",
            {"c": c[node]},
        )
        if progress:
            progress(f"few-shot curves {run.label}", len(out), len(run.features))
    return out


def unseen_run(
    dataset: ImageDataset, run: ModelRun, spec: MetricSpec, cache: FeatureCache, progress: StageProgress | None = None
) -> dict[str, UnseenCurve | None]:
    """The unseen-class compression curve of every layer of a run (unseen.py)."""
    return _new_class_run(
        dataset,
        run,
        spec,
        cache,
        "unseen",
        lambda x, y: unseen_curve(x, y, random_state=spec.random_state),
        UnseenCurve.from_arrays,
        progress,
        f"unseen-class compression {run.label}",
    )


def _some_layers(run: ModelRun, nodes: list[str]) -> ModelRun:
    """The run with only these layers' features."""
    return ModelRun(
        run.label,
        run.spec,
        run.weights,
        run.profile,
        run.device,
        run.precision,
        run.store_keys,
        run.nodes,
        {n: run.features[n] for n in nodes},
    )


def compression_run(
    dataset: ImageDataset,
    run: ModelRun,
    spec: MetricSpec,
    cache: FeatureCache,
    scores: dict[str, LayerScores],
    progress: StageProgress | None = None,
) -> dict[str, CompressionCurve | None]:
    """The compression curve of every layer of a run (compression.py), at each layer's probe C;
    None where the layer has no probe (no labels)."""
    plan = label_plan(labels_array(dataset), spec.folds)
    out: dict[str, CompressionCurve | None] = {n: None for n in run.features}
    scored = [n for n in run.features if scores[n].probe_c is not None and not plan.note]
    if not scored:
        return out

    def compute(node: str, feats: np.ndarray) -> CompressionCurve:
        return compression_curve(
            feats,
            plan.y,
            plan.folds,
            rows=plan.rows,
            c=scores[node].probe_c,  # type: ignore[arg-type]
            random_state=spec.random_state,
        )

    for i, node in enumerate(scored):  # one layer at a time: each has its own C in its key
        if progress:
            progress(f"compression curves {run.label}", i, len(scored))
        parts = {**_labels_part(dataset, spec), "c": scores[node].probe_c}
        out |= _per_layer(
            _some_layers(run, [node]), cache, "compression", parts, compute, CompressionCurve.from_arrays, None, ""
        )
    if progress:
        progress(f"compression curves {run.label}", len(scored), len(scored))
    return out


def _device_here(device: str) -> bool:
    """Whether this process can time a model on `device` (a Ray cluster's GPUs may not be on the driver)."""
    if device == "cpu":
        return True
    import torch

    return (
        torch.cuda.is_available()
        if device == "cuda"
        else bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    )


def _build_context(run: ModelRun) -> dict[str, Any]:
    """What shapes the time a run's model takes, as the extraction builds it (not its weights' values)."""

    src = source_of(run.spec.model)
    return {
        "model": run.spec.model,
        "source": src.name,
        "architecture": src.architecture(run.spec.model),
        "input_size": run.profile.input_size,
        "pooling": run.spec.pooling,
        "token_pooling": run.spec.token_pooling,
        "precision": run.precision,
        "device": run.device,
        "fold_batchnorm": FOLD_BATCHNORM,
        "libraries": library_versions(),
    }


def cost_run(
    run: ModelRun, cache: FeatureCache, *, latency: bool = True, progress: StageProgress | None = None
) -> dict[str, LayerCost]:
    """What cutting the run at each of its layers costs: parameters and GFLOPs up to the layer
    (networks/cost.py, counted on the meta device) and, with `latency`, the milliseconds per image
    up to it measured here at batch 1 and 32 (extraction/latency.py), cached per model build and
    machine; not measured (None) where this process lacks the run's device.
    """

    nodes = list(run.nodes.values())
    counted = cut_costs(run.spec.model, nodes)
    times: dict[str, tuple[float, float]] = {}
    if latency and _device_here(run.device):
        key = make_key(
            "latency",
            {**_build_context(run), "nodes": nodes, "machine": machine(), "code": identities("extract", "latency")},
        )
        got = cache.get_result(key)
        if got is not None and list(got["nodes"]) == nodes:
            times = {n: (float(a), float(b)) for n, a, b in zip(nodes, got["b1"], got["b32"])}
        else:
            if progress:
                progress(f"timing {run.label}", 0, 1)
            times = layer_latency(
                run.spec,
                run.weights,
                nodes,
                device=run.device,
                precision=run.precision,
                input_size=run.profile.input_size,
            )
            cache.put_result(
                key,
                {
                    "nodes": np.array(nodes, dtype=str),
                    "b1": np.array([times[n][0] for n in nodes]),
                    "b32": np.array([times[n][1] for n in nodes]),
                },
            )
    out = {}
    for layer, node in run.nodes.items():
        t = times.get(node)
        out[layer] = LayerCost(counted[node].params, counted[node].gflops, t[0] if t else None, t[1] if t else None)
    return out
