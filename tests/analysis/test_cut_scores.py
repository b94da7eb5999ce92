"""The scores that choose a cut, each against an independent computation: LogME against the
authors' reference code, the compression curve at full width against the layer's probe, the
Pareto front and the budget answers against a direct walk, and the cost up to a layer against a
count on the truncated network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explorer.analysis import chunked
from explorer.analysis.compression import compression_curve, widths
from explorer.analysis.leaderboard import best_cut, filter_cuts, pareto_front
from explorer.analysis.logme import logme
from explorer.analysis.probe import probe
from explorer.output.sentences import budget_sentence


def _blobs(n: int, d: int, k: int, spread: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.standard_normal((k, d))
    return (centres[y] + spread * rng.standard_normal((n, d))).astype(np.float32), y


@pytest.mark.parametrize(("n", "d"), [(300, 24), (40, 64), (500, 120)])
def test_logme_equals_the_reference_implementation(n: int, d: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.reference.logme_reference import LogME

    monkeypatch.setattr(chunked, "ROW_CHUNK", 64)  # several row chunks at this N
    x, y = _blobs(n, d, 5, seed=n)
    want = LogME(regression=False).fit(x.astype(np.float64), y)
    assert logme(x, y) == pytest.approx(want, rel=1e-6, abs=1e-8)


def test_logme_ranks_a_separable_layer_above_a_noisy_one() -> None:
    clear, y = _blobs(400, 32, 4, spread=0.5)
    noisy = clear + 8 * np.random.default_rng(1).standard_normal(clear.shape).astype(np.float32)
    assert logme(clear, y) > logme(noisy, y)


def test_compression_curve_at_full_width_is_the_layers_probe() -> None:
    x, y = _blobs(300, 48, 6, spread=3.0)
    layer = probe(x, y, 5, reuse_c=True)
    curve = compression_curve(x, y, 5, rows=np.arange(len(y)), c=layer.c)
    assert curve.ks.tolist() == widths(48) == [1, 2, 4, 8, 16, 32, 48]
    assert curve.pca_acc[-1] == pytest.approx(layer.accuracy, abs=0.01)
    assert curve.pca_acc[0] < curve.pca_acc[-1]  # one component keeps less than all of them
    k = curve.smallest_k()
    assert k is not None and curve.pca_acc[list(curve.ks).index(k)] >= 0.95 * curve.pca_acc[-1]
    smaller = [a for kk, a in zip(curve.ks, curve.pca_acc) if kk < k]
    assert all(a < 0.95 * curve.pca_acc[-1] for a in smaller)


def test_a_curve_after_its_layers_probe_reuses_its_axes_and_gives_the_same_numbers() -> None:
    """The probe's folds' principal axes are kept (probe._principal_axes): the compression curve
    that follows finds them, and its numbers are those of a curve that decomposed every fold itself."""
    from explorer.analysis import probe as probe_mod

    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(4), 50)
    x = (rng.normal(size=(200, 40)) + 0.8 * np.eye(40)[y * 3]).astype(np.float32)
    probe_mod._axes_kept.clear()
    alone = compression_curve(x, y, 5, rows=np.arange(200), c=1.0)
    probe_mod._axes_kept.clear()
    decompositions = []
    real = probe_mod._decomposed
    probe(x, y, 5, c=1.0)
    kept = len(probe_mod._axes_kept)
    probe_mod._decomposed = lambda xtr: decompositions.append(1) or real(xtr)  # type: ignore[assignment]
    try:
        after = compression_curve(x, y, 5, rows=np.arange(200), c=1.0)
    finally:
        probe_mod._decomposed = real  # type: ignore[assignment]
    assert kept == 5 and decompositions == []  # the five folds' axes found kept
    assert np.array_equal(alone.pca_acc, after.pca_acc) and np.array_equal(alone.random_acc, after.random_acc)


def test_top_components_beat_a_random_projection_where_the_signal_is_in_a_few_directions() -> None:
    rng = np.random.default_rng(0)
    n, d = 400, 64
    y = rng.integers(0, 4, n)
    corners = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=float)
    mix = rng.standard_normal((2, d))  # the classes differ along two directions shared by every feature:
    x = (4 * corners[y] @ mix + rng.standard_normal((n, d))).astype(np.float32)  # the top two components
    layer = probe(x, y, 5, reuse_c=True)
    curve = compression_curve(x, y, 5, rows=np.arange(n), c=layer.c)
    at2 = list(curve.ks).index(2)
    assert curve.pca_acc[at2] > curve.random_acc[at2] + 0.1


def _front_by_brute_force(acc: np.ndarray, cost: np.ndarray) -> np.ndarray:
    out = []
    for i in range(len(acc)):
        dominated = any(
            (acc[j] >= acc[i] and cost[j] <= cost[i]) and (acc[j] > acc[i] or cost[j] < cost[i])
            for j in range(len(acc))
        )
        out.append(not dominated)
    return np.array(out)


def test_pareto_front_equals_a_brute_force_walk() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        acc = np.round(rng.uniform(0.2, 0.9, 30), 2)
        cost = np.round(rng.uniform(0.01, 5, 30), 1)
        assert pareto_front(acc, cost).tolist() == _front_by_brute_force(acc, cost).tolist()


def test_budget_answers_equal_a_direct_filter() -> None:
    board = pd.DataFrame(
        {
            "model": ["a", "a", "b", "b"],
            "layer": ["l1", "l2", "l1", "l2"],
            "dim": [64, 1280, 256, 512],
            "probe_acc": [0.5, 0.8, 0.7, 0.75],
            "gflops": [0.1, 0.3, 0.9, 1.8],
            "latency_ms_b1": [1.0, 6.0, 4.0, 9.0],
            "latency_ms_b32": [0.5, 2.0, 3.0, 5.0],
        }
    )
    assert best_cut(board)["layer"] == "l2" and best_cut(board)["model"] == "a"
    assert best_cut(board, max_dim=512)["model"] == "b" and best_cut(board, max_dim=512)["layer"] == "l2"
    assert best_cut(board, max_dim=256, max_gflops=0.5)["model"] == "a"
    assert best_cut(board, max_latency_ms=4.5)["layer"] == "l1" and best_cut(board, max_latency_ms=4.5)["model"] == "b"
    assert best_cut(board, max_latency_ms=2.5, batch=32)["layer"] == "l2"
    assert best_cut(board, max_gflops=0.01) is None
    assert len(filter_cuts(board, max_gflops=1.0)) == 3
    assert "b at l1" in budget_sentence(board, max_gflops=1.0, max_dim=256)
    with pytest.raises(ValueError, match="batch"):
        filter_cuts(board, batch=8)


@pytest.mark.parametrize("node", ["features.3.add", "features.14.conv.3", "flatten"])
def test_cost_up_to_a_layer_equals_a_count_on_the_truncated_network(node: str) -> None:
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.feature_extraction import create_feature_extractor

    from explorer.networks.cost import cut_costs

    cut = create_feature_extractor(torchvision.models.mobilenet_v2().eval(), [node])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        cut(torch.zeros(1, 3, 224, 224))
    got = cut_costs("mobilenet_v2", [node])[node]
    assert got.params == sum(p.numel() for p in cut.parameters())
    assert got.gflops == pytest.approx(counter.get_total_flops() / 2 / 1e9, rel=1e-9)
