"""The extraction backend that runs the model in this process (CPU threads, CUDA or MPS)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import ExtractSpec
from ..progress import Cancelled, ShouldStop, StageProgress
from .backend import FOLD_BATCHNORM, ExtractionJob
from .decode import BatchDecoder, run_batches, spans
from .device import resolve_device, resolve_precision
from .extractor import build_extractor

if TYPE_CHECKING:
    from ..data.datasets import ImageDataset
    from ..store import LayerWriter


class LocalBackend:
    """Decodes in a thread pool and runs the model here, batch by batch."""

    def device_and_precision(self, spec: ExtractSpec) -> tuple[str, str]:
        device = resolve_device(spec.device)
        return device, resolve_precision(spec.precision, device)

    def extract(
        self,
        dataset: ImageDataset,
        job: ExtractionJob,
        writer: LayerWriter,
        *,
        progress: StageProgress | None,
        should_stop: ShouldStop | None,
    ) -> int:
        import torch

        todo, nodes = job.todo, job.nodes

        spec, total, computed = job.spec, len(dataset), 0
        rows = [r for s, e in todo for r in range(s, e)]  # the dataset row of each item decoded here
        items = [dataset.items[r] for r in rows]
        if progress:
            progress(f"loading {spec.model}", 0, 1)
        # one decoder across chunk boundaries; on a GPU it starts now, while the model is built
        with BatchDecoder(
            items,
            job.transform,
            spans(len(items), spec.batch_size, job.chunk),
            max_pixels=job.max_pixels,
            workers=torch.get_num_threads(),
            background=job.device != "cpu",
        ) as batches:
            extractor = build_extractor(
                spec, job.weights, nodes, device=job.device, precision=job.precision, fold_bn=FOLD_BATCHNORM
            )
            for start, stop, feats in run_batches(
                extractor,
                batches,
                should_stop=should_stop,
                offset=total - len(items),
                total=total,
                progress=(lambda d, t: progress(f"extracting {job.label}", d, t)) if progress else None,
            ):
                chunk_start, chunk_end = todo[start // job.chunk]  # batches never cross a chunk (spans)
                writer.write(
                    chunk_start + start % job.chunk, {layer: feats[node] for layer, node in zip(writer.nodes, nodes)}
                )
                writer.mark_unreadable({rows[i]: why for i, why in batches.unreadable.items() if start <= i < stop})
                if stop % job.chunk == 0 or stop == len(items):  # the chunk is complete: mark it at once
                    writer.mark_done(chunk_start)
                    computed += chunk_end - chunk_start
        return computed

    def extract_sweep(
        self,
        dataset: ImageDataset,
        jobs: Sequence[ExtractionJob],
        writers: Sequence[LayerWriter],
        *,
        progress: StageProgress | None,
        should_stop: ShouldStop | None,
    ) -> int:
        """Several models' jobs over the same chunks in one pass over the images: each image is
        decoded once and preprocessed for every model, then each batch goes through every model
        in turn (all of them built and held at once). Returns the images decoded."""
        import torch

        first = jobs[0]
        todo = first.todo
        if any(j.todo != todo or j.chunk != first.chunk for j in jobs):
            raise ValueError("a sweep's jobs must cover the same chunks")
        total = len(dataset)
        rows = [r for s, e in todo for r in range(s, e)]
        items = [dataset.items[r] for r in rows]
        batch_size = min(j.spec.batch_size for j in jobs)
        label = " + ".join(j.label for j in jobs)
        if progress:
            progress(f"loading {len(jobs)} models", 0, len(jobs))
        with BatchDecoder(
            items,
            first.transform,
            spans(len(items), batch_size, first.chunk),
            max_pixels=first.max_pixels,
            workers=torch.get_num_threads(),
            background=first.device != "cpu",
            also=[j.transform for j in jobs[1:]],
        ) as batches:
            extractors = []
            for i, j in enumerate(jobs):
                extractors.append(
                    build_extractor(
                        j.spec, j.weights, j.nodes, device=j.device, precision=j.precision, fold_bn=FOLD_BATCHNORM
                    )
                )
                if progress:
                    progress(f"loading {len(jobs)} models", i + 1, len(jobs))
            done, computed = total - len(items), 0
            for start, stop, per_model in batches:
                if should_stop is not None and should_stop():
                    raise Cancelled("extraction cancelled")
                chunk_start, chunk_end = todo[start // first.chunk]
                bad = {rows[i]: why for i, why in batches.unreadable.items() if start <= i < stop}
                for extractor, writer, job, batch in zip(extractors, writers, jobs, per_model):
                    feats = extractor(batch)
                    writer.write(
                        chunk_start + start % first.chunk,
                        {layer: feats[node] for layer, node in zip(writer.nodes, job.nodes)},
                    )
                    writer.mark_unreadable(bad)
                if stop % first.chunk == 0 or stop == len(items):
                    for writer in writers:
                        writer.mark_done(chunk_start)
                    computed += chunk_end - chunk_start
                done += stop - start
                if progress:
                    progress(f"extracting {label}", done, total)
        return computed
