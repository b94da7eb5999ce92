"""Open-set recognition by similarity, with no training: a gallery of a few images per class is
enrolled as one prototype per class (the normalised mean of its unit-length embeddings); a query
takes the class of its most similar prototype (cosine), or `unknown` when that similarity is
below a threshold set for a false-accept rate.

The threshold is estimated on the gallery itself, leaving each class out in turn: every gallery
image is compared with the prototypes of the *other* classes, as a query of a class the gallery
does not hold would be, and the threshold is the (1 - FAR) quantile of those best impostor
similarities. With n gallery images a rate below 1 / n cannot be told apart: the threshold is then
the highest impostor similarity, and `Gallery.far_floor` says so."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNKNOWN = "unknown"


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Gallery:
    """Enrolled classes.

    Attributes:
        classes: (K,) class names.
        prototypes: (K, D) float32 unit-length class prototypes.
        counts: (K,) images enrolled per class.
        threshold: the cosine similarity below which a query is `unknown`.
        far: the false-accept rate the threshold was set for.
        impostors: how many leave-one-class-out comparisons estimated it.
    """

    classes: np.ndarray
    prototypes: np.ndarray
    counts: np.ndarray
    threshold: float
    far: float
    impostors: int

    @property
    def far_floor(self) -> float:
        """The lowest false-accept rate this gallery can estimate (1 / its impostor comparisons)."""
        return 1.0 / max(self.impostors, 1)


def enrol(embeddings: np.ndarray, labels: np.ndarray | list[str], far: float = 0.01) -> Gallery:
    """Enrol a gallery: one prototype per class and the threshold for `far`.

    Args:
        embeddings: (n, D) one row per gallery image (any length; rows are normalised here).
        labels: (n,) their class names; at least two classes.
        far: the false-accept rate, in (0, 1].

    Raises:
        ValueError: fewer than two classes, or `far` outside (0, 1].
    """
    if not 0 < far <= 1:
        raise ValueError(f"--far {far!r} is not a rate in (0, 1] (0.01 accepts 1 in 100 strangers)")
    classes, y = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    if UNKNOWN in classes:
        raise ValueError(
            f"a gallery class is named {UNKNOWN!r}, the answer for a query of no enrolled class: rename it"
        )
    if len(classes) < 2:
        raise ValueError(
            f"a gallery needs at least 2 classes (one folder per class) to set its threshold; it has {len(classes)}"
        )
    e = _unit(embeddings)
    sums = np.zeros((len(classes), e.shape[1]))
    np.add.at(sums, y, e)
    prototypes = _unit(sums)
    sims = e @ prototypes.T
    sims[np.arange(len(y)), y] = -np.inf  # each image against the other classes only
    impostor = sims.max(1)
    threshold = float(np.quantile(impostor, 1 - far, method="higher"))
    return Gallery(classes, prototypes.astype(np.float32), np.bincount(y), threshold, far, len(impostor))


def recognise(gallery: Gallery, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, similarity, nearest) per query: the nearest class, or UNKNOWN when its cosine
    similarity is below the gallery's threshold; the similarity to the nearest prototype; and the
    nearest class whatever the threshold."""
    sims = _unit(embeddings) @ gallery.prototypes.T.astype(np.float64)
    best = sims.argmax(1)
    similarity = sims[np.arange(len(best)), best]
    nearest = gallery.classes[best]
    return np.where(similarity >= gallery.threshold, nearest, UNKNOWN), similarity, nearest
