"""timm's models as a model source (networks/sources.py): `timm:<architecture>[.<pretrained tag>]`,
built by timm, preprocessed by timm's own data config and transforms, read with forward hooks."""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..config import settings
from . import weights as wts

PREFIX = "timm:"
# the file names timm reads from a Hugging Face repo, in its order (timm/models/_hub.py)
HUB_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _name(model: str) -> str:
    return model.removeprefix(PREFIX)


@functools.cache
def _all_names() -> tuple[tuple[str, ...], frozenset[str]]:
    """(every pretrained `architecture.tag`, every architecture), from timm's registry (no network)."""
    import timm

    return tuple(timm.list_models(pretrained=True)), frozenset(timm.list_models())


def hf_offline() -> bool:
    """The Hugging Face hub's offline switch (HF_HUB_OFFLINE), read now rather than at its import."""

    return settings().hf_offline


REACH_TIMEOUT_S = 3.0


def reachable(url: str) -> bool:
    """Whether the host of `url` accepts a connection within REACH_TIMEOUT_S: checked before a
    download, because the libraries retry an unreachable hub for about a minute before they fail."""
    import socket

    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "", parsed.port or 443), timeout=REACH_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def hub_url() -> str:
    """The Hugging Face hub's address (HF_ENDPOINT, as huggingface_hub reads it)."""

    return settings().hf_endpoint


def hub_cached_file(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of `filenames` of a Hugging Face repo that is in the local hub cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    for fname in filenames:
        got = try_to_load_from_cache(repo_id, fname)
        if isinstance(got, str) and os.path.isfile(got):
            return Path(got)
    return None


class TimmSource:
    """timm: over a thousand architectures, each with its pretrained tags."""

    name = "timm"
    traced = False

    def listed(self) -> list[str]:
        return [PREFIX + n for n in _all_names()[0]]

    def check(self, model: str) -> None:
        name = _name(model)
        tagged, archs = _all_names()
        arch, _, tag = name.partition(".")
        if arch in archs and (not tag or name in tagged):
            return
        if arch in archs:
            tags = [n.partition(".")[2] for n in tagged if n.partition(".")[0] == arch]
            raise ValueError(f"timm's {arch} has no pretrained tag {tag!r}; its tags: {', '.join(tags[:8]) or 'none'}")
        close = difflib.get_close_matches(name, list(tagged) + sorted(archs), n=3)
        hint = (
            f"; did you mean {', '.join(PREFIX + c for c in close)}?"
            if close
            else "; `python -m explorer models --source timm` lists them"
        )
        raise ValueError(f"timm has no model {name!r}{hint}")

    def pretrained_cfg(self, model: str) -> Any:
        """timm's pretrained config of the model (its default tag when none is given)."""
        from timm.models import get_pretrained_cfg

        self.check(model)
        name = _name(model)
        cfg = get_pretrained_cfg(name)
        if cfg is None and "." not in name:
            import timm

            tagged = timm.list_models(name, pretrained=True)
            cfg = get_pretrained_cfg(tagged[0]) if tagged else None
        return cfg

    def local_file(self, model: str) -> Path | None:
        """The model's pretrained file on this machine: in the Hugging Face cache (where timm itself
        downloads), or by its download's file name in $EXPLORER_WEIGHTS_DIR or torch hub's cache."""
        cfg = self.pretrained_cfg(model)
        if cfg is None:
            return None
        if cfg.hf_hub_id:
            names = ((cfg.hf_hub_filename,) if cfg.hf_hub_filename else ()) + HUB_FILES
            got = hub_cached_file(cfg.hf_hub_id.split("@")[0], names)
            if got is not None:
                return got
        if cfg.url:
            return wts.find_offline(os.path.basename(urlparse(cfg.url).path))
        return None

    def availability(self, model: str) -> str:
        cfg = self.pretrained_cfg(model)
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            return "none"
        return "offline" if self.local_file(model) is not None else "download"

    def resolve_weights(self, model: str, weights_arg: str, *, random_state: int = 0) -> wts.ResolvedWeights:
        self.check(model)
        if weights_arg == "none":
            return wts.ResolvedWeights("random", "random", None, f"random:{random_state}")
        if weights_arg != "auto":
            path = Path(weights_arg).expanduser()
            if not path.is_file():
                raise ValueError(f"--weights {weights_arg!r} is not a file nor one of: auto, none")
            return wts.ResolvedWeights("file", str(path), path, wts.file_sha256(path))
        local = self.local_file(model)
        if local is not None:
            return wts.ResolvedWeights("pretrained", _name(model), local, wts.file_sha256(local))
        cfg = self.pretrained_cfg(model)
        where = (cfg.hf_hub_id or cfg.url) if cfg is not None else None
        if where is None:
            raise wts.WeightsUnavailableError(f"timm has no pretrained weights for {_name(model)}; use --weights none")
        off = not wts.downloads_allowed() or hf_offline()
        if off or not reachable(hub_url() if cfg.hf_hub_id else cfg.url):
            raise wts.WeightsUnavailableError(
                f"the pretrained weights of {model} ({where}) are not on this machine and "
                f"{'downloads are off' if off else 'the internet is not reachable'}; run it once online (timm keeps them "
                "in the Hugging Face cache), give the file with --weights FILE, or use --weights none for a random-init baseline"
            )
        return wts.ResolvedWeights("pretrained", _name(model), None, f"timm-download:{where}")

    def build(self, model: str, weights: wts.ResolvedWeights, *, device: str = "cpu") -> Any:
        import timm
        import torch

        name = _name(model)
        seed = int(weights.identity.split(":", 1)[1]) if weights.kind == "random" else 0
        kwargs: dict[str, Any] = {}
        if weights.kind != "random":
            kwargs["pretrained"] = True
            if weights.path is not None:  # timm's own loading code, reading the local file
                kwargs["pretrained_cfg_overlay"] = {"file": str(weights.path)}
        try:
            with torch.random.fork_rng(devices=[]), torch.device(device):
                torch.manual_seed(seed)
                net = timm.create_model(name, **kwargs)
        except (RuntimeError, OSError, KeyError, ValueError) as exc:
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            if weights.kind == "pretrained" and weights.path is None:  # the download failed
                raise wts.WeightsUnavailableError(
                    f"cannot download the pretrained weights of {model} ({first}); run it once where the internet is "
                    "reachable, give the file with --weights FILE, or use --weights none for a random-init baseline"
                ) from exc
            raise ValueError(f"cannot build {model} with weights {weights.name}: {first}") from exc
        return net.eval()

    def transform(self, model: str, weights: wts.ResolvedWeights) -> Any:
        from timm.data import create_transform, resolve_data_config

        cfg = self.pretrained_cfg(model)
        data_cfg = resolve_data_config({}, pretrained_cfg=cfg.to_dict() if cfg is not None else {})
        return create_transform(**data_cfg, is_training=False)

    def input_size(self, model: str) -> int:
        cfg = self.pretrained_cfg(model)
        return int(cfg.input_size[-1]) if cfg is not None else 224

    def architecture(self, model: str) -> str:
        return ""


TIMM = TimmSource()
