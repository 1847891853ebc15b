"""The core's strict row rules (medveil._core.strict) against the Python reference.

Both must name the same first finding (reason and byte offset) on every file: pydicom's,
the adversarial corpus, and scanner rows of real files whose bytes and row fields are
changed at random (rows pointing outside the data are refused with ValueError, and the
strict check then uses the reference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil._core import scan_elements
from medveil._core import strict as core_strict
from medveil.dicom import strict
from medveil.dicom.strict import StructureError
from pydicom.data import get_testdata_file

from ..adversarial.generator import corpus
from ..conftest import bundled_test_files


def _rows_of(data: bytes) -> tuple[np.ndarray, bool] | None:
    """The scanner rows of a little-endian file's data set and whether it is Implicit VR."""
    try:
        _, pos, ts = strict.dataset_offset(data)
    except StructureError:
        return None
    ts = ts or strict._guess_syntax(data, pos)
    if ts in strict.DEFLATED_SYNTAXES or ts == strict._EXPLICIT_BE:
        return None
    implicit = ts == strict._IMPLICIT_LE
    rows, _, error = scan_elements(data, pos, len(data), implicit, strict.sq_tags())
    return (rows, implicit) if error is None else None


def _verdict(check, data: bytes, rows: np.ndarray, implicit: bool) -> object:
    try:
        check(data, rows, implicit)
        return None
    except StructureError as exc:
        return str(exc)
    except Exception as exc:  # the reference's own errors on rows outside the data
        return type(exc).__name__


def _same(data: bytes, rows: np.ndarray, implicit: bool) -> None:
    want = _verdict(strict._check_rows_python, data, rows, implicit)
    assert _verdict(strict._check_rows, data, rows, implicit) == want


def test_the_core_has_the_row_rules() -> None:
    assert strict._strictcore is not None


def test_pydicom_files_and_the_corpus() -> None:
    seen = 0
    datas = [Path(p).read_bytes() for p in bundled_test_files()]
    datas += [case.data for case in corpus()]
    for data in datas:
        got = _rows_of(data)
        if got is None:
            continue
        _same(data, *got)
        seen += 1
    assert seen > 100


_SEEDS = [
    Path(get_testdata_file(n)).read_bytes()
    for n in ("CT_small.dcm", "rtstruct.dcm", "MR_small_implicit.dcm", "test-SR.dcm", "rtplan.dcm")
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(range(len(_SEEDS))),
    flips=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 255)), max_size=4),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 7), st.integers(-8, 0x1_0000_0010)),
        max_size=3,
    ),
)
def test_changed_bytes_and_rows(seed: int, flips, edits) -> None:
    """Any change to the bytes or to the rows: the same verdict as the reference."""
    data = _SEEDS[seed]
    got = _rows_of(data)
    assert got is not None
    rows, implicit = got
    rows = rows.copy()
    buf = bytearray(data)
    for at, value in flips:
        buf[at % len(buf)] = value
    for i, col, value in edits:
        rows[i % len(rows), col] = value
    _same(bytes(buf), rows, implicit)


def test_bad_arguments_are_refused_clearly() -> None:
    data = _SEEDS[0]
    rows, _ = _rows_of(data)  # type: ignore[misc]
    with pytest.raises(ValueError, match="8"):
        core_strict.check_rows(data, rows[:, :4].copy(), False)
    with pytest.raises(ValueError, match="implicit"):
        core_strict.check_rows(data, rows, True)
    with pytest.raises(ValueError, match="one flag per row"):
        core_strict.check_rows(data, rows, True, np.zeros(2, np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(TypeError, match="bytes-like"):
        core_strict.check_rows("text", rows, False)
    far = rows.copy()
    far[-1, 5] = len(data) + 100
    far[-1, 4] = 0xFFFFFFFF
    far[-1, 6] = 0
    with pytest.raises(ValueError, match="outside"):
        core_strict.check_rows(data, far, False)
    huge = rows.copy()
    huge[0, 2] = 2**63 - 1  # start + 8 would overflow: refused before any arithmetic
    with pytest.raises(ValueError, match="outside"):
        core_strict.check_rows(data, huge, False)
    assert core_strict.check_rows(data, rows, False) is None
