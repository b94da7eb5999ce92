"""AppTest: the model picker lists every source, a typed name and a checkpoint are taken, and two
models of different sources are compared (cross-model CKA and neighbourhood overlap); the share
link and the command snippet carry the source."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests import helpers  # noqa: E402

pytestmark = pytest.mark.slow  # AppTests on real models

TIMM_VIT = "timm:test_vit.r160_in1k"  # timm's own tiny test models: built with random weights in a moment


def _page(**query: str) -> AppTest:
    return helpers.run_page(**query)


def test_the_picker_lists_every_source_and_reads_a_timm_models_layers() -> None:
    at = _page()
    options = at.selectbox(key="model").options
    assert (
        "mobilenet_v2  ✓ offline weights" in options and TIMM_VIT in options and "hf:facebook/dinov2-small" in options
    )
    at.selectbox(key="model").set_value(TIMM_VIT)
    at.run()
    assert not at.exception, at.exception
    at.radio(key="weights").set_value("random init")
    at.run()
    layers = at.multiselect(key=f"layers_{TIMM_VIT}")
    assert layers.value and all(v.startswith("blocks.") or v in ("fc_norm", "norm") for v in layers.value)


@pytest.mark.parametrize(
    "model, why",
    [
        ("no_such_pkg.nets:build", "cannot import 'no_such_pkg.nets'"),
        ("timm:no_such_net", "timm has no model 'no_such_net'"),
    ],
)
def test_a_model_that_cannot_be_read_says_why_and_the_page_goes_on(model: str, why: str) -> None:
    at = _page(model=model)
    if ":build" in model:  # code a link names is imported only once the person confirms it
        at.button(key="confirm_link_models").click()
        at.run()
    assert any(why in e.value for e in at.sidebar.error)
    assert at.multiselect(key="layers_mobilenet_v2").value  # the default model stands in


def test_a_torchvision_cnn_against_a_timm_vit() -> None:
    at = _page(second_model=TIMM_VIT)  # a link of before, when one other model could be named
    assert at.multiselect(key="other_models").value == [TIMM_VIT]
    at.button(key="run").click()
    at.run()
    helpers.finish(at)
    comp = at.session_state["result"].comparison
    assert [r.label for r in comp.runs] == ["mobilenet_v2", f"{TIMM_VIT}[random]"]
    n = sum(len(r.features) for r in comp.runs)
    assert comp.cka.shape == (n, n) and comp.overlap.shape == (n, n)
    cross = comp.cka[: len(comp.runs[0].features), len(comp.runs[0].features) :]
    assert cross.shape[1] == len(comp.runs[1].features) and (cross > 0).all() and (cross <= 1 + 1e-6).all()
    assert set(comp.metrics["model"]) == {"mobilenet_v2", f"{TIMM_VIT}[random]"}


def test_a_checkpoint_and_the_source_travel_in_the_link_and_the_command(tmp_path: Path) -> None:
    import timm
    import torch

    from explorer.cli import analysis_from_args, build_parser
    from explorer.config import ExtractSpec, ProjectionSpec
    from explorer.ui import reproduce, sidebar

    ckpt = tmp_path / "vit.pth"
    torch.save(timm.create_model("test_vit").state_dict(), ckpt)
    at = _page(model=TIMM_VIT, checkpoint=str(ckpt), second_model="resnet18", layers="blocks.0,fc_norm")
    assert at.text_input(key="checkpoint").value == str(ckpt)
    page_inputs = sidebar.Inputs(
        data="sample:clothing",
        upload=None,
        max_images=60,
        extract=ExtractSpec(model=TIMM_VIT, weights=str(ckpt), layers=("blocks.0", "fc_norm")),
        projection=ProjectionSpec(method="pca"),
        other_models=("resnet18",),
        random_baseline=False,
        align=True,
    )
    params = reproduce.share_params(page_inputs)
    assert params["model"] == f"{TIMM_VIT},resnet18" and params["weights"].split(",")[0] == str(
        ckpt
    )  # the flags' names
    again = _page(**params)  # the new link reopens the same inputs
    assert again.text_input(key="checkpoint").value == str(ckpt)
    assert again.multiselect(key="other_models").value == ["resnet18"]
    assert again.multiselect(key=f"layers_{TIMM_VIT}").value == ["blocks.0", "fc_norm"]
    argv = shlex.split(reproduce.cli_command(page_inputs))
    assert f"{TIMM_VIT}:blocks.0,{TIMM_VIT}:fc_norm" in argv
    assert analysis_from_args(build_parser().parse_args(argv[3:])) == reproduce.analysis(page_inputs, page_inputs.data)
    at.button(key="run").click()
    at.run()
    helpers.finish(at)
    comp = at.session_state["result"].comparison
    assert comp.runs[0].weights.kind == "file" and comp.runs[0].weights.path == ckpt
    assert at.session_state["result"].inputs == page_inputs  # what the page ran is what the link and command say


def test_the_demo_lists_only_models_whose_weights_are_on_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.ui import cached

    avail = {
        "mobilenet_v2": "offline",
        "resnet18": "download",
        "timm:a.b": "download",
        "timm:c.d": "offline",
        "hf:org/x": "download",
        "hf:org/y": "offline",
    }
    monkeypatch.setattr(cached, "availability", lambda: avail)
    assert cached.model_names(offline_weights_only=False) == list(avail)
    # torchvision's architectures stay: their random-init baseline needs no file and never downloads
    assert cached.model_names(offline_weights_only=True) == ["mobilenet_v2", "resnet18", "timm:c.d", "hf:org/y"]


def test_a_demo_link_naming_a_model_it_does_not_serve_gets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(model=TIMM_VIT)
    assert at.selectbox(key="model").value == TIMM_VIT  # local mode: any model
    from explorer.config import DEMO
    from explorer.ui import runtime

    monkeypatch.setattr(runtime.current(), "mode", DEMO)
    demo = helpers.new_page()
    demo.query_params["model"] = TIMM_VIT
    demo.query_params["max_images"] = "60"
    demo.run()
    assert not demo.exception, demo.exception
    assert demo.selectbox(key="model").value == "mobilenet_v2"
    assert TIMM_VIT not in demo.selectbox(key="model").options
    assert any("only the models whose weights are on its server" in w.value for w in demo.warning)
