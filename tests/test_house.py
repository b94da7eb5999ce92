"""The house rules the code keeps (docs/design.md): no import cycle between the stages, the
environment read only in config.py, and importing a module starts, deletes and reads nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "explorer"
# modules that write the environment for others, each for a reason (none reads it)
SETS_THE_ENVIRONMENT = {
    "explorer/process_setup.py": "numba's cache and threading layer, set before numba is imported",
    "explorer/ui/serve.py": "the launcher hands `--mode` to the server process through EXPLORER_MODE",
}


# The stages, lowest first: a module imports from its own stage or a lower one (docs/design.md).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "explorer",
            "explorer.config",
            "explorer.fsutil",
            "explorer.progress",
            "explorer.process_setup",
            "explorer.code_identity",
            "explorer.store",
        ),
    ),
    ("data", ("explorer.data",)),
    ("networks", ("explorer.networks",)),
    ("extraction", ("explorer.extraction",)),
    ("analysis", ("explorer.analysis",)),
    ("comparison", ("explorer.comparison", "explorer.record", "explorer.request", "explorer.run")),
    ("output", ("explorer.output",)),
    (
        "entry points",
        ("explorer.api", "explorer.cli", "explorer.__main__", "explorer.cutting", "explorer.embedding", "explorer.ui"),
    ),
]


def _stage(module: str) -> int:
    """The rank of `module`'s stage: the longest prefix of STAGES that names it or its package."""
    best = max(
        (
            (len(p), rank)
            for rank, (_, prefixes) in enumerate(STAGES)
            for p in prefixes
            if module == p or (module.startswith(p + ".") and p != "explorer")
        ),
        default=None,
    )
    assert best is not None, f"{module} is in no stage: add it to STAGES (and to docs/design.md)"
    return best[1]


def _modules(root: Path = PACKAGE) -> list[tuple[str, Path, ast.Module]]:
    out = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out.append((module.removesuffix(".__init__"), path, ast.parse(path.read_text())))
    return out


def _imports(module: str, path: Path, tree: ast.Module, known: set[str]) -> set[str]:
    """The modules of `known` that `module` imports, at its top or inside a function (`if
    TYPE_CHECKING:` left out): `from .x import y` is module x.y when that is a module, else x."""
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            head = (
                node.module or ""
                if node.level == 0
                else ".".join(base[: len(base) - node.level + 1] + [node.module or ""]).rstrip(".")
            )
            out |= {f"{head}.{a.name}" if f"{head}.{a.name}" in known else head for a in node.names}
    while any(m not in known and "." in m for m in out):  # `import explorer.data.items` names the module
        out = {m if m in known or "." not in m else m.rsplit(".", 1)[0] for m in out}
    return (out & known) - {module}


def _graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(root)
    known = {m for m, _, _ in modules}
    return {m: _imports(m, path, tree, known) for m, path, tree in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_modules() -> None:
    """Module by module, imports inside functions counted."""
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_from_a_lower_stage_to_a_higher_one() -> None:
    upward = [
        f"{a} ({STAGES[_stage(a)][0]}) imports {b} ({STAGES[_stage(b)][0]})"
        for a, targets in _graph().items()
        for b in sorted(targets)
        if _stage(b) > _stage(a)
    ]
    assert upward == []


def test_no_test_module_imports_another() -> None:
    """Shared fixtures and helpers live in tests/helpers.py, conftest.py or a module not named test_*."""
    tests = ROOT / "tests"
    graph = {m: targets for m, targets in _graph(tests).items()}
    found = [
        f"{a} imports {b}"
        for a, targets in graph.items()
        for b in sorted(targets)
        if b.rpartition(".")[2].startswith("test_")
    ]
    assert found == []


def test_only_config_reads_the_environment() -> None:
    found = []
    for _, path, tree in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel == "explorer/config.py":
            continue
        for node in ast.walk(tree):
            text = ast.unparse(node) if isinstance(node, (ast.Attribute, ast.Call)) else ""
            if text.startswith(("os.environ", "os.getenv")) and rel not in SETS_THE_ENVIRONMENT:
                found.append(f"{rel}:{node.lineno} {text[:60]}")
    assert found == []


IMPORT_EVERYTHING = """
import importlib, os, pathlib, sys, tempfile, threading
class Watched(dict):
    def __getitem__(self, k): sys.stderr.write(f"read {k}\\n"); return super().__getitem__(k)
    def get(self, k, d=None): sys.stderr.write(f"read {k}\\n"); return super().get(k, d)
    def __contains__(self, k): sys.stderr.write(f"read {k}\\n"); return super().__contains__(k)
tmp = pathlib.Path(tempfile.gettempdir())
before = set(tmp.iterdir())
threads = threading.active_count()
watched = Watched(os.environ)
os.environ = watched
for m in sys.argv[1:]:
    importlib.import_module(m)
os.environ = dict(watched)
print("threads", threading.active_count() - threads)
print("removed", len(before - set(tmp.iterdir())))
"""


def test_importing_a_module_starts_deletes_and_reads_nothing(tmp_path: Path) -> None:
    """Every module of the package imported in a fresh interpreter: no thread started, nothing
    deleted from the temp folder, no EXPLORER_ variable read (libraries read their own)."""
    modules = [m for m, path, _ in _modules() if not path.name.startswith("__main__") and m != "explorer.ui.page"]
    stale = tmp_path / "explorer-upload-old"  # what the dashboard's start deletes, if it ran at import
    stale.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
        "EXPLORER_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }
    got = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING, *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert got.returncode == 0, got.stderr[-3000:]
    read = sorted({line.split()[1] for line in got.stderr.splitlines() if line.startswith("read EXPLORER_")})
    assert read == []
    assert "threads 0" in got.stdout and "removed 0" in got.stdout, got.stdout
    assert stale.exists()


def test_the_code_is_formatted_one_way() -> None:
    """`ruff format` (pyproject.toml's settings) leaves every Python file as it is, and its skip
    marker marks tables only: a module-level list, dict, tuple or set."""
    marker = "# fmt" + ": skip"  # spelled in two so that this line is not one
    files = [str(p) for p in sorted(ROOT.glob("*.py"))] + [
        str(p) for d in ("explorer", "tests", "bench", "scripts") for p in sorted((ROOT / d).rglob("*.py"))
    ]
    got = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 0, got.stdout[-2000:] + got.stderr[-2000:]
    skips = []
    for path in files:
        tree = ast.parse(Path(path).read_text())
        tables = {
            n.end_lineno
            for n in tree.body
            if isinstance(n, (ast.Assign, ast.AnnAssign))
            and isinstance(n.value, (ast.List, ast.Dict, ast.Tuple, ast.Set))
        }
        lines = Path(path).read_text().splitlines()
        skips += [
            f"{path}:{i}" for i, line in enumerate(lines, 1) if line.rstrip().endswith(marker) and i not in tables
        ]
    assert skips == []


def test_one_run_path() -> None:
    """Only run.py reads a dataset or runs an analysis: the command line, the Python API and the
    dashboard call run.py (docs/design.md, "One request, three doors"), none wires its own."""
    wired = {"load_dataset", "load", "compare", "analyse", "list_on_cluster"}
    owners = {
        "load_dataset": "explorer.data",
        "load": "explorer.data.in_memory",
        "compare": "explorer.comparison",
        "analyse": "explorer.comparison",
        "list_on_cluster": "explorer.data",
    }
    found = []
    for module, path, tree in _modules():
        if module in ("explorer.run", "explorer.extraction.ray_backend") or module.startswith(
            ("explorer.data.", "explorer.comparison")
        ):
            continue  # the run path itself, the engine's listing on Ray, and what they call
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                base = ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""
                if name in wired and (
                    name not in ("compare", "analyse", "load") or base in ("comparison", "in_memory")
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.func)} ({owners[name]})")
    assert found == []
