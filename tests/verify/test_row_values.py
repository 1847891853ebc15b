"""termsearch.row_values (the post-check learner's cache key) against the bytes it stands for.

Each value data[row[3]:row[5]] after its length (4 bytes little-endian), in index order;
rows that point outside the data are refused (the learner then keys on a tuple).
"""

from __future__ import annotations

import importlib
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from medveil.verify.elements import scan_file
from pydicom.data import get_testdata_file

_termsearch: Any = getattr(importlib.import_module("medveil._core"), "termsearch", None)
pytestmark = pytest.mark.skipif(
    _termsearch is None or not hasattr(_termsearch, "row_values"), reason="core without it"
)


def _expected(data: bytes, rows: np.ndarray, index: list[int]) -> bytes:
    out = b""
    for i in index:
        value = data[int(rows[i, 3]) : int(rows[i, 5])]
        out += struct.pack("<I", len(value)) + value
    return out


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"])
def test_real_files(name: str) -> None:
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"{name} not bundled")
    data = Path(str(found)).read_bytes()
    scan = scan_file(data)
    assert scan is not None
    rows = scan.rows
    every = np.flatnonzero(rows[:, 0] >= 0).tolist()  # element rows (items hold no value)
    rng = np.random.default_rng(7)
    for index in (every, every[::-1], [], rng.choice(every, 40).tolist()):
        got = _termsearch.row_values(data, rows, np.array(index, dtype=np.int64))
        assert got == _expected(data, rows, index)
        assert _termsearch.row_values(bytearray(data), rows, index) == got
        assert _termsearch.row_values(memoryview(data), rows, index) == got


def test_values_are_told_apart_by_their_lengths() -> None:
    rows = np.zeros((2, 8), dtype=np.int64)
    rows[0, 3], rows[0, 5], rows[1, 3], rows[1, 5] = 0, 2, 2, 4
    one = _termsearch.row_values(b"abcd", rows, [0, 1])
    rows[0, 5], rows[1, 3] = 1, 1
    other = _termsearch.row_values(b"abcd", rows, [0, 1])
    assert one != other  # "ab"+"cd" is not "a"+"bcd"


@pytest.mark.parametrize(
    "start, end, index",
    [(0, 9, [0]), (-1, 2, [0]), (3, 2, [0]), (0, 2, [1]), (0, 2, [-1])],
)
def test_rows_outside_the_data_are_refused(start: int, end: int, index: list[int]) -> None:
    rows = np.zeros((1, 8), dtype=np.int64)
    rows[0, 3], rows[0, 5] = start, end
    with pytest.raises(ValueError):
        _termsearch.row_values(b"abcd", rows, index)
