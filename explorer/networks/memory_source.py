"""A model already in this Python process (an `nn.Module` passed to `explorer.compare`) as a model
source (networks/sources.py), read with forward hooks on its named modules, as own models are.

`name_model(module, transform)` names it `module:ClassName@HASH`, where HASH covers what decides its
features: its state dict's values, its classes' source code and its printed structure (which holds
the constructor's arguments), and its transform (printed, and its output on a probe image). The feature cache keys on that name, so a module whose weights or code
changed is extracted again, and the same module in a later session reads its features back. A class
whose code cannot be read (defined with `exec`, or in `python -c`) is refused with a sentence rather
than cached under a name that would not notice a change.

The module itself is never changed: each use works on a copy (moved to the device, in eval mode).
The model travels beside the request as an `InMemoryModel` (run.run_analysis's `models`), and is
readable by its name only while a run uses it (`using`); nothing keeps it afterwards. It lives in
this process only, so it runs on the local engine, not on Ray.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import weights as wts
from .own_source import DEFAULT_SIZE, IMAGENET_MEAN, IMAGENET_STD, shuffle_parameters

PREFIX = "module:"
# classes from these packages are named with the package's version, not read as source code
_LIBRARIES = ("torch", "torchvision", "timm", "transformers")


@dataclass(frozen=True, eq=False)
class InMemoryModel:
    """An nn.Module given from Python, with its name and what the name was made from.

    Attributes:
        name: `module:ClassName@HASH`, the model's name in specs, cache keys and tables.
        module: the user's nn.Module, never changed (each use works on a copy).
        transform: a PIL image -> a (3, H, W) float tensor.
    """

    name: str
    module: Any
    transform: Any
    weights_hash: str
    code_hash: str
    input_size: int


# the in-memory models that running analyses use, by name, with how many runs use each: filled and
# emptied by `using` (run.run_analysis, api.layers); a model no run uses is not kept
_IN_USE: dict[str, tuple[InMemoryModel, int]] = {}
_IN_USE_LOCK = threading.Lock()


@contextlib.contextmanager
def using(models: Sequence[InMemoryModel]) -> Iterator[None]:
    """Make `models` readable by their names (by extraction, layer listing, costing) while the
    block runs."""
    with _IN_USE_LOCK:
        for m in models:
            _, count = _IN_USE.get(m.name, (m, 0))
            _IN_USE[m.name] = (m, count + 1)
    try:
        yield
    finally:
        with _IN_USE_LOCK:
            for m in models:
                held, count = _IN_USE[m.name]
                if count > 1:
                    _IN_USE[m.name] = (held, count - 1)
                else:
                    del _IN_USE[m.name]


def default_transform(size: int = DEFAULT_SIZE) -> Any:
    """ImageNet's preprocessing at `size`: resize to 256/224 of it, centre crop, normalise."""
    from torchvision import transforms as T

    return T.Compose(
        [T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def _state_hash(module: Any) -> str:
    """sha256 over the state dict: every tensor's name, dtype, shape and bytes."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r};".encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _code_hash(module: Any) -> str:
    """sha256 over the printed structure and each class's code (a library's class: its name and
    the library's version).

    Raises:
        ValueError: a class's source code cannot be read.
    """
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256(repr(module).encode())
    for cls in sorted({type(m) for m in module.modules()}, key=lambda c: (c.__module__, c.__qualname__)):
        package = cls.__module__.split(".")[0]
        if package in _LIBRARIES:
            try:
                got = version(package)
            except PackageNotFoundError:
                got = "?"
            h.update(f"{cls.__module__}.{cls.__qualname__}@{got};".encode())
            continue
        h.update(_class_source(cls).encode())
    return h.hexdigest()


def _class_source(cls: type) -> str:
    """A class's source code; in a notebook, where Python 3.11 cannot find a class's own source (its
    module `__main__` has no file), its name, bases and each of its functions' source, which the
    kernel keeps per cell.

    Raises:
        ValueError: the code cannot be read (a class made with `exec` or typed into `python -c`).
    """
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError) as exc:
        why = exc
    parts = [f"class {cls.__qualname__}({', '.join(b.__qualname__ for b in cls.__bases__)})"]
    try:
        for name, value in sorted(vars(cls).items()):
            fn = getattr(value, "__func__", value)  # a staticmethod's or classmethod's function
            if inspect.isfunction(fn):
                parts.append(inspect.getsource(fn))
            elif not name.startswith("__"):
                parts.append(f"{name} = {value!r}")
    except (OSError, TypeError) as exc:
        why = exc
    else:
        if len(parts) > 1:
            return "\n".join(parts)
    raise ValueError(
        f"cannot read the code of {cls.__qualname__} to key its cached features ({why}); define the "
        "class in a file or a notebook cell, or pass a model name or a .pt2 program"
    ) from why


def _transform_identity(transform: Any) -> tuple[int, str]:
    """(the square size `transform` gives a 320 x 320 image, a hash of what it does): its printed
    form and its output on a probe image, so two transforms that differ in size, crop or
    normalisation give two names. It must give a (3, H, W) tensor."""
    import torch
    from PIL import Image

    probe = Image.new("RGB", (320, 320), (128, 128, 128))
    probe.paste((200, 40, 90), (40, 60, 200, 260))
    try:
        out = transform(probe)
    except Exception as exc:  # a user's callable: any error type
        raise ValueError(f"the transform fails on a 320 x 320 RGB PIL image: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[0] != 3:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the transform must turn a PIL image into a (3, H, W) float tensor; it gave {got}")
    if out.shape[1] != out.shape[2]:
        raise ValueError(f"the transform gives {out.shape[1]}x{out.shape[2]} tensors; only square inputs are supported")
    h = hashlib.sha256(repr(transform).encode())
    h.update(out.detach().to(torch.float32).contiguous().numpy().tobytes())
    return int(out.shape[1]), h.hexdigest()


def name_model(module: Any, transform: Any = None) -> InMemoryModel:
    """Name an in-memory model by what decides its features (its weights, code and transform).

    Args:
        module: a `torch.nn.Module` that takes an (N, 3, H, W) float batch.
        transform: its preprocessing, a PIL image -> a (3, H, W) float tensor (default: ImageNet's
            at 224 pixels).

    Returns:
        The model with its name, `module:ClassName@HASH` (ExtractSpec.model), to pass beside the
        request (run.run_analysis's `models`).

    Raises:
        TypeError: `module` is not an nn.Module.
        ValueError: its code cannot be read, or the transform does not give a square (3, H, W) tensor.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a model name, not {type(module).__name__}")
    transform = transform if transform is not None else default_transform()
    weights_hash, code_hash = _state_hash(module), _code_hash(module)
    size, transform_hash = _transform_identity(transform)
    digest = hashlib.sha256((weights_hash + code_hash + transform_hash).encode()).hexdigest()[:12]
    return InMemoryModel(f"{PREFIX}{type(module).__name__}@{digest}", module, transform, weights_hash, code_hash, size)


def _entry(model: str) -> InMemoryModel:
    with _IN_USE_LOCK:
        held = _IN_USE.get(model)
    if held is None:
        raise ValueError(
            f"{model} is an in-memory model no running analysis holds; pass the nn.Module itself "
            "to explorer.compare (in-memory models run on the local engine only, not on Ray)"
        )
    return held[0]


class MemorySource:
    """Models given from Python, while a run uses them."""

    name = "module"
    traced = False

    def listed(self) -> list[str]:
        with _IN_USE_LOCK:
            return list(_IN_USE)

    def check(self, model: str) -> None:
        _entry(model)

    def availability(self, model: str) -> str:
        return "offline"

    def resolve_weights(self, model: str, weights_arg: str, *, random_state: int = 0) -> wts.ResolvedWeights:
        entry = _entry(model)
        if weights_arg == "none":
            return wts.ResolvedWeights("random", "random", None, f"random:{random_state}")
        if weights_arg != "auto":
            raise ValueError(f"{model} carries its own weights: use weights 'auto', or 'none' for a shuffled baseline")
        return wts.ResolvedWeights("pretrained", model, None, entry.weights_hash)

    def build(self, model: str, weights: wts.ResolvedWeights, *, device: str = "cpu") -> Any:
        net = copy.deepcopy(_entry(model).module).to(device).eval()
        if (
            weights.kind == "random" and device != "meta"
        ):  # the random baseline: each parameter's values permuted (own_source's)
            shuffle_parameters(net, int(weights.identity.split(":")[1]))
        return net

    def transform(self, model: str, weights: wts.ResolvedWeights) -> Any:
        return _entry(model).transform

    def input_size(self, model: str) -> int:
        return _entry(model).input_size

    def architecture(self, model: str) -> str:
        return _entry(model).code_hash


MEMORY = MemorySource()
