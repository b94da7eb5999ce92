"""The exported files of a Comparison (CSV, NPZ, HTML) as bytes, and written to a folder."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd

from ..fsutil import atomic_write, atomic_write_bytes
from . import report, tables

if TYPE_CHECKING:
    from ..record import Comparison


def leaderboard_csv(comp: Comparison) -> bytes:
    """leaderboard.csv: one row per (model, layer), most accurate first: the probe (with its
    interval), kNN and LogME beside the cost of cutting there (parameters, GFLOPs and measured
    latency of the network up to the layer, the feature's bytes per image), `pareto` on the front."""
    return comp.leaderboard.to_csv(index=False, float_format="%.6g").encode()


def scorer_agreement_csv(comp: Comparison) -> bytes:
    """scorer_agreement.csv: how far each training-free scorer (LogME, H-score, TransRate) and the
    size prior rank the leaderboard's rows as the probe does: weighted Kendall τ with its 95 %
    bootstrap interval over the rows (analysis/scorers.py)."""
    return comp.agreement.to_csv(index=False, float_format="%.6g").encode()


def compression_csv(comp: Comparison) -> bytes:
    """compression.csv: model, layer, k, probe_acc, random_projection_acc (and the images scored)."""
    return tables.compression_table(comp).to_csv(index=False, float_format="%.6g").encode()


def similarity_csv(comp: Comparison) -> bytes:
    """similarity.csv: model_a, layer_a, model_b, layer_b, measure, score, null_mean, null_p95,
    calibrated, low, high, inside_null (written with `--similarity-nulls`)."""
    return tables.alignment_table(comp).to_csv(index=False, float_format="%.6g").encode()


def dimension_csv(comp: Comparison) -> bytes:
    """dimension.csv: model, layer, dim, eff_dim, twonn_id (low, high, sample), rankme, minimum."""
    return tables.dimension_table(comp).to_csv(index=False, float_format="%.6g").encode()


def retrieval_csv(comp: Comparison) -> bytes:
    """retrieval.csv: one row per (model, layer): precision_at_1, map_at_r, r_precision, map_at_r_low,
    map_at_r_high, verification_auc, tar_at_far_0.01, and the queries, images and pairs scored."""
    return tables.retrieval_table(comp).to_csv(index=False, float_format="%.6g").encode()


def few_shot_csv(comp: Comparison) -> bytes:
    """few_shot.csv: model, layer, shots, method, accuracy, accuracy_low, accuracy_high, episodes."""
    return tables.few_shot_table(comp).to_csv(index=False, float_format="%.6g").encode()


def unseen_compression_csv(comp: Comparison) -> bytes:
    """unseen_compression.csv: retrieval on classes a projection to k dimensions never saw."""
    return tables.unseen_table(comp).to_csv(index=False, float_format="%.6g").encode()


def metrics_csv(comp: Comparison) -> bytes:
    """metrics.csv: one row per (model, layer)."""
    return comp.metrics.to_csv(index=False, float_format="%.6g").encode()


def _layer_matrix_csv(comp: Comparison, kind: str) -> bytes:
    return tables.layer_matrix(comp, kind).rename_axis(None).to_csv(float_format="%.6g").encode()


def cka_csv(comp: Comparison) -> bytes:
    """cka.csv: the square linear-CKA matrix (plain, biased estimator) over every (model, layer) pair."""
    return _layer_matrix_csv(comp, "cka")


def cka_debiased_csv(comp: Comparison) -> bytes:
    """cka_debiased.csv: linear CKA from the unbiased HSIC estimator, same rows and columns."""
    return _layer_matrix_csv(comp, "cka_debiased")


def cka_intervals_csv(comp: Comparison) -> bytes:
    """cka_intervals.csv: one row per pair of (model, layer) keys: plain CKA with its 95 % bootstrap
    interval over the images, debiased CKA, and how many images the bootstrap resampled."""
    cols = ["layer_a", "layer_b", "cka", "cka_low", "cka_high", "cka_debiased", "bootstrap_images", "images"]
    return tables.similarity_pairs(comp)[cols].to_csv(index=False, float_format="%.4g").encode()


def neighbour_overlap_csv(comp: Comparison) -> bytes:
    """neighbour_overlap.csv: the mean shared share of the 10 nearest neighbours, same rows and columns."""
    return _layer_matrix_csv(comp, "overlap")


def movers_csv(comp: Comparison) -> bytes:
    """movers.csv: one row per image: the share of its 10 nearest neighbours that changed between
    each pair of consecutive layers of each model, and the first layer where most of its 5 nearest
    neighbours share its class (`never`; no column without labels)."""
    return tables.movers_table(comp).to_csv(index=False, float_format="%.4g").encode()


def class_pairs_csv(comp: Comparison) -> bytes:
    """class_pairs.csv: one row per pair of classes: at each layer of each model, the share of the
    two classes' images the probe takes for the other (out of fold), and the first layer where that
    share is under 5 % (`never`)."""
    return tables.class_pairs_table(comp).to_csv(index=False, float_format="%.4g").encode()


def emergence_csv(comp: Comparison, selected: list[int]) -> bytes:
    """selection_emergence.csv: per model (and its random-init baseline) and layer, the out-of-fold
    accuracy of the probe that tells the selected images from the rest (balanced: chance 0.5)."""
    return tables.emergence_table(comp, selected).to_csv(index=False, float_format="%.4g").encode()


def write_features_npz(comp: Comparison, fh: IO[bytes]) -> None:
    """features.npz: one array per layer key, plus `labels` and `paths` (unicode, no pickle).

    numpy streams each (memory-mapped) layer into the zip entry, so no layer is copied whole.
    """
    arrays: dict[str, np.ndarray] = dict(comp.feature_arrays())
    arrays["paths"] = np.asarray(comp.dataset.names, dtype=str)
    arrays["labels"] = np.asarray(
        comp.dataset.labels if comp.dataset.labels is not None else [""] * len(comp.dataset), dtype=str
    )
    np.savez(fh, **arrays)  # float features barely compress; compressing cost 0.25 s of a 4 s compare


def features_npz(comp: Comparison) -> bytes:
    """features.npz as bytes (a download)."""
    buf = io.BytesIO()
    write_features_npz(comp, buf)
    return buf.getvalue()


def write_projections_csv(comp: Comparison, fh: IO[bytes], align: bool = False) -> None:
    """projections.csv: long format, one row per (layer, image): layer, index, path, label, x, y[, z],
    method; written one layer at a time."""
    panels = comp.panels(align=align)
    three = any(xy.shape[1] == 3 for xy in panels.values())
    cols = ["layer", "index", "path", "label", "x", "y", *(["z"] if three else []), "method"]
    fh.write((",".join(cols) + "\n").encode())
    for key, xy in panels.items():
        df = tables.projection_frame(comp, key, xy)
        df.insert(0, "layer", key)
        df["method"] = comp.projections[key].method
        fh.write(df.reindex(columns=cols).to_csv(index=False, header=False, float_format="%.6g").encode())


def projections_csv(comp: Comparison, align: bool = False) -> bytes:
    """projections.csv as bytes (a download)."""
    buf = io.BytesIO()
    write_projections_csv(comp, buf, align)
    return buf.getvalue()


def skipped_csv(comp: Comparison) -> bytes:
    """skipped.csv: file, reason (duplicates included)."""
    rows = [(s.file, s.reason) for s in comp.dataset.skipped]
    return pd.DataFrame(rows, columns=["file", "reason"]).to_csv(index=False).encode()


def write_all(comp: Comparison, out_dir: str | Path, selection: tuple[str, list[int]] | None = None) -> dict[str, Path]:
    """Write every export into `out_dir` (atomically, file by file); with `selection` (a query and
    its rows), selection_emergence.csv too, and the report shows where it emerges."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Callable[[], bytes]] = {
        "metrics.csv": lambda: metrics_csv(comp),
        **(
            {
                "leaderboard.csv": lambda: leaderboard_csv(comp),
                "scorer_agreement.csv": lambda: scorer_agreement_csv(comp),
                "compression.csv": lambda: compression_csv(comp),
            }
            if not comp.leaderboard.empty
            else {}
        ),
        "dimension.csv": lambda: dimension_csv(comp),
        **({"similarity.csv": lambda: similarity_csv(comp)} if comp.alignment else {}),
        "retrieval.csv": lambda: retrieval_csv(comp),
        "few_shot.csv": lambda: few_shot_csv(comp),
        "unseen_compression.csv": lambda: unseen_compression_csv(comp),
        "cka.csv": lambda: cka_csv(comp),
        "cka_debiased.csv": lambda: cka_debiased_csv(comp),
        "cka_intervals.csv": lambda: cka_intervals_csv(comp),
        "neighbour_overlap.csv": lambda: neighbour_overlap_csv(comp),
        "movers.csv": lambda: movers_csv(comp),
        "class_pairs.csv": lambda: class_pairs_csv(comp),
        "skipped.csv": lambda: skipped_csv(comp),
        "report.html": lambda: report.render(comp, selection).encode(),
    }
    if selection is not None:
        files["selection_emergence.csv"] = lambda: emergence_csv(comp, selection[1])
    written = {name: atomic_write_bytes(out / name, make()) for name, make in files.items()}
    written["features.npz"] = atomic_write(out / "features.npz", lambda fh: write_features_npz(comp, fh))
    written["projections.csv"] = atomic_write(out / "projections.csv", lambda fh: write_projections_csv(comp, fh))
    return written
