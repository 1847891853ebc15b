"""Elements inside other elements' binary values: what a grown length swallowed.

A length grown past its value makes the elements after it part of that value. Every reader
then sees one binary element (palette or LUT data, a waveform, an unknown UN value, which
many policies keep) and never reads the names inside it as names: no rule removes them and
no learner learns them. This module finds the element headers of person names and of the
patient's identity inside binary values, so that the post-check hunts their values in the
output like any other name (a file that releases one is quarantined).

The search is for exact header bytes (tag, then the tag's own VR or UN and a length in
Explicit VR, or a length in Implicit VR) whose value is printable text: chance bytes in a
binary value pass all of that with negligible odds, so a clean file is not refused.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from pydicom._dicom_dict import DicomDictionary  # datadict does not re-export it
from pydicom.datadict import tag_for_keyword

from medveil._core import termsearch
from medveil.dicom.keywords import IDENTITY_KEYWORDS
from medveil.dicom.vr import LONG_VR_BYTES
from medveil.verify.rawscan import PIXEL_TAGS, RawLayout

# Values a reader takes as bytes or numbers (the scanner's VR codes, little-endian), where
# swallowed elements stay whole and unread: every VR but text (the strict check refuses
# control bytes in those) and SQ (its items are read). Numbers count too: a kept UL list
# (Simple Frame List) grown over the patient's elements hides them as more numbers.
_BINARY_VRS = (
    *("OB", "OW", "OF", "OD", "OL", "OV", "SV", "UV", "UN"),
    *("AT", "FD", "FL", "SL", "SS", "UL", "US"),
)
_BINARY_CODES = frozenset(int.from_bytes(v.encode(), "little") for v in _BINARY_VRS)
# The same codes as a table over every 16-bit code: one numpy step picks a file's rows.
_BINARY_TABLE = np.zeros(1 << 16, dtype=bool)
_BINARY_TABLE[sorted(_BINARY_CODES)] = True
# Longest value taken as one hidden text: a PN of three 64-character groups and more.
_MAX_VALUE = 1024
_MIN_LETTERS = 3
_EXTRA_KEYWORDS = ("InstitutionName", "InstitutionAddress")


@lru_cache(maxsize=1)
def _hunted() -> tuple[dict[int, bytes], termsearch.Automaton]:
    """(tag -> its dictionary VR, an automaton over the tags' little-endian bytes)."""
    tags: dict[int, bytes] = {}
    for tag, entry in DicomDictionary.items():
        if entry[0] == "PN" and not tag >> 16 & 1:
            tags[tag] = b"PN"
    for kw in (*IDENTITY_KEYWORDS, *_EXTRA_KEYWORDS):
        found = tag_for_keyword(kw)
        if found is not None:
            tags[found] = DicomDictionary[found][0].split(" or ")[0].encode()
    ordered = sorted(tags)
    patterns = [struct.pack("<HH", t >> 16, t & 0xFFFF) for t in ordered]
    return dict(zip(ordered, (tags[t] for t in ordered), strict=True)), termsearch.Automaton(
        patterns, "substring"
    )


def _value_at(region: bytes, at: int, vr: bytes) -> tuple[str, bytes] | None:
    """(VR, value bytes) of a header of a hunted tag at ``at``, in either encoding; or None."""
    head = region[at + 4 : at + 6]
    if head in (vr, b"UN"):
        if head in LONG_VR_BYTES:
            if region[at + 6 : at + 8] != b"\x00\x00" or len(region) < at + 12:
                return None
            (length,) = struct.unpack_from("<I", region, at + 8)
            start = at + 12
        else:
            if len(region) < at + 8:
                return None
            (length,) = struct.unpack_from("<H", region, at + 6)
            start = at + 8
    else:
        if len(region) < at + 8:
            return None
        (length,) = struct.unpack_from("<I", region, at + 4)
        start = at + 8
    if not 0 < length <= min(_MAX_VALUE, len(region) - start):
        return None
    return vr.decode(), region[start : start + length]


def _text_of(value: bytes) -> tuple[str, ...]:
    """The value's text values when it reads as text with letters in it; () otherwise."""
    body = value.rstrip(b"\x00 ")
    if not body or any(b < 0x20 and b not in (0x09, 0x0A, 0x0D, 0x1B) for b in body):
        return ()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    if sum(ch.isalpha() or ch.isdigit() for ch in text) < _MIN_LETTERS:
        return ()
    return tuple(v.strip() for v in text.split("\\") if v.strip())


def hidden_in(regions: Iterable[bytes]) -> list[tuple[int, str, tuple[str, ...]]]:
    """(tag, VR, texts) of every hunted element whose header lies in one of the regions."""
    vrs, automaton = _hunted()
    order = sorted(vrs)
    found: list[tuple[int, str, tuple[str, ...]]] = []
    for region in regions:
        for start, _, k in automaton.find(region):
            tag = order[k]
            got = _value_at(region, start, vrs[tag])
            if got is None:
                continue
            texts = _text_of(got[1])
            if texts:
                found.append((tag, got[0], texts))
    return found


def _binary_rows(codes: np.ndarray) -> np.ndarray:
    """Which rows have a VR code of _BINARY_CODES (a code outside 16 bits is none)."""
    in_range = (codes >= 0) & (codes < 1 << 16)
    return _BINARY_TABLE[np.where(in_range, codes, 0)] & in_range


def may_hide(tags: np.ndarray, codes: np.ndarray, pixel: np.ndarray) -> bool:
    """Whether any element row outside pixel data has a VR :func:`hidden_elements` reads.

    A function of the rows' structure alone (tags, VR codes, pixel rows): when False,
    hidden_elements finds nothing in any file of that structure.
    """
    return bool((_binary_rows(codes) & (tags >= 0) & ~pixel).any())


def hidden_elements(
    data: bytes | bytearray | memoryview, rows: np.ndarray, codes: np.ndarray, pixel: np.ndarray
) -> list[tuple[int, str, tuple[str, ...]]]:
    """(tag, VR, texts) of every person name or identity element found inside the binary
    value of another element, from the scanner's rows of ``data`` (their VR codes as read,
    and which rows are pixel data), in file order."""
    picked = np.flatnonzero(
        _binary_rows(codes) & (rows[:, 0] >= 0) & ~pixel & (rows[:, 5] - rows[:, 3] >= 10)
    ).tolist()
    if not picked:
        return []
    return hidden_in(bytes(data[int(rows[i, 3]) : int(rows[i, 5])]) for i in picked)


def hidden_in_spans(lays: Iterable[RawLayout]) -> list[tuple[int, str, tuple[str, ...]]]:
    """:func:`hidden_elements` over the walker's spans (the files the scanner rows miss)."""
    return hidden_in(
        bytes(lay.data[sp.start : sp.end])
        for lay in lays
        for sp in lay.spans
        if sp.vr in _BINARY_VRS and sp.tag not in PIXEL_TAGS and sp.end - sp.start >= 10
    )
