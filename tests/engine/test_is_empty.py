"""is_empty decides padding-only values without copying them whole."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from medveil.engine.decide import is_empty


@given(st.binary(max_size=5000), st.sampled_from([b"\x00", b" ", b"\x00 "]))
def test_same_verdict_as_stripping(body: bytes, pad: bytes) -> None:
    for value in (body, pad * 700 + body, body + pad * 700, pad * 3000):
        expected = not value or not value.strip(b"\x00 ")
        assert is_empty(value) == expected
        assert is_empty(bytearray(value)) == expected
        assert is_empty(memoryview(value)) == expected


def test_views_of_wider_items_are_read_as_bytes() -> None:
    assert is_empty(memoryview(np.zeros(1000, dtype=np.uint16)))
    arr = np.zeros(1000, dtype=np.uint16)
    arr[-1] = 0x4100
    assert not is_empty(memoryview(arr))
    assert is_empty(None) and is_empty(b"")
