"""_core.pyi names exactly what the compiled extension exports, submodule by submodule."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import medveil
from medveil import _core

STUB = Path(medveil.__file__).with_name("_core.pyi")


def _public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def _stub_tree() -> dict[str, set[str]]:
    """Names per namespace: '' for the module itself, else the submodule's class."""
    tree = ast.parse(STUB.read_text())
    out: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[""].add(node.name)
            out[node.name] = {
                n.name if isinstance(n, (ast.FunctionDef, ast.ClassDef)) else n.target.id  # type: ignore[union-attr]
                for n in node.body
                if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
            }
        elif isinstance(node, ast.FunctionDef):
            out[""].add(node.name)
    return out


def test_stub_lists_every_submodule_and_function() -> None:
    stub = _stub_tree()
    runtime_top = {n for n in _public(_core) if isinstance(getattr(_core, n), types.ModuleType)} | {
        n for n in _public(_core) if inspect.isroutine(getattr(_core, n))
    }
    assert stub[""] == runtime_top
    for sub, names in stub.items():
        if sub:
            assert names == _public(getattr(_core, sub)), sub
