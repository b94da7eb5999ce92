"""Hostile inputs for every reader of a stranger's bytes: well-formed seeds of each kind a visitor can
upload (a WebDataset shard, a zip of class folders, a parquet file, loose images), and hypothesis
strategies that damage them the ways a fuzzer and an attacker do. Shared by the suite's short fuzz
(tests/data/test_hostile_inputs.py) and the long campaign (bench/fuzz_readers.py)."""

from __future__ import annotations

import io
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SAMPLE = Path(__file__).parents[2] / "explorer" / "samples" / "clothing"
KINDS = ("shard", "zip", "parquet", "image")
DEADLINE_S = 20.0  # one input's listing and checks; a hang is a failure, not a slow test


def _photos(n: int = 4) -> list[tuple[str, str, bytes]]:
    """(class, file name, bytes) of a few of the bundled sample's photos, two classes."""
    out = []
    for cls in ("hat", "dress"):
        for p in sorted((SAMPLE / cls).glob("*.jpg"))[: n // 2]:
            out.append((cls, p.name, p.read_bytes()))
    return out


def seed(kind: str) -> bytes:
    """A well-formed upload of `kind`."""
    photos = _photos()
    buf = io.BytesIO()
    if kind == "shard":
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for i, (cls, _, data) in enumerate(photos):
                for ext, payload in (("jpg", data), ("cls", cls.encode())):
                    info = tarfile.TarInfo(f"s{i:04d}.{ext}")
                    info.size = len(payload)
                    tf.addfile(info, io.BytesIO(payload))
    elif kind == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for cls, name, data in photos:
                zf.writestr(f"{cls}/{name}", data)
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"image": [{"bytes": d, "path": n} for _, n, d in photos], "label": [c for c, _, _ in photos]})
        pq.write_table(table, buf, row_group_size=2)
    else:
        return photos[0][2]
    return buf.getvalue()


_INTERESTING = [b"\x00", b"\xff" * 4, b"0 ", b"1 ", b"99999999999", b"-1", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
                b"PAR1", b"PK\x03\x04", b"\xff\xd8\xff", b"\x00" * 16]  # fmt: skip


@st.composite
def damaged(draw: st.DrawFn, raw: bytes) -> bytes:
    """`raw` damaged one to four times: bytes flipped, a range overwritten with an interesting value
    (lengths of zero or huge, magic numbers), bytes inserted, or the file cut short."""
    out = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        how = draw(st.sampled_from(["flip", "value", "insert", "cut", "tail"]))
        if how == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "value":
            value = draw(st.sampled_from(_INTERESTING) | st.binary(min_size=1, max_size=8))
            out[at : at + len(value)] = value
        elif how == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif how == "cut":
            del out[at:]
        else:  # the footer or directory at the end, where parquet and zip keep their metadata
            at = max(0, len(out) - draw(st.integers(1, 64)))
            out[at] = draw(st.integers(0, 255))
    return bytes(out)


def write(kind: str, raw: bytes, folder: Path) -> Path:
    """The upload as the dashboard writes it: one file under its kind's suffix, or a folder of one image."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        (folder / "images").mkdir(exist_ok=True)
        (folder / "images" / "a.jpg").write_bytes(raw)
        return folder / "images"
    path = folder / f"dataset.{'tar' if kind == 'shard' else kind}"
    path.write_bytes(raw)
    return path


def load_within_deadline(path: Path, limits: Any) -> tuple[str, str]:
    """`explorer.load(path)` with `limits`, in a thread given DEADLINE_S: ("listed", n images),
    ("refused", the sentence) for a bad-input error (a ValueError), or ("hung" | "raised", what)."""
    import explorer

    outcome: list[tuple[str, str]] = []

    def run() -> None:
        try:
            ds = explorer.load(str(path), limits=limits, progress=False)
            outcome.append(("listed", str(len(ds))))
            ds.close()
        except ValueError as exc:
            outcome.append(("refused", str(exc)))
        except BaseException as exc:  # noqa: BLE001  anything else is what the fuzz looks for
            import traceback

            where = traceback.extract_tb(exc.__traceback__)[-1]
            outcome.append(("raised", f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(DEADLINE_S)
    if t.is_alive():
        return ("hung", f"still running after {DEADLINE_S:.0f} s")
    return outcome[0]


def checksum(block: bytearray) -> None:
    """Make a tar header's checksum right again (after a field was rewritten)."""
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    """A tar written by tarfile in any format, then damaged the ways a hostile writer would: a
    header field or a pax record rewritten (the checksum made right again), bytes flipped, or cut."""
    fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    n = draw(st.integers(1, 4))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for i in range(n):
            long = draw(st.booleans()) and fmt != tarfile.USTAR_FORMAT
            info = tarfile.TarInfo(("d/" * 60 if long else "") + f"s{i}.jpg")
            data = b"j" * draw(st.integers(0, 1300))
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(1, 3))):
        if len(raw) < 512:
            break
        how = draw(st.sampled_from(["field", "pax", "flip", "cut", "type"]))
        block = draw(st.integers(0, max(0, len(raw) // 512 - 1))) * 512
        head = bytearray(raw[block : block + 512])
        if how == "field":  # a size, mode or name rewritten, checksum fixed
            start, width = draw(st.sampled_from([(124, 12), (0, 100), (345, 155), (100, 8)]))
            head[start : start + width] = draw(st.binary(min_size=width, max_size=width))
            checksum(head)
        elif how == "type":
            head[156:157] = draw(st.sampled_from([b"x", b"g", b"L", b"K", b"S", b"M", b"V", b"7", b"5", b"Z", b"\0"]))
            checksum(head)
        elif how == "pax":  # a pax record of any declared length, in the block after a header
            record = draw(
                st.sampled_from(
                    [
                        b"0 ",
                        b"1 ",
                        b"9 ",
                        b"99999999 ",
                        b"-5 ",
                        b"30 path=",
                        b"12 size=-9\n",
                        b"20 size=99999999\n",
                        b"11 size=x\n",
                        b"13 path=a/..\n",
                    ]
                )
            )
            record += draw(st.binary(max_size=30))
            body = block + 512
            raw[body : body + len(record)] = record
        elif how == "flip":
            at = draw(st.integers(0, len(raw) - 1))
            raw[at] = draw(st.integers(0, 255))
            continue
        else:
            del raw[draw(st.integers(0, len(raw))) :]
            continue
        raw[block : block + 512] = head
    return bytes(raw)
