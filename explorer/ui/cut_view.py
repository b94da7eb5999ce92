"""The Choose a cut tab: accuracy against cost for every (model, layer), the Pareto front, the best
cut within a budget, the leaderboard, and "Export this cut" (a job on the queue: the head trained,
the network up to the layer exported, tested on held-out images, handed over as a zip)."""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import streamlit as st

from .. import cutting, embedding
from ..analysis.leaderboard import RANK_COLUMNS, best_cut, filter_cuts
from ..config import DataSpec, ExtractSpec
from ..output import cut_figures, report, sentences
from ..output.sentences import budget_sentence
from ..record import LEADERBOARD, Comparison
from ..run import RunSettings, read_data
from . import pending
from .plots import PLOT_CONFIG
from .text import code, plain

TEST_SPLIT = 0.2
BOARD_ORDER = ("pareto", "model", "layer", "probe_acc", "probe_acc_low", "probe_acc_high", "knn_acc", "map_at_r",
               "few_shot_5_prototype", "logme", "h_score", "transrate", "gflops", "params", "latency_ms_b1", "latency_ms_b32", "dim",
               "feature_bytes", "compression_k95", "weights", "node")  # fmt: skip


@dataclass(frozen=True)
class CutExport:
    """A finished "Export this cut" job: the folder's files as one zip, and its metrics.json."""

    SESSION_KEY: ClassVar[str] = "cut_export"  # where the page keeps it (main._collect)
    name: str
    data: bytes
    metrics: dict[str, Any]


def cut_job(
    comp: Comparison, model: str, layer: str, source: str, cache: Any, limits: Any, as_embedder: bool = False
) -> Any:
    """The function a worker runs to export the cut of run `model` at `layer`, on the images of the
    analysis (read again from `source`, within `limits`): with a head (a stratified fifth held out
    to test), or, `as_embedder`, as an embedder with no head (tested on half the classes)."""

    run = next(r for r in comp.runs if r.label == model)
    spec = ExtractSpec(
        model=run.spec.model,
        weights=run.spec.weights,
        layers=(layer,),
        pooling=run.spec.pooling,
        token_pooling=run.spec.token_pooling,
        precision="fp32",
        device=run.spec.device,
        random_state=run.spec.random_state,
    )
    analysed = set(comp.dataset.names)

    def work(job: Any) -> CutExport:
        job.progress("checking images", 0, 1)
        every = read_data(DataSpec(source=source), settings=RunSettings(limits=limits))
        ds = every.take([i for i, name in enumerate(every.names) if name in analysed])  # the images the analysis kept
        folder = Path(tempfile.mkdtemp(prefix="explorer-cut-"))
        try:
            flags = f"--model {spec.model} --weights {spec.weights} --layer {layer} --pooling {spec.pooling} --tokens {spec.token_pooling}"
            made: Any
            if as_embedder:
                made = embedding.make_embedder(
                    ds,
                    spec,
                    folder,
                    cache=cache,
                    progress=job.progress,
                    max_pixels=limits.max_pixels,
                    command=f"python -m explorer cut --embedding --data {source} {flags} --out embedder/",
                    should_stop=job.should_stop,
                )
            else:
                made = cutting.make_cut(
                    ds,
                    spec,
                    folder,
                    test_split=TEST_SPLIT,
                    cache=cache,
                    progress=job.progress,
                    max_pixels=limits.max_pixels,
                    command=f"python -m explorer cut --data {source} {flags} --test-split {TEST_SPLIT} --out cut/",
                    should_stop=job.should_stop,
                )
            kind = "embedder" if as_embedder else "cut"
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for name in made.files:
                    zf.write(folder / name, f"{kind}/{name}")
            safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in f"{run.spec.model}-{layer}")[-80:]
            return CutExport(f"{kind}-{safe}.zip", buf.getvalue(), made.metrics)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            every.close()

    return work


def _budget_inputs() -> dict[str, Any]:
    a, b, c, d = st.columns(4)
    gflops = a.number_input(
        "Most GFLOPs per image",
        min_value=0.0,
        value=0.0,
        step=0.5,
        key="budget_gflops",
        help="0: no bound. The network up to the layer, for one image.",
    )
    latency = b.number_input(
        "Most ms per image",
        min_value=0.0,
        value=0.0,
        step=1.0,
        key="budget_latency_ms",
        help="0: no bound. Measured here, up to the layer.",
    )
    batch = c.radio("at batch", [1, 32], horizontal=True, key="budget_batch")
    dim = d.number_input("Most dimensions", min_value=0, value=0, step=64, key="budget_dim", help="0: no bound.")
    return {
        "max_gflops": gflops or None,
        "max_latency_ms": latency or None,
        "max_dim": int(dim) or None,
        "batch": int(batch),
    }


def _scorers(comp: Comparison) -> None:
    """The training-free scorers as a second opinion: one sentence on whether to trust them here,
    and each one's weighted τ with the probe beside the size prior's."""
    st.markdown("#### Second opinions: the training-free scorers")
    st.info(plain(sentences.scorer_trust_sentence(comp.agreement)), icon="🧭")
    if comp.agreement.empty:
        return
    number = st.column_config.NumberColumn
    st.dataframe(
        comp.agreement,
        hide_index=True,
        key="agreement_table",
        column_order=("what", "weighted_tau", "tau_low", "tau_high", "rows"),
        column_config={
            "what": st.column_config.TextColumn("scorer"),
            "weighted_tau": number("weighted τ with the probe", format="%.2f"),
            "tau_low": number("95 % low", format="%.2f"),
            "tau_high": number("95 % high", format="%.2f"),
            "rows": number("cuts"),
        },
    )
    st.caption(report.AGREEMENT_NOTE)


def cut_tab(comp: Comparison, export_cut: Any) -> None:
    """The tab; `export_cut(model, layer)` queues the export of that cut (None where it cannot be offered)."""
    board = comp.leaderboard
    if pending.says_pending(comp, LEADERBOARD):
        return
    if board.empty:
        st.info("This analysis has no leaderboard (it was run without one).")
        return
    if board["probe_acc"].isna().all():
        st.info(
            "The cuts are ranked by the linear probe's accuracy, which needs labels (class folders or a labels.csv)."
        )
    budget = _budget_inputs()
    ranked = [c for c in RANK_COLUMNS if c in board and board[c].notna().any()] or ["probe_acc"]
    budget["rank_by"] = st.selectbox(
        "Rank by",
        ranked,
        format_func=lambda c: RANK_COLUMNS[c],
        key="rank_by",
        help="The accuracy that chooses the cut: a trained probe's, kNN's, or recognising classes known from few "
        "images with no training (MAP@R, 5-shot nearest class mean: the New classes tab).",
    )
    within = filter_cuts(board, **{k: v for k, v in budget.items() if k != "rank_by"})
    st.success(plain(budget_sentence(board, **budget)), icon="✂️")
    chosen = _chosen(board, within, budget)
    st.plotly_chart(cut_figures.pareto(board, highlight=chosen, within=within), config=PLOT_CONFIG, key="pareto_chart")
    st.caption(report.LEADERBOARD_NOTE)
    number = st.column_config.NumberColumn
    st.dataframe(
        within,
        hide_index=True,
        key="leaderboard_table",
        on_select="rerun",
        selection_mode="single-row",
        column_order=BOARD_ORDER,
        column_config={
            "pareto": st.column_config.CheckboxColumn("front", help="on the Pareto front of accuracy against GFLOPs"),
            "probe_acc": number("probe acc", format="%.3f"),
            "probe_acc_low": number("95 % low", format="%.3f"),
            "probe_acc_high": number("95 % high", format="%.3f"),
            "knn_acc": number("kNN acc", format="%.3f"),
            "map_at_r": number("MAP@R", format="%.3f", help="retrieval of a class's other images (New classes)"),
            "few_shot_5_prototype": number(
                "5-shot", format="%.3f", help="accuracy by the nearest class mean of 5 images per class"
            ),
            "logme": number("LogME", format="%.3f", help="You et al. 2021: training-free, higher is better"),
            "h_score": number("H-score", format="%.3g", help="regularised H-score, Ibrahim et al. 2022: training-free"),
            "transrate": number("TransRate", format="%.4g", help="Huang et al. 2022: training-free, higher is better"),
            "gflops": number("GFLOPs", format="%.3g"),
            "params": number("params", format="localized"),
            "latency_ms_b1": number("ms/img b1", format="%.2f"),
            "latency_ms_b32": number("ms/img b32", format="%.2f"),
            "feature_bytes": number("bytes/img"),
            "compression_k95": number("k for 95 %", help="compression curve"),
        },
    )
    _scorers(comp)
    if chosen is None:
        return
    model, layer = chosen
    st.markdown(f"**Chosen:** {code(model)} at {code(layer)} — pick another row of the table to change it.")
    if export_cut is None:
        st.caption(
            "Exporting a cut needs the images again: from an upload (deleted after its analysis) use "
            "`python -m explorer cut` on your copy."
        )
    else:
        st.button(
            "Export this cut",
            key="export_cut",
            on_click=export_cut,
            args=(model, layer),
            help="Trains the head on 80 % of the images (C chosen there), exports the network up to this layer "
            "with it (torch.export), tests it on the other 20 %, and hands over the files as a zip.",
        )
        st.button(
            "Export as an embedder",
            key="export_embedder",
            on_click=export_cut,
            args=(model, layer, True),
            help="No head: the network up to this layer, its pooled features L2-normalised (torch.export), to recognise "
            "classes it never saw by similarity to a few images each (`python -m explorer predict --gallery`). "
            "Tested on half the classes, held out.",
        )
    _exported()


def _chosen(board: pd.DataFrame, within: pd.DataFrame, budget: dict[str, Any]) -> tuple[str, str] | None:
    """The row picked in the table, else the best cut within the budget."""
    picked = st.session_state.get("leaderboard_table")
    try:
        rows = list(picked["selection"]["rows"]) if picked is not None else []
    except (KeyError, TypeError):
        rows = []
    if rows and rows[0] < len(within):
        r = within.iloc[rows[0]]
        return str(r["model"]), str(r["layer"])
    best = best_cut(board, **budget)
    return (str(best["model"]), str(best["layer"])) if best is not None else None


def _exported() -> None:
    """The last exported cut of this session: its numbers and the zip."""
    done: CutExport | None = st.session_state.get("cut_export")
    if done is None:
        return
    m = done.metrics
    if m.get("kind") == "embedder":
        tested = (
            f" — on {m['test_images']} images of {len(m['test_classes'])} held-out classes, MAP@R "
            f"**{m['test_map_at_r']:.3f}**, precision@1 {m['test_precision_at_1']:.3f}, verification AUC "
            f"{m['test_verification_auc']:.3f}"
            if "test_map_at_r" in m
            else ""
        )
        st.markdown(
            f"**Exported an embedder:** {code(m['model'])} at {code(m['layer'])}, {m['dim']} dimensions{tested}; "
            f"{m['gflops']:.3g} GFLOPs."
        )
    else:
        st.markdown(
            f"**Exported:** {code(m['model'])} at {code(m['layer'])} — test accuracy **{m['test_accuracy']:.3f}** "
            f"(95 % interval {m['test_accuracy_low']:.3f}–{m['test_accuracy_high']:.3f}) on {m['n_test']} images the "
            f"head never saw; {m['gflops']:.3g} GFLOPs, {m['dim']} dimensions."
        )
    st.download_button(
        f"Download {done.name}", done.data, done.name, "application/zip", key="dl_cut", on_click="ignore"
    )
    if m.get("kind") == "embedder":
        st.caption(
            "The zip holds embedder.pt2 (torch.export), preprocess.json, metrics.json and model_card.md. Recognise new "
            "classes with `python -m explorer predict --model embedder/ --gallery GALLERY --data FOLDER`: GALLERY holds "
            "one folder of a few images per class; a query below the threshold for --far is answered `unknown`."
        )
    else:
        st.caption(
            "The zip holds cut.pt2 (torch.export), preprocess.json, labels.json, metrics.json and model_card.md; "
            "run it with torch alone (the card shows how) or `python -m explorer predict --model cut/ --data FOLDER`."
        )
