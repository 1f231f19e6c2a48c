"""The shape of taxi/'s imports: no module imports itself back through others, and none imports
Prefect (taxi/ is plain Python; flows/ wires it into Prefect).

Every import counts, at module level or inside a function: an import deferred to a function
hides a circle from Python at load time, not from the reader. The graph is read from the
source with `ast`, without importing anything."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import ROOT

PACKAGE = ROOT / "taxi"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported(path: Path, module: str) -> set[str]:
    """Every module `module` names in an import statement, anywhere in it."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package this module is in (or is)
                package = module.split(".")
                base = package[: len(package) - node.level + (1 if is_package else 0)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            names.add(origin)
            # `from package import submodule` imports the submodule too.
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(path, name) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    known = set(graph)
    edges = {name: sorted((targets & known) - {name}) for name, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in edges[name]:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == name:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return groups


def test_the_graph_is_read_from_every_module():
    graph = _graph()
    assert {"taxi", "taxi.tlc", "taxi.sources", "taxi.errors", "taxi.storage.objects"} <= set(graph)
    assert "taxi.errors" in graph["taxi.tlc"]


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_taxi():
    assert _cycles(_graph()) == []


def test_taxi_never_imports_prefect():
    importers: dict[str, list[str]] = {}
    for name, imported in _graph().items():
        prefect = sorted(n for n in imported if n.split(".")[0] == "prefect")
        if prefect:
            importers[name] = prefect
    assert importers == {}
