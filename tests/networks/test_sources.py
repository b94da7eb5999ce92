"""Every model source: timm and Hugging Face models from small configs (random init, and real
files read by the libraries' own loading code), the user's own model as a builder with a checkpoint
and as an exported program; their features against direct forward hooks; clear words offline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.config import DataSpec, ExtractSpec
from explorer.data.datasets import load_dataset
from explorer.extraction.layer_features import extract_features
from explorer.networks import catalog, layers, sources
from explorer.networks.module_layers import first_tensor
from explorer.networks.pooling import pool_auto
from explorer.networks.preprocess import Preprocess
from explorer.networks.weights import WeightsUnavailableError, file_sha256
from explorer.store import FeatureCache

from ..conftest import make_class_folders
from ..helpers import BUILDER, save_hf


def _image(item: object) -> object:
    from explorer.data.images import load_rgb

    return load_rgb(item.read_bytes(), max_pixels=10**8)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> object:
    return load_dataset(DataSpec(source=str(make_class_folders(tmp_path_factory.mktemp("data"), per_class=4))))


def _direct(model: str, weights: str, nodes: list[str], ds: object, **pooling: str) -> dict[str, np.ndarray]:
    """The chosen layers' pooled outputs by plain forward hooks on a freshly built model, images
    preprocessed one by one by the source's own transform: what extraction must reproduce."""
    src = sources.source_of(model)
    w = src.resolve_weights(model, weights)
    net = src.build(model, w)
    tf = src.transform(model, w)
    x = torch.stack([tf(_image(item)) for item in ds.items])  # type: ignore[attr-defined]
    got: dict[str, torch.Tensor] = {}
    root = sources.hooked_layers_root(net)
    mods = dict(root.named_modules())
    # a copy of each output as its module returns it (a later in-place op may change the tensor)
    hooks = [
        mods[n].register_forward_hook(lambda m, a, o, n=n: got.__setitem__(n, first_tensor(o).clone())) for n in nodes
    ]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return {n: pool_auto(got[n], model=model, **pooling).numpy() for n in nodes}


def _extract(model: str, weights: str, ds: object, tmp: Path, layers_: tuple[str, ...] = ()) -> object:
    spec = ExtractSpec(model=model, weights=weights, layers=layers_, precision="fp32", device="cpu", batch_size=5)
    return extract_features(ds, spec, cache=FeatureCache(tmp / "cache"))  # type: ignore[arg-type]


def _assert_golden(run: object, direct: dict[str, np.ndarray]) -> None:
    for name, node in run.nodes.items():  # type: ignore[attr-defined]
        np.testing.assert_allclose(run.features[name], direct[node], rtol=1e-4, atol=1e-4, err_msg=node)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- names and the catalog


def test_names_pick_their_source() -> None:
    assert sources.source_name("resnet50") == sources.source_name("torchvision:resnet50") == "torchvision"
    assert sources.canonical(" torchvision:resnet50 ") == "resnet50"
    assert sources.source_name("timm:convnext_tiny.fb_in22k") == "timm"
    assert sources.source_name("hf:facebook/dinov2-small") == "hf"
    assert sources.source_name("/tmp/model.pt2") == "own"
    assert sources.source_name("mypkg.nets:build") == "own"


def test_the_catalog_searches_every_source_as_one_types() -> None:
    dino = catalog.search("dino")
    assert any(n.startswith("timm:") for n in dino) and "hf:facebook/dinov2-small" in dino
    convnext = catalog.search("convnext tiny", limit=None)
    assert {"convnext_tiny", "timm:convnext_tiny.fb_in22k", "hf:facebook/convnext-tiny-224"} <= set(convnext)
    assert catalog.search("resnet5*", sources=("torchvision",)) == ["resnet50"]


def test_an_unknown_timm_name_gets_close_matches_in_one_sentence() -> None:
    with pytest.raises(ValueError, match="did you mean timm:convnext_tiny"):
        layers.profile("timm:convnxt_tiny")
    with pytest.raises(ValueError, match="has no pretrained tag 'nope'"):
        layers.profile("timm:convnext_tiny.nope")


# ---------------------------------------------------------------- timm


@pytest.mark.parametrize("model", ["timm:test_vit", "timm:test_convnext"])
def test_timm_random_init_layers_and_features_match_forward_hooks(model: str, dataset: object, tmp_path: Path) -> None:
    prof = layers.profile(model)
    assert prof.input_size == 160 and prof.gflops and prof.gflops > 0
    assert len(prof.default) >= 3 and all(prof[n].is_block or prof[n].layout == "vector" for n in prof.default)
    run = _extract(model, "none", dataset, tmp_path)
    _assert_golden(run, _direct(model, "none", list(run.nodes.values()), dataset))  # type: ignore[attr-defined]
    again = _extract(model, "none", dataset, tmp_path / "other")
    assert all(np.array_equal(run.features[n], again.features[n]) for n in run.features)  # type: ignore[attr-defined]


def test_timm_tokens_pool_cls_and_mean(dataset: object, tmp_path: Path) -> None:
    prof = layers.profile("timm:test_vit")
    block = next(n for n in prof.default if prof[n].layout == "tokens")
    spec = dict(model="timm:test_vit", weights="none", layers=(block,), precision="fp32", device="cpu")
    cls = extract_features(dataset, ExtractSpec(**spec), cache=FeatureCache(tmp_path / "c"))  # type: ignore[arg-type]
    mean = extract_features(dataset, ExtractSpec(**spec, token_pooling="mean"), cache=FeatureCache(tmp_path / "c"))  # type: ignore[arg-type]
    assert cls.store_keys[block] != mean.store_keys[block]
    direct = _direct("timm:test_vit", "none", [block], dataset, token_pooling="mean")
    np.testing.assert_allclose(mean.features[block], direct[block], rtol=1e-4, atol=1e-4)
    assert not np.allclose(cls.features[block], mean.features[block])


def test_a_timm_checkpoint_file_goes_through_timms_own_loading(dataset: object, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    trained = timm.create_model("test_convnext").eval()
    path = tmp_path / "test_convnext.safetensors"
    save_file(trained.state_dict(), str(path))
    run = _extract("timm:test_convnext", str(path), dataset, tmp_path)
    assert run.weights.kind == "file"  # type: ignore[attr-defined]
    _assert_golden(run, _direct("timm:test_convnext", str(path), list(run.nodes.values()), dataset))  # type: ignore[attr-defined]
    random = _extract("timm:test_convnext", "none", dataset, tmp_path)
    name = run.spec.layers[-1]  # type: ignore[attr-defined]
    assert run.store_keys[name] != random.store_keys[name]  # type: ignore[attr-defined]
    assert not np.allclose(run.features[name], random.features[name])  # type: ignore[attr-defined]


def test_timm_pretrained_weights_offline_say_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    src = sources.source_of("timm:convnext_tiny.fb_in22k")
    assert src.availability("timm:convnext_tiny.fb_in22k") == "download"
    with pytest.raises(WeightsUnavailableError, match=r"not on this machine.*--weights FILE.*--weights none"):
        src.resolve_weights("timm:convnext_tiny.fb_in22k", "auto")


# ---------------------------------------------------------------- Hugging Face


@pytest.mark.parametrize("kind", ["dinov2", "vit", "clip", "convnext", "swin"])
def test_hf_save_pretrained_round_trip_matches_forward_hooks(kind: str, dataset: object, tmp_path: Path) -> None:
    folder = save_hf(tmp_path / kind, kind)
    model = f"hf:{folder}"
    prof = layers.profile(model)
    assert len(prof.default) >= 4, prof.default
    run = _extract(model, "auto", dataset, tmp_path)
    assert run.weights.kind == "pretrained" and sources.source_of(model).availability(model) == "offline"  # type: ignore[attr-defined]
    # Swin and ConvNeXt have no class token: their tokens are mean-pooled
    _assert_golden(run, _direct(model, "auto", list(run.nodes.values()), dataset, token_pooling=run.spec.token_pooling))  # type: ignore[attr-defined]
    random = _extract(model, "none", dataset, tmp_path)
    last = run.spec.layers[-1]  # type: ignore[attr-defined]
    assert not np.allclose(run.features[last], random.features[last])  # type: ignore[attr-defined]


def test_hf_layers_are_the_models_blocks(tmp_path: Path) -> None:
    prof = layers.profile(f"hf:{save_hf(tmp_path / 'd', 'dinov2')}")
    assert [f"encoder.layer.{i}" for i in range(6)] == [
        n for n in prof.nodes if n.count(".") == 2 and n.startswith("encoder.layer.")
    ]
    assert set(prof.default) <= {f"encoder.layer.{i}" for i in range(6)} | {"layernorm"}
    assert prof["encoder.layer.0"].layout == "tokens" and prof["encoder.layer.0"].shape == (17, 32)


def test_hf_repo_not_on_this_machine_offline_says_how_to_provide_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = sources.source_of("hf:explorer-tests/no-such-model")
    with pytest.raises(WeightsUnavailableError, match=r"not on this machine.*run it once online.*hf:FOLDER"):
        src.resolve_weights("hf:explorer-tests/no-such-model", "auto")
    with pytest.raises(ValueError, match="no config.json"):
        layers.profile(f"hf:{tmp_path}")


# ---------------------------------------------------------------- your own model


@pytest.fixture
def own_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: object) -> dict[str, Path]:
    """A small network trained here on the dataset for a few steps, saved as a state dict
    (.safetensors and .pth) with its builder, and as an exported program."""
    from safetensors.torch import save_file

    pkg = tmp_path / "code"
    pkg.mkdir()
    (pkg / "my_nets.py").write_text(BUILDER)
    monkeypatch.syspath_prepend(str(pkg))
    sys.modules.pop("my_nets", None)
    import my_nets  # type: ignore[import-not-found]

    torch.manual_seed(0)
    net = my_nets.build()
    tf = sources.source_of("my_nets:build").transform("my_nets:build", None)  # type: ignore[arg-type]
    pre = Preprocess(tf)
    items = dataset.items  # type: ignore[attr-defined]
    x = pre.batch([pre.image(_image(i)) for i in items])
    y = torch.tensor([dataset.classes.index(c) for c in dataset.labels])  # type: ignore[attr-defined]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    save_file(net.state_dict(), str(tmp_path / "ckpt.safetensors"))
    torch.save({"state_dict": net.state_dict(), "epoch": 5}, tmp_path / "ckpt.pth")
    program = torch.export.export(net, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "net.pt2"))
    fixed = torch.export.export(net, (x[:2],))
    torch.export.save(fixed, str(tmp_path / "fixed.pt2"))
    return {
        "safetensors": tmp_path / "ckpt.safetensors",
        "pth": tmp_path / "ckpt.pth",
        "pt2": tmp_path / "net.pt2",
        "fixed": tmp_path / "fixed.pt2",
    }


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_own_builder_with_a_checkpoint_matches_forward_hooks(
    fmt: str, own_model: dict[str, Path], dataset: object, tmp_path: Path
) -> None:
    model = "my_nets:build"
    prof = layers.profile(model)
    assert prof["3"].dim == 4 and prof["4"].is_bottleneck  # the narrow conv and its ReLU, named by their modules
    run = _extract(model, str(own_model[fmt]), dataset, tmp_path, ("0", "3", "5", "8"))
    _assert_golden(run, _direct(model, str(own_model[fmt]), ["0", "3", "5", "8"], dataset))
    assert run.weights.identity == file_sha256(own_model[fmt])  # type: ignore[attr-defined]


def test_own_exported_program_matches_the_builder(own_model: dict[str, Path], dataset: object, tmp_path: Path) -> None:
    model = str(own_model["pt2"])
    prof = layers.profile(model)
    assert {"0", "3", "5", "8"} <= set(prof.nodes)
    run = _extract(model, "auto", dataset, tmp_path, ("0", "3", "5", "8"))
    built = _extract("my_nets:build", str(own_model["safetensors"]), dataset, tmp_path, ("0", "3", "5", "8"))
    for n in ("0", "3", "5", "8"):
        np.testing.assert_allclose(run.features[n], built.features[n], rtol=1e-4, atol=1e-4)  # type: ignore[attr-defined]
    _assert_golden(run, _direct(model, "auto", ["0", "3", "5", "8"], dataset))
    shuffled = _extract(model, "none", dataset, tmp_path, ("8",))
    assert not np.allclose(shuffled.features["8"], run.features["8"])  # type: ignore[attr-defined]


def test_own_model_mistakes_get_one_sentence(own_model: dict[str, Path]) -> None:
    src = sources.source_of("my_nets:build")
    with pytest.raises(WeightsUnavailableError, match="needs its weights: --weights FILE"):
        src.resolve_weights("my_nets:build", "auto")
    with pytest.raises(ValueError, match="cannot import 'no_such_pkg.nets'"):
        layers.profile("no_such_pkg.nets:build")
    with pytest.raises(ValueError, match="exported for batches of exactly 2; export it with a dynamic batch"):
        src.build(str(own_model["fixed"]), src.resolve_weights(str(own_model["fixed"]), "auto"))
    wrong = own_model["pt2"].parent / "wrong.safetensors"
    from safetensors.torch import save_file

    save_file({"0.weight": torch.zeros(2, 2)}, str(wrong))
    with pytest.raises(ValueError, match="do not fit my_nets:build"):
        src.build("my_nets:build", src.resolve_weights("my_nets:build", str(wrong)))


def test_tokens_without_a_class_token_are_mean_pooled(dataset: object, tmp_path: Path) -> None:
    folder = save_hf(tmp_path / "swin", "swin")
    prof = layers.profile(f"hf:{folder}")
    assert not prof.class_token and layers.profile("timm:test_vit").class_token
    tokens = next(n for n in prof.default if prof[n].layout == "tokens")
    run = _extract(f"hf:{folder}", "auto", dataset, tmp_path, (tokens,))
    assert run.spec.token_pooling == "mean"  # type: ignore[attr-defined]
    _assert_golden(run, _direct(f"hf:{folder}", "auto", [tokens], dataset, token_pooling="mean"))


def test_an_unreachable_hub_is_said_at_once_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.networks import timm_source

    monkeypatch.delenv("EXPLORER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    asked: list[str] = []
    monkeypatch.setattr(timm_source, "reachable", lambda url: asked.append(url) or False)
    monkeypatch.setattr("explorer.networks.hf_source.reachable", lambda url: asked.append(url) or False)
    with pytest.raises(WeightsUnavailableError, match="the internet is not reachable; run it once online"):
        sources.source_of("timm:convnext_tiny.fb_in22k").resolve_weights("timm:convnext_tiny.fb_in22k", "auto")
    with pytest.raises(WeightsUnavailableError, match="the internet is not reachable; run it once online"):
        sources.source_of("hf:explorer-tests/none").resolve_weights("hf:explorer-tests/none", "auto")
    assert asked == ["https://huggingface.co"] * 2  # timm downloads this tag from the hub, as it prefers
