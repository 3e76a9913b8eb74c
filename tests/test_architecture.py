"""The layer rules of ARCHITECTURE.md. Textual is imported only in screens/, widgets/ and
app/tui.py; the engine's packages import only from the layers below their own (backup sets
below schema diff, schema diff below checks and rollback types...); and no engine module is
part of an import circle. The import-linter contracts live in pyproject.toml; this runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Textual only in screens/, widgets/ and app/tui.py KEPT" in result.stdout
    assert "Engine layers: arrows only point down KEPT" in result.stdout
    assert "2 kept, 0 broken" in result.stdout


def _circles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start) & modules)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    imported = graph.find_modules_directly_imported_by(nxt) & modules
                    work.append((nxt, iter(sorted(imported))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_engine_module_is_part_of_an_import_circle() -> None:
    """A circle (imports inside functions count; ``if TYPE_CHECKING:`` ones never run) ties
    modules of different layers together, so neither can change or be tested alone."""
    graph = grimp.build_graph("app", exclude_type_checking_imports=True, cache_dir=None)
    assert _circles(graph, set(graph.modules)) == []


def test_stylesheet_is_found() -> None:
    from app.paths import stylesheet

    assert stylesheet().read_text().strip()
