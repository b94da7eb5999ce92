"""The whole analysis, from a dataset and model specs to features, scores, CKA and projections
(each cached): extraction is layer_features.py, what is derived from each layer cached_runs.py; this
module runs them in order and gathers a Comparison."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .analysis import class_pairs as pairs_mod
from .analysis import emergence as emergence_mod
from .analysis import movers as movers_mod
from .analysis import projection as projection_mod
from .analysis.cached_runs import compression_run, cost_run, graph_run, logme_run, project_run, score_run, similarity_run
from .analysis.compression import CompressionCurve
from .analysis.leaderboard import LayerCost, leaderboard_table
from .analysis.neighbors import KnnGraph
from .analysis.projection import Projection, align_chain
from .analysis.scores import LayerScores
from .analysis.similarity import Similarity
from .analysis.uncertainty import Step, step
from .config import ExtractSpec, MetricSpec, ProjectionSpec
from .data.datasets import ImageDataset
from .extraction.backend import ShouldStop, StageProgress
from .extraction.extractor import Cancelled
from .extraction.layer_features import ModelRun, extract_features, extract_sweep, unreadable_images
from .store import FeatureCache

if TYPE_CHECKING:
    from .extraction.backend import ExtractionBackend

__all__ = ["METRIC_COLUMNS", "Comparison", "ModelRun", "compare", "extract_features", "metrics_table", "parse_layers",
           "run_labels", "unreadable_images"]  # fmt: skip

log = logging.getLogger(__name__)

METRIC_COLUMNS = [
    "model", "layer", "node", "depth", "dim", "full_size", "bottleneck", "probe_acc", "probe_acc_std",
    "probe_acc_low", "probe_acc_high", "probe_control", "probe_control_std", "probe_selectivity",
    "probe_step", "probe_step_low", "probe_step_high", "probe_step_in_noise",
    "probe_c", "probe_train", "knn_acc", "knn_acc_std", "knn_acc_low", "knn_acc_high", "knn_control",
    "knn_selectivity", "knn_recall", "silhouette", "eff_dim", "n90",
]  # fmt: skip


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
    costs: dict[str, LayerCost] = field(default_factory=dict)  # by layer key: what cutting there costs
    logme: dict[str, float | None] = field(default_factory=dict)  # by layer key
    compression: dict[str, CompressionCurve | None] = field(default_factory=dict)  # by layer key
    leaderboard: pd.DataFrame = field(default_factory=pd.DataFrame)  # leaderboard.csv: one row per (model, layer)
    random_state: int = 0  # seed of the steps after extraction: the steps' bootstraps, CKA's interval, emergence
    _movers: dict[str, movers_mod.Movers] = field(default_factory=dict, repr=False)  # by run label, made when asked for
    _pairs: dict[str, pairs_mod.ClassPairs | None] = field(default_factory=dict, repr=False)  # likewise
    _emerged: dict[tuple, emergence_mod.Emergence] = field(default_factory=dict, repr=False)  # by run and selection

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

    def layer_keys(self, run: ModelRun) -> list[str]:
        """A run's layer keys, in depth order."""
        return [run.key(n, self.multi) for n in run.features]

    def movers(self, run: ModelRun) -> movers_mod.Movers:
        """How the run's images move between its layers (analysis/movers.py), from the kNN graphs."""
        if run.label not in self._movers:
            self._movers[run.label] = movers_mod.movers(self.graphs, self.layer_keys(run), self.dataset.labels)
        return self._movers[run.label]

    def class_pairs(self, run: ModelRun) -> pairs_mod.ClassPairs | None:
        """Where each pair of classes comes apart along the run's layers (analysis/class_pairs.py);
        None without a probe confusion matrix at every layer (no labels, one class)."""
        if run.label not in self._pairs:
            keys = self.layer_keys(run)
            confusions = [self.scores[k].confusion for k in keys]
            self._pairs[run.label] = (None if any(c is None for c in confusions)
                                      else pairs_mod.class_pairs(confusions, keys, self.dataset.classes))  # type: ignore[arg-type]  # fmt: skip
        return self._pairs[run.label]

    def best_layer(self, run: ModelRun) -> str | None:
        """The run's layer with the highest probe accuracy (the deepest of equals), None unscored."""
        scored = [(self.scores[k].probe_acc, j, k) for j, k in enumerate(self.layer_keys(run)) if self.scores[k].probe_acc is not None]
        return max(scored)[2] if scored else None

    def emergence(self, run: ModelRun, selected: Sequence[int]) -> emergence_mod.Emergence:
        """Where a selection of images emerges along the run's layers (analysis/emergence.py); the
        last few answers are kept (the CSV and the report ask for the same one)."""
        tag = (run.label, tuple(selected))
        if tag not in self._emerged:
            if len(self._emerged) >= 4:
                self._emerged.pop(next(iter(self._emerged)))
            self._emerged[tag] = emergence_mod.emergence({run.key(n, self.multi): f for n, f in run.features.items()}, selected,
                                                         random_state=self.random_state)  # fmt: skip
        return self._emerged[tag]

    def noise_notes(self, run: ModelRun) -> list[str]:
        """Sentences naming where the run's probe accuracy differs between layers by less than the
        noise: consecutive layers whose paired 95 % bootstrap interval holds 0, and the layers that
        cannot be told apart from the best one. Empty when every step is clear (or unscored)."""
        labels, notes = self.dataset.labels, []
        keys = self.layer_keys(run)
        rows = self.metrics[self.metrics["model"] == run.label]  # the steps metrics_table computed, in layer order
        steps = [None if pd.isna(d) else Step(d, lo, hi) for d, lo, hi in rows[["probe_step", "probe_step_low", "probe_step_high"]].itertuples(index=False)]
        flat = [f"{a} → {b} ({_signed(st)})" for (a, b), st in zip(pairwise(keys), steps[1:]) if st is not None and st.in_noise]
        if flat:
            notes.append(f"{run.label}: the probe's change is inside the noise (its 95 % bootstrap interval over the "
                         f"images holds 0) from {'; '.join(flat)}.")  # fmt: skip
        best = self.best_layer(run)
        if best is None or labels is None:
            return notes
        y = np.unique(np.asarray(labels), return_inverse=True)[1]
        pb = self.scores[best].predicted
        rows = np.flatnonzero(pb >= 0)  # type: ignore[operator]
        ties = []
        for k in keys:
            pk = self.scores[k].predicted
            if k != best and pk is not None:
                st = step(pb[rows] == y[rows], pk[rows] == y[rows], random_state=self.random_state)  # type: ignore[index]
                if st.in_noise:
                    ties.append(f"{k} ({_signed(st)})")
        if ties:
            notes.append(f"{run.label}: the best layer by probe accuracy, {best} ({self.scores[best].probe_acc:.3f}), cannot be "
                         f"told apart from {', '.join(ties)}: differences inside the noise.")  # fmt: skip
        return notes

    def baseline_of(self, run: ModelRun) -> ModelRun | None:
        """The random-init run of the same model as `run`, if the comparison has one."""
        return next((r for r in self.runs if r is not run and r.spec.model == run.spec.model and r.spec.weights == "none"
                     and run.spec.weights != "none"), None)  # fmt: skip

    def selection(self, query: str) -> list[int]:
        """Rows whose class is `query`, or, for `COLUMN=VALUE`, whose labels.csv column has that value."""
        ds = self.dataset
        column, sep, value = query.partition("=")
        if sep and column in ds.metadata:
            return [i for i, v in enumerate(ds.metadata[column]) if v == value]
        return [i for i, c in enumerate(ds.labels or ()) if c == query]

    def features(self) -> dict[str, np.ndarray]:
        """{layer key: features} over all runs, in order."""
        return {r.key(n, self.multi): f for r in self.runs for n, f in r.features.items()}


def parse_layers(model_names: Sequence[str], layers_arg: str) -> dict[str, tuple[str, ...]]:
    """Split a `--layers` value among models.

    Args:
        model_names: the models being compared.
        layers_arg: `auto`, `a,b,c` (one model) or `model:node,...` (any number of models; a model
            name may hold colons itself, as `timm:vit_small_patch16_224:blocks.3` does).

    Returns:
        {model: nodes}; an empty tuple means the model's default spread.
    """
    out: dict[str, list[str]] = {m: [] for m in model_names}
    if layers_arg.strip() in ("", "auto"):
        return {m: () for m in model_names}
    for item in (s.strip() for s in layers_arg.split(",")):
        if not item:
            continue
        model = max((m for m in model_names if item.startswith(m + ":")), key=len, default=None)
        if model is not None:
            out[model].append(item[len(model) + 1 :])
        elif len(model_names) == 1:
            out[model_names[0]].append(item)
        else:
            raise ValueError(
                f"layer {item!r}: with several models name layers as model:node (e.g. {model_names[0]}:flatten) or use auto"
            )
    return {m: tuple(v) for m, v in out.items()}


def _signed(st: Step) -> str:
    return f"{st.diff:+.3f}, interval {st.low:+.3f} to {st.high:+.3f}"


def probe_steps(run: ModelRun, scores: dict[str, LayerScores], labels: Sequence[str] | None, multi: bool,
                random_state: int = 0) -> list[Step | None]:  # fmt: skip
    """For each layer of a run after the first, the change in probe accuracy from the layer before,
    with its paired bootstrap interval over the images (uncertainty.step, seeded by `random_state`);
    None where unscored."""
    if labels is None:
        return [None] * len(run.features)
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    keys = [run.key(n, multi) for n in run.features]
    out: list[Step | None] = [None]
    for a, b in pairwise(keys):
        pa, pb = scores[a].predicted, scores[b].predicted
        if pa is None or pb is None:
            out.append(None)
            continue
        rows = np.flatnonzero(pa >= 0)
        out.append(step(pa[rows] == y[rows], pb[rows] == y[rows], random_state=random_state))
    return out


def metrics_table(runs: list[ModelRun], scores: dict[str, LayerScores], multi: bool, labels: Sequence[str] | None = None,
                  random_state: int = 0) -> pd.DataFrame:  # fmt: skip
    """One row per (model, layer): the columns of metrics.csv (the steps' bootstraps seeded by `random_state`)."""
    rows = []

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    for r in runs:
        for name, st in zip(r.features, probe_steps(r, scores, labels, multi, random_state)):
            s = scores[r.key(name, multi)]
            info = r.profile[r.nodes[name]]
            rows.append({
                "model": r.label, "layer": name, "node": info.node, "depth": round(info.depth, 4), "dim": s.dim,
                "full_size": info.size, "bottleneck": info.is_bottleneck, "probe_acc": s.probe_acc,
                "probe_acc_std": s.probe_acc_std, "probe_acc_low": s.probe_acc_low, "probe_acc_high": s.probe_acc_high,
                "probe_control": s.probe_control, "probe_control_std": s.probe_control_std,
                "probe_selectivity": minus(s.probe_acc, s.probe_control),
                "probe_step": st and st.diff, "probe_step_low": st and st.low, "probe_step_high": st and st.high,
                "probe_step_in_noise": st and st.in_noise,
                "probe_c": s.probe_c, "probe_train": s.probe_train,
                "knn_acc": s.knn_acc, "knn_acc_std": s.knn_acc_std, "knn_acc_low": s.knn_acc_low,
                "knn_acc_high": s.knn_acc_high, "knn_control": s.knn_control,
                "knn_selectivity": minus(s.knn_acc, s.knn_control), "knn_recall": s.knn_recall,
                "silhouette": s.silhouette, "eff_dim": s.eff_dim, "n90": s.n90,
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
    backend: ExtractionBackend | None = None,
    leaderboard: bool = True,
    latency: bool = True,
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

    Returns:
        A Comparison.
    """
    if not specs:
        raise ValueError("no model given")
    metric = metric or MetricSpec()
    cache = cache or FeatureCache()
    projection_mod.check_size(projection.method, len(dataset))  # before minutes of extraction
    labels = run_labels(specs)
    # every image decoded once for all the models (extract_sweep), each resized for its model
    runs = extract_sweep(dataset, specs, labels, cache=cache, progress=progress, should_stop=should_stop,
                         max_pixels=max_pixels, backend=backend)  # fmt: skip
    unreadable = {row: why for r in runs for row, why in r.unreadable.items()}  # the dataset's record, read by each run
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
    similarity, overlap = similarity_run(runs, multi, graphs, cache, progress, random_state=metric.random_state)
    metrics = metrics_table(runs, scores, multi, dataset.labels, random_state=metric.random_state)
    comp = Comparison(dataset, runs, metrics, scores, similarity, overlap, graphs, projections, random_state=metric.random_state)
    if leaderboard:
        for r in runs:
            own = {n: scores[r.key(n, multi)] for n in r.features}
            comp.logme |= {r.key(n, multi): v for n, v in logme_run(dataset, r, metric, cache, progress).items()}
            comp.compression |= {r.key(n, multi): v for n, v in compression_run(dataset, r, metric, cache, own, progress).items()}
            comp.costs |= {r.key(n, multi): v for n, v in cost_run(r, cache, latency=latency, progress=progress).items()}
        comp.leaderboard = leaderboard_table(
            metrics, {(r.label, n): comp.costs[r.key(n, multi)] for r in runs for n in r.features},
            {(r.label, n): comp.logme[r.key(n, multi)] for r in runs for n in r.features},
            {(r.label, n): (c.smallest_k() if (c := comp.compression[r.key(n, multi)]) else None) for r in runs for n in r.features},
            {r.label: r.weights.name for r in runs})  # fmt: skip
    return comp
