"""Where an extraction's forward passes run: the interface the local and the Ray backends both
implement, and the job they are given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..config import ExtractSpec
from ..models.weights import ResolvedWeights

if TYPE_CHECKING:
    from ..data.datasets import ImageDataset
    from ..store import LayerWriter

FOLD_BATCHNORM = True  # models/batchnorm.py: part of every layer's cache key
StageProgress = Callable[[str, int, int], None]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class ExtractionJob:
    """What a backend needs to run a model's missing layers: the settings, the resolved weights,
    the device and precision it chose, the run's name for progress, and the chunk size (a chunk
    is the unit an interrupted extraction resumes from: a backend marks each one done once all
    its rows are written)."""

    label: str
    spec: ExtractSpec
    weights: ResolvedWeights
    device: str
    precision: str
    chunk: int


class ExtractionBackend(Protocol):
    """Runs the forward passes of an extraction and writes pooled features into a LayerWriter."""

    def device_and_precision(self, spec: ExtractSpec) -> tuple[str, str]:
        """The device and precision this backend will run `spec` with (part of the cache key)."""
        ...

    def extract(
        self,
        dataset: ImageDataset,
        job: ExtractionJob,
        nodes: list[str],
        todo: list[tuple[int, int]],
        writer: LayerWriter,
        transform: Any,
        *,
        progress: StageProgress | None,
        should_stop: ShouldStop | None,
        max_pixels: int,
    ) -> int:
        """Run the chunks `todo` ((start, stop) rows) through the model into `writer` (`nodes`: the
        FX node of each of `writer.nodes`, in order), marking each chunk done once all its rows are
        written; returns the number of images that went through the model."""
        ...
