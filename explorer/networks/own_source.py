"""The user's own model as a model source (networks/sources.py), read with forward hooks:

- `path/to/model.pt2`: a program saved by `torch.export.save`, carrying its weights; its module
  hierarchy is restored with `torch.export.unflatten`, so its layers keep the names they had.
- `package.module:builder`: a function that returns the `nn.Module`, plus `--weights` a
  `.safetensors` or `.pth` state dict, loaded without running code from the file (weights_only).

Own models are preprocessed as ImageNet models are (resize 256, centre crop 224, ImageNet's mean
and std), at the input size a `.pt2` fixes if it fixes one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from pathlib import Path
from typing import Any

from . import weights as wts
from .safe_program import load_program

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224


def _is_program(model: str) -> bool:
    return model.endswith(".pt2")


def _builder(model: str) -> Any:
    """The builder function `package.module:name` names (its module imported, as Python imports it)."""
    module_name, _, attr = model.rpartition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import {module_name!r} for the model {model}: {exc}; "
            "run from the folder that holds it, or put it on PYTHONPATH"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{module_name} has no function {attr!r} that builds the model")
    return fn


def _load_program(path: Path) -> Any:
    """The program in a `.pt2`, checked first and read without unpickling (safe_program.py)."""

    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    return load_program(path)


def _program_input_shape(program: Any) -> tuple[Any, ...]:
    """The (N, C, H, W) shape of the program's image input, each an int or a symbol when dynamic."""
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            return tuple(node.meta["val"].shape)
    raise ValueError("the exported program takes no input")


@functools.lru_cache(maxsize=8)
def _input_shape_of(path: str, size: int, mtime: float) -> tuple[Any, ...]:
    return _program_input_shape(_load_program(Path(path)))


def load_state(path: Path) -> dict[str, Any]:
    """A state dict from a `.safetensors` file or a `.pth` (weights_only; a `state_dict` or `model`
    entry unwrapped, DataParallel's `module.` prefix removed)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f"cannot load weights from {path}: {exc}") from exc
    else:
        state = wts.load_state_dict(path)
        if "model" in state and isinstance(state["model"], dict):
            state = state["model"]
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


class OwnSource:
    """A model the user brings: an exported program, or a builder and a checkpoint."""

    name = "own"
    traced = False

    def listed(self) -> list[str]:
        return []

    def check(self, model: str) -> None:
        if _is_program(model):
            if not Path(model).expanduser().is_file():
                raise ValueError(f"no exported program at {model}")
            return
        _builder(model)

    def availability(self, model: str) -> str:
        return "offline" if _is_program(model) else "none"

    def resolve_weights(self, model: str, weights_arg: str, *, random_state: int = 0) -> wts.ResolvedWeights:
        self.check(model)
        if weights_arg == "none":
            return wts.ResolvedWeights("random", "random", None, f"random:{random_state}")
        if _is_program(model):
            if weights_arg != "auto":
                raise ValueError(
                    f"{model} carries its own weights: use --weights auto, or none for a shuffled baseline"
                )
            path = Path(model).expanduser()
            return wts.ResolvedWeights("pretrained", str(path), path, wts.file_sha256(path))
        if weights_arg == "auto":
            raise wts.WeightsUnavailableError(
                f"the model {model} needs its weights: --weights FILE (.safetensors or .pth), "
                "or --weights none for its builder's own initialisation"
            )
        path = Path(weights_arg).expanduser()
        if not path.is_file():
            raise ValueError(f"--weights {weights_arg!r} is not a file nor one of: auto, none")
        return wts.ResolvedWeights("file", str(path), path, wts.file_sha256(path))

    def build(self, model: str, weights: wts.ResolvedWeights, *, device: str = "cpu") -> Any:
        import torch

        seed = int(weights.identity.split(":")[1]) if weights.kind == "random" else 0
        if _is_program(model):
            program = _load_program(Path(model).expanduser())
            batch = _program_input_shape(program)[0]
            if isinstance(batch, int):
                raise ValueError(
                    f"{model} was exported for batches of exactly {batch}; export it with a dynamic batch, "
                    "dynamic_shapes=({0: torch.export.Dim('batch')},)"
                )
            net = torch.export.unflatten(program)
            if weights.kind == "random":
                shuffle_parameters(net, seed)
            return net.to(device) if device != "meta" else net
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(seed)
            net = _builder(model)()
        if not isinstance(net, torch.nn.Module):
            raise ValueError(f"{model} returned a {type(net).__name__}, not a torch.nn.Module")
        if weights.kind == "file":
            try:
                net.load_state_dict(load_state(weights.path), strict=True)  # type: ignore[arg-type]
            except RuntimeError as exc:
                raise ValueError(
                    f"weights {weights.path} do not fit {model}: {str(exc).splitlines()[1:2] or exc}"
                ) from exc
        return net.eval()

    def transform(self, model: str, weights: wts.ResolvedWeights) -> Any:
        from torchvision import transforms as T

        size = self.input_size(model)
        return T.Compose(
            [
                T.Resize(round(size * 256 / 224)),
                T.CenterCrop(size),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def input_size(self, model: str) -> int:
        if not _is_program(model):
            return DEFAULT_SIZE
        path = Path(model).expanduser()
        st = path.stat()
        *_, h, w = _input_shape_of(str(path.resolve()), st.st_size, st.st_mtime)
        if isinstance(h, int) and isinstance(w, int):
            if h != w:
                raise ValueError(f"{model} takes {h}x{w} images; only square inputs are supported")
            return h
        return DEFAULT_SIZE

    def architecture(self, model: str) -> str:
        """The program file's hash, or the hash of the builder's source file."""
        if _is_program(model):
            return wts.file_sha256(Path(model).expanduser())
        module = importlib.import_module(model.rpartition(":")[0])
        origin = getattr(module, "__file__", None)
        return hashlib.sha256(Path(origin).read_bytes()).hexdigest()[:16] if origin else module.__name__


def shuffle_parameters(net: Any, seed: int) -> None:
    """The random baseline of an exported program, which carries no initialiser: each parameter's
    values permuted at random (every layer keeps its weights' scale, loses what training arranged)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            flat = p.detach().reshape(-1)
            p.copy_(flat[torch.randperm(flat.numel(), generator=gen)].reshape(p.shape))


OWN = OwnSource()
