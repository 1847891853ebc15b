"""The package's import graph: no cycles, layers as pyproject's import-linter contracts say."""

from __future__ import annotations

import importlib
import pkgutil

import medveil
import pytest

grimp = pytest.importorskip("grimp")


def _graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("medveil", include_external_packages=False)
    # `from medveil import _core` is an edge to the root package (grimp cannot see the
    # extension); the root only loads lower modules, so those edges are not cycles.
    return {
        m: {i for i in graph.find_modules_directly_imported_by(m) if i != "medveil"}
        for m in graph.modules
        if m != "medveil"
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_inside_the_package() -> None:
    graph = _graph()
    assert "medveil.engine.dataset" in graph  # the graph really holds the package
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_top_of_the_package_is_a_handful_of_modules() -> None:
    top = [m.name for m in pkgutil.iter_modules(medveil.__path__) if not m.ispkg]
    assert len([m for m in top if not m.startswith("_")]) <= 5, top


def test_every_module_imports() -> None:
    for m in pkgutil.walk_packages(medveil.__path__, "medveil."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)


def test_public_names_of_the_readme_resolve() -> None:
    for name in ("Deidentifier", "Policy", "deidentify_archive", "load_secret", "mask_regions"):
        assert callable(getattr(medveil, name))
