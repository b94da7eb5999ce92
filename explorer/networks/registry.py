"""Registry over torchvision's classification models: names, weights, preprocessing, building."""

from __future__ import annotations

import fnmatch
import logging
import re
from typing import Any

from . import weights as wts

log = logging.getLogger(__name__)


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_models(pattern: str | None = None) -> list[str]:
    """torchvision classification model names, naturally sorted, optionally fnmatch-filtered.

    Args:
        pattern: e.g. `resnet*`; None lists all.
    """
    from torchvision import models

    names = models.list_models(module=models)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return sorted(names, key=_natural_key)


def check_model_name(name: str) -> None:
    """Raise a ValueError naming close matches when `name` is not a classification model."""
    names = list_models()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `python -m explorer models` lists them"
        raise ValueError(f"unknown model {name!r}{hint}")


def all_weights(name: str) -> list[Any]:
    """The model's torchvision weights enum members, its DEFAULT first (empty if it has none)."""
    from torchvision import models

    check_model_name(name)
    try:
        enum = models.get_model_weights(name)
    except (ValueError, AttributeError, KeyError):
        return []
    default = enum.DEFAULT
    return [default] + [w for w in enum if w is not default]


def default_weights(name: str) -> Any:
    """The torchvision default weights enum member of a model (None if it has none)."""
    ws = all_weights(name)
    return ws[0] if ws else None


def forward_gflops(name: str, pretrained: bool = True) -> float | None:
    """GFLOPs of one image's forward pass, from torchvision's weight metadata (`_ops`): the default
    weights' input size when pretrained, the smallest (the architecture's own size) for random init;
    None when torchvision does not say."""
    ops = [w.meta["_ops"] for w in all_weights(name) if "_ops" in w.meta]
    if not ops:
        return None
    return float(ops[0] if pretrained else min(ops))


def weights_availability(name: str) -> str:
    """`offline` when some pretrained weights file of the model is on this machine, else `download`."""
    ws = all_weights(name)
    if not ws:
        return "none"
    return "offline" if any(wts.availability(w) == "offline" for w in ws) else "download"


def transforms(name: str, tv_weights: Any = None) -> Any:
    """The preprocessing that travels with the weights (the model's default ones if not given)."""
    w = tv_weights if tv_weights is not None else default_weights(name)
    if w is None:
        raise ValueError(f"model {name!r} has no weights and so no preprocessing in torchvision")
    return w.transforms()


def crop_size(name: str) -> int:
    """The square input size the model's default preprocessing produces."""
    return int(transforms(name).crop_size[0])


def _input_size_kwargs(name: str, w: Any) -> dict[str, Any]:
    """The builder arguments that fix the input size of `name` to what weights `w` expect (ViTs
    and MaxViT are built for one image size; vit_h_14's default weights take 518 px, not 224)."""
    if w is None:
        return {}
    if name.startswith("vit_"):
        return {"image_size": w.meta["min_size"][0]}
    if name == "maxvit_t":
        return {"input_size": w.meta["min_size"]}
    return {}


def _pretrained_kwargs(name: str, w: Any) -> dict[str, Any]:
    """The builder arguments torchvision itself sets when it builds `name` with weights `w`."""
    kwargs: dict[str, Any] = {"num_classes": len(w.meta["categories"]), **_input_size_kwargs(name, w)}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    return kwargs


def _drop_aux_heads(name: str, model: Any) -> None:
    """As torchvision does after loading: aux heads exist only to match the checkpoint."""
    if name == "googlenet":
        model.aux_logits = False
        model.aux1 = None
        model.aux2 = None
    elif name == "inception_v3":
        model.aux_logits = False
        model.AuxLogits = None


def build_model(name: str, resolved: wts.ResolvedWeights) -> Any:
    """Build a model in eval mode with the given weights.

    Args:
        name: torchvision registry name.
        resolved: from `resolve_weights`.

    Returns:
        A torch.nn.Module in eval mode on the CPU.
    """
    import torch
    from torchvision import models

    check_model_name(name)
    builder = models.get_model_builder(name)
    if resolved.kind == "random":
        seed = int(resolved.identity.split(":", 1)[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # built for the input size of the preprocessing it is given (the default weights')
            model = builder(weights=None, **_input_size_kwargs(name, default_weights(name)))
        return model.eval()
    w = resolved.tv_weights
    if resolved.kind == "file":
        state = wts.load_state_dict(resolved.path)  # type: ignore[arg-type]
        kwargs = _pretrained_kwargs(name, w) if w is not None else {}
    else:
        state = wts.load_state_dict(resolved.path) if resolved.path else wts.download_state_dict(w)
        kwargs = _pretrained_kwargs(name, w)
    model = builder(weights=None, **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"weights {resolved.name} do not fit model {name!r}: {str(exc)[:300]}") from exc
    _drop_aux_heads(name, model)
    return model.eval()


def resolve_weights(name: str, weights_arg: str, *, random_state: int = 0) -> wts.ResolvedWeights:
    """Resolve `auto` / `none` / a file for model `name` (see weights.resolve)."""
    return wts.resolve(all_weights(name), weights_arg, random_state=random_state)


class TorchvisionSource:
    """torchvision's classification zoo as a model source (networks/sources.py): traced with FX."""

    name = "torchvision"
    traced = True

    def listed(self) -> list[str]:
        return list_models()

    def check(self, model: str) -> None:
        check_model_name(model)

    def availability(self, model: str) -> str:
        return weights_availability(model)

    def resolve_weights(self, model: str, weights_arg: str, *, random_state: int = 0) -> wts.ResolvedWeights:
        return resolve_weights(model, weights_arg, random_state=random_state)

    def build(self, model: str, weights: wts.ResolvedWeights, *, device: str = "cpu") -> Any:
        return build_model(model, weights)

    def transform(self, model: str, weights: wts.ResolvedWeights) -> Any:
        return transforms(model, weights.tv_weights)

    def input_size(self, model: str) -> int:
        return crop_size(model)

    def architecture(self, model: str) -> str:
        return ""

    def gflops(self, model: str, pretrained: bool = True) -> float | None:
        return forward_gflops(model, pretrained)


TORCHVISION = TorchvisionSource()
