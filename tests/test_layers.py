"""The house keeps its shape: imports point one way and never go round in a circle.

Layers, top to bottom: ``app.py`` (the entry point and its wiring) -> ``bench`` -> ``ui`` ->
``train`` -> ``annotate`` -> ``runtime`` -> ``data``. A module may import its own layer and the
layers below it, never one above; ``data`` imports nothing of the project outside itself. Every
import counts: at the top of a file, inside a function, under ``TYPE_CHECKING``, and a module
named to ``importlib`` (``app.py``'s ``COMMANDS`` table, ``import_module("...")``). No file may
reach itself through a chain of imports of any length.

A failure prints the offending chain, each step with the file and line of its import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Rank of each room: a module may import modules of equal or lower rank.
LAYERS = {"data": 0, "runtime": 1, "annotate": 2, "train": 3, "ui": 4, "bench": 5, "app": 6}
ROOMS = tuple(name for name in LAYERS if name != "app")


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst}  ({self.file}:{self.line})"


def module_files() -> dict[str, Path]:
    """``{dotted module name: file}`` for every project module (tests and scripts excluded)."""
    out = {"app": REPO / "app.py"}
    for room in ROOMS:
        for path in sorted((REPO / room).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (its longest known prefix), or None for other packages."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported_names(module: str, path: Path, tree: ast.AST, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """Every module name imported by ``tree``, with its line (``from pkg import sub`` names the
    submodule ``pkg.sub`` when there is one, else ``pkg``)."""
    found: list[tuple[str, int]] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = parts[: len(parts) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.append((sub if sub in modules else mod, node.lineno))
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((arg.value, node.lineno))
        elif isinstance(node, ast.Dict) and _is_commands_table(node):
            for value in node.values:
                found.append((value.value.split(":")[0], value.lineno))
    return found


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))


def _is_commands_table(node: ast.Dict) -> bool:
    """A ``{"cmd": "module:function"}`` table such as ``app.py``'s ``COMMANDS``."""
    values = node.values
    return bool(values) and all(
        isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.count(":") == 1
        and v.value.split(":")[0].split(".")[0] in LAYERS for v in values)


def import_edges() -> list[Edge]:
    """One edge per (importer, imported) pair of project modules, at its first import."""
    modules = module_files()
    edges: dict[tuple[str, str], Edge] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = str(path.relative_to(REPO))
        for name, line in sorted(_imported_names(module, path, tree, modules), key=lambda t: t[1]):
            target = _resolve(name, modules)
            if target is not None and target != module:
                edges.setdefault((module, target), Edge(module, target, rel, line))
    return list(edges.values())


def room(module: str) -> str:
    return module.split(".")[0]


def test_every_project_file_is_walked():
    modules = module_files()
    assert "app" in modules and "data.store" in modules and "ui.app" in modules
    assert len(import_edges()) > 50  # the walk sees the imports (a broken walk would pass everything)


def test_imports_point_down_the_layers():
    wrong = [e for e in import_edges() if LAYERS[room(e.src)] < LAYERS[room(e.dst)]]
    message = "\n".join(f"{e}: {room(e.src)} may not import {room(e.dst)}" for e in wrong)
    assert not wrong, "imports against the layers (app -> bench -> ui -> train -> annotate -> runtime -> data):\n" + message


def test_data_imports_only_data():
    wrong = [e for e in import_edges() if room(e.src) == "data" and room(e.dst) != "data"]
    assert not wrong, "data imports a room above it:\n" + "\n".join(map(str, wrong))


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One concrete cycle per strongly connected group of modules (Tarjan, then a shortest loop)."""
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e.src, []).append(e)
        graph.setdefault(e.dst, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in graph[v]:
            if e.dst not in index:
                strongconnect(e.dst)
                low[v] = min(low[v], low[e.dst])
            elif e.dst in on_stack:
                low[v] = min(low[v], index[e.dst])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    cycles = []
    for group in groups:
        start = min(group)
        # Breadth-first inside the group from ``start`` back to ``start``.
        paths: dict[str, list[Edge]] = {start: []}
        frontier = [start]
        loop: list[Edge] | None = None
        while frontier and loop is None:
            nxt = []
            for v in frontier:
                for e in graph[v]:
                    if e.dst not in group:
                        continue
                    if e.dst == start:
                        loop = [*paths[v], e]
                        break
                    if e.dst not in paths:
                        paths[e.dst] = [*paths[v], e]
                        nxt.append(e.dst)
                if loop:
                    break
            frontier = nxt
        cycles.append(loop or [])
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(import_edges())
    message = "\n\n".join(
        " -> ".join([c[0].src, *(e.dst for e in c)]) + "\n" + "\n".join(f"  {e}" for e in c) for c in cycles)
    assert not cycles, "import cycles between project files:\n" + message


def test_the_cycle_finder_finds_long_cycles():
    chain = [Edge("a", "b", "a.py", 1), Edge("b", "c", "b.py", 1), Edge("c", "d", "c.py", 1),
             Edge("d", "a", "d.py", 1), Edge("x", "a", "x.py", 1)]
    (cycle,) = find_cycles(chain)
    assert [e.src for e in cycle] == ["a", "b", "c", "d"] and cycle[-1].dst == "a"
    assert find_cycles(chain[:3]) == []


def test_the_walk_sees_imports_inside_functions_and_importlib(tmp_path):
    source = (
        "import importlib\n"
        "COMMANDS = {'x': 'ui.cli:cmd_serve'}\n"
        "def f():\n"
        "    from train import jobs\n"
        "    importlib.import_module('bench.cli')\n"
    )
    tree = ast.parse(source)
    modules = module_files()
    names = {name for name, _ in _imported_names("data.fake", REPO / "data" / "fake.py", tree, modules)}
    assert {"ui.cli", "train.jobs", "bench.cli"} <= names


# Packages that ``python app.py --help`` must not load: imported where they are used, inside the
# function. Everything else (the standard library, numpy, cv2, yaml, the project's light modules)
# is imported at the top of the file, where a reader sees it.
HEAVY = {"torch", "torchvision", "ultralytics", "gradio", "segment_anything", "clip", "playwright", "onnx",
         "onnxruntime", "onnxslim", "scipy", "matplotlib", "pandas"}


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (module body, ``if``/``try`` blocks at top)."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    return out


def heavy_modules() -> set[str]:
    """Project modules whose import loads a heavy package, directly or through other project modules."""
    modules = module_files()
    direct: dict[str, set[str]] = {}
    heavy: set[str] = set()
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in _top_level_imports(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.module:
                names += [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in HEAVY:
                    heavy.add(module)
                target = _resolve(name, modules)
                if target and target != module:
                    deps.add(target)
        direct[module] = deps
    changed = True
    while changed:
        changed = False
        for module, deps in direct.items():
            if module not in heavy and deps & heavy:
                heavy.add(module)
                changed = True
    return heavy


def test_imports_sit_at_the_top_except_heavy_ones():
    modules = module_files()
    heavy = heavy_modules()
    wrong = []
    for module, path in modules.items():
        if module == "app":
            continue  # the entry point loads each room on demand (its COMMANDS table, ``wire``): --help stays instant
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.module:
                    subs = [f"{node.module}.{a.name}" for a in node.names]
                    names = [s for s in subs if s in modules] or names
                for name in names:
                    target = _resolve(name, modules)
                    ok = name.split(".")[0] in HEAVY if target is None else target in heavy
                    if not ok:
                        wrong.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not wrong, "imports inside functions that belong at the top of the file:\n" + "\n".join(sorted(set(wrong)))
