"""Cache keys follow the code: every stage's identity changes when the code of any module that
shapes its results changes, and stays when only words (docstrings, comments) change; and every
explorer module a stage's code imports is either hashed into a key or named as not numeric."""

from __future__ import annotations

import ast
import importlib.util

import pytest

from explorer import code_identity
from explorer.code_identity import NOT_NUMERIC, STAGES, identity_of, module_source

# the stages whose identities a stage's keys also carry (a layer's key holds decoding and
# extraction; every derived result holds its layer's key)
CARRIED = {"decode": (), "extract": ("decode",)} | {
    s: ("decode", "extract")
    for s in (
        "graph",
        "scores",
        "projection",
        "similarity",
        "logme",
        "scorers",
        "compression",
        "latency",
        "retrieval",
        "few_shot",
        "unseen",
        "intrinsic",
        "alignment",
    )
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_change_to_any_of_a_stages_modules_changes_its_identity(stage: str) -> None:
    base = identity_of(STAGES[stage])
    assert base == code_identity.stage_identity(stage)
    for name in STAGES[stage]:
        src = module_source(name)
        assert identity_of(STAGES[stage], {name: src + "\n_changed = 0\n"}) != base, name
        tree = ast.parse(src)
        constant = next(
            (
                n
                for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)
            ),
            None,
        )
        if constant is not None:  # a changed number, as a tuned constant would be
            lines = src.splitlines(keepends=True)
            line = lines[constant.lineno - 1]
            lines[constant.lineno - 1] = (
                line[: constant.col_offset] + repr(constant.value + 1) + line[constant.end_col_offset :]
            )
            assert identity_of(STAGES[stage], {name: "".join(lines)}) != base, f"{name}:{constant.lineno}"


def test_words_alone_keep_the_identity() -> None:
    name = "explorer.analysis.probe"
    src = module_source(name)
    reworded = src.replace('"""The linear probe', '"""The reworded linear probe', 1).replace("\n", "  # a comment\n", 3)
    assert reworded != src
    assert identity_of((name,), {name: reworded}) == identity_of((name,))


def _explorer_imports(name: str) -> set[str]:
    """The explorer modules `name` imports (at any depth in its code), as absolute names."""
    tree = ast.parse(module_source(name))
    package = name if importlib.util.find_spec(name).submodule_search_locations else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = (
                importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                if node.level
                else node.module
            )
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if importlib.util.find_spec(base) and _is_module(full) else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m == "explorer" or m.startswith("explorer.")}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_module_a_stage_imports_is_hashed_or_named_not_numeric(stage: str) -> None:
    allowed = set(STAGES[stage]) | set(NOT_NUMERIC) | {m for s in CARRIED[stage] for m in STAGES[s]}
    for name in STAGES[stage]:
        unlisted = _explorer_imports(name) - allowed
        assert not unlisted, f"{name} imports {sorted(unlisted)}: add it to STAGES[{stage!r}] or NOT_NUMERIC"


def test_every_listed_module_exists() -> None:
    for name in {m for mods in STAGES.values() for m in mods} | set(NOT_NUMERIC):
        assert _is_module(name), name
