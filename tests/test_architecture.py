"""The layer rules of docs/architecture.md, checked on the code: every ``import parnn...``
in src/parnn (module level, inside functions and under TYPE_CHECKING alike) goes down the
layers or stays in its package, the engines do not import each other, and no two packages
import each other (directly or round a longer circle)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import parnn

SOURCE = Path(parnn.__file__).parent

LAYERS: dict[str, int] = {
    "errors": 0,
    **dict.fromkeys(
        (
            "models",
            "data",
            "launch",
            "transport",
            "trace",
            "progress",
            "results",
            "outdir",
            "clock",
            "monitor",
        ),
        1,
    ),  # fmt: skip
    "partition": 2,
    "train": 2,
    "pipeline": 3,
    "data_parallel": 3,
    "jobs": 3,
    "plan": 4,
    "bench": 5,
    "cli": 6,
}
"""Each top-level module or package of parnn and its layer (docs/architecture.md)."""
ENGINES = {name for name, layer in LAYERS.items() if layer == 3}


def _module_name(path: Path) -> str:
    parts = ("parnn", *path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every parnn module -> the parnn modules it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[_module_name(path)] = {name for name in names if name.startswith("parnn.")}
    return {module: {name for name in names if name in found} for module, names in found.items()}


def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_the_layers_are_known() -> None:
    tops = {_top(module) for module in _imports()} - {"parnn", "__main__"}
    assert tops <= set(LAYERS), f"add {sorted(tops - set(LAYERS))} to docs/architecture.md"


def test_nothing_imports_a_layer_above_it_and_engines_do_not_import_each_other() -> None:
    wrong = []
    for module, imported in _imports().items():
        source = _top(module)
        if source not in LAYERS:  # parnn/__init__.py re-exports names lazily
            continue
        for name in imported:
            target = _top(name)
            if target == source or target not in LAYERS:
                continue
            if LAYERS[target] > LAYERS[source]:
                wrong.append(f"{module} imports {name}: a layer above it")
            elif source in ENGINES and target in ENGINES:
                wrong.append(f"{module} imports {name}: engines do not import each other")
    assert wrong == []


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_packages_import_each_other() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imported in _imports().items():
        for name in imported:
            if _top(name) != _top(module) and _top(module) in LAYERS and _top(name) in LAYERS:
                graph[_top(module)].add(_top(name))
    assert _circles(graph) == []


def test_no_modules_import_each_other() -> None:
    """A package's ``__init__`` re-exporting its own modules is not a circle; any other
    loop of imports is (bench/report.py and bench/studies/ once were one)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imported in _imports().items():
        for name in imported:
            inside = name.startswith(f"{module}.") or module.startswith(f"{name}.")
            if not inside:
                graph[module].add(name)
    assert _circles(graph) == []
