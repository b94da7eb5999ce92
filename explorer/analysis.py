"""What is derived from each layer's features, each result cached under the layer's key, its
settings and the versions of the libraries that compute it: the kNN graph, the scores, the
projection, and the similarity between layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import neighbors, probe
from . import projection as projection_mod
from .cache import FeatureCache, analysis_versions, make_key
from .config import MetricSpec, ProjectionSpec
from .datasets import ImageDataset
from .features import ModelRun, StageProgress
from .metrics import LayerScores, score_layer
from .neighbors import GRAPH_K, KnnGraph, knn_graph, overlap_matrix
from .projection import Projection, project
from .similarity import Similarity, layer_similarity


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


SCORES_SCHEMA = 2  # what a cached scores result holds (2: + out-of-fold predictions)
_SCORE_FIELDS = ("dim", "probe_acc", "probe_acc_std", "knn_acc", "silhouette", "eff_dim", "n90", "probe_c", "probe_train", "knn_recall")


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


def similarity_run(
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
