"""Bounded inflation of the Deflated Explicit VR Little Endian syntax (dicom/io.inflate_file).

The inflated file must read (pydicom) as the deflated one does, accept and refuse exactly
what the strict check's whole-stream inflation accepts and refuses, stop at the size
limit, and clean to the same bytes as the same instance written in Explicit VR LE.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil.dicom import strict
from medveil.dicom.io import MAX_INFLATED, InflatedTooLarge, inflate_file
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.errors import DicomInputError
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

DEFLATED = Path(get_testdata_file("image_dfl.dcm")).read_bytes()


def _as_deflated(name: str) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    return body.getvalue()


def _elements(ds: pydicom.Dataset) -> list[tuple[object, object]]:
    return [(e.tag, e.value) for e in ds]


@pytest.mark.parametrize("name", ["image_dfl.dcm", "CT_small.dcm", "MR_small.dcm", "test-SR.dcm"])
def test_inflated_file_reads_as_the_deflated_one(name) -> None:
    data = DEFLATED if name == "image_dfl.dcm" else _as_deflated(name)
    out = inflate_file(data)
    assert out is not None
    a, b = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(bytes(out)))
    assert b.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert _elements(a) == _elements(b)
    meta_a = {e.tag: e.value for e in a.file_meta if e.tag not in (0x00020000, 0x00020010)}
    assert meta_a == {e.tag: e.value for e in b.file_meta if e.tag not in (0x00020000, 0x00020010)}
    assert strict.check_structure(out) == ExplicitVRLittleEndian  # group length exact, too
    assert bytes(out[:128]) == data[:128]  # the preamble is the cleaner's to blank


def test_other_syntaxes_are_left_alone() -> None:
    assert inflate_file(Path(get_testdata_file("CT_small.dcm")).read_bytes()) is None
    assert inflate_file(b"not a DICOM file at all") is None


def _strict_verdict(data: bytes) -> str:
    _, pos, _ = strict.dataset_offset(data)
    try:
        strict.inflate_dataset(data, pos)
    except strict.StructureError as exc:
        return str(exc)
    return "ok"


def _our_verdict(data: bytes) -> str:
    try:
        inflate_file(data)
    except strict.StructureError as exc:
        return str(exc)
    return "ok"


_STREAM_AT = strict.dataset_offset(DEFLATED)[1]
_INFLATED = strict.inflate_dataset(DEFLATED, _STREAM_AT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(0, 80),
    tail=st.sampled_from(
        [
            b"",
            b"\0" * 7,
            zlib.adler32(_INFLATED).to_bytes(4, "big"),
            zlib.adler32(_INFLATED).to_bytes(4, "big") + b"\0\0",
            zlib.crc32(_INFLATED).to_bytes(4, "little") + len(_INFLATED).to_bytes(4, "little"),
            b"junk",
            b"\0\0\0\x01",
            b"\0" * 3000 + b"\x01",
        ]
    ),
    flip=st.one_of(st.none(), st.integers(0, 200)),
)
def test_accepts_and_refuses_what_the_strict_check_does(cut, tail, flip) -> None:
    # image_dfl.dcm ends with an 8-byte trailer: cut into it, into the stream, or add more.
    data = bytearray(DEFLATED[: len(DEFLATED) - cut] + tail)
    if flip is not None:
        data[_STREAM_AT + flip] ^= 0x5A
    assert _our_verdict(bytes(data)) == _strict_verdict(bytes(data))


def test_inflation_stops_at_the_limit() -> None:
    out = inflate_file(DEFLATED)
    assert out is not None
    assert inflate_file(DEFLATED, len(out)) is not None
    with pytest.raises(InflatedTooLarge, match="too large once inflated"):
        inflate_file(DEFLATED, len(out) - 1)
    assert MAX_INFLATED >= 1 << 30


def test_inflated_into_the_buffer_it_is_given() -> None:
    given: list[memoryview] = []

    def alloc(n: int) -> memoryview:
        given.append(memoryview(bytearray(n)))
        return given[-1]

    out = inflate_file(DEFLATED, alloc=alloc)
    assert out is given[0] and len(given) == 1


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_cleaned_like_the_same_instance_in_explicit_vr(name) -> None:
    engine = Deidentifier(Policy.default(), bytes(range(32)))
    deflated = clean_instance(engine, _as_deflated(name), name)
    explicit = clean_instance(engine, Path(get_testdata_file(name)).read_bytes(), name)
    assert deflated.status == explicit.status == "written", (deflated.reason, explicit.reason)
    a = pydicom.dcmread(io.BytesIO(deflated.data))
    b = pydicom.dcmread(io.BytesIO(explicit.data))
    assert _elements(a) == _elements(b)


def test_clean_instance_quarantines_a_file_too_large_once_inflated() -> None:
    engine = Deidentifier(Policy.default(), bytes(range(32)))
    r = clean_instance(engine, DEFLATED, "dfl", max_size=100_000)
    assert r.status == "quarantined"
    assert (
        r.reason == "too large once inflated: over the per-file limit of 0.1 MB (--max-file-size)"
    )


@pytest.mark.parametrize("group_length", [True, False])
def test_a_file_meta_longer_than_the_peek_is_still_read(group_length) -> None:
    # A 6000-byte File Meta Information Version (OB) puts the syntax past the first 4 KB.
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.file_meta.FileMetaInformationVersion = b"\x00\x01" * 3000
    body = io.BytesIO()
    ds.save_as(body, enforce_file_format=True)
    data = body.getvalue()
    if not group_length:
        meta_end = strict.dataset_offset(data)[1]
        data = data[:132] + data[132 + 12 : meta_end] + data[meta_end:]
    assert data.index(b"1.2.840.10008.1.2.1.99") > 4096
    out = inflate_file(data)
    assert out is not None
    b = pydicom.dcmread(io.BytesIO(bytes(out)))
    assert b.file_meta.FileMetaInformationVersion == b"\x00\x01" * 3000
    assert _elements(b) == _elements(pydicom.dcmread(io.BytesIO(data)))


def test_strict_inflation_is_bounded() -> None:
    # The strict check inflates for readers without a size limit (the verifier): a bomb
    # stops at the bound instead of allocating all it claims.
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = packer.compress(b"\0" * (8 << 20)) + packer.flush()
    with pytest.raises(DicomInputError, match="too large once inflated"):
        strict.inflate_dataset(bomb, 0, limit=1 << 20)
    assert len(strict.inflate_dataset(bomb, 0, limit=8 << 20)) == 8 << 20
