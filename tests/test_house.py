"""The house rules the code keeps (docs/design.md): no import cycle between the stages, the
environment read only in config.py, and importing a module starts, deletes and reads nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "explorer"
# modules that write the environment for others, each for a reason (none reads it)
SETS_THE_ENVIRONMENT = {
    "explorer/process_setup.py": "numba's cache and threading layer, set before numba is imported",
    "explorer/ui/serve.py": "the launcher hands `--mode` to the server process through EXPLORER_MODE",
}


def _node(module: str) -> str:
    """A stage package (`networks/`) or a top-level module (`explorer.config`)."""
    parts = module.split(".")
    return parts[1] + "/" if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ".".join(parts[:2])


def _modules() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out.append((module.removesuffix(".__init__"), path, ast.parse(path.read_text())))
    return out


def _runtime_imports(module: str, path: Path, tree: ast.Module) -> set[str]:
    """The explorer modules `module` imports, at its top or in a function; `if TYPE_CHECKING:` left out."""
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}  # fmt: skip
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        head = base[: len(base) - node.level + 1]
        out |= {".".join([*head, node.module])} if node.module else {".".join([*head, a.name]) for a in node.names}
    return out


def test_no_import_cycle_between_the_stages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path, tree in _modules():
        for target in _runtime_imports(module, path, tree):
            a, b = _node(module), _node(target)
            if a != b and b != "explorer":
                edges[a].add(b)
    cycles = []
    for start in list(edges):
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == [], cycles[:5]


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
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "EXPLORER_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    got = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING, *modules], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert got.returncode == 0, got.stderr[-3000:]
    read = sorted({line.split()[1] for line in got.stderr.splitlines() if line.startswith("read EXPLORER_")})
    assert read == []
    assert "threads 0" in got.stdout and "removed 0" in got.stdout, got.stdout
    assert stale.exists()
