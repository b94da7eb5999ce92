"""What one analysis found: the Comparison record (the dataset, each model's run with its layers'
features, and everything derived from them) and its metrics table. The pipeline that builds it is
comparison.py; tables, the report, the files and the views read it (output/, ui/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .analysis.alignment import PairScores
from .analysis.compression import CompressionCurve
from .analysis.few_shot import FewShot
from .analysis.intrinsic import IntrinsicDimension
from .analysis.leaderboard import LayerCost
from .analysis.neighbors import KnnGraph
from .analysis.projection import Projection, align_chain
from .analysis.retrieval import Retrieval
from .analysis.scores import LayerScores
from .analysis.similarity import Similarity
from .analysis.uncertainty import Step, step
from .analysis.unseen import UnseenCurve
from .data.datasets import ImageDataset
from .extraction.layer_features import ModelRun

if TYPE_CHECKING:
    from .request import AnalysisRequest

__all__ = ["LEADERBOARD", "METRIC_COLUMNS", "NEW_CLASSES", "NULLS", "Comparison", "metrics_table", "probe_steps"]

# what a first view leaves for later (Comparison.pending): the stages no first panel reads
LEADERBOARD, NEW_CLASSES, NULLS = "leaderboard", "new classes", "similarity nulls"

METRIC_COLUMNS = [
    "model", "layer", "node", "depth", "dim", "full_size", "bottleneck", "probe_acc", "probe_acc_std",
    "probe_acc_low", "probe_acc_high", "probe_control", "probe_control_std", "probe_selectivity",
    "probe_step", "probe_step_low", "probe_step_high", "probe_step_in_noise",
    "probe_c", "probe_train", "knn_acc", "knn_acc_std", "knn_acc_low", "knn_acc_high", "knn_control",
    "knn_selectivity", "knn_recall", "silhouette", "eff_dim", "n90",
]  # fmt: skip


@dataclass(frozen=True, eq=False)
class Comparison:
    """What one analysis found: the dataset, each model's run with its layers' features, and what
    was derived from them (scores, similarity, neighbour graphs, projections, the cost of each cut).
    A frozen record that renders nowhere: tables, the report, the files and the views are functions
    of it in output/. The analyses asked for later (movers, class pairs, emergence: analysis/per_run.py)
    are kept in its own `answers`.

    Layer keys name a layer in every table: the node (`features.7`) with one run, `run:node`
    (`resnet18:layer3`) with several.

    The Python API returns it as api.Comparison, whose methods add tidy tables, the report, the
    files and the notebook view (docs/python.md).
    """

    dataset: ImageDataset
    runs: tuple[ModelRun, ...]
    metrics: pd.DataFrame
    scores: dict[str, LayerScores]
    layer_similarity: Similarity
    overlap: np.ndarray  # neighbourhood overlap between layers, in the order of layer_similarity.names
    graphs: dict[str, KnnGraph]
    projections: dict[str, Projection]
    costs: dict[str, LayerCost] = field(default_factory=dict)  # by layer key: what cutting there costs
    logme: dict[str, float | None] = field(default_factory=dict)  # by layer key
    compression: dict[str, CompressionCurve | None] = field(default_factory=dict)  # by layer key
    leaderboard: pd.DataFrame = field(default_factory=pd.DataFrame)  # leaderboard.csv: one row per (model, layer)
    # scorer_agreement.csv: each training-free scorer's and the size prior's weighted τ with the probe
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    # new classes, by layer key (None: no labels, too few classes): retrieval.py, few_shot.py, unseen.py
    retrieval_scores: dict[str, Retrieval | None] = field(default_factory=dict)
    few_shot_curves: dict[str, FewShot | None] = field(default_factory=dict)
    unseen_curves: dict[str, UnseenCurve | None] = field(default_factory=dict)
    intrinsic: dict[str, IntrinsicDimension] = field(default_factory=dict)  # by layer key: TwoNN and RankMe
    # (layer key, layer key): CKA, CKNNA, mutual kNN and RSA with their permutation nulls (empty: not asked for)
    alignment: dict[tuple[str, str], PairScores] = field(default_factory=dict)
    random_state: int = 0  # seed of the steps after extraction: the steps' bootstraps, CKA's interval, emergence
    request: AnalysisRequest | None = None  # what was asked for, where the command line, a link or the Python API asked
    answers: dict[tuple, Any] = field(
        default_factory=dict, repr=False, compare=False
    )  # analysis/per_run.py's, kept while this lives
    # what a first view does not hold yet (analyse's `first_view`): LEADERBOARD, NEW_CLASSES, NULLS
    pending: tuple[str, ...] = ()

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
        """Every layer key, in the order of the similarity matrices."""
        return self.layer_similarity.names

    @property
    def cka(self) -> np.ndarray:
        """Plain linear CKA (see similarity.Similarity for the debiased one)."""
        return self.layer_similarity.cka

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

    def layer_keys(self, run: ModelRun | None = None) -> list[str]:
        """A run's layer keys in depth order (every run's, in order, without one)."""
        runs = self.runs if run is None else (run,)
        return [r.key(n, self.multi) for r in runs for n in r.features]

    def best_layer(self, run: ModelRun) -> str | None:
        """The run's layer with the highest probe accuracy (the deepest of equals), None unscored."""
        scored = [
            (self.scores[k].probe_acc, j, k)
            for j, k in enumerate(self.layer_keys(run))
            if self.scores[k].probe_acc is not None
        ]
        return max(scored)[2] if scored else None

    def baseline_of(self, run: ModelRun) -> ModelRun | None:
        """The random-init run of the same model as `run`, if the comparison has one."""
        return next(
            (
                r
                for r in self.runs
                if r is not run
                and r.spec.model == run.spec.model
                and r.spec.weights == "none"
                and run.spec.weights != "none"
            ),
            None,
        )

    def selection(self, query: str) -> list[int]:
        """Rows whose class is `query`, or, for `COLUMN=VALUE`, whose metadata column (labels.csv's,
        a table's) has that value."""
        ds = self.dataset
        column, sep, value = query.partition("=")
        if sep and column in ds.metadata:
            return [i for i, v in enumerate(ds.metadata[column]) if v == value]
        return [i for i, c in enumerate(ds.labels or ()) if c == query]

    def feature_arrays(self) -> dict[str, np.ndarray]:
        """{layer key: (N, D) features} over all runs, in order (memory-mapped from the cache)."""
        return {r.key(n, self.multi): f for r in self.runs for n, f in r.features.items()}

    def run(self, model: str | None = None) -> ModelRun:
        """One model's run.

        Args:
            model: its label in the metrics table (`resnet18`, `resnet18[random]`); None: the first.

        Raises:
            KeyError: no run has that label.
        """
        if model is None:
            return self.runs[0]
        for r in self.runs:
            if r.label == model:
                return r
        raise KeyError(f"no model {model!r} in this comparison; it has {', '.join(r.label for r in self.runs)}")

    def key_of(self, layer: str) -> str:
        """The layer key of `layer`: a key itself, or a node name that only one run has."""
        keys = self.layer_keys()
        if layer in keys:
            return layer
        matches = [k for k in keys if k.rpartition(":")[2] == layer or k.endswith(":" + layer)]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(
            f"no layer {layer!r} in this comparison"
            if not matches
            else f"layer {layer!r} is in several models: name it as one of {', '.join(matches)}"
        )

    def features(self, layer: str) -> np.ndarray:
        """One layer's pooled features.

        Args:
            layer: a layer key (`features.7`, or `model:node` with several models).

        Returns:
            An (N, D) float32 array, one row per image of `dataset.names` (read-only, memory-mapped
            from the feature cache; copy it to change it).
        """
        return self.feature_arrays()[self.key_of(layer)]


def probe_steps(
    run: ModelRun, scores: dict[str, LayerScores], labels: Sequence[str] | None, multi: bool, random_state: int = 0
) -> list[Step | None]:
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


def metrics_table(
    runs: list[ModelRun],
    scores: dict[str, LayerScores],
    multi: bool,
    labels: Sequence[str] | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """One row per (model, layer): the columns of metrics.csv (the steps' bootstraps seeded by `random_state`)."""
    rows = []

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    for r in runs:
        for name, st in zip(r.features, probe_steps(r, scores, labels, multi, random_state)):
            s = scores[r.key(name, multi)]
            info = r.profile[r.nodes[name]]
            rows.append(
                {
                    "model": r.label,
                    "layer": name,
                    "node": info.node,
                    "depth": round(info.depth, 4),
                    "dim": s.dim,
                    "full_size": info.size,
                    "bottleneck": info.is_bottleneck,
                    "probe_acc": s.probe_acc,
                    "probe_acc_std": s.probe_acc_std,
                    "probe_acc_low": s.probe_acc_low,
                    "probe_acc_high": s.probe_acc_high,
                    "probe_control": s.probe_control,
                    "probe_control_std": s.probe_control_std,
                    "probe_selectivity": minus(s.probe_acc, s.probe_control),
                    "probe_step": st and st.diff,
                    "probe_step_low": st and st.low,
                    "probe_step_high": st and st.high,
                    "probe_step_in_noise": st and st.in_noise,
                    "probe_c": s.probe_c,
                    "probe_train": s.probe_train,
                    "knn_acc": s.knn_acc,
                    "knn_acc_std": s.knn_acc_std,
                    "knn_acc_low": s.knn_acc_low,
                    "knn_acc_high": s.knn_acc_high,
                    "knn_control": s.knn_control,
                    "knn_selectivity": minus(s.knn_acc, s.knn_control),
                    "knn_recall": s.knn_recall,
                    "silhouette": s.silhouette,
                    "eff_dim": s.eff_dim,
                    "n90": s.n90,
                }
            )
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)
