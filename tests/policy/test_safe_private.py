"""Retain Safe Private's verdict per element, and what well-known UIDs are."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medveil.policy.choices import SafePrivateVerdict
from medveil.policy.keys import is_well_known_uid
from medveil.policy.schema import Policy
from medveil.policy.standard import (
    Option,
    safe_private_elements,
    safe_private_verdict,
    value_fits_vr,
)
from pydicom._uid_dict import UID_dictionary
from pydicom.valuerep import DSfloat

TABLE = safe_private_elements()
SEQUENCES = [e for e in TABLE.values() if e.vr == "SQ"]
BY_VR = {e.vr: e for e in TABLE.values()}

# A valid value of each VR the table uses, as a file holds it.
VALID = {
    "DS": b"1.5\\-2e3",
    "IS": b"42 ",
    "CS": b"YES ",
    "UI": b"1.2.3.4\x00",
    "LO": b"anything goes",
    "SH": b"short",
    "ST": b"a text",
    "LT": b"a text",
    "FL": struct.pack("<2f", 1.0, 2.0),
    "FD": struct.pack("<d", 1.0),
    "US": struct.pack("<H", 7),
    "SS": struct.pack("<h", -7),
    "UL": struct.pack("<I", 7),
    "SL": struct.pack("<i", -7),
    "AT": struct.pack("<HH", 0x10, 0x10),
    "OB": b"\x01\x02",
    "OW": b"\x01\x02",
    "OW/OB": b"\x01\x02",
}


def test_every_sequence_row_is_walked_not_kept_verbatim() -> None:
    assert len(SEQUENCES) == 55
    for entry in SEQUENCES:
        for vr in ("SQ", "UN", None):
            assert safe_private_verdict(entry, vr, None) is SafePrivateVerdict.RECURSE
        assert safe_private_verdict(entry, "LO", b"Doe^John") is SafePrivateVerdict.NOT_SAFE


def test_every_row_keeps_a_valid_value_of_its_vr() -> None:
    for entry in TABLE.values():
        if entry.vr in ("SQ", ""):
            continue
        value = VALID[entry.vr]
        assert safe_private_verdict(entry, None, value) is SafePrivateVerdict.KEEP, entry
        written = entry.vr.split("/")[0]
        assert safe_private_verdict(entry, written, value) is SafePrivateVerdict.KEEP, entry


@pytest.mark.parametrize("vr", ["DS", "IS", "CS", "UI", "FL", "US"])
def test_another_vr_than_the_tables_is_not_safe(vr) -> None:
    entry = BY_VR[vr]
    for other in ("LO", "PN", "SH", "UT"):
        assert safe_private_verdict(entry, other, b"DOE^JOHN") is SafePrivateVerdict.NOT_SAFE
    # Without a VR in the file (Implicit VR), the value itself must parse as the table's.
    assert safe_private_verdict(entry, None, b"Doe^John, 12 Elm St") is SafePrivateVerdict.NOT_SAFE
    assert safe_private_verdict(entry, "UN", b"Doe^John, 12 Elm St") is SafePrivateVerdict.NOT_SAFE


def test_rows_without_a_vr_accept_numbers_only() -> None:
    entry = next(e for e in TABLE.values() if e.vr == "")
    assert safe_private_verdict(entry, "FD", VALID["FD"]) is SafePrivateVerdict.KEEP
    assert safe_private_verdict(entry, "LO", b"Doe") is SafePrivateVerdict.NOT_SAFE


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_ds_syntax_agrees_with_pydicom(x: float) -> None:
    text = str(DSfloat(x, auto_format=True)).encode()
    assert value_fits_vr("DS", text)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ^ ,.", min_size=1, max_size=16))
def test_names_are_not_numbers(name: str) -> None:
    if any(c.isalpha() for c in name):
        assert not value_fits_vr("DS", name.encode())
        assert not value_fits_vr("IS", name.encode())
        assert not value_fits_vr("UI", name.encode())


def test_compiled_policy_gives_the_verdict_only_under_the_option() -> None:
    entry = SEQUENCES[0]
    tag = (entry.group << 16) | 0x1000 | entry.offset
    on = Policy(options=(Option.RETAIN_SAFE_PRIVATE,)).compile()
    assert on.safe_private_verdict(entry.creator, tag, "SQ", None) is SafePrivateVerdict.RECURSE
    assert Policy().compile().safe_private_verdict(entry.creator, tag, "SQ", None) is None
    assert on.safe_private_verdict("NOT A CREATOR", tag, "SQ", None) is None


def test_well_known_uids_are_the_dictionarys() -> None:
    assert all(is_well_known_uid(uid) for uid in UID_dictionary)
    assert is_well_known_uid("1.2.840.10008.1.2.1\x00")
    # Minted under the DICOM root, with a date in it: an instance UID like any other.
    assert not is_well_known_uid("1.2.840.10008.5.1.4.1.1.2.20240101.123456")
    assert not is_well_known_uid("1.2.840.10008.999")


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=6))
def test_uids_outside_the_dictionary_are_not_well_known(parts: list[int]) -> None:
    uid = "1.2.840.10008." + ".".join(map(str, parts))
    assert is_well_known_uid(uid) == (uid in UID_dictionary)
