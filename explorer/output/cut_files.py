"""The files of an exported cut, readable without this tool: `cut.pt2` (a torch.export program,
normalised float32 images -> class logits), `preprocess.json`, `labels.json`, `metrics.json` and
`model_card.md`; and reading them back (a loaded cut, its preprocessing)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import atomic_write, atomic_write_bytes
from ..networks.preprocess import Preprocess
from ..networks.safe_program import check_archive, load_program
from ..networks.truncate import batch_dim

PROGRAM = "cut.pt2"
PREPROCESS = "preprocess.json"
LABELS = "labels.json"
METRICS = "metrics.json"
CARD = "model_card.md"
FILES = (PROGRAM, PREPROCESS, LABELS, METRICS, CARD)


def preprocess_json(transform: Any) -> dict[str, Any]:
    """A model's preprocessing in the contract's words: Resize(R) of the shorter side (or to
    [H, W]), CenterCrop(S), ToTensor, Normalize(mean, std), with torchvision's meaning.

    Raises:
        ValueError: a preprocessing that is not resize, crop, to-tensor and normalise.
    """

    steps = Preprocess(transform).steps
    if steps is None:
        raise ValueError(
            f"this model's preprocessing ({type(transform).__name__}) is not resize, crop, to-tensor "
            "and normalise; it cannot be written as preprocess.json"
        )
    interp = getattr(steps.interpolation, "value", "bilinear")
    if interp not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation {interp!r}: preprocess.json says bilinear or bicubic")
    resize = steps.resize_size
    crop = steps.crop_size
    return {
        "resize": None if resize is None else resize[0] if len(resize) == 1 else list(resize),
        "crop": None if crop is None else int(crop[0]),
        "interpolation": interp,
        "mean": list(steps.mean) if steps.mean is not None else [0.0, 0.0, 0.0],
        "std": list(steps.std) if steps.std is not None else [1.0, 1.0, 1.0],
    }


def transform_from(pre: dict[str, Any]) -> Any:
    """preprocess.json as torchvision transforms (what `predict` and the model card's snippet run)."""
    from torchvision import transforms as T

    mode = T.InterpolationMode(pre["interpolation"])
    steps: list[Any] = []
    if pre.get("resize") is not None:
        steps.append(T.Resize(pre["resize"], interpolation=mode, antialias=True))
    if pre.get("crop") is not None:
        steps.append(T.CenterCrop(pre["crop"]))
    steps += [T.ToTensor(), T.Normalize(pre["mean"], pre["std"])]
    return T.Compose(steps)


def export_program(features: Any, weight: np.ndarray, bias: np.ndarray, input_size: int) -> Any:
    """The cut as a torch.export program: the network up to the layer, its pooling, then the head
    as one linear layer; the batch dimension is dynamic."""
    import torch

    linear = torch.nn.Linear(weight.shape[0], weight.shape[1])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))
        linear.bias.copy_(torch.from_numpy(bias))
    program = torch.nn.Sequential(
        features, linear
    )  # no .eval(): an exported module refuses train(); `features` is in eval mode
    example = torch.zeros(2, 3, input_size, input_size)
    with torch.no_grad():
        return torch.export.export(program, (example,), dynamic_shapes=({0: batch_dim()},), strict=False)


def write_cut(
    out: Path, program: Any, pre: dict[str, Any], classes: list[str], metrics: dict[str, Any], card: str
) -> dict[str, Path]:
    """Write the five files into `out` (each atomically; the program last but one, the card last).

    Raises:
        UnsafeProgramError: the program torch wrote would not pass the check every reader makes.
    """
    import torch

    out.mkdir(parents=True, exist_ok=True)
    written = {
        PREPROCESS: atomic_write_bytes(out / PREPROCESS, json.dumps(pre, indent=2).encode()),
        LABELS: atomic_write_bytes(out / LABELS, json.dumps(classes, indent=2, ensure_ascii=False).encode()),
        METRICS: atomic_write_bytes(out / METRICS, json.dumps(metrics, indent=2).encode()),
        PROGRAM: atomic_write(out / PROGRAM, lambda fh: torch.export.save(program, fh)),
    }
    check_archive(out / PROGRAM)  # what predict accepts: a cut that would be refused is not handed over
    written[CARD] = atomic_write_bytes(out / CARD, card.encode())
    return written


@dataclass(frozen=True)
class LoadedCut:
    """An exported cut read back: the program's module, its preprocessing and class names."""

    module: Any
    preprocess: dict[str, Any]
    classes: list[str]
    metrics: dict[str, Any]


def load_cut(folder: str | Path) -> LoadedCut:
    """Read a folder written by `cut`.

    Raises:
        ValueError: a folder without the cut's files, or files that do not fit together; its
            program refused as one that could run code (networks/safe_program.UnsafeProgramError).
    """

    folder = Path(folder)
    missing = [f for f in (PROGRAM, PREPROCESS, LABELS) if not (folder / f).is_file()]
    if missing:
        raise ValueError(
            f"{str(folder)!r} is not an exported cut: it has no {', '.join(missing)} "
            "(make one with `python -m explorer cut`)"
        )
    pre = json.loads((folder / PREPROCESS).read_text())
    classes = json.loads((folder / LABELS).read_text())
    metrics = json.loads((folder / METRICS).read_text()) if (folder / METRICS).is_file() else {}
    module = load_program(folder / PROGRAM).module()  # checked first, nothing unpickled (networks/safe_program.py)
    return LoadedCut(module, pre, [str(c) for c in classes], metrics)


def model_card(m: dict[str, Any], command: str) -> str:
    """model_card.md: what the cut is, how it was trained and tested, its numbers, the command."""
    interval = f"{m['test_accuracy']:.3f} (95 % interval {m['test_accuracy_low']:.3f}–{m['test_accuracy_high']:.3f})"
    return f"""# {m["model"]} cut at {m["layer"]}, with a linear head

**What it is.** The network `{m["model"]}` ({m["weights"]}) up to its layer `{m["layer"]}`, that layer's output
{m["pooling"]} to a {m["dim"]}-dimensional vector, then a linear classifier over {len(m["classes"])} classes:
{", ".join(m["classes"])}. The network up to the layer has {m["params"]:,} parameters and costs {m["gflops"]:.3g} GFLOPs
(multiply-adds) per image at {m["input_size"]} × {m["input_size"]}.

**How it was trained.** The layer's features of {m["n_train"]:,} training images ({m["train_source"]}) were
standardised, turned to their principal axes and fitted with multinomial logistic regression (L-BFGS); the inverse
regularisation C = {m["c"]:g} was chosen by cross-validation on the training images alone. Standardisation and
rotation are folded into the linear layer.

**How it was tested.** On {m["n_test"]:,} images the head and its C never saw ({m["test_source"]}), run through
this exported program with the preprocessing below: accuracy {interval}, the interval a bootstrap over the test
images. Chance (always the most frequent training class) is {m["chance_accuracy"]:.3f}.

## Files

- `cut.pt2`: a `torch.export` program; input a normalised float32 batch `(B, 3, {m["input_size"]}, {m["input_size"]})`,
  output class logits `(B, {len(m["classes"])})`.
- `preprocess.json`: Resize to {m["preprocess"]["resize"]} (shorter side), CenterCrop {m["preprocess"]["crop"]},
  {m["preprocess"]["interpolation"]}, ToTensor, Normalize (mean, std as listed): torchvision's meaning.
- `labels.json`: the class names in logit order. `metrics.json`: the numbers above.

## Use it with torch alone

```python
import json, torch
from PIL import Image
from torchvision import transforms as T

pre = json.load(open("preprocess.json"))
labels = json.load(open("labels.json"))
model = torch.export.load("cut.pt2").module()
tf = T.Compose([T.Resize(pre["resize"], interpolation=T.InterpolationMode(pre["interpolation"])),
                T.CenterCrop(pre["crop"]), T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])
x = tf(Image.open("photo.jpg").convert("RGB")).unsqueeze(0)
print(labels[model(x).argmax(1).item()])
```

Or `python -m explorer predict --model THIS_FOLDER --data FOLDER --out predictions.csv`.

## Made with

```
{command}
```
"""
