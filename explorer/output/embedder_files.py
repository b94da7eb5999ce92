"""The files of an exported embedder, readable without this tool: `embedder.pt2` (a torch.export
program, normalised float32 images -> unit-length embeddings), `preprocess.json`, `metrics.json`
and `model_card.md`; and a gallery enrolled with it, `gallery.npz` (no pickle: numbers and
strings only), so a gallery is enrolled once and reused."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.open_set import Gallery
from ..fsutil import atomic_write, atomic_write_bytes
from ..networks.safe_program import check_archive, load_program
from ..networks.truncate import batch_dim
from .cut_files import CARD, METRICS, PREPROCESS

PROGRAM = "embedder.pt2"
FILES = (PROGRAM, PREPROCESS, METRICS, CARD)


def export_embedder(features: Any, projection: tuple[np.ndarray, np.ndarray] | None, input_size: int) -> Any:
    """The embedder as a torch.export program: the network up to the layer and its pooling, the
    learned projection (z = (f - mean) @ weights, as one linear layer) if any, then L2
    normalisation; the batch dimension is dynamic.

    Args:
        features: the truncated network (eval mode): images -> (B, D) pooled features.
        projection: (mean (D,), weights (D, k)), or None for the pooled features themselves.
        input_size: the square input size.
    """
    import torch

    class Unit(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(x, dim=1)

    parts = [features]
    if projection is not None:
        mean, weights = projection
        linear = torch.nn.Linear(weights.shape[0], weights.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights.T, dtype=np.float32)))
            linear.bias.copy_(torch.from_numpy((-(mean.astype(np.float32) @ weights)).astype(np.float32)))
        parts.append(linear)
    parts.append(Unit())
    program = torch.nn.Sequential(*parts)
    example = torch.zeros(2, 3, input_size, input_size)
    with torch.no_grad():
        return torch.export.export(program, (example,), dynamic_shapes=({0: batch_dim()},), strict=False)


def write_embedder(out: Path, program: Any, pre: dict[str, Any], metrics: dict[str, Any], card: str) -> dict[str, Path]:
    """Write the four files into `out` (each atomically; the card last).

    Raises:
        UnsafeProgramError: the program torch wrote would not pass the check every reader makes.
    """
    import torch

    out.mkdir(parents=True, exist_ok=True)
    written = {
        PREPROCESS: atomic_write_bytes(out / PREPROCESS, json.dumps(pre, indent=2).encode()),
        METRICS: atomic_write_bytes(out / METRICS, json.dumps(metrics, indent=2).encode()),
        PROGRAM: atomic_write(out / PROGRAM, lambda fh: torch.export.save(program, fh)),
    }
    check_archive(out / PROGRAM)  # what predict accepts: an embedder that would be refused is not handed over
    written[CARD] = atomic_write_bytes(out / CARD, card.encode())
    return written


def is_embedder(folder: str | Path) -> bool:
    """Whether `folder` holds an exported embedder (rather than a cut with a head)."""
    return (Path(folder) / PROGRAM).is_file()


@dataclass(frozen=True)
class LoadedEmbedder:
    """An exported embedder read back: its module, preprocessing, numbers and identity."""

    module: Any
    preprocess: dict[str, Any]
    metrics: dict[str, Any]
    identity: str  # sha256 of its program: a gallery names the embedder it was enrolled with


def load_embedder(folder: str | Path) -> LoadedEmbedder:
    """Read a folder written by `cut --embedding`.

    Raises:
        ValueError: a folder without the embedder's files; its program refused as one that could
            run code (networks/safe_program.UnsafeProgramError).
    """
    folder = Path(folder)
    missing = [f for f in (PROGRAM, PREPROCESS) if not (folder / f).is_file()]
    if missing:
        raise ValueError(
            f"{str(folder)!r} is not an exported embedder: it has no {', '.join(missing)} "
            "(make one with `python -m explorer cut --embedding`)"
        )
    pre = json.loads((folder / PREPROCESS).read_text())
    metrics = json.loads((folder / METRICS).read_text()) if (folder / METRICS).is_file() else {}
    module = load_program(folder / PROGRAM).module()  # checked first, nothing unpickled
    return LoadedEmbedder(module, pre, metrics, file_identity(folder / PROGRAM))


def file_identity(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_gallery(path: str | Path, gallery: Gallery, embedder: str) -> Path:
    """gallery.npz: the classes, prototypes, counts, threshold and FAR, and the embedder's identity."""
    import io

    def write(fh: Any) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            classes=np.asarray(gallery.classes, dtype=str),
            prototypes=gallery.prototypes.astype(np.float32),
            counts=np.asarray(gallery.counts, dtype=np.int64),
            threshold=np.array(gallery.threshold),
            far=np.array(gallery.far),
            impostors=np.array(gallery.impostors),
            embedder=np.array(embedder),
        )
        fh.write(buf.getvalue())

    return atomic_write(Path(path), write)


def load_gallery(path: str | Path, embedder: str) -> Gallery:
    """A gallery saved by save_gallery, for the embedder of identity `embedder`.

    Raises:
        ValueError: not a gallery file, or one enrolled with another embedder.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            got = {k: z[k] for k in ("classes", "prototypes", "counts", "threshold", "far", "impostors", "embedder")}
        name = str(got["embedder"])
        prototypes = np.asarray(got["prototypes"], dtype=np.float32)
        classes = np.asarray(got["classes"], dtype=str)
        counts, threshold = np.asarray(got["counts"], dtype=np.int64), float(got["threshold"])
        far, impostors = float(got["far"]), int(got["impostors"])
    except Exception as e:  # noqa: BLE001 (a stranger's bytes: zip, zlib, npy header, shape and dtype errors alike)
        raise ValueError(
            f"{str(path)!r} is not a gallery saved by `predict --save-gallery` ({type(e).__name__})"
        ) from None
    if name != embedder:
        raise ValueError(f"{str(path)!r} was enrolled with another embedder: enrol the gallery folder again")
    consistent = prototypes.ndim == 2 and classes.ndim == 1 and len(classes) == len(prototypes)
    if not consistent or not np.isfinite(prototypes).all() or not np.isfinite(threshold):
        raise ValueError(f"{str(path)!r} is not a consistent gallery (classes and prototypes disagree)")
    return Gallery(classes, prototypes, counts, threshold, far, impostors)


def model_card(m: dict[str, Any], command: str) -> str:
    """model_card.md of an embedder: what it is, its projection, what was measured, how to use it."""
    if m["reduce"] == "none":
        projection = f"no projection: the {m['dim']}-dimensional pooled features themselves"
    else:
        fitted = (
            f"fitted on {m['fit_images']:,} images of {len(m['fit_classes'])} classes ({', '.join(m['fit_classes'])})"
            if m["fit_classes"]
            else f"fitted on {m['fit_images']:,} images"
        )
        projection = (
            f"a {m['reduce'].upper()} projection to {m['dim']} of the layer's {m['layer_dim']} dimensions, {fitted}"
        )
    if "test_map_at_r" in m:
        tested = (
            f"On {m['test_images']:,} images of {len(m['test_classes'])} classes the projection never saw "
            f"({', '.join(m['test_classes'])}), embedded by this exported program: MAP@R {m['test_map_at_r']:.3f} "
            f"(95 % interval {m['test_map_at_r_low']:.3f}–{m['test_map_at_r_high']:.3f}), precision@1 "
            f"{m['test_precision_at_1']:.3f}, verification ROC AUC {m['test_verification_auc']:.3f} "
            "(cosine similarity; docs/metrics.md says how each is computed)."
        )
    else:
        tested = "Not measured: that needs labels of at least 4 classes with 2 images each."
    return f"""# {m["model"]} cut at {m["layer"]}, as an embedder

**What it is.** The network `{m["model"]}` ({m["weights"]}) up to its layer `{m["layer"]}`, {m["pooling"]}-pooled,
then {projection}, then L2-normalised: an image becomes a unit-length {m["dim"]}-dimensional vector, and the cosine
similarity of two images is the dot product of theirs. There is no head: classes are recognised by similarity to
a gallery of a few images each, classes the network never saw included. The network up to the layer has
{m["params"]:,} parameters and costs {m["gflops"]:.3g} GFLOPs per image at {m["input_size"]} × {m["input_size"]}.

**How it was tested.** {tested}

## Files

- `embedder.pt2`: a `torch.export` program; input a normalised float32 batch `(B, 3, {m["input_size"]}, {m["input_size"]})`,
  output unit-length embeddings `(B, {m["dim"]})`.
- `preprocess.json`: Resize, CenterCrop, ToTensor, Normalize (torchvision's meaning). `metrics.json`: the numbers above.

## Recognise new classes

```
python -m explorer predict --model THIS_FOLDER --gallery GALLERY_FOLDER --data QUERIES --out predictions.csv --far 0.01
```

`GALLERY_FOLDER` holds one folder of images per class (a handful each is enough). Each query gets the class of the
nearest class mean, or `unknown` below the similarity threshold that lets in 1 % of strangers, estimated on the
gallery. `--save-gallery gallery.npz` keeps the enrolled gallery (no pickle) to pass as `--gallery` next time.

## Made with

```
{command}
```
"""
