"""The start-up table cache (medveil.policy.tablecache): what it returns is what a fresh
build returns, for every bundled preset and the pixel rule library, and a cache that does
not match its inputs (stale, torn, foreign) is never used."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest
from medveil.pixels import rules as pixel_rules
from medveil.policy import schema, tablecache
from medveil.policy.presets import PRESETS, load_policy
from medveil.policy.schema import CompiledPolicy, Policy
from pydicom._dicom_dict import DicomDictionary

from tests.policy.test_build_tables import _policies, _state


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh cache folder, written to (whatever PYTHONDONTWRITEBYTECODE says)."""
    folder = tmp_path / "__pycache__"
    monkeypatch.setattr(tablecache, "FOLDER", folder)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    yield folder


def _fresh(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> CompiledPolicy:
    """The policy compiled with no cache at all."""
    with monkeypatch.context() as m:
        m.setattr(tablecache, "cached", lambda name, parts, build: build())
        return CompiledPolicy(policy)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_compiles_the_same_from_the_cache(
    name: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = load_policy(name)
    fresh = _state(_fresh(policy, monkeypatch))
    written = _state(CompiledPolicy(policy))  # builds and writes the cache
    assert len(list(cache.glob("policy-*.pickle"))) == 1
    calls: list[str] = []
    build = schema._build_base_tables
    monkeypatch.setattr(schema, "_build_base_tables", lambda *a: calls.append("built") or build(*a))
    loaded = _state(CompiledPolicy(policy))  # read back from the file
    assert calls == []
    assert fresh == written == loaded


def test_more_policies_compile_the_same_from_the_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, policy in _policies().items():
        fresh = _state(_fresh(policy, monkeypatch))
        assert _state(CompiledPolicy(policy)) == fresh, name
        assert _state(CompiledPolicy(policy)) == fresh, name  # from the file this time
    assert len(list(cache.glob("policy-*.pickle"))) > 10  # one per option set and net


def _deep(rules: pixel_rules.RuleSet) -> list[object]:
    """Every rule and every condition node with all its fields (compiled regexes too)."""
    out: list[object] = []

    def walk(node: object) -> None:
        fields = {
            k: (v.pattern, v.flags) if hasattr(v, "pattern") else v
            for k, v in vars(node).items()
            if k != "_answers"
        }
        out.append((type(node).__name__, fields))
        for child in getattr(node, "children", ()):
            walk(child)
        if hasattr(node, "child"):
            walk(node.child)

    for rule in rules.rules:
        out.append(repr(rule))
        walk(rule.match)
    return out


def test_pixel_rule_library_is_the_same_from_the_cache(cache: Path) -> None:
    text = (
        resources.files("medveil").joinpath("data").joinpath(pixel_rules.DEFAULT_RULES)
    ).read_text(encoding="utf-8")
    fresh = pixel_rules.RuleSet.loads(text, "fresh")
    pixel_rules._default_rules.cache_clear()
    try:
        written = pixel_rules.RuleSet.default()
        pixel_rules._default_rules.cache_clear()
        loaded = pixel_rules.RuleSet.default()
        assert (cache / f"pixel-rules.{sys.implementation.cache_tag}.pickle").exists()
    finally:
        pixel_rules._default_rules.cache_clear()
    assert loaded is not written  # read back, not the same object
    assert fresh == written == loaded
    assert _deep(fresh) == _deep(written) == _deep(loaded)
    assert len(fresh) > 40


def _count_builds() -> tuple[list[int], Callable[[], dict[str, int]]]:
    """A build that counts its calls and returns the count."""
    calls: list[int] = []

    def build() -> dict[str, int]:
        calls.append(1)
        return {"value": len(calls)}

    return calls, build


def test_a_changed_input_is_never_served_from_the_cache(cache: Path) -> None:
    calls, build = _count_builds()
    assert tablecache.cached("t", [b"a"], build) == {"value": 1}
    assert tablecache.cached("t", [b"a"], build) == {"value": 1}
    assert len(calls) == 1
    # Another input (or the same bytes split otherwise): built again, then kept.
    assert tablecache.cached("t", [b"b"], build) == {"value": 2}
    assert tablecache.cached("t", [b"", b"b"], build) == {"value": 3}
    assert tablecache.cached("t", [b"", b"b"], build) == {"value": 3}
    assert len(calls) == 3


def test_a_changed_data_dictionary_is_never_served_from_the_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, build = _count_builds()
    tablecache.cached("t", [b"a"], build)
    tag = next(iter(DicomDictionary))
    vr, vm, name, retired, keyword = DicomDictionary[tag]
    # An application replaces an entry (same size): the key changes with it.
    monkeypatch.setitem(DicomDictionary, tag, ("UN", vm, name, retired, keyword))
    tablecache.cached("t", [b"a"], build)
    monkeypatch.undo()
    assert DicomDictionary[tag][0] == vr
    tablecache.cached("t", [b"a"], build)
    assert len(calls) == 3  # the last one rewrote what the changed dictionary had written


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:40],  # torn
        lambda data: data[:32] + b"not a pickle",  # the right key, unreadable
        lambda data: b"",  # empty
        lambda data: bytes(32) + data[32:],  # another key
    ],
)
def test_a_damaged_cache_is_built_again_and_rewritten(cache: Path, damage) -> None:
    _calls, build = _count_builds()
    tablecache.cached("t", [b"a"], build)
    (path,) = cache.glob("t.*.pickle")
    path.write_bytes(damage(path.read_bytes()))
    assert tablecache.cached("t", [b"a"], build) == {"value": 2}
    assert tablecache.cached("t", [b"a"], build) == {"value": 2}
    assert pickle.loads(path.read_bytes()[32:]) == {"value": 2}


def test_nothing_is_written_without_bytecode_or_where_it_cannot_be(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls, build = _count_builds()
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert tablecache.cached("t", [b"a"], build) == {"value": 1}
    assert not cache.exists()
    # A folder that cannot be made (a file stands in its way), as in a read-only install.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    (tmp_path / "blocked").write_text("a file")
    monkeypatch.setattr(tablecache, "FOLDER", tmp_path / "blocked" / "__pycache__")
    assert tablecache.cached("t", [b"a"], build) == {"value": 2}
    assert tablecache.cached("t", [b"a"], build) == {"value": 3}
    assert len(calls) == 3
