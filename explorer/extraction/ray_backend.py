"""Extraction on a Ray cluster with Ray Data: actors that hold the model, images streamed to them
in batches, features streamed back into the same content-addressed store as a local run.

Everything after extraction (graphs, scores, CKA, projections) runs where `compare` runs, on the
memory-mapped features, so it is unchanged; a later local run finds the features in the cache.

A real cluster: `ray start --head` on one machine and `ray start --address HEAD:6379` on the
others, then `python -m explorer compare --engine ray --ray-address HEAD:6379 ...` from any of them.
The images must be readable at the same path on every node (shared storage), the project's
requirements installed in every node's Python, and the weights available on every node (the
bundled MobileNetV2 package, or the file in $EXPLORER_WEIGHTS_DIR). The explorer package itself
is shipped to the workers with the job.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DataSpec, ExtractSpec, Limits
from ..data import cluster_listing
from ..data.cluster_listing import image_bytes, list_on_cluster
from ..data.datasets import ImageDataset
from ..data.items import ReadableFiles, describe, from_description
from ..networks.preprocess import Preprocess
from ..networks.sources import source_of
from ..progress import Cancelled, Progress, ShouldStop, StageProgress
from ..store import LayerWriter
from .backend import FOLD_BATCHNORM, ExtractionJob
from .device import resolve_precision
from .extractor import build_extractor

log = logging.getLogger(__name__)
PACKAGE = Path(__file__).resolve().parents[1]  # explorer/, shipped to a remote cluster's workers

READ_CPUS = 0.5  # what a read task of Ray Data's readers reserves; a CPU actor reading files leaves one CPU of its share to them
CPUS_PER_ACTOR = 4  # on a CPU cluster each actor's model runs on this many cores (fewer on a small machine)


class _ModelActor:
    """A Ray Data actor: builds the model once, then turns batches of images into pooled features.

    A batch is either dataset rows (`row`, and the image's path, bytes or container member), or,
    with `files`, what a reader of whole files gives (cluster_listing.read): each image is then
    hashed here, where it is decoded, and matched to its row by its hash (`wanted`: hash -> row);
    an image no row wants (a finished chunk's, a duplicate) is not decoded."""

    def __init__(
        self,
        spec: ExtractSpec,
        nodes: list[str],
        device: str,
        precision: str,
        fold_bn: bool,
        max_pixels: int,
        threads: int,
        files: ReadableFiles | None = None,
        wanted: dict[str, int] | None = None,
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        src = source_of(spec.model)
        weights = src.resolve_weights(spec.model, spec.weights, random_state=spec.random_state)
        self.pre = Preprocess(src.transform(spec.model, weights))
        self.nodes, self.max_pixels, self.files, self.wanted = nodes, max_pixels, files, wanted or {}
        self.extractor = build_extractor(spec, weights, nodes, device=device, precision=precision, fold_bn=fold_bn)
        self._dims: list[int] | None = None

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        if self.files is not None:
            return self._by_hash(batch)

        def reader(path: str, data: bytes, member: str) -> Callable[[], bytes]:
            if len(data):
                return lambda: bytes(data)
            if member:  # inside a shard or a table file: read where it lies, on this worker
                return from_description(member).read
            return lambda: Path(path).read_bytes()

        decoded = [
            self.pre.decode(reader(p, d, m), self.max_pixels)
            for p, d, m in zip(batch["path"], batch["data"], batch["member"])
        ]
        return self._features(np.asarray(batch["row"]), decoded)

    def _features(self, rows: np.ndarray, decoded: list[tuple[Any, str | None]]) -> dict[str, np.ndarray]:
        if not len(rows):  # nothing wanted in this batch: no rows, each layer's columns their width
            return {
                "row": np.zeros(0, np.int64),
                "unreadable": np.zeros(0, dtype=object),
                **{f"f{i}": np.zeros((0, d), np.float32) for i, d in enumerate(self._widths())},
            }
        feats = self.extractor(self.pre.batch([t for t, _ in decoded]))
        self._dims = [feats[n].shape[1] for n in self.nodes]
        return {
            "row": rows,
            "unreadable": np.array([why or "" for _, why in decoded], dtype=object),
            **{f"f{i}": feats[n] for i, n in enumerate(self.nodes)},
        }

    def _widths(self) -> list[int]:
        """Each layer's feature width: the last batch's, or a blank image's before any batch."""
        if self._dims is None:
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.new("RGB", (32, 32)).save(buf, format="PNG")
            tensor, _ = self.pre.decode(buf.getvalue, self.max_pixels)
            feats = self.extractor(self.pre.batch([tensor]))
            self._dims = [feats[n].shape[1] for n in self.nodes]
        return self._dims

    def _by_hash(self, batch: Any) -> dict[str, np.ndarray]:
        import hashlib

        rows, images = [], []
        for data in image_bytes(batch, self.files):  # type: ignore[arg-type]
            row = self.wanted.get(hashlib.sha256(data).hexdigest()) if data is not None else None
            if row is not None:
                rows.append(row)
                images.append(data)
        decoded = [self.pre.decode(functools.partial(bytes, d), self.max_pixels) for d in images]
        return self._features(np.asarray(rows, dtype=np.int64), decoded)


CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """Raise ValueError (one sentence) unless something accepts a TCP connection at the cluster's
    `HOST:PORT` (or `ray://HOST:PORT`) within CONNECT_TIMEOUT_S."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ValueError(
            f"no Ray cluster answers at {address!r} ({exc.strerror or type(exc).__name__}); start one with "
            "`ray start --head`, or leave out --ray-address to run a local Ray instance"
        ) from exc


def _quiet_ray_data() -> None:
    """Ray Data's per-dataset plans and progress lines off this process's terminal (the command
    line's own bar says how far it is; Ray's logs keep them)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class RayEngine:
    """Where and how to run extraction on Ray.

    Attributes:
        address: a running cluster (`HOST:6379`, `ray://HOST:10001` or `auto`); None starts a
            local Ray instance for this run (and stops it afterwards).
        actors: model-holding actors; None: one per GPU on a GPU cluster, else one per
            CPUS_PER_ACTOR cores (at least one).
        num_cpus: CPUs of a local instance (None: all of this machine's).
    """

    address: str | None = None
    actors: int | None = None
    num_cpus: int | None = None
    _started: bool = False

    def start(self) -> None:
        """Connect to the cluster, or start a local instance."""
        import ray

        if ray.is_initialized():
            return
        runtime_env: dict[str, Any] = {"py_modules": [str(PACKAGE)]} if self.address else {}
        # each worker settles fsspec's HTTP import before Ray Data's threads race on it (cluster_listing.py)
        runtime_env["worker_process_setup_hook"] = "explorer.data.cluster_listing.settle_fsspec_http"
        if self.address and self.address != "auto":
            _check_reachable(self.address)  # ray.init retries an address nothing answers at for minutes
        try:
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus if not self.address else None,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=runtime_env,
                configure_logging=False,
            )
        except (ConnectionError, TimeoutError) as exc:  # an address nothing answers at: bad input, one sentence
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"no Ray cluster answers at {self.address!r} ({first}); start one with `ray start --head`, "
                "or leave out --ray-address to run a local Ray instance"
            ) from exc
        self._started = True
        _quiet_ray_data()

    def stop(self) -> None:
        """Disconnect (and stop the local instance this engine started)."""
        import ray

        if self._started:
            ray.shutdown()
            self._started = False

    def load_dataset(
        self, spec: DataSpec, *, limits: Limits | None = None, progress: Progress | None = None
    ) -> ImageDataset | None:
        """The dataset `spec` names, listed and checked on the cluster by Ray Data's readers (shards,
        parquet, tables of paths: cluster_listing.py), the driver reading no image; None for a
        folder, a zip or a sample (load those with datasets.load_dataset)."""

        self.start()
        return list_on_cluster(spec, limits=limits, progress=progress)

    def _resources(self) -> tuple[float, float]:
        import ray

        self.start()
        res = ray.cluster_resources()
        return float(res.get("CPU", 1)), float(res.get("GPU", 0))

    def device_and_precision(self, spec: ExtractSpec) -> tuple[str, str]:
        """The device and precision the workers run (part of the features' cache key): CUDA where
        the cluster has GPUs (bf16 there unless fp32 is asked for), else the CPU with this
        machine's choice of precision."""

        _, gpus = self._resources()
        if spec.device in ("cuda", "auto") and gpus > 0:
            return "cuda", "fp32" if spec.precision == "fp32" else "bf16"
        if spec.device in ("cuda", "mps"):
            raise ValueError(f"device={spec.device!r}: the Ray cluster has no such device; use --device auto or cpu")
        return "cpu", resolve_precision(spec.precision, "cpu")

    def extract(
        self,
        dataset: ImageDataset,
        job: ExtractionJob,
        writer: LayerWriter,
        *,
        progress: StageProgress | None,
        should_stop: ShouldStop | None,
    ) -> int:
        """Run the job's chunks on the cluster and write their rows into `writer` as they come
        back; a chunk is marked finished once all its rows are in (so an interrupted run resumes)."""
        return self.extract_sweep(dataset, [job], [writer], progress=progress, should_stop=should_stop)

    def extract_sweep(
        self,
        dataset: ImageDataset,
        jobs: Sequence[ExtractionJob],
        writers: Sequence[LayerWriter],
        *,
        progress: StageProgress | None,
        should_stop: ShouldStop | None,
    ) -> int:
        """Several models at once, each on actors of its own (the cluster's CPUs or GPUs shared
        among them), into the same store; each job's rows written by a thread of its own as they
        come back. Returns the images of the first job's chunks that finished."""
        from concurrent.futures import ThreadPoolExecutor

        cpus, gpus = self._resources()
        on_gpu = jobs[0].device == "cuda"
        share = max(1, (int(gpus) if on_gpu else int(cpus)) // len(jobs))
        per_job = self.actors or (share if on_gpu else max(1, share // CPUS_PER_ACTOR))
        threads = max(1, share // per_job) if not on_gpu else 2
        done = dict.fromkeys(range(len(jobs)), 0)
        lock = threading.Lock()

        def report(i: int, n: int, label: str) -> None:
            if progress:
                with lock:
                    done[i] = n
                    progress(
                        f"extracting {label} on Ray ({per_job * len(jobs)} actors)", min(done.values()), len(dataset)
                    )

        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = [
                pool.submit(
                    self._run,
                    dataset,
                    job,
                    writer,
                    per_job,
                    threads,
                    on_gpu,
                    functools.partial(report, i, label=" + ".join(j.label for j in jobs)),
                    should_stop,
                )
                for i, (job, writer) in enumerate(zip(jobs, writers))
            ]
            counts = [f.result() for f in futures]
        return counts[0]

    def _run(
        self,
        dataset: ImageDataset,
        job: ExtractionJob,
        writer: LayerWriter,
        n_actors: int,
        threads: int,
        on_gpu: bool,
        report: Any,
        should_stop: ShouldStop | None,
    ) -> int:
        import ray.data

        todo = job.todo
        rows = [(r, it) for s, e in todo for r, it in zip(range(s, e), dataset.items[s:e])]
        kwargs = {
            "spec": job.spec,
            "nodes": job.nodes,
            "device": job.device,
            "precision": job.precision,
            "fold_bn": FOLD_BATCHNORM,
            "max_pixels": job.max_pixels,
            "threads": threads,
        }
        if dataset.files is not None:  # Ray Data's reader of the files; each image matched to its row by its hash
            files = dataset.files
            if files.kind == "binary":  # files named one by one: only those still to do (each listed and found)
                files = replace(files, files=tuple(str(it.path) for _, it in rows))
            source = cluster_listing.read(files, keep_bytes=True, num_cpus=READ_CPUS)
            kwargs |= {"files": dataset.files, "wanted": {dataset.hashes[r]: r for r, _ in rows}}
        else:
            source = ray.data.from_items(
                [
                    {
                        "row": r,
                        "path": str(it.path) if it.path is not None else "",
                        "data": it.data or b"",
                        "member": describe(it.member) if it.member is not None else "",
                    }
                    for r, it in rows
                ]
            )
        features = source.map_batches(
            _ModelActor,
            batch_size=job.spec.batch_size,
            batch_format="pyarrow" if dataset.files is not None else "numpy",
            fn_constructor_kwargs=kwargs,
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=0 if on_gpu else (max(threads - 1, READ_CPUS) if dataset.files is not None else threads),
            num_gpus=1 if on_gpu else 0,
        )
        need, computed = {s: e - s for s, e in todo}, 0
        total, done = len(dataset), len(dataset) - len(rows)
        seen = np.zeros(total, dtype=bool)
        report(done)

        def finish_chunks(got: np.ndarray) -> None:
            nonlocal computed
            for start, count in zip(*np.unique(got // job.chunk * job.chunk, return_counts=True)):
                need[int(start)] -= int(count)
                if need[int(start)] == 0:
                    writer.mark_done(int(start))
                    computed += min(job.chunk, total - int(start))

        for batch in features.iter_batches(batch_size=None, batch_format="numpy"):
            if should_stop is not None and should_stop():
                raise Cancelled("extraction cancelled")
            got = np.asarray(batch["row"], dtype=np.int64)
            first = np.zeros(len(got), dtype=bool)
            first[np.unique(got, return_index=True)[1]] = True
            first &= ~seen[got]
            got, reasons = got[first], np.asarray(batch["unreadable"])[first]  # an image twice in the files: once
            if not len(got):
                continue
            seen[got] = True
            order = np.argsort(got)
            writer.write_rows(
                got[order], {layer: np.asarray(batch[f"f{i}"])[first][order] for i, layer in enumerate(writer.nodes)}
            )
            writer.mark_unreadable({int(r): str(why) for r, why in zip(got, reasons) if why})
            finish_chunks(got)
            done += len(got)
            report(done)
        missing = [r for r, _ in rows if not seen[r]]
        if missing:  # in the listing, not in the files the cluster read: changed since
            if len(missing) == len(rows):
                raise ValueError(
                    f"the cluster found none of the {len(rows)} images it was to read: were the files changed?"
                )
            writer.mark_unreadable(
                dict.fromkeys(missing, "not found when the cluster read the files (changed since listed?)")
            )
            finish_chunks(np.asarray(missing))
        return computed
