"""The core's element scanner builds the same tree as the engine's former Python scanner."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil._core import scan_elements
from medveil.engine.raw import _SQ_TAGS, NotRaw, _Elem, _scan
from pydicom.data import DATA_ROOT

from . import scan_reference
from .test_rawengine import ITEM_KEYS, TOP, _dataset, _demo_bytes, _file


def _shape(elems: list[_Elem]) -> list[tuple]:
    return [
        (
            e.tag,
            e.vr,
            e.start,
            e.vstart,
            e.length,
            e.end,
            [(i.undefined, i.start, i.end, _shape(i.elems)) for i in e.items],
        )
        for e in elems
    ]


def _by_core(buf: bytes, pos: int, end: int, implicit: bool) -> list[tuple] | None:
    try:
        return _shape(_scan(buf, pos, end, implicit)[0])
    except NotRaw:
        return None


def _by_reference(buf: bytes, pos: int, end: int, implicit: bool) -> list[tuple] | None:
    try:
        return _shape(scan_reference.scan(buf, pos, end, True, implicit)[0])
    except (NotRaw, struct.error, RecursionError):
        return None


def _data_set(buf: bytes) -> tuple[int, int, bool] | None:
    """(start, end, implicit) of a Part 10 file's data set after its meta, or None."""
    if len(buf) < 144 or buf[128:132] != b"DICM" or buf[136:138] != b"UL":
        return None
    meta_end = 144 + struct.unpack_from("<L", buf, 140)[0]
    if meta_end > len(buf):
        return None
    return meta_end, len(buf), b"1.2.840.10008.1.2\x00" in buf[132:meta_end]


def assert_agree(buf: bytes, pos: int, end: int, implicit: bool) -> list[tuple] | None:
    """Both scanners accept buf[pos:end] with the same tree, or both decline it."""
    ours = _by_core(buf, pos, end, implicit)
    theirs = _by_reference(buf, pos, end, implicit)
    if end > len(buf):
        assert ours is None  # the old scanner read what was there; the core refuses
        return None
    assert ours == theirs
    return ours


PYDICOM_FILES = sorted(
    p for p in Path(DATA_ROOT, "test_files").rglob("*") if p.is_file() and p.stat().st_size > 144
)


def test_every_pydicom_file_scans_alike() -> None:
    scanned = 0
    for path in PYDICOM_FILES:
        buf = path.read_bytes()
        where = _data_set(buf)
        if where is None:
            continue
        start, end, implicit = where
        assert_agree(buf, 132, start, False)
        if assert_agree(buf, start, end, implicit) is not None:
            scanned += 1
        # Cut at a few places: inside headers, values and sequences.
        for cut in (start + 3, start + 9, (start + end) // 2, end - 1):
            if start <= cut <= end:
                assert_agree(buf[:cut], start, cut, implicit)
    assert scanned >= 100  # the little-endian files the raw engine takes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.fixed_dictionaries({}, optional=TOP),
    items=st.lists(
        st.tuples(
            st.sampled_from(["ReferencedImageSequence", "ProcedureCodeSequence"]),
            st.lists(st.fixed_dictionaries({}, optional=ITEM_KEYS), max_size=3),
            st.booleans(),
            st.booleans(),
        ),
        max_size=2,
        unique_by=lambda t: t[0],
    ),
    private=st.lists(
        st.tuples(st.sampled_from(["ACME PRIVATE", "GEMS_IDEN_01"]), st.integers(0, 8), st.text()),
        max_size=2,
    ),
    implicit=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 2000)),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=3),
)
def test_generated_and_damaged_files_scan_alike(values, items, private, implicit, cut, flips):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = bytearray(_file(_dataset(values, items), private, implicit))
    where = _data_set(bytes(data))
    assert where is not None
    start, _, _ = where
    assert assert_agree(bytes(data), start, len(data), implicit) is not None
    for at, value in flips:
        if start + at < len(data):
            data[start + at] = value
    if cut is not None:
        del data[start + cut :]
    assert_agree(bytes(data), start, len(data), implicit)


@settings(max_examples=200, deadline=None)
@given(
    which=st.integers(0, 10),
    cut=st.one_of(st.none(), st.integers(132, 4000)),
    flips=st.lists(st.tuples(st.integers(132, 3000), st.integers(0, 255)), max_size=6),
)
def test_damaged_demo_files_scan_alike(which, cut, flips) -> None:
    files = _demo_bytes()
    data = bytearray(files[which % len(files)])
    where = _data_set(bytes(data))
    assert where is not None
    start, _, implicit = where
    for at, value in flips:
        if start <= at < len(data):
            data[at] = value
    if cut is not None and cut >= start:
        del data[cut:]
    assert_agree(bytes(data), start, len(data), implicit)


@settings(max_examples=300, deadline=None)
@given(noise=st.binary(max_size=300), implicit=st.booleans())
def test_arbitrary_bytes_scan_alike_and_safely(noise: bytes, implicit: bool) -> None:
    # Sequence and item headers spliced in, so nested structures are tried often.
    headers = [
        b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff",
        b"\xfe\xff\x00\xe0\xff\xff\xff\xff",
        b"\xfe\xff\x0d\xe0\x00\x00\x00\x00",
        b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
        b"\x08\x00\x40\x11\xff\xff\xff\xff",
    ]
    buf = b"".join(headers[b % len(headers)] if b < 40 else bytes([b]) for b in noise)
    assert_agree(buf, 0, len(buf), implicit)


def test_depth_column_marks_the_top_level() -> None:
    files = _demo_bytes()
    for buf in files:
        start, end, implicit = _data_set(buf)  # type: ignore[misc]
        rows, stop, error = scan_elements(buf, start, end, implicit, _SQ_TAGS)
        assert error is None and stop == end
        top = {int(r[0]) for r in rows if r[7] == 0 and r[0] >= 0}
        assert top == {e.tag for e in _scan(buf, start, end, implicit)[0]}


def test_deep_nesting_is_refused_not_recursed() -> None:
    seq = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    buf = seq * 200
    _, _, error = scan_elements(buf, 0, len(buf), False, _SQ_TAGS)
    assert error == "sequences nested too deep"


def _empty_elements(n: int, first: int = 0x10010000) -> bytes:
    """n empty LO elements (8 bytes each) with ascending tags from first."""
    out = bytearray()
    for tag in range(first, first + n):
        out += struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"LO\x00\x00"
    return bytes(out)


def test_element_count_is_bounded() -> None:
    """Rows are 64 bytes an element: past 2**20 elements the scan refuses the file.

    A file of empty 8-byte elements would otherwise make rows of eight times its size (a
    400 MB file, 3.2 GB): one such file could take a worker's memory on every retry.
    """
    limit = 1 << 20
    buf = _empty_elements(limit)
    rows, stop, error = scan_elements(buf, 0, len(buf), False, _SQ_TAGS)
    assert error is None and stop == len(buf) and len(rows) == limit
    more = buf + _empty_elements(1, 0x10010000 + limit)
    _, _, error = scan_elements(more, 0, len(more), False, _SQ_TAGS)
    assert error == "too many elements"
    # Items count as rows too: the bound holds inside sequences.
    seq = b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff"
    item = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    nested = seq + item * limit + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    _, _, error = scan_elements(nested, 0, len(nested), False, _SQ_TAGS)
    assert error == "too many elements"


def test_file_of_too_many_elements_is_quarantined_with_its_reason() -> None:
    """Through the archive's per-file pipeline: quarantined, the reason says why."""
    from medveil.engine.dataset import Deidentifier
    from medveil.engine.instance import clean_instance
    from medveil.policy.schema import Policy

    def el(tag: int, vr: bytes, value: bytes) -> bytes:
        header = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
        return header + struct.pack("<H", len(value)) + value

    sc = b"1.2.840.10008.5.1.4.1.1.7\x00"
    meta = el(0x00020002, b"UI", sc) + el(0x00020003, b"UI", b"1.2.3.4\x00")
    meta += el(0x00020010, b"UI", b"1.2.840.10008.1.2.1\x00")
    meta = b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<I", len(meta)) + meta
    head = el(0x00080016, b"UI", sc) + el(0x00080018, b"UI", b"1.2.3.4\x00")
    data = b"\x00" * 128 + b"DICM" + meta + head + _empty_elements((1 << 20) + 10)
    result = clean_instance(Deidentifier(Policy(), bytes(32)), bytearray(data), "many.dcm")
    assert result.status == "quarantined"
    assert "too many elements" in result.reason


def test_binding_checks_its_arguments() -> None:
    buf = b"\x08\x00\x18\x00UI\x02\x001\x00"
    rows, stop, error = scan_elements(buf, 0, len(buf), False, _SQ_TAGS)
    assert error is None and stop == len(buf) and rows.shape == (1, 8)
    assert rows[0].tolist() == [0x00080018, 0x4955, 0, 8, 2, 10, -1, 0]
    with pytest.raises(ValueError, match="past the data"):
        scan_elements(buf, 0, len(buf) + 1, False, _SQ_TAGS)
    with pytest.raises(ValueError, match="past end"):
        scan_elements(buf, 5, 4, False, _SQ_TAGS)
    with pytest.raises(ValueError, match="sorted"):
        scan_elements(buf, 0, len(buf), True, np.array([3, 2], dtype=np.uint32))
    with pytest.raises(TypeError, match="bytes-like"):
        scan_elements("not bytes", 0, 0, False, _SQ_TAGS)
