"""The hosted demo's bounds (issue 10): disk, compute, time, files made with explicit modes, and
cancellation honoured after extraction. Each test fails without its fix."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from explorer import comparison
from explorer.config import DEMO, LOCAL, DataSpec, ExtractSpec, ProjectionSpec, app_mode
from explorer.data.datasets import load_dataset
from explorer.fsutil import atomic_write_bytes, write_new_file
from explorer.progress import Cancelled
from explorer.store import FeatureCache

pytestmark = pytest.mark.slow  # servers and jobs


def _fill(cache: FeatureCache, n: int, size: int = 1000) -> list[str]:
    keys = []
    for i in range(n):
        key = f"{i:02d}" + "0" * 62
        cache.put(key, np.zeros((size // 4 - 32, 1), np.float32))  # ~1 KB each
        os.utime(cache.layer_path(key), (1000 + i, 1000 + i))  # oldest first
        keys.append(key)
    return keys


def test_the_cache_evicts_the_least_recently_used_to_its_limit(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    keys = _fill(cache, 10)
    assert cache.get(keys[0]) is not None  # read now: the most recently used
    per_file = cache.layer_path(keys[1]).stat().st_size
    removed, freed = cache.evict(4 * per_file)
    assert removed == 6 and freed == 6 * per_file and cache.size_bytes() <= 4 * per_file
    kept = [k for k in keys if cache.layer_path(k).exists()]
    assert kept == [keys[0], keys[7], keys[8], keys[9]]


def test_a_reservation_makes_room_before_a_job_writes(tmp_path: Path) -> None:
    """The cache stays under its limit while jobs write, not only after them: each running job's
    reservation is evicted for up front, and the reservations of concurrent jobs add up."""
    cache = FeatureCache(tmp_path)
    keys = _fill(cache, 10)
    per_file = cache.layer_path(keys[0]).stat().st_size
    limit = 10 * per_file
    with cache.reserve(3 * per_file, limit):
        assert cache.size_bytes() + 3 * per_file <= limit
        with cache.reserve(2 * per_file, limit):  # a second job at once
            assert cache.size_bytes() + 5 * per_file <= limit
            assert [k for k in keys if cache.layer_path(k).exists()] == keys[5:]  # the oldest went
        cache.evict(limit)  # a job's end: the other job's room is still held
        assert cache.size_bytes() + 3 * per_file <= limit
    assert not cache._reserved
    with cache.reserve(10**12, None):  # no limit, nothing evicted
        assert cache.size_bytes() == 5 * per_file


def test_the_disk_estimate_bounds_what_an_analysis_writes(tmp_path: Path) -> None:
    """budget.cache_bytes is an upper bound (and a close one) of the files a compare writes."""
    from explorer.ui import budget

    ds = load_dataset(DataSpec(source="sample:clothing", max_images=120))
    specs = [
        ExtractSpec(model="mobilenet_v2", layers=("features.2.conv.2", "features.9.add", "flatten"), precision="fp32")
    ]
    cache = FeatureCache(tmp_path / "cache")
    comparison.compare(ds, specs, projection=ProjectionSpec(method="pca"), cache=cache)
    written = sum(
        p.stat().st_size
        for sub in ("features", "results")
        for p in (tmp_path / "cache" / sub).rglob("*")
        if p.is_file()
    )
    estimate = budget.cache_bytes(specs, len(ds), len(ds.classes))
    assert 0.8 * estimate <= written <= estimate
    small = DEMO.__class__(**{**DEMO.__dict__, "cache_max_bytes": written // 2})
    with pytest.raises(ValueError, match=r"more than this server's cache holds .* at most \d+ images") as err:
        budget.check(specs, len(ds), small, len(ds.classes))
    fits = int(re.search(r"at most (\d+) images", str(err.value)).group(1))
    assert 0 < fits < len(ds)
    budget.check(specs, fits, small, len(ds.classes))  # what the sentence says fits, fits
    with pytest.raises(ValueError):
        budget.check(specs, fits + 1, small, len(ds.classes))


def test_leftovers_of_a_killed_process_are_cleaned_at_start(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    (tmp_path / "features" / "ab").mkdir(parents=True)
    (tmp_path / "features" / "ab" / ".x.npy.123.tmp").write_bytes(b"half")
    (tmp_path / "partial" / "run1").mkdir(parents=True)
    (tmp_path / "partial" / "run1" / "layer000.npy").write_bytes(b"rows")
    assert cache.clean_leftovers(partial=True) == 1  # a fresh .tmp may be a live writer's
    assert cache.clean_leftovers(partial=True, min_age_s=0) == 1
    assert not list(tmp_path.rglob("*.tmp")) and not any((tmp_path / "partial").iterdir())
    (tmp_path / "partial" / "run2").mkdir()
    cache.clean_leftovers(partial=False)  # local mode keeps unfinished work to resume
    assert (tmp_path / "partial" / "run2").exists()


def test_a_demo_cache_deletes_a_cancelled_extraction(tmp_path: Path) -> None:
    ds = load_dataset(DataSpec(source="sample:digits", max_images=24))
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.5.add",), batch_size=8, precision="fp32")
    calls = {"n": 0}

    def stop_later() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    for keep in (True, False):
        cache = FeatureCache(tmp_path / str(keep), keep_partial=keep)
        calls["n"] = 0
        with pytest.raises(Cancelled):
            comparison.extract_features(ds, spec, cache=cache, should_stop=stop_later)
        partial = tmp_path / str(keep) / "partial"
        assert (partial.exists() and any(partial.iterdir())) == keep


def test_a_cancel_is_honoured_after_extraction(tmp_path: Path) -> None:
    """Scoring and projecting stop between layers when asked, not only extraction between batches."""
    ds = load_dataset(DataSpec(source="sample:digits", max_images=60))
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.2.conv.2", "features.5.add"), precision="fp32")
    cache = FeatureCache(tmp_path)
    comparison.extract_features(ds, spec, cache=cache)  # cached: the next run goes straight to scoring
    seen: list[str] = []
    with pytest.raises(Cancelled, match="stopped during"):
        comparison.compare(
            ds,
            [spec],
            projection=ProjectionSpec(method="pca"),
            cache=cache,
            progress=lambda stage, d, t: seen.append(stage),
            should_stop=lambda: bool(seen),
        )
    assert len(seen) == 1  # stopped at the first report after the extraction


def test_files_are_made_with_explicit_modes_without_touching_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_umask(mask: int) -> int:
        raise AssertionError("os.umask changes the mode of files other threads create meanwhile")

    monkeypatch.setattr(os, "umask", no_umask)
    path = atomic_write_bytes(tmp_path / "a" / "f.bin", b"x")
    assert path.stat().st_mode & 0o777 == 0o644
    new = write_new_file(tmp_path / "g.bin", b"y")
    assert new.stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "g.bin", b"z")
    assert (tmp_path / "g.bin").read_bytes() == b"y"


def test_the_demo_budget_refuses_with_what_would_fit_and_local_mode_runs() -> None:
    from explorer.ui import budget

    costly = [ExtractSpec(model="vit_h_14", weights="none", layers=("encoder",))]
    with pytest.raises(ValueError) as err:
        budget.check(costly, 400, DEMO)
    text = str(err.value)
    assert "over this demo's budget" in text and "at most 59 images" in text and "mobilenet_v2" in text
    budget.check(costly, 400, LOCAL)  # local mode: the CLI's limits
    budget.check([ExtractSpec(model="mobilenet_v2")], 2000, DEMO)  # the sample's kind of job fits
    many = [ExtractSpec(model="mobilenet_v2", layers=tuple(f"features.{i}" for i in range(17)))]
    with pytest.raises(ValueError, match="at most 16 layers"):
        budget.check(many, 10, DEMO)


def test_the_demo_never_downloads_and_its_cache_limit_is_configurable(tmp_path: Path) -> None:
    assert app_mode({"EXPLORER_MODE": "demo"}).downloads is False
    assert app_mode({"EXPLORER_MODE": "demo", "EXPLORER_CACHE_MAX_GB": "0.5"}).cache_max_bytes == 512 * 1024**2
    assert app_mode({"EXPLORER_CACHE_MAX_GB": "0"}).cache_max_bytes is None
    with pytest.raises(ValueError, match="not a number"):
        app_mode({"EXPLORER_CACHE_MAX_GB": "lots"})
    env = {**os.environ, "EXPLORER_MODE": "demo", "EXPLORER_CACHE_DIR": str(tmp_path), "EXPLORER_OFFLINE": ""}
    allowed = "from explorer.networks import weights; print(weights.downloads_allowed())"
    core = subprocess.run([sys.executable, "-c", allowed], env=env, capture_output=True, text=True, check=True)
    assert core.stdout.strip() == "True"  # the command line and the API never obey the dashboard's mode
    server = subprocess.run(
        [sys.executable, "-c", "from explorer.ui import runtime; runtime.start(); " + allowed],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert server.stdout.strip() == "False"  # the demo server forbids downloads at its start


def test_a_job_past_its_wall_clock_budget_stops_with_a_sentence() -> None:
    from explorer.ui.jobs import JobQueue

    q = JobQueue(workers=1, max_pending=2, max_seconds=0.2)

    def forever(job) -> None:
        while not job.should_stop():
            time.sleep(0.01)
        raise Cancelled("stopped")

    job = q.submit("a", forever)
    t0 = time.time()
    while job.active and time.time() - t0 < 10:
        time.sleep(0.02)
    assert job.state == "failed" and "ran past this server's limit" in job.error


def test_colliding_upload_names_are_refused_not_overwritten(tmp_path: Path) -> None:
    from explorer.ui.sidebar import write_upload

    class Upload:
        def __init__(self, name: str, data: bytes) -> None:
            self.name, self.size, self._data = name, len(data), data

        def getvalue(self) -> bytes:
            return self._data

    with pytest.raises(ValueError, match="would both be saved as 'a_b.jpg'"):
        write_upload(("files", (Upload("a b.jpg", b"1"), Upload("a_b.jpg", b"2"))), tmp_path)
    assert not list(tmp_path.glob("upload-*"))  # nothing half-written left behind
    folder = Path(write_upload(("files", (Upload("x.jpg", b"1"),)), tmp_path))
    assert folder.stat().st_mode & 0o077 == 0 and (folder / "x.jpg").read_bytes() == b"1"


def test_kill_9_during_extraction_then_a_rerun_gives_the_uninterrupted_results(tmp_path: Path) -> None:
    """SIGKILL of `compare` while it extracts; the same command again resumes and writes the same
    metrics as a run that was never interrupted; nothing corrupt or temporary is left."""
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cmd = [
        sys.executable,
        "-m",
        "explorer",
        "compare",
        "--data",
        "sample:digits",
        "--max-images",
        "600",
        "--model",
        "mobilenet_v2",
        "--layers",
        "features.2.conv.2,features.5.add",
        "--projection",
        "pca",
        "--batch-size",
        "8",
    ]

    def run(cache: Path, out: Path, kill_when_started: bool = False) -> str:
        env = {**os.environ, "EXPLORER_CACHE_DIR": str(cache)}
        err_log = out.parent / f"{out.name}.stderr"  # a file: a pipe read only at the end could fill and stall it
        with open(err_log, "wb") as err_out:
            proc = subprocess.Popen(
                [*cmd, "--out", str(out)], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=err_out
            )
        if kill_when_started:
            t0 = time.time()
            while not list((cache / "partial").glob("*/done.json")) and time.time() - t0 < 300:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return ""
        proc.wait(timeout=600)
        assert proc.returncode == 0, err_log.read_text(errors="replace")[-2000:]
        return (out / "metrics.csv").read_text()

    run(tmp_path / "killed", tmp_path / "o1", kill_when_started=True)
    assert list((tmp_path / "killed" / "partial").glob("*/layer*.npy"))  # killed mid-extraction
    resumed = run(tmp_path / "killed", tmp_path / "o2")
    clean = run(tmp_path / "clean", tmp_path / "o3")
    assert resumed == clean
    assert not list((tmp_path / "killed").rglob("*.tmp"))
    for f in (tmp_path / "killed" / "features").rglob("*.npy"):
        assert np.isfinite(np.load(f, mmap_mode="r")).all()


def test_stale_upload_folders_are_swept_at_start_and_fresh_ones_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from explorer.store import FeatureCache
    from explorer.ui import runtime

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's own temp folder
    root = runtime.upload_root()
    root.mkdir(parents=True)
    stale, fresh = root / "upload-stale-test", root / "upload-fresh-test"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "a.jpg").write_bytes(b"x")
    old = time.time() - runtime.STALE_S - 60
    os.utime(stale, (old, old))
    runtime._clean(FeatureCache(tmp_path / "cache"), LOCAL)
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a running job


@pytest.mark.parametrize(
    "kind,name", [("zip", "d.zip"), ("zip", "shard.tar"), ("zip", "t.parquet"), ("files", "x.jpg")]
)
@pytest.mark.parametrize("outcome", ["done", "failed", "cancelled"])
def test_every_upload_is_deleted_when_its_job_ends(tmp_path: Path, kind: str, name: str, outcome: str) -> None:
    """A zip, a .tar, a .parquet or loose files: the upload's folder goes when the job ends, however
    it ends (a .tar and a .parquet once stayed: their folder was taken for the file itself)."""
    import functools
    import shutil
    import threading

    from explorer.ui.jobs import JobQueue
    from explorer.ui.sidebar import upload_folder, write_upload

    class Upload:
        def __init__(self, name: str, data: bytes) -> None:
            self.name, self.size, self._data = name, len(data), data

        def getvalue(self) -> bytes:
            return self._data

    payload = Upload(name, b"bytes") if kind == "zip" else (Upload(name, b"1"), Upload("y.jpg", b"2"))
    source = write_upload((kind, payload), tmp_path)
    assert upload_folder(source).parent == tmp_path and upload_folder(source).name.startswith("upload-")
    started = threading.Event()

    def work(job: object) -> str:
        started.set()
        if outcome == "failed":
            raise ValueError("a bad upload")
        if outcome == "cancelled":
            while not job.should_stop():  # type: ignore[attr-defined]
                time.sleep(0.01)
            from explorer.progress import Cancelled

            raise Cancelled
        return "ok"

    q = JobQueue(workers=1)
    job = q.submit("s", work, functools.partial(shutil.rmtree, upload_folder(source), ignore_errors=True))
    if outcome == "cancelled":
        assert started.wait(5)
        q.cancel(job)
    t0 = time.time()
    while job.active and time.time() - t0 < 10:
        time.sleep(0.01)
    assert job.state == outcome
    assert not list(tmp_path.iterdir())  # nothing of the upload is left


def test_an_uploads_refusal_does_not_show_the_servers_folders(tmp_path: Path) -> None:
    """A visitor's bad upload is told in one sentence naming their file, not where the server keeps it."""
    import tempfile

    from explorer.config import DEMO
    from explorer.request import AnalysisRequest
    from explorer.ui.analysis_job import AnalysisJob, without_server_paths

    folder = Path(tempfile.gettempdir()) / "explorer-uploads" / "upload-0123abcd"
    said = without_server_paths(f"no usable images in '{folder}/dataset.zip' (0 files skipped)")
    assert said == "no usable images in 'dataset.zip' (0 files skipped)"
    assert str(tmp_path).startswith(tempfile.gettempdir())  # where the server writes uploads, as here
    upload = tmp_path / "upload-x"
    upload.mkdir()
    (upload / "notes.txt").write_text("no image here")
    job = AnalysisJob(
        AnalysisRequest(data=str(upload), projection="pca"), DEMO, str(tmp_path / "cache"), fresh_upload=True
    )

    class Quiet:
        def progress(self, *args: object) -> None:
            pass

        def should_stop(self) -> bool:
            return False

    with pytest.raises(ValueError) as refused:
        job(Quiet())
    assert str(tmp_path) not in str(refused.value) and "upload-x" in str(refused.value)
