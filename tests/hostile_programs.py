"""Hostile `.pt2` archives, one per route by which torch.export.load runs an archive's code, built from
an honest program; each writes a marker file if its code runs (tests/networks/test_safe_program.py,
tests/ui/test_link_confirmation.py)."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import torch


class Runs:
    """Unpickling this writes the marker: what a crafted archive's pickle would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3)
        )
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) * self.scale


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of the archive `src` with entries replaced, added (bytes) or removed (None), by their
    name inside the archive's folder."""
    with zipfile.ZipFile(src) as zin:
        prefix = next(n for n in zin.namelist() if n.endswith("archive_format"))[: -len("archive_format")]
        entries = {n[len(prefix) :]: zin.read(n) for n in zin.namelist()}
    for name, data in change.items():
        if data is None:
            entries.pop(name, None)
        else:
            entries[name] = data
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name, data in entries.items():
            zout.writestr(prefix + name, data)
    return dst


def read(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/" + name)))


def saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def few_images(folder: Path) -> Path:
    sample = Path(__file__).parents[1] / "explorer" / "samples" / "clothing" / "hat"
    out = folder / "images"
    out.mkdir(exist_ok=True)
    for p in sorted(sample.glob("*.jpg"))[:3]:
        shutil.copyfile(p, out / p.name)
    return out


ROUTES = ("weights", "constants", "opaque", "sample_inputs", "forward_arg_names")


def honest_program(path: Path) -> Path:
    """A small exported program (dynamic batch), saved by torch.export.save."""
    program = torch.export.export(
        Net().eval(), (torch.zeros(2, 3, 64, 64),), dynamic_shapes=({0: torch.export.Dim("b")},)
    )
    torch.export.save(program, str(path))
    return path


def hostile(route: str, honest: Path, folder: Path, marker: Path) -> Path:
    """A copy of `honest` that runs code writing `marker` by `route` (one of ROUTES) under torch.export.load."""
    dst = folder / f"{route}.pt2"
    if route in ("weights", "constants", "opaque"):
        kind = "weights" if route == "weights" else "constants"
        config = json.loads(read(honest, f"data/{kind}/model_{kind}_config.json"))
        name = {"weights": "weight_0", "constants": "tensor_0", "opaque": "opaque_obj_0"}[route]
        payload = pickle.dumps(Runs(marker)) if route == "opaque" else saved(Runs(marker))
        entry = {"path_name": name, "is_param": False, "use_pickle": True, "tensor_meta": None}
        if route == "weights":
            first = next(iter(config["config"]))
            config["config"][first] = {**config["config"][first], "use_pickle": True}
        else:
            config["config"]["evil"] = entry
        return rewrite(
            honest,
            dst,
            {f"data/{kind}/model_{kind}_config.json": json.dumps(config).encode(), f"data/{kind}/{name}": payload},
        )
    if route == "sample_inputs":  # weights_only refuses it; torch then loads it with weights_only=False
        return rewrite(honest, dst, {"data/sample_inputs/model.pt": saved(((Runs(marker),), {}))})
    program = json.loads(read(honest, "models/model.json"))
    code = f"x=exec(\"open({str(marker)!r}, 'w').write('ran')\")"  # pasted into `def forward(self, ...)`

    def patch(o: object) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "forward_arg_names" and v:
                    o[k] = [code]
                else:
                    patch(v)
        elif isinstance(o, list):
            for v in o:
                patch(v)

    patch(program)
    return rewrite(honest, dst, {"models/model.json": json.dumps(program).encode()})
