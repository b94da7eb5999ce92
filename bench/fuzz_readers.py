"""The long fuzz campaign over every reader of a stranger's bytes (not a test; the suite runs the short
one): WebDataset shards, zips, parquet files and images damaged at random (tests/data/hostile.py)
through `explorer.load` with the demo's limits, and hostile tar archives through the header reader
against tarfile (the strategy tests/data/test_tar_headers.py fuzzes with). Prints, per kind, how many inputs were
listed, refused in one sentence, hung or raised anything else, the slowest input and the peak RSS.

Usage: .venv/bin/python bench/fuzz_readers.py --examples 2500 [--out docs/fuzz_readers.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import re
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from explorer.config import DEMO_LIMITS  # noqa: E402
from explorer.data import tar_headers  # noqa: E402
from tests.data import hostile  # noqa: E402
from tests.data.hostile import archives  # noqa: E402


def _campaign(kind: str, examples: int, work: Path) -> dict:
    seed = hostile.seed(kind)
    tally: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    bad: list[str] = []
    slowest = [0.0]
    count = [0]

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data: st.DataObject) -> None:
        raw = data.draw(hostile.damaged(seed))
        count[0] += 1
        t0 = time.perf_counter()
        state, what = hostile.load_within_deadline(hostile.write(kind, raw, work / f"{kind}-{count[0]}"), DEMO_LIMITS)
        slowest[0] = max(slowest[0], time.perf_counter() - t0)
        tally[state] += 1
        if state == "refused":
            reasons[re.sub(r"\S*/\S*|'[^']*'|\d+", "_", what)[:70]] += 1
        elif state != "listed":
            bad.append(f"{state}: {what[:200]}")

    t0 = time.perf_counter()
    one()
    return {
        "kind": kind,
        "inputs": count[0],
        **tally,
        "seconds": round(time.perf_counter() - t0, 1),
        "slowest_s": round(slowest[0], 3),
        "top_refusals": reasons.most_common(5),
        "failures": bad[:20],
    }


def _tar_campaign(examples: int, work: Path) -> dict:
    tally: collections.Counter[str] = collections.Counter()
    bad: list[str] = []
    slowest = [0.0]

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(archives())
    def one(raw: bytes) -> None:
        path = work / "fuzz.tar"
        path.write_bytes(raw)
        t0 = time.perf_counter()
        try:
            got = tar_headers.members(str(path))
            tally["listed as tarfile" if got == tar_headers._by_tarfile(str(path)) else "DIFFERS"] += 1
        except tar_headers.MalformedTar:
            tally["refused (malformed)"] += 1
        except tarfile.ReadError:
            tally["refused (tarfile's verdict)"] += 1
        except Exception as exc:  # noqa: BLE001
            bad.append(f"{type(exc).__name__}: {exc}"[:200])
        slowest[0] = max(slowest[0], time.perf_counter() - t0)

    t0 = time.perf_counter()
    one()
    return {
        "kind": "tar headers vs tarfile",
        "inputs": sum(tally.values()) + len(bad),
        **tally,
        "seconds": round(time.perf_counter() - t0, 1),
        "slowest_s": round(slowest[0], 4),
        "failures": bad[:20],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2500, help="inputs per kind")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="explorer-fuzz-") as tmp:
        for kind in hostile.KINDS:
            rows.append(_campaign(kind, args.examples, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
        rows.append(_tar_campaign(args.examples * 4, Path(tmp)))
        print(json.dumps(rows[-1]), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB; {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    if args.out:
        args.out.write_text(
            json.dumps({"rows": rows, "peak_rss_mb": round(peak), "machine": platform.platform()}, indent=1)
        )


if __name__ == "__main__":
    main()
