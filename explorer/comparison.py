"""The whole analysis, from a dataset and model specs to features, scores, CKA and projections
(each cached): extraction is layer_features.py, what is derived from each layer cached_runs.py; this
module runs them in order and gathers their results in a Comparison (record.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .analysis import projection as projection_mod
from .analysis.alignment import nulls_wanted
from .analysis.cached_runs import (
    alignment_run,
    compression_run,
    cost_run,
    few_shot_run,
    graph_run,
    intrinsic_run,
    layer_stored,
    logme_run,
    project_runs,
    retrieval_run,
    score_run,
    scorers_run,
    similarity_run,
    unseen_run,
)
from .analysis.compression import CompressionCurve
from .analysis.few_shot import FewShot
from .analysis.intrinsic import IntrinsicDimension
from .analysis.layer_lanes import each_layer
from .analysis.leaderboard import LayerCost, agreement_table, leaderboard_table
from .analysis.neighbors import KnnGraph
from .analysis.projection import Projection
from .analysis.retrieval import Retrieval
from .analysis.scores import LayerScores
from .analysis.similarity import Similarity
from .analysis.unseen import UnseenCurve
from .config import ExtractSpec, MetricSpec, ProjectionSpec
from .data.datasets import ImageDataset
from .extraction.layer_features import ModelRun, extract_features, extract_sweep, unreadable_images
from .progress import Cancelled, ShouldStop, StageProgress
from .record import LEADERBOARD, NEW_CLASSES, NULLS, Comparison, metrics_table
from .store import FeatureCache

if TYPE_CHECKING:
    from .extraction.backend import ExtractionBackend
    from .request import AnalysisRequest

__all__ = ["ModelRun", "analyse", "compare", "extract_features", "run_labels", "unreadable_images"]

log = logging.getLogger(__name__)

RANKING = "ranking the cuts"  # the stage title of the leaderboard's table and its scorers' agreement


def run_labels(specs: Sequence[ExtractSpec]) -> list[str]:
    """Names of runs in layer keys: the model, or `model[random]` / `model[2]` to tell repeats apart."""
    labels = []
    for s in specs:
        label = s.model if s.weights != "none" else f"{s.model}[random]"
        while label in labels:
            label = f"{label}'"
        labels.append(label)
    return labels


def _labels(specs: Sequence[ExtractSpec], given: Sequence[str | None] | None) -> list[str]:
    """run_labels, with the names given in their place (a repeat told apart as run_labels does)."""
    auto = run_labels(specs)
    if given is None:
        return auto
    if len(given) != len(specs):
        raise ValueError(f"{len(given)} run names for {len(specs)} runs")
    labels: list[str] = []
    for a, g in zip(auto, given):
        label = g or a
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
    backend: ExtractionBackend | None = None,
    leaderboard: bool = True,
    latency: bool = True,
    labels: Sequence[str | None] | None = None,
    request: AnalysisRequest | None = None,
    similarity_nulls: bool | None = False,
    first_view: Callable[[Comparison], None] | None = None,
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
        backend: where extraction runs (default: this process; ray_backend.RayEngine: a Ray
            cluster, which the caller starts and stops); the rest runs here.
        leaderboard: also score the cuts: LogME, the compression curves and the cost of the
            network up to each layer (Comparison.leaderboard).
        latency: with `leaderboard`, time the network up to each layer here (a few passes of a
            random batch at batch 1 and 32, cached per model build and machine).
        labels: each run's name in the tables (None, or a None in it: run_labels' name).
        request: what was asked for, kept in the Comparison.
        similarity_nulls: also CKA, CKNNA, mutual kNN, RSA and Procrustes of every pair of layers against their
            permutation nulls (analysis/alignment.py; Comparison.alignment, similarity.csv); None:
            up to alignment.AUTO_MAX_LAYERS layers.
        first_view: called once with what the first panels read, before the rest (analyse).

    Returns:
        A Comparison.
    """
    if not specs:
        raise ValueError("no model given")
    metric = metric or MetricSpec()
    cache = cache or FeatureCache()
    projection_mod.check_size(projection.method, len(dataset))  # before minutes of extraction
    labels = _labels(specs, labels)
    # every image decoded once for all the models (extract_sweep), each resized for its model
    runs = extract_sweep(
        dataset,
        specs,
        labels,
        cache=cache,
        progress=progress,
        should_stop=should_stop,
        max_pixels=max_pixels,
        backend=backend,
    )
    unreadable = {row: why for r in runs for row, why in r.unreadable.items()}  # the dataset's record, read by each run
    if unreadable:  # found by the one full decode, extraction's: leave them out and say so
        log.warning("%d images could not be decoded and are left out", len(unreadable))
        dataset = dataset.without(unreadable)
        for r in runs:
            r.without_rows(list(unreadable))
    return analyse(
        dataset,
        runs,
        projection=projection,
        metric=metric,
        cache=cache,
        progress=progress,
        should_stop=should_stop,
        leaderboard=leaderboard,
        latency=latency,
        request=request,
        similarity_nulls=similarity_nulls,
        first_view=first_view,
    )


@dataclass(frozen=True)
class _FirstResults:
    """What the first panels read, by layer key: analyse's first stages."""

    graphs: dict[str, KnnGraph]
    scores: dict[str, LayerScores]
    projections: dict[str, Projection]
    intrinsic: dict[str, IntrinsicDimension]
    similarity: Similarity
    overlap: np.ndarray
    metrics: pd.DataFrame

    def comparison(
        self,
        dataset: ImageDataset,
        runs: tuple[ModelRun, ...],
        metric: MetricSpec,
        request: AnalysisRequest | None,
        pending: tuple[str, ...],
    ) -> Comparison:
        """A Comparison of these results alone: a first view, `pending` what it lacks."""
        return Comparison(
            dataset,
            runs,
            self.metrics,
            self.scores,
            self.similarity,
            self.overlap,
            self.graphs,
            self.projections,
            intrinsic=self.intrinsic,
            random_state=metric.random_state,
            request=request,
            pending=pending,
        )


def _first_results(
    dataset: ImageDataset,
    runs: tuple[ModelRun, ...],
    projection: ProjectionSpec,
    metric: MetricSpec,
    cache: FeatureCache,
    progress: StageProgress | None,
) -> _FirstResults:
    """The graphs, scores, projections, intrinsic dimension, CKA and overlap of every layer
    (computed, or read back where stored), and the metrics table."""
    multi = len(runs) > 1
    graphs_of: dict[str, dict[str, KnnGraph]] = {}
    graphs: dict[str, KnnGraph] = {}
    scores: dict[str, LayerScores] = {}
    projections: dict[str, Projection] = {}
    intrinsic: dict[str, IntrinsicDimension] = {}
    for r in runs:
        graphs_of[r.label] = graph_run(r, cache, progress)
        graphs |= {r.key(n, multi): g for n, g in graphs_of[r.label].items()}
        scores |= {
            r.key(n, multi): s for n, s in score_run(dataset, r, metric, cache, graphs_of[r.label], progress).items()
        }
    if projection.method != "none":  # every model's layers together: side by side where that pays
        by_run = project_runs(list(runs), projection, cache, graphs_of, progress)
        projections = {r.key(n, multi): p for r in runs for n, p in by_run[r.label].items()}
    for r in runs:
        got = intrinsic_run(r, cache, metric.random_state, progress)
        intrinsic |= {r.key(n, multi): v for n, v in got.items()}
    similarity, overlap = similarity_run(list(runs), multi, graphs, cache, progress, random_state=metric.random_state)
    metrics = metrics_table(list(runs), scores, multi, dataset.labels, random_state=metric.random_state)
    return _FirstResults(graphs, scores, projections, intrinsic, similarity, overlap, metrics)


def analyse(
    dataset: ImageDataset,
    runs: Sequence[ModelRun],
    *,
    projection: ProjectionSpec,
    metric: MetricSpec,
    cache: FeatureCache,
    progress: StageProgress | None = None,
    should_stop: ShouldStop | None = None,
    leaderboard: bool = True,
    latency: bool = True,
    request: AnalysisRequest | None = None,
    similarity_nulls: bool | None = False,
    first_view: Callable[[Comparison], None] | None = None,
) -> Comparison:
    """Everything after extraction: the neighbour graphs, scores and projections of every layer,
    the similarity between layers and, with `leaderboard`, what cutting at each layer costs and
    keeps (LogME, compression curves, parameters, GFLOPs and latency). Arguments as compare's;
    `runs` hold their features (one row per image of `dataset`).

    `first_view(comparison)`, when given, is called once (unless every layer was analysed before),
    on this thread, with what the first panels read (graphs, scores, projections, intrinsic
    dimension, CKA and overlap) before the rest is computed: a Comparison whose `pending` names
    what it does not hold yet (the leaderboard, the new-class measures, the nulls asked for). The
    returned Comparison holds everything, with the same numbers as without `first_view` (each
    stage is stored; the rest reads what it needs back)."""
    runs = tuple(runs)
    progress = _stoppable(progress, should_stop)  # scoring and projecting stop between layers too
    multi = len(runs) > 1
    nulls = nulls_wanted(similarity_nulls, sum(len(r.features) for r in runs))
    lanes_args = dict(metric=metric, projection=projection, cache=cache, leaderboard=leaderboard, progress=progress)
    first: _FirstResults | None = None

    def show_first() -> None:
        nonlocal first
        first = _first_results(dataset, runs, projection, metric, cache, progress)
        pending = (LEADERBOARD,) * leaderboard + (NEW_CLASSES,) + (NULLS,) * nulls
        first_view(first.comparison(dataset, runs, metric, request, pending))  # type: ignore[misc]

    shown = first_view is not None and not all(  # analysed before: the whole result is read back in a moment
        layer_stored(dataset, r, n, metric, projection, cache, leaderboard=leaderboard)
        for r in runs
        for n in r.features
    )
    # each layer's own results computed on both cores and stored, where that pays (the first view
    # shown once its part is), read back below
    between = show_first if shown else None
    in_lanes = each_layer(dataset, list(runs), nulls=nulls, between=between, **lanes_args)  # type: ignore[arg-type]
    if shown and not in_lanes:
        show_first()  # one process: the first view's stages, then the rest's, one after another
    if first is None:  # a first view's results are the same after the rest: not read back twice
        first = _first_results(dataset, runs, projection, metric, cache, progress)
    graphs, scores = first.graphs, first.scores
    retrievals: dict[str, Retrieval | None] = {}
    few_shots: dict[str, FewShot | None] = {}
    unseens: dict[str, UnseenCurve | None] = {}
    for r in runs:  # recognising classes known from a few images, or never seen
        own = {n: scores[r.key(n, multi)] for n in r.features}
        retrievals |= {r.key(n, multi): v for n, v in retrieval_run(dataset, r, metric, cache, progress).items()}
        few_shots |= {r.key(n, multi): v for n, v in few_shot_run(dataset, r, metric, cache, own, progress).items()}
        unseens |= {r.key(n, multi): v for n, v in unseen_run(dataset, r, metric, cache, progress).items()}
    alignment = (
        alignment_run(
            list(runs),
            multi,
            None if dataset.labels is None else np.asarray(dataset.labels),
            cache,
            progress,
            random_state=metric.random_state,
        )
        if nulls
        else {}
    )
    metrics = first.metrics
    logmes: dict[str, float | None] = {}
    others: dict[str, dict[str, float] | None] = {}  # the scorers beside LogME
    curves: dict[str, CompressionCurve | None] = {}
    costs: dict[str, LayerCost] = {}
    table = agreement = pd.DataFrame()
    if leaderboard:
        for r in runs:
            own = {n: scores[r.key(n, multi)] for n in r.features}
            logmes |= {r.key(n, multi): v for n, v in logme_run(dataset, r, metric, cache, progress).items()}
            others |= {r.key(n, multi): v for n, v in scorers_run(dataset, r, metric, cache, progress).items()}
            curves |= {r.key(n, multi): v for n, v in compression_run(dataset, r, metric, cache, own, progress).items()}
            costs |= {r.key(n, multi): v for n, v in cost_run(r, cache, latency=latency, progress=progress).items()}
        if progress:  # its own stage: the agreement's bootstrap is not counted in the stage before
            progress(RANKING, 0, 1)
        table = leaderboard_table(
            metrics,
            {(r.label, n): costs[r.key(n, multi)] for r in runs for n in r.features},
            {
                (r.label, n): {"logme": logmes[r.key(n, multi)], **(others[r.key(n, multi)] or {})}
                for r in runs
                for n in r.features
            },
            {
                (r.label, n): (c.smallest_k() if (c := curves[r.key(n, multi)]) else None)
                for r in runs
                for n in r.features
            },
            {r.label: r.weights.name for r in runs},
            {
                (r.label, n): (
                    (v.map_at_r if (v := retrievals[r.key(n, multi)]) else None),
                    (f.at(5, "prototype") if (f := few_shots[r.key(n, multi)]) else None),
                )
                for r in runs
                for n in r.features
            },
        )
        agreement = agreement_table(table, metric.random_state)
        if progress:
            progress(RANKING, 1, 1)
    return Comparison(
        dataset,
        runs,
        metrics,
        scores,
        first.similarity,
        first.overlap,
        graphs,
        first.projections,
        costs=costs,
        logme=logmes,
        compression=curves,
        leaderboard=table,
        agreement=agreement,
        retrieval_scores=retrievals,
        few_shot_curves=few_shots,
        unseen_curves=unseens,
        intrinsic=first.intrinsic,
        alignment=alignment,
        random_state=metric.random_state,
        request=request,
    )
