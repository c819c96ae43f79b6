"""The package's shape: every module imports, no import circle (module-level or inside functions), no source
file over 400 lines."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("coda_jax", "sims", "kernels")
MAX_LINES = 400
PENDING: dict = {"cycles": [], "long": set()}     # known exceptions (none now)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours a dotted import name lands in (its longest known prefix), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports anywhere in its file (top level or inside a function), read
    with ``ast``; ``from pkg import mod`` counts as importing ``pkg.mod``."""
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
            else:
                continue
            deps |= {t for t in map(_owner, targets) if t}
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_import_circle():
    found = [c for c in cycles(import_graph()) if c not in PENDING["cycles"]]
    assert not found, f"import circles: {[sorted(c) for c in found]}"


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= PENDING["long"], f"files over {MAX_LINES} lines: {long}"


def test_the_cloud_stage_sits_below_the_device_stage():
    """Data flows one way: the device code reads the cloud's output type but never imports the cloud stage;
    the models (and their losses) import neither."""
    graph = import_graph()
    assert "coda_jax.cloud.output" in graph["coda_jax.device.chunk"]
    for name, deps in graph.items():
        if name.startswith("coda_jax.device"):
            assert not {d for d in deps if d.startswith("coda_jax.cloud") and d != "coda_jax.cloud.output"}, name
        if name.startswith("coda_jax.models"):
            assert not {d for d in deps if d.startswith(("coda_jax.cloud", "coda_jax.device"))}, name
