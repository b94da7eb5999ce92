"""Hostile `.pt2` archives, one per route by which torch.export.load runs an archive's code (weights and
constants marked use_pickle, an opaque object, sample inputs that fail weights_only, argument names
pasted into generated source): each writes a marker file when its code runs. torch's own loader runs
each (the control); `layers`, `compare` and `predict` (a cut folder whose program was swapped) refuse
each with exit 2 and one sentence, and no marker appears. Operators, shape expressions and compiled
code are refused by the check too, and the cuts this tool exports pass it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from explorer import cli
from explorer.networks.safe_program import UnsafeProgramError, check_archive, load_program
from tests import hostile_programs as hp


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hp.honest_program(tmp_path_factory.mktemp("pt2") / "net.pt2")


@pytest.mark.parametrize("route", hp.ROUTES)
def test_torchs_own_loader_runs_each_hostile_archive(tmp_path: Path, honest: Path, route: str) -> None:
    """The control: these archives are hostile: torch.export.load, then .module() or unflatten, runs their code."""
    marker = tmp_path / "ran"
    path = hp.hostile(route, honest, tmp_path, marker)
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
    assert (
        cli.main(
            [
                "cut",
                "--data",
                "sample:clothing",
                "--model",
                "mobilenet_v2",
                "--layer",
                "features.4",
                "--out",
                str(out),
                "-q",
                "--cache-dir",
                str(out.parent / "cache"),
            ]
        )
        == 0
    )
    return out


@pytest.mark.parametrize("route", hp.ROUTES)
def test_layers_compare_and_predict_refuse_each_and_nothing_runs(
    tmp_path: Path, honest: Path, cut_folder: Path, route: str, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    path = hp.hostile(route, honest, tmp_path, marker)
    swapped = tmp_path / "swapped-cut"
    shutil.copytree(cut_folder, swapped)
    shutil.copyfile(path, swapped / "cut.pt2")
    for argv in (
        ["layers", "--model", str(path)],
        [
            "compare",
            "--data",
            "sample:clothing",
            "--max-images",
            "20",
            "--model",
            str(path),
            "--projection",
            "pca",
            "--out",
            str(tmp_path / "out"),
            "-q",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        [
            "predict",
            "--model",
            str(swapped),
            "--data",
            str(hp.few_images(tmp_path)),
            "--out",
            str(tmp_path / "p.csv"),
            "-q",
        ],
    ):
        capsys.readouterr()
        assert cli.main(argv) == 2, argv[0]
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "refused" in err, (argv[0], err)
        assert not marker.exists(), f"{route}: {argv[0]} ran the archive's code"


@pytest.mark.parametrize(
    "change,why",
    [
        ({"models/model.json": ("torch.ops.aten.relu.default", "torch.os.system")}, "not one of torch's operators"),
        ({"models/model.json": ("Symbol('s", "__import__('os').system('true') or Symbol('s")}, "not plain arithmetic"),
        ({"data/aotinductor/model/model.so": b"\x7fELF"}, "compiled code"),
        ({"serialized_state_dict.pt": b"legacy"}, "compiled code"),
    ],
)
def test_operators_shape_expressions_and_compiled_code_are_refused(
    tmp_path: Path, honest: Path, change: dict, why: str
) -> None:
    name, value = next(iter(change.items()))
    if isinstance(value, tuple):
        text = hp.read(honest, name).decode()
        assert value[0] in text
        value = text.replace(value[0], value[1], 1).encode()
    path = hp.rewrite(honest, tmp_path / "bad.pt2", {name: value})
    with pytest.raises(UnsafeProgramError, match=why if why != "compiled code" else "does not"):
        check_archive(path)


def test_an_honest_program_and_an_exported_cut_load(honest: Path, cut_folder: Path) -> None:
    program = load_program(honest)
    x = torch.randn(3, 3, 64, 64)
    assert torch.allclose(program.module()(x), torch.export.load(str(honest)).module()(x))
    check_archive(cut_folder / "cut.pt2")  # what `cut` writes passes the check every reader makes
