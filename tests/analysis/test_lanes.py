"""Work on both cores (lanes.py): UMAP of several layers side by side (projection_lanes.py) gives
the layouts the same seeded fits make one after another, to the last bit; every layer's results
computed in lanes before the analysis (layer_lanes.py) give the same files as the analysis alone;
a cached layer reaches the worker as its file, not as a copy; a worker's error is the run's, a
worker that dies gives its work back, and an error here stops the worker."""

from __future__ import annotations

import os

import numpy as np
import pytest

from explorer.analysis import lanes, projection_lanes
from explorer.analysis.neighbors import knn_graph
from explorer.analysis.projection import project
from explorer.config import ProjectionSpec


def layers(n: int = 400) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 3)) + 3 * rng.normal(size=(4, 3))[rng.integers(0, 4, n)]
    return {f"l{d}": np.tanh(z @ rng.normal(size=(3, d))).astype(np.float32) for d in (8, 16, 24)}


def test_layers_projected_side_by_side_equal_the_same_fits_one_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(projection_lanes, "LANES_MIN_WORK", 0)  # lanes even for 400 images
    if lanes.lanes() < 2:
        pytest.skip("one core: the lanes are not used")
    spec = ProjectionSpec(method="umap", random_state=3)
    feats = layers()
    graphs = {name: knn_graph(x, 15) for name, x in feats.items()}
    seen: list[str] = []
    got = projection_lanes.project_layers(
        {name: (x, graphs[name]) for name, x in feats.items()}, spec, lambda name, _: seen.append(name)
    )
    assert list(got) == list(feats) and sorted(seen) == sorted(feats)
    for name, x in feats.items():
        alone = project(x, spec, graph=graphs[name])
        assert np.array_equal(got[name].coords, alone.coords), name


def test_a_memory_mapped_layer_reaches_the_worker_as_its_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "l.npy", x)
    mapped = np.load(tmp_path / "l.npy", mmap_mode="r")
    source = lanes.portable(mapped)
    assert source[0] == "map" and source[1] == str(tmp_path / "l.npy")
    assert np.array_equal(lanes.opened(source), x)
    assert lanes.portable(x)[0] == "array"  # an array in memory is sent as it is


def test_a_workers_error_is_raised_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(projection_lanes, "LANES_MIN_WORK", 0)
    if lanes.lanes() < 2:
        pytest.skip("one core: the lanes are not used")
    feats = layers(60)
    bad = {name: (x, None) for name, x in feats.items()}
    bad["l16"] = (np.full((60, 16), np.nan, dtype=np.float32), None)
    with pytest.raises(ValueError):
        projection_lanes.project_layers(bad, ProjectionSpec(method="umap"))


def _lanes_here() -> int:
    return lanes.lanes()


def test_a_child_process_starts_no_worker_of_its_own() -> None:
    """A demo job runs in a child process bounded in memory and CPU: its UMAP stays in one lane."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_lanes_here) == 1


def test_every_models_missing_layers_are_projected_together_then_read_back(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A sweep's layers go to the lanes as one batch (each model's eight alone would not pay)."""
    from explorer.analysis import cached_runs
    from explorer.extraction.given_features import given_run
    from explorer.store import FeatureCache

    feats = layers(120)
    runs = [given_run("a", feats), given_run("b", {k: v[:, ::-1].copy() for k, v in feats.items()})]
    batches: list[int] = []
    real = cached_runs.project_layers

    def spy(missing, spec, done):  # type: ignore[no-untyped-def]
        batches.append(len(missing))
        return real(missing, spec, done)

    monkeypatch.setattr(cached_runs, "project_layers", spy)
    spec = ProjectionSpec(method="pca")
    cache = FeatureCache(tmp_path / "c")
    got = cached_runs.project_runs(runs, spec, cache, {})
    assert batches == [6] and set(got) == {"a", "b"}
    for r in runs:
        for node, x in r.features.items():
            assert np.array_equal(got[r.label][node].coords, project(x, spec).coords)
    again = cached_runs.project_runs(runs, spec, cache, {})  # stored: nothing projected again
    assert batches == [6] and all(np.array_equal(again["b"][n].coords, got["b"][n].coords) for n in feats)


def test_a_worker_that_dies_gives_its_layers_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed (out of memory, say), likely after this process has run out of layers of its
    own, leaves its layers (the one it ran and the one waiting in its queue) to this process: every
    layer is projected, here."""
    import threading
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    pending: list[Future] = []

    class DeadPool:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> "DeadPool":
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def shutdown(self) -> None:
            return None

        def submit(self, *args: object) -> Future:
            pending.append(Future())
            return pending[-1]

    here = []

    def project_here(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        here.append(1)
        if len(here) == 1:  # the worker dies while it holds its layers, whoever took which
            threading.Timer(0.5, lambda: pending[0].set_exception(BrokenProcessPool("killed"))).start()
        return project(*args, **kwargs)

    monkeypatch.setattr(lanes, "ProcessPoolExecutor", DeadPool)
    monkeypatch.setattr(projection_lanes, "project", project_here)
    monkeypatch.setattr(projection_lanes, "LANES_MIN_WORK", 0)
    monkeypatch.setattr(lanes, "lanes", lambda: 2)
    spec = ProjectionSpec(method="umap")
    feats = layers(60)
    got = projection_lanes.project_layers({name: (x, None) for name, x in feats.items()}, spec)
    assert list(got) == list(feats) and len(here) == 3  # the given-back layers projected here
    assert len(pending) in (1, 2)  # the worker held one layer, or one and one waiting
    for name, x in feats.items():
        assert np.array_equal(got[name].coords, project(x, spec).coords)


def test_an_error_here_stops_the_worker_after_its_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis fails (or is stopped) while the worker works: leaving the block lets the worker
    finish the unit it has and takes it no other; the error is the one raised here."""
    if lanes.lanes() < 2:
        pytest.skip("one core: no worker")
    feats = layers(300)
    units = {
        name: (projection_lanes._project_there, (lanes.portable(x), ProjectionSpec(method="umap"), None))
        for name, x in feats.items()
    }
    both = lanes.Lanes(units, worker=True)
    assert both.in_background
    with pytest.raises(KeyError), both:
        raise KeyError("the analysis failed")
    assert not both._queue and not both.in_background and both._helper is None


def test_explorer_lanes_0_keeps_everything_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPLORER_LANES", "0")
    assert lanes.lanes() == 1
    assert not lanes.Lanes({"a": (int, ("3",))}, worker=True).in_background


def test_every_layer_computed_in_lanes_gives_the_files_the_analysis_alone_writes(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same `compare` with each layer's results computed on both cores first (layer_lanes.py,
    the worker taking some) and with one process, stage by stage: every file it writes is the same,
    byte for byte (latency, a measured time, is left out). Run again on its stored results, it
    starts no lanes."""
    from explorer import api
    from explorer.analysis import layer_lanes

    if lanes.lanes() < 2:
        pytest.skip("one core: no worker")
    theirs: list[int] = []

    class Counted(lanes.Lanes):
        def finish(self):  # type: ignore[no-untyped-def]
            got = super().finish()
            theirs.append(len(self._theirs))
            return got

    monkeypatch.setattr(layer_lanes, "LAYER_LANES_MIN_WORK", 0)
    monkeypatch.setattr(layer_lanes, "Lanes", Counted)
    kwargs = {"max_images": 80, "projection": "umap", "progress": False, "latency": False, "similarity_nulls": True}
    api.compare("sample:clothing", cache_dir=tmp_path / "a", **kwargs).export(tmp_path / "both")
    assert theirs and theirs[0] >= 1, "the worker computed no layer"
    api.compare("sample:clothing", cache_dir=tmp_path / "a", **kwargs)  # analysed before: no lanes
    assert len(theirs) == 1
    monkeypatch.setenv("EXPLORER_LANES", "0")
    api.compare("sample:clothing", cache_dir=tmp_path / "b", **kwargs).export(tmp_path / "one")
    assert len(theirs) == 1  # one process: no lanes
    written = sorted(p.name for p in (tmp_path / "one").iterdir() if p.suffix in (".csv", ".npz"))
    assert "similarity.csv" in written and "compression.csv" in written and "projections.csv" in written
    for name in written:
        assert (tmp_path / "both" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_a_stop_skips_the_unit_waiting_in_the_worker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The worker holds the unit it runs and one waiting (lanes.WORKER_WAITING): a stop lets it
    finish the first and skips the second, so stopping waits for one unit, not two."""
    import time

    if lanes.lanes() < 2:
        pytest.skip("one core: no worker")
    units = {str(i): (_touch_then_sleep, (str(tmp_path / str(i)), 3.0)) for i in range(4)}
    both = lanes.Lanes(units, worker=True)
    time.sleep(2.0)  # the worker started, runs unit 0 and has unit 1 waiting; this process takes none
    with pytest.raises(KeyError), both:
        raise KeyError("stopped")
    started = sorted(p.name for p in tmp_path.iterdir())
    assert set(started) <= {"0"} and not both.in_background, started  # unit 1 was skipped


def _touch_then_sleep(path: str, seconds: float) -> None:
    import time
    from pathlib import Path

    Path(path).touch()
    time.sleep(seconds)


def test_a_unit_waits_for_the_one_it_reads_and_a_first_finish_leaves_the_worker_going_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`after` holds a unit back until the unit it reads is done (a layer's compression curve reads
    its stored scores), the worker taking a unit behind it meanwhile; `finish(names)` returns once
    those are done while the worker goes on (a first view shown while the rest is computed), and
    `finish()` then gives every result."""
    if lanes.lanes() < 2:
        pytest.skip("one core: no worker")
    with pytest.raises(ValueError, match="not given"):
        lanes.Lanes({"a": (int, ("1",))}, worker=False, after={"a": "b"})
    first, quick, free = (str(tmp_path / name) for name in ("first", "quick", "free"))
    units = {
        "first": (_sleep_then_touch, (first, 5.0)),
        "quick": (_sleep_then_touch, (quick, 0.1)),
        "reads first": (os.path.exists, (first,)),
        "free": (_touch_then_sleep, (free, 3.0)),
    }
    both = lanes.Lanes(units, worker=True, after={"reads first": "first"})
    assert list(both.finish(["first", "quick"])) == ["first", "quick"]
    assert os.path.exists(quick) and os.path.exists(free)  # the worker took "free" past "reads first"
    got = both.finish()
    assert list(got) == list(units) and got["reads first"] is True and both._theirs


def _sleep_then_touch(path: str, seconds: float) -> None:
    import time
    from pathlib import Path

    time.sleep(seconds)
    Path(path).touch()


def test_the_worker_starts_only_once_a_unit_here_does_real_work() -> None:
    """With `start_after`, units that are over in a moment (stored results read back) start no
    process; a unit still running after it does, and the worker takes the units left."""
    import time

    if lanes.lanes() < 2:
        pytest.skip("one core: no worker")
    quick = lanes.Lanes({str(i): (time.sleep, (0.0,)) for i in range(6)}, worker=True, start_after=0.5)
    assert list(quick.finish()) == [str(i) for i in range(6)]
    assert quick._may_start and quick._theirs == {}  # never started
    slow = lanes.Lanes(
        {str(i): (time.sleep, (2.0 if i == 0 else 0.5,)) for i in range(12)}, worker=True, start_after=0.5
    )
    assert not slow.in_background
    assert list(slow.finish()) == [str(i) for i in range(12)]
    assert not slow._may_start and slow._theirs  # started during the first unit, and it took some


def test_a_stop_heard_between_a_units_stages_here_ends_the_lanes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Units run here report between their stages through `here` (the worker gets none): a Stop
    raised there ends finish() before the queue is done, and the worker takes no other unit."""
    from explorer.progress import Cancelled

    calls: list[str] = []

    def stop_now(stage: str, done: int, total: int) -> None:
        calls.append(stage)
        raise Cancelled("stopped")

    both = lanes.Lanes(
        {str(i): (_stage_then_sleep, (0.2,)) for i in range(8)}, worker=False, here={"progress": stop_now}
    )
    with pytest.raises(Cancelled):
        both.finish()
    assert calls == ["a stage"] and not both._queue


def _stage_then_sleep(seconds: float, progress=None) -> float:  # type: ignore[no-untyped-def]
    import time

    if progress:
        progress("a stage", 0, 1)
    time.sleep(seconds)
    return seconds


MAIN_THAT_MUST_NOT_BE_IMPORTED_AGAIN = """
import sys, time
if __name__ != "__main__":  # a spawned child importing the page script, as under Streamlit
    raise SystemExit("the parent's __main__ was imported again")
from explorer.analysis import lanes
both = lanes.Lanes({str(i): (time.sleep, (0.3,)) for i in range(10)}, worker=True)
both.finish()
print("worker ran", len(both._theirs))
"""


def test_the_worker_starts_without_importing_the_parents_main(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Under Streamlit `__main__` is the page script; a spawned child re-imports it unless told not
    to. The lanes' worker is started without it (the dashboard's first analysis failed before)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if lanes.lanes() < 2:
        pytest.skip("one core: no worker")
    script = tmp_path / "page.py"
    script.write_text(MAIN_THAT_MUST_NOT_BE_IMPORTED_AGAIN)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    ran = int(out.stdout.split("worker ran")[1])
    assert ran >= 1, out.stdout + out.stderr[-2000:]


def test_a_layers_unit_reaches_the_worker_without_torch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A run's weights hold torchvision's enum member (for preprocessing); unpickling it imported
    torch and torchvision into the worker before its first unit (3.4 s of a 2,000-image analysis's
    critical path). What a layer's unit is sent unpickles in a fresh process without either."""
    import dataclasses
    import pickle
    import subprocess
    import sys

    from torchvision.models import MobileNet_V2_Weights

    from explorer.analysis import layer_lanes
    from explorer.extraction.given_features import given_run

    np.save(tmp_path / "l.npy", layers(20)["l8"])
    run = given_run("m", {"l8": np.load(tmp_path / "l.npy", mmap_mode="r")})
    run = dataclasses.replace(run, weights=dataclasses.replace(run.weights, tv_weights=MobileNet_V2_Weights.DEFAULT))
    sent = pickle.dumps(layer_lanes._portable_run(run, ["l8"]))
    check = "import pickle, sys; pickle.loads(sys.stdin.buffer.read()); print(sorted({'torch', 'torchvision'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", check], input=sent, capture_output=True, check=True)
    assert out.stdout.decode().strip() == "[]"
    whole = subprocess.run([sys.executable, "-c", check], input=pickle.dumps(run), capture_output=True, check=True)
    assert "torch" in whole.stdout.decode()  # the run itself would have imported them


@pytest.mark.parametrize("lanes_on", ["1", "0"])
def test_a_first_view_comes_before_the_rest_and_the_whole_result_is_unchanged(tmp_path, monkeypatch, lanes_on) -> None:  # type: ignore[no-untyped-def]
    """run_analysis's `first_view` (the dashboard's): called once, before the leaderboard, the
    new-class measures and the nulls are read (in lanes the worker may have begun them), with the
    graphs, scores, projections and CKA those read; the whole result then writes the files a run without a first view writes, byte
    for byte (in lanes and in one process). A run analysed before has no first view."""
    from explorer.analysis import layer_lanes
    from explorer.analysis.cached_runs import layer_stored
    from explorer.output import export
    from explorer.record import LEADERBOARD, NEW_CLASSES, NULLS
    from explorer.request import AnalysisRequest
    from explorer.run import RunSettings, run_analysis
    from explorer.store import FeatureCache

    monkeypatch.setenv("EXPLORER_LANES", lanes_on)
    monkeypatch.setattr(layer_lanes, "LAYER_LANES_MIN_WORK", 0)
    request = AnalysisRequest(data="sample:clothing", max_images=80, projection="umap")
    settings = RunSettings(latency=False, similarity_nulls=True)
    _, _, projection, metric = request.specs()
    firsts = []

    def first_view(comp) -> None:  # type: ignore[no-untyped-def]
        stored = [
            [layer_stored(comp.dataset, r, n, metric, projection, cache, first_only=only) for only in (True, False)]
            for r in comp.runs
            for n in r.features
        ]
        assert all(first for first, _ in stored)  # what it reads is stored
        if lanes_on == "0":  # one process: the rest comes after (in lanes the worker may have begun it)
            assert not any(whole for _, whole in stored)
        firsts.append(comp)

    cache = FeatureCache(tmp_path / "a")
    whole = run_analysis(request, cache=cache, settings=settings, first_view=first_view)
    assert len(firsts) == 1
    first = firsts[0]
    assert first.pending == (LEADERBOARD, NEW_CLASSES, NULLS) and whole.pending == ()
    assert first.leaderboard.empty and not first.retrieval_scores and not first.compression and not first.alignment
    assert not whole.leaderboard.empty and whole.retrieval_scores and whole.compression and whole.alignment
    assert list(first.projections) == list(whole.projections) and first.metrics.equals(whole.metrics)
    for key in whole.projections:
        assert np.array_equal(first.projections[key].coords, whole.projections[key].coords)
    export.write_all(whole, tmp_path / "first")
    run_analysis(request, cache=cache, settings=settings, first_view=first_view)  # analysed before: no first view
    assert len(firsts) == 1
    alone = run_analysis(request, cache=FeatureCache(tmp_path / "b"), settings=settings)
    export.write_all(alone, tmp_path / "alone")
    written = sorted(p.name for p in (tmp_path / "alone").iterdir() if p.suffix in (".csv", ".npz"))
    assert {"similarity.csv", "compression.csv", "retrieval.csv", "few_shot.csv"} <= set(written)
    for name in written:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name


def test_one_thread_holds_for_the_libraries_a_fresh_process_loads_inside_it() -> None:
    """threadpoolctl limits the libraries loaded when it is called: in a fresh process (a worker's
    first unit) faiss and scipy, first imported inside one_thread(), ran on every core, so that
    process's first layer was rounded otherwise than its next. They are loaded before the limit."""
    import json
    import subprocess
    import sys

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: every library runs on one thread anyway")
    check = (
        "import json; from explorer.analysis.lanes import one_thread\n"
        "from threadpoolctl import threadpool_info\n"
        "with one_thread():\n"
        "    import faiss, scipy.linalg\n"
        "    print(json.dumps([(i['filepath'], i['num_threads']) for i in threadpool_info()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, timeout=120)
    pools = json.loads(out.stdout)
    assert any("faiss" in path or "gomp" in path for path, _ in pools), pools  # faiss's OpenMP among them
    assert {threads for _, threads in pools} == {1}, pools


def test_the_worker_keeps_no_unit_waiting_that_this_process_would_take_sooner() -> None:
    """The worker keeps a unit waiting behind the one it runs only while another is left for this
    process: the last unit goes to whichever lane is free first. (It used to wait behind the
    worker's while this process had none: a worker ready at once took 5 of 8 equal UMAP layers.)"""
    import time

    if lanes.lanes() < 2:
        pytest.skip("one core: no worker")
    units = {
        "long": (time.sleep, (4.0,)),
        "a": (time.sleep, (2.0,)),
        "b": (time.sleep, (2.0,)),
        "c": (time.sleep, (2.0,)),
    }
    both = lanes.Lanes(units, worker=True, start_after=0.2)  # this process takes "long" first
    both.finish()
    # the worker, started at 0.2 s, is busy with "a" and "b" past 4 s, when this process takes "c"
    # (before, "c" waited in the worker's queue from the end of "a", when its start took under 2 s)
    assert set(both._theirs) == {"a", "b"}, both._theirs
