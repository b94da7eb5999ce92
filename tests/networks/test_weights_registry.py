"""Offline weights lookup, hash checks, safe loading, and the model registry."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from explorer.networks import registry, weights


def test_bundled_mobilenet_weights_found_offline() -> None:
    w = registry.resolve_weights("mobilenet_v2", "auto")
    assert w.kind == "pretrained" and w.path is not None
    assert w.path.name == "mobilenet_v2-b0353104.pth" and w.identity.startswith("b0353104")
    assert registry.weights_availability("mobilenet_v2") == "offline"
    model = registry.build_model("mobilenet_v2", w)
    ref = weights.load_state_dict(w.path)
    assert torch.equal(model.state_dict()["classifier.1.weight"], ref["classifier.1.weight"])
    # preprocessing travels with the weights found (V1: resize 256), not the default V2 (232)
    assert registry.transforms("mobilenet_v2", w.tv_weights).resize_size == [256]


def test_hash_mismatch_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mobilenet_v2-b0353104.pth").write_bytes(b"tampered")
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    found = weights.find_offline("mobilenet_v2-b0353104.pth")
    assert found is not None and found.parent != tmp_path


def test_weights_dir_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = registry.resolve_weights("mobilenet_v2", "auto").path
    shutil.copy(src, tmp_path / src.name)
    monkeypatch.setenv("EXPLORER_WEIGHTS_DIR", str(tmp_path))
    assert registry.resolve_weights("mobilenet_v2", "auto").path == tmp_path / src.name


def test_missing_weights_offline_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    with pytest.raises(
        weights.WeightsUnavailableError, match=r"resnet18-.*\.pth.*EXPLORER_WEIGHTS_DIR.*--weights none"
    ):
        registry.resolve_weights("resnet18", "auto")


def test_random_init_is_seeded_and_local() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    a = registry.build_model("resnet18", registry.resolve_weights("resnet18", "none", random_state=7))
    b = registry.build_model("resnet18", registry.resolve_weights("resnet18", "none", random_state=7))
    assert torch.equal(a.fc.weight, b.fc.weight)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # global RNG untouched by building


class _Evil:
    def __reduce__(self):  # noqa: D105
        return (print, ("code ran",))


def test_weights_only_refuses_code(tmp_path: Path) -> None:
    p = tmp_path / "evil.pth"
    with open(p, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    with pytest.raises(ValueError, match="cannot load weights"):
        weights.load_state_dict(p)


def test_unknown_model_and_weights_names() -> None:
    with pytest.raises(ValueError, match="did you mean mobilenet_v2"):
        registry.check_model_name("mobilenet_v22")
    with pytest.raises(ValueError, match="not a file nor one of"):
        registry.resolve_weights("mobilenet_v2", "no_such_weights")
    assert len(registry.list_models()) >= 80
    assert registry.list_models("resnet*")[:3] == ["resnet18", "resnet34", "resnet50"]


def test_random_weights_are_built_for_the_preprocessing_input_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """vit_h_14's preprocessing crops to 518 px: a random vit_h_14 built for 224 crashed on it."""
    import torchvision

    seen: dict = {}

    def fake_builder(**kwargs: object) -> torch.nn.Module:
        seen.update(kwargs)
        return torch.nn.Identity()

    monkeypatch.setattr(torchvision.models, "get_model_builder", lambda name: fake_builder)
    registry.build_model("vit_h_14", registry.resolve_weights("vit_h_14", "none"))
    assert seen == {"weights": None, "image_size": registry.crop_size("vit_h_14")} and seen["image_size"] == 518
    seen.clear()
    registry.build_model("resnet18", registry.resolve_weights("resnet18", "none"))
    assert seen == {"weights": None}
