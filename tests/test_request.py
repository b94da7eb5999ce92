"""One vocabulary (explorer/request.py): a request survives the command line and the share link,
old links keep their meaning, and a hostile link falls back to defaults instead of failing."""

from __future__ import annotations

import dataclasses

import pytest

from explorer.cli import build_parser
from explorer.request import LINK_ALIASES, AnalysisRequest

EVERY_FIELD_CHANGED = AnalysisRequest(
    data="/data/photos",
    label_column="kind",
    image_column="file",
    model="resnet18,timm:vit_small_patch16_224",
    weights="auto,none",
    layers="resnet18:layer3,timm:vit_small_patch16_224:blocks.3",
    pooling="avgmax",
    tokens="mean",
    projection="tsne",
    components=3,
    n_neighbors=30,
    min_dist=0.25,
    perplexity=12.5,
    random_baseline=True,
    max_images=60,
    select="kind=shoe",
    folds=3,
    knn_k=7,
    probe_c="0.5",
    precision="fp32",
    device="cpu",
    batch_size=8,
    seed=3,
)


def test_every_field_is_changed_in_the_round_trip_request() -> None:
    default = AnalysisRequest()
    same = [
        f.name
        for f in dataclasses.fields(AnalysisRequest)
        if getattr(EVERY_FIELD_CHANGED, f.name) == getattr(default, f.name)
    ]
    assert same == []


def test_request_to_argv_and_back() -> None:
    assert AnalysisRequest.from_argv(EVERY_FIELD_CHANGED.to_argv()) == EVERY_FIELD_CHANGED
    assert AnalysisRequest.from_argv(AnalysisRequest().to_argv(everything=True)) == AnalysisRequest()
    assert AnalysisRequest().to_argv() == ["--data", "sample:clothing", "--model", "mobilenet_v2"]


def test_request_to_query_and_back() -> None:
    query = EVERY_FIELD_CHANGED.to_query()
    assert AnalysisRequest.from_query(query) == EVERY_FIELD_CHANGED
    assert {"n-neighbors", "random-baseline", "max-images"} <= set(query)  # the flags' names


def test_every_field_is_a_compare_flag_with_the_same_default() -> None:
    """The request's fields and defaults are the command line's (and so the API's options)."""
    args = build_parser().parse_args(["compare", "--out", "x"])
    read = AnalysisRequest.from_namespace(args)
    for f in dataclasses.fields(AnalysisRequest):
        assert hasattr(args, f.name), f.name
        assert getattr(read, f.name) == f.default, f.name


def test_fields_are_typed_whatever_the_spelling() -> None:
    """Text exists only at the edges: every spelling of models, weights and layers is read into
    tuples once, and the printers give the text back."""
    as_text = AnalysisRequest(
        model="resnet18, timm:vit_small_patch16_224",
        weights="auto,none",
        layers="resnet18:layer3,timm:vit_small_patch16_224:blocks.3",
    )
    as_python = AnalysisRequest(
        model=["resnet18", "timm:vit_small_patch16_224"],
        weights=("auto", "none"),
        layers={"resnet18": ["layer3"], "timm:vit_small_patch16_224": ["blocks.3"]},
    )
    assert as_text == as_python
    assert as_text.model == ("resnet18", "timm:vit_small_patch16_224") and as_text.weights == ("auto", "none")
    assert as_text.layers == (("resnet18", ("layer3",)), ("timm:vit_small_patch16_224", ("blocks.3",)))
    assert as_text.replace(layers=as_text.layers) == as_text  # the typed form is read as itself
    one = AnalysisRequest(model="resnet18", layers=["layer2", "layer3"])
    assert (
        one.layers == (("resnet18", ("layer2", "layer3")),)
        and AnalysisRequest(model="resnet18", layers="layer2,layer3") == one
    )
    assert one.to_argv()[one.to_argv().index("--layers") + 1] == "layer2,layer3"
    assert AnalysisRequest(layers="auto").layers == () and AnalysisRequest(layers={}).layers == ()
    mixed = AnalysisRequest(model="resnet18,vgg11", layers={"resnet18": "layer2,layer3", "vgg11": "auto"})
    assert mixed.layers == (("resnet18", ("layer2", "layer3")),)  # vgg11: its default spread
    with pytest.raises(ValueError, match="not compared"):
        AnalysisRequest(model="resnet18", layers={"vgg11": ["features.3"]})
    with pytest.raises(ValueError, match="several models"):
        AnalysisRequest(model="resnet18,vgg11", layers=["layer3"])


def test_links_written_with_the_old_names_keep_their_meaning() -> None:
    old = {
        "model": "resnet18",
        "weights": "random",
        "dims": "3",
        "n_neighbors": "30",
        "min_dist": "0.25",
        "baseline": "1",
        "max_images": "0",
        "align": "0",
        "other_models": "mnasnet0_5",
    }
    got = AnalysisRequest.from_query(old)
    assert (
        got.model,
        got.weights,
        got.components,
        got.n_neighbors,
        got.min_dist,
        got.random_baseline,
        got.max_images,
    ) == (("resnet18",), ("none",), 3, 30, 0.25, True, None)
    assert AnalysisRequest.from_query({"weights": "pretrained", "checkpoint": "/w/ft.pth"}).weights == ("/w/ft.pth",)
    assert AnalysisRequest.from_query({"dims": "2", "components": "3"}).components == 3  # the flag's name wins
    assert set(LINK_ALIASES.values()) <= {f.name.replace("_", "-") for f in dataclasses.fields(AnalysisRequest)}


@pytest.mark.parametrize(
    "params",
    [
        {"n-neighbors": "abc"},
        {"components": "7"},
        {"weights": "a,b,c"},
        {"n-neighbors": "1"},
        {"probe-c": "lots"},
        {"pooling": "median"},
    ],
)
def test_a_hostile_link_falls_back_to_defaults(params: dict[str, str]) -> None:
    assert AnalysisRequest.from_query({**params, "model": "resnet18"}) == AnalysisRequest(model="resnet18")
    with pytest.raises(ValueError):
        AnalysisRequest.from_query(params, strict=True)


def test_any_link_gives_a_request_and_only_a_strict_reading_refuses_it() -> None:
    """Fuzz: a stranger's link, any parameters (the real names, their old aliases, others) with any
    text, gives a valid request (fields that do not parse fall back to their defaults); read
    strictly it is accepted or refused with a ValueError, never another error."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    names = [f.name.replace("_", "-") for f in dataclasses.fields(AnalysisRequest)] + list(LINK_ALIASES)
    texts = st.one_of(
        st.text(max_size=40),
        st.sampled_from(["nan", "inf", "-1", "0", "1e309", "../../etc", "[x](https://e.com)", "a,b,,c", "true"]),
    )
    params = st.dictionaries(st.one_of(st.sampled_from(names), st.text(max_size=8)), texts, max_size=8)

    @settings(max_examples=300, deadline=None)
    @given(params)
    def check(query: dict[str, str]) -> None:
        got = AnalysisRequest.from_query(query)
        assert isinstance(got, AnalysisRequest)
        assert dataclasses.replace(got) == got  # its fields pass the request's own checks
        try:
            AnalysisRequest.from_query(query, strict=True)
        except ValueError:
            pass

    check()
