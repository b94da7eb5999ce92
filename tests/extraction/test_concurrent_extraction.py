"""Two processes asking for the same features at once: the second waits for the first's extraction
and reuses it (never writing into it), and both end with the same complete features; a blank row
is NaN in the features, so a lost record of undecodable images is rebuilt from them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from explorer.config import DataSpec, ExtractSpec
from explorer.data.datasets import load_dataset
from explorer.extraction.layer_features import extract_features, unreadable_images
from explorer.store import FeatureCache

pytestmark = pytest.mark.slow  # several extractions at once

ROOT = Path(__file__).resolve().parents[2]
N = 120
WORKER = f"""
import json, sys, time
import numpy as np
from explorer.config import DataSpec, ExtractSpec
from explorer.data.datasets import load_dataset
from explorer.extraction import layer_features
from explorer.store import FeatureCache
layer_features.CHUNK = 16  # many chunks: the two would interleave without the lock
ds = load_dataset(DataSpec(source="sample:clothing", max_images={N}), thumbnails=False)
spec = ExtractSpec(model="mobilenet_v2", weights="none", layers=("features.3", "features.10"), batch_size=8, precision="fp32")
print("READY", flush=True)
sys.stdin.readline()  # both start extracting together
t0 = time.time()
run = layer_features.extract_features(ds, spec, cache=FeatureCache(sys.argv[1]))
np.savez(sys.argv[2], **{{n: np.asarray(f) for n, f in run.features.items()}})
print(json.dumps({{"computed": run.computed, "start": t0, "end": time.time()}}), flush=True)
"""


def test_two_processes_on_one_key_wait_and_reuse(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    logs = [tmp_path / f"worker{i}.stderr" for i in range(2)]  # files: an unread pipe could stall a worker
    procs = []
    for i, log in enumerate(logs):
        with open(log, "wb") as err:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(cache), str(tmp_path / f"out{i}.npz")],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
            )
    for p, log in zip(procs, logs):
        assert p.stdout.readline().strip() == "READY", log.read_text()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p, log in zip(procs, logs):
        out, _ = p.communicate(timeout=600)  # stdout: one line at the end
        assert p.returncode == 0, log.read_text()
        results.append(json.loads(out.strip().splitlines()[-1]))
    computed = sorted(r["computed"] for r in results)
    assert computed == [0, N], computed  # one extracted every image; the other waited and reused them
    a, b = (np.load(tmp_path / f"out{i}.npz") for i in range(2))
    for name in ("features.3", "features.10"):
        assert a[name].shape[0] == N and np.isfinite(a[name]).all()
        np.testing.assert_array_equal(a[name], b[name])
    # the same as one process alone, in a fresh store
    ds = load_dataset(DataSpec(source="sample:clothing", max_images=N), thumbnails=False)
    spec = ExtractSpec(
        model="mobilenet_v2", weights="none", layers=("features.3", "features.10"), batch_size=8, precision="fp32"
    )
    alone = extract_features(ds, spec, cache=FeatureCache(tmp_path / "alone"))
    for name in ("features.3", "features.10"):
        np.testing.assert_allclose(a[name], alone.features[name], rtol=1e-5, atol=1e-5)
    assert not list((cache / "partial").glob("*/*.npy"))  # nothing left half-written


def test_blank_rows_are_nan_and_a_lost_record_is_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    ds0 = load_dataset(DataSpec(source="sample:digits", max_images=24), thumbnails=False)
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    for i, item in enumerate(ds0.items[:20]):
        (folder / ("a" if i % 2 else "b") / f"{i}.png").write_bytes(
            Path(item.path).read_bytes() if item.path else item.data
        )
    good = (folder / "a" / "1.png").read_bytes()
    (folder / "a" / "broken.png").write_bytes(good[: len(good) // 2])  # a valid header, a truncated body
    ds = load_dataset(DataSpec(source=str(folder)), thumbnails=False)
    spec = ExtractSpec(model="mobilenet_v2", weights="none", layers=("features.3",))
    cache = FeatureCache(tmp_path / "c")
    run = extract_features(ds, spec, cache=cache)
    found = unreadable_images(cache, ds, 64_000_000)
    assert len(found) == 1 and run.unreadable == found
    row = next(iter(found))
    feats = run.features["features.3"]
    assert np.isnan(feats[row]).all() and np.isfinite(np.delete(feats, row, axis=0)).all()
    for p in (tmp_path / "c" / "results").rglob("*.npz"):
        p.unlink()  # the record is lost; the features stay
    time.sleep(0.01)
    again = extract_features(ds, spec, cache=cache)
    assert again.computed == 0
    assert set(unreadable_images(cache, ds, 64_000_000)) == {row}  # rebuilt from the NaN row
    assert set(again.unreadable) == {row}  # and the run, which compare() leaves them out by, knows it
