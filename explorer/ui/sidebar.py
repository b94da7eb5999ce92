"""The sidebar: every input widget (stable keys), returned as config objects."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ..config import ExtractSpec, Limits, ProjectionSpec
from . import cached

SAMPLES = {"sample:clothing": "Clothing photos (bundled, 400 images)", "sample:digits": "Handwritten digits (scikit-learn)"}
UPLOAD_ZIP, UPLOAD_FILES = "upload:zip", "upload:files"
MAX_UPLOAD_BYTES = 200 * 1024**2
MAX_UPLOAD_FILES = 2000
DEMO_MAX_IMAGES = 2000
DEMO_LIMITS = Limits(max_files=5000, max_total_bytes=1024**3, max_file_bytes=25 * 1024**2, max_pixels=40_000_000)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Inputs:
    """What the visitor asked for."""

    data: str
    upload: tuple | None
    max_images: int
    extract: ExtractSpec
    projection: ProjectionSpec
    second_model: str | None
    random_baseline: bool
    align: bool


def _query(name: str, default: str) -> str:
    return st.query_params.get(name, default)


def _query_int(name: str, default: int, lo: int, hi: int, step: int) -> int:
    """An integer from the link, clamped to the widget's range (a hostile link cannot break the page)."""
    try:
        v = int(_query(name, str(default)))
    except ValueError:
        return default
    return min(hi, max(lo, lo + (v - lo) // step * step))


def _upload_widgets(choice: str) -> tuple | None:
    if choice == UPLOAD_ZIP:
        f = st.file_uploader("Zip of class folders", type=["zip"], key="upload_zip",
                             help="One folder per class (cats/…, dogs/…), or images with a labels.csv (filename,label).")  # fmt: skip
        return ("zip", f) if f is not None else None
    if choice == UPLOAD_FILES:
        files = st.file_uploader("Images (+ optional labels.csv)", accept_multiple_files=True, key="upload_files",
                                 type=["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", "csv"],
                                 help="Add a labels.csv with rows filename,label to colour points by class.")  # fmt: skip
        return ("files", tuple(files)) if files else None
    return None


def write_upload(upload: tuple, dest_root: Path) -> str:
    """Write an upload to a fresh folder under a generated name and return the dataset source.

    Raises:
        ValueError: over the size or file-count limit (checked here, not only by the browser).
    """
    kind, payload = upload
    files = [payload] if kind == "zip" else list(payload)
    if len(files) > MAX_UPLOAD_FILES:
        raise ValueError(f"{len(files)} files is over the limit of {MAX_UPLOAD_FILES}; upload a zip instead")
    total = sum(f.size for f in files)
    if total > MAX_UPLOAD_BYTES:
        raise ValueError(f"the upload is {total / 1e6:.0f} MB, over the limit of {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    folder = dest_root / f"upload-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    if kind == "zip":
        path = folder / "dataset.zip"
        path.write_bytes(files[0].getvalue())
        return str(path)
    for f in files:
        name = _SAFE.sub("_", Path(f.name).name).lstrip(".") or f"file-{uuid.uuid4().hex[:8]}"
        (folder / name).write_bytes(f.getvalue())
    return str(folder)


def _layer_label(profile: object, node: str) -> str:
    info = profile[node]  # type: ignore[index]
    mark = " ▼ bottleneck" if info.is_bottleneck else ""
    return f"{node} · {info.dim}-d{mark}"


def render() -> Inputs:
    """Draw the sidebar and return the visitor's choices."""
    sb = st.sidebar
    sb.markdown("### Data")
    options = list(SAMPLES) + [UPLOAD_ZIP, UPLOAD_FILES]
    q_data = _query("data", "sample:clothing")
    data = sb.selectbox("Dataset", options, index=options.index(q_data) if q_data in options else 0, key="data",
                        format_func=lambda o: SAMPLES.get(o, {"upload:zip": "Upload a zip", "upload:files": "Upload images"}.get(o, o)),
                        help="The bundled sample, or your own images.")  # fmt: skip
    with sb:
        upload = _upload_widgets(data)
    max_images = sb.slider("Max images", 50, DEMO_MAX_IMAGES, _query_int("max_images", 400, 50, DEMO_MAX_IMAGES, 50), step=50, key="max_images",
                           help="A stratified subsample keeps class proportions; fewer images run faster.")  # fmt: skip

    sb.markdown("### Model")
    names = cached.model_names()
    avail = cached.availability()
    q_model = _query("model", "mobilenet_v2")
    model = sb.selectbox("Network", names, index=names.index(q_model) if q_model in names else names.index("mobilenet_v2"),
                         key="model", format_func=lambda n: f"{n}  ✓ offline weights" if avail.get(n) == "offline" else n,
                         help="The torchvision classification zoo. ✓ marks weights available offline here; others "
                              "download if the server can reach the internet, or run with random weights.")  # fmt: skip
    pretrained_ok = avail.get(model) == "offline" or not cached.offline_only()
    weights = sb.radio("Weights", ["pretrained", "random init"], index=0 if pretrained_ok else 1, key="weights", horizontal=True,
                       help="Random initialisation is a baseline: what the architecture alone does.")  # fmt: skip
    profile = cached.profile(model)
    q_layers = [n for n in _query("layers", "").split(",") if n]
    default_layers = [n for n in q_layers if n in profile.nodes] or list(profile.default)
    unknown = [n for n in q_layers if n not in profile.nodes]
    if unknown:
        sb.warning(f"{model} has no layer {', '.join(unknown[:3])}{' …' if len(unknown) > 3 else ''}; "
                   "the link's other layers (or the defaults) are used.", icon="⚠️")  # fmt: skip
    chosen = sb.multiselect("Layers", profile.nodes, default=default_layers, key=f"layers_{model}",
                            format_func=lambda n: _layer_label(profile, n),
                            help="FX node names. Pre-selected: a spread of block outputs through the pooled features. "
                                 "▼ marks bottlenecks (narrower than the layers around them).")  # fmt: skip
    with sb.expander("Options", expanded=False):
        pooling = st.selectbox("Pooling of feature maps", ["avg", "max", "avgmax"], key="pooling",
                               help="How a C×H×W map becomes one vector: average, max, or both concatenated.")  # fmt: skip
        second = st.selectbox("Compare with a second model", ["(none)"] + names, key="second_model",
                              help="Its default layers are added; curves share one chart, CKA spans both.")  # fmt: skip
        baseline = st.checkbox("Add a random-weights baseline", key="baseline",
                               help="The same model with random weights, as a dashed curve.")  # fmt: skip

    sb.markdown("### Projection")
    methods = ["umap", "pca", "tsne"]
    q_proj = _query("projection", "umap")
    method = sb.radio("Method", methods, index=methods.index(q_proj) if q_proj in methods else 0, key="projection", horizontal=True,
                      format_func=str.upper, help="PCA is instant and linear; UMAP and t-SNE show neighbourhoods.")  # fmt: skip
    dims = sb.radio("View", ["2-D", "3-D"], key="dims", horizontal=True)
    n_neighbors, min_dist, perplexity = 15, 0.1, 30.0
    if method == "umap":
        n_neighbors = sb.slider("UMAP neighbours", 5, 100, 15, key="n_neighbors", help="Larger: more global structure.")
        min_dist = sb.slider("UMAP min distance", 0.0, 0.99, 0.1, key="min_dist", help="Smaller: tighter clusters.")
    elif method == "tsne":
        perplexity = float(sb.slider("t-SNE perplexity", 5, 50, 30, key="perplexity"))
    align = sb.checkbox("Align panels", value=True, key="align",
                        help="Rotate each panel onto the previous one (Procrustes) so a point keeps its place.")  # fmt: skip
    extract = ExtractSpec(model=model, weights="auto" if weights == "pretrained" else "none", layers=tuple(chosen), pooling=pooling)
    projection = ProjectionSpec(method=method, n_components=3 if dims == "3-D" else 2, n_neighbors=n_neighbors,
                                min_dist=min_dist, perplexity=perplexity)  # fmt: skip
    return Inputs(data, upload, max_images, extract, projection, None if second == "(none)" else second, baseline, align)
