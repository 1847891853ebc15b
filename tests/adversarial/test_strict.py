"""The strict structural check: damaged files refused, valid ones (pydicom's) accepted.

The check (medveil.dicom.strict) runs before either engine reads a file. It has a fast
road (the core's element scanner plus row checks) and a Python walker for the rest; both
must give the same verdict on every file, damaged or not.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil._core import scan_elements
from medveil.dicom import strict
from medveil.dicom.io import read_dataset
from medveil.dicom.strict import StructureError, check_structure
from medveil.engine import instance as inst
from medveil.engine.dataset import Deidentifier
from medveil.errors import DicomInputError
from medveil.policy.presets import load_policy
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from ..conftest import bundled_test_files
from .generator import corpus, save

# pydicom's own test files that pydicom reads but that are damaged, and why. Everything
# else pydicom reads must be accepted (release rate matters as much as leaks).
REJECTED = {
    "693_J2KI.dcm": "group length runs past its container",  # (7FE0,0000) of the raw pixels
    "MR_truncated.dcm": "value runs past the end",  # cut inside Pixel Data
    "rtplan_truncated.dcm": "sequence runs past the end",
    "meta_missing_tsyntax.dcm": "odd value length",  # 'Nested SQ' (9 bytes) in group 0001
    "nested_priv_SQ.dcm": "odd value length",  # the same value
}


def _pydicom_reads(path: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
            return len(ds) > 0
        except Exception:
            return False


def test_pydicoms_readable_files_are_accepted_unless_damaged() -> None:
    rejected = {}
    accepted = 0
    for path in bundled_test_files():
        if not _pydicom_reads(path):
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            check_structure(data)
            accepted += 1
        except StructureError as exc:
            rejected[os.path.basename(path)] = str(exc)
    assert set(rejected) == set(REJECTED), rejected
    for name, why in REJECTED.items():
        assert why in rejected[name]
    assert accepted >= 60


def test_the_corpus_damaged_files_and_only_they_are_refused() -> None:
    for case in corpus():
        try:
            check_structure(case.data)
            refused = False
        except StructureError:
            refused = True
        assert refused == case.damaged, case.place


def test_read_dataset_refuses_a_damaged_file_naming_it() -> None:
    case = next(c for c in corpus() if c.place == "damaged-ut-40")
    with pytest.raises(StructureError, match=r"^upload\.dcm: structurally damaged"):
        read_dataset(bytearray(case.data), "upload.dcm")
    ds = read_dataset(bytearray(case.data), "upload.dcm", strict=False)  # the caller's choice
    assert ds is not None


def _slow(data: bytes) -> None:
    """The Python walker alone, on the whole file (the reference for the fast road)."""
    _, pos, ts = strict.dataset_offset(data)
    if ts is not None and ts not in strict._KNOWN_SYNTAXES:
        raise DicomInputError("unsupported transfer syntax")
    ts = ts or strict._guess_syntax(data, pos)
    buf = data
    if ts in strict.DEFLATED_SYNTAXES:
        buf, pos = strict.inflate_dataset(data, pos), 0
    little, implicit = ts != strict._EXPLICIT_BE, ts == strict._IMPLICIT_LE
    if not implicit and len(buf) - pos >= 6 and bytes(buf[pos + 4 : pos + 6]) not in strict._VRS:
        strict._Walker(buf, little=little, explicit=False, fragments=True).top(pos)
        return
    strict._Walker(buf, little=little, explicit=not implicit).top(pos)


def _verdict(check, data: bytes) -> bool:
    try:
        check(data)
        return True
    except DicomInputError:  # StructureError, or a syntax the check does not read
        return False


_SEEDS = [
    Path(get_testdata_file(n)).read_bytes()
    for n in ("CT_small.dcm", "rtstruct.dcm", "MR_small_implicit.dcm", "test-SR.dcm")
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(range(len(_SEEDS))),
    flips=st.lists(st.tuples(st.integers(132, 2999), st.integers(0, 255)), min_size=1, max_size=3),
    cut=st.one_of(st.none(), st.integers(132, 40000)),
)
def test_fast_and_slow_roads_agree_on_damaged_bytes(seed, flips, cut) -> None:
    data = bytearray(_SEEDS[seed])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    if cut is not None:
        data = data[:cut]
    assert _verdict(check_structure, bytes(data)) == _verdict(_slow, bytes(data))


def _boundaries(data: bytes) -> set[int]:
    """Offsets where a top-level element of the data set ends (valid places to cut)."""
    _, pos, _ = strict.dataset_offset(data)
    rows, _, err = scan_elements(data, pos, len(data), False, strict.sq_tags())
    assert err is None
    return {int(r[5]) for r in rows if r[0] >= 0 and r[7] == 0} | {pos}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_file_cut_inside_an_element_is_refused(data) -> None:
    full = _SEEDS[0]
    _, start, _ = strict.dataset_offset(full)
    ends = _boundaries(full)
    cut = data.draw(st.integers(start, len(full) - 1))
    assert _verdict(check_structure, full[:cut]) == (cut in ends)


def test_an_overrun_length_is_refused_at_any_element() -> None:
    full = _SEEDS[0]
    _, pos, _ = strict.dataset_offset(full)
    rows, _, _ = scan_elements(full, pos, len(full), False, strict.sq_tags())
    for tag, _vr, start, vstart, _len, _end, items, depth in rows.tolist():
        if tag < 0 or depth or items >= 0 or vstart - start != 8:
            continue  # short-length elements at the top: forge their 2-byte length
        forged = bytearray(full)
        struct.pack_into("<H", forged, start + 6, min(0xFFFE, len(full) - vstart + 2))
        assert not _verdict(check_structure, bytes(forged)), hex(tag)


def test_a_stray_item_delimiter_at_the_top_level_is_refused() -> None:
    # Found by the fuzz test above: a length grown from 2 to 76 in rtstruct.dcm (a bare
    # Implicit VR data set) swallows elements until an item delimiter lands where the next
    # top-level element should start. The core scanner ends a data set there as it ends an
    # item, so without this check everything after the delimiter went unchecked.
    data = bytearray(_SEEDS[1])
    assert data[506] == 2
    data[506] = 76
    with pytest.raises(StructureError, match=r"item delimiter outside|control bytes"):
        check_structure(bytes(data))
    with pytest.raises(StructureError, match=r"item delimiter outside|control bytes"):
        _slow(bytes(data))


def _un_swallowing(keyword: str, swallow: int) -> tuple[bytes, bytes]:
    """(file, name): an Explicit VR file whose text element `keyword` is written as UN with
    a length grown by `swallow` bytes, so that its value takes in the elements after it,
    the patient's name among them (what a fuzzer made of rtdose_rle_1frame.dcm)."""
    name = "Qzdoebrak^Wxmelkin"
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "2.25.7"
    ds.StudyDate = "20200101"
    ds.StudyTime = "101010"
    ds.Manufacturer = "ACME"
    ds.InstitutionName = "General"
    ds.PatientName = name
    ds.PatientID = "QX7741230"
    ds.Modality = "CT"
    data = save(ds)
    tag = pydicom.datadict.tag_for_keyword(keyword)
    assert tag is not None
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    at = data.index(head, 132)
    length = struct.unpack_from("<H", data, at + 6)[0]
    rest = len(data) - (at + 8 + length)
    grown = min(length + swallow, length + rest)
    grown -= grown % 2
    value = data[at + 8 : at + 8 + length]
    forged = (
        data[:at]
        + head
        + b"UN\x00\x00"
        + struct.pack("<I", grown)
        + value
        + data[at + 8 + length :]
    )
    return forged, name.split("^")[0].encode()


@pytest.mark.parametrize("keyword", ["StudyTime", "StudyDate", "Manufacturer", "InstitutionName"])
def test_a_un_text_value_that_swallowed_elements_is_refused(keyword: str) -> None:
    # Found by fuzzing (seed 11): StudyTime written as UN with a length that took in the
    # elements after it. pydicom reads a UN value of a standard tag as its dictionary VR,
    # so it was one long TM that the policy keeps; the name inside it was never learned
    # (no element held it) and the file was released with it. A UN value of a standard
    # text tag is text: the swallowed headers show as control bytes, on both roads.
    data, family = _un_swallowing(keyword, 400)
    assert data.count(family) == 1
    with pytest.raises(StructureError, match="control bytes"):
        check_structure(data)
    with pytest.raises(StructureError, match="control bytes"):
        _slow(data)
    for policy in (Policy.default(), load_policy("tcia")):
        got = inst.clean_instance(Deidentifier(policy, bytes(range(32))), bytearray(data), "f")
        assert got.status == "quarantined", keyword
        assert got.data is None or family not in bytes(got.data)


def test_a_un_text_value_without_control_bytes_is_accepted() -> None:
    # The same element as UN with its own length (a sender that did not know its VR):
    # a valid file, accepted on both roads.
    data, _ = _un_swallowing("StudyTime", 0)
    check_structure(data)
    _slow(data)
