"""Keyed pseudonyms: deterministic, sized, and a collision within a run is an error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.policy.keys import Keyed, PseudonymCollisionError

from .conftest import OTHER_SECRET, SECRET


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=40), st.integers(4, 26))
def test_same_value_same_pseudonym_other_secret_other(value, length) -> None:
    a, b = Keyed(SECRET), Keyed(SECRET)
    first = a.pseudonym("patient", value, length, "P")
    assert first == a.pseudonym("patient", value, length, "P")  # repeated (memoised) call
    assert first == b.pseudonym("patient", value, length, "P")  # a fresh process agrees
    assert len(first) == 1 + length and first.startswith("P")
    if value.strip():
        other = Keyed(OTHER_SECRET).pseudonym("patient", value, length, "P")
        assert other != first or length < 8  # 8+ base32 characters: 40 bits apart


def test_a_collision_within_a_run_is_an_error() -> None:
    keyed = Keyed(SECRET)
    # One base32 character: 32 pseudonyms for 33 distinct values must collide.
    with pytest.raises(PseudonymCollisionError):
        for i in range(33):
            keyed.pseudonym("patient", f"ID{i}", 1)
