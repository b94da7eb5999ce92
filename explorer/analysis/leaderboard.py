"""The leaderboard of cuts: one row per (model, layer) with its accuracy, LogME and what cutting
there costs; the Pareto front of accuracy against GFLOPs; and the best cut within a budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEADERBOARD_COLUMNS = [
    "model", "layer", "node", "dim", "probe_acc", "probe_acc_low", "probe_acc_high", "knn_acc", "map_at_r",
    "few_shot_5_prototype", "logme", "h_score", "transrate", "params", "gflops", "latency_ms_b1", "latency_ms_b32", "feature_bytes", "pareto",
    "compression_k95", "weights",
]  # fmt: skip
RANK_COLUMNS = {  # the accuracy columns a cut can be ranked by, and what each says
    "probe_acc": "linear probe accuracy (classes known from many images)",
    "knn_acc": "kNN accuracy",
    "map_at_r": "MAP@R (retrieval of a class's other images, no training)",
    "few_shot_5_prototype": "5-shot accuracy by the nearest class mean (no training)",
}
FEATURE_BYTES_PER_VALUE = 4  # a pooled feature is float32
SCORERS = {  # the training-free second opinions beside the probe, and the size prior they should beat
    "logme": "LogME (You et al. 2021)",
    "h_score": "regularised H-score (Ibrahim et al. 2022)",
    "transrate": "TransRate (Huang et al. 2022)",
    "params": "size prior (parameters up to the layer, more first)",
}
AGREEMENT_COLUMNS = ["scorer", "weighted_tau", "tau_low", "tau_high", "rows", "what"]


@dataclass(frozen=True)
class LayerCost:
    """What cutting a run at one layer costs (networks/cost.py, extraction/latency.py).

    Attributes:
        params: parameters of the network up to the layer.
        gflops: one image's forward pass up to the layer, in giga multiply-adds.
        latency_ms_b1, latency_ms_b32: measured milliseconds per image up to the layer at batch 1
            and 32 on this machine (None: not measured).
    """

    params: int
    gflops: float
    latency_ms_b1: float | None = None
    latency_ms_b32: float | None = None


def pareto_front(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """(n,) bool: True where no other point is at least as accurate for at most the cost, and better
    in one of the two (maximise accuracy, minimise cost); NaN accuracy is never on the front."""
    accuracy, cost = np.asarray(accuracy, dtype=float), np.asarray(cost, dtype=float)
    on = np.zeros(len(accuracy), dtype=bool)
    ok = np.flatnonzero(~np.isnan(accuracy) & ~np.isnan(cost))
    order = ok[np.lexsort((-accuracy[ok], cost[ok]))]  # cheapest first, the most accurate first among equal costs
    best, best_cost = -np.inf, np.nan
    for i in order:
        if accuracy[i] > best or (
            accuracy[i] == best and cost[i] == best_cost
        ):  # an exact twin of a front point is on it too
            on[i] = True
            best, best_cost = accuracy[i], cost[i]
    return on


def leaderboard_table(
    metrics: pd.DataFrame,
    costs: dict[tuple[str, str], LayerCost],
    scorers: dict[tuple[str, str], dict[str, float | None]],
    k95: dict[tuple[str, str], int | None],
    weights: dict[str, str],
    new_classes: dict[tuple[str, str], tuple[float | None, float | None]] | None = None,
) -> pd.DataFrame:
    """One row per (model, layer) of `metrics` (metrics.csv's columns), most accurate first.

    Args:
        metrics: the comparison's metrics table.
        costs: {(model, layer): LayerCost}.
        scorers: {(model, layer): {"logme"|"h_score"|"transrate": score}}, a missing one None.
        k95: {(model, layer): the smallest k of the compression curve that keeps 95 % of the accuracy}.
        weights: {model: the weights it ran with}.
        new_classes: {(model, layer): (MAP@R, 5-shot prototype accuracy)}, None where not measured.

    Returns:
        A DataFrame with LEADERBOARD_COLUMNS; `pareto` marks the front of probe accuracy against GFLOPs.
    """
    rows = []
    for m in metrics.itertuples(index=False):
        key = (m.model, m.layer)
        c = costs.get(key)
        map_at_r, five_shot = (new_classes or {}).get(key, (None, None))
        rows.append(
            {
                "model": m.model,
                "layer": m.layer,
                "node": m.node,
                "dim": m.dim,
                "probe_acc": m.probe_acc,
                "probe_acc_low": m.probe_acc_low,
                "probe_acc_high": m.probe_acc_high,
                "knn_acc": m.knn_acc,
                "map_at_r": map_at_r,
                "few_shot_5_prototype": five_shot,
                **{name: scorers.get(key, {}).get(name) for name in ("logme", "h_score", "transrate")},
                "params": c.params if c else None,
                "gflops": c.gflops if c else None,
                "latency_ms_b1": c.latency_ms_b1 if c else None,
                "latency_ms_b32": c.latency_ms_b32 if c else None,
                "feature_bytes": int(m.dim) * FEATURE_BYTES_PER_VALUE,
                "compression_k95": k95.get(key),
                "weights": weights.get(m.model, ""),
            }
        )
    board = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)
    board["pareto"] = pareto_front(board["probe_acc"].to_numpy(dtype=float), board["gflops"].to_numpy(dtype=float))
    return board.sort_values(
        ["probe_acc", "gflops"], ascending=[False, True], na_position="last", kind="stable"
    ).reset_index(drop=True)


def best_cut(
    board: pd.DataFrame,
    *,
    max_gflops: float | None = None,
    max_latency_ms: float | None = None,
    max_dim: int | None = None,
    batch: int = 1,
    rank_by: str = "probe_acc",
) -> pd.Series | None:
    """The most accurate cut within the budgets (the cheapest of equals), or None when none fits.

    Args:
        board: a leaderboard_table.
        max_gflops: most GFLOPs per image up to the layer.
        max_latency_ms: most measured milliseconds per image, at `batch` (1 or 32).
        max_dim: most feature dimensions.
        batch: which latency `max_latency_ms` reads.
        rank_by: the accuracy column to rank by (one of RANK_COLUMNS).
    """
    if rank_by not in RANK_COLUMNS:
        raise ValueError(f"rank_by={rank_by!r}: rank by one of {', '.join(RANK_COLUMNS)}")
    keep = filter_cuts(board, max_gflops=max_gflops, max_latency_ms=max_latency_ms, max_dim=max_dim, batch=batch)
    keep = keep[keep[rank_by].notna()]
    if keep.empty:
        return None
    return keep.sort_values([rank_by, "gflops"], ascending=[False, True], kind="stable").iloc[0]


def filter_cuts(
    board: pd.DataFrame,
    *,
    max_gflops: float | None = None,
    max_latency_ms: float | None = None,
    max_dim: int | None = None,
    batch: int = 1,
) -> pd.DataFrame:
    """The rows of `board` within every budget given (None: no bound on that one)."""
    if batch not in (1, 32):
        raise ValueError(f"batch={batch!r}: latency is measured at batch 1 and 32")
    keep = pd.Series(True, index=board.index)
    if max_gflops is not None:
        keep &= board["gflops"] <= max_gflops
    if max_latency_ms is not None:
        keep &= board[f"latency_ms_b{batch}"] <= max_latency_ms
    if max_dim is not None:
        keep &= board["dim"] <= max_dim
    return board[keep]


def agreement_table(board: pd.DataFrame, random_state: int = 0) -> pd.DataFrame:
    """How far each training-free scorer, and the size prior, ranks the leaderboard's rows as the
    measured probe does (scorers.agreement: weighted Kendall τ with a bootstrap interval over the
    rows). The probe is the answer; these are second opinions."""
    from .scorers import agreement

    rows = []
    if not board.empty and board["probe_acc"].notna().sum() >= 3:
        truth = board["probe_acc"].to_numpy(dtype=float)
        for name, what in SCORERS.items():
            got = agreement(pd.to_numeric(board[name], errors="coerce").to_numpy(dtype=float), truth, random_state)
            rows.append((name, got.tau, got.low, got.high, got.rows, what))
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
