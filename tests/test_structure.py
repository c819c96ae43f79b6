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


# ----------------------------------------------------------------------------- floors and parameters

FLOORS = (   # a module imports only modules on its own floor or below (data flows one way, see ARCHITECTURE.md)
    (0, ("kernels", "coda_jax.config", "coda_jax.config_check", "coda_jax.config_io", "coda_jax.progress",
         "coda_jax.config_sizes", "coda_jax.timing", "coda_jax.resources", "coda_jax.results_io",
         "coda_jax.registry", "coda_jax.version", "coda_jax.provenance", "coda_jax.host")),
    (1, ("coda_jax.data", "coda_jax.models", "coda_jax.evaluate")),
    (2, ("coda_jax.cloud",)),
    (3, ("coda_jax.device",)),
    (4, ("coda_jax.overhead", "coda_jax.planted", "coda_jax.results", "coda_jax.methods", "coda_jax.config_points")),
    (5, ("coda_jax.simulate",)),
    (6, ("coda_jax",)),
    (7, ("sims",)),
)
MAX_PARAMETERS = 6


def floor(module: str) -> int:
    """The floor of a module: that of the longest room name it starts with."""
    best, level = -1, None
    for n, rooms in FLOORS:
        for room in rooms:
            if (module == room or module.startswith(room + ".")) and len(room) > best:
                best, level = len(room), n
    assert level is not None, f"{module} is on no floor of FLOORS"
    return level


def test_no_import_runs_back_up():
    up = sorted(f"{name} (floor {floor(name)}) imports {dep} (floor {floor(dep)})"
                for name, deps in import_graph().items() for dep in deps if floor(dep) > floor(name))
    assert not up, "imports that run back up:\n" + "\n".join(up)


def test_the_floor_check_sees_an_upward_import():
    assert floor("coda_jax.device.stage") == 3 and floor("coda_jax.cloud.stage") == 2
    assert floor("coda_jax.simulate") > floor("coda_jax.device.engine") > floor("coda_jax.models.lr")


def parameter_counts(tree: ast.AST) -> dict[str, int]:
    """``qualified name -> parameters`` of every function and lambda in a parsed file (``self`` / ``cls`` of
    a method not counted; ``*args`` and ``**kwargs`` count one each)."""
    out: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = child.args
                names = [p.arg for p in a.posonlyargs + a.args]
                n = len(names) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
                n -= bool(names) and names[0] in ("self", "cls") and isinstance(node, ast.ClassDef)
                name = f"{prefix}{getattr(child, 'name', 'lambda')}@{child.lineno}"
                out[name] = n
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def test_no_function_in_the_package_takes_more_than_6_parameters():
    """Config constructors aside (dataclasses: no hand-written ``__init__``), a function that needs more takes
    the struct that holds them (a hand-off value, a spec, the config)."""
    over = {f"{path.relative_to(REPO)}:{name}": n for mod, path in MODULES.items() if mod.startswith("coda_jax")
            for name, n in parameter_counts(ast.parse(path.read_text())).items() if n > MAX_PARAMETERS}
    assert not over, f"functions over {MAX_PARAMETERS} parameters: {over}"


def test_the_parameter_count_sees_every_kind_of_parameter():
    src = ("def f(a, b, /, c, *d, e, **g): pass\n"
           "class K:\n    def m(self, a, b): return lambda x, y=1: x\n")
    got = parameter_counts(ast.parse(src))
    assert got == {"f@1": 6, "K.m@3": 2, "K.m@3.lambda@3": 2}


BUILT_IN_METHODS = ("global", "local", "local+random", "local+coarse", "coda", "mpda")


def test_nothing_outside_the_method_registry_compares_a_method_name():
    """What differs between methods is data their registry entry carries (coda_jax/device/methods.py): no
    ``==`` / ``in`` against a built-in method's name anywhere else in the package."""
    found = []
    for mod, path in MODULES.items():
        if not mod.startswith("coda_jax") or mod == "coda_jax.device.methods":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = [c.value for c in [node.left, *node.comparators]
                         if isinstance(c, ast.Constant) and c.value in BUILT_IN_METHODS]
                if names:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} compares {names[0]!r}")
    assert not found, found
