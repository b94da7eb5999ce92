"""The analysis the page's inputs ask for: as the specs a job runs, as the `compare` command line
that runs the same analysis, and as the link that reopens the page with the same inputs."""

from __future__ import annotations

import shlex

from ..config import DataSpec, ExtractSpec, MetricSpec, ProjectionSpec
from . import cached, sidebar

UPLOAD_PLACEHOLDER = "YOUR_FOLDER_OR_ZIP"  # an upload is not on the server: the command names your copy


def _other_model_weights(model: str) -> str:
    """Pretrained where its weights are on this machine, else a random-init baseline."""
    return "auto" if cached.model_availability(model) == "offline" else "none"


def analysis(inputs: sidebar.Inputs, source: str) -> tuple[DataSpec, list[ExtractSpec], ProjectionSpec, MetricSpec]:
    """(data, one ExtractSpec per run, projection, metrics) for these inputs, `source` being where
    the data is (an upload's written path, or inputs.data)."""
    specs = [inputs.extract]
    if inputs.random_baseline and inputs.extract.weights != "none":
        specs.append(inputs.extract.replace(weights="none"))
    for other in inputs.other_models:
        specs.append(ExtractSpec(model=other, weights=_other_model_weights(other), pooling=inputs.extract.pooling))
    return DataSpec(source=source, max_images=inputs.max_images), specs, inputs.projection, MetricSpec()


def cli_args(inputs: sidebar.Inputs) -> list[str]:
    """`python -m explorer compare` arguments for the same analysis (without --out)."""
    data = UPLOAD_PLACEHOLDER if inputs.data.startswith("upload:") else inputs.data
    ex, pr = inputs.extract, inputs.projection
    models, weights = [ex.model], [ex.weights]
    for other in inputs.other_models:
        models.append(other)
        weights.append(_other_model_weights(other))
    layers = ",".join(ex.layers) if not inputs.other_models else ",".join(f"{ex.model}:{n}" for n in ex.layers)
    args = ["--data", data, "--model", ",".join(models), "--weights", weights[0] if len(set(weights)) == 1 else ",".join(weights),
            "--layers", layers or "auto", "--pooling", ex.pooling, "--projection", pr.method,
            "--components", str(pr.n_components), "--n-neighbors", str(pr.n_neighbors), "--min-dist", str(pr.min_dist),
            "--perplexity", str(pr.perplexity), "--seed", str(pr.random_state)]  # fmt: skip
    if inputs.max_images:
        args += ["--max-images", str(inputs.max_images)]
    if inputs.random_baseline and ex.weights != "none":
        args.append("--random-baseline")
    return args


def cli_command(inputs: sidebar.Inputs) -> str:
    """The whole command line, quoted for a POSIX shell."""
    return shlex.join(["python", "-m", "explorer", "compare", *cli_args(inputs), "--out", "out/"])


def share_params(inputs: sidebar.Inputs) -> dict[str, str]:
    """The query parameters that reopen the page with these inputs (sidebar.render reads them).
    An upload is never part of a link (the link shows the clothing sample); a server path is, in
    local mode only."""
    local_path = sidebar.MODE.server_paths and not inputs.data.startswith(("sample:", "upload:"))
    ex, pr = inputs.extract, inputs.projection
    p = {"data": inputs.data if inputs.data.startswith("sample:") or local_path else "sample:clothing",
         "model": ex.model, "weights": "random" if ex.weights == "none" else "pretrained", "pooling": ex.pooling,
         "projection": pr.method, "dims": str(pr.n_components), "n_neighbors": str(pr.n_neighbors),
         "min_dist": str(pr.min_dist), "perplexity": str(pr.perplexity), "align": "1" if inputs.align else "0",
         "max_images": str(inputs.max_images or 0)}  # fmt: skip
    if ex.layers:
        p["layers"] = ",".join(ex.layers)
    if inputs.other_models:
        p["other_models"] = ",".join(inputs.other_models)
    if ex.weights not in ("auto", "none") and sidebar.MODE.server_paths:  # a checkpoint file: a path on this machine
        p["checkpoint"] = ex.weights
    if inputs.random_baseline:
        p["baseline"] = "1"
    return p
