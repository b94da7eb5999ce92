"""Layer profiles, pooling, golden activations, one-pass equivalence and the whole-zoo sweep."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from explorer.extraction.extractor import FeatureExtractor
from explorer.networks import layers, registry
from explorer.networks.pooling import pool

from ..helpers import Tiny


def test_golden_activations_from_hand_set_model() -> None:
    r = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[2.0, 1.0], [1.0, 1.0]])
    x = torch.stack([r, torch.zeros(2, 2), b]).unsqueeze(0)
    # conv ch0 = [[3,3],[4,5]], ch1 = [[-1,1],[2,3]]; after ReLU ch1 = [[0,1],[2,3]]
    ex = FeatureExtractor(Tiny().eval(), ["conv", "relu", "flatten", "fc"], model_name="tiny", pooling="avgmax")
    out = ex(x)
    np.testing.assert_allclose(out["conv"], [[3.75, 1.25, 5.0, 3.0]])
    np.testing.assert_allclose(out["relu"], [[3.75, 1.5, 5.0, 3.0]])
    np.testing.assert_allclose(out["flatten"], [[3.75, 1.5]])
    np.testing.assert_allclose(out["fc"], [[2.25]])


def test_pooling_layouts() -> None:
    t = torch.arange(24, dtype=torch.float32).view(1, 2, 3, 4)
    assert pool(t, layout="nchw", pooling="avg").tolist() == [[5.5, 17.5]]
    assert pool(t, layout="nchw", pooling="max").tolist() == [[11.0, 23.0]]
    nhwc = t.permute(0, 2, 3, 1)
    assert pool(nhwc, layout="nhwc", pooling="avg").tolist() == [[5.5, 17.5]]
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    assert pool(tokens, layout="tokens", token_pooling="cls").tolist() == [[1.0, 2.0]]
    assert pool(tokens, layout="tokens", token_pooling="mean").tolist() == [[3.0, 4.0]]
    assert torch.equal(t, torch.arange(24, dtype=torch.float32).view(1, 2, 3, 4))  # input untouched
    with pytest.raises(ValueError, match="pooling='median'"):
        pool(t, layout="nchw", pooling="median")


def test_mobilenet_profile_defaults_and_bottlenecks() -> None:
    prof = layers.profile("mobilenet_v2")
    assert 5 <= len(prof.default) <= 8
    assert prof.default[-1] == "flatten" and prof["flatten"].dim == 1280
    depths = [prof[n].depth for n in prof.default]
    assert depths == sorted(depths) and depths[-1] - depths[0] > 0.7
    # MobileNetV2's linear projection outputs (inverted-residual bottlenecks) are marked
    assert prof["features.2.conv.3"].is_bottleneck and prof["features.2.conv.3"].dim == 24
    assert not prof["features.2.conv.1"].is_bottleneck  # the 96-wide (6x expanded) depthwise stage is not
    assert prof["features.2.conv.1"].size == 96 * 56 * 56
    with pytest.raises(ValueError, match="has no layer 'features.99'"):
        prof.check(["features.99"])


def test_swin_maps_are_channels_last_and_vit_uses_tokens() -> None:
    swin = layers.profile("swin_t")
    assert swin["features.1.1.add_1"].layout == "nhwc" and swin["features.1.1.add_1"].dim == 96
    vit = layers.profile("vit_b_16")
    assert vit["encoder.layers.encoder_layer_5.add_1"].layout == "tokens"


def test_one_pass_equals_one_pass_per_layer() -> None:
    model = registry.build_model("mobilenet_v2", registry.resolve_weights("mobilenet_v2", "none"))
    nodes = list(layers.profile("mobilenet_v2").default)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    together = FeatureExtractor(model, nodes, model_name="mobilenet_v2")(x)
    for n in nodes:
        alone = FeatureExtractor(model, [n], model_name="mobilenet_v2")(x)[n]
        np.testing.assert_allclose(together[n], alone, rtol=1e-5, atol=1e-6)


def _tiny_size(name: str) -> tuple[int, dict]:
    if name.startswith("vit_"):
        patch = 14 if name.endswith("_14") else (32 if name.endswith("_32") else 16)
        return 2 * patch, {"image_size": 2 * patch}
    if name == "inception_v3":
        return 80, {}
    if name == "maxvit_t":
        return 224, {}
    return 64, {}


LARGEST_BUILT = 150_000_000  # parameters: larger models (regnet_y_128gf, vit_h_14, vit_l_*, convnext_large) are not built with random
# init here; their families' smaller members are, and their layers are found on the meta device


def _num_params(name: str) -> int:
    import torchvision

    return max(w.meta["num_params"] for w in torchvision.models.get_model_weights(name))


def test_every_family_of_a_large_model_has_a_member_that_is_built() -> None:
    small = [n for n in registry.list_models() if _num_params(n) <= LARGEST_BUILT]
    for name in registry.list_models():
        family = name.split("_")[0].rstrip("0123456789")
        assert any(s.split("_")[0].rstrip("0123456789") == family for s in small), name


QUICK = {"mobilenet_v2", "resnet18", "vit_b_16", "swin_t", "convnext_tiny", "regnet_y_400mf", "efficientnet_b0",
         "inception_v3", "maxvit_t", "densenet121", "squeezenet1_0", "vgg11", "googlenet", "mnasnet0_5", "shufflenet_v2_x0_5"}  # fmt: skip


@pytest.mark.parametrize(
    "name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in registry.list_models()]
)
def test_every_zoo_model_extracts_default_layers(name: str) -> None:
    """Every model of the zoo (one of each family in the quick loop, `-m "not slow"`)."""
    prof = layers.profile(name)  # from one pass on the meta device, whatever the model's size
    assert 1 <= len(prof.default) <= 8
    assert all(prof[n].dim > 0 for n in prof.default)
    if _num_params(name) > LARGEST_BUILT:
        return
    size, kwargs = _tiny_size(name)
    builder = __import__("torchvision").models.get_model_builder(name)
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = builder(weights=None, **kwargs).eval()
    out = FeatureExtractor(model, list(prof.default), model_name=name, precision="fp32")(torch.rand(2, 3, size, size))
    for n in prof.default:
        assert out[n].shape[0] == 2 and out[n].ndim == 2, n
        assert np.isfinite(out[n]).all(), n
        if prof[n].layout in ("nchw", "nhwc", "tokens"):
            assert out[n].shape[1] == prof[n].dim, n
