"""The shape of the package: no import cycle, no over-long module, a pure core.

Read from the source with ``ast`` (nothing is imported), so a failure names
the modules to look at. Each test carries a ``KNOWN`` set of today's offenders
that other work is removing; the test fails when anything else offends and
also when a known entry no longer does, so the lists only shrink: delete an
entry once its split has landed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "statesync"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

MODULE_LINES_MAX = 800

KNOWN_CYCLES: set[frozenset[str]] = set()

KNOWN_LONG: set[str] = set()

CORE_FORBIDDEN = frozenset({"trio", "zmq", "sqlite3", "time", "random", "asyncio", "socket", "threading"})


def _module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    modules: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported_names(module: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """(absolute module named by an import, the names taken from it) for each import."""
    is_package = path.name == "__init__.py"
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
            continue
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            keep = len(parts) - node.level + (1 if is_package else 0)
            base = ".".join([*parts[:keep], *([base] if base else [])])
        yield base, [alias.name for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (``from pkg import sub`` names ``pkg.sub``)."""
    files = _module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges: set[str] = set()
        for target, names in _imported_names(module, path):
            if not names:
                if target in files:
                    edges.add(target)
                continue
            subs = [f"{target}.{name}" for name in names if f"{target}.{name}" in files]
            edges.update(subs)
            if len(subs) < len(names) and target in files:
                edges.add(target)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: set[frozenset[str]] = set()
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def _cycle_path(graph: dict[str, set[str]], component: frozenset[str]) -> str:
    """One concrete loop through ``component``, for the failure message."""
    start = min(component)
    seen = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & component):
            if child == start:
                return " -> ".join([*seen[node], start])
            if child not in seen:
                seen[child] = [*seen[node], child]
                queue.append(child)
    return " <-> ".join(sorted(component))


def _line_counts() -> dict[str, int]:
    return {module: len(path.read_text().splitlines()) for module, path in _module_files().items()}


def _describe(component: frozenset[str]) -> str:
    return "{" + ", ".join(sorted(component)) + "}"


def test_no_import_cycle() -> None:
    graph = import_graph()
    found = cycles(graph)
    new = sorted(found - KNOWN_CYCLES, key=sorted)
    assert not new, "import cycles: " + "; ".join(_cycle_path(graph, c) for c in new)
    gone = sorted(KNOWN_CYCLES - found, key=sorted)
    assert not gone, "no longer cycles, delete from KNOWN_CYCLES: " + "; ".join(map(_describe, gone))


def test_no_module_over_the_line_limit() -> None:
    counts = _line_counts()
    long = {module for module, n in counts.items() if n > MODULE_LINES_MAX}
    new = sorted(long - KNOWN_LONG)
    assert not new, f"modules over {MODULE_LINES_MAX} lines: " + ", ".join(f"{m} ({counts[m]})" for m in new)
    gone = sorted(KNOWN_LONG - long)
    assert not gone, "no longer over the limit, delete from KNOWN_LONG: " + ", ".join(
        f"{m} ({counts.get(m, 'gone')})" for m in gone
    )


def test_core_imports_no_io_time_or_randomness() -> None:
    files = _module_files()
    offences = []
    for module, path in files.items():
        if module != f"{PACKAGE}.core" and not module.startswith(f"{PACKAGE}.core."):
            continue
        for target, _names in _imported_names(module, path):
            top = target.split(".")[0]
            if top in CORE_FORBIDDEN:
                offences.append(f"{module} imports {target}")
    assert not offences, "statesync.core must stay pure: " + "; ".join(offences)


def test_the_graph_sees_known_edges_and_type_checking_blocks() -> None:
    """The reader itself: relative and absolute imports resolve; TYPE_CHECKING imports are no edge."""
    graph = import_graph()
    assert "statesync.core._context" in graph["statesync.core._replica"] or any(
        "statesync.core._context" in graph[m] for m in graph["statesync.core._replica"]
    )
    assert "statesync.core._messages" in graph["statesync.core"]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import statesync.node\nimport statesync.core\n"
    )
    names = [n.names[0].name for n in _imports(tree) if isinstance(n, ast.Import)]
    assert names == ["statesync.core"]


def test_cycles_finds_a_loop_and_names_it() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == {frozenset({"a", "b", "c"})}
    assert _cycle_path(graph, frozenset({"a", "b", "c"})) == "a -> b -> c -> a"
    assert cycles({"a": {"b"}, "b": set()}) == set()
