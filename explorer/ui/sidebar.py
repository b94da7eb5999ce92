"""The sidebar: every input widget (stable keys), returned as config objects."""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ..config import AppMode, ExtractSpec, ProjectionSpec
from ..data.source_table import kind_name
from ..fsutil import write_new_file
from ..networks.sources import canonical, what_loading_runs
from ..request import AnalysisRequest
from . import cached, runtime
from .text import code

SAMPLES = {
    "sample:clothing": "Clothing photos (bundled, 400 images)",
    "sample:digits": "Handwritten digits (scikit-learn)",
}
UPLOAD_ZIP, UPLOAD_FILES, SERVER_PATH = "upload:zip", "upload:files", "path:"
SOURCE_LABELS = {
    UPLOAD_ZIP: "Upload a zip, .tar shard or .parquet",
    UPLOAD_FILES: "Upload images",
    SERVER_PATH: "A folder or zip on this machine",
}
MAX_UPLOAD_BYTES = 200 * 1024**2
MAX_UPLOAD_FILES = 2000
UPLOAD_SUFFIXES = (".zip", ".tar", ".parquet")  # what the one-file uploader takes
LAYER_NOTICE = "link_layer_notice"  # session key: the link's layers the model lacks, said until a Run click
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Inputs:
    """What the visitor asked for."""

    data: str
    upload: tuple | None
    max_images: int | None
    extract: ExtractSpec
    projection: ProjectionSpec
    other_models: tuple[str, ...]  # more models to compare, each with its default layers
    random_baseline: bool
    align: bool
    notices: tuple[str, ...] = ()  # what the sidebar had to change of the link's request, in one sentence each
    label_column: str | None = None  # a table's, metadata file's or shard json's label column (None: the usual names)
    awaiting_confirmation: tuple[
        tuple[str, str], ...
    ] = ()  # the link's models that run code: (name, what), not yet built


def _mode() -> AppMode:
    """Who this server serves (ui/runtime.py: fixed for the process)."""
    return runtime.current().mode


def _link() -> AnalysisRequest:
    """The analysis the page's link asks for (request.py: the command line's flag names, old names
    read as aliases; a value that does not parse is left at its default)."""
    return AnalysisRequest.from_query(st.query_params.to_dict())


def _clamp_int(v: int, lo: int, hi: int, step: int = 1) -> int:
    """A link's integer clamped to the widget's range (a hostile link cannot break the page)."""
    return min(hi, max(lo, lo + (v - lo) // step * step))


def _clamp_float(v: float, lo: float, hi: float, default: float) -> float:
    """A link's number clamped to the widget's range."""
    return min(hi, max(lo, v)) if v == v else default  # (NaN: the default)


def _upload_widgets(choice: str) -> tuple | None:
    if choice == UPLOAD_ZIP:
        f = st.file_uploader(
            "Zip of class folders, WebDataset .tar shard or .parquet",
            type=["zip", "tar", "parquet"],
            key="upload_zip",
            help="A zip: one folder per class (cats/…, dogs/…), or images with a "
            "labels.csv (filename,label). A .tar: WebDataset samples (key.jpg + key.cls or key.json). "
            "A .parquet: an image column and a label column, as the Hugging Face hub keeps them.",
        )
        return ("zip", f) if f is not None else None
    if choice == UPLOAD_FILES:
        files = st.file_uploader(
            "Images (+ optional labels.csv)",
            accept_multiple_files=True,
            key="upload_files",
            type=["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", "csv"],
            help="Add a labels.csv with rows filename,label to colour points by class.",
        )
        return ("files", tuple(files)) if files else None
    return None


def upload_folder(source: str) -> Path:
    """The folder `write_upload` made for the upload behind `source` (a folder of files, or a zip,
    tar or parquet file in it): what is deleted once its job ends, whatever its kind."""
    path = Path(source)
    return path if path.name.startswith("upload-") else path.parent


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
    dest_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = dest_root / f"upload-{uuid.uuid4().hex}"
    folder.mkdir(mode=0o700)  # explicit modes: this server's own files, whatever the process umask
    try:
        if kind == "zip":  # one file: a zip, a WebDataset shard or a parquet file, kept under its own suffix
            suffix = Path(files[0].name).suffix.lower()
            if suffix not in UPLOAD_SUFFIXES:
                raise ValueError(f"{files[0].name!r} is not a .zip, .tar or .parquet file")
            path = folder / f"dataset{suffix}"
            write_new_file(path, files[0].getvalue())
            return str(path)
        written: dict[str, str] = {}
        for f in files:
            name = _SAFE.sub("_", Path(f.name).name).lstrip(".") or f"file-{uuid.uuid4().hex[:8]}"
            if name in written:
                raise ValueError(
                    f"the uploaded files {written[name]!r} and {f.name!r} would both be saved as {name!r}; "
                    "rename one of them and upload again"
                )
            written[name] = f.name
            write_new_file(folder / name, f.getvalue())
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return str(folder)


def _resolve(profile: object, name: str) -> str | None:
    """The FX node a layer name from a link means (a node, or a module's output node), or None."""
    try:
        return profile.resolve((name,))[0]  # type: ignore[attr-defined]
    except ValueError:
        return None


def _layer_label(profile: object, node: str) -> str:
    info = profile[node]  # type: ignore[index]
    mark = " ▼ bottleneck" if info.is_bottleneck else ""
    return f"{node} · {info.dim}-d{mark}"


def _max_images_input(sb: object, notices: list[str], link: AnalysisRequest) -> int | None:
    """How many images to keep: a slider up to the demo's cap, or in local mode any number (0 = all)."""
    help_text = "A stratified subsample keeps class proportions; fewer images run faster."
    if _mode().name == "local":
        v = _clamp_int(link.max_images or 0, 0, _mode().max_images)
        n = sb.number_input(
            "Max images (0 = all)", 0, _mode().max_images, v, step=1000, key="max_images", help=help_text
        )  # type: ignore[attr-defined]
        return int(n) or None
    cap = _mode().max_images
    asked = _clamp_int(link.max_images or 400, 50, 10**9)
    if asked > cap:
        notices.append(
            f"This public demo analyses at most {cap:,} images per run, so {cap:,} of the {asked:,} "
            "asked for are used; run it on your own machine for more."
        )
    v = _clamp_int(asked, 50, cap, 50)
    return int(sb.slider("Max images", 50, cap, v, step=50, key="max_images", help=help_text))  # type: ignore[attr-defined]


PICKER_HELP = (
    "Search by typing (dino, convnext, resnet). torchvision's zoo, timm:NAME.TAG, and hf:ORG/NAME for "
    "Hugging Face; ✓ marks weights on this machine. Others download where the server may, or run with "
    "random weights."
)
LOCAL_PICKER_HELP = (
    " You may also type any name: hf:ORG/NAME, hf:/a/save_pretrained/folder, /path/model.pt2 "
    "(torch.export) or package.module:builder (give its checkpoint below)."
)
DEFAULT_MODEL = "mobilenet_v2"


CONFIRMED = "confirmed_link_models"  # session key: the link's code-running models this visitor agreed to load


def _may_name(model: str) -> bool:
    """Whether a model a link names, not in the picker's list, may be offered: in local mode any
    catalog name, and a model that runs code (a builder, a .pt2, a folder) once the person confirmed
    it; none in the demo (which lists every model it serves)."""
    if _mode().name != "local" or not model or model == "(none)":
        return False
    return what_loading_runs(model) is None or model in st.session_state.get(CONFIRMED, ())


def _awaiting(link: AnalysisRequest) -> tuple[tuple[str, str], ...]:
    """The models a link names whose loading runs code and that this visitor has not confirmed
    (local mode; the demo refuses them outright): (name, what loading it runs)."""
    if _mode().name != "local":
        return ()
    old = st.query_params.get("other_models", "") or st.query_params.get("second_model", "")
    named = dict.fromkeys(canonical(m) for m in [*link.models, *old.split(",")] if m.strip())
    confirmed = st.session_state.get(CONFIRMED, ())
    return tuple((m, what) for m in named if m not in confirmed and (what := what_loading_runs(m)) is not None)


def link_first_model() -> str:
    """The first model the page's link names."""
    return canonical(_link().models[0])


def confirm_link_models(models: tuple[str, ...], first: str | None, others: tuple[str, ...]) -> None:
    """The "Load" button's callback: remember the confirmation, put the link's models in the
    picker and ask for the analysis (the link is reproduced with this one click)."""
    st.session_state[CONFIRMED] = tuple(dict.fromkeys([*st.session_state.get(CONFIRMED, ()), *models]))
    if first is not None:  # the picker, and the weights the link gives that model (drawn before for the default)
        st.session_state["model"] = first
        weights = _link().weights[0]
        st.session_state["weights"] = "random init" if weights == "none" else "pretrained"
        st.session_state["checkpoint"] = weights if weights not in ("auto", "none") else ""
    if others:
        st.session_state["other_models"] = list(dict.fromkeys([*st.session_state.get("other_models", []), *others]))


def _model_inputs(sb: object, notices: list[str], link: AnalysisRequest) -> tuple[str, str, object]:
    """The model picker, the weights, and the local checkpoint field: (model, weights argument, its
    layer profile). A model that cannot be read says why in one sentence, and the default is used."""
    names = cached.model_names(offline_weights_only=not _mode().downloads)
    avail = cached.availability()
    q_model = canonical(link.models[0])
    if q_model not in names and not _may_name(q_model):
        if _mode().name != "local":
            notices.append(
                f"This public demo serves only the models whose weights are on its server; {DEFAULT_MODEL} "
                "is shown instead."
            )
        q_model = DEFAULT_MODEL  # locally: a model that runs code waits for the person's confirmation (main.py)
    options = names + ([q_model] if q_model not in names else [])
    model = sb.selectbox(
        "Network",
        options,
        index=options.index(q_model),
        key="model",  # type: ignore[attr-defined]
        accept_new_options=_mode().name == "local",
        format_func=lambda n: f"{n}  ✓ offline weights" if avail.get(n) == "offline" else n,
        help=PICKER_HELP + (LOCAL_PICKER_HELP if _mode().name == "local" else ""),
    )
    model = canonical(model or DEFAULT_MODEL)
    try:  # first: a name that cannot be read stops here, before its weights are looked up
        profile = cached.profile(model)
    except (ValueError, ImportError, OSError) as exc:
        sb.error(f"{code(model[:120])}: {str(exc).splitlines()[0][:300]}", icon="⚠️")  # type: ignore[attr-defined]
        model = DEFAULT_MODEL
        profile = cached.profile(model)
    if not cached.catalog_complete():
        sb.caption("Listing timm's and Hugging Face's models…")  # type: ignore[attr-defined]
    checkpoint = ""
    q_weights = link.weights[0] if canonical(link.models[0]) == model else "auto"
    if _mode().name == "local":
        checkpoint = sb.text_input(
            "Checkpoint file (optional)",
            q_weights if q_weights not in ("auto", "none") else "",
            key="checkpoint",  # type: ignore[attr-defined]
            placeholder="/path/to/weights.safetensors or .pth",
            help="Your fine-tuned weights for this architecture, loaded without running code "
            "from the file (weights_only). A package.module:builder model needs one.",
        ).strip()
    pretrained_ok = cached.model_availability(model) == "offline" or not cached.offline_only()
    q_random = q_weights == "none"
    if checkpoint:
        weights = checkpoint
        sb.caption(f"Weights: {code(checkpoint[-80:])}")  # type: ignore[attr-defined]
    else:
        choice = sb.radio(
            "Weights",
            ["pretrained", "random init"],
            index=0 if pretrained_ok and not q_random else 1,  # type: ignore[attr-defined]
            key="weights",
            horizontal=True,
            help="Random initialisation is a baseline: what the architecture alone does.",
        )
        weights = "auto" if choice == "pretrained" else "none"
    return model, weights, profile


def _link_layers(link: AnalysisRequest) -> tuple[str, ...]:
    """The layers the link names for its first model (`auto`: none named)."""
    return dict(link.layers).get(link.models[0], ())


def render() -> Inputs:
    """Draw the sidebar and return the visitor's choices."""
    sb = st.sidebar
    notices: list[str] = []
    link = _link()
    sb.caption(
        f"Mode: **{_mode().name}** — "
        + (
            "your own machine: folders by path, no image cap."
            if _mode().name == "local"
            else f"shared public demo: samples and uploads, up to {_mode().max_images:,} images."
        )
    )
    sb.markdown("### Data")
    options = list(SAMPLES) + [UPLOAD_ZIP, UPLOAD_FILES] + ([SERVER_PATH] if _mode().server_paths else [])
    q_data = link.data
    q_path = ""
    if q_data not in options and kind_name(q_data) != "upload":  # a link that names a folder or zip
        if _mode().server_paths:
            q_data, q_path = SERVER_PATH, q_data
        else:
            notices.append(
                "This public demo opens only its bundled samples and your uploads, not a path on the server; "
                "the clothing sample is shown instead."
            )
    data = sb.selectbox(
        "Dataset",
        options,
        index=options.index(q_data) if q_data in options else 0,
        key="data",
        format_func=lambda o: SAMPLES.get(o, SOURCE_LABELS.get(o, o)),
        help="The bundled sample, or your own images.",
    )
    with sb:
        upload = _upload_widgets(data)
    chosen = data
    if data == SERVER_PATH:
        path = sb.text_input(
            "Path",
            q_path,
            key="data_path",
            placeholder="/data/my-photos, /data/set.zip or /data/train.parquet",
            help="On the machine this app runs on: a folder of class folders (or images with a "
            "labels.csv or metadata.jsonl), a zip of one, WebDataset .tar shards (a folder, or "
            "shards-{000..009}.tar), a .parquet file or folder, a save_to_disk folder, or a CSV or "
            "parquet table of paths (docs/datasets.md).",
        ).strip()
        data = path or SERVER_PATH
    label_column = None
    if chosen in (SERVER_PATH, UPLOAD_ZIP):
        label_column = (
            sb.text_input(
                "Label column (optional)",
                link.label_column or "",
                key="label_column",
                help="For a table, a parquet file, metadata.csv/jsonl or a shard's .json: the column "
                "that holds the label. Empty: label, labels, class, cls or target.",
            ).strip()
            or None
        )
    max_images = _max_images_input(sb, notices, link)

    sb.markdown("### Model")
    model, weights, profile = _model_inputs(sb, notices, link)
    # the link's layers are its model's: after another model is picked they no longer apply
    q_layers = list(_link_layers(link)) if canonical(link.models[0]) == model else []
    resolved = {n: _resolve(profile, n) for n in q_layers}  # a module name (features.14) means its output node
    default_layers = list(dict.fromkeys(r for r in resolved.values() if r)) or list(profile.default)
    unknown = [n for n, r in resolved.items() if r is None]
    if unknown:  # kept until a Run click (main.py): drawing a result rewrites the link
        named = ", ".join(code(n[:80]) for n in unknown[:3])  # the link's words, shown as text
        st.session_state[LAYER_NOTICE] = (
            f"{model} has no layer {named}{' …' if len(unknown) > 3 else ''}; "
            "the link's other layers (or the defaults) are used."
        )
    if st.session_state.get(LAYER_NOTICE):
        sb.warning(st.session_state[LAYER_NOTICE], icon="⚠️")
    chosen = sb.multiselect(
        "Layers",
        profile.nodes,
        default=default_layers,
        key=f"layers_{model}",
        format_func=lambda n: _layer_label(profile, n),
        help="FX nodes (torchvision) or modules (other sources). Pre-selected: a spread of block "
        "outputs through the pooled features. ▼ marks bottlenecks (narrower than the layers "
        "around them).",
    )
    with sb.expander("Options", expanded=False):
        poolings = ["avg", "max", "avgmax"]
        q_pool = link.pooling
        pooling = st.selectbox(
            "Pooling of feature maps",
            poolings,
            index=poolings.index(q_pool) if q_pool in poolings else 0,
            key="pooling",
            help="How a C×H×W map becomes one vector: average, max, or both concatenated.",
        )
        names = cached.model_names(offline_weights_only=not _mode().downloads)
        # the link's models after the first (older links: other_models=a,b or second_model=a)
        old = st.query_params.get("other_models", "") or st.query_params.get("second_model", "")
        q_other = [canonical(m) for m in [*link.models[1:], *old.split(",")] if m.strip()]
        q_other = list(
            dict.fromkeys(m for m in q_other if m != "(none)" and m != model and (m in names or _may_name(m)))
        )
        others = st.multiselect(
            "Compare with other models",
            names + [m for m in q_other if m not in names],
            default=q_other,
            key="other_models",
            accept_new_options=_mode().name == "local",
            help="Any number, from any source: a torchvision CNN against a timm ViT and a DINOv2, say. "
            "Each adds its default layers; curves share one chart, CKA and neighbourhood "
            "overlap span them all, and Choose a cut ranks every (model, layer).",
        )
        baseline = st.checkbox(
            "Add a random-weights baseline",
            key="baseline",
            value=link.random_baseline,
            help="The same model with random weights, as a dashed curve.",
        )

    sb.markdown("### Projection")
    methods = ["umap", "pca", "tsne"]
    q_proj = link.projection
    method = sb.radio(
        "Method",
        methods,
        index=methods.index(q_proj) if q_proj in methods else 0,
        key="projection",
        horizontal=True,
        format_func=str.upper,
        help="PCA is instant and linear; UMAP and t-SNE show neighbourhoods.",
    )
    dims = sb.radio("View", ["2-D", "3-D"], key="dims", horizontal=True, index=1 if link.components == 3 else 0)
    n_neighbors, min_dist, perplexity = 15, 0.1, 30.0
    if method == "umap":
        n_neighbors = sb.slider(
            "UMAP neighbours",
            5,
            100,
            _clamp_int(link.n_neighbors, 5, 100),
            key="n_neighbors",
            help="Larger: more global structure.",
        )
        min_dist = sb.slider(
            "UMAP min distance",
            0.0,
            0.99,
            _clamp_float(link.min_dist, 0.0, 0.99, 0.1),
            key="min_dist",
            help="Smaller: tighter clusters.",
        )
    elif method == "tsne":
        perplexity = float(
            sb.slider("t-SNE perplexity", 5, 50, int(_clamp_float(link.perplexity, 5, 50, 30.0)), key="perplexity")
        )
    align = sb.checkbox(
        "Align panels",
        value=st.query_params.get("align", "1") != "0",
        key="align",
        help="Rotate each panel onto the previous one (Procrustes) so a point keeps its place.",
    )
    extract = ExtractSpec(
        model=model,
        weights=weights,
        layers=tuple(chosen),
        pooling=pooling,
        token_pooling=link.tokens,
        precision=link.precision,
    )  # not on the page: as the link says
    projection = ProjectionSpec(
        method=method,
        n_components=3 if dims == "3-D" else 2,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        perplexity=perplexity,
        random_state=link.seed,
    )
    other_models = tuple(dict.fromkeys(canonical(m) for m in others if canonical(m) != model))
    return Inputs(
        data,
        upload,
        max_images,
        extract,
        projection,
        other_models,
        baseline,
        align,
        tuple(notices),
        label_column,
        _awaiting(link),
    )
