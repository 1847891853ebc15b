"""Names inside a kept binary value, where a grown length swallowed their elements.

A palette's LUT data (OW, kept by the default policy) whose length takes in the elements
after it holds the Requesting Physician's name as bytes: no rule removes it, no element
holds it for the post-check to learn. verify.hidden finds such headers inside binary
values, and the post-check hunts their values as names: the file is quarantined.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from medveil.engine import instance as inst
from medveil.engine import postcheck
from medveil.engine.dataset import Deidentifier
from medveil.policy.presets import load_policy
from medveil.policy.schema import Policy
from medveil.verify.hidden import hidden_in
from pydicom._dicom_dict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .generator import save

NAME = "Zqvothian^Drxel"
SECRET = bytes(range(32))


def _palette(implicit: bool, nested: bool, grow: bool = True) -> bytes:
    """A palette image whose red LUT data is followed by a physician's name; with ``grow``,
    the LUT data's length runs on to Pixel Data, swallowing the name's element."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "2.25.9"
    ds.PatientName = "Plain^Person"
    ds.PatientID = "ID1"
    ds.Modality = "OT"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.RedPaletteColorLookupTableDescriptor = [4, 0, 16]
    ds.RedPaletteColorLookupTableData = bytes(8)
    if nested:
        item = Dataset()
        item.ValueType = "PNAME"
        item.PersonName = NAME
        ds.ContentSequence = Sequence([item])
    else:
        ds.RequestingPhysician = NAME
    ds.PixelData = bytes(8)
    data = bytearray(save(ds, ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian))
    if grow:
        at = data.index(b"\x28\x00\x01\x12", 132)
        length_at = at + (4 if implicit else 8)
        pixel = data.index(b"\xe0\x7f\x10\x00", at)
        struct.pack_into("<I", data, length_at, pixel - (length_at + 4))
    return bytes(data)


def _clean(data: bytes, policy: str, native: bool) -> inst.CleanResult:
    """clean_instance under the named policy, on the native road or not."""
    p = Policy.default() if policy == "default" else load_policy(policy)
    old = inst.USE_NATIVE_ENGINE
    inst.USE_NATIVE_ENGINE = native
    try:
        return inst.clean_instance(Deidentifier(p, SECRET), bytearray(data), "f")
    finally:
        inst.USE_NATIVE_ENGINE = old


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("policy", ["default", "tcia"])
@pytest.mark.parametrize("native", [False, True])
def test_a_name_swallowed_into_kept_lut_data_is_never_released(
    implicit: bool, nested: bool, policy: str, native: bool
) -> None:
    data = _palette(implicit, nested)
    got = _clean(data, policy, native)
    assert got.status == "quarantined"
    assert "post-check" in (got.reason or "")
    assert got.data is None or b"Zqvothian" not in bytes(got.data)


@pytest.mark.parametrize("implicit", [False, True])
def test_the_same_file_unswallowed_is_released_without_the_name(implicit: bool) -> None:
    # The control: the name in its own element is removed by the rules, the file released.
    data = _palette(implicit, nested=False, grow=False)
    got = inst.clean_instance(Deidentifier(Policy.default(), SECRET), bytearray(data), "f")
    assert got.status == "written", got.reason
    assert b"Zqvothian" not in bytes(got.data)


@pytest.mark.parametrize("implicit", [False, True])
def test_both_learning_roads_learn_the_swallowed_name(implicit: bool) -> None:
    data = _palette(implicit, nested=True)
    for terms in (postcheck.learn_terms(data), postcheck.learn_terms_spans(data)):
        assert {"zqvothian", "drxel"} <= {t.casefold() for t in terms.always}


def _numbers_then_name(vr: str, implicit: bool) -> bytes:
    """A file whose first element of VR ``vr`` (group 0018-0020) has its length grown over
    the Requesting Physician's element after it: the name reads as more numbers."""
    tag = min(
        t
        for t, entry in DicomDictionary.items()
        if entry[0] == vr and 0x0018 <= t >> 16 <= 0x0020 and not entry[3]
    )
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "2.25.9"
    ds.Modality = "OT"
    ds.add_new(tag, vr, [0x00180010, 0x00180010] if vr == "AT" else [0] * (8 // _SIZE[vr]))
    ds.RequestingPhysician = NAME
    data = bytearray(save(ds, ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian))
    at = data.index(struct.pack("<HH", tag >> 16, tag & 0xFFFF), 132)
    end = data.index(b"\x32\x00\x32\x10", at) + 8 + 16  # the name's element: header, value
    if implicit:
        struct.pack_into("<I", data, at + 4, end - (at + 8))
    else:
        struct.pack_into("<H", data, at + 6, end - (at + 8))
    return bytes(data)


_SIZE = {"AT": 4, "FD": 8, "FL": 4, "SL": 4, "SS": 2, "UL": 4, "US": 2}


@pytest.mark.parametrize("vr", sorted(_SIZE))
@pytest.mark.parametrize("implicit", [False, True])
def test_both_learning_roads_learn_a_name_swallowed_into_numbers(vr: str, implicit: bool) -> None:
    data = _numbers_then_name(vr, implicit)
    assert b"Zqvothian" in data
    for terms in (postcheck.learn_terms(data), postcheck.learn_terms_spans(data)):
        assert {"zqvothian", "drxel"} <= {t.casefold() for t in terms.always}


def _simple_frame_list(implicit: bool, grow: bool = True) -> bytes:
    """The fuzzer's find (seed 14): a kept Simple Frame List (UL) grown over the patient's
    name and ID, which follow it; 8 bytes of the value's own, 4-byte aligned."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = "2.25.10"
    ds.Modality = "SR"
    ds.SimpleFrameList = [1, 2]
    ds.PatientName = "Zqvothian^Drxel1"  # 16 bytes: every element here is 4-byte aligned
    ds.PatientID = "QX77412305ZZ"
    data = bytearray(save(ds, ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian))
    if grow:
        at = data.index(b"\x08\x00\x61\x11", 132)
        end = data.index(b"QX77412305ZZ") + 12
        if implicit:
            struct.pack_into("<I", data, at + 4, end - (at + 8))
        else:
            struct.pack_into("<H", data, at + 6, end - (at + 8))
    return bytes(data)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("policy", ["default", "tcia"])
@pytest.mark.parametrize("native", [False, True])
def test_a_name_swallowed_into_a_kept_number_list_is_never_released(
    implicit: bool, policy: str, native: bool
) -> None:
    data = _simple_frame_list(implicit)
    got = _clean(data, policy, native)
    assert got.status == "quarantined", got.reason
    assert got.data is None or b"Zqvothian" not in bytes(got.data)
    # The control: the same file with the UL list's own length is released without them.
    clean = _clean(_simple_frame_list(implicit, grow=False), policy, native)
    assert clean.status == "written", clean.reason
    assert b"Zqvothian" not in bytes(clean.data) and b"QX77412305" not in bytes(clean.data)


def test_every_vr_is_text_checked_binary_searched_or_a_sequence() -> None:
    # A VR in none of the three would let a grown length hide elements from both defences.
    from medveil.dicom import strict
    from medveil.dicom.vr import LONG_VRS, SHORT_VRS
    from medveil.verify import hidden

    assert set(strict._TEXT_VRS) | set(hidden._BINARY_VRS) | {"SQ"} == LONG_VRS | SHORT_VRS
    assert not set(strict._TEXT_VRS) & set(hidden._BINARY_VRS)


def test_random_binary_values_hold_no_names() -> None:
    # Chance bytes must not read as a hunted header with a text value: 4 MiB of them, and
    # LUT-like ramps that hold every 16-bit tag group value in turn.
    rng = np.random.default_rng(20261207)
    noise = rng.integers(0, 256, size=4 << 20, dtype=np.uint8).tobytes()
    ramp = np.arange(1 << 16, dtype="<u2").tobytes() * 2
    assert hidden_in([noise, ramp, os.urandom(1 << 16)]) == []


def test_headers_of_both_encodings_are_found() -> None:
    name = b"Qzdoebrak^Wx"
    explicit = b"\x00" * 6 + b"\x10\x00\x10\x00PN" + struct.pack("<H", len(name)) + name
    implicit = b"\x00" * 6 + b"\x10\x00\x20\x00" + struct.pack("<I", 10) + b"QX77412305"
    as_un = b"\x08\x00\x90\x00UN\x00\x00" + struct.pack("<I", len(name)) + name
    got = hidden_in([explicit, implicit, as_un])
    assert got == [
        (0x00100010, "PN", ("Qzdoebrak^Wx",)),
        (0x00100020, "LO", ("QX77412305",)),
        (0x00080090, "PN", ("Qzdoebrak^Wx",)),
    ]
    # Not text, or too short to be one: not taken.
    assert hidden_in([b"\x10\x00\x10\x00PN\x04\x00\x01\x02\x03\x04"]) == []
    assert hidden_in([b"\x10\x00\x10\x00PN\x02\x00AB"]) == []


@pytest.mark.parametrize("implicit", [False, True])
def test_the_verifier_learns_the_swallowed_name(implicit: bool, tmp_path: Path) -> None:
    # medveil verify judges any tool's output against the originals: it reads them with
    # pydicom, which takes the swallowed elements as bytes of the LUT data.
    from medveil.verify.values import learn

    path = tmp_path / "palette.dcm"
    path.write_bytes(_palette(implicit, nested=True))
    index = learn([path])
    assert {"zqvothian", "drxel"} <= set(index.values)
    assert index.values["zqvothian"].kind == "names"
