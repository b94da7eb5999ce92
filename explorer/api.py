"""The Python API: what `import explorer` offers (docs/python.md).

    import explorer
    comp = explorer.compare("sample:clothing", models="mobilenet_v2")
    comp.metrics                      # one row per layer: probe and kNN accuracy with intervals, ...
    comp.similarity("cka")            # layer x layer
    comp.projection("features.14")    # x, y, label, path
    comp.show()                       # the notebook view

The keyword options are the `compare` command line's flags with underscores (request.py), with
its defaults, except that the projection defaults to PCA (instant; `projection="umap"` as the
command line's). Models and data may be Python objects: an `nn.Module`, a DataFrame of paths, a
Hugging Face or torch Dataset, a list of images.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .config import DataSpec, Limits
from .data.datasets import ImageDataset
from .extraction.given_features import given_dataset, given_run
from .networks import catalog, memory_source, sources
from .networks import layers as layer_profiles
from .output import export, notebook, report, tables
from .progress import StageBar
from .record import Comparison as Record
from .request import AnalysisRequest
from .run import RunSettings, read_data, run_analysis, run_on_features
from .store import FeatureCache

log = logging.getLogger(__name__)

ModelLike = Any  # a model name (any source), or a torch.nn.Module
_RUN_OPTIONS = (
    "data",
    "model",
    "layers",
    "projection",
    "label_column",
    "image_column",
)  # request fields compare() takes by their own names
_FEATURE_OPTIONS = ("components", "n_neighbors", "min_dist", "perplexity", "folds", "knn_k", "probe_c", "seed")


class Comparison(Record):
    """What one analysis found (record.Comparison, the record), with the Python API's methods:
    each returns a DataFrame, HTML, the files written or the notebook view (docs/python.md).

    Layer keys name a layer in every table: the node (`features.7`) with one run, `run:node`
    (`resnet18:layer3`) with several.
    """

    @classmethod
    def of(cls, record: Record) -> Comparison:
        """The API's view of a record: the same fields, shared, not copied."""
        return cls(**{f.name: getattr(record, f.name) for f in dataclasses.fields(record)})

    def similarity(self, kind: str = "cka", long: bool = False) -> pd.DataFrame:
        """How alike every pair of layers is.

        Args:
            kind: `cka` (linear CKA, the usual biased estimator), `cka_debiased` or `overlap` (the
                mean share of an image's 10 nearest neighbours two layers have in common).
            long: one row per pair of layers (layer_a, layer_b, every measure, CKA's 95 % interval)
                instead of the square matrix of `kind`.

        Returns:
            A square DataFrame indexed by layer key, or the long table.
        """
        if long:
            return tables.similarity_pairs(self)
        return tables.layer_matrix(self, kind)

    def projection(self, layer: str) -> pd.DataFrame:
        """One layer's 2-D (or 3-D) projection: columns index, path, label, x, y (and z).

        Args:
            layer: a layer key (`features.7`, or `model:node` with several models).

        Raises:
            KeyError: the layer is unknown, or the comparison was made with projection `none`.
        """
        key = self.key_of(layer)
        if key not in self.projections:
            raise KeyError(f"layer {layer!r} was not projected (projection='none')")
        return tables.projection_frame(self, key)

    @property
    def similarity_nulls(self) -> pd.DataFrame:
        """One row per (pair of layers, measure): the score with its bootstrap interval, its
        permutation null's mean and edge, the calibrated score and whether it is inside the null,
        as similarity.csv (empty with compare(..., similarity_nulls=False))."""
        return tables.alignment_table(self)

    @property
    def scorer_agreement(self) -> pd.DataFrame:
        """One row per training-free scorer (logme, h_score, transrate) and the size prior
        (params): weighted Kendall τ with the probe across the leaderboard's rows and its 95 %
        bootstrap interval, as scorer_agreement.csv (docs/metrics.md). Empty without a leaderboard."""
        return self.agreement

    @property
    def dimension(self) -> pd.DataFrame:
        """One row per (model, layer): width, effective dimension, intrinsic dimension by TwoNN with
        its 95 % interval, RankMe, and the model's TwoNN minimum, as dimension.csv (docs/metrics.md)."""
        return tables.dimension_table(self)

    @property
    def retrieval(self) -> pd.DataFrame:
        """One row per (model, layer): how well cosine similarity on the layer retrieves a class's
        other images (precision_at_1, map_at_r with its 95 % interval, r_precision) and verifies
        pairs (verification_auc, tar_at_far_0.01), as retrieval.csv (docs/metrics.md)."""
        return tables.retrieval_table(self)

    @property
    def few_shot(self) -> pd.DataFrame:
        """One row per (model, layer, shots, method): accuracy on classes known from `shots` labelled
        images (1, 2, 5, 10, 20, all) by the nearest class mean (`prototype`) or a trained linear
        probe (`probe`), with its 95 % interval over the episodes, as few_shot.csv."""
        return tables.few_shot_table(self)

    @property
    def unseen_compression(self) -> pd.DataFrame:
        """One row per (model, layer, projection, k): retrieval on classes a PCA or LDA projection
        to k dimensions never saw, as unseen_compression.csv."""
        return tables.unseen_table(self)

    def movers(self) -> pd.DataFrame:
        """One row per image: the share of its 10 nearest neighbours that changed between each pair
        of consecutive layers of each model, and the first layer where most of its 5 nearest
        neighbours share its class (as movers.csv)."""
        return tables.movers_table(self)

    def class_pairs(self) -> pd.DataFrame:
        """One row per pair of classes: how often the probe confuses them at each layer, and the
        first layer where they come apart (as class_pairs.csv)."""
        return tables.class_pairs_table(self)

    def emergence(self, selection: str | Sequence[int]) -> pd.DataFrame:
        """Where a selection of images emerges: at each layer of each model, how well a probe tells
        the selected images from the rest (balanced, chance 0.5).

        Args:
            selection: a class, `COLUMN=VALUE` of the dataset's metadata, or row indices.

        Raises:
            ValueError: the selection matches no image.
        """
        rows = self.selection(selection) if isinstance(selection, str) else [int(i) for i in selection]
        if not rows:
            raise ValueError(f"selection {selection!r} matches no image: give a class, COLUMN=VALUE or row indices")
        return tables.emergence_table(self, rows)

    def report(self, selection: str | None = None) -> str:
        """The self-contained HTML report (report.html), plotly.js inlined.

        Args:
            selection: a class or `COLUMN=VALUE` whose emergence the report shows (None: none).
        """
        return report.render(self, self._selection_pair(selection))

    def export(self, folder: str | Path, selection: str | None = None) -> dict[str, Path]:
        """Write every file `compare --out` writes.

        Args:
            folder: where to write them (made if missing).
            selection: a class or `COLUMN=VALUE`: also selection_emergence.csv.

        Returns:
            {file name: path}.
        """
        return export.write_all(self, folder, self._selection_pair(selection))

    def _selection_pair(self, selection: str | None) -> tuple[str, list[int]] | None:
        if selection is None:
            return None
        rows = self.selection(selection)
        if not rows:
            raise ValueError(f"selection {selection!r} matches no image: give a class, or COLUMN=VALUE of the metadata")
        return selection, rows

    def _repr_html_(self) -> str:
        return notebook.summary_html(self)

    def show(self, **options: Any) -> Any:
        """The notebook view: every layer's projection side by side, hover thumbnails, lasso and
        box selection linked across panels (output/widget.py); `show().selected` is the selection.

        Args:
            **options: layers (the layer keys to show; default all), colour_by (`class`, or a
                metadata column), align (Procrustes-align the panels), cols (panels per row).
        """

        from .output.widget import ComparisonWidget  # anywidget: optional

        return ComparisonWidget(self, **options)


def _request(**fields: Any) -> AnalysisRequest:
    """An AnalysisRequest; an unknown option is named with the known ones."""
    known = {f.name for f in dataclasses.fields(AnalysisRequest)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(
            f"unknown option {unknown[0]!r}; the options are the compare command's flags: "
            f"{', '.join(sorted(known - set(_RUN_OPTIONS)))}"
        )
    return AnalysisRequest(**fields)


def _model_names(
    models: ModelLike | Sequence[ModelLike] | Mapping[str, ModelLike], transform: Any
) -> tuple[list[str], list[str | None], list[memory_source.InMemoryModel]]:
    """(model names, run labels or None, the modules among them) for any spelling of the models: a
    name, `a,b`, an nn.Module, a list of these, or {label: model}. Modules are named
    (networks/memory_source.py) with `transform`, one for all or {label: transform}."""
    if isinstance(models, str):
        names = [m.strip() for m in models.split(",") if m.strip()]
        return names, [None] * len(names), []
    if isinstance(models, Mapping):
        pairs = [(str(label), m) for label, m in models.items()]
    elif isinstance(models, (list, tuple)):
        pairs = [(None, m) for m in models]
    else:
        pairs = [(None, models)]
    names: list[str] = []
    labels: list[str | None] = []
    modules: list[memory_source.InMemoryModel] = []
    for label, m in pairs:
        if isinstance(m, str):
            names.append(m.strip())
            labels.append(label)
            continue
        t = transform.get(label) if isinstance(transform, Mapping) else transform
        modules.append(memory_source.name_model(m, t))
        names.append(modules[-1].name)
        labels.append(label or type(m).__name__)
    return names, labels, modules


def _layers_by_name(
    layers: str | Sequence[str] | Mapping[str, Sequence[str]], names: list[str], labels: list[str | None]
) -> str | Sequence[str] | Mapping[str, Sequence[str]]:
    """`layers` with each model named by its model name, where it was named by its label."""
    if not isinstance(layers, Mapping):
        return layers
    by_label = {lab: n for lab, n in zip(labels, names) if lab is not None}
    return {by_label.get(model, model): tuple(nodes) for model, nodes in layers.items()}


def _cache(cache_dir: str | Path | None) -> FeatureCache:
    return FeatureCache(cache_dir) if cache_dir is not None else FeatureCache()


def load(
    data: Any = "sample:clothing",
    *,
    labels: Sequence[Any] | None = None,
    label_column: str | None = None,
    image_column: str | None = None,
    max_images: int | None = None,
    seed: int = 0,
    limits: Limits | None = None,
    progress: bool = True,
    thumbnails: bool = False,
) -> ImageDataset:
    """A dataset, checked as the command line checks one.

    Args:
        data: any source of docs/datasets.md (a folder, a .zip, `sample:NAME`, WebDataset shards,
            parquet, a save_to_disk folder, a table of paths), or a Python object
            (data/in_memory.py: a DataFrame of paths, a Hugging Face or torch Dataset, a list of images).
        labels: with a list of images, one label per image.
        label_column: the label column of a table, a metadata file, a DataFrame or a Hugging Face dataset.
        image_column: the image (or path) column of a table, a DataFrame or a Hugging Face dataset.
        max_images: a stratified sample of at most this many images.
        seed: the sample's seed.
        limits: what reading may cost (default: Limits()).
        progress: show a progress bar.
        thumbnails: make the small previews the views show.

    Returns:
        An ImageDataset. Call `close()` on it when done (a zip's, or an object's, images are
        unpacked into a temporary folder), or let a Comparison keep it.
    """
    in_python = not isinstance(data, (str, os.PathLike))
    spec = DataSpec(
        source="python" if in_python else str(data),
        max_images=max_images,
        random_state=seed,
        label_column=label_column,
        image_column=image_column,
    )
    settings = RunSettings(limits=limits or Limits(), thumbnails=thumbnails)
    bar = StageBar(enabled=progress, notebook=True)
    try:
        return read_data(spec, settings=settings, progress=bar, data=data if in_python else None, labels=labels)
    finally:
        bar.close()


def compare(
    data: Any = "sample:clothing",
    models: ModelLike | Sequence[ModelLike] | Mapping[str, ModelLike] = "mobilenet_v2",
    layers: str | Sequence[str] | Mapping[str, Sequence[str]] = "auto",
    projection: str = "pca",
    *,
    labels: Sequence[Any] | None = None,
    transform: Any = None,
    label_column: str | None = None,
    image_column: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    leaderboard: bool = True,
    latency: bool = True,
    similarity_nulls: bool | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    **options: Any,
) -> Comparison:
    """Extract, score, compare and project the chosen layers of one or more models on a dataset.

    Args:
        data: a folder, a .zip, `sample:clothing` / `sample:digits`, WebDataset shards, a parquet file
            or folder, a save_to_disk folder, a CSV or parquet table of paths (docs/datasets.md), or
            a Python object: a pandas
            DataFrame of paths and labels, a Hugging Face `datasets.Dataset` with an Image column,
            a torch `Dataset` of (image, label), or a list of PIL images (or arrays, or paths)
            with `labels`.
        models: a model name of any source (`resnet50`, `timm:convnext_tiny`, `hf:facebook/dinov2-small`,
            `model.pt2`, `package.module:builder`), `"a,b"`, a `torch.nn.Module`, a list of these,
            or {label: model}.
        layers: `auto` (each model's spread of block outputs), a list of one model's layers
            (`explorer.layers(model)` lists them), {model: [layers]}, or the command line's syntax.
        projection: pca, umap, tsne or none.
        labels: one label per image, for a list of images (or a torch Dataset of bare images).
        transform: the preprocessing of an nn.Module (a PIL image -> a (3, H, W) float tensor;
            default: ImageNet's at 224 pixels), or {label: transform}.
        label_column: the label column of a table, a parquet file, a metadata file, a shard's json,
            a DataFrame or a Hugging Face dataset.
        image_column: the image (or path) column of a DataFrame or Hugging Face dataset.
        cache_dir: the feature cache (default: $EXPLORER_CACHE_DIR or the user cache folder).
        progress: show a progress bar per stage.
        leaderboard: also score the cuts (LogME, compression curves, parameters, GFLOPs).
        latency: with `leaderboard`, time the network up to each layer on this machine.
        similarity_nulls: CKA, CKNNA, mutual kNN, RSA and Procrustes of every pair of layers
            against their permutation nulls (`comp.similarity_nulls`, similarity.csv): True, False,
            or None (the default) for up to 16 layers (120 pairs, about 30 s).
        engine: where extraction runs: `local` (this process) or `ray` (a Ray cluster, whose
            workers also read and hash shards, parquet and tables of paths: docs/datasets.md).
        ray_address: with `ray`, the cluster (`HOST:6379`, `ray://HOST:10001`, `auto`); None
            starts a local Ray instance for this call.
        **options: the `compare` command's other flags with underscores and its defaults:
            weights, pooling, tokens, components, n_neighbors, min_dist, perplexity,
            random_baseline, max_images, select, folds, knn_k, probe_c, precision, device,
            batch_size, seed.

    Returns:
        A Comparison (its methods return DataFrames; `show()` opens the notebook view).

    Raises:
        TypeError: an unknown option, or a model or data of a type that cannot be read.
        ValueError: anything else that cannot be done, said in one sentence.
    """
    names, run_labels, modules = _model_names(models, transform)
    in_python = not isinstance(data, (str, os.PathLike))
    request = _request(
        data="python" if in_python else str(data),
        label_column=label_column,
        image_column=image_column,
        model=tuple(names),
        layers=_layers_by_name(layers, names, run_labels),
        projection=projection,
        **options,
    )
    if request.random_baseline and request.specs()[1][0].weights != "none":
        run_labels.insert(1, f"{run_labels[0]}[random]" if run_labels[0] else None)
    settings = RunSettings(
        engine=engine,
        ray_address=ray_address,
        leaderboard=leaderboard,
        latency=latency,
        similarity_nulls=similarity_nulls,
    )
    bar = StageBar(enabled=progress, notebook=True)
    try:
        record = run_analysis(
            request,
            cache=_cache(cache_dir),
            settings=settings,
            data=data if in_python else None,
            labels=labels,
            models=modules,
            run_labels=run_labels,
            progress=bar,
        )
    finally:
        bar.close()
    return Comparison.of(record)


def compare_features(
    features: Mapping[str, Any] | Mapping[str, Mapping[str, Any]],
    labels: Sequence[Any] | None = None,
    *,
    names: Sequence[str] | None = None,
    metadata: Mapping[str, Sequence[Any]] | None = None,
    projection: str = "pca",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> Comparison:
    """Score, compare and project features computed elsewhere (torchlens, thingsvision, your code).

    Args:
        features: {layer: (N, D) array} in depth order ((N, C, H, W) maps are averaged over H and
            W), or {model: {layer: array}} to compare several models.
        labels: one label per row (None: unlabelled; the label metrics are left out).
        names: one name per row (the image's file, say; default `row 0`, ...).
        metadata: further columns, {name: one value per row}, to select on (`COLUMN=VALUE`).
        projection: pca, umap, tsne or none.
        cache_dir: where derived results are cached, keyed by each array's hash.
        progress: show a progress bar per stage.
        **options: components, n_neighbors, min_dist, perplexity, folds, knn_k, probe_c, seed.

    Returns:
        A Comparison without a leaderboard (there is no network to cost) or thumbnails.
    """

    bad = sorted(set(options) - set(_FEATURE_OPTIONS))
    if bad:
        raise TypeError(f"unknown option {bad[0]!r} for features; the options are {', '.join(_FEATURE_OPTIONS)}")
    if not features:
        raise ValueError("no features given: pass {layer: array}")
    nested = all(isinstance(v, Mapping) for v in features.values())
    per_model = {str(k): v for k, v in features.items()} if nested else {"features": features}
    runs = [given_run(label, layers) for label, layers in per_model.items()]
    n = {next(iter(r.features.values())).shape[0] for r in runs}
    if len(n) != 1:
        raise ValueError(f"the models' features have different numbers of rows ({', '.join(map(str, sorted(n)))})")
    dataset = given_dataset(n.pop(), labels, names, metadata)
    request = _request(data="features", model=tuple(per_model), projection=projection, **options)
    bar = StageBar(enabled=progress, notebook=True)
    try:
        record = run_on_features(request, dataset, runs, cache=_cache(cache_dir), progress=bar)
    finally:
        bar.close()
    return Comparison.of(record)


def models(filter: str | None = None, source: str = "all") -> pd.DataFrame:
    """The models this machine can name: columns model, source, weights (`offline`: pretrained
    weights here; `download`: they need a network; `none`: random init only).

    Args:
        filter: words that must all appear in the name (`dino`, `convnext tiny`), or a pattern (`resnet*`).
        source: all, torchvision, timm or hf.
    """
    names = catalog.search(filter or "", sources=None if source == "all" else (source,), limit=None)
    return pd.DataFrame(
        {
            "model": names,
            "source": [sources.source_name(n) for n in names],
            "weights": [catalog.availability(n) for n in names],
        }
    )


def layers(model: ModelLike, *, transform: Any = None) -> pd.DataFrame:
    """A model's layers in execution order: node, shape, layout, dim (pooled), size, depth, and
    whether each is a default pick, a block output, a bottleneck.

    Args:
        model: a model name of any source, or an nn.Module.
        transform: an nn.Module's preprocessing (a PIL image -> a (3, H, W) float tensor; default:
            ImageNet's at 224 pixels).
    """
    (name,), _, modules = _model_names(model, transform)
    with memory_source.using(modules):
        prof = layer_profiles.profile(name)
    default = set(prof.default)
    return pd.DataFrame(
        [
            {
                "node": i.node,
                "shape": "x".join(map(str, i.shape)),
                "layout": i.layout,
                "dim": i.dim,
                "size": i.size,
                "depth": round(i.depth, 4),
                "default": i.node in default,
                "block": i.is_block,
                "bottleneck": i.is_bottleneck,
            }
            for i in prof.layers
        ]
    )
