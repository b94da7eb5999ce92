"""From a dataset and model specs to features, scores, CKA and projections (cached at each step)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import layers as layers_mod
from . import models
from . import neighbors, probe, projection as projection_mod
from .cache import FeatureCache, LayerWriter, analysis_versions, library_versions, make_key
from .config import ExtractSpec, MetricSpec, ProjectionSpec
from .datasets import ImageDataset
from .extract import BatchDecoder, Cancelled, FeatureExtractor, resolve_device, resolve_precision, run_batches, spans
from .metrics import LayerScores, score_layer
from .neighbors import GRAPH_K, KnnGraph, knn_graph, overlap_matrix
from .projection import Projection, align_chain, project
from .similarity import Similarity, layer_similarity
from .weights import ResolvedWeights

if TYPE_CHECKING:
    from .distributed import RayEngine

log = logging.getLogger(__name__)

CHUNK = 256  # images per resumable chunk of an extraction
FOLD_BATCHNORM = True  # fold.py: part of every layer's cache key
StageProgress = Callable[[str, int, int], None]
ShouldStop = Callable[[], bool]

METRIC_COLUMNS = [
    "model", "layer", "node", "depth", "dim", "full_size", "bottleneck", "probe_acc", "probe_acc_std",
    "probe_c", "probe_train", "knn_acc", "knn_recall", "silhouette", "eff_dim", "n90",
]  # fmt: skip


@dataclass
class ModelRun:
    """One model's extraction: its resolved settings and {node: features}."""

    label: str
    spec: ExtractSpec
    weights: ResolvedWeights
    profile: layers_mod.LayerProfile
    device: str
    precision: str
    layer_keys: dict[str, str]
    nodes: dict[str, str] = field(default_factory=dict)  # {layer as the user named it: FX node it resolved to}
    features: dict[str, np.ndarray] = field(default_factory=dict)  # by the user's layer names, memory-mapped
    computed: int = 0  # images that went through the model (0: every layer came from the cache)

    def key(self, node: str, multi: bool) -> str:
        return f"{self.label}:{node}" if multi else node

    def without_rows(self, rows: Sequence[int]) -> None:
        """Leave out the given image rows (images that could not be decoded) from every layer's
        features (a copy in memory of the rows kept), and key the results derived from them apart."""
        drop = np.asarray(sorted(rows), dtype=np.int64)
        self.features = {n: np.delete(f, drop, axis=0) for n, f in self.features.items()}
        self.layer_keys = {n: make_key("rows", {"layer": k, "without": drop.tolist()}) for n, k in self.layer_keys.items()}


@dataclass
class Comparison:
    """Everything a report or the dashboard shows."""

    dataset: ImageDataset
    runs: list[ModelRun]
    metrics: pd.DataFrame
    scores: dict[str, LayerScores]
    similarity: Similarity
    overlap: np.ndarray  # neighbourhood overlap between layers, in the order of similarity.names
    graphs: dict[str, KnnGraph]
    projections: dict[str, Projection]
    projection_spec: ProjectionSpec
    metric_spec: MetricSpec

    @property
    def multi(self) -> bool:
        return len(self.runs) > 1

    @property
    def chance_accuracy(self) -> float | None:
        """The accuracy of always answering the most frequent class (None: fewer than 2 classes)."""
        counts = self.dataset.class_counts
        return max(counts.values()) / sum(counts.values()) if len(counts) >= 2 else None

    @property
    def cka_names(self) -> list[str]:
        return self.similarity.names

    @property
    def cka(self) -> np.ndarray:
        """Plain linear CKA (see similarity.Similarity for the debiased one)."""
        return self.similarity.cka

    def neighbours(self, key: str, index: int, k: int = 6) -> np.ndarray:
        """The k images nearest (cosine) to image `index` in layer `key`, nearest first."""
        return self.graphs[key].indices[index, :k]

    def panels(self, align: bool = False) -> dict[str, np.ndarray]:
        """{layer key: projection coords} in depth order, optionally Procrustes-aligned panel to panel."""
        keys = list(self.projections)
        coords = [self.projections[k].coords for k in keys]
        if align and coords and coords[0].shape[1] == 2:
            coords = align_chain(coords)
        return dict(zip(keys, coords))

    def features(self) -> dict[str, np.ndarray]:
        """{layer key: features} over all runs, in order."""
        return {r.key(n, self.multi): f for r in self.runs for n, f in r.features.items()}


def parse_layers(model_names: Sequence[str], layers_arg: str) -> dict[str, tuple[str, ...]]:
    """Split a `--layers` value among models.

    Args:
        model_names: the models being compared.
        layers_arg: `auto`, `a,b,c` (one model) or `model:node,...` (any number of models).

    Returns:
        {model: nodes}; an empty tuple means the model's default spread.
    """
    out: dict[str, list[str]] = {m: [] for m in model_names}
    if layers_arg.strip() in ("", "auto"):
        return {m: () for m in model_names}
    for item in (s.strip() for s in layers_arg.split(",")):
        if not item:
            continue
        model, sep, node = item.partition(":")
        if sep and model in out:
            out[model].append(node)
        elif len(model_names) == 1:
            out[model_names[0]].append(item)
        else:
            raise ValueError(
                f"layer {item!r}: with several models name layers as model:node (e.g. {model_names[0]}:flatten) or use auto"
            )
    return {m: tuple(v) for m, v in out.items()}


def _context(dataset: ImageDataset, spec: ExtractSpec, w: ResolvedWeights, transform: Any, device: str, precision: str) -> dict:
    return {
        "dataset": dataset.content_hash,
        "n_images": len(dataset),
        "model": spec.model,
        "weights": w.identity,
        "preprocessing": repr(transform),
        "pooling": spec.pooling,
        "token_pooling": spec.token_pooling,
        "precision": precision,
        "graph": "batchnorm folded" if FOLD_BATCHNORM else "as traced",  # folded features differ in rounding
        "device": device,
        "libraries": library_versions(),
    }


def extract_features(
    dataset: ImageDataset,
    spec: ExtractSpec,
    *,
    cache: FeatureCache,
    label: str | None = None,
    progress: StageProgress | None = None,
    should_stop: ShouldStop | None = None,
    max_pixels: int = 64_000_000,
    ray: RayEngine | None = None,
) -> ModelRun:
    """Features of every chosen layer, from the cache where possible, else in one pass.

    Layers already cached never touch the model; the rest run together, chunk by chunk, each
    chunk stored as it finishes so an interrupted extraction resumes where it stopped.

    Args:
        dataset: the images.
        spec: model, weights, layers (empty: defaults), pooling, precision, device.
        cache: the feature store.
        label: the run's name in layer keys (default: the model name).
        progress: called with (stage, done, total).
        should_stop: polled between batches; True raises extract.Cancelled.
        max_pixels: pixel-bomb limit for decoding.
        ray: run the forward passes on a Ray cluster (distributed.py) instead of in this process;
            the features go to the same store under the same keys.

    Returns:
        A ModelRun with features for every chosen layer.
    """

    profile = layers_mod.profile(spec.model)
    names = resolve_names(profile, spec.layers or profile.default)
    spec = spec.replace(layers=tuple(names))
    weights = models.resolve_weights(spec.model, spec.weights, random_state=spec.random_state)
    transform = models.transforms(spec.model, weights.tv_weights)
    if ray is not None:
        device, precision = ray.device_and_precision(spec)
    else:
        device = resolve_device(spec.device)
        precision = resolve_precision(spec.precision, device)
    ctx = _context(dataset, spec, weights, transform, device, precision)
    keys = {name: make_key("layer", {**ctx, "layer": node}) for name, node in names.items()}  # the node is the identity
    run = ModelRun(label or spec.model, spec, weights, profile, device, precision, keys, names)
    for name in names:
        got = cache.get(keys[name])
        if got is not None and got.shape[0] == len(dataset):
            run.features[name] = got
    missing = [name for name in names if name not in run.features]
    if not missing:
        log.info("%s: all %d layers from the cache", run.label, len(names))
        return run
    run_key = make_key("run", {**ctx, "layers": missing, "chunk": CHUNK})
    total = len(dataset)
    bounds = [(s, min(s + CHUNK, total)) for s in range(0, total, CHUNK)]
    writer = cache.writer(run_key, missing, total)
    todo = [(s, e) for s, e in bounds if s not in writer.done]
    if todo:
        fill = ray.extract if ray is not None else _extract_here
        try:
            fill(dataset, run, [names[n] for n in missing], todo, writer, transform,
                 progress=progress, should_stop=should_stop, max_pixels=max_pixels)  # fmt: skip
        except BaseException:
            if not cache.keep_partial:
                writer.discard()
            raise
    elif progress:
        progress(f"extracting {run.label}", total, total)
    _record_unreadable(cache, dataset, max_pixels, writer.unreadable)  # before the features: these imply it
    writer.finish({n: cache.layer_path(keys[n]) for n in missing})
    for n in missing:
        got = cache.get(keys[n])
        if got is None:
            raise RuntimeError(f"the features of {n} could not be read back from {cache.layer_path(keys[n])}")
        run.features[n] = got
    run.features = {n: run.features[n] for n in names}  # execution order, cached or not
    return run


def _similarity_run(
    runs: list[ModelRun], multi: bool, graphs: dict[str, KnnGraph], cache: FeatureCache, progress: StageProgress | None
) -> tuple[Similarity, np.ndarray]:
    """Plain and debiased CKA and the neighbourhood overlap between every pair of layers, cached
    under the layers' keys (5 s of a cached 100k analysis's 8 layers otherwise, on every visit)."""
    feats = {r.key(n, multi): f for r in runs for n, f in r.features.items()}
    layer_keys = [r.layer_keys[n] for r in runs for n in r.features]
    key = make_key("similarity", {"layers": layer_keys, "names": list(feats), "settings": analysis_settings("neighbors")})
    got = cache.get_result(key)
    if got is not None and list(got["names"]) == list(feats):
        return Similarity(list(feats), got["cka"], got["cka_debiased"]), got["overlap"]
    if progress:
        progress("layer similarity (CKA)", 0, 1)
    similarity = layer_similarity(feats)
    if progress:
        progress("neighbourhood overlap", 0, 1)
    overlap = overlap_matrix({k: graphs[k] for k in similarity.names})
    cache.put_result(key, {"names": np.array(similarity.names, dtype=str), "cka": similarity.cka,
                           "cka_debiased": similarity.cka_debiased, "overlap": overlap})  # fmt: skip
    return similarity, overlap


def _unreadable_key(dataset: ImageDataset, max_pixels: int) -> str:
    return make_key("unreadable", {"dataset": dataset.content_hash, "max_pixels": max_pixels})


def _record_unreadable(cache: FeatureCache, dataset: ImageDataset, max_pixels: int, found: dict[int, str]) -> None:
    """Add the images an extraction could not decode to the dataset's record (written even when
    empty: a run whose features are cached finds the record beside them)."""
    known = unreadable_images(cache, dataset, max_pixels)
    if known and not set(found) - set(known):
        return
    merged = sorted((known | found).items())
    cache.put_result(_unreadable_key(dataset, max_pixels), {
        "rows": np.array([r for r, _ in merged], dtype=np.int64), "reasons": np.array([w for _, w in merged], dtype=str),
    })  # fmt: skip


def unreadable_images(cache: FeatureCache, dataset: ImageDataset, max_pixels: int) -> dict[int, str]:
    """{row: reason} of the dataset's images that passed the header check but could not be decoded
    by any extraction so far."""
    got = cache.get_result(_unreadable_key(dataset, max_pixels))
    if got is None:
        return {}
    return {int(r): str(w) for r, w in zip(got["rows"], got["reasons"])}


SCORES_SCHEMA = 2  # what a cached scores result holds (2: + out-of-fold predictions)
_SCORE_FIELDS = ("dim", "probe_acc", "probe_acc_std", "knn_acc", "silhouette", "eff_dim", "n90", "probe_c", "probe_train", "knn_recall")


def _extract_here(
    dataset: ImageDataset,
    run: ModelRun,
    nodes: list[str],
    todo: list[tuple[int, int]],
    writer: LayerWriter,
    transform: Any,
    *,
    progress: StageProgress | None,
    should_stop: ShouldStop | None,
    max_pixels: int,
) -> None:
    """Run the chunks `todo` through the model in this process, into `writer` (`nodes`: the FX
    node of each of `writer.nodes`, in order)."""
    import torch

    spec, total = run.spec, len(dataset)
    rows = [r for s, e in todo for r in range(s, e)]  # the dataset row of each item decoded here
    items = [dataset.items[r] for r in rows]
    if progress:
        progress(f"loading {spec.model}", 0, 1)
    # one decoder across chunk boundaries; on a GPU it starts now, while the model is built
    with BatchDecoder(
        items, transform, spans(len(items), spec.batch_size, CHUNK), max_pixels=max_pixels,
        workers=torch.get_num_threads(), background=run.device != "cpu",
    ) as batches:  # fmt: skip
        extractor = FeatureExtractor(
            models.build_model(spec.model, run.weights), nodes, model_name=spec.model, pooling=spec.pooling,
            token_pooling=spec.token_pooling, device=run.device, precision=run.precision, fold_bn=FOLD_BATCHNORM,
        )  # fmt: skip
        for start, stop, feats in run_batches(
            extractor, batches, should_stop=should_stop, offset=total - len(items), total=total,
            progress=(lambda d, t: progress(f"extracting {run.label}", d, t)) if progress else None,
        ):  # fmt: skip
            chunk_start, chunk_end = todo[start // CHUNK]  # batches never cross a chunk (spans)
            writer.write(chunk_start + start % CHUNK, {layer: feats[node] for layer, node in zip(writer.nodes, nodes)})
            writer.unreadable |= {rows[i]: why for i, why in batches.unreadable.items() if start <= i < stop}
            if stop % CHUNK == 0 or stop == len(items):  # the chunk is complete: mark it at once
                writer.mark_done(chunk_start)
                run.computed += chunk_end - chunk_start


def resolve_names(profile: layers_mod.LayerProfile, requested: Sequence[str]) -> dict[str, str]:
    """{layer as asked for: FX node}, in execution order; a name that resolves to a node already
    asked for (by another name) is dropped. `features.14` stays `features.14` in every output,
    though it is extracted at its output node `features.14.conv.3`."""
    nodes = profile.resolve(tuple(requested))
    order = {n: i for i, n in enumerate(profile.nodes)}
    out: dict[str, str] = {}
    for name, node in sorted(zip(requested, nodes), key=lambda p: order[p[1]]):
        if node not in out.values():
            out[name] = node
    return out


def _scores_to_arrays(s: LayerScores) -> dict[str, np.ndarray]:
    vals = [getattr(s, f) for f in _SCORE_FIELDS]
    out = {"values": np.array([np.nan if v is None else v for v in vals], dtype=np.float64), "note": np.array(s.note)}
    if s.confusion is not None:
        out["confusion"] = s.confusion
    if s.predicted is not None:
        out["predicted"] = s.predicted
    return out


def _scores_from_arrays(a: dict[str, np.ndarray]) -> LayerScores:
    v = dict(zip(_SCORE_FIELDS, (None if np.isnan(x) else float(x) for x in a["values"])))
    for f in ("dim", "n90", "probe_train"):
        v[f] = None if v[f] is None else int(v[f])
    v["eff_dim"] = v["eff_dim"] or 0.0
    v["n90"] = v["n90"] or 0
    return LayerScores(**v, confusion=a.get("confusion"), predicted=a.get("predicted"), note=str(a["note"]))  # type: ignore[arg-type]


def analysis_settings(*parts: str) -> dict[str, Any]:
    """The library versions and the hard-coded settings of the given modules (`neighbors`, `probe`,
    `projection`) that shape a derived result: part of its key."""
    settings = {"neighbors": neighbors.SETTINGS, "probe": probe.SETTINGS, "projection": projection_mod.SETTINGS}
    return {"versions": analysis_versions(), **{p: settings[p] for p in parts}}


def graph_run(run: ModelRun, cache: FeatureCache, progress: StageProgress | None = None) -> dict[str, KnnGraph]:
    """The cosine kNN graph of every layer of a run (neighbors.py), cached per layer key."""
    out = {}
    for i, (node, feats) in enumerate(run.features.items()):
        if progress:
            progress(f"neighbour graphs {run.label}", i, len(run.features))
        key = make_key("graph", {"layer": run.layer_keys[node], "k": GRAPH_K, "settings": analysis_settings("neighbors")})
        got = cache.get_result(key)
        if got is None:
            g = knn_graph(feats, GRAPH_K)
            idx_dtype = np.int32 if feats.shape[0] < 2**31 else np.int64
            cache.put_result(key, {"indices": g.indices.astype(idx_dtype), "distances": g.distances,
                                   "method": np.array(g.method), "recall": np.array(g.recall)})  # fmt: skip
        else:
            g = KnnGraph(got["indices"].astype(np.int64), got["distances"], str(got["method"]), float(got["recall"]))
        out[node] = g
    if progress:
        progress(f"neighbour graphs {run.label}", len(run.features), len(run.features))
    return out


def labels_array(dataset: ImageDataset) -> np.ndarray | None:
    return np.asarray(dataset.labels) if dataset.labels is not None else None


def score_run(
    dataset: ImageDataset,
    run: ModelRun,
    spec: MetricSpec,
    cache: FeatureCache,
    graphs: dict[str, KnnGraph],
    progress: StageProgress | None = None,
) -> dict[str, LayerScores]:
    """Scores of every layer of a run, cached per layer key, labels, metric settings and versions."""
    y = labels_array(dataset)
    labels_id = make_key("labels", {"labels": list(dataset.labels or [])})
    settings = analysis_settings("neighbors", "probe")
    out = {}
    for i, (node, feats) in enumerate(run.features.items()):
        if progress:
            progress(f"scoring {run.label}", i, len(run.features))
        key = make_key("scores", {"layer": run.layer_keys[node], "labels": labels_id, "spec": spec.__dict__, "settings": settings,
                                  "fields": SCORES_SCHEMA})  # fmt: skip
        got = cache.get_result(key)
        if got is None:
            scores = score_layer(feats, y, spec, graphs.get(node))
            cache.put_result(key, _scores_to_arrays(scores))
        else:
            scores = _scores_from_arrays(got)
        out[node] = scores
        if progress:
            progress(f"scoring {run.label}", i + 1, len(run.features))
    return out


def project_run(
    run: ModelRun,
    spec: ProjectionSpec,
    cache: FeatureCache,
    graphs: dict[str, KnnGraph] | None = None,
    progress: StageProgress | None = None,
) -> dict[str, Projection]:
    """Projections of every layer of a run (UMAP from the layer's kNN graph), cached per layer key,
    projection settings and versions."""
    settings = analysis_settings("neighbors", "projection")
    out = {}
    for i, (node, feats) in enumerate(run.features.items()):
        if progress:
            progress(f"projecting {run.label} ({spec.method.upper()})", i, len(run.features))
        key = make_key("projection", {"layer": run.layer_keys[node], "spec": spec.__dict__, "settings": settings})
        got = cache.get_result(key)
        if got is None:
            proj = project(feats, spec, graph=(graphs or {}).get(node))
            cache.put_result(key, {"coords": proj.coords, "method": np.array(proj.method), "message": np.array(proj.message)})
        else:
            proj = Projection(got["coords"], str(got["method"]), str(got["message"]))
        out[node] = proj
        if progress:
            progress(f"projecting {run.label} ({spec.method.upper()})", i + 1, len(run.features))
    return out


def metrics_table(runs: list[ModelRun], scores: dict[str, LayerScores], multi: bool) -> pd.DataFrame:
    """One row per (model, layer): the columns of metrics.csv."""
    rows = []
    for r in runs:
        for name in r.features:
            s = scores[r.key(name, multi)]
            info = r.profile[r.nodes[name]]
            rows.append({
                "model": r.label, "layer": name, "node": info.node, "depth": round(info.depth, 4), "dim": s.dim,
                "full_size": info.size, "bottleneck": info.is_bottleneck, "probe_acc": s.probe_acc,
                "probe_acc_std": s.probe_acc_std, "probe_c": s.probe_c, "probe_train": s.probe_train,
                "knn_acc": s.knn_acc, "knn_recall": s.knn_recall, "silhouette": s.silhouette,
                "eff_dim": s.eff_dim, "n90": s.n90,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def run_labels(specs: Sequence[ExtractSpec]) -> list[str]:
    """Names of runs in layer keys: the model, or `model[random]` / `model[2]` to tell repeats apart."""
    labels = []
    for s in specs:
        label = s.model if s.weights != "none" else f"{s.model}[random]"
        while label in labels:
            label = f"{label}'"
        labels.append(label)
    return labels


def _stoppable(progress: StageProgress | None, should_stop: ShouldStop | None) -> StageProgress | None:
    """`progress`, which first raises Cancelled when `should_stop()` says so: the stages after
    extraction report each layer, so a cancel or a deadline is honoured between layers."""
    if should_stop is None:
        return progress

    def report(stage: str, done: int, total: int) -> None:
        if should_stop():
            raise Cancelled(f"stopped during {stage}")
        if progress is not None:
            progress(stage, done, total)

    return report


def compare(
    dataset: ImageDataset,
    specs: Sequence[ExtractSpec],
    *,
    projection: ProjectionSpec,
    metric: MetricSpec | None = None,
    cache: FeatureCache | None = None,
    progress: StageProgress | None = None,
    should_stop: ShouldStop | None = None,
    max_pixels: int = 64_000_000,
    ray: RayEngine | None = None,
) -> Comparison:
    """The whole analysis: extract, score, CKA and project every chosen layer of every model.

    Args:
        dataset: the images.
        specs: one ExtractSpec per model (or per weights of a model).
        projection: projection settings (method `none` skips projecting).
        metric: metric settings.
        cache: the feature store (default: FeatureCache()).
        progress: called with (stage, done, total).
        should_stop: polled between batches.
        max_pixels: pixel-bomb limit for decoding.
        ray: extract on a Ray cluster (distributed.RayEngine); the rest runs here.

    Returns:
        A Comparison.
    """
    if not specs:
        raise ValueError("no model given")
    metric = metric or MetricSpec()
    cache = cache or FeatureCache()
    projection_mod.check_size(projection.method, len(dataset))  # before minutes of extraction
    labels = run_labels(specs)
    try:
        runs = [
            extract_features(dataset, s, cache=cache, label=lab, progress=progress, should_stop=should_stop,
                             max_pixels=max_pixels, ray=ray)  # fmt: skip
            for s, lab in zip(specs, labels)
        ]
    finally:
        if ray is not None:
            ray.stop()
    unreadable = unreadable_images(cache, dataset, max_pixels)
    if unreadable:  # found by the one full decode, extraction's: leave them out and say so
        log.warning("%d images could not be decoded and are left out", len(unreadable))
        dataset = dataset.without(unreadable)
        for r in runs:
            r.without_rows(list(unreadable))
    progress = _stoppable(progress, should_stop)  # scoring and projecting stop between layers too
    multi = len(runs) > 1
    scores: dict[str, LayerScores] = {}
    projections: dict[str, Projection] = {}
    graphs: dict[str, KnnGraph] = {}
    for r in runs:
        run_graphs = graph_run(r, cache, progress)
        graphs |= {r.key(n, multi): g for n, g in run_graphs.items()}
        scores |= {r.key(n, multi): s for n, s in score_run(dataset, r, metric, cache, run_graphs, progress).items()}
        if projection.method != "none":
            projections |= {r.key(n, multi): p for n, p in project_run(r, projection, cache, run_graphs, progress).items()}
    similarity, overlap = _similarity_run(runs, multi, graphs, cache, progress)
    return Comparison(
        dataset, runs, metrics_table(runs, scores, multi), scores, similarity, overlap, graphs, projections, projection, metric
    )
