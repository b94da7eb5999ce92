"""One analysis request in one vocabulary: the `compare` command line's flags, the dashboard's share
link and command snippet, and the Python API's keyword arguments all name the same fields.

    --n-neighbors 30          (command line)
    ?n-neighbors=30           (a share link: the flag's name without its dashes)
    n_neighbors=30            (Python: the flag's name with underscores)

`AnalysisRequest.from_argv(request.to_argv())` and `AnalysisRequest.from_query(request.to_query())`
give the request back (tests/test_request.py). Links written before the names were unified keep
working: their names are read as aliases (LINK_ALIASES).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .config import DEVICES, POOLINGS, PRECISIONS, TOKEN_POOLINGS, DataSpec, ExtractSpec, MetricSpec, ProjectionSpec

# old link names -> the flag's name (links written before 2026-12 keep opening the same analysis)
LINK_ALIASES = {"dims": "components", "n_neighbors": "n-neighbors", "min_dist": "min-dist", "max_images": "max-images",
                "baseline": "random-baseline", "checkpoint": "weights", "knn_k": "knn-k", "probe_c": "probe-c",
                "batch_size": "batch-size", "random_baseline": "random-baseline"}  # fmt: skip


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The analysis's flags, one per AnalysisRequest field, with its defaults (`compare` adds them)."""
    d = AnalysisRequest()
    a = parser.add_argument
    a(
        "--data",
        default=d.data,
        help="folder, .zip, sample:clothing / sample:digits, WebDataset .tar shards (a folder or "
        "shards-{000..009}.tar), .parquet (a file or folder), a save_to_disk folder, or a CSV/parquet table of paths",
    )
    a(
        "--label-column",
        default=d.label_column,
        help="the label column of a table, metadata.csv/jsonl or a shard's .json",
    )
    a("--image-column", default=d.image_column, help="the image (or path) column of a parquet, Arrow or CSV table")
    a(
        "--model",
        default=_text(d.model),
        help="one or more models, comma-separated: resnet50 (torchvision), timm:NAME[.TAG], "
        "hf:ORG/NAME or hf:FOLDER, FILE.pt2 (torch.export), package.module:builder",
    )
    a(
        "--weights",
        default=_text(d.weights),
        help="auto | none (random init) | a torchvision weights name | a file "
        "(.pth, .safetensors); one for every model, or one per model, comma-separated",
    )
    a("--layers", default="auto", help="auto | node,node,... | model:node,... with several models")
    a("--pooling", default=d.pooling, choices=list(POOLINGS))
    a("--tokens", default=d.tokens, choices=list(TOKEN_POOLINGS), help="pooling of ViT token sequences")
    a("--projection", default=d.projection, choices=["umap", "pca", "tsne", "none"])
    a("--components", type=int, default=d.components, choices=[2, 3])
    a("--n-neighbors", type=int, default=d.n_neighbors, help="UMAP neighbourhood size")
    a("--min-dist", type=float, default=d.min_dist, help="UMAP minimum distance")
    a("--perplexity", type=float, default=d.perplexity, help="t-SNE perplexity")
    a(
        "--random-baseline",
        action="store_true",
        help="add the first model again with random weights (a baseline: what the architecture alone does)",
    )
    a("--max-images", type=int, default=d.max_images, help="stratified subsample to at most N images")
    a(
        "--select",
        default=d.select,
        help="CLASS or COLUMN=VALUE (labels.csv): where does this selection emerge? "
        "writes selection_emergence.csv, the selection-vs-rest probe at every layer",
    )
    a("--folds", type=int, default=d.folds, help="stratified folds of the probe")
    a("--knn-k", type=int, default=d.knn_k, help="neighbours that vote in kNN accuracy (1-15)")
    a(
        "--probe-c",
        default=d.probe_c,
        help="auto (cross-validated over 0.01, 0.1, 1, 10 in the first fold, kept for the "
        "others) or a fixed inverse regularisation",
    )
    a("--precision", default=d.precision, choices=list(PRECISIONS))
    a("--device", default=d.device, choices=list(DEVICES))
    a("--batch-size", type=int, default=d.batch_size)
    a(
        "--seed",
        type=int,
        default=d.seed,
        help="every random choice: the sample, a random init, the folds, the projection, the bootstraps",
    )


# the engine's specs' defaults are the request's (and so the command line's, the link's and the API's)
_DATA, _EXTRACT, _PROJECTION, _METRIC = DataSpec(), ExtractSpec(), ProjectionSpec(), MetricSpec()


@dataclass(frozen=True, kw_only=True)
class AnalysisRequest:
    """What `compare` analyses, field for field its command-line flags (`--n-neighbors` is
    `n_neighbors`); the defaults are the command line's.

    Attributes:
        data: a folder, a .zip, `sample:NAME`, shards, parquet, a save_to_disk folder or a table of paths.
        label_column: the label column of a table, a metadata file or a shard's json.
        image_column: the image (or path) column of a table.
        model: the models (networks/sources.py names them), a tuple; given as text, `a,b` is split.
        weights: auto, none, a torchvision weights name or a file; one for all, or one per model,
            a tuple; given as text, `auto,none` is split.
        layers: the layers asked for, ((model, (node, ...)), ...); empty, or a model left out: its
            default spread. Given as text (`auto`, `node,node` for one model, `model:node,...`), a
            list of one model's nodes or {model: [nodes]}, it is read into that form.
        pooling: avg, max or avgmax.
        tokens: cls or mean (token sequences).
        projection: umap, pca, tsne or none.
        components: 2 or 3.
        n_neighbors: UMAP's neighbourhood size.
        min_dist: UMAP's minimum distance.
        perplexity: t-SNE's perplexity.
        random_baseline: add the first model again with random weights.
        max_images: a stratified sample of at most this many images (None: all).
        select: CLASS or COLUMN=VALUE whose emergence is asked for.
        folds: stratified folds of the probe.
        knn_k: neighbours that vote in kNN accuracy.
        probe_c: `auto` or a fixed inverse regularisation of the probe.
        precision: auto, fp32 or bf16.
        device: auto, cpu, cuda or mps.
        batch_size: images per forward pass.
        seed: every random choice: the sample, a random init, the folds, the projection, the bootstraps.
    """

    data: str = _DATA.source
    label_column: str | None = None
    image_column: str | None = None
    model: tuple[str, ...] = (_EXTRACT.model,)
    weights: tuple[str, ...] = (_EXTRACT.weights,)
    layers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    pooling: str = _EXTRACT.pooling
    tokens: str = _EXTRACT.token_pooling
    projection: str = _PROJECTION.method
    components: int = _PROJECTION.n_components
    n_neighbors: int = _PROJECTION.n_neighbors
    min_dist: float = _PROJECTION.min_dist
    perplexity: float = _PROJECTION.perplexity
    random_baseline: bool = False
    max_images: int | None = None
    select: str | None = None
    folds: int = _METRIC.folds
    knn_k: int = _METRIC.knn_k
    probe_c: str = "auto"
    precision: str = _EXTRACT.precision
    device: str = _EXTRACT.device
    batch_size: int = _EXTRACT.batch_size
    seed: int = 0

    def __post_init__(self) -> None:
        settle = functools.partial(object.__setattr__, self)  # frozen: each given spelling read once, here
        settle("model", _names(self.model))
        settle("weights", _names(self.weights))
        if not self.model:
            raise ValueError("model: give at least one model")
        settle("layers", _layer_table(self.model, self.layers))
        n_weights = len(self.weights)
        if n_weights not in (1, len(self.models)):
            raise ValueError(
                f"weights has {n_weights} values for {len(self.models)} models; give one, or one per model"
            )
        if self.probe_c != "auto":
            try:
                float(self.probe_c)
            except ValueError:
                raise ValueError(f"probe_c={self.probe_c!r} is neither auto nor a number") from None
        self.specs()  # every other check: the config objects' own

    @property
    def models(self) -> list[str]:
        return list(self.model)

    def replace(self, **changes: Any) -> AnalysisRequest:
        return dataclasses.replace(self, **changes)

    def specs(self) -> tuple[DataSpec, list[ExtractSpec], ProjectionSpec, MetricSpec]:
        """(the data, one ExtractSpec per run, the projection, the metrics): what the engine runs."""
        names = self.models
        per_model = dict(self.layers)
        weights = list(self.weights) * len(names) if len(self.weights) == 1 else list(self.weights)
        specs = [
            ExtractSpec(
                model=m,
                weights=w,
                layers=per_model.get(m, ()),
                pooling=self.pooling,
                token_pooling=self.tokens,
                precision=self.precision,
                device=self.device,
                batch_size=self.batch_size,
                random_state=self.seed,
            )
            for m, w in zip(names, weights)
        ]
        if self.random_baseline and specs[0].weights != "none":  # the first model again, with random weights
            specs.insert(1, specs[0].replace(weights="none"))
        projection = ProjectionSpec(
            method=self.projection,
            n_components=self.components,
            n_neighbors=self.n_neighbors,
            min_dist=self.min_dist,
            perplexity=self.perplexity,
            random_state=self.seed,
        )
        metric = MetricSpec(
            folds=self.folds,
            knn_k=self.knn_k,
            probe_c=None if self.probe_c == "auto" else float(self.probe_c),
            random_state=self.seed,
        )
        data = DataSpec(
            source=self.data,
            max_images=self.max_images,
            random_state=self.seed,
            label_column=self.label_column,
            image_column=self.image_column,
        )
        return data, specs, projection, metric

    # the command line

    def _chosen(self, everything: bool) -> list[tuple[str, Any]]:
        """(field, value) of data, model and every field that differs from the default (all of
        them with `everything`), in the fields' order; None values left out."""
        default = AnalysisRequest()
        return [
            (f.name, getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
            and (everything or f.name in ("data", "model") or getattr(self, f.name) != getattr(default, f.name))
        ]

    def to_argv(self, *, everything: bool = False) -> list[str]:
        """`compare` arguments for this request (without --out): --data and --model always, the
        others where they differ from the default (all of them with `everything`)."""
        argv: list[str] = []
        for name, value in self._chosen(everything):
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                argv += [flag] if value else []
            else:
                argv += [flag, _text(value, self.model)]
        return argv

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> AnalysisRequest:
        """The request a `compare` command line makes (its --out and other run options are ignored)."""
        parser = argparse.ArgumentParser(prog="compare", add_help=False)
        add_arguments(parser)
        args, _ = parser.parse_known_args(list(argv))
        return cls.from_namespace(args)

    @classmethod
    def from_namespace(cls, args: Any) -> AnalysisRequest:
        """The request of parsed `compare` arguments."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    # the share link

    def to_query(self) -> dict[str, str]:
        """The share link's parameters: the flags' names without dashes; data and model always,
        the others where they differ from the default (a switch that is on: `1`)."""
        return {
            name.replace("_", "-"): ("1" if value else "0") if isinstance(value, bool) else _text(value, self.model)
            for name, value in self._chosen(False)
        }

    @classmethod
    def from_query(cls, params: Mapping[str, str], *, strict: bool = False) -> AnalysisRequest:
        """The request a share link names. Old names are read through LINK_ALIASES; unknown
        parameters are ignored. A value that does not parse falls back to the default, unless
        `strict` (then ValueError): a hostile link cannot break a page."""
        known = {f.name.replace("_", "-"): f for f in fields(cls)}
        values: dict[str, Any] = {}
        for raw, text in params.items():
            name = LINK_ALIASES.get(raw, raw)
            if name not in known or (
                raw != name and name in params and raw != "checkpoint"
            ):  # a new name wins over its alias
                continue
            f = known[name]
            if raw == "weights" and text in ("pretrained", "random"):  # the old link's words
                if params.get("checkpoint"):
                    continue  # its checkpoint field took the place of the radio
                text = "auto" if text == "pretrained" else "none"
            try:
                values[f.name] = _parse(f, str(text))
            except ValueError:
                if strict:
                    raise
        try:
            return cls(**values)
        except ValueError:
            if strict:
                raise
        values = {f.name: values[f.name] for f in fields(cls) if f.name in values}  # model before weights
        kept: dict[str, Any] = {}  # a value the request refuses (weights for another count of models) is dropped
        for name, value in values.items():
            try:
                cls(**kept, **{name: value})
            except ValueError:
                continue
            kept[name] = value
        return cls(**kept)


def _text(value: Any, models: Sequence[str] = ()) -> str:
    """A field's value as the command line and the link spell it (the one printer); `models`, for
    the layers: with one model its nodes alone, with several `model:node`."""
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):  # layers
        return ",".join(n if len(models) == 1 else f"{m}:{n}" for m, nodes in value for n in nodes)
    if isinstance(value, tuple):
        return ",".join(value) or "auto"
    return repr(value) if isinstance(value, float) else str(value)


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Models or weights in any spelling: `a,b`, or a sequence of names (the one parser)."""
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(v.strip() for v in items if v.strip())


def _layer_table(
    models: tuple[str, ...], value: str | Sequence[Any] | Mapping[str, Sequence[str]]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The layers asked for, ((model, nodes), ...) in the models' order, from any spelling: the
    command line's text, a list of one model's nodes, {model: nodes}, or that form itself."""
    if isinstance(value, str):
        per_model = parse_layers(list(models), value)
    elif isinstance(value, Mapping):  # a model's nodes: a list, or text (`auto`, `a,b`)
        per_model = {
            m: _names(nodes) if isinstance(nodes, str) else tuple(str(n) for n in nodes) for m, nodes in value.items()
        }
        per_model = {m: () if nodes == ("auto",) else nodes for m, nodes in per_model.items()}
    elif all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], tuple) for v in value) and value:
        per_model = dict(value)
    else:
        nodes = tuple(str(n) for n in value)
        if nodes and len(models) > 1:
            raise ValueError("with several models give layers as {model: [layers]} (or 'auto')")
        per_model = {models[0]: nodes}
    unknown = [m for m in per_model if m not in models]
    if unknown:
        raise ValueError(
            f"layers names the model {unknown[0]!r}, which is not compared; the models are {', '.join(models)}"
        )
    return tuple((m, per_model[m]) for m in models if per_model.get(m))


def _parse(f: dataclasses.Field, text: str) -> Any:
    kind = str(f.type)
    if "bool" in kind:
        return text.strip().lower() in ("1", "true", "yes", "on")
    if "int" in kind:
        v = int(text)
        return None if "None" in kind and v == 0 else v
    if "float" in kind:
        return float(text)
    return None if "None" in kind and text == "" else text
