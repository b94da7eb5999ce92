"""Where an extraction's forward passes run: the interface the local and the Ray backends both
implement, and the job they are given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..config import ExtractSpec
from ..networks.weights import ResolvedWeights
from ..progress import ShouldStop, StageProgress

if TYPE_CHECKING:
    from ..data.datasets import ImageDataset
    from ..store import LayerWriter

FOLD_BATCHNORM = True  # networks/batchnorm.py: part of every layer's cache key


@dataclass(frozen=True)
class ExtractionJob:
    """What a backend runs: a model's missing layers over some chunks of a dataset.

    Attributes:
        label: the run's name, for progress.
        spec, weights, device, precision: the model as resolved, and where and how it runs.
        nodes: the FX node of each layer of the writer, in its order.
        todo: the (start, stop) rows of the chunks to run; a chunk is the unit an interrupted
            extraction resumes from, marked done once all its rows are written.
        chunk: rows per chunk.
        transform: the weights' preprocessing.
        max_pixels: the pixel-bomb limit for decoding.
    """

    label: str
    spec: ExtractSpec
    weights: ResolvedWeights
    device: str
    precision: str
    nodes: list[str]
    todo: list[tuple[int, int]]
    chunk: int
    transform: Any
    max_pixels: int


class ExtractionBackend(Protocol):
    """Runs the forward passes of an extraction and writes pooled features into a LayerWriter."""

    def device_and_precision(self, spec: ExtractSpec) -> tuple[str, str]:
        """The device and precision this backend will run `spec` with (part of the cache key)."""
        ...

    def extract(
        self,
        dataset: ImageDataset,
        job: ExtractionJob,
        writer: LayerWriter,
        *,
        progress: StageProgress | None,
        should_stop: ShouldStop | None,
    ) -> int:
        """Run the job's chunks through the model into `writer`, marking each chunk done once all
        its rows are written; returns the number of images that went through the model."""
        ...
