"""Where a model comes from: one interface over torchvision, timm, Hugging Face and the user's own
model, chosen by the name the user types.

- `resnet50` or `torchvision:resnet50`: torchvision's classification zoo (registry.py), traced with FX;
- `timm:convnext_tiny.fb_in22k`: timm's names and pretrained tags (timm_source.py);
- `hf:facebook/dinov2-small` or `hf:/path/to/a/save_pretrained/folder` (hf_source.py);
- `path/to/model.pt2` (a `torch.export` program) or `package.module:builder` (own_source.py);
- `module:ClassName@HASH`: an `nn.Module` in this process, registered by the Python API (memory_source.py).

Every source but torchvision is read layer by layer with forward hooks on its modules
(module_layers.py); its libraries are imported only when one of its models is used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from .registry import TORCHVISION
from .weights import ResolvedWeights

PREFIXES = ("torchvision", "timm", "hf", "module")
_BUILDER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # package.module:builder


class ModelSource(Protocol):
    """What every source of models provides, for one model name at a time."""

    name: str  # torchvision, timm, hf, module or own
    traced: bool  # True: FX node names (torchvision); False: module names, read with forward hooks

    def listed(self) -> list[str]:
        """The models this source can name without a network (for the picker and `models`)."""
        ...

    def check(self, model: str) -> None:
        """Raise a ValueError in one sentence when `model` is not one of this source's models."""
        ...

    def availability(self, model: str) -> str:
        """`offline` (pretrained weights on this machine), `download` or `none` (no pretrained weights)."""
        ...

    def resolve_weights(self, model: str, weights_arg: str, *, random_state: int = 0) -> ResolvedWeights:
        """`auto`, `none` (random init with this seed) or a file: which weights the model gets."""
        ...

    def build(self, model: str, weights: ResolvedWeights, *, device: str = "cpu") -> Any:
        """The model in eval mode, called with an (N, 3, H, W) batch (meta device: shapes only)."""
        ...

    def transform(self, model: str, weights: ResolvedWeights) -> Any:
        """Its preprocessing: a PIL image -> a (3, H, W) float tensor (networks/preprocess.py splits it)."""
        ...

    def input_size(self, model: str) -> int:
        """The square input size its preprocessing produces."""
        ...

    def architecture(self, model: str) -> str:
        """What identifies the architecture beyond its name (a file's hash; empty when the name does)."""
        ...


def canonical(model: str) -> str:
    """The one spelling of a model name: `torchvision:resnet50` is `resnet50`; the rest as typed,
    surrounding spaces removed."""
    model = model.strip()
    return model.removeprefix("torchvision:")


def source_name(model: str) -> str:
    """Which source a model name belongs to: torchvision, timm, hf, module or own."""
    model = canonical(model)
    prefix, sep, rest = model.partition(":")
    if sep and prefix in PREFIXES and (prefix != "module" or "@" in rest):  # `module:build` is a builder in module.py
        return prefix
    if model.endswith(".pt2") or _BUILDER.match(model):
        return "own"
    return "torchvision"


def what_loading_runs(model: str) -> str | None:
    """What loading `model` would run or read on this machine beyond a catalog's architecture, in a
    few words; None for a catalog name (torchvision, timm, hf:ORG/NAME). A share link that names such
    a model builds nothing until the person confirms it (docs/security.md)."""
    model = canonical(model)
    kind = source_name(model)
    if kind == "own":
        if model.endswith(".pt2"):
            return "an exported program file on this machine, read and run"
        return "Python code on this machine: its module is imported and its function called"
    ref = model.partition(":")[2]
    if kind == "hf" and (
        ref.startswith(("/", ".", "~")) or Path(ref).expanduser().is_dir()
    ):  # hf_source's test of a folder
        return "a save_pretrained folder on this machine, read and run"
    return None


def source_of(model: str) -> ModelSource:
    """The source object of a model name. A source's module is imported when one of its names is
    first used (hf_source.py imports torch at its top; the data stage and `--help` need neither)."""
    kind = source_name(model)
    if kind == "timm":
        from .timm_source import TIMM

        return TIMM
    if kind == "hf":
        from .hf_source import HF

        return HF
    if kind == "own":
        from .own_source import OWN

        return OWN
    if kind == "module":
        from .memory_source import MEMORY

        return MEMORY
    return TORCHVISION


def hooked_layers_root(module: Any) -> Any:
    """The module whose named submodules are a hooked model's layers (a wrapper names its inner model)."""
    return getattr(module, "layers_root", module)
