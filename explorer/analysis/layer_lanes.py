"""Every layer's own results on both cores, before the analysis reads them (lanes.py).

Most of the analysis after extraction is per layer and runs on one thread: the neighbour graph,
the scores (cross-validated probe, kNN, controls, bootstraps), the intrinsic dimension, retrieval,
the few-shot and unseen-class curves, LogME and the scorers, the compression curve and the
projection. Each layer gives three units of lanes.Lanes (its scored results: graph, scores and
what reads them; its other measures; its projection): this process and a worker process take them
from one queue, widest layers first, and compute them with the same cached stage functions the
analysis calls (cached_runs.py), which store them. The analysis then runs as it always does, stage by stage,
and reads them back: one road, the same numbers wherever a layer was computed (a test compares
the written files). The similarity measures against their nulls, and CKA with the neighbourhood
overlap, which read every layer at once, are two more units (the first at the front of the queue;
the second after the layers' own, whose graphs it reads).

Only where a worker pays (two lanes, and at least LAYER_LANES_MIN_WORK images x layers: its start
costs 2-3 s of the other core); otherwise nothing happens here and the analysis computes each
stage in turn."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config import MetricSpec, ProjectionSpec
from ..data.datasets import ImageDataset
from ..extraction.layer_features import ModelRun
from ..progress import StageProgress
from ..store import FeatureCache
from . import cached_runs
from .lanes import Lanes, lanes, one_thread, opened, portable

# images x layers from which a worker pays its start (2-3 s of the other core): the bundled sample's
# 400 images x 8 layers took 20.0 s with it, 25.4 s without (`compare`, docs/benchmarks.md)
LAYER_LANES_MIN_WORK = 2_000
# the worker starts once a unit here took longer than this: a run whose results are stored reads
# them back in a moment and starts none (a cached dashboard visit was 8.4 s instead of 2.2 s)
WORKER_AFTER_S = 0.5
ALIGNMENT = "similarity measures"  # the unit name of the nulls (a layer's is its run's label and its name)
SIMILARITY = "CKA and neighbourhood overlap"


@dataclasses.dataclass(frozen=True)
class _Labels:
    """What the per-layer stages read of a dataset: its labels (all a worker is sent)."""

    labels: list | None


def _portable_run(run: ModelRun, nodes: list[str]) -> ModelRun:
    """The run with only these layers, each as lanes.portable describes it (for the pipe), and its
    weights without their torchvision enum member (no unit reads it, and unpickling it imported
    torch and torchvision into the worker before its first unit: 3.4 s of a 2,000-image analysis's
    critical path)."""
    return dataclasses.replace(
        run,
        weights=dataclasses.replace(run.weights, tv_weights=None),
        features={n: portable(run.features[n]) for n in nodes},  # type: ignore[misc]
    )


def _cache(store: tuple[str, bool]) -> FeatureCache:
    """The feature store a unit writes to: (its folder, keep_partial), as sent."""
    return FeatureCache(store[0], keep_partial=store[1])


def _opened_run(run: ModelRun) -> ModelRun:
    return dataclasses.replace(run, features={n: opened(s) for n, s in run.features.items()})  # type: ignore[arg-type]


def _scored_results(
    labels: _Labels,
    sent: ModelRun,
    metric: MetricSpec,
    leaderboard: bool,
    store: tuple[str, bool],
    first_only: bool = False,
    progress: StageProgress | None = None,
) -> None:
    """A layer's graph, scores, intrinsic dimension, few-shot curve and compression curve (the
    stages that read its scores), computed and stored as the analysis would (a unit, here or in the
    worker; here, `progress` between stages: where a Stop is heard). `first_only`: the first
    three (what a first view reads)."""
    dataset: Any = labels  # the stages read only `labels`
    run, cache = _opened_run(sent), _cache(store)
    graphs = cached_runs.graph_run(run, cache, progress)
    scores = cached_runs.score_run(dataset, run, metric, cache, graphs, progress)
    cached_runs.intrinsic_run(run, cache, metric.random_state, progress)
    if first_only:
        return
    cached_runs.few_shot_run(dataset, run, metric, cache, scores, progress)
    if leaderboard:
        # after the probe, in the same process: up to CURVE_ROWS images it decomposes the probe's
        # folds again, and finds their axes kept (probe._principal_axes)
        cached_runs.compression_run(dataset, run, metric, cache, scores, progress)


def _other_results(
    labels: _Labels,
    sent: ModelRun,
    metric: MetricSpec,
    leaderboard: bool,
    store: tuple[str, bool],
    progress: StageProgress | None = None,
) -> None:
    """A layer's measures that read neither its graph nor its scores: retrieval, the unseen-class
    curve, LogME and the scorers (a unit of its own, so that the widest layer's work is shared
    between the lanes: at 2,000 images its scored results take 10 s, these 3 s)."""
    dataset: Any = labels
    run, cache = _opened_run(sent), _cache(store)
    cached_runs.retrieval_run(dataset, run, metric, cache, progress)
    cached_runs.unseen_run(dataset, run, metric, cache, progress)
    if leaderboard:
        cached_runs.logme_run(dataset, run, metric, cache, progress)
        cached_runs.scorers_run(dataset, run, metric, cache, progress)


def _projection_results(
    sent: ModelRun, projection: ProjectionSpec, store: tuple[str, bool], progress: StageProgress | None = None
) -> None:
    """A layer's projection, from its graph (read from the store, or computed)."""
    run, cache = _opened_run(sent), _cache(store)
    graphs = cached_runs.graph_run(run, cache, progress)
    cached_runs.project_runs([run], projection, cache, {run.label: graphs}, progress)


def _alignment_results(
    labels: np.ndarray | None,
    sent: list[ModelRun],
    multi: bool,
    store: tuple[str, bool],
    random_state: int,
    progress: StageProgress | None = None,
) -> None:
    """The similarity measures against their nulls, computed and stored (a unit)."""
    cache = _cache(store)
    runs = [_opened_run(r) for r in sent]
    cached_runs.alignment_run(runs, multi, labels, cache, progress, random_state=random_state)


def _similarity_results(
    sent: list[ModelRun],
    multi: bool,
    store: tuple[str, bool],
    random_state: int,
    progress: StageProgress | None = None,
) -> None:
    """CKA with its interval and the neighbourhood overlap of every pair of layers, computed and
    stored (a unit after every layer's own: their graphs are read from the store)."""
    cache = _cache(store)
    runs = [_opened_run(r) for r in sent]
    graphs = {r.key(n, multi): g for r in runs for n, g in cached_runs.graph_run(r, cache, progress).items()}
    cached_runs.similarity_run(runs, multi, graphs, cache, progress, random_state=random_state)


def each_layer(
    dataset: ImageDataset,
    runs: list[ModelRun],
    *,
    metric: MetricSpec,
    projection: ProjectionSpec,
    cache: FeatureCache,
    leaderboard: bool,
    nulls: bool,
    progress: StageProgress | None = None,
    between: Callable[[], None] | None = None,
) -> bool:
    """Compute and store every layer's own results (and, with `nulls`, the similarity measures) on
    both cores, where that pays (module doc). `between`, when given, is called on this thread once
    what a first view reads is stored (each layer's graph, scores and intrinsic dimension, its
    projection, CKA and overlap) while the worker goes on with the rest: a layer's few-shot and
    compression curves wait for its scores, its other measures and the nulls for nothing.

    Returns:
        Whether it did (False: nothing was computed, `between` was not called; the analysis
        computes each stage in turn).
    """
    n = len(dataset)
    layers = sum(len(r.features) for r in runs)
    if lanes() < 2 or layers < 2 or n * layers < LAYER_LANES_MIN_WORK:
        return False
    if not all(portable(x)[0] == "map" for r in runs for x in r.features.values()):
        return False  # features in memory (given ones, rows left out) would be copied through the pipe
    todo = [
        (r, node)
        for r in runs
        for node in r.features
        if not cached_runs.layer_stored(dataset, r, node, metric, projection, cache, leaderboard=leaderboard)
    ]
    if not todo:  # analysed before: the analysis reads it all back in a moment
        return False
    store = (str(cache.root), cache.keep_partial)
    labels = _Labels(None if dataset.labels is None else list(dataset.labels))
    everything = [_portable_run(r, list(r.features)) for r in runs]
    widest = sorted(todo, key=lambda rn: -rn[0].features[rn[1]].shape[1])
    sent = {(r.label, node): (labels, _portable_run(r, [node]), metric, leaderboard, store) for r, node in widest}
    nulls_unit = (
        _alignment_results,
        (
            None if dataset.labels is None else np.asarray(dataset.labels),
            everything,
            len(runs) > 1,
            store,
            metric.random_state,
        ),
    )
    units: dict[str, Any] = {}
    after: dict[str, str] = {}
    # the largest unit first, as each kind's widest layers: the last units are the small ones
    if nulls and between is None:
        units[ALIGNMENT] = nulls_unit
    for r, node in widest:  # with `between`: its first three stages only (what a first view reads)
        units[f"{r.label}: {node}"] = (_scored_results, sent[r.label, node] + (between is not None,))
    if between is None:
        for r, node in widest:
            units[f"{r.label}: {node} (other measures)"] = (_other_results, sent[r.label, node])
    units[SIMILARITY] = (_similarity_results, (everything, len(runs) > 1, store, metric.random_state))
    if projection.method != "none":
        for r, node in widest:
            units[f"{r.label}: {node} (projection)"] = (
                _projection_results,
                (_portable_run(r, [node]), projection, store),
            )
    first = list(units)
    if between is not None:  # the rest, for the worker to start while this process shows the first view
        if nulls:
            units[ALIGNMENT] = nulls_unit
        for r, node in widest:
            units[f"{r.label}: {node} (other measures)"] = (_other_results, sent[r.label, node])
        for r, node in widest:  # its graph and scores read back from the store
            units[f"{r.label}: {node} (few-shot, compression)"] = (_scored_results, sent[r.label, node])
            after[f"{r.label}: {node} (few-shot, compression)"] = f"{r.label}: {node}"
    finished = 0

    def done(name: str, _: None) -> None:
        nonlocal finished
        finished += 1
        if progress:
            progress("analysing each layer on both cores", finished, len(units))

    def between_stages(stage: str, done: int, total: int) -> None:
        """A unit's stages here report to the lanes' bar (whose reporter hears a Stop)."""
        if progress:
            progress("analysing each layer on both cores", finished, len(units))

    here = {"progress": between_stages} if progress else {}
    # one BLAS thread here too: the worker has the other core (and a unit's numbers do not depend on
    # where it ran)
    with Lanes(units, worker=True, done=done, start_after=WORKER_AFTER_S, here=here, after=after) as both:
        if progress:
            progress("analysing each layer on both cores", 0, len(units))
        if between is not None:
            with one_thread():
                both.finish(first)
            between()
        with one_thread():
            both.finish()
    return True
