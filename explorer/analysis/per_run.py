"""The analyses of one model's run asked for on demand, after a comparison is built: how its images
move between layers, where each pair of classes comes apart, and where a selection emerges.

Each answer is kept in the comparison's own `answers` for as long as it lives: the dashboard, the
report and the CSVs ask for the same movers of the same run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from . import class_pairs as pairs_mod
from . import emergence as emergence_mod
from . import movers as movers_mod

if TYPE_CHECKING:
    from ..extraction.layer_features import ModelRun
    from ..record import Comparison

T = TypeVar("T")
EMERGENCE_KEPT = 4  # selections whose answers are kept per comparison (the CSV and the report ask for the same one)


def _cached(comp: Comparison, tag: tuple, make: Callable[[], T], keep: int | None = None) -> T:
    """`make()`, remembered under `tag` while `comp` lives; with `keep`, at most that many answers
    of the tag's kind (its first element) are kept, the oldest dropped first."""
    answers = comp.answers
    if tag not in answers:
        if keep is not None:
            same_kind = [t for t in answers if t[0] == tag[0]]
            for old in same_kind[: max(len(same_kind) - keep + 1, 0)]:
                del answers[old]
        answers[tag] = make()
    return answers[tag]


def movers(comp: Comparison, run: ModelRun) -> movers_mod.Movers:
    """How the run's images move between its layers (movers.py), from the kNN graphs."""
    return _cached(
        comp, ("movers", run.label), lambda: movers_mod.movers(comp.graphs, comp.layer_keys(run), comp.dataset.labels)
    )


def class_pairs(comp: Comparison, run: ModelRun) -> pairs_mod.ClassPairs | None:
    """Where each pair of classes comes apart along the run's layers (class_pairs.py); None without
    a probe confusion matrix at every layer (no labels, one class)."""

    def make() -> pairs_mod.ClassPairs | None:
        keys = comp.layer_keys(run)
        confusions = [comp.scores[k].confusion for k in keys]
        if any(c is None for c in confusions):
            return None
        return pairs_mod.class_pairs(confusions, keys, comp.dataset.classes)  # type: ignore[arg-type]

    return _cached(comp, ("class_pairs", run.label), make)


def emergence(comp: Comparison, run: ModelRun, selected: Sequence[int]) -> emergence_mod.Emergence:
    """Where a selection of images emerges along the run's layers (emergence.py), seeded by the
    comparison's random_state; the last few selections' answers are kept."""
    feats = {run.key(n, comp.multi): f for n, f in run.features.items()}
    return _cached(
        comp,
        ("emergence", run.label, tuple(int(i) for i in selected)),
        lambda: emergence_mod.emergence(feats, selected, random_state=comp.random_state),
        keep=EMERGENCE_KEPT,
    )
