"""Frozen configuration objects shared by the CLI, the UI and the cache keys, and the one place
that reads the environment (`settings()`, `app_mode()`): no other module reads a variable, and
none reads one when it is imported."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POOLINGS = ("avg", "max", "avgmax")
TOKEN_POOLINGS = ("cls", "mean")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")
PROJECTIONS = ("pca", "umap", "tsne", "none")


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds on what a dataset may cost; the hosted demo uses tighter ones than the CLI.

    Attributes:
        max_files: most images a dataset may keep (after max_images), and most entries an archive may hold.
        max_total_bytes: most uncompressed bytes an archive may expand to.
        max_ratio: highest compression ratio of an archive entry (zip-bomb guard).
        max_file_bytes: largest single image file.
        max_pixels: largest image (width x height); bigger ones are skipped as pixel bombs.
    """

    max_files: int = 1_000_000
    max_total_bytes: int = 2 * 1024**3
    max_ratio: float = 200.0
    max_file_bytes: int = 64 * 1024**2
    max_pixels: int = 64_000_000


DEMO_LIMITS = Limits(max_files=5000, max_total_bytes=1024**3, max_file_bytes=25 * 1024**2, max_pixels=40_000_000)
MODES = ("local", "demo")
MODE_ENV = "EXPLORER_MODE"


@dataclass(frozen=True, kw_only=True)
class AppMode:
    """Who the dashboard serves: `local`, one person on their own machine (the CLI's limits, folders
    on the server opened by path), or `demo`, the shared public deployment (tight caps, uploads only,
    every job's cost, time and disk bounded).

    Attributes:
        name: `local` or `demo`.
        limits: bounds on a dataset.
        max_images: the most images one analysis may keep.
        server_paths: whether a folder or zip on the server may be opened by its path.
        max_layers: the most layers one analysis may extract, all models together.
        max_gflop: the most compute one analysis may ask for: the models' forward passes over its
            images, in GFLOPs (None: no bound).
        max_job_seconds: wall-clock budget of one analysis; past it, it is cancelled (None: none).
        max_jobs_per_client: analyses one visitor's address may have waiting or running, over all
            its sessions (None: no limit; a visitor whose address is unknown is not limited).
        cache_max_bytes: size limit of the feature cache, least recently used entries evicted
            beyond it (None: no limit).
        keep_partial: whether an interrupted extraction's finished chunks are kept for a later run
            to resume (local) or deleted on cancel, failure and start (demo).
        downloads: whether model weights may be downloaded (never for a demo's visitor).
        trusted_proxies: how many reverse proxies of the host's own stand before the server, each
            appending the address it was reached from to `X-Forwarded-For` (0: none; the
            connection's address is the visitor's).
        isolated_jobs: whether each analysis runs in a process of its own (ui/job_process.py), killed
            at its deadline or on cancel whatever a library does inside it, its memory bounded.
        max_job_bytes: the memory an isolated analysis may take beyond what its process starts
            with (None: no bound); past it, it fails with one sentence.
        why: how the mode was chosen, for the start-up log (asked for, or the fail-closed rule).
    """

    name: str
    limits: Limits
    max_images: int
    server_paths: bool
    max_layers: int = 1000
    max_gflop: float | None = None
    max_job_seconds: float | None = None
    max_jobs_per_client: int | None = None
    cache_max_bytes: int | None = None
    keep_partial: bool = True
    downloads: bool = True
    trusted_proxies: int = 0
    isolated_jobs: bool = False
    max_job_bytes: int | None = None
    why: str = ""

    def __post_init__(self) -> None:
        _check_choice("mode", self.name, MODES)
        if self.trusted_proxies < 0:
            raise ValueError(f"trusted_proxies={self.trusted_proxies} must be 0 or more")


LOCAL = AppMode(name="local", limits=Limits(), max_images=Limits().max_files, server_paths=True)
# demo: 2,000 images through resnet50 (4.1 GFLOPs each) is ~8,200 GFLOPs, about 3 minutes of 2 CPU
# cores; a job gets at most 10 minutes whatever the estimate says
DEMO = AppMode(
    name="demo",
    limits=DEMO_LIMITS,
    max_images=2000,
    server_paths=False,
    max_layers=16,
    max_gflop=10_000.0,
    max_job_seconds=600.0,
    max_jobs_per_client=2,
    cache_max_bytes=5 * 1024**3,
    keep_partial=False,
    downloads=False,
    isolated_jobs=True,
    max_job_bytes=3 * 1024**3,
)
CACHE_MAX_ENV = "EXPLORER_CACHE_MAX_GB"
JOB_MEMORY_ENV = "EXPLORER_JOB_MEMORY_GB"
TRUSTED_PROXIES_ENV = "EXPLORER_TRUSTED_PROXIES"
_OLD_TRUSTED_PROXY_ENV = "EXPLORER_TRUSTED_PROXY"  # its `1` meant one proxy; read as that


# what hosting platforms set in their containers' environment (a server there is reachable by anyone)
HOSTING_ENV = {"SPACE_ID": "Hugging Face Spaces", "K_SERVICE": "Google Cloud Run", "RENDER": "Render", "DYNO": "Heroku",
               "FLY_APP_NAME": "Fly.io", "RAILWAY_ENVIRONMENT": "Railway", "WEBSITE_SITE_NAME": "Azure App Service",
               "KUBERNETES_SERVICE_HOST": "Kubernetes", "ECS_CONTAINER_METADATA_URI_V4": "AWS ECS"}  # fmt: skip
COMMUNITY_CLOUD_ROOT = "/mount/src"  # where Streamlit Community Cloud checks out an app's repository


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to `address` serves this machine only ("" or None: every interface)."""
    import ipaddress

    if not address or not address.strip():
        return False
    address = address.strip().strip("[]")
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def hosting_platform(environ: Mapping[str, str], cwd: str) -> str | None:
    """The hosting platform this process runs on, where its environment says so; else None."""
    for name, platform_name in HOSTING_ENV.items():
        if environ.get(name, "").strip():
            return platform_name
    if cwd == COMMUNITY_CLOUD_ROOT or cwd.startswith(COMMUNITY_CLOUD_ROOT + "/"):
        return "Streamlit Community Cloud"
    return None


def app_mode(
    environ: Mapping[str, str] = os.environ, server_address: str | None = "127.0.0.1", cwd: str | None = None
) -> AppMode:
    """The dashboard's mode, from EXPLORER_MODE; EXPLORER_CACHE_MAX_GB sets the cache's size limit in
    either mode (0: no limit); EXPLORER_JOB_MEMORY_GB an isolated analysis's memory (0: no bound);
    EXPLORER_TRUSTED_PROXIES=N the number of the host's reverse proxies in
    front of it.

    Fail closed: with EXPLORER_MODE unset, the mode is `local` only on a server that serves this
    machine alone (`server_address`, the address the server listens on, is a loopback one) and not
    on a hosting platform; anything reachable from other machines runs `demo` unless local mode is
    asked for by name (a Community Cloud app whose mode setting was forgotten served local mode,
    folders by path included, to the world).

    Raises:
        ValueError: an unknown mode (a typo must not open a public server to server paths), a
            cache limit that is not a number, or a proxy count that is not a whole number >= 0.
    """
    asked = environ.get(MODE_ENV, "").strip().lower()
    if asked and asked not in MODES:
        raise ValueError(f"{MODE_ENV}={asked!r} is not one of {', '.join(MODES)}")
    platform_name = hosting_platform(environ, os.getcwd() if cwd is None else cwd)
    where = "every interface" if not (server_address or "").strip() else server_address
    if asked:
        name, why = asked, f"{MODE_ENV}={asked}"
        if asked == "local" and (platform_name or not is_loopback(server_address)):
            why += (
                f", listening on {where}"
                + (f" on {platform_name}" if platform_name else "")
                + ": other machines can reach this server and open this machine's folders by path"
            )
    elif platform_name:
        name, why = (
            "demo",
            f"{platform_name} detected and {MODE_ENV} not set: demo mode (set {MODE_ENV}=local to serve local mode there)",
        )
    elif not is_loopback(server_address):
        name, why = (
            "demo",
            (
                f"listening on {where}, where other machines can reach it, and {MODE_ENV} not set: demo mode "
                f"(pass --mode local, or set {MODE_ENV}=local, to serve your folders to them)"
            ),
        )
    else:
        name, why = "local", f"listening on {server_address}: this machine only"
    mode = dataclasses.replace(LOCAL if name == "local" else DEMO, why=why)
    for env_name, field_name in ((CACHE_MAX_ENV, "cache_max_bytes"), (JOB_MEMORY_ENV, "max_job_bytes")):
        if environ.get(env_name, "").strip():
            try:
                gb = float(environ[env_name])
            except ValueError:
                raise ValueError(f"{env_name}={environ[env_name]!r} is not a number of GB") from None
            mode = dataclasses.replace(mode, **{field_name: int(gb * 1024**3) if gb > 0 else None})  # 0: no bound
    proxies = environ.get(TRUSTED_PROXIES_ENV, "").strip()
    if not proxies and environ.get(_OLD_TRUSTED_PROXY_ENV, "").strip().lower() in ("1", "true", "yes"):
        proxies = "1"
    if proxies:
        if not proxies.isdigit():
            raise ValueError(f"{TRUSTED_PROXIES_ENV}={proxies!r} is not a whole number of proxies (0, 1, 2, ...)")
        mode = dataclasses.replace(mode, trusted_proxies=int(proxies))
    return mode


_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What the environment sets for any process (the dashboard's own mode is app_mode's).

    Attributes:
        cache_dir: EXPLORER_CACHE_DIR, the feature cache (None: XDG_CACHE_HOME's or ~/.cache's
            `bottleneck-explorer`).
        user_cache: XDG_CACHE_HOME, or ~/.cache.
        weights_dir: EXPLORER_WEIGHTS_DIR, a folder of offline weights files (None: none).
        offline: EXPLORER_OFFLINE=1: never download weights.
        hf_offline: HF_HUB_OFFLINE=1, Hugging Face's own switch, which its libraries obey too.
        hf_endpoint: HF_ENDPOINT, the hub's address.
        workers: EXPLORER_WORKERS, the dashboard's analyses run at once (1 or 2).
        max_pending: EXPLORER_MAX_PENDING, analyses that may wait in the dashboard's queue.
        result_ttl: EXPLORER_RESULT_TTL, seconds a finished analysis waits for its visitor.
        malloc_tune: EXPLORER_MALLOC_TUNE (default on): glibc malloc settings (process_setup.py).
        lanes: EXPLORER_LANES (default on): a program's analysis uses a worker process beside its
            own on two or more cores (analysis/lanes.py); 0: one process, each stage in turn.
    """

    cache_dir: str | None = None
    user_cache: str = ""
    weights_dir: str | None = None
    offline: bool = False
    hf_offline: bool = False
    hf_endpoint: str = "https://huggingface.co"
    workers: int = 1
    max_pending: int = 8
    result_ttl: float = 600.0
    malloc_tune: bool = True
    lanes: bool = True


def _number(environ: Mapping[str, str], name: str, default: float, kind: type = int) -> Any:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None


def settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """The settings the environment gives now (read on each call: cheap, and a test's or a
    launcher's change is seen).

    Raises:
        ValueError: a number that is not one.
    """
    return Settings(
        cache_dir=environ.get("EXPLORER_CACHE_DIR") or None,
        user_cache=environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        weights_dir=environ.get("EXPLORER_WEIGHTS_DIR") or None,
        offline=environ.get("EXPLORER_OFFLINE", "").strip().lower() in _TRUE,
        hf_offline=environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
        hf_endpoint=environ.get("HF_ENDPOINT") or "https://huggingface.co",
        workers=max(1, min(2, _number(environ, "EXPLORER_WORKERS", 1))),
        max_pending=max(0, _number(environ, "EXPLORER_MAX_PENDING", 8)),
        result_ttl=_number(environ, "EXPLORER_RESULT_TTL", 600.0, float),
        malloc_tune=environ.get("EXPLORER_MALLOC_TUNE", "1").strip() != "0",
        lanes=environ.get("EXPLORER_LANES", "1").strip() != "0",
    )


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Which images to load.

    Attributes:
        source: `sample:<name>`, a folder, a zip, a WebDataset shard (or a folder or brace pattern of
            them), a parquet file (or a folder of them), a `save_to_disk` folder, or a CSV or parquet
            table of paths (docs/datasets.md).
        max_images: stratified subsample to at most this many images (None: all).
        random_state: seed of the subsample.
        label_column: the label column of a table, a metadata file or a shard's json (default:
            label, labels, class, cls or target, where there is one).
        image_column: the image column of a parquet or Arrow table (default: its Image feature, or
            its first `{bytes, path}` struct or bytes column).
    """

    source: str = "sample:clothing"
    max_images: int | None = None
    random_state: int = 0
    label_column: str | None = None
    image_column: str | None = None

    def __post_init__(self) -> None:
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images={self.max_images} must be at least 1 (or None for all)")


@dataclass(frozen=True, kw_only=True)
class ExtractSpec:
    """How to turn images into per-layer feature vectors.

    Attributes:
        model: a model of any source (networks/sources.py): `mobilenet_v2` (torchvision),
            `timm:convnext_tiny.fb_in22k`, `hf:facebook/dinov2-small` or `hf:FOLDER`, `FILE.pt2`,
            `package.module:builder`.
        weights: `auto` (the model's default pretrained weights), `none` (random init) or a file path.
        layers: FX node names (torchvision) or module names (other sources); empty means the
            model's default spread.
        pooling: spatial pooling of NCHW/NHWC maps: avg, max or avgmax (concatenated).
        token_pooling: pooling of token sequences (ViT): cls or mean (mean for a model without a
            class token).
        precision: auto (bf16 where the CPU/GPU supports it), fp32 or bf16.
        device: auto (CUDA, then MPS, then CPU), cpu, cuda or mps.
        batch_size: images per forward pass.
        random_state: seed of the random initialisation when weights is `none`.
    """

    model: str = "mobilenet_v2"
    weights: str = "auto"
    layers: tuple[str, ...] = ()
    pooling: str = "avg"
    token_pooling: str = "cls"
    precision: str = "auto"
    device: str = "auto"
    batch_size: int = 32
    random_state: int = 0

    def __post_init__(self) -> None:
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("token_pooling", self.token_pooling, TOKEN_POOLINGS)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("device", self.device, DEVICES)
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be at least 1")
        if not isinstance(self.layers, tuple):
            raise TypeError(f"layers must be a tuple of node names, got {type(self.layers).__name__}")

    def replace(self, **changes: Any) -> ExtractSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class ProjectionSpec:
    """How to project each layer's features to 2-D or 3-D.

    Attributes:
        method: pca, umap, tsne or none.
        n_components: 2 or 3.
        n_neighbors: UMAP neighbourhood size.
        min_dist: UMAP minimum distance.
        perplexity: t-SNE perplexity.
        random_state: seed; the default result is reproducible run to run.
    """

    method: str = "umap"
    n_components: int = 2
    n_neighbors: int = 15
    min_dist: float = 0.1
    perplexity: float = 30.0
    random_state: int = 0

    def __post_init__(self) -> None:
        _check_choice("projection", self.method, PROJECTIONS)
        if self.n_components not in (2, 3):
            raise ValueError(f"n_components={self.n_components} must be 2 or 3")
        if self.n_neighbors < 2:
            raise ValueError(f"n_neighbors={self.n_neighbors} must be at least 2")


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """How to score separability.

    Attributes:
        folds: most stratified folds for the probe and kNN (fewer when a class is smaller).
        knn_k: neighbours of the kNN classifier (at most neighbors.GRAPH_K, the graph's).
        probe_c: inverse L2 regularisation of the logistic-regression probe; None chooses it in the
            first fold by cross-validation over probe.C_GRID and keeps it for the others.
        random_state: seed of the fold split.
    """

    folds: int = 5
    knn_k: int = 5
    probe_c: float | None = None
    random_state: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds={self.folds} must be at least 2")
        if not 1 <= self.knn_k <= 15:
            raise ValueError(f"knn_k={self.knn_k} must be between 1 and 15 (the neighbour graph keeps 15)")
        if self.probe_c is not None and self.probe_c <= 0:
            raise ValueError(f"probe_c={self.probe_c} must be positive (or None to choose it by nested CV)")
