"""A self-contained HTML report of a Comparison (plotly.js inlined; opens offline)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import __version__
from ..analysis import per_run
from ..analysis.compression import CURVE_ROWS
from ..analysis.emergence import Emergence
from ..analysis.retrieval import MAX_PAIRS, MAX_QUERIES
from . import class_figures, cut_figures, figures, new_class_figures, sentences, tables

if TYPE_CHECKING:
    from ..extraction.layer_features import ModelRun
    from ..record import Comparison

_CSS = """
body{font-family:Inter,system-ui,sans-serif;margin:0;background:#f8f9fa;color:#212529}
main{max-width:1200px;margin:auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px}
.sub{color:#6c757d;margin-bottom:18px} .card{background:#fff;border-radius:10px;padding:12px 16px;
box-shadow:0 1px 3px rgba(0,0,0,.08);margin-bottom:16px} table{border-collapse:collapse;font-size:13px}
td,th{padding:4px 10px;border-bottom:1px solid #dee2e6;text-align:right} th{background:#f1f3f5}
td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}
"""


INTERVALS_NOTE = (
    "Error bars: 95 % bootstrap intervals over the images (each image's out-of-fold prediction, the images resampled "
    "4,000 times); hover a point for the spread over the folds too. Dotted lines: the controls, the same probe and kNN "
    "with the labels shuffled among the images, which read chance when there is nothing to find; selectivity = "
    "accuracy − control (Hewitt & Liang 2019). metrics.csv has every number."
)
REPORT_MAX_POINTS = 10_000  # points per projection panel in the report; projections.csv has them all
MATRIX_NOTES = {
    "cka": "Linear CKA (Kornblith et al. 2019), the usual biased estimator: 1 = the same geometry up to rotation and "
    "scale. With fewer images than dimensions it reads high even for unrelated layers. Hover a cell for its 95 % "
    "bootstrap interval over the images (cka_intervals.csv).",
    "cka_debiased": "Debiased linear CKA (unbiased HSIC, Song et al. 2012; Nguyen et al. 2021): near 0 for unrelated "
    "layers whatever the number of images; can be slightly negative.",
    "overlap": "Neighbourhood overlap: the mean share of an image's 10 nearest neighbours (cosine) that two layers have "
    "in common; how much of a layer's local structure survives to the other.",
    **{
        f"calibrated_{m}": f"{what} Each cell is calibrated against its permutation null (the same pair with the "
        "images' order shuffled): 0 is what unrelated layers score, 1 identical ones; a crossed cell is inside the "
        "null (not above what a shuffle gives, at 95 %). Hover a cell for the raw score, its bootstrap interval and "
        "the null (similarity.csv)."
        for m, what in (
            ("cka", "Linear CKA on a sample: raw CKA is inflated by width and depth (Gröger et al. 2026)."),
            ("cknna", "CKNNA (Huh et al. 2024): CKA kept to pairs of images that are mutual nearest neighbours."),
            (
                "mutual_knn",
                "Mutual k-NN alignment (Huh et al. 2024): the share of an image's 10 nearest neighbours "
                "both layers agree on.",
            ),
            ("rsa", "RSA: the Spearman correlation of the two layers' correlation-distance matrices."),
            (
                "procrustes",
                "Orthogonal Procrustes angular distance (Williams et al. 2021): 0 = the same shape up to "
                "rotation and scale; lower is more similar, and calibrated as 1 − distance / null mean.",
            ),
        )
    },
}


def _fig_html(fig: object) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})  # type: ignore[attr-defined]


MOVERS_LISTED = 5  # images named per pair of layers in the report (movers.csv has every image)


def _movers_html(comp: Comparison) -> str:
    """Per model and pair of consecutive layers: the mean share of an image's 10 nearest neighbours
    that changed, the images that moved most, and how many images' neighbours first agree with
    their class at each layer."""
    ds, rows = comp.dataset, []
    for run in comp.runs:
        mv = per_run.movers(comp, run)
        firsts = np.bincount(mv.first_agreeing + 1, minlength=len(mv.layers) + 1)  # [never, layer 0, ...]
        for j, layer in enumerate(mv.layers):
            moved = ""
            if j > 0:
                top, share = mv.ranked(mv.layers[j - 1], layer, comp.graphs, MOVERS_LISTED)
                moved = ", ".join(f"{ds.names[i]} ({s:.0%})" for i, s in zip(top.tolist(), share.tolist()))
            rows.append(
                (
                    run.label,
                    layer,
                    f"{mv.changed[:, j - 1].mean():.3f}" if j > 0 else "",
                    int(firsts[j + 1]) if ds.labels is not None else "",
                    moved,
                )
            )
        if ds.labels is not None:
            rows.append((run.label, "never", "", int(firsts[0]), ""))
    table = pd.DataFrame(
        rows,
        columns=[
            "model",
            "layer",
            "mean share of neighbours changed from the layer before",
            "images whose 5 nearest first agree with their class here",
            f"the {MOVERS_LISTED} images that moved most",
        ],
    )
    return (
        "<h2>Movers between layers</h2><div class=card>"
        + table.to_html(index=False, escape=True)
        + "<p>movers.csv has each image's share of changed neighbours for every pair of consecutive layers.</p></div>"
    )


def _class_pairs_html(comp: Comparison) -> str:
    """Per model: where each pair of classes comes apart, and the hardest pairs at its best layer."""
    parts = []
    for run in comp.runs:
        pairs, best = per_run.class_pairs(comp, run), comp.best_layer(run)
        if pairs is None or best is None or len(pairs.classes) < 2:
            continue
        fig = class_figures.class_pairs_apart(
            pairs.first_apart,
            pairs.classes,
            [k.split(":")[-1] for k in pairs.layers],
            pairs.threshold,
            f"First layer apart — {run.label}",
        )
        hardest = pd.DataFrame(pairs.hardest(best, top=8), columns=["class", "class ", "confused"])
        along = class_figures.confusions_along_depth(
            [comp.scores[k].confusion for k in pairs.layers],
            pairs.classes,  # type: ignore[misc]
            [k.split(":")[-1] for k in pairs.layers],
            f"The probe's confusion along depth — {run.label}",
        )
        parts.append(
            f"<div class=card>{_fig_html(fig)}<p>Hardest pairs at the best layer, {html.escape(best)}:</p>"
            + hardest.to_html(index=False, float_format=lambda v: f"{v:.3f}", escape=True)
            + f"{_fig_html(along)}</div>"
        )
    return ("<h2>Where each pair of classes comes apart</h2>" + "".join(parts)) if parts else ""


def emergence_curves(comp: Comparison, run: ModelRun, results: dict[str, Emergence]) -> dict:
    """The curves of figures.emergence: the selection-vs-rest probe of each run in `results` (the
    run and its random-init baseline) and the run's class probe, along the run's layers."""
    keys = comp.layer_keys(run)
    names = [k.split(":")[-1] for k in keys]
    curves = {
        f"these images vs the rest — {label}": (names, got.accuracy, got.accuracy_std) for label, got in results.items()
    }
    scored = [comp.scores[k].probe_acc for k in keys]
    if all(v is not None for v in scored):
        stds = np.array([comp.scores[k].probe_acc_std or 0.0 for k in keys])
        curves[f"all classes (probe accuracy) — {run.label}"] = (names, np.array(scored, dtype=float), stds)
    return curves


def _emergence_html(comp: Comparison, query: str, selected: list[int]) -> str:
    """Where the selection `query` emerges along each model's layers (compare --select)."""
    parts = []
    for run in comp.runs:
        if run.spec.weights == "none" and any(comp.baseline_of(r) is run for r in comp.runs):
            continue  # drawn beside its pretrained model
        results = {r.label: per_run.emergence(comp, r, selected) for r in (run, comp.baseline_of(run)) if r is not None}
        fig = figures.emergence(
            emergence_curves(comp, run, results), f"Where the selection ({query}) emerges — {run.label}"
        )
        parts.append(
            f"<div class=card>{_fig_html(fig)}<p>{html.escape(sentences.emergence_note(comp, results[run.label]))}</p></div>"
        )
    return f"<h2>Where the selection emerges: {html.escape(query)}</h2>" + "".join(parts)


LEADERBOARD_NOTE = (
    "Each point is a cut: the network up to that layer of that model. Its cost is the parameters and GFLOPs (multiply-adds) "
    "of that network for one image, and its latency here, measured up to the layer at batch 1 and 32; its accuracy is the "
    "linear probe's, with the 95 % bootstrap interval. A cut is on the Pareto front when no other cut is at least as "
    "accurate for fewer GFLOPs. The measured probe is the answer. LogME (You et al. 2021), the regularised H-score "
    "(Ibrahim et al. 2022) and TransRate (Huang et al. 2022) are training-free second opinions; higher is better. "
    "leaderboard.csv has every number."
)
AGREEMENT_NOTE = (
    "Weighted Kendall τ (scipy's weightedtau: the top of either ranking counts most) between each scorer's ranking of "
    "the cuts above and the probe's: 1 = the same order, 0 = unrelated. The interval resamples the cuts 1,000 times. "
    "The size prior ranks cuts by their parameters, more first: a scorer worth reading beats it. "
    "scorer_agreement.csv has these rows."
)
COMPRESSION_NOTE = (
    "The probe refitted on only the top k principal components of each layer's standardised features (found on each "
    "fold's training images), against a random projection to k dimensions as a control; the dotted line is 95 % of the "
    f"layer's accuracy. Scored on at most {CURVE_ROWS:,} images (a stratified sample), at the layer's own C; compression.csv has every point."
)
DIMENSION_NOTE = (
    "The analysed layers' intrinsic dimension by TwoNN (Facco et al. 2017: the ratio of each image's second to "
    "first nearest-neighbour distance, on a sample of at most 2,000 images, with a 95 % bootstrap interval; the star "
    "marks its minimum) and RankMe, the effective rank of the features (Garrido et al. 2023). dimension.csv has every number."
)
RETRIEVAL_NOTE = (
    "No training: each image is a query and every other image is ranked by cosine similarity on the layer's pooled "
    "features. Precision@1 is the share whose nearest image has its class; MAP@R (Musgrave et al. 2020) averages the "
    "precision at each same-class image among the first R results, R the number of other images of the class (error "
    "bars: 95 % bootstrap over the queries); verification AUC tells same-class pairs from different-class pairs by "
    f"their similarity. Beyond {MAX_QUERIES:,} queries or {MAX_PAIRS:,} pairs, a stratified sample (retrieval.csv says)."
)
FEW_SHOT_NOTE = (
    "Each point: the mean accuracy over seeded episodes in which every class is known from that many labelled images "
    "and up to 15 others are recognised; solid, the nearest class mean by cosine (no training); dotted, the linear "
    "probe trained on those images. Error bars: mean ± 1.96 standard errors over the episodes. Every layer and both "
    "methods see the same episodes; few_shot.csv has every point."
)
UNSEEN_NOTE = (
    "The classes are halved by the seed; a PCA (or LDA, on their labels) is fitted on the first half's images only, and "
    "the second half's images are retrieved among themselves after projecting to k dimensions. The dotted line is the "
    "layer itself on the same images: where a curve meets it, k dimensions keep what the layer knows about classes "
    "the projection never saw. unseen_compression.csv has every point."
)
LEADERBOARD_SHOWN = ["model", "layer", "dim", "probe_acc", "probe_acc_low", "probe_acc_high", "knn_acc", "map_at_r",
                     "few_shot_5_prototype", "logme", "h_score", "transrate", "params", "gflops", "latency_ms_b1", "latency_ms_b32",
                     "feature_bytes", "compression_k95", "pareto"]  # fmt: skip


def _leaderboard_html(comp: Comparison) -> str:
    """The leaderboard: the front figure, the best cut within a few budgets, and the table."""
    board = comp.leaderboard
    if board.empty:
        return ""
    budgets = [{}, {"max_gflops": 1.0}, {"max_dim": 256}]
    answers = "".join(f"<li>{html.escape(sentences.budget_sentence(board, **b))}</li>" for b in budgets)
    table = board[LEADERBOARD_SHOWN].to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a", escape=True)
    trust = html.escape(sentences.scorer_trust_sentence(comp.agreement))
    agreement = (
        comp.agreement.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="n/a", escape=True)
        if not comp.agreement.empty
        else ""
    )
    return (
        f"<h2>Choose a cut</h2><div class=card>{_fig_html(cut_figures.pareto(board))}<p>{html.escape(LEADERBOARD_NOTE)}</p>"
        f"<ul>{answers}</ul>{table}</div>"
        f"<h3>Second opinions: the training-free scorers</h3><div class=card><p>{trust}</p>{agreement}"
        f"<p>{html.escape(AGREEMENT_NOTE)}</p></div>"
    )


def compression_curves(comp: Comparison, run: ModelRun) -> dict:
    """{layer: (ks, probe accuracy on the top k components, on a random projection)} of a run's scored layers."""
    out = {}
    for layer in run.features:
        curve = comp.compression.get(run.key(layer, comp.multi))
        if curve is not None:
            out[layer] = (curve.ks, curve.pca_acc, curve.random_acc)
    return out


def _compression_html(comp: Comparison) -> str:
    parts = []
    for run in comp.runs:
        curves = compression_curves(comp, run)
        if curves:
            fig = cut_figures.compression(curves, f"What survives compression — {run.label}")
            said = "".join(f"<li>{html.escape(s)}</li>" for s in sentences.compression_sentences(comp, run))
            parts.append(f"<div class=card>{_fig_html(fig)}<p>{html.escape(COMPRESSION_NOTE)}</p><ul>{said}</ul></div>")
    return ("<h2>The compression curve</h2>" + "".join(parts)) if parts else ""


def _new_classes_html(comp: Comparison) -> str:
    """Recognising new classes: the sentences, retrieval along depth, and each run's few-shot curves."""
    retrieval = tables.retrieval_table(comp)
    if retrieval.empty:
        return ""
    said = "".join(f"<li>{html.escape(s)}</li>" for r in comp.runs for s in sentences.new_class_sentences(comp, r))
    parts = [
        f"<div class=card><ul>{said}</ul>{_fig_html(new_class_figures.retrieval_along_depth(retrieval))}"
        f"<p>{html.escape(RETRIEVAL_NOTE)}</p></div>"
    ]
    shots = tables.few_shot_table(comp)
    for run in comp.runs:
        rows = shots[shots["model"] == run.label]
        if not rows.empty:
            fig = new_class_figures.few_shot_curves(rows, f"Accuracy against labelled images per class — {run.label}")
            parts.append(f"<div class=card>{_fig_html(fig)}<p>{html.escape(FEW_SHOT_NOTE)}</p></div>")
    return "<h2>Recognising new classes</h2>" + "".join(parts)


def render(comp: Comparison, selection: tuple[str, list[int]] | None = None) -> str:
    """The report as one HTML string; with `selection` (its query and rows), where it emerges."""
    from plotly.offline import get_plotlyjs

    ds = comp.dataset
    runs = ", ".join(f"{r.label} ({r.weights.name}, {r.precision} on {r.device})" for r in comp.runs)
    parts = [
        f"<h1>Bottleneck Explorer report</h1><div class=sub>{html.escape(ds.source)} · {len(ds)} images · "
        f"{len(ds.classes)} classes · {html.escape(runs)} · explorer {__version__}</div>",
    ]
    dimension = tables.dimension_table(comp)
    for r in comp.runs:
        fig = figures.dimension_profile(r.profile, list(r.nodes.values()), dimension[dimension["model"] == r.label])
        parts.append(f"<div class=card>{_fig_html(fig)}<p>{html.escape(DIMENSION_NOTE)}</p></div>")
    noise = [f"<p><b>⚖️</b> {html.escape(s)}</p>" for r in comp.runs for s in sentences.noise_notes(comp, r)]
    scored = not comp.metrics["probe_acc"].isna().all()
    parts.append(
        f"<div class=card>{_fig_html(figures.separability(comp.metrics, chance=comp.chance_accuracy))}"
        + (f"<p>{html.escape(INTERVALS_NOTE)}</p>" if scored else "")
        + "".join(noise)
        + "</div>"
    )
    parts.append(_leaderboard_html(comp))
    parts.append(_compression_html(comp))
    parts.append(_new_classes_html(comp))
    names, sim = comp.cka_names, comp.layer_similarity
    for kind, matrix in (("cka", comp.cka), ("cka_debiased", sim.cka_debiased), ("overlap", comp.overlap)):
        interval = (sim.cka_low, sim.cka_high) if kind == "cka" and sim.cka_low is not None else None
        notes = [MATRIX_NOTES[kind]]
        if kind == "cka":
            notes += [sentences.cka_interval_note(comp)] if interval is not None else []
            notes += [b] if (b := sentences.cka_bias_note(sim, len(ds))) else []
        parts.append(
            f"<div class=card>{_fig_html(figures.cka_heatmap(names, matrix, kind=kind, interval=interval))}"
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
            + "</div>"
        )
    if comp.projections:
        panels = comp.panels(align=True)
        labels, names, shown = ds.labels, ds.names, ""
        if len(ds) > REPORT_MAX_POINTS:  # a file that opens: a stated random sample of the points
            keep = np.sort(np.random.default_rng(0).choice(len(ds), REPORT_MAX_POINTS, replace=False))
            panels = {k: v[keep] for k, v in panels.items()}
            labels = [labels[i] for i in keep] if labels is not None else None
            names = [names[i] for i in keep]
            shown = f"; a random {REPORT_MAX_POINTS:,} of the {len(ds):,} images"
        fig = figures.projections(panels, labels, names)  # type: ignore[arg-type]
        method = next(iter(comp.projections.values())).method.upper()
        fig.update_layout(title_text=f"Projections by layer ({method}, aligned{shown})")
        parts.append(f"<div class=card>{_fig_html(fig)}</div>")
    parts.append(_movers_html(comp))
    parts.append(_class_pairs_html(comp))
    if selection is not None:
        parts.append(_emergence_html(comp, *selection))
    table = comp.metrics.copy()
    parts.append(
        "<h2>Metrics</h2><div class=card>"
        + table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a")
        + "</div>"
    )
    notes = {s.note for s in comp.scores.values() if s.note}
    if notes:
        parts.append(
            "<div class=card>" + "<br>".join("Label metrics " + html.escape(n) for n in sorted(notes)) + "</div>"
        )
    if ds.skipped:
        sk = pd.DataFrame([(s.file, s.reason) for s in ds.skipped], columns=["file", "reason"])
        parts.append(
            f"<h2>Skipped files ({len(sk)})</h2><div class=card>" + sk.to_html(index=False, escape=True) + "</div>"
        )
    body = "\n".join(parts)
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Bottleneck Explorer report</title>"
        f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body><main>{body}</main></body></html>"
    )
