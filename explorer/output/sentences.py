"""The sentences that the report, the dashboard and the command line say about a comparison, each
written once: where the probe's steps are inside the noise, the best cut within a budget, how many
components keep a layer's accuracy, CKA's bias and intervals, what the emergence probe saw."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..analysis.alignment import BOOTSTRAPS, PERMUTATIONS, MeasureMatrices
from ..analysis.compression import KEEP, CompressionCurve
from ..analysis.emergence import FOLDS, MAX_PER_SIDE
from ..analysis.few_shot import ALL
from ..analysis.leaderboard import RANK_COLUMNS, best_cut
from ..analysis.retrieval import MAX_QUERIES
from ..analysis.similarity import BIAS_GAP, BOOT_DRAWS, Similarity
from ..analysis.uncertainty import Step, step

if TYPE_CHECKING:
    from ..analysis.emergence import Emergence
    from ..extraction.layer_features import ModelRun
    from ..record import Comparison


def signed_step(st: Step) -> str:
    """A step in accuracy with its interval: `+0.012, interval -0.004 to +0.028`."""
    return f"{st.diff:+.3f}, interval {st.low:+.3f} to {st.high:+.3f}"


def noise_notes(comp: Comparison, run: ModelRun) -> list[str]:
    """Sentences naming where the run's probe accuracy differs between layers by less than the
    noise: consecutive layers whose paired 95 % bootstrap interval holds 0, and the layers that
    cannot be told apart from the best one. Empty when every step is clear (or unscored)."""
    labels, notes = comp.dataset.labels, []
    keys = comp.layer_keys(run)
    rows = comp.metrics[comp.metrics["model"] == run.label]  # the steps metrics_table computed, in layer order
    steps = [
        None if pd.isna(d) else Step(d, lo, hi)
        for d, lo, hi in rows[["probe_step", "probe_step_low", "probe_step_high"]].itertuples(index=False)
    ]
    flat = [
        f"{a} → {b} ({signed_step(st)})"
        for (a, b), st in zip(pairwise(keys), steps[1:])
        if st is not None and st.in_noise
    ]
    if flat:
        notes.append(
            f"{run.label}: the probe's change is inside the noise (its 95 % bootstrap interval over the "
            f"images holds 0) from {'; '.join(flat)}."
        )
    best = comp.best_layer(run)
    if best is None or labels is None:
        return notes
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    pb = comp.scores[best].predicted
    rows_scored = np.flatnonzero(pb >= 0)  # type: ignore[operator]
    ties = []
    for k in keys:
        pk = comp.scores[k].predicted
        if k != best and pk is not None:
            st = step(
                pb[rows_scored] == y[rows_scored], pk[rows_scored] == y[rows_scored], random_state=comp.random_state
            )  # type: ignore[index]
            if st.in_noise:
                ties.append(f"{k} ({signed_step(st)})")
    if ties:
        notes.append(
            f"{run.label}: the best layer by probe accuracy, {best} ({comp.scores[best].probe_acc:.3f}), cannot be "
            f"told apart from {', '.join(ties)}: differences inside the noise."
        )
    return notes


def budget_sentence(board: pd.DataFrame, **budget: Any) -> str:
    """'The most accurate cut under 1 GFLOP and 256 dimensions: mobilenet_v2 at features.14 (0.712, 0.23 GFLOPs).'
    (`rank_by` among the budget: the accuracy column it ranks by, leaderboard.RANK_COLUMNS.)"""
    parts = []
    if budget.get("max_gflops") is not None:
        parts.append(f"{budget['max_gflops']:g} GFLOPs")
    if budget.get("max_latency_ms") is not None:
        parts.append(f"{budget['max_latency_ms']:g} ms per image (batch {budget.get('batch', 1)})")
    if budget.get("max_dim") is not None:
        parts.append(f"{budget['max_dim']:g} dimensions")
    within = f" within {' and '.join(parts)}" if parts else ""
    rank_by = budget.get("rank_by") or "probe_acc"
    row = best_cut(board, **budget)
    if row is None:
        return f"No scored cut fits{within}."
    by = "" if rank_by == "probe_acc" else f" by {RANK_COLUMNS[rank_by].split(' (')[0]}"
    return (
        f"The most accurate cut{by}{within}: {row['model']} at {row['layer']} "
        f"({RANK_COLUMNS[rank_by].split(' (')[0]} {row[rank_by]:.3f}, "
        f"{row['gflops']:.3g} GFLOPs, {int(row['dim'])} dimensions)."
    )


def new_class_sentences(comp: Comparison, run: ModelRun) -> list[str]:
    """What recognising new classes says for one run: the best layer at 1 labelled image per class
    and with all of them, where a trained head starts to pay, the best layer for retrieval, and
    how far a projection learned on other classes squeezes it."""
    keys = comp.layer_keys(run)
    curves = {k.split(":")[-1]: c for k in keys if (c := comp.few_shot_curves.get(k)) is not None}
    out: list[str] = []

    def best(shots: int) -> tuple[str, str, float, list[str]] | None:
        """(layer, method, accuracy, the other layers whose interval reaches its low end) at `shots`."""
        found = [
            (float(c.accuracy[i]), layer, str(c.method[i]), float(c.low[i]), float(c.high[i]))
            for layer, c in curves.items()
            for i in np.flatnonzero(c.shots == shots)
        ]
        if not found:
            return None
        acc, layer, method, low, _ = max(found)
        close = sorted({other for _, other, _, _, high in found if other != layer and high >= low})
        return layer, method, acc, close

    def tied(close: list[str]) -> str:
        if not close:
            return ""
        named = ", ".join(close[:3]) + (f" and {len(close) - 3} more" if len(close) > 3 else "")
        return f"; {named} cannot be told apart from it (the intervals overlap)"

    one, every = best(1), best(ALL)
    how = {"prototype": "the nearest class mean", "probe": "a trained linear probe"}
    if one is not None:
        out.append(
            f"With 1 labelled image per class, {one[0]} is the best layer ({how[one[1]]}, accuracy {one[2]:.3f})"
            f"{tied(one[3])}."
        )
    if every is not None:
        same = " too" if one is not None and one[0] == every[0] else ""
        out.append(
            f"With every labelled image, {every[0]} is the best layer{same} ({how[every[1]]}, accuracy {every[2]:.3f})"
            f"{tied(every[3])}."
        )
        curve = curves[every[0]]
        pays = curve.probe_pays_from()
        if pays is None:
            out.append(
                f"At {every[0]} a trained probe never beats the nearest class mean beyond its interval: "
                "similarity alone, with no training, does as well at every label budget measured."
            )
        else:
            label = "every labelled image" if pays == ALL else f"{pays} labelled images per class"
            out.append(
                f"At {every[0]} a trained probe first beats the nearest class mean at {label}: "
                "below that, recognise by similarity; from there, training a head pays."
            )
    scored = [(r.map_at_r, k.split(":")[-1], r) for k in keys if (r := comp.retrieval_scores.get(k)) is not None]
    if scored:
        m, layer, r = max(scored, key=lambda t: t[0])
        sample = (
            f" ({r.queries:,} of {r.images:,} images as queries, a stratified sample)"
            if r.sampled and r.queries == MAX_QUERIES
            else ""
        )
        out.append(
            f"Retrieval is best at {layer}: MAP@R {m:.3f} (95 % interval {r.map_at_r_low:.3f}–{r.map_at_r_high:.3f}), "
            f"precision@1 {r.precision_at_1:.3f}, verification AUC {r.verification_auc:.3f}{sample}."
        )
        unseen = comp.unseen_curves.get(run.key(layer, comp.multi))
        if unseen is not None:
            width = int(unseen.k[unseen.method == "none"][0])
            parts = []
            for method in ("pca", "lda"):
                k = unseen.smallest_k(method)
                parts.append(
                    f"{method.upper()} keeps 95 % of it with {k} of {width} dimensions"
                    if k is not None
                    else f"no {method.upper()} width keeps 95 % of it"
                )
            out.append(f"On classes a projection never saw, at {layer}: {'; '.join(parts)}.")
    return out


def keeps_sentence(layer: str, curve: CompressionCurve, keep: float = KEEP) -> str:
    """'features.14: 16 of its 160 dimensions (the top principal components) keep 95 % of its probe
    accuracy (0.59 of 0.62); a random projection needs 64.'"""
    full = float(curve.pca_acc[-1])
    k, k_random = curve.smallest_k(keep), curve.smallest_k(keep, "random")
    width = int(curve.ks[-1])
    if k is None:  # cannot happen at full width; kept for a curve read back from elsewhere
        return f"{layer}: no number of components keeps {keep * 100:.0f} % of its probe accuracy ({full:.3f})."
    acc_k = float(curve.pca_acc[list(curve.ks).index(k)])
    rnd = (
        f"a random projection needs {k_random}"
        if k_random is not None and k_random < width
        else "a random projection needs all of them"
    )
    return (
        f"{layer}: the top {k} of its {width} principal components keep {keep * 100:.0f} % of its probe accuracy "
        f"({acc_k:.3f} of {full:.3f}); {rnd}."
    )


def compression_sentences(comp: Comparison, run: ModelRun) -> list[str]:
    """One sentence per scored layer: the smallest k that keeps 95 % of its accuracy."""
    return [
        keeps_sentence(layer, c)
        for layer in run.features
        if (c := comp.compression.get(run.key(layer, comp.multi))) is not None
    ]


def cka_bias_note(sim: Similarity, n: int) -> str:
    """A sentence when plain CKA reads clearly above the debiased estimate for some pair of layers
    (the plain estimator's bias with few images next to the dimensions), else ""."""
    gap = np.nan_to_num(sim.cka - sim.cka_debiased, nan=0.0)
    np.fill_diagonal(gap, 0.0)
    if gap.size == 0 or gap.max() <= BIAS_GAP:
        return ""
    i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
    return (
        f"With {n:,} images, plain CKA is biased upward: it reads up to {gap[i, j]:.2f} above the debiased "
        f"estimate ({sim.names[i]} and {sim.names[j]}: {sim.cka[i, j]:.2f} against "
        f"{sim.cka_debiased[i, j]:.2f}). Compare layers with debiased CKA here, or use more images."
    )


def cka_interval_note(comp: Comparison) -> str:
    """How the CKA intervals were made, in one sentence."""

    m, n = comp.layer_similarity.boot_images, len(comp.dataset)
    how = (
        f"the {n:,} images resampled {BOOT_DRAWS} times"
        if m >= n
        else f"a random {m:,} of the {n:,} images resampled {BOOT_DRAWS} times, the spread scaled by √({m:,}/{n:,}) "
        "(m-out-of-n bootstrap)"
    )
    return f"CKA intervals: 95 % bootstrap over the images ({how}); hover a cell. cka_intervals.csv has every pair."


def scorer_trust_sentence(agreement: pd.DataFrame) -> str:
    """Whether the training-free scorers can be trusted on this data, in one sentence: the best
    scorer's weighted τ with the probe against the size prior's, each with its interval."""
    if agreement.empty or agreement["weighted_tau"].isna().all():
        return "Too few cuts with a probe accuracy to check the training-free scorers against it."
    rows = agreement.set_index("scorer")
    prior = rows.loc["params"] if "params" in rows.index else None
    scored = rows.drop(index="params", errors="ignore").dropna(subset=["weighted_tau"])
    if scored.empty:
        return "No training-free scorer could be computed here: the measured probe is the only answer."
    name = str(scored["weighted_tau"].idxmax())
    best = scored.loc[name]
    label = SCORER_NAMES.get(name, name)
    said = f"{label} (weighted τ {best.weighted_tau:.2f}, 95 % {best.tau_low:.2f} to {best.tau_high:.2f})"
    n = int(best.rows)
    if not best.tau_low > 0:
        return (
            f"On these {n} cuts no training-free scorer reliably ranks them as the probe does (the best, {said}, "
            "may be chance): trust the measured probe, not the scorers."
        )
    if prior is not None and np.isfinite(prior.weighted_tau) and not best.weighted_tau > prior.tau_high:
        return (
            f"On these {n} cuts the best scorer, {said}, agrees with the probe no better than the size prior "
            f"(τ {prior.weighted_tau:.2f}): the probe is the answer and the scorers add little."
        )
    return (
        f"On these {n} cuts {said} ranks them much as the probe does, better than the size prior: a fair second "
        "opinion where no probe can be trained, but the probe is the answer."
    )


SCORER_NAMES = {"logme": "LogME", "h_score": "the regularised H-score", "transrate": "TransRate", "params": "size"}


def null_note(m: MeasureMatrices, measure: str, layers: int) -> str:
    """How many pairs of layers are above their null for one measure, and on what sample."""
    pairs = layers * (layers - 1) // 2
    inside = int(np.triu(m.inside, 1).sum())
    above = pairs - inside
    return (
        f"{above} of {pairs} pairs of layers score above their permutation null ({inside} inside it, crossed), "
        f"on a sample of {m.sample:,} images, the null from {PERMUTATIONS} shuffles and the interval from "
        f"{BOOTSTRAPS} resamples."
    )


def emergence_note(comp: Comparison, got: Emergence) -> str:
    """What the emergence curve's probe saw, in a sentence or two."""

    sample = (
        (
            f" The probe saw {got.n_used:,} images: the selection and as many others, at random (at most "
            f"{MAX_PER_SIDE:,} each)."
        )
        if got.sampled or got.n_used < len(comp.dataset)
        else ""
    )
    return f"{got.n_selected:,} images against the rest, balanced, so chance is 0.5; error bars: the spread over {FOLDS} folds.{sample}"
