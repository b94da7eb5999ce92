"""Hugging Face transformers vision backbones as a model source (networks/sources.py):
`hf:<repo id>` (from the Hugging Face cache, or downloaded where allowed) or `hf:<folder>` written by
`save_pretrained`; preprocessing from the model's image processor; read with forward hooks."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from . import weights as wts
from .preprocess import from_image_processor
from .timm_source import hf_offline, hub_cached_file, hub_url, reachable

log = logging.getLogger(__name__)

PREFIX = "hf:"
# vision backbones a user can name without searching the hub (any other repo id works too)
KNOWN = (
    "facebook/dinov2-small", "facebook/dinov2-base", "facebook/dinov2-large", "google/vit-base-patch16-224",
    "google/vit-base-patch16-224-in21k", "openai/clip-vit-base-patch32", "openai/clip-vit-base-patch16",
    "facebook/convnext-tiny-224", "facebook/convnext-base-224", "microsoft/swin-tiny-patch4-window7-224",
    "microsoft/swin-base-patch4-window7-224",
)  # fmt: skip
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
# the vision tower of models that pair it with a text tower
VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel"}
# ImageNet preprocessing for a folder without an image processor's file
FALLBACK_PROCESSOR = {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
                      "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}  # fmt: skip


def _ref(model: str) -> str:
    return model.removeprefix(PREFIX)


def _is_path(ref: str) -> bool:
    return ref.startswith(("/", ".", "~")) or Path(ref).expanduser().is_dir()


class PixelValues(torch.nn.Module):
    """Calls a transformers model with `pixel_values=`; its layers are the inner model's modules."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    @property
    def layers_root(self) -> Any:
        return self.inner

    def forward(self, x: Any) -> Any:
        return self.inner(pixel_values=x)


class HFSource:
    """transformers: ViT, DINOv2, CLIP's vision tower, ConvNeXt, Swin and other image backbones."""

    name = "hf"
    traced = False

    def listed(self) -> list[str]:
        return [PREFIX + r for r in dict.fromkeys(KNOWN + tuple(self.cached_repos()))]

    def cached_repos(self) -> list[str]:
        """Repos in the local Hugging Face cache that hold a model config (any kind: check() tells later)."""
        try:
            from huggingface_hub import scan_cache_dir

            info = scan_cache_dir()
        except Exception:  # no cache folder yet, or an unreadable one
            return []
        return sorted(
            r.repo_id
            for r in info.repos
            if r.repo_type == "model" and any(f.file_name == "config.json" for rev in r.revisions for f in rev.files)
        )

    def folder(self, model: str) -> Path | None:
        """The local folder holding the model's config: the folder given, or the repo's snapshot in
        the Hugging Face cache (None: not on this machine)."""
        ref = _ref(model)
        if _is_path(ref):
            path = Path(ref).expanduser()
            return path if (path / "config.json").is_file() else None
        got = hub_cached_file(ref, ("config.json",))
        return got.parent if got is not None else None

    def check(self, model: str) -> None:
        ref = _ref(model)
        if not ref:
            raise ValueError("hf: needs a repo id (hf:facebook/dinov2-small) or a folder written by save_pretrained")
        if _is_path(ref) and self.folder(model) is None:
            raise ValueError(f"{ref} is not a folder written by save_pretrained (it has no config.json)")

    def weight_files(self, folder: Path) -> list[Path]:
        for name in WEIGHT_FILES:
            if (folder / name).is_file():
                if name.endswith(".index.json"):
                    import json

                    shards = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
                    return [folder / s for s in shards]
                return [folder / name]
        return []

    def availability(self, model: str) -> str:
        folder = self.folder(model)
        if folder is not None and self.weight_files(folder):
            return "offline"
        return "none" if _is_path(_ref(model)) else "download"

    def _download(self, model: str, what: str) -> Path:
        """The repo's config, processor and weights, fetched into the Hugging Face cache where allowed."""
        ref = _ref(model)
        off = _is_path(ref) or not wts.downloads_allowed() or hf_offline()
        if off or not reachable(hub_url()):
            raise wts.WeightsUnavailableError(
                f"the {what} of {model} is not on this machine and {'downloads are off' if off else 'the internet is not reachable'}; "
                "run it once online (it lands in the Hugging Face cache), or save the model with save_pretrained and use hf:FOLDER"
            )
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(ref, allow_patterns=["*.json", "*.safetensors", "*.txt"]))
        except Exception as exc:  # network, authentication, a repo that does not exist
            raise wts.WeightsUnavailableError(
                f"cannot download {model} ({str(exc).splitlines()[0][:200]}); run it once where the internet is reachable, "
                "or save the model with save_pretrained and use hf:FOLDER"
            ) from exc

    def resolve_weights(self, model: str, weights_arg: str, *, random_state: int = 0) -> wts.ResolvedWeights:
        self.check(model)
        folder = self.folder(model)
        if weights_arg == "none":
            folder = folder or self._download(model, "config")
            config = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()[:16]
            return wts.ResolvedWeights(
                "random", "random", None, f"random:{random_state}:config:{config}", folder=folder
            )
        if weights_arg != "auto":
            path = Path(weights_arg).expanduser()
            if not path.is_file():
                raise ValueError(f"--weights {weights_arg!r} is not a file nor one of: auto, none")
            if folder is None:
                folder = self._download(model, "config")
            return wts.ResolvedWeights("file", str(path), path, wts.file_sha256(path), folder=folder)
        if folder is None or not self.weight_files(folder):
            folder = self._download(model, "pretrained weights")
        files = self.weight_files(folder)
        if not files:
            raise wts.WeightsUnavailableError(
                f"{folder} has no weights file ({', '.join(WEIGHT_FILES[:2])}); use --weights FILE or --weights none"
            )
        identity = files[0] if len(files) == 1 else None
        digest = (
            wts.file_sha256(identity)
            if identity
            else hashlib.sha256("".join(wts.file_sha256(f) for f in files).encode()).hexdigest()
        )
        return wts.ResolvedWeights("pretrained", _ref(model), files[0], digest, folder=folder)

    def _folder_of(self, weights: wts.ResolvedWeights) -> Path:
        if weights.folder is None:
            raise ValueError(f"weights {weights.name} name no folder with the model's config")
        return weights.folder

    def _config(self, folder: Path) -> Any:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(folder, local_files_only=True)

    def _model_class(self, config: Any) -> tuple[Any, Any]:
        """(the class to build, its config): the vision tower of a model that pairs one with text."""
        import transformers

        tower = VISION_TOWERS.get(config.model_type)
        if tower is not None:
            return getattr(transformers, tower), config.vision_config
        return transformers.AutoModel, config

    def build(self, model: str, weights: wts.ResolvedWeights, *, device: str = "cpu") -> Any:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its loading bar would cut into the caller's progress
        folder = self._folder_of(weights)
        try:
            cls, config = self._model_class(self._config(folder))
            if weights.kind == "pretrained":
                net = cls.from_pretrained(folder, local_files_only=True)
            else:
                seed = int(weights.identity.split(":")[1]) if weights.kind == "random" else 0
                with torch.random.fork_rng(devices=[]), torch.device(device):
                    torch.manual_seed(seed)
                    net = cls.from_config(config) if cls.__name__ == "AutoModel" else cls._from_config(config)
                if weights.kind == "file":
                    net.load_state_dict(wts.load_state_dict(weights.path), strict=True)  # type: ignore[arg-type]
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(
                f"cannot build {model} with weights {weights.name}: {str(exc).splitlines()[0][:300]}"
            ) from exc
        return PixelValues(net).eval()

    def processor(self, folder: Path) -> Any:
        """The model's image processor, from its folder (ImageNet's preprocessing when it has none)."""
        from transformers import AutoImageProcessor

        if (folder / "preprocessor_config.json").is_file():
            return AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        from transformers import BitImageProcessor

        log.warning("%s has no preprocessor_config.json: using ImageNet's preprocessing (resize 256, crop 224)", folder)
        return BitImageProcessor(**FALLBACK_PROCESSOR)

    def transform(self, model: str, weights: wts.ResolvedWeights) -> Any:

        return from_image_processor(self.processor(self._folder_of(weights)))

    def input_size(self, model: str) -> int:
        folder = self.folder(model)
        if folder is None:
            return 224
        config = folder / "preprocessor_config.json"
        return _processor_size(str(folder), config.stat().st_mtime if config.is_file() else 0.0)

    def architecture(self, model: str) -> str:
        folder = self.folder(model)
        return hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()[:16] if folder is not None else ""


@functools.lru_cache(maxsize=64)
def _processor_size(folder: str, mtime: float) -> int:
    """The input size of a folder's image processor, read once per version of its file (profile()
    asks for it on every call, before its own cache)."""
    return from_processor_size(HF.processor(Path(folder)))


def from_processor_size(processor: Any) -> int:
    """The square size an image processor's output has (its crop, else its resize)."""
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = crop or processor.size
    return int(size.get("height") or size.get("shortest_edge") or 224)


HF = HFSource()
