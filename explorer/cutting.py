"""A chosen cut taken away: the network up to one layer with a trained head, exported as files
that run with torch alone and tested on images the head never saw (`cut`); and such a cut run
on new images (`predict`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .analysis.head import Head, train_head
from .analysis.uncertainty import accuracy_interval
from .config import ExtractSpec
from .data.datasets import ImageDataset
from .extraction.layer_features import extract_features
from .networks.cost import cut_costs
from .networks.preprocess import Preprocess
from .networks.sources import canonical, source_of
from .networks.truncate import truncated
from .output import cut_files
from .progress import Cancelled, ShouldStop, StageProgress
from .store import FeatureCache

log = logging.getLogger(__name__)

PREDICT_BATCH = 32


@dataclass(frozen=True)
class CutResult:
    """What `make_cut` wrote: the folder's files, the numbers of metrics.json, and the test images'
    predictions by the exported program."""

    files: dict[str, Path]
    metrics: dict[str, Any]
    test_predictions: pd.DataFrame
    head: Head
    test: ImageDataset


def check_stop(should_stop: ShouldStop | None) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled("the cut was cancelled")


def split_rows(
    labels: list[str] | tuple[str, ...], test_split: float, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): a stratified split with `test_split` of each class held out.

    Raises:
        ValueError: a fraction outside (0, 1), or too few images of a class to hold any out.
    """
    from sklearn.model_selection import StratifiedShuffleSplit

    if not 0 < test_split < 1:
        raise ValueError(f"--test-split {test_split!r} is not a fraction between 0 and 1 (0.2 holds out a fifth)")
    y = np.asarray(labels)
    counts = pd.Series(y).value_counts()
    if counts.min() < 2:
        raise ValueError(
            f"class {counts.idxmin()!r} has {counts.min()} image: a stratified split needs 2 of each class; "
            "give --test-data FOLDER instead"
        )
    cv = StratifiedShuffleSplit(n_splits=1, test_size=test_split, random_state=random_state)
    train, test = next(cv.split(np.zeros(len(y)), y))
    return np.sort(train), np.sort(test)


def program_outputs(
    module: Any,
    transform: Any,
    dataset: ImageDataset,
    *,
    max_pixels: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """An exported program's output for every image of `dataset`: one decode each (the one image
    loader, its limits), the preprocessing, batches of PREDICT_BATCH. Returns the (N, K) float32
    outputs (zeros for an image that could not be decoded) and each image's reason ("" if read)."""
    import torch

    pre = Preprocess(transform)
    items = dataset.items
    outputs: np.ndarray | None = None
    errors: list[str] = []
    for start in range(0, len(items), PREDICT_BATCH):
        part = items[start : start + PREDICT_BATCH]
        decoded = [pre.decode(it.read_bytes, max_pixels) for it in part]
        good = [i for i, (t, _) in enumerate(decoded) if t is not None]
        if good:
            with torch.no_grad():
                out = module(pre.batch(decoded[i][0] for i in good)).float().numpy()
            if outputs is None:
                outputs = np.zeros((len(items), out.shape[1]), dtype=np.float32)
            outputs[[start + i for i in good]] = out
        errors += [why or "" for _, why in decoded]
        if progress:
            progress(min(start + PREDICT_BATCH, len(items)), len(items))
    return (outputs if outputs is not None else np.zeros((len(items), 0), np.float32)), errors


def run_program(
    module: Any,
    transform: Any,
    dataset: ImageDataset,
    classes: list[str],
    *,
    max_pixels: int,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """A cut's predictions for every image of `dataset` (program_outputs, then softmax): file,
    predicted, probability, error (an image that cannot be decoded gets no prediction and its reason)."""
    import torch

    logits, errors = program_outputs(module, transform, dataset, max_pixels=max_pixels, progress=progress)
    probs = (
        torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        if logits.shape[1]
        else np.zeros((len(errors), len(classes)), np.float32)
    )
    rows = []
    for i, (it, why) in enumerate(zip(dataset.items, errors)):
        top = int(probs[i].argmax()) if probs.shape[1] else 0
        rows.append(
            {
                "file": it.name,
                "predicted": "" if why else classes[top],
                "probability": np.nan if why else float(probs[i, top]),
                "error": why,
            }
        )
    return pd.DataFrame(rows, columns=["file", "predicted", "probability", "error"])


def predict(
    folder: str | Path,
    dataset: ImageDataset,
    *,
    max_pixels: int = 64_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Run an exported cut on new images: file, predicted, probability (and error, where an image
    could not be decoded), decoded and preprocessed as the cut's preprocess.json says."""
    cut = cut_files.load_cut(folder)
    return run_program(
        cut.module,
        cut_files.transform_from(cut.preprocess),
        dataset,
        cut.classes,
        max_pixels=max_pixels,
        progress=progress,
    )


def network_up_to(spec: ExtractSpec, run: Any) -> tuple[dict[str, Any], Callable[[], Any]]:
    """(preprocess.json, a builder of the network up to the run's one layer, pooled) for a cut or
    an embedder; the preprocessing is checked first, before minutes of export."""
    src = source_of(spec.model)
    weights = src.resolve_weights(spec.model, spec.weights, random_state=spec.random_state)
    pre = cut_files.preprocess_json(src.transform(spec.model, weights))  # a preprocessing it cannot say stops here

    def build() -> Any:
        return truncated(
            spec.model,
            src.build(spec.model, weights),
            run.nodes[spec.layers[0]],
            input_size=run.profile.input_size,
            pooling=spec.pooling,
            token_pooling=run.spec.token_pooling,
        )

    return pre, build


def make_cut(
    dataset: ImageDataset,
    spec: ExtractSpec,
    out: str | Path,
    *,
    test: ImageDataset | None = None,
    test_split: float = 0.2,
    cache: FeatureCache | None = None,
    progress: StageProgress | None = None,
    max_pixels: int = 64_000_000,
    command: str = "",
    should_stop: ShouldStop | None = None,
) -> CutResult:
    """Train a head on one layer of one model and export the cut network with it.

    Args:
        dataset: labelled images: all of them train the head when `test` is given, else a
            stratified `1 - test_split` of them.
        spec: the model, its weights and exactly one layer (pooling as the features).
        out: the folder to write the cut into.
        test: images to test on (their classes among the training classes), or None to hold
            out `test_split` of `dataset`.
        test_split: the share of each class held out when `test` is None.
        cache: the feature store (the training features come from it where cached).
        progress: called with (stage, done, total).
        max_pixels: pixel-bomb limit for decoding.
        command: the command line, for the model card.
        should_stop: polled between batches and stages; True raises Cancelled.

    Returns:
        A CutResult.

    Raises:
        ValueError: no labels, not exactly one layer, an unsplittable dataset, a preprocessing
            that preprocess.json cannot say.
    """
    import torch

    if dataset.labels is None:
        raise ValueError(
            f"{dataset.source!r} has no labels: a cut's head is trained on labelled images (class folders or labels.csv)"
        )
    if len(spec.layers) != 1:
        raise ValueError(
            f"a cut is at one layer; got {len(spec.layers)} ({', '.join(spec.layers) or 'none'}): give --layer NODE"
        )
    cache = cache or FeatureCache()
    spec = spec.replace(model=canonical(spec.model))
    if test is None:
        train_rows, test_rows = split_rows(dataset.labels, test_split, spec.random_state)
        train_ds, test_ds = dataset.take(train_rows), dataset.take(test_rows)
        train_source = f"{1 - test_split:.0%} of {dataset.source}, stratified"
        test_source = f"the other {test_split:.0%} of {dataset.source}"
    else:
        train_ds, test_ds, train_source, test_source = dataset, test, dataset.source, test.source
        if test.labels is None:
            raise ValueError(f"--test-data {test.source!r} has no labels: the test accuracy needs them")
    run = extract_features(
        train_ds, spec, cache=cache, progress=progress, max_pixels=max_pixels, should_stop=should_stop
    )
    check_stop(should_stop)
    layer = spec.layers[0]
    feats = run.features[layer]
    keep = np.array([i for i in range(len(train_ds)) if i not in run.unreadable], dtype=np.int64)
    labels = [train_ds.labels[i] for i in keep]  # type: ignore[index]
    if progress:
        progress("training the head", 0, 1)
    head: Head = train_head(np.asarray(feats[keep]), labels, random_state=spec.random_state)
    unseen = sorted(set(test_ds.labels or ()) - set(head.classes))
    if unseen:
        raise ValueError(f"the test images have classes the training images lack: {', '.join(unseen[:5])}")
    pre, build_features = network_up_to(spec, run)
    node = run.nodes[layer]
    if progress:
        progress("exporting the cut", 0, 1)
    with torch.device("cpu"):
        program = cut_files.export_program(build_features(), head.weight, head.bias, run.profile.input_size)
    check_stop(should_stop)
    predictions = run_program(
        program.module(),
        cut_files.transform_from(pre),
        test_ds,
        list(head.classes),
        max_pixels=max_pixels,
        progress=(lambda d, t: progress("testing the cut", d, t)) if progress else None,
    )
    decoded = predictions["error"] == ""
    truth = np.asarray(test_ds.labels)[decoded.to_numpy()]
    correct = predictions.loc[decoded, "predicted"].to_numpy() == truth
    low, high = accuracy_interval(correct, random_state=spec.random_state)
    cost = cut_costs(spec.model, [node])[node]
    counts = pd.Series(labels).value_counts()
    info = run.profile[node]
    metrics = {
        "model": spec.model,
        "layer": layer,
        "node": node,
        "weights": run.weights.name,
        "dim": int(feats.shape[1]),
        "pooling": f"{spec.pooling}-pooled" if info.layout != "tokens" else f"{run.spec.token_pooling}-token-pooled",
        "input_size": run.profile.input_size,
        "params": cost.params,
        "gflops": cost.gflops,
        "classes": list(head.classes),
        "c": head.c,
        "n_train": head.n_train,
        "n_test": int(decoded.sum()),
        "n_test_unreadable": int((~decoded).sum()),
        "test_accuracy": float(correct.mean()) if len(correct) else float("nan"),
        "test_accuracy_low": low,
        "test_accuracy_high": high,
        "chance_accuracy": float(counts.max() / counts.sum()),
        "train_source": train_source,
        "test_source": test_source,
        "preprocess": pre,
        "random_state": spec.random_state,
    }
    card = cut_files.model_card(metrics, command)
    files = cut_files.write_cut(Path(out), program, pre, list(head.classes), metrics, card)
    log.info(
        "cut %s at %s: test accuracy %.3f on %d images", spec.model, layer, metrics["test_accuracy"], metrics["n_test"]
    )
    return CutResult(files, metrics, predictions, head, test_ds)
