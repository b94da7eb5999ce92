"""The code identity of each stage of the analysis, part of every cache key of that stage, so that
a result made by different code is never served.

A stage's identity is a hash of the code of the modules that shape its results: their syntax trees,
without docstrings (comments never reach the tree), so rewording a comment or a docstring keeps
the cache while any change to what runs, a constant included, makes the stage's results new. A
layer's features carry the identities of decoding and extraction; each derived result carries
its own stage's identity besides the layer's key.

A module that a stage's modules import but that cannot change its numbers (the store, the
configuration objects, logging helpers) is listed in NOT_NUMERIC with the reason;
tests/test_code_identity.py fails when a stage's modules import an explorer module that is in
neither list."""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util

STAGES: dict[str, tuple[str, ...]] = {
    # decoding and preprocessing: the pixels each image becomes, and which images cannot be read
    "decode": ("explorer.data.images", "explorer.networks.preprocess"),
    # the forward pass and pooling: the model as built (by any source) and traced or hooked, folded
    # BatchNorm, the pooled vectors
    "extract": (
        "explorer.networks.registry",
        "explorer.networks.weights",
        "explorer.networks.layers",
        "explorer.networks.batchnorm",
        "explorer.networks.sources",
        "explorer.networks.timm_source",
        "explorer.networks.hf_source",
        "explorer.networks.own_source",
        "explorer.networks.module_layers",
        "explorer.networks.memory_source",
        "explorer.networks.safe_program",
        "explorer.extraction.extractor",
        "explorer.extraction.device",
        "explorer.extraction.decode",
        "explorer.extraction.threads",
        "explorer.networks.pooling",
        "explorer.extraction.backend",
        "explorer.extraction.local_backend",
        "explorer.extraction.ray_backend",
    ),
    # each derived result: the modules that compute it, and store it (to_arrays / from_arrays)
    "graph": ("explorer.analysis.neighbors", "explorer.analysis.chunked"),
    "scores": (
        "explorer.analysis.scores",
        "explorer.analysis.probe",
        "explorer.analysis.neighbors",
        "explorer.analysis.chunked",
        "explorer.analysis.uncertainty",
    ),
    "projection": ("explorer.analysis.projection", "explorer.analysis.neighbors", "explorer.analysis.chunked"),
    "similarity": ("explorer.analysis.similarity", "explorer.analysis.neighbors", "explorer.analysis.chunked"),
    "logme": ("explorer.analysis.logme", "explorer.analysis.chunked"),
    "scorers": ("explorer.analysis.scorers", "explorer.analysis.chunked"),
    "compression": ("explorer.analysis.compression", "explorer.analysis.probe", "explorer.analysis.chunked"),
    "intrinsic": ("explorer.analysis.intrinsic", "explorer.analysis.chunked"),
    "alignment": (
        "explorer.analysis.alignment",
        "explorer.analysis.retrieval",
        "explorer.analysis.uncertainty",
        "explorer.analysis.chunked",
    ),
    # recognising new classes (retrieval, few-shot episodes, the unseen-class compression curve)
    "retrieval": ("explorer.analysis.retrieval", "explorer.analysis.uncertainty", "explorer.analysis.chunked"),
    "few_shot": (
        "explorer.analysis.few_shot",
        "explorer.analysis.retrieval",
        "explorer.analysis.probe",
        "explorer.analysis.scores",  # the probe's out-of-fold predictions, read at `all`
        "explorer.analysis.neighbors",
        "explorer.analysis.uncertainty",
        "explorer.analysis.chunked",
    ),
    "unseen": (
        "explorer.analysis.unseen",
        "explorer.analysis.retrieval",
        "explorer.analysis.compression",
        "explorer.analysis.probe",
        "explorer.analysis.uncertainty",
        "explorer.analysis.chunked",
    ),
    # the timed passes (the model as built for extraction is the "extract" stage's)
    "latency": ("explorer.extraction.latency",),
}

NOT_NUMERIC: dict[str, str] = {
    "explorer": "the package's docstring and version",
    "explorer.config": "frozen specs: every setting that changes a result is in the key as a value",
    "explorer.store": "where results are kept and how keys are hashed (its SCHEMA is in every key)",
    "explorer.fsutil": "atomic writes and the cache folder",
    "explorer.code_identity": "this module: what it hashes, not what it computes",
    "explorer.data.datasets": "which files are read, in what order; the dataset's content hash is in the key",
    "explorer.data.listing": "which files are a dataset's images and their labels; the labels are in the score key",
    "explorer.data.archive": "safe unpacking; the files it yields are hashed",
    "explorer.data.items": "an image's name and where its bytes are; the bytes are hashed",
    "explorer.data.containers": "where an image's bytes are read from (a tar member, a table cell); the bytes are hashed",
    "explorer.data.shards": "where a shard's images are read from (a tar member) and their labels; the bytes are hashed",
    "explorer.data.tar_headers": "which members a shard has and where their bytes start; the bytes are hashed",
    "explorer.data.cluster_listing": "where Ray's readers read an image's bytes and the checks every image gets; the bytes "
    "are hashed, and each image is matched to its row by its hash",
    "explorer.data.file_checks": "what reading the files found, remembered by stat; the decode identity is in its records",
    "explorer.networks.fx_lock": "a lock between tracing and running modules",
    "explorer.progress": "how work reports progress and is stopped; a stopped extraction keeps only finished chunks",
    "explorer.process_setup": "process knobs (malloc, numba's cache and threading layer): where and how fast, not what",
    "explorer.extraction.layer_features": "which layers are read from the store and which extracted, under which keys "
    "(everything that shapes a layer's values is in its key)",
    "explorer.analysis.cached_runs": "which function computes each result, under which key (each result stores itself)",
}


def _normalised(source: str) -> str:
    """The module's syntax tree as text, its docstrings left out."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def module_source(name: str) -> str:
    """The source text of an explorer module, read from its file."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(name)
    with open(spec.origin, encoding="utf-8") as fh:
        return fh.read()


def identity_of(modules: tuple[str, ...], sources: dict[str, str] | None = None) -> str:
    """The hash of the given modules' code (`sources`: their text, where given, instead of their files)."""
    h = hashlib.sha256()
    for name in modules:
        text = (sources or {}).get(name)
        h.update(
            name.encode() + b"\0" + _normalised(text if text is not None else module_source(name)).encode() + b"\0"
        )
    return h.hexdigest()[:16]


@functools.cache
def stage_identity(stage: str) -> str:
    """The code identity of a stage (STAGES), computed once per process from the installed files."""
    return identity_of(STAGES[stage])


def identities(*stages: str) -> dict[str, str]:
    """{stage: identity} of the given stages: the code part of a cache key."""
    return {s: stage_identity(s) for s in stages}
