"""A structure-aware mutation fuzzer for the native road and the element scanner.

Seeds are real DICOM files (pydicom's test files, read without downloading) and synthetic
ones, each with distinctive PHI planted before it is mutated. Mutations know the element
structure (from the scanner's rows of the seed): length fields set to 0, odd, undefined or
huge, truncation at element boundaries, delimiters dropped, sequences nested past the
scanner's limit, VR swaps, transfer syntax swaps (explicit/implicit mix), odd-length and
duplicate or out-of-order elements, wrong group lengths, encapsulated pixel data with bad
fragments and offset tables, values replaced, bits flipped. Edits that resize a value fix
the defined lengths around it, so that many mutants pass the structure check and reach
the engines.

The oracle (:func:`check`): no crash or sanitizer report (run under .ci/sanitize), the
native road gives clean_instance's result with the road off exactly (or both quarantine),
the core's road never writes what the raw-byte engine declines, and a released output
never holds a planted PHI string whose element is still intact in the input.

``python -m tests.native.fuzzing --minutes N`` runs the loop for a bounded time; each
input is saved to ``--out``/current.bin before it runs, so a crash or hang leaves it.
"""

from __future__ import annotations

import argparse
import faulthandler
import io
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from medveil._core import fastpath, scan_elements
from medveil.engine import instance as inst
from medveil.engine.dataset import Deidentifier
from medveil.engine.native import NativeOutcome
from medveil.engine.raw import _SQ_TAGS, NotRaw
from medveil.policy.presets import load_policy
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from tests.native.roads import SECRET, native, quiet

UNDEF = 0xFFFFFFFF
EXPLICIT = b"1.2.840.10008.1.2.1\x00"
IMPLICIT = b"1.2.840.10008.1.2\x00"
SYNTAXES = [
    EXPLICIT,
    IMPLICIT,
    b"1.2.840.10008.1.2.4.50",
    b"1.2.840.10008.1.2.5\x00",
    b"1.2.840.10008.1.2.2\x00",
    b"1.2.840.10008.1.2.1.99",
    b"1.2.840.10008.1.2.4.90",
    b"",
    b"1.2.840.10008.1.2.1 ",
]
LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"UC",
    b"UR",
    b"UT",
    b"SV",
    b"UV",
    b"UN",
}
VRS = [
    b"AE",
    b"AS",
    b"AT",
    b"CS",
    b"DA",
    b"DS",
    b"DT",
    b"FL",
    b"FD",
    b"IS",
    b"LO",
    b"LT",
    b"PN",
    b"SH",
    b"SL",
    b"SS",
    b"ST",
    b"TM",
    b"UI",
    b"UL",
    b"US",
    b"OB",
    b"OW",
    b"SQ",
    b"UN",
    b"UT",
    b"UC",
    b"UR",
    b"OF",
    b"OD",
    b"SV",
    b"UV",
    b"XX",
    b"\x00\x00",
    b"pn",
    b"  ",
]
# Planted PHI: distinctive strings that must never be released while their element stands.
FAMILY, GIVEN = "ZQXFAMILY", "ZQXGIVEN"
PHI = {
    "PatientName": f"{FAMILY}^{GIVEN}",
    "PatientID": "ZQX424242",
    "OtherPatientIDs": "ZQX515151",
    "AccessionNumber": "ZQXACC77",
    "ReferringPhysicianName": "ZQXDOCTOR^ZQXJANE",
    "InstitutionName": "ZQXGENERAL HOSPITAL",
    "PatientAddress": "ZQX 12 ELM STREET",
}
MARKERS = [
    b"ZQXFAMILY",
    b"ZQXGIVEN",
    b"ZQX424242",
    b"ZQX515151",
    b"ZQXACC77",
    b"ZQXDOCTOR",
    b"ZQXJANE",
    b"ZQXGENERAL",
    b"ZQX 12 ELM",
]
PYDICOM_SEEDS = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_padded.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG-lossy.dcm",
    "JPEG2000.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "rtdose_1frame.dcm",
    "reportsi.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "nested_priv_SQ.dcm",
    "priv_SQ.dcm",
    "UN_sequence.dcm",
    "empty_charset_LEI.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "examples_overlay.dcm",
    "examples_palette.dcm",
    "liver_1frame.dcm",
    "badVR.dcm",
    "reportsi_with_empty_number_tags.dcm",
    "image_dfl.dcm",
    "693_J2KI.dcm",
    "JPGExtended.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "examples_rgb_color.dcm",
    "rtdose_rle_1frame.dcm",
]


# ---------------------------------------------------------------------- seeds
def _plant(ds: Dataset) -> None:
    """Distinctive PHI at the top, in a sequence item and in a private block."""
    for kw, value in PHI.items():
        setattr(ds, kw, value)
    ds.PatientBirthDate = "19510227"
    item = Dataset()
    item.PatientID = PHI["OtherPatientIDs"]
    item.IssuerOfPatientID = "ZQXISSUER"
    ds.OtherPatientIDsSequence = Sequence([item])
    block = ds.private_block(0x0029, "ZQX PRIVATE", create=True)
    block.add_new(0x10, "LO", PHI["PatientName"])


def _write(ds: Dataset, implicit: bool | None = None) -> bytes:
    buf = io.BytesIO()
    if implicit is not None:
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        )
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def ct_dataset() -> Dataset:
    """The bare CT instance the synthetic files start from: meta, SOP, study, series."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.StudyInstanceUID = "1.2.3.4.5.1"
    ds.SeriesInstanceUID = "1.2.3.4.5.2"
    ds.Modality = "CT"
    return ds


def synthetic(implicit: bool, pixels: bool, nested: int = 2) -> bytes:
    """A small CT-like file with planted PHI, sequences nested `nested` deep and pixels."""
    ds = ct_dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDate = "20240101"
    ds.StudyDescription = "CHEST"
    ds.PatientAge = "045Y"
    ds.PatientSex = "F"
    _plant(ds)
    inner: Dataset | None = None
    for _ in range(nested):
        item = Dataset()
        item.CodeValue = "T-D3000"
        item.CodingSchemeDesignator = "SRT"
        item.CodeMeaning = "Chest"
        if inner is not None:
            item.AnatomicRegionSequence = Sequence([inner])
        inner = item
    if inner is not None:
        ds.AnatomicRegionSequence = Sequence([inner])
    if pixels:
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    return _write(ds, implicit)


def seeds(limit: int | None = None) -> list[tuple[str, bytes]]:
    """(name, bytes) seeds with planted PHI: pydicom's files (no download) and synthetic ones."""
    out: list[tuple[str, bytes]] = [
        ("synthetic-explicit", synthetic(False, True)),
        ("synthetic-implicit", synthetic(True, True)),
        ("synthetic-nopixels", synthetic(False, False, 4)),
    ]
    with quiet():
        for name in PYDICOM_SEEDS[:limit]:
            try:
                path = get_testdata_file(name, download=False)
                if path is None:
                    continue
                ds = pydicom.dcmread(str(path))
                ts = ds.file_meta.TransferSyntaxUID
                if not ts.is_little_endian or ts.is_deflated:
                    out.append((name, Path(str(path)).read_bytes()))  # as it comes
                    continue
                _plant(ds)
                out.append((name, _write(ds)))
            except Exception:
                continue
    return out


# ---------------------------------------------------------------------- structure
@dataclass
class Layout:
    """Where a file's elements are: meta end, syntax, scanner rows of meta and body."""

    data: bytes
    meta_end: int
    implicit: bool
    meta: np.ndarray
    body: np.ndarray

    @property
    def rows(self) -> list[list[int]]:
        """Element and item rows of the whole file (meta first)."""
        return [*self.meta.tolist(), *self.body.tolist()]


def meta_end(d: bytes) -> int:
    """raw._meta_end without raising."""
    pos = 132
    while pos + 8 <= len(d) and d[pos : pos + 2] == b"\x02\x00":
        if d[pos + 4 : pos + 6] in LONG_VRS - {b"UN"}:
            if pos + 12 > len(d):
                break
            pos += 12 + struct.unpack_from("<I", d, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", d, pos + 6)[0]
    return pos


def layout(d: bytes) -> Layout | None:
    """The file's layout, or None when the scanner cannot read it."""
    if len(d) < 144 or d[128:132] != b"DICM":
        return None
    end = meta_end(d)
    if end > len(d):
        return None
    meta, _, err = scan_elements(d, 132, end, False, _SQ_TAGS)
    if err is not None:
        return None
    implicit = False
    for r in meta.tolist():
        if r[0] == 0x00020010:
            implicit = d[r[3] : r[5]].rstrip(b"\x00 ") == IMPLICIT.rstrip(b"\x00")
    body, _, err = scan_elements(d, end, len(d), implicit, _SQ_TAGS)
    if err is not None:
        return None
    return Layout(d, end, implicit, meta, body)


def _len_field(d: bytes, row: list[int], implicit: bool) -> tuple[int, int]:
    """(offset, size) of a row's length field."""
    tag, _, start, vstart = row[0], row[1], row[2], row[3]
    if tag == -1:
        return start + 4, 4
    if implicit and tag >> 16 != 2:
        return start + 4, 4
    if vstart - start == 12:
        return start + 8, 4
    return start + 6, 2


def _set_len(d: bytearray, off: int, size: int, value: int) -> None:
    if size == 2:
        struct.pack_into("<H", d, off, value & 0xFFFF)
    else:
        struct.pack_into("<I", d, off, value & 0xFFFFFFFF)


def resize(lay: Layout, row_index: int, value: bytes) -> bytes:
    """The file with one element's value replaced, defined lengths around it fixed."""
    rows = lay.rows
    row = rows[row_index]
    d = lay.data
    implicit = lay.implicit
    vstart, vend = row[3], row[5]
    off, size = _len_field(d, row, implicit and row_index >= len(lay.meta))
    if size == 2 and len(value) > 0xFFFF:
        value = value[:0xFFFF]
    delta = len(value) - (vend - vstart)
    out = bytearray(d[:vstart] + value + d[vend:])
    if row[4] != UNDEF:
        _set_len(out, off, size, len(value))
    # Ancestors: items and sequences that contain the element and have a defined length.
    for r in rows:
        if r is row:
            continue
        if r[0] == -1:
            istart, iend = r[2], r[3]
            if istart < row[2] and iend >= vend:
                ilen = struct.unpack_from("<I", d, istart + 4)[0]
                if ilen != UNDEF:
                    struct.pack_into("<I", out, istart + 4, (ilen + delta) & 0xFFFFFFFF)
        elif r[6] >= 0 and r[2] < row[2] and r[5] >= vend and r[4] != UNDEF:
            o, s = _len_field(d, r, implicit)
            _set_len(out, o, s, r[4] + delta)
    return bytes(out)


# ---------------------------------------------------------------------- mutators
def edit(lay: Layout, at: int, remove: int, insert: bytes, depth: int) -> bytes:
    """bytes [at, at + remove) replaced by insert, at nesting depth `depth` (0: top level);
    the defined lengths of the items and sequences around it fixed."""
    d = lay.data
    delta = len(insert) - remove
    out = bytearray(d[:at] + insert + d[at + remove :])
    body = lay.body.tolist()
    for r in body:
        if r[0] == -1:
            # Items at depth <= depth hold the edit when it lies within them.
            if r[7] <= depth and r[2] < at and r[3] >= at + remove:
                ilen = struct.unpack_from("<I", d, r[2] + 4)[0]
                if ilen != UNDEF:
                    struct.pack_into("<I", out, r[2] + 4, (ilen + delta) & 0xFFFFFFFF)
        elif r[6] >= 0 and r[7] < depth and r[2] < at and r[5] >= at + remove and r[4] != UNDEF:
            o, sz = _len_field(d, r, lay.implicit)
            _set_len(out, o, sz, r[4] + delta)
    return bytes(out)


def m_item_insert(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """An element (PHI, a UID, a charset, a nested sequence) put into a sequence item."""
    lay = layout(d)
    if lay is None:
        return d
    body = lay.body.tolist()
    items = [k for k, r in enumerate(body) if r[0] == -1]
    if not items:
        return m_splice(rng, d, _)
    k = rng.choice(items)
    item = body[k]
    depth = item[7]
    tag, vr, value = rng.choice(
        [
            (0x00100010, b"PN", PHI["PatientName"].encode()),
            (0x00100020, b"LO", b"ZQX424242 "),
            (0x00080005, b"CS", b"ISO_IR 100"),
            (0x00080018, b"UI", b"1.2.3.4.5.6.7.8\x00"),
            (0x00081155, b"UI", b"1.2.3.99\\1.2.4"),
            (0x00080100, b"SH", b"ZQX424242 "),
            (0x00080104, b"LO", PHI["PatientName"].encode()),
            (0x00080102, b"SH", b"99ZQX "),
            (0x00091010, b"LO", PHI["PatientName"].encode()),
            (0x00090010, b"LO", b"ZQX PRIVATE "),
            (0x7FE00010, b"OB", b"\x00\x01"),
            (0x00101010, b"AS", b"120Y"),
            (0x00081030, b"UN", PHI["PatientName"].encode()),
            (0x00400275, b"SQ", b""),
        ]
    )
    elem = _elem(tag, vr, value, lay.implicit)
    # After the item's header, before the first child with a larger tag.
    pos = item[2] + 8
    for r in body[k + 1 :]:
        if r[7] < depth or (r[0] == -1 and r[7] == depth):
            break
        if r[0] != -1 and r[7] == depth:
            if r[0] > tag:
                break
            pos = r[5]
    return edit(lay, pos, 0, elem, depth)


def m_revr(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """An element rewritten whole under another VR (explicit files): a well-formed mismatch."""
    lay = layout(d)
    if lay is None or lay.implicit:
        return m_item_insert(rng, d, _)
    body = lay.body.tolist()
    leaves = [r for r in body if r[0] != -1 and r[6] < 0 and r[4] != UNDEF]
    if not leaves:
        return d
    r = rng.choice(leaves)
    vr = rng.choice([v for v in VRS if v not in (b"SQ", b"XX", b"\x00\x00", b"pn", b"  ")])
    value = d[r[3] : r[5]]
    if vr not in LONG_VRS and len(value) > 0xFFFF:
        return d
    return edit(lay, r[2], r[5] - r[2], _elem(r[0], vr, value, False), r[7])


Mutator = Callable[[random.Random, bytes, list[tuple[str, bytes]]], bytes]


def _pick(rng: random.Random, lay: Layout, kind: str = "any") -> tuple[int, list[int]] | None:
    rows = lay.rows
    cands = [
        (i, r)
        for i, r in enumerate(rows)
        if kind == "any"
        or (kind == "elem" and r[0] != -1)
        or (kind == "body" and r[0] != -1 and i >= len(lay.meta))
        or (kind == "seq" and r[0] != -1 and r[6] >= 0)
        or (kind == "item" and r[0] == -1)
        or (kind == "leaf" and r[0] != -1 and r[6] < 0)
    ]
    return rng.choice(cands) if cands else None


def _picked(
    rng: random.Random, d: bytes, kind: str = "any"
) -> tuple[Layout, int, list[int]] | None:
    """The file's layout and one random row of `kind` (None when there is none)."""
    lay = layout(d)
    if lay is None:
        return None
    got = _pick(rng, lay, kind)
    return None if got is None else (lay, got[0], got[1])


def _meta_length_fixed(out: bytes) -> bytes:
    """The file meta's group length made right again (where the file has one)."""
    end = meta_end(out)
    if out[132:136] == b"\x02\x00\x00\x00" and end >= 144:
        return out[:140] + struct.pack("<I", end - 144) + out[144:]
    return out


def m_flip(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """Flip a few bits, mostly in the header area."""
    out = bytearray(d)
    for _ in range(rng.randint(1, 6)):
        hi = len(out) if rng.random() < 0.3 else min(len(out), 2048)
        pos = rng.randrange(128, max(129, hi))
        if pos < len(out):
            out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_length(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """Set one length field to 0, odd, undefined, huge or off by a little."""
    lay = layout(d)
    if lay is None:
        return m_flip(rng, d, _)
    got = _pick(rng, lay)
    if got is None:
        return d
    i, row = got
    off, size = _len_field(d, row, lay.implicit and i >= len(lay.meta))
    cur = row[4]
    value = rng.choice(
        [
            0,
            1,
            cur | 1,
            cur + 1,
            cur - 1,
            cur + 2,
            cur - 2,
            UNDEF,
            0xFFFF,
            0xFFFE,
            0x7FFFFFFF,
            0xFFFFFFF0,
            0x80000000,
            len(d) - row[3],
            len(d) - row[3] + 2,
            cur * 2,
            0xFFFFFFFE,
        ]
    )
    out = bytearray(d)
    _set_len(out, off, size, value)
    return bytes(out)


def m_truncate(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """Cut the file at an element boundary (or inside a header or value)."""
    lay = layout(d)
    if lay is None:
        return d[: rng.randrange(len(d) + 1)]
    got = _pick(rng, lay)
    if got is None:
        return d
    row = got[1]
    cut = rng.choice(
        [row[2], row[2] + 4, row[2] + 6, row[3], row[3] + 1, row[5], row[5] - 1, row[5] - 8]
    )
    return d[: max(0, min(len(d), cut))]


def m_delimiter(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """Drop, duplicate or corrupt an item or sequence delimiter."""
    hits = [
        i
        for i in range(len(d) - 3)
        if d[i : i + 2] == b"\xfe\xff"
        and d[i + 2 : i + 4] in (b"\x0d\xe0", b"\xdd\xe0", b"\x00\xe0")
    ]
    if not hits:
        return m_undefined(rng, d, _)
    i = rng.choice(hits)
    op = rng.randrange(4)
    if op == 0:
        return d[:i] + d[i + 8 :]
    if op == 1:
        return d[:i] + d[i : i + 8] + d[i:]
    if op == 2:
        return d[:i] + b"\xfe\xff\xdd\xe0" + d[i + 4 :]
    return d[: i + 4] + struct.pack("<I", rng.choice([0, 4, 8, UNDEF, 0x10000])) + d[i + 8 :]


def m_undefined(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """A defined-length sequence or item made undefined, with or without its delimiter."""
    lay = layout(d)
    if lay is None:
        return d
    got = _pick(rng, lay, rng.choice(["seq", "item"]))
    if got is None:
        return d
    i, row = got
    out = bytearray(d)
    off, size = _len_field(d, row, lay.implicit and i >= len(lay.meta))
    if size != 4 or struct.unpack_from("<I", d, off)[0] == UNDEF:
        return d
    _set_len(out, off, size, UNDEF)
    end = row[3] if row[0] == -1 else row[5]
    if rng.random() < 0.5:
        delim = (
            b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
            if row[0] == -1
            else b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        )
        out[end:end] = delim
    return bytes(out)


def nested_sequence(depth: int, implicit: bool, undefined: bool, leaf: bytes = b"") -> bytes:
    """(0040,0275) nested `depth` deep, `leaf` (encoded elements) in the innermost item."""
    body = leaf
    for _ in range(depth):
        if undefined:
            item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + body + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
            value = item + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
            length = UNDEF
        else:
            item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(body)) + body
            value = item
            length = len(value)
        head = struct.pack("<HH", 0x0040, 0x0275)
        head += struct.pack("<I", length) if implicit else b"SQ\x00\x00" + struct.pack("<I", length)
        body = head + value
    return body


def _elem(tag: int, vr: bytes, value: bytes, implicit: bool) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", len(value)) + value
    if vr in LONG_VRS:
        return head + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + vr + struct.pack("<H", len(value) & 0xFFFF) + value


def _insert_top(d: bytes, lay: Layout, tag: int, chunk: bytes) -> bytes:
    """chunk inserted at the top level in tag order."""
    pos = len(d)
    for r in lay.body.tolist():
        if r[0] != -1 and r[7] == 0 and r[0] > tag:
            pos = r[2]
            break
    return d[:pos] + chunk + d[pos:]


def m_deep(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """A sequence nested around the scanner's depth limit or far past it, PHI inside."""
    lay = layout(d)
    if lay is None:
        return d
    depth = rng.choice([1, 2, 63, 64, 65, 66, 100, 1000])
    leaf = _elem(0x00100010, b"PN", PHI["PatientName"].encode(), lay.implicit)
    chunk = nested_sequence(depth, lay.implicit, rng.random() < 0.5, leaf)
    return _insert_top(d, lay, 0x00400275, chunk)


def m_vr(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """Another VR written over an element's (explicit VR only)."""
    picked = _picked(rng, d, "elem")
    if picked is None:
        return d
    lay, i, row = picked
    if lay.implicit and i >= len(lay.meta):
        return m_syntax(rng, d, _)
    out = bytearray(d)
    out[row[2] + 4 : row[2] + 6] = rng.choice(VRS)
    return bytes(out)


def m_syntax(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """The transfer syntax swapped: explicit read as implicit and back, or others."""
    lay = layout(d)
    if lay is None:
        return d
    for i, r in enumerate(lay.meta.tolist()):
        if r[0] == 0x00020010:
            new = rng.choice(SYNTAXES)
            out = resize(lay, i, new)
            return _meta_length_fixed(out) if rng.random() < 0.7 else out
    return d


def m_value(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """A value replaced: odd length, empty, long, binary, non-ASCII, escapes, backslashes."""
    picked = _picked(rng, d, "leaf")
    if picked is None:
        return d
    lay, i, row = picked
    old = d[row[3] : row[5]]
    choices = [
        old + b"X",
        b"",
        old[:-1],
        b"\\".join([old] * 3),
        old * 40,
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
        "ZQXFAMILY^ZQXGIVEN é".encode("latin-1"),
        b"\x1b$B" + old,
        b"   ",
        b"\x00\x00",
        b"2.25.1234567890123456789012345678901234567890",
        b"1.2.3\\\\4.5",
        b"1.2.840.10008.1.2.1",
        b"120Y",
        b"089Y",
        b"ISO_IR 100\\ISO 2022 IR 87",
        b"ISO_IR 192",
        b"ISO 2022 IR 6",
        b"99LOCAL ",
        b"1" * 70000,
        b"\\".join([b"1.2.3.4.5"] * 1600),  # remapped: past a 2-byte length
    ]
    return resize(lay, i, rng.choice(choices))


def m_duplicate(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """An element written twice, or two neighbours swapped (out of order)."""
    lay = layout(d)
    if lay is None:
        return d
    top = [r for r in lay.body.tolist() if r[0] != -1 and r[7] == 0]
    if len(top) < 2:
        return d
    k = rng.randrange(len(top) - 1)
    a, b = top[k], top[k + 1]
    if rng.random() < 0.5:
        return d[: a[5]] + d[a[2] : a[5]] + d[a[5] :]
    return d[: a[2]] + d[b[2] : b[5]] + d[a[2] : a[5]] + d[b[5] :]


def m_group_length(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """A wrong group length: the meta's, or one inserted before a group."""
    lay = layout(d)
    if lay is None:
        return d
    if rng.random() < 0.4:
        out = bytearray(d)
        struct.pack_into("<I", out, 140, rng.choice([0, 1, 3, 0xFFFFFFFF, len(d), 200]))
        return bytes(out)
    top = [r for r in lay.body.tolist() if r[0] != -1 and r[7] == 0]
    if not top:
        return d
    r = rng.choice(top)
    group = r[0] >> 16
    chunk = _elem(group << 16, b"UL", struct.pack("<I", rng.choice([0, 4, 999999])), lay.implicit)
    return _insert_top(d, lay, (group << 16) - 1 if group else 0, chunk) if r[0] & 0xFFFF else d


def m_encapsulated(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """Pixel data made encapsulated (explicit files) with odd fragments and offset tables."""
    lay = layout(d)
    if lay is None or lay.implicit:
        return d
    rows = lay.rows
    pix = [i for i, r in enumerate(rows) if r[0] == 0x7FE00010]
    if not pix:
        return d
    i = pix[0]
    row = rows[i]
    frags = []
    bot = rng.choice([b"", struct.pack("<I", 0), struct.pack("<II", 0, 99999), b"\x01\x02\x03"])
    frags.append(b"\xfe\xff\x00\xe0" + struct.pack("<I", len(bot)) + bot)
    for _ in range(rng.randint(0, 4)):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 33)))
        length = len(body)
        if rng.random() < 0.2:
            length = rng.choice([length + 1, length + 100, UNDEF, 0])
        frags.append(b"\xfe\xff\x00\xe0" + struct.pack("<I", length) + body)
    if rng.random() < 0.85:
        frags.append(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    if rng.random() < 0.1:
        frags.append(b"\xfe\xff\x00\xe0\x04\x00\x00\x00ABCD")
    value = b"".join(frags)
    head = d[row[2] : row[2] + 4] + b"OB\x00\x00" + struct.pack("<I", UNDEF)
    out = d[: row[2]] + head + value + d[row[5] :]
    lay2 = layout(out)
    if lay2 is not None and rng.random() < 0.8:
        for k, r in enumerate(lay2.meta.tolist()):
            if r[0] == 0x00020010:
                return resize(lay2, k, b"1.2.840.10008.1.2.4.50")
    return out


def m_splice(rng: random.Random, d: bytes, pool: list[tuple[str, bytes]]) -> bytes:
    """A top-level element of another seed (or a planted one) put in tag order."""
    lay = layout(d)
    if lay is None:
        return d
    if rng.random() < 0.5:
        tag = rng.choice(
            [
                0x00291010,
                0x00291011,
                0x00090010,
                0x00091001,
                0x7FE00008,
                0x00081030,
                0x00400275,
                0x00080005,
                0x00101010,
                0x00080018,
                0x00180010,
                0x00111000,
                0x00080102,
                0x00080104,
            ]
        )
        vr = rng.choice([b"LO", b"UN", b"OB", b"PN", b"SQ", b"UT", b"SH", b"CS"])
        value = rng.choice(
            [PHI["PatientName"].encode(), b"ZQX424242 ", b"", b"045Y", b"ISO_IR 192", b"\xff\xfe"]
        )
        return _insert_top(d, lay, tag, _elem(tag, vr, value, lay.implicit))
    other = layout(rng.choice(pool)[1])
    if other is None or other.implicit != lay.implicit:
        return d
    top = [r for r in other.body.tolist() if r[0] != -1 and r[7] == 0]
    if not top:
        return d
    r = rng.choice(top)
    if r[5] - r[2] > 100_000:
        return d
    return _insert_top(d, lay, r[0], other.data[r[2] : r[5]])


def m_bytes(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """Random bytes inserted, deleted or overwritten."""
    if len(d) <= 132:
        return d
    pos = rng.randrange(132, len(d))
    op = rng.randrange(3)
    n = rng.choice([1, 2, 4, 8, 12])
    junk = bytes(rng.randrange(256) for _ in range(n))
    if op == 0:
        return d[:pos] + junk + d[pos:]
    if op == 1:
        return d[:pos] + d[pos + n :]
    return d[:pos] + junk + d[pos + n :]


def m_meta(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """A file meta element added, replaced or dropped, its group length fixed or not."""
    lay = layout(d)
    if lay is None:
        return d
    tag, vr, value = rng.choice(
        [
            (0x00020016, b"AE", b"ZQXFAMILY "),
            (0x00020013, b"SH", b"ZQX424242 "),
            (0x00020099, b"LO", PHI["PatientName"].encode()),
            (0x00020100, b"UI", b"1.2.3.4\x00"),
            (0x00020102, b"OB", b"ZQXFAMILY "),
            (0x00020003, b"UI", b""),
            (0x00020003, b"UI", b"1.2.3.4.5.6.7.8.9\x00"),
            (0x00020002, b"UI", b"1.2.840.10008.5.1.4.1.1.7\x00"),
            (0x00020001, b"OB", b"\x00\x01"),
            (0x00020017, b"UN", b"ZQXFAMILY "),
            (0x00020018, b"SQ", b""),
        ]
    )
    meta = lay.meta.tolist()
    elem = _elem(tag, vr, value, False)
    pos = lay.meta_end
    remove = 0
    for r in meta:
        if r[0] == tag:
            pos, remove = r[2], r[5] - r[2]
            break
        if r[0] > tag:
            pos = r[2]
            break
    if rng.random() < 0.2:
        elem = b""  # dropped (when present)
    out = d[:pos] + elem + d[pos + remove :]
    return _meta_length_fixed(out) if rng.random() < 0.8 else out


def m_hidden_sequence(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """A sequence the policy removes whole (private UN, or a removed standard one) holding
    names, IDs or undefined lengths: what the walk never visits must still count."""
    lay = layout(d)
    if lay is None:
        return d
    tag = rng.choice([0x00100010, 0x00100020, 0x0040A123, 0x00420099, 0x00111234, 0x00080005])
    text = rng.choice([PHI["PatientName"].encode(), b"ZQX424242 ", b"ISO_IR 192"])
    if rng.random() < 0.5:
        inner = struct.pack("<HHI", tag >> 16, tag & 0xFFFF, UNDEF) + (
            b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        )
    else:
        inner = struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(text)) + text
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    end = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    if lay.implicit or rng.random() < 0.3:
        seq = rng.choice([0x00081120, 0x00101002, 0x00400275])
        head = struct.pack("<HH", seq >> 16, seq & 0xFFFF)
        head += (
            struct.pack("<I", UNDEF) if lay.implicit else b"SQ\x00\x00" + struct.pack("<I", UNDEF)
        )
        return _insert_top(d, lay, seq, head + item + end)
    creator = b"\x33\x00\x10\x00LO\x04\x00ZQX "
    un = b"\x33\x00\x10\x10UN\x00\x00\xff\xff\xff\xff" + item + end
    return _insert_top(d, lay, 0x00330010, creator + un)


def m_swallow(rng: random.Random, d: bytes, _: list[tuple[str, bytes]]) -> bytes:
    """Grow one value's length to end exactly where a later sibling ends: the elements
    between become bytes of that value (a kept text, LUT data, a UN value), whole to every
    reader, so no rule and no learner sees them as elements (written as UN half the time)."""
    lay = layout(d)
    if lay is None:
        return d
    body = lay.body.tolist()
    picks = [
        k
        for k, r in enumerate(body)
        if r[0] >= 0 and r[6] < 0 and r[4] != UNDEF and r[0] != 0x7FE00010
    ]
    if not picks:
        return d
    k = rng.choice(picks)
    row = body[k]
    depth = row[7]
    ends = []
    for later in body[k + 1 :]:
        if later[0] == -1 or later[7] < depth:
            break  # the container ends here: a sibling past it is not one
        if later[7] == depth and later[0] != 0x7FE00010:
            ends.append(later[5])
    if not ends:
        return d
    grown = rng.choice(ends[:8]) - row[3]
    off, size = _len_field(d, row, lay.implicit)
    if not lay.implicit and (size == 2 or rng.random() < 0.5):
        head = d[row[2] : row[2] + 4] + b"UN\x00\x00" + struct.pack("<I", grown)
        return edit(lay, row[2], row[3] - row[2], head, depth)
    out = bytearray(d)
    _set_len(out, off, size, grown)
    return bytes(out)


MUTATORS: list[tuple[Mutator, int]] = [
    (m_flip, 3),
    (m_length, 5),
    (m_truncate, 3),
    (m_delimiter, 3),
    (m_undefined, 2),
    (m_deep, 2),
    (m_vr, 4),
    (m_syntax, 3),
    (m_value, 6),
    (m_duplicate, 3),
    (m_group_length, 2),
    (m_encapsulated, 2),
    (m_splice, 4),
    (m_bytes, 2),
    (m_item_insert, 6),
    (m_revr, 5),
    (m_meta, 3),
    (m_hidden_sequence, 3),
    (m_swallow, 3),
]


def mutate(rng: random.Random, d: bytes, pool: list[tuple[str, bytes]]) -> tuple[bytes, list[str]]:
    """One to three stacked mutations of d; returns the mutant and the mutators' names."""
    fns = [f for f, _ in MUTATORS]
    weights = [w for _, w in MUTATORS]
    names = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        fn = rng.choices(fns, weights)[0]
        d = fn(rng, d, pool)
        names.append(fn.__name__)
    return d, names


# ---------------------------------------------------------------------- oracle
@dataclass
class Stats:
    """What a fuzzing run saw."""

    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    native: int = 0
    findings: list[str] = field(default_factory=list)


def _intact_phi(data: bytes) -> list[bytes]:
    """The planted markers whose planted element is still in the input, whole."""
    out = []
    for kw, value in PHI.items():
        text = value.encode()
        if len(text) % 2:
            text += b" "
        tag = pydicom.datadict.tag_for_keyword(kw)
        assert tag is not None
        head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        if head + struct.pack("<I", len(text)) + text in data or any(
            head + vr + struct.pack("<H", len(text)) + text in data
            for vr in (b"PN", b"LO", b"SH", b"ST")
        ):
            out += [m for m in MARKERS if m in text]
    return out


def _same(ref: inst.CleanResult, got: inst.CleanResult) -> str | None:
    if got.status != ref.status or got.reason != ref.reason:
        return f"status {ref.status}/{ref.reason!r} != {got.status}/{got.reason!r}"
    if ref.status == "written":
        if got.data != ref.data:
            return "output bytes differ"
        if (got.relpath, got.row, got.actions, got.pixels) != (
            ref.relpath,
            ref.row,
            ref.actions,
            ref.pixels,
        ):
            return "records differ"
    return None


# One input in this many is also cleaned by a new engine and compared with the warm one.
FRESH_EVERY = 50


def check(engine: Deidentifier, data: bytes, stats: Stats, direct: bool = True) -> list[str]:
    """The oracle on one input; returns the problems found (empty: none)."""
    problems: list[str] = []
    with quiet():
        with native(False):
            ref = inst.clean_instance(engine, bytearray(data), "input")
        with native(True):
            first = inst.clean_instance(engine, bytearray(data), "input")
            second = inst.clean_instance(engine, bytearray(data), "input")
    stats.inputs += 1
    stats.outcomes[f"{ref.status}/{ref.engine}"] += 1
    if second.engine == "native":
        stats.native += 1
    for label, got in (("first", first), ("second", second)):
        diff = _same(ref, got)
        if diff and ref.engine == got.engine == "dataset":
            # Neither road is native's: is the reference itself the same twice?
            with quiet(), native(False):
                again = inst.clean_instance(engine, bytearray(data), "input")
            if _same(ref, again):
                problems.append(f"the Dataset engine is not deterministic here: {diff}")
                break
        if diff:
            problems.append(f"native road ({label} pass) differs: {diff}")
    if stats.inputs % FRESH_EVERY == 0:
        # A cache keyed by less than its answer depends on shows as a warm engine that
        # answers otherwise than a new one: the result then depends on earlier inputs.
        with quiet(), native(False):
            new = Deidentifier(engine.policy, SECRET)
            fresh = inst.clean_instance(new, bytearray(data), "input")
        diff = _same(fresh, ref)
        if diff:
            problems.append(f"a new engine answers otherwise (depends on earlier inputs): {diff}")
    intact = _intact_phi(data)
    for res in (ref, first, second):
        if res.status == "written":
            out = res.data
            for m in intact:
                if m in out or m.lower() in out:
                    problems.append(f"planted PHI {m.decode()} released by {res.engine}")
    if direct:
        problems += check_direct(engine, data)
    return problems


def check_direct(engine: Deidentifier, data: bytes) -> list[str]:
    """The core's road and scanner on the bytes as they are (no structure check first)."""
    problems: list[str] = []
    nat = inst.native_engine_of(engine)
    res = fastpath.run(nat.table, [data], None, None, 1, False)[0]
    if res[0] not in (0, 1, 2):
        problems.append(f"fastpath status {res[0]}")
    # The same input three times on two threads: the same answer each time.
    for other in fastpath.run(nat.table, [data, bytearray(data), data], None, None, 2, False):
        if (other[0], other[1], other[12]) != (res[0], res[1], res[12]):
            problems.append("fastpath on two threads answers otherwise")
            break
    with quiet():
        try:
            got = nat.apply(bytearray(data))
        except Exception as exc:  # apply must answer, never raise
            problems.append(f"native apply raised {type(exc).__name__}: {exc}")
            got = None
        if isinstance(got, NativeOutcome):
            try:
                raw = inst.raw_engine_of(engine).apply(bytearray(data))
            except NotRaw as why:
                problems.append(f"native wrote what raw declines ({why})")
            except Exception as exc:
                problems.append(f"native wrote what raw fails on ({type(exc).__name__})")
            else:
                if b"".join(got.parts) != b"".join(bytes(p) for p in raw.parts):
                    problems.append("native apply bytes differ from raw apply")
                elif got.report.taken != raw.report.taken:
                    problems.append("native apply report differs from raw apply")
    problems += check_plan(data)
    problems += check_matcher(data)
    # The scanner on arbitrary windows, both encodings.
    n = len(data)
    for pos, end in ((0, n), (132, n), (min(n, 144), n), (n // 3, n), (n // 2, n - n // 4)):
        if pos > end:
            continue
        for implicit in (False, True):
            rows, stop, err = scan_elements(data, pos, end, implicit, _SQ_TAGS)
            if not (pos <= stop <= end):
                problems.append(f"scan stop {stop} outside [{pos}, {end}]")
            if err is not None:
                continue  # the rows of a failed scan are never read
            for r in rows.tolist():
                if r[0] == -1:
                    if not (pos <= r[2] <= r[3] <= end):
                        problems.append("scan item row outside its window")
                elif not (pos <= r[2] <= r[3] <= r[5] <= end):
                    problems.append("scan element row outside its window")
    return problems


def check_plan(data: bytes) -> list[str]:
    """The post-check's plan of the bytes: the core's plan_values equals the numpy steps."""
    from medveil.engine.postcheck import _plan, _plan_python
    from medveil.verify.elements import scan_file

    try:
        scan = scan_file(data)
    except Exception:
        return []  # the span road takes such bytes
    if scan is None:
        return []
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    extra = [i for i in range(min(len(scan.rows), 3)) if scan.rows[i][0] >= 0]
    for leaves in ((), extra):
        try:
            core = _plan(scan, preamble, leaves)
            ref = _plan_python(scan, preamble, leaves)
        except Exception as exc:
            return [f"post-check plan raised {type(exc).__name__}: {exc}"]
        for k, (a, b) in enumerate(zip(core, ref, strict=True)):
            same = np.array_equal(a, b) if isinstance(a, np.ndarray) else list(a) == list(b)
            if not same:
                return [f"plan_values part {k} differs from the numpy steps"]
    return []


def check_matcher(data: bytes) -> list[str]:
    """The core's term search over the bytes equals the Python matchers, patterns cut from
    the bytes themselves (any byte value, word bytes or not)."""
    from medveil.verify.matcher import FindMatcher, NativeMatcher, SubstringMatcher

    rng = random.Random(len(data) * 31 + sum(data[:64]))
    hay = data[: 1 << 13]
    if len(hay) < 16:
        return []
    patterns = []
    for _ in range(rng.randint(1, 12)):
        a = rng.randrange(len(hay) - 8)
        patterns.append(hay[a : a + rng.randint(1, 8)])
    patterns += [m.lower() for m in MARKERS[:3]]
    patterns = list(dict.fromkeys(patterns))
    problems = []
    for utf16 in (False, True):
        if NativeMatcher(patterns, utf16=utf16).find(hay) != FindMatcher(
            patterns, utf16=utf16
        ).find(hay):
            problems.append(f"term search (utf16={utf16}) differs from the Python matcher")
    if NativeMatcher(patterns, substring=True).find(hay) != SubstringMatcher(patterns).find(hay):
        problems.append("substring search differs from the Python matcher")
    return problems


_ENGINES: dict[str, Deidentifier] = {}


def engine_for(policy: str) -> Deidentifier:
    """A Deidentifier under a named policy ("default" or a preset), made once."""
    if policy not in _ENGINES:
        p = Policy.default() if policy == "default" else load_policy(policy)
        _ENGINES[policy] = Deidentifier(p, SECRET)
    return _ENGINES[policy]


def run(
    seed: int,
    count: int | None,
    seconds: float | None,
    out_dir: Path | None,
    policies: tuple[str, ...] = ("default", "safe-harbor", "tcia"),
    pool: list[tuple[str, bytes]] | None = None,
    per_call: int = 60,
) -> Stats:
    """Mutants of the seeds through the oracle until `count` inputs or `seconds` pass."""
    rng = random.Random(seed)
    pool = pool if pool is not None else seeds()
    stats = Stats()
    start = time.monotonic()
    # Teach every engine the seeds first, so that mutants reach the native road.
    for policy in policies:
        for _, d in pool:
            check(engine_for(policy), d, Stats(), direct=False)
    while True:
        if count is not None and stats.inputs >= count:
            break
        if seconds is not None and time.monotonic() - start >= seconds:
            break
        name, base = rng.choice(pool)
        data, how = mutate(rng, base, pool)
        policy = rng.choice(policies)
        if out_dir is not None:
            (out_dir / "current.bin").write_bytes(data)
            (out_dir / "current.txt").write_text(f"{name} {policy} {how}\n")
        faulthandler.dump_traceback_later(per_call, exit=True)
        try:
            problems = check(engine_for(policy), data, stats)
        except Exception as exc:  # the oracle itself must not fail on any input
            problems = [f"raised {type(exc).__name__}: {exc}"]
        finally:
            faulthandler.cancel_dump_traceback_later()
        for p in problems:
            line = f"{name} {policy} {how}: {p}"
            stats.findings.append(line)
            if out_dir is not None:
                k = len(list(out_dir.glob("finding-*.bin")))
                (out_dir / f"finding-{k}.bin").write_bytes(data)
                with (out_dir / "findings.txt").open("a") as fh:
                    fh.write(f"finding-{k}: {line}\n")
    return stats


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz loop for a bounded time (one process)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/medveil-fuzz"))
    ap.add_argument(
        "--semantic",
        action="store_true",
        help="favour the mutators that keep the structure whole (more reach the engines)",
    )
    ap.add_argument("--policies", default="default,safe-harbor,tcia")
    args = ap.parse_args(argv)
    if args.semantic:
        keep = {
            m_value,
            m_item_insert,
            m_revr,
            m_meta,
            m_hidden_sequence,
            m_splice,
            m_syntax,
            m_swallow,
        }
        MUTATORS[:] = [(fn, w * 4 if fn in keep else w) for fn, w in MUTATORS]
    args.out.mkdir(parents=True, exist_ok=True)
    faulthandler.enable()
    policies = tuple(p for p in args.policies.split(",") if p)
    stats = run(args.seed, args.count, args.minutes * 60, args.out, policies)
    print(
        f"seed {args.seed}: {stats.inputs} inputs, {stats.native} on the native road, "
        f"{len(stats.findings)} findings; outcomes {dict(stats.outcomes)}"
    )
    for f in stats.findings[:50]:
        print(" ", f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
