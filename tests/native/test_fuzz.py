"""A bounded, seeded run of the native road's mutation fuzzer (tests/native/fuzzing.py).

A few hundred mutants of real and synthetic files with planted PHI: the native road gives
the result of clean_instance with the road off exactly, never writes what the raw-byte
engine declines, releases no planted PHI whose element is intact, and the scanner's rows
stay inside their window. Under .ci/sanitize the same run is an ASan + UBSan check of
the core's scanner, native road and term search on hostile bytes.
"""

from __future__ import annotations

import random

import pytest

from tests.native import fuzzing

# Small seeds keep the run fast; between them they cover both encodings, sequences,
# private blocks, compressed and RLE pixels and an SR tree.
SEEDS = (
    "CT_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "rtplan.dcm",
    "reportsi.dcm",
    "nested_priv_SQ.dcm",
    "SC_rgb_small_odd.dcm",
)


def _pool() -> list[tuple[str, bytes]]:
    pool = [s for s in fuzzing.seeds() if s[0] in SEEDS or s[0].startswith("synthetic")]
    assert len(pool) >= 8, [n for n, _ in pool]
    return pool


def test_mutants_keep_the_roads_equal() -> None:
    stats = fuzzing.run(
        seed=20261206,
        count=300,
        seconds=None,
        out_dir=None,
        policies=("default", "safe-harbor"),
        pool=_pool(),
    )
    assert stats.inputs == 300
    assert not stats.findings, stats.findings[:10]
    # The run means something only if mutants reach the engines and the native road.
    assert stats.outcomes["written/raw"] >= 30, stats.outcomes
    assert stats.native >= 10, stats.native


def test_every_mutator_changes_its_input() -> None:
    rng = random.Random(5)
    pool = _pool()
    for fn, _ in fuzzing.MUTATORS:
        changed = sum(fn(rng, d, pool) != d for _, d in pool)
        assert changed >= len(pool) // 2, fn.__name__


def test_deep_nesting_is_refused_not_recursed() -> None:
    # 1000 levels: the scanner stops at its depth limit with a reason, on both encodings.
    from medveil._core import scan_elements
    from medveil.engine.raw import _SQ_TAGS

    for implicit in (False, True):
        for undefined in (False, True):
            data = fuzzing.nested_sequence(1000, implicit, undefined)
            _, _, error = scan_elements(data, 0, len(data), implicit, _SQ_TAGS)
            assert error == "sequences nested too deep"


def test_swallowing_mutants_release_no_planted_phi(monkeypatch: pytest.MonkeyPatch) -> None:
    # m_swallow grows one value's length to end where a later sibling ends (often as UN):
    # the elements between, planted names among them, become bytes of that value. The
    # strict check (UN text values) and the post-check (names in binary values, a UN one
    # among them) must keep every such name out. Each alone suffices here; without both,
    # this run released planted names from 45 of its 200 mutants.
    monkeypatch.setattr(fuzzing, "MUTATORS", [(fuzzing.m_swallow, 1)])
    stats = fuzzing.run(
        seed=5, count=200, seconds=None, out_dir=None, policies=("default",), pool=None
    )
    assert stats.inputs == 200
    assert not stats.findings, stats.findings[:10]
    assert stats.outcomes["written/raw"] + stats.outcomes["written/dataset"] >= 20, stats.outcomes
