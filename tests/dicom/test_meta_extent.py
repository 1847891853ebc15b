"""The core's file meta reader (strict.dataset_offset) against the Python reference.

Same (meta start, data set start, transfer syntax) or the same first finding (reason and
byte offset), on real files, every prefix of their meta, and generated metas: random VRs,
lengths that overrun or are odd, group lengths right and wrong, stray groups, no preamble.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.dicom import strict
from medveil.dicom.strict import StructureError, dataset_offset_python
from pydicom.data import get_testdata_file

pytestmark = pytest.mark.skipif(strict._meta_extent is None, reason="core without meta_extent")

FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "image_dfl.dcm", "JPEG2000.dcm"]
VRS = [b"UL", b"OB", b"UI", b"SH", b"AE", b"UN", b"SQ", b"UT", b"XX", b"\x00\x00", b"ob"]


def _outcome(fn: object, data: bytes | bytearray | memoryview) -> object:
    try:
        return fn(data)  # type: ignore[operator]
    except StructureError as exc:
        return ("error", str(exc))


def _same(data: bytes | bytearray | memoryview) -> None:
    assert _outcome(strict.dataset_offset, data) == _outcome(dataset_offset_python, data)


def _real(name: str) -> bytes:
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"{name} not bundled")
    return Path(str(found)).read_bytes()


@pytest.mark.parametrize("name", FILES)
def test_real_files_and_every_prefix(name: str) -> None:
    data = _real(name)
    start, pos, ts = strict.dataset_offset(data)
    assert (start, pos, ts) == dataset_offset_python(data)
    assert ts and pos > start  # a real meta, read to its end
    for cut in range(0, min(len(data), pos + 24)):
        _same(data[:cut])
    _same(bytearray(data))
    _same(memoryview(data)[: pos + 8])


def test_findings_are_named_alike() -> None:
    data = bytearray(_real("CT_small.dcm"))
    assert dataset_offset_python(bytes(data))[0] == 132
    # The group length one byte off, an odd length, an unknown VR, reserved bytes set.
    wrong = bytearray(data)
    struct.pack_into("<I", wrong, 140, struct.unpack_from("<I", wrong, 140)[0] + 2)
    odd = bytearray(data)
    struct.pack_into("<H", odd, 144 + 6, 3)  # the element after the group length (OB)
    vr = bytearray(data)
    vr[144 + 4 : 144 + 6] = b"ZZ"
    reserved = bytearray(data)
    reserved[144 + 6] = 1
    for bad in (wrong, odd, vr, reserved):
        got = _outcome(strict.dataset_offset, bytes(bad))
        assert got == _outcome(dataset_offset_python, bytes(bad))
        assert isinstance(got, tuple) and got[0] == "error"


@st.composite
def metas(draw: st.DrawFn) -> bytes:
    """A file meta, often well formed, often not, with what follows it."""
    preamble = draw(st.sampled_from([b"\x00" * 128 + b"DICM", b"", b"\x00" * 128 + b"DICN"]))
    elements = []
    for _ in range(draw(st.integers(0, 6))):
        group = draw(st.sampled_from([2, 2, 2, 8, 0x0200]))
        elem = draw(st.sampled_from([0x0001, 0x0002, 0x0003, 0x0010, 0x0012, 0x0000]))
        vr = draw(st.sampled_from(VRS))
        value = draw(st.binary(max_size=12))
        long_vr = vr in (b"OB", b"UN", b"SQ", b"UT")
        length = draw(
            st.one_of(st.just(len(value)), st.integers(0, 0xFFFF if not long_vr else 0xFFFFFFFF))
        )
        head = struct.pack("<HH2s", group, elem, vr)
        if long_vr:
            head += draw(st.sampled_from([b"\x00\x00", b"\x01\x00"])) + struct.pack("<I", length)
        else:
            head += struct.pack("<H", length & 0xFFFF)
        elements.append(head + value)
    body = b"".join(elements)
    if draw(st.booleans()):
        declared = len(body) + draw(st.sampled_from([0, 0, 2, -2]))
        body = struct.pack("<HH2sHI", 2, 0, b"UL", 4, max(declared, 0) & 0xFFFFFFFF) + body
    tail = draw(st.binary(max_size=16))
    return preamble + body + tail


@settings(max_examples=600, deadline=None)
@given(metas())
def test_generated_metas(data: bytes) -> None:
    _same(data)
    _same(bytearray(data))
