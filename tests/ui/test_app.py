"""AppTest: every view renders without exceptions, widgets found by key; app metrics equal the CLI's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from explorer.analysis import per_run  # noqa: E402
from explorer.output import sentences, tables  # noqa: E402
from tests import helpers  # noqa: E402

pytestmark = pytest.mark.slow  # AppTests run the whole page on real models


@pytest.fixture
def app() -> AppTest:
    """A fresh page after its first visit's analysis (each test its own: a test may change it; the
    session's feature cache makes every analysis after the first one quick)."""
    at = helpers.new_page()
    at.run()
    assert not at.exception
    helpers.finish(at)
    return at


def _open_view(at: AppTest, name: str) -> None:
    at.session_state["view"] = name  # the lazy tabs' state: only the open view is built
    at.run()
    assert not at.exception, at.exception


def _charts(at: AppTest) -> list:
    return [e for e in at.main if getattr(e, "type", "") == "plotly_chart"] or list(at.get("plotly_chart"))


def test_first_visit_shows_every_view(app: AppTest) -> None:
    result = app.session_state["result"]
    comp = result.comparison
    assert comp.dataset.source == "sample:clothing" and len(comp.dataset) == 400
    assert comp.runs[0].weights.kind == "pretrained"
    assert [t.label for t in app.tabs] == [
        "Projections",
        "Separability",
        "New classes",
        "Choose a cut",
        "Layer similarity",
        "Architecture",
        "Dataset",
        "Export",
    ]
    assert app.text_input(key="find") is not None  # the projections view is open first
    assert not _charts(app)  # ...and only it: the other views' plotly figures are not built
    _open_view(app, "Separability")
    # separability, per-class accuracy, confusion, where each pair of classes comes apart, the confusions along
    # depth, the compression curves; the tables
    assert len(_charts(app)) == 6 and len(app.dataframe) >= 2
    _check_compression(app, comp)
    assert app.selectbox(key="cm_layer").value == "flatten"
    comp = app.session_state["result"].comparison
    hardest = next(d.value for d in app.dataframe if "confused" in d.value.columns)
    want = per_run.class_pairs(comp, comp.runs[0]).hardest(comp.best_layer(comp.runs[0]), top=8)
    assert [tuple(r) for r in hardest.itertuples(index=False)] == want
    _check_intervals_and_controls(app, comp)
    along = json.loads(next(e for e in _charts(app) if "confusion along depth" in str(e.proto.spec)).proto.spec)["data"]
    keys = comp.layer_keys(comp.runs[0])
    assert len(along) == len(keys)  # one small multiple per layer, each row a true class's shares
    for trace, k in zip(along, keys):
        cm = comp.scores[k].confusion.astype(float)
        assert np.allclose(_array(trace["z"]).reshape(cm.shape), cm / cm.sum(1, keepdims=True))
    _check_new_classes(app, comp)
    _open_view(app, "Layer similarity")
    assert app.selectbox(key="cka_a").value and len(_charts(app)) == 1  # the heatmap (the pair is drawn by scatter.js)
    heat = json.loads(_charts(app)[0].proto.spec)["data"]
    sim = comp.layer_similarity
    assert np.allclose(_array(heat[0]["customdata"])[..., 0], sim.cka_low)  # hover: CKA's interval
    assert any("95 % interval" in str(t) for t in heat[1]["text"])
    assert any("CKA intervals: 95 % bootstrap" in c.value for c in app.caption)
    _open_view(app, "Architecture")
    assert len(_charts(app)) == 1
    profile = {t["name"]: t for t in json.loads(_charts(app)[0].proto.spec)["data"]}
    dimension = app.session_state["result"].comparison.intrinsic
    assert np.allclose(_array(profile["intrinsic dimension (TwoNN)"]["y"]), [d.twonn for d in dimension.values()])
    assert "intrinsic dimension's minimum" in profile and "RankMe (effective rank)" in profile
    _open_view(app, "Projections")
    assert not app.warning  # no notice: nothing refused or failed


def _check_new_classes(app: AppTest, comp) -> None:  # type: ignore[no-untyped-def]
    """The New classes view: its sentences, and charts that draw retrieval.csv's and few_shot.csv's numbers."""
    from explorer.output import tables
    from explorer.ui.text import plain

    _open_view(app, "New classes")
    charts = {json.loads(e.proto.spec)["layout"]["title"]["text"].split(" —")[0]: e for e in _charts(app)}
    assert set(charts) == {
        "Retrieval and verification along depth",
        "Accuracy against labelled images per class",
        "Compressed for classes it never saw",
    }
    said = [m.value for m in app.markdown]
    assert all(f"- {plain(s)}" in said for s in sentences.new_class_sentences(comp, comp.runs[0]))
    retrieval = tables.retrieval_table(comp)
    traces = {t["name"]: t for t in json.loads(charts["Retrieval and verification along depth"].proto.spec)["data"]}
    assert np.allclose(_array(traces["MAP@R"]["y"]), retrieval["map_at_r"])
    assert np.allclose(
        _array(traces["MAP@R"]["error_y"]["arrayminus"]), retrieval["map_at_r"] - retrieval["map_at_r_low"]
    )
    shots = tables.few_shot_table(comp)
    curves = json.loads(charts["Accuracy against labelled images per class"].proto.spec)["data"]
    assert len(curves) == 2 * len(comp.runs[0].features)  # a layer's class-mean and probe curves
    last = shots[(shots["layer"] == "flatten") & (shots["method"] == "prototype")]
    drawn = next(t for t in curves if t["name"] == "flatten (class mean)")
    assert list(drawn["x"]) == list(last["shots"]) and np.allclose(_array(drawn["y"]), last["accuracy"])


def _array(value: object) -> np.ndarray:
    """A figure's array from plotly's JSON: a list, or plotly 6's typed array {dtype, bdata[, shape]}."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return out.reshape([int(v) for v in str(shape).split(",")]) if shape else out
    return np.asarray(value, dtype=float)


def _check_intervals_and_controls(app: AppTest, comp) -> None:  # type: ignore[no-untyped-def]
    """The separability chart draws each accuracy's bootstrap interval and its control curve, as
    metrics.csv has them; the page says how they were made and where a step is inside the noise."""
    fig = json.loads(next(e for e in _charts(app) if "Separability across depth" in str(e.proto.spec)).proto.spec)
    traces = {t["name"]: t for t in fig["data"]}
    m = comp.metrics.sort_values("depth")
    probe = traces["linear probe acc."]
    assert np.allclose(_array(probe["error_y"]["array"]), m["probe_acc_high"] - m["probe_acc"])
    assert np.allclose(_array(probe["error_y"]["arrayminus"]), m["probe_acc"] - m["probe_acc_low"])
    assert np.allclose(_array(traces["probe control (labels permuted)"]["y"]), m["probe_control"])
    assert np.allclose(_array(traces["kNN control (labels permuted)"]["y"]), m["knn_control"])
    assert (m["probe_acc"] - m["probe_control"]).iloc[
        -1
    ] > 0.4  # pretrained on 8 clothing classes: far above its control
    assert any("bootstrap intervals over the images" in c.value for c in app.caption)
    from explorer.ui.text import plain

    said = [w.value for w in app.warning]
    assert all(plain(n) in said for r in comp.runs for n in sentences.noise_notes(comp, r))


def _check_compression(app: AppTest, comp) -> None:  # type: ignore[no-untyped-def]
    """The compression chart draws compression.csv's curves, and a sentence per layer says its smallest k."""
    fig = json.loads(next(e for e in _charts(app) if "The probe on k dimensions" in str(e.proto.spec)).proto.spec)
    table = tables.compression_table(comp)
    pca = [t for t in fig["data"] if t["name"] == "top-k principal components"]
    rnd = [t for t in fig["data"] if t["name"] == "random projection (control)"]
    layers = list(comp.runs[0].features)
    assert len(pca) == len(rnd) == len(layers)
    for layer, p, r in zip(layers, pca, rnd):
        rows = table[table["layer"] == layer]
        assert np.allclose(_array(p["x"]), rows["k"]) and np.allclose(_array(p["y"]), rows["probe_acc"])
        assert np.allclose(_array(r["y"]), rows["random_projection_acc"])
        assert rows["k"].iloc[-1] == comp.scores[layer].dim
    from explorer.ui.text import plain

    said = [m.value for m in app.markdown]
    said_per_layer = sentences.compression_sentences(comp, comp.runs[0])
    assert len(said_per_layer) == len(layers) and all("principal components keep 95 %" in t for t in said_per_layer)
    assert all(any(plain(t) in m for m in said) for t in said_per_layer)


def test_layer_similarity_tests_each_measure_against_its_null(app: AppTest) -> None:
    """Picking a calibrated measure offers the nulls; asked for, they come back from the queue and
    the heatmap draws each pair's calibrated score, crossing the cells inside the null."""
    from explorer.analysis.alignment import measure_matrices
    from explorer.ui.similarity_view import NullsAnswer

    _open_view(app, "Layer similarity")
    app.radio(key="similarity_kind").set_value("CKNNA")
    app.run()
    assert any("permutation null" in i.value for i in app.info)
    app.button(key="ask_nulls").click()
    app.run()
    helpers.finish(app)
    answer = app.session_state[NullsAnswer.SESSION_KEY]
    comp = app.session_state["result"].comparison
    names = comp.cka_names
    assert len(answer.alignment) == len(names) * (len(names) - 1) // 2
    for measure, label in (("cknna", "CKNNA"), ("procrustes", "Procrustes")):
        app.radio(key="similarity_kind").set_value(label)
        app.run()
        assert not app.exception
        heat = json.loads(next(e for e in _charts(app) if "permutation null" in str(e.proto.spec)).proto.spec)["data"]
        want = measure_matrices(answer.alignment, names, measure)
        assert np.allclose(_array(heat[0]["z"]).reshape(want.calibrated.shape), want.calibrated)
        crossed = [t for t in heat if t.get("name") == "inside the null"]
        assert len(crossed) == int(want.inside.any())
        if crossed:
            assert len(crossed[0]["x"]) == int(want.inside.sum())
        assert any("pairs of layers score above their permutation null" in c.value for c in app.caption)
    _open_view(app, "Export")  # the answer's similarity.csv is offered with the run's files
    assert any("similarity.csv" in str(b.proto) for b in app.get("download_button"))


def test_choose_a_cut_ranks_every_cut_and_exports_one(app: AppTest) -> None:
    from explorer.ui.text import plain

    _open_view(app, "Choose a cut")
    comp = app.session_state["result"].comparison
    board = next(d.value for d in app.dataframe if "gflops" in d.value.columns)
    assert len(board) == len(comp.leaderboard) == len(comp.metrics)
    assert board["probe_acc"].is_monotonic_decreasing  # the most accurate cut first
    assert (board["gflops"] > 0).all() and board["latency_ms_b1"].notna().all() and board["logme"].notna().all()
    assert board["h_score"].notna().all() and board["transrate"].notna().all()
    agreement = next(d.value for d in app.dataframe if "weighted_tau" in d.value.columns)
    assert list(agreement["scorer"]) == ["logme", "h_score", "transrate", "params"]
    assert agreement.equals(comp.agreement)
    assert any(plain(sentences.scorer_trust_sentence(comp.agreement)) in i.value for i in app.info)
    pareto = json.loads(next(e for e in _charts(app) if "Accuracy against cost" in str(e.proto.spec)).proto.spec)
    assert pareto["layout"]["xaxis"]["type"] == "log"
    assert any(t["name"] == "Pareto front" for t in pareto["data"])
    assert any(plain(sentences.budget_sentence(comp.leaderboard)) in s.value for s in app.success)
    app.number_input(key="budget_dim").set_value(128)
    app.run()
    assert any(plain(sentences.budget_sentence(comp.leaderboard, max_dim=128)) in s.value for s in app.success)
    shown = next(d.value for d in app.dataframe if "gflops" in d.value.columns)
    assert len(shown) and (shown["dim"] <= 128).all()
    app.button(key="export_cut").click()
    app.run()
    helpers.finish(app)
    done = app.session_state["cut_export"]
    best = comp.leaderboard[comp.leaderboard["dim"] <= 128].iloc[0]
    assert (done.metrics["model"], done.metrics["layer"]) == (best["model"], best["layer"])
    assert (
        done.metrics["n_test"] == 80
        and 0 <= done.metrics["test_accuracy_low"] <= done.metrics["test_accuracy_high"] <= 1
    )
    assert app.get("download_button") and any("cut-" in str(b.proto) for b in app.get("download_button"))
    app.number_input(key="budget_dim").set_value(0)
    app.run()


def test_a_result_the_queue_let_go_is_reported_not_silently_missing(app: AppTest) -> None:
    """A session whose job the queue forgot before the page took its result (the page was away
    longer than the result TTL) says so, instead of showing the older result as if it were new."""
    app.session_state["submitted_job"] = 10**9  # a job of this session the queue no longer holds
    app.run()
    assert not app.exception, app.exception
    assert any("its result was let go" in w.value for w in app.warning)
    assert app.session_state["seen_job"] == 10**9
    app.run()  # said once: the next run does not start another rerun
    assert not app.exception
    del app.session_state["notice"]
    app.run()
    assert not app.warning


def test_a_run_click_whose_own_run_was_stopped_is_still_honoured(app: AppTest) -> None:
    """A click's run can be stopped before it reaches the button by the visitor's next interaction
    (a tab clicked at once); the button's callback has then left the click in the session, and the
    next run must act on it (without it, the click is lost)."""
    from explorer.ui.main import RUN_ASKED

    before = app.session_state["submitted_job"]
    app.session_state[RUN_ASKED] = True  # what the callback leaves when its run is stopped early
    app.run()
    assert not app.exception, app.exception
    assert app.session_state["submitted_job"] != before
    assert RUN_ASKED not in app.session_state
    helpers.finish(app)
    app.run()  # acted on once
    assert app.session_state["submitted_job"] == app.session_state["seen_job"]


def test_a_run_click_followed_at_once_by_another_request_is_honoured(app: AppTest, newer_request_after_a_click) -> None:
    """Streamlit's runner took the click's request, and the visitor's next interaction arrived
    before the run applied it (tests/ui/test_click_applied.py): the analysis is still queued."""
    before = app.session_state["submitted_job"]
    app.button(key="run").click()
    app.run()
    assert not app.exception, app.exception
    assert newer_request_after_a_click.injected == 1
    assert app.session_state["submitted_job"] != before
    helpers.finish(app)


def test_app_metrics_equal_cli(app: AppTest, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "explorer",
            "compare",
            "--data",
            "sample:clothing",
            "--max-images",
            "400",
            "--model",
            "mobilenet_v2",
            "--projection",
            "umap",
            "--out",
            str(out),
            "-q",
        ],
        cwd=helpers.ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    cli = pd.read_csv(out / "metrics.csv")
    ui = app.session_state["result"].comparison.metrics
    assert list(cli["layer"]) == list(ui["layer"])
    assert list(cli["node"]) == list(ui["node"])
    for col in (
        "dim",
        "probe_acc",
        "probe_acc_std",
        "probe_c",
        "probe_train",
        "knn_acc",
        "knn_recall",
        "silhouette",
        "eff_dim",
    ):
        pd.testing.assert_series_equal(cli[col].astype(float), ui[col].astype(float), check_names=False, rtol=1e-5)


def test_projection_change_does_not_reextract(app: AppTest) -> None:
    app.radio(key="projection").set_value("pca")
    app.button(key="run").click()
    app.run()
    helpers.finish(app)
    comp = app.session_state["result"].comparison
    assert next(iter(comp.projections.values())).method == "pca"
    assert comp.runs[0].computed == 0  # every layer came from the cache: the model was not run


def test_random_baseline_and_other_models(app: AppTest) -> None:
    app.checkbox(key="baseline").check()
    app.multiselect(key="other_models").set_value(["resnet18", "mnasnet0_5"])
    app.number_input(key="max_images").set_value(100)  # local mode (the default): any number
    app.button(key="run").click()
    app.run()
    helpers.finish(app)
    comp = app.session_state["result"].comparison
    # resnet18's weights are not on this machine: it comes in with random weights
    assert [r.label for r in comp.runs] == [
        "mobilenet_v2",
        "mobilenet_v2[random]",
        "resnet18[random]",
        "mnasnet0_5[random]",
    ]
    assert comp.cka.shape[0] == sum(len(r.features) for r in comp.runs)
    assert set(comp.leaderboard["model"]) == {r.label for r in comp.runs}  # every (model, layer) ranked


def test_colour_by_probe_correctness_matches_the_probe_accuracy(app: AppTest) -> None:
    from explorer.output.points import colour_groups

    comp = app.session_state["result"].comparison
    keys = list(comp.projections)
    codes, legend, palette = colour_groups(comp, keys, "probe correct / wrong")
    assert legend == ["correct", "wrong", "not scored"] and codes.shape == (len(keys), len(comp.dataset))
    for row, k in zip(codes, keys):  # each panel coloured by its own layer's out-of-fold predictions
        assert abs((row == 0).mean() - comp.scores[k].probe_acc) < 1e-9
    pred, legend, _ = colour_groups(comp, keys, "probe prediction")
    assert legend[:-1] == comp.dataset.classes and pred.max() < len(comp.dataset.classes)
    truth, legend, _ = colour_groups(comp, keys, "class")
    assert [legend[i] for i in truth[:5]] == list(comp.dataset.labels[:5])


def _varied_inputs():
    from explorer.config import ExtractSpec, ProjectionSpec
    from explorer.ui import sidebar

    return sidebar.Inputs(
        data="sample:digits",
        upload=None,
        max_images=60,
        extract=ExtractSpec(
            model="mobilenet_v2", weights="auto", layers=("features.4.conv.3", "flatten"), pooling="max"
        ),
        projection=ProjectionSpec(method="umap", n_components=3, n_neighbors=30, min_dist=0.25),
        other_models=("resnet18",),
        random_baseline=True,
        align=False,
    )


def test_the_cli_snippet_means_the_same_analysis_as_the_page() -> None:
    import shlex

    from explorer.cli import analysis_from_args, build_parser
    from explorer.ui import reproduce

    inputs = _varied_inputs()
    argv = shlex.split(reproduce.cli_command(inputs))
    assert argv[:4] == ["python", "-m", "explorer", "compare"]
    args = build_parser().parse_args(argv[3:])
    page = reproduce.analysis(inputs, inputs.data)
    assert analysis_from_args(args) == page
    assert [s.weights for s in page[1]] == [
        "auto",
        "none",
        "none",
    ]  # + random baseline; resnet18 has no offline weights


def test_the_share_link_reopens_the_same_inputs() -> None:
    from explorer.ui import reproduce

    inputs = _varied_inputs()
    at = helpers.new_page()
    for k, v in reproduce.share_params(inputs).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    helpers.finish(at)
    assert at.session_state["result"].inputs == inputs


def test_a_link_may_name_a_layer_by_its_module() -> None:
    at = helpers.new_page()
    at.query_params["layers"] = "features.14,flatten"
    at.query_params["max_images"] = "60"
    at.query_params["projection"] = "pca"
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="layers_mobilenet_v2").value == ["features.14.conv.3", "flatten"]
    assert not at.warning  # nothing reported unknown
    helpers.finish(at)


def test_colour_by_neighbours_changed_and_the_movers_gallery(app: AppTest) -> None:
    from explorer.analysis.movers import neighbours_changed
    from explorer.output.points import NEIGHBOURS_CHANGED, colour_groups

    _open_view(app, "Projections")
    comp = app.session_state["result"].comparison
    keys = comp.layer_keys(comp.runs[0])
    assert NEIGHBOURS_CHANGED in app.radio(key="colour_by").options
    codes, legend, _ = colour_groups(comp, keys, NEIGHBOURS_CHANGED)
    assert legend[-1] == "first layer" and codes.shape == (len(keys), len(comp.dataset)) and (codes[0] == 5).all()
    for j in range(1, len(keys)):  # each panel: its images' share of new neighbours since the panel before, in fifths
        change = neighbours_changed(comp.graphs[keys[j - 1]], comp.graphs[keys[j]])
        np.testing.assert_array_equal(codes[j], np.minimum(np.floor(change * 5 + 1e-9), 4).astype(int))
    app.toggle(key="movers_on").set_value(True)
    app.run()
    assert not app.exception, app.exception
    a, b = app.selectbox(key="movers_a").value, app.selectbox(key="movers_b").value
    rows, share = per_run.movers(comp, comp.runs[0]).ranked(a, b, comp.graphs, top=6)
    lines = [t.value for t in app.text if t.value.endswith("of its neighbours changed")]
    assert lines == [f"{comp.dataset.names[r]}: {s:.0%} of its neighbours changed" for r, s in zip(rows, share)]
    assert share[0] >= share[-1] > 0


def test_where_a_search_emerges_along_depth(app: AppTest) -> None:
    _open_view(app, "Projections")
    app.text_input(key="find").set_value("shoes")
    app.run()
    comp = app.session_state["result"].comparison
    app.button(key="emerge").click()
    app.run()
    helpers.finish(app)  # the probes are trained by a job on the queue, not on the page's thread
    chart = next(e for e in _charts(app) if "Where the selection emerges" in str(e.proto.spec))
    spec = json.loads(chart.proto.spec)
    names = [t["name"] for t in spec["data"]]
    run = comp.runs[0]
    assert names[0] == f"these images vs the rest — {run.label}" and names[-1].startswith("all classes")
    shoes = comp.selection("shoes")
    want = per_run.emergence(comp, run, shoes)
    assert spec["data"][0]["y"] == pytest.approx(want.accuracy.tolist())
    assert want.accuracy[-1] > 0.9 and want.n_selected == len(shoes)  # shoes are plain to see at the last layer


def test_a_visitor_asking_for_emergence_ten_times_at_once_gets_the_per_visitor_limit(app: AppTest) -> None:
    """Ten sessions of one address ask at once: at most the per-visitor limit of emergence jobs
    wait or run, each other ask is refused in one sentence, and the jobs that ran give the page's
    answer."""
    from explorer.ui.jobs import AlreadyRunning, JobQueue
    from explorer.ui.projections_view import emergence_job

    comp = app.session_state["result"].comparison
    run = comp.runs[0]
    shoes = tuple(comp.selection("shoes"))
    queue = JobQueue(workers=1, max_pending=8, max_per_client=2)
    taken, refused = [], []
    for i in range(10):
        try:
            taken.append(queue.submit(f"session-{i}", emergence_job(comp, run.label, shoes), client="203.0.113.7"))
        except AlreadyRunning as exc:
            refused.append(str(exc))
    assert len(taken) == 2 and len(refused) == 8
    assert all(r.count(". ") == 0 and "from your address" in r for r in refused)  # one sentence, saying why
    t0 = time.time()
    while any(j.active for j in taken) and time.time() - t0 < 120:
        time.sleep(0.2)
    want = per_run.emergence(comp, run, list(shoes)).accuracy
    for job in taken:
        assert job.state == "done", job.error
        assert queue.take(job).results[run.label].accuracy.tolist() == pytest.approx(want.tolist())


def test_the_first_panels_come_before_the_rest_of_the_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page shows an analysis's first view (projections, scores) while the rest is computed, says
    in each view what is still coming, then shows the whole result: the rest is held here until the
    first view has been drawn and its views opened."""
    import threading

    from explorer.record import LEADERBOARD, NEW_CLASSES
    from explorer.ui.jobs import Job

    shown, gate = threading.Event(), threading.Event()
    offer = Job.show_early

    def held(self: Job, value: object) -> None:
        offer(self, value)
        shown.set()
        gate.wait(300)

    monkeypatch.setattr(Job, "show_early", held)
    try:
        at = helpers.run_page(projection="umap", seed="7")  # a seed no other test asks for: not analysed before
        assert shown.wait(300), "no first view was offered"
        at.run()
        comp = at.session_state["result"].comparison
        assert comp.pending[:2] == (LEADERBOARD, NEW_CLASSES) and comp.projections and comp.leaderboard.empty
        assert any("Still computing the leaderboard" in c.value for c in at.caption)
        for view, says in (("Choose a cut", "leaderboard"), ("New classes", "new-class measures"), ("Export", "files")):
            _open_view(at, view)
            assert any(says in i.value for i in at.info), view
        _open_view(at, "Projections")
    finally:
        gate.set()
    helpers.finish(at)
    whole = at.session_state["result"].comparison
    assert whole.pending == () and not whole.leaderboard.empty and whole.retrieval_scores
    assert not any("Still computing" in c.value for c in at.caption)
    for key, projection in comp.projections.items():
        assert np.array_equal(projection.coords, whole.projections[key].coords)
