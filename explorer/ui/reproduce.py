"""The analysis the page's inputs ask for: as the specs a job runs, as the `compare` command line
that runs the same analysis, and as the link that reopens the page with the same inputs."""

from __future__ import annotations

import shlex

from ..config import DataSpec, ExtractSpec, MetricSpec, ProjectionSpec
from ..data.source_table import kind_name
from ..request import AnalysisRequest
from . import cached, runtime, sidebar

UPLOAD_PLACEHOLDER = "YOUR_FOLDER_OR_ZIP"  # an upload is not on the server: the command names your copy


def _other_model_weights(model: str) -> str:
    """Pretrained where its weights are on this machine, else a random-init baseline."""
    return "auto" if cached.model_availability(model) == "offline" else "none"


def request(inputs: sidebar.Inputs, source: str | None = None) -> AnalysisRequest:
    """The request these inputs make (request.py's vocabulary, the command line's and the link's),
    `source` being where the data is (an upload's written path; default inputs.data)."""
    ex, pr = inputs.extract, inputs.projection
    models = [ex.model, *inputs.other_models]
    weights = [ex.weights, *(_other_model_weights(m) for m in inputs.other_models)]
    return AnalysisRequest(
        data=source or inputs.data,
        label_column=inputs.label_column,
        model=tuple(models),
        weights=weights[:1] if len(set(weights)) == 1 else tuple(weights),
        layers={ex.model: tuple(ex.layers)},
        pooling=ex.pooling,
        tokens=ex.token_pooling,
        projection=pr.method,
        components=pr.n_components,
        n_neighbors=pr.n_neighbors,
        min_dist=pr.min_dist,
        perplexity=pr.perplexity,
        random_baseline=inputs.random_baseline and ex.weights != "none",
        max_images=inputs.max_images,
        precision=ex.precision,
        seed=pr.random_state,
    )


def analysis(inputs: sidebar.Inputs, source: str) -> tuple[DataSpec, list[ExtractSpec], ProjectionSpec, MetricSpec]:
    """(data, one ExtractSpec per run, projection, metrics) for these inputs, `source` being where
    the data is (an upload's written path, or inputs.data)."""
    return request(inputs, source).specs()


def cli_args(inputs: sidebar.Inputs) -> list[str]:
    """`python -m explorer compare` arguments for the same analysis (without --out)."""
    data = UPLOAD_PLACEHOLDER if kind_name(inputs.data) == "upload" else inputs.data
    return request(inputs, data).to_argv()


def cli_command(inputs: sidebar.Inputs) -> str:
    """The whole command line, quoted for a POSIX shell."""
    return shlex.join(["python", "-m", "explorer", "compare", *cli_args(inputs), "--out", "out/"])


def share_params(inputs: sidebar.Inputs) -> dict[str, str]:
    """The query parameters that reopen the page with these inputs (sidebar.render reads them with
    AnalysisRequest.from_query): the command line's flag names. An upload is never part of a link
    (the link shows the clothing sample); a server path, or a checkpoint file, is, in local mode only."""
    rt = runtime.current()
    local_path = rt.mode.server_paths and kind_name(inputs.data) == "path"
    kept = kind_name(inputs.data) == "sample" or local_path
    req = request(inputs, inputs.data if kept else "sample:clothing")
    if not kept:  # the sample stands in for an upload: the upload's label column means nothing there
        req = req.replace(label_column=None)
    if not rt.mode.server_paths:  # a checkpoint file is a path on the server
        req = req.replace(weights=tuple(w if w in ("auto", "none") else "auto" for w in req.weights))
    params = req.to_query()
    if not inputs.align:
        params["align"] = "0"
    return params
