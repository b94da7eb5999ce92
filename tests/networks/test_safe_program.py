"""Hostile `.pt2` archives, one per route by which torch.export.load runs an archive's code (weights and
constants marked use_pickle, an opaque object, sample inputs that fail weights_only, argument names
pasted into generated source): each writes a marker file when its code runs. torch's own loader runs
each (the control); `layers`, `compare` and `predict` (a cut folder whose program was swapped) refuse
each with exit 2 and one sentence, and no marker appears. Operators, shape expressions and compiled
code are refused by the check too, and the cuts this tool exports pass it."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from explorer import cli
from explorer.networks.safe_program import UnsafeProgramError, check_archive, load_program


class _Runs:
    """Unpickling this writes the marker: what a crafted archive's pickle would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) * self.scale


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "net.pt2"
    program = torch.export.export(_Net().eval(), (torch.zeros(2, 3, 64, 64),), dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, str(path))
    return path


def _rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of the archive `src` with entries replaced, added (bytes) or removed (None), by their
    name inside the archive's folder."""
    with zipfile.ZipFile(src) as zin:
        prefix = next(n for n in zin.namelist() if n.endswith("archive_format"))[: -len("archive_format")]
        entries = {n[len(prefix):]: zin.read(n) for n in zin.namelist()}  # fmt: skip
    for name, data in change.items():
        if data is None:
            entries.pop(name, None)
        else:
            entries[name] = data
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name, data in entries.items():
            zout.writestr(prefix + name, data)
    return dst


def _read(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/" + name)))


def _saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _few_images(folder: Path) -> Path:
    sample = Path(__file__).parents[2] / "explorer" / "samples" / "clothing" / "hat"
    out = folder / "images"
    out.mkdir(exist_ok=True)
    for p in sorted(sample.glob("*.jpg"))[:3]:
        shutil.copyfile(p, out / p.name)
    return out


ROUTES = ("weights", "constants", "opaque", "sample_inputs", "forward_arg_names")


def _hostile(route: str, honest: Path, folder: Path, marker: Path) -> Path:
    dst = folder / f"{route}.pt2"
    if route in ("weights", "constants", "opaque"):
        kind = "weights" if route == "weights" else "constants"
        config = json.loads(_read(honest, f"data/{kind}/model_{kind}_config.json"))
        name = {"weights": "weight_0", "constants": "tensor_0", "opaque": "opaque_obj_0"}[route]
        payload = pickle.dumps(_Runs(marker)) if route == "opaque" else _saved(_Runs(marker))
        entry = {"path_name": name, "is_param": False, "use_pickle": True, "tensor_meta": None}
        if route == "weights":
            first = next(iter(config["config"]))
            config["config"][first] = {**config["config"][first], "use_pickle": True}
        else:
            config["config"]["evil"] = entry
        return _rewrite(honest, dst, {f"data/{kind}/model_{kind}_config.json": json.dumps(config).encode(),
                                      f"data/{kind}/{name}": payload})  # fmt: skip
    if route == "sample_inputs":  # weights_only refuses it; torch then loads it with weights_only=False
        return _rewrite(honest, dst, {"data/sample_inputs/model.pt": _saved(((_Runs(marker),), {}))})
    program = json.loads(_read(honest, "models/model.json"))
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
    return _rewrite(honest, dst, {"models/model.json": json.dumps(program).encode()})


@pytest.mark.parametrize("route", ROUTES)
def test_torchs_own_loader_runs_each_hostile_archive(tmp_path: Path, honest: Path, route: str) -> None:
    """The control: these archives are hostile: torch.export.load, then .module() or unflatten, runs their code."""
    marker = tmp_path / "ran"
    path = _hostile(route, honest, tmp_path, marker)
    pasted = False
    for use in (lambda ep: ep.module(), torch.export.unflatten):  # what `compare` / `predict` and `layers` do with it
        try:
            use(torch.export.load(str(path)))
        except SyntaxError as exc:  # the archive's string was compiled as Python source
            pasted = pasted or "exec(" in (exc.text or "")
        except Exception:  # noqa: BLE001  the code has run by then, whatever fails after it
            pass
    if route == "forward_arg_names":  # the name reaches the source torch compiles (this payload then fails to parse)
        assert pasted or marker.exists(), "the argument name did not reach generated source"
    else:
        assert marker.exists(), f"{route}: the archive did not run its code under torch.export.load"


@pytest.fixture(scope="module")
def cut_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cut") / "cut"
    assert cli.main(["cut", "--data", "sample:clothing", "--model", "mobilenet_v2", "--layer",
                     "features.4", "--out", str(out), "-q", "--cache-dir", str(out.parent / "cache")]) == 0  # fmt: skip
    return out


@pytest.mark.parametrize("route", ROUTES)
def test_layers_compare_and_predict_refuse_each_and_nothing_runs(tmp_path: Path, honest: Path, cut_folder: Path, route: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    marker = tmp_path / "ran"
    path = _hostile(route, honest, tmp_path, marker)
    swapped = tmp_path / "swapped-cut"
    shutil.copytree(cut_folder, swapped)
    shutil.copyfile(path, swapped / "cut.pt2")
    for argv in (["layers", "--model", str(path)],
                 ["compare", "--data", "sample:clothing", "--max-images", "20", "--model", str(path), "--projection", "pca",
                  "--out", str(tmp_path / "out"), "-q", "--cache-dir", str(tmp_path / "cache")],
                 ["predict", "--model", str(swapped), "--data", str(_few_images(tmp_path)), "--out", str(tmp_path / "p.csv"),
                  "-q"]):  # fmt: skip
        capsys.readouterr()
        assert cli.main(argv) == 2, argv[0]
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "refused" in err, (argv[0], err)
        assert not marker.exists(), f"{route}: {argv[0]} ran the archive's code"


@pytest.mark.parametrize("change,why", [
    ({"models/model.json": ("torch.ops.aten.relu.default", "torch.os.system")}, "not one of torch's operators"),
    ({"models/model.json": ("Symbol('s", "__import__('os').system('true') or Symbol('s")}, "not plain arithmetic"),
    ({"data/aotinductor/model/model.so": b"\x7fELF"}, "compiled code"),
    ({"serialized_state_dict.pt": b"legacy"}, "compiled code"),
])  # fmt: skip
def test_operators_shape_expressions_and_compiled_code_are_refused(tmp_path: Path, honest: Path, change: dict, why: str) -> None:
    name, value = next(iter(change.items()))
    if isinstance(value, tuple):
        text = _read(honest, name).decode()
        assert value[0] in text
        value = text.replace(value[0], value[1], 1).encode()
    path = _rewrite(honest, tmp_path / "bad.pt2", {name: value})
    with pytest.raises(UnsafeProgramError, match=why if why != "compiled code" else "does not"):
        check_archive(path)


def test_an_honest_program_and_an_exported_cut_load(honest: Path, cut_folder: Path) -> None:
    program = load_program(honest)
    x = torch.randn(3, 3, 64, 64)
    assert torch.allclose(program.module()(x), torch.export.load(str(honest)).module()(x))
    check_archive(cut_folder / "cut.pt2")  # what `cut` writes passes the check every reader makes
