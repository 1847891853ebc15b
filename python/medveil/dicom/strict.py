"""Strict structural validation of a Part 10 file, before any engine reads it.

A tolerant reader repairs what it cannot follow, and a repair can hide data: a value whose
length runs past the end swallows the elements after it (the patient's name among them),
an item delimiter inside a defined-length item ends the item early for one reader and not
for another. Every file is checked here first; any inconsistency is a
:class:`StructureError` (a quarantine), so a tolerant parse is never on the path to a
released file. What counts as inconsistent:

* a value, item or sequence running past its container's end, a truncated element header
  or file (bytes after the last element that are not an element);
* a delimiter where it does not belong (a sequence delimiter in a defined-length sequence,
  an item delimiter in a defined-length item, a delimiter with a non-zero length), a
  sequence or undefined-length item without its delimiter, a non-item in a sequence;
* a file meta group length that is not the meta's exact length, or a data set group length
  ``(gggg,0000)`` that runs past its container (a stale one that only disagrees with its
  group is common in real files and hides nothing: every reader here walks the elements);
* an undefined length where the VR forbids it (only SQ, UN and encapsulated Pixel Data
  may have one), an odd value length, a VR that is not a VR, the same tag twice;
* a deflated data set that does not inflate exactly (bytes after the stream other than
  zero padding or the stream's own CRC/size trailer);
* a top-level Pixel Data, Float or Double Float Pixel Data value holding non-zero bytes
  beyond the image its header describes (past the pad byte), or encapsulated fragments
  with non-zero bytes beyond the frames (little-endian data sets). Zero padding after a
  native image is common in real files (pydicom's ``MR_small_padded.dcm``) and passes:
  the pixel cleaner cuts it.

An Explicit VR data set whose first element is Implicit VR encoded (a known writer bug)
is validated as Implicit VR throughout, which is how pydicom reads it; a mix is damage.

Little-endian data sets go through the core's element scanner
(``medveil._core.scan_elements``); its rows are then checked for what it tolerates. Big
endian data sets, and files the scanner stops on for a reason that is not damage by itself
(elements out of order), are walked here in Python with the same rules.
"""

from __future__ import annotations

import importlib
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR

from medveil._core import scan_elements
from medveil.dicom.pixelbytes import PixelParseError, expected_length, split_frames
from medveil.dicom.vr import LONG_VR_BYTES, SHORT_VR_BYTES
from medveil.errors import DicomInputError

__all__ = [
    "MAX_INFLATED",
    "Prescan",
    "StructureError",
    "check_structure",
    "check_structure_scan",
    "dataset_offset",
    "inflate_dataset",
    "sq_tags",
]

# The core's row rules; a core built before them uses the Python reference. (Looked up by
# name: the import checker reads any import of the extension as one of the root package.)
_strictcore: Any = getattr(importlib.import_module("medveil._core"), "strict", None)
# The core's dataset_offset (a core built before it: the Python reference).
_meta_extent: Any = getattr(_strictcore, "meta_extent", None)
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
# The transfer syntaxes whose data set after the file meta is deflated (the verify tool
# reads them by this same list).
DEFLATED_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_MAX_DEPTH = 64
_META_HEAD = struct.Struct("<HH2sH")  # group, element, VR, short length / reserved bytes
_U32 = struct.Struct("<I")
_SHORT_VRS = SHORT_VR_BYTES
_LONG_VRS = LONG_VR_BYTES
_VRS = _SHORT_VRS | _LONG_VRS
# The scanner's VR codes (two letters, little-endian) of the long-length VRs, as a lookup
# table: ``_LONG_VR_TABLE[codes]`` costs a fraction of np.isin on a file's few hundred rows.
_LONG_VR_TABLE = np.zeros(1 << 16, dtype=bool)
_LONG_VR_TABLE[[int.from_bytes(v, "little") for v in _LONG_VRS]] = True
# Character string VRs: their values are text, where control bytes other than TAB, LF, FF,
# CR and ESC (PS3.5 6.1.2/6.1.3) have no place. Element headers swallowed into a value (an
# overrun a sender's tolerant reader re-encoded as one well-formed value) are full of them.
_TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())
_TEXT_VR_TABLE = np.zeros(1 << 16, dtype=bool)
_TEXT_VR_TABLE[[int.from_bytes(v.encode(), "little") for v in _TEXT_VRS]] = True
_UN_CODE = int.from_bytes(b"UN", "little")
_CONTROL = np.zeros(256, dtype=bool)
_CONTROL[[b for b in range(0x20) if b not in (0x09, 0x0A, 0x0C, 0x0D, 0x1B)]] = True


class StructureError(DicomInputError):
    """The file's structure is inconsistent: it is quarantined, never read tolerantly."""


def _fail(why: str, at: int | None = None) -> StructureError:
    where = f" at byte {at}" if at is not None else ""
    return StructureError(f"structurally damaged: {why}{where}")


@lru_cache(maxsize=1)
def sq_tags() -> np.ndarray:
    """Every tag the data dictionary makes a sequence (for Implicit VR scans), sorted."""
    from pydicom._dicom_dict import DicomDictionary

    tags = sorted(t for t, entry in DicomDictionary.items() if entry[0] == "SQ")
    return np.array(tags, dtype=np.uint32)


def _dict_vr(tag: int) -> str:
    """The dictionary VR of a tag ('UN' when unknown; the first of 'OB or OW')."""
    if tag >> 16 & 1:
        return "LO" if 0x0010 <= tag & 0xFFFF <= 0x00FF else "UN"
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def dataset_offset(data: bytes | bytearray | memoryview) -> tuple[int, int, str | None]:
    """(meta start, data set start, transfer syntax) of a file; StructureError if damaged.

    The file meta (group 0002, Explicit VR Little Endian) follows the 128-byte preamble
    and ``DICM``, or starts the file when there is no preamble. Its group length, when
    present, must be its exact length. The core's meta_extent when it has it (the same
    checks in the same order: tests/dicom/test_meta_extent.py), else the reference below.
    """
    if _meta_extent is not None:
        try:
            start, pos, ts, why, at = _meta_extent(data)
        except (TypeError, ValueError, BufferError):
            pass  # a buffer the core does not take: the reference reads it
        else:
            if why is not None:
                raise _fail(why, at)
            return start, pos, None if ts is None else ts.decode("ascii", "replace")
    return dataset_offset_python(data)


def dataset_offset_python(data: bytes | bytearray | memoryview) -> tuple[int, int, str | None]:
    """The reference of :func:`dataset_offset`, in Python."""
    pos = 132 if len(data) >= 132 and bytes(data[128:132]) == b"DICM" else 0
    start = pos
    if len(data) - pos < 8 or bytes(data[pos : pos + 2]) != b"\x02\x00":
        if pos:
            raise _fail("no file meta after the preamble", pos)
        return 0, 0, None
    declared = None
    ts = None
    n = len(data)
    while pos + 8 <= n:
        # _Walker.header for an Explicit VR Little Endian element, inlined: one unpack per
        # element of the meta (read three times per file), the same verdicts.
        group, elem, code, short = _META_HEAD.unpack_from(data, pos)
        if group != 2:
            break
        tag = 0x00020000 | elem
        if code in _SHORT_VRS:
            length, vstart = short, pos + 8
        elif code in _LONG_VRS:
            if n - pos < 12:
                raise _fail("truncated element header", pos)
            if short:
                raise _fail("reserved bytes of an element header are not zero", pos)
            length, vstart = _U32.unpack_from(data, pos + 8)[0], pos + 12
        else:
            raise _fail("unknown VR", pos)
        if length == _UNDEFINED:
            raise _fail("undefined length in the file meta", pos)
        end = vstart + length
        if end > len(data):
            raise _fail("file meta value runs past the end", pos)
        if length % 2:
            raise _fail("odd value length in the file meta", pos)
        if tag == 0x00020000:
            if pos != start or length != 4:
                raise _fail("misplaced file meta group length", pos)
            declared = vstart + 4 + struct.unpack_from("<I", data, vstart)[0]
        elif tag == 0x00020010:
            ts = bytes(data[vstart:end]).rstrip(b"\x00 ").decode("ascii", "replace")
        pos = end
    if declared is not None and declared != pos:
        raise _fail("file meta group length is not the length of the file meta", start)
    return start, pos, ts


def _guess_syntax(data: bytes | bytearray | memoryview, pos: int) -> str:
    """The transfer syntax of a data set without file meta, as pydicom guesses it."""
    head = bytes(data[pos : pos + 6])
    explicit = len(head) == 6 and head[4:6] in _SHORT_VRS | _LONG_VRS
    # Data sets start with a low group: the byte order that reads it smaller is the one.
    little = int.from_bytes(head[:2], "little") <= int.from_bytes(head[:2], "big")
    if explicit:
        return _EXPLICIT_LE if little else _EXPLICIT_BE
    return _IMPLICIT_LE


# The bound on a deflated data set once inflated, for readers without a per-file size
# limit (the verifier, the gateway, Spark): a few KB can inflate to GBs.
MAX_INFLATED = 1 << 30


def inflate_dataset(
    data: bytes | bytearray | memoryview, pos: int, limit: int = MAX_INFLATED
) -> bytes:
    """The inflated data set of a deflated file from ``pos``; StructureError unless exact.

    DicomInputError past ``limit`` bytes: a deflate bomb costs time up to it, not memory.
    """
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = d.decompress(memoryview(data)[pos:], limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise DicomInputError(f"deflated data set too large once inflated: over {limit} bytes")
        out += d.flush()
    except zlib.error:
        raise _fail("deflated data set does not inflate", pos) from None
    if not d.eof:
        raise _fail("deflated data set is cut short", pos)
    rest = d.unused_data
    # Some writers append the zlib (Adler-32) or gzip (CRC-32, size) trailer: no payload.
    trailers = (
        zlib.adler32(out).to_bytes(4, "big"),
        zlib.crc32(out).to_bytes(4, "little") + (len(out) & 0xFFFFFFFF).to_bytes(4, "little"),
    )
    if rest.strip(b"\x00") and not any(
        rest.startswith(t) and not rest[len(t) :].strip(b"\x00") for t in trailers
    ):
        raise _fail("bytes after the deflated data set", len(data) - len(rest))
    return out


# Standard transfer syntaxes newer than the pydicom we read with, by name: a run's
# records blank unknown UIDs, and the user needs to know which syntax was refused.
_NEWER_SYNTAXES = {
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression",
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}


# pydicom's table, looked up directly: pydicom's UID type warns with the value itself.
_KNOWN_SYNTAXES = frozenset(
    uid for uid, entry in UID_dictionary.items() if entry[1] == "Transfer Syntax"
)


def _unsupported(ts: str) -> str:
    """The quarantine reason for a transfer syntax pydicom does not know."""
    # Never the value itself: the reason is logged, and a non-standard value may be PHI.
    return f"unsupported transfer syntax: {_NEWER_SYNTAXES.get(ts, 'not a standard one')}"


@dataclass(frozen=True)
class Prescan:
    """What the strict check learned of a file it read with the core scanner (not deflated).

    ``rows`` are the scanner's rows of the data set from ``pos`` (with the dictionary's
    sequences for Implicit VR), exactly what ``scan_elements(data, pos, len(data),
    implicit, sq_tags())`` returns for these bytes: callers that scan the same unchanged
    bytes again (the post-check's learner) take them instead of a second scan.
    """

    meta_start: int
    pos: int
    ts: str | None
    implicit: bool
    rows: np.ndarray


def check_structure(data: bytes | bytearray | memoryview) -> str:
    """Raise StructureError unless the whole file is structurally consistent; its syntax.

    Returns the transfer syntax the data set was validated under.
    """
    return check_structure_scan(data)[0]


def check_structure_scan(data: bytes | bytearray | memoryview) -> tuple[str, Prescan | None]:
    """check_structure, plus the scanner rows it validated (None when it walked in Python).

    The rows describe ``data`` as it is now: valid only while those bytes are unchanged.
    """
    meta_start, pos, declared = dataset_offset(data)
    if declared is not None and declared not in _KNOWN_SYNTAXES:
        raise DicomInputError(_unsupported(declared))
    ts = declared if declared is not None else _guess_syntax(data, pos)
    if ts in DEFLATED_SYNTAXES:
        buf: bytes | bytearray | memoryview = inflate_dataset(data, pos)
        pos, little, implicit = 0, True, False
    else:
        buf = data
        little, implicit = ts != _EXPLICIT_BE, ts == _IMPLICIT_LE
    if not implicit and len(buf) - pos >= 6 and bytes(buf[pos + 4 : pos + 6]) not in _VRS:
        # Implicit VR under an Explicit VR syntax, as pydicom reads it (encapsulated
        # pixel data then comes without a VR too).
        _Walker(buf, little=little, explicit=False, fragments=True).top(pos)
        return ts, None
    if little:
        rows = _check_le(buf, pos, implicit, ts)
        if rows is not None and buf is data:
            return ts, Prescan(meta_start, pos, declared, implicit, rows)
    else:
        _Walker(buf, little=False, explicit=True).top(pos)
    return ts, None


def _check_le(
    buf: bytes | bytearray | memoryview, pos: int, implicit: bool, ts: str | None = None
) -> np.ndarray | None:
    """The core scanner's verdict on a little-endian data set, plus what it tolerates.

    Returns the scanner's rows, or None when the data set was walked in Python instead.
    """
    rows, stop, error = scan_elements(buf, pos, len(buf), implicit, sq_tags())
    if error is not None:
        if error in ("elements out of order", "unknown VR"):
            # Not damage by itself (pydicom sorts), or a VR to name: walk it for the verdict.
            _Walker(buf, little=True, explicit=not implicit).top(pos)
            return None
        raise _fail(error, int(stop))
    if int(stop) != len(buf):
        # The scanner ends a data set at an item delimiter, as it ends an item: at the top
        # level that delimiter is stray, and whatever follows it would go unchecked.
        raise _fail("item delimiter outside an undefined-length item", int(stop) - 8)
    _check_rows(buf, rows, implicit)
    _check_pixel_lengths(buf, rows, ts)
    return rows


_IMAGE_ATTRS = {
    0x00280010: "rows",
    0x00280011: "columns",
    0x00280002: "samples",
    0x00280100: "bits",
    0x00280008: "frames",
    0x00280004: "photometric",
    0x7FE00001: "eot",
}
_PIXEL_BITS = {0x7FE00010: 0, 0x7FE00008: 32, 0x7FE00009: 64}
_COMPRESSED_NOT = frozenset({_EXPLICIT_LE, _IMPLICIT_LE, _EXPLICIT_BE, *DEFLATED_SYNTAXES, None})


def _attr_int(value: bytes) -> int | None:
    """A US value (2 bytes, little-endian) or an IS value's first number."""
    if len(value) == 2:
        return int.from_bytes(value, "little")
    try:
        return int(value.split(b"\\")[0].strip(b" \x00") or b"x")
    except ValueError:
        return None


# Rows of the image attributes and pixel elements at the top level, by the rows' tags and
# depths (a series repeats one structure): bounded, in memory only (no values in it).
_PIXEL_PLANS: dict[bytes, np.ndarray] = {}
_PIXEL_PLAN_TAGS = np.array(sorted({*_IMAGE_ATTRS, *_PIXEL_BITS}), dtype=np.int64)


def _pixel_plan(rows: np.ndarray) -> np.ndarray:
    """Indices of the top-level rows _check_pixel_lengths reads, found once per structure."""
    key = rows[:, [0, 7]].tobytes()  # the tags and depths: all the selection reads
    hit = _PIXEL_PLANS.get(key)
    if hit is None:
        hit = np.flatnonzero((rows[:, 7] == 0) & np.isin(rows[:, 0], _PIXEL_PLAN_TAGS))
        if len(_PIXEL_PLANS) >= 64:
            _PIXEL_PLANS.clear()
        _PIXEL_PLANS[key] = hit
    return hit


def _check_pixel_lengths(
    buf: bytes | bytearray | memoryview, rows: np.ndarray, ts: str | None
) -> None:
    """No top-level pixel element holds non-zero bytes beyond the image (issue 18 F2)."""
    attrs: dict[str, bytes] = {}
    pixels = []
    for tag, _code, start, vstart, length, stop, _n, _d in rows[_pixel_plan(rows)].tolist():
        name = _IMAGE_ATTRS.get(tag)
        if name is not None:
            attrs[name] = bytes(buf[vstart:stop])
        elif tag in _PIXEL_BITS:
            pixels.append((tag, start, vstart, length, stop))
    if not pixels or "rows" not in attrs or "columns" not in attrs:
        return  # no image, or one without a size: the pixel cleaner names that
    num = {k: _attr_int(v) for k, v in attrs.items() if k not in ("photometric", "eot")}
    photometric = attrs.get("photometric", b"").decode("ascii", "replace")
    frames = num.get("frames") or 1
    for tag, start, vstart, length, stop in pixels:
        encapsulated = length == _UNDEFINED
        try:
            if encapsulated and tag == 0x7FE00010 and ts not in _COMPRESSED_NOT:
                eot_raw = attrs.get("eot")
                eot = list(struct.unpack(f"<{len(eot_raw) // 8}Q", eot_raw)) if eot_raw else None
                _, extra = split_frames(bytes(buf[vstart:stop]), ts or "", frames, eot)
                beyond = sum(
                    b - a for a, b in extra if bytes(buf[vstart + a : vstart + b]).strip(b"\x00")
                )
            elif not encapsulated:
                need = expected_length(
                    num.get("rows") or 0,
                    num.get("columns") or 0,
                    samples=num.get("samples") or 1,
                    bits_allocated=_PIXEL_BITS[tag] or num.get("bits") or 0,
                    frames=frames,
                    photometric=photometric,
                )
                keep = vstart + need + need % 2
                beyond = stop - keep if bytes(buf[keep:stop]).strip(b"\x00") else 0
            else:
                continue
        except (PixelParseError, struct.error):
            continue  # frames the pixel cleaner cannot split either: it quarantines them
        if beyond > 0:
            what = "Pixel Data" if tag == 0x7FE00010 else "Float Pixel Data"
            raise _fail(f"{what} holds {beyond} bytes beyond the image", start)


def _check_rows(buf: bytes | bytearray | memoryview, rows: np.ndarray, implicit: bool) -> None:
    """Odd lengths, delimiters, item extents and group lengths the scanner lets through.

    The core's check_rows (the same rules in the same order, so the same first finding:
    tests/engine/test_scan_reuse.py compares them) when the core has it; else, or for
    rows it refuses, :func:`_check_rows_python`.
    """
    if not len(rows):
        return
    if _strictcore is not None:
        text = bad_undefined = None
        if not implicit:
            text = _un_text_rows(rows)
        if implicit:
            # The dictionary's VRs, which only Python has: the text rows, and the opened
            # undefined-length rows it does not make sequences (few: looked up one by one).
            tags = rows[:, 0].tolist()
            text = np.array([t >= 0 and _dict_vr(t) in _TEXT_VRS for t in tags], dtype=np.uint8)
            bad_undefined = np.zeros(len(tags), dtype=np.uint8)
            opened = (rows[:, 0] >= 0) & (rows[:, 6] >= 0) & (rows[:, 4] == _UNDEFINED)
            for i in np.flatnonzero(opened).tolist():
                bad_undefined[i] = _dict_vr(tags[i]) not in ("SQ", "UN")
        try:
            found = _strictcore.check_rows(buf, rows, implicit, text, bad_undefined)
        except ValueError:
            pass  # rows pointing outside the data (never the scanner's): the reference
        else:
            if found is not None:
                raise _fail(found[0], int(found[1]))
            return
    _check_rows_python(buf, rows, implicit)


def _check_rows_python(
    buf: bytes | bytearray | memoryview, rows: np.ndarray, implicit: bool
) -> None:
    """The reference of _check_rows, in numpy and Python."""
    if not len(rows):
        return
    tags = rows[:, 0]
    is_elem = tags >= 0
    lengths = rows[:, 4]
    defined = is_elem & (lengths != _UNDEFINED)
    # An item or delimiter tag read as an element (Implicit VR takes any tag as one): a
    # stray delimiter ends a container early for one reader and not for another.
    stray = is_elem & ((tags >> 16) == 0xFFFE)
    if stray.any():
        i = int(np.flatnonzero(stray)[0])
        raise _fail("item or delimiter tag where an element belongs", int(rows[i, 2]))
    odd = defined & (lengths % 2 == 1)
    if odd.any():
        i = int(np.flatnonzero(odd)[0])
        raise _fail("odd value length", int(rows[i, 2]))
    _check_text_rows(buf, rows, is_elem, implicit)
    if not implicit:
        # Two reserved bytes follow the VR of the long-length VRs; they must be zero (they
        # would otherwise be two bytes per element no reader looks at).
        long_vr = is_elem & _LONG_VR_TABLE[rows[:, 1] & 0xFFFF]
        if long_vr.any():
            at = rows[long_vr, 2] + 6
            raw = np.frombuffer(buf, dtype=np.uint8)
            bad = (raw[at] | raw[at + 1]) != 0
            if bad.any():
                raise _fail("reserved bytes of an element header are not zero", int(at[bad][0] - 6))
    if implicit:
        opened = is_elem & (rows[:, 6] >= 0) & (lengths == _UNDEFINED)
        for i in np.flatnonzero(opened).tolist():
            if _dict_vr(int(tags[i])) not in ("SQ", "UN"):
                raise _fail("undefined length outside a sequence", int(rows[i, 2]))
    # Undefined-length sequences end with a delimiter whose length must be zero.
    closed = np.flatnonzero(is_elem & (rows[:, 6] >= 0) & (lengths == _UNDEFINED))
    if len(closed):
        bad_at = _nonzero_u32(buf, rows[closed, 5] - 4)
        if len(bad_at):
            raise _fail("sequence delimiter with a length", int(rows[closed[bad_at[0]], 5]) - 8)
    items = np.flatnonzero(~is_elem).tolist()
    groups = np.flatnonzero(is_elem & ((tags & 0xFFFF) == 0)).tolist()
    if items or groups:
        # Plain ints of the three columns the loops below read row by row (the whole
        # table as lists costs more than the checks on a file with a few hundred rows).
        cols = (tags.tolist(), rows[:, 5].tolist(), rows[:, 7].tolist())
        _check_items(buf, rows, cols, items)
        _check_group_lengths(buf, rows, cols, groups)


def _un_text_rows(rows: np.ndarray) -> np.ndarray | None:
    """Flags of the Explicit VR rows that are UN values of standard text tags; None: none.

    A reader takes such a value as its dictionary VR (pydicom does), so it is text: a
    length that swallowed the elements after it (names, IDs) shows as control bytes.
    """
    un = np.flatnonzero((rows[:, 0] >= 0) & ((rows[:, 1] & 0xFFFF) == _UN_CODE))
    if not len(un):
        return None
    flags = np.zeros(len(rows), dtype=np.uint8)
    for i in un.tolist():
        tag = int(rows[i, 0])
        if not tag >> 16 & 1 and _dict_vr(tag) in _TEXT_VRS:
            flags[i] = 1
    return flags if flags.any() else None


def _text_has_control(value: bytes) -> bool:
    """Whether a text value holds a control byte before its trailing NUL/space padding."""
    body = value.rstrip(b"\x00 ")
    return bool(body) and bool(_CONTROL[np.frombuffer(body, dtype=np.uint8)].any())


def _check_text_rows(
    buf: bytes | bytearray | memoryview, rows: np.ndarray, is_elem: np.ndarray, implicit: bool
) -> None:
    """No text value holds control bytes (see _TEXT_VRS)."""
    if implicit:
        tags = rows[:, 0].tolist()
        text = np.array(
            [
                bool(e) and _dict_vr(t) in _TEXT_VRS
                for t, e in zip(tags, is_elem.tolist(), strict=True)
            ],
            dtype=bool,
        )
    else:
        text = is_elem & _TEXT_VR_TABLE[rows[:, 1] & 0xFFFF]
        un = _un_text_rows(rows)
        if un is not None:
            text |= un.astype(bool)
    text &= rows[:, 4] != _UNDEFINED
    idx = np.flatnonzero(text)
    if not len(idx):
        return
    starts, ends = rows[idx, 3], rows[idx, 5]
    limit = int(ends.max())
    raw = np.frombuffer(buf, dtype=np.uint8, count=limit)
    bad = np.flatnonzero(_CONTROL[raw])
    if not len(bad):
        return
    # Rows whose value range holds a control byte; only those are looked at closely.
    hit = np.searchsorted(bad, ends) > np.searchsorted(bad, starts)
    for i in idx[hit].tolist():
        if _text_has_control(bytes(buf[int(rows[i, 3]) : int(rows[i, 5])])):
            raise _fail("a text value holds control bytes", int(rows[i, 2]))


def _nonzero_u32(buf: bytes | bytearray | memoryview, at: np.ndarray) -> np.ndarray:
    """Indices into ``at`` of the little-endian uint32 values at those offsets that are not 0."""
    raw = np.frombuffer(buf, dtype=np.uint8)
    return np.flatnonzero(raw[at] | raw[at + 1] | raw[at + 2] | raw[at + 3])


def _check_items(
    buf: bytes | bytearray | memoryview,
    rows: np.ndarray,
    cols: tuple[list[int], list[int], list[int]],
    items: list[int],
) -> None:
    """Each defined-length item is filled exactly by its elements (no early delimiter)."""
    tags, ends, depths = cols
    n = len(tags)
    for i in items:
        _, undefined, start, end, nelems, _, _, d = rows[i].tolist()
        if undefined:
            if struct.unpack_from("<I", buf, end - 4)[0] != 0:
                raise _fail("item delimiter with a length", end - 8)
            continue
        last = start + 8
        j, seen = i + 1, 0
        while seen < nelems and j < n:
            if tags[j] >= 0 and depths[j] == d:
                last = ends[j]
                seen += 1
            j += 1
        if last != end:
            raise _fail("item delimiter inside a defined-length item", last)


def _check_group_lengths(
    buf: bytes | bytearray | memoryview,
    rows: np.ndarray,
    cols: tuple[list[int], list[int], list[int]],
    groups: list[int],
) -> None:
    """A group length element must equal the bytes of its group's other elements."""
    tags, _ends, depths = cols
    for i in groups:
        _, _, start, vstart, length, end, _, d = rows[i].tolist()
        if length != 4:
            raise _fail("group length is not 4 bytes", start)
        declared = struct.unpack_from("<I", buf, vstart)[0]
        # The container's end: the enclosing item's, or the data set's (items are never
        # at depth 0, so a top-level group needs no search back).
        limit = len(buf)
        for j in range(i - 1, -1, -1) if d else ():
            if tags[j] < 0 and depths[j] == d:
                limit = int(rows[j, 3])
                break
        if declared > limit - end:
            raise _fail("group length runs past its container", start)


class _Walker:
    """The same rules in Python, for any byte order and VR encoding (the slow path)."""

    def __init__(
        self,
        buf: bytes | bytearray | memoryview,
        *,
        little: bool,
        explicit: bool,
        fragments: bool = False,
    ) -> None:
        self.buf = buf
        self.e = "<" if little else ">"
        self.explicit = explicit
        # Encapsulated Pixel Data in an Implicit VR data set (see check_structure).
        self.implicit_fragments = fragments

    def header(self, pos: int, end: int) -> tuple[int, str, int, int]:
        """(tag, VR, length, value start) of the element at pos; StructureError if cut."""
        if end - pos < 8:
            raise _fail("truncated element header", pos)
        g, e = struct.unpack_from(self.e + "HH", self.buf, pos)
        tag = g << 16 | e
        if g == 0xFFFE or not self.explicit:
            length = struct.unpack_from(self.e + "I", self.buf, pos + 4)[0]
            return tag, "" if g == 0xFFFE else _dict_vr(tag), length, pos + 8
        code = bytes(self.buf[pos + 4 : pos + 6])
        if code in _SHORT_VRS:
            return (
                tag,
                code.decode(),
                struct.unpack_from(self.e + "H", self.buf, pos + 6)[0],
                pos + 8,
            )
        if code in _LONG_VRS:
            if end - pos < 12:
                raise _fail("truncated element header", pos)
            if bytes(self.buf[pos + 6 : pos + 8]) != b"\x00\x00":
                raise _fail("reserved bytes of an element header are not zero", pos)
            length = struct.unpack_from(self.e + "I", self.buf, pos + 8)[0]
            return tag, code.decode(), length, pos + 12
        raise _fail("unknown VR", pos)

    def top(self, pos: int) -> None:
        """Validate the data set from pos to the end of the buffer."""
        self.elements(pos, len(self.buf), 0, in_item=False)

    def elements(self, pos: int, end: int, depth: int, *, in_item: bool) -> int:
        """Elements up to end (or an item delimiter when in_item); returns where they stop."""
        if depth > _MAX_DEPTH:
            raise _fail("sequences nested too deep", pos)
        seen: set[int] = set()
        while pos < end:
            tag, vr, length, vstart = self.header(pos, end)
            if tag == _ITEM_END:
                if not in_item:
                    raise _fail("item delimiter outside an undefined-length item", pos)
                if length:
                    raise _fail("item delimiter with a length", pos)
                return pos + 8
            if tag >> 16 == 0xFFFE:
                raise _fail("delimiter or item where an element belongs", pos)
            if tag in seen:
                raise _fail("the same element twice", pos)
            seen.add(tag)
            if tag & 0xFFFF == 0:
                if length != 4 or vstart + 4 > end:
                    raise _fail("group length is not 4 bytes", pos)
                declared = struct.unpack_from(self.e + "I", self.buf, vstart)[0]
                if declared > end - vstart - 4:
                    raise _fail("group length runs past its container", pos)
            un_seq = vr == "UN" and length == _UNDEFINED
            if length == _UNDEFINED and tag == _PIXEL_DATA and self.implicit_fragments:
                pos = self.fragments(vstart, end)
                continue
            if vr == "SQ" or un_seq or (not self.explicit and length == _UNDEFINED):
                if length == _UNDEFINED and vr not in ("SQ", "UN"):
                    raise _fail("undefined length outside a sequence", pos)
                inner = _Walker(
                    self.buf,
                    little=self.e == "<",
                    explicit=self.explicit and not un_seq,
                    fragments=self.implicit_fragments,
                )
                pos = inner.items(vstart, length, end, depth + 1)
                continue
            if length == _UNDEFINED:
                if tag != _PIXEL_DATA or not self.explicit:
                    raise _fail("undefined length outside a sequence", pos)
                pos = self.fragments(vstart, end)
                continue
            if length > end - vstart:
                raise _fail("value runs past the end", pos)
            if length % 2:
                raise _fail("odd value length", pos)
            as_text = vr in _TEXT_VRS or (
                vr == "UN" and not tag >> 16 & 1 and _dict_vr(tag) in _TEXT_VRS
            )
            if as_text and _text_has_control(bytes(self.buf[vstart : vstart + length])):
                raise _fail("a text value holds control bytes", pos)
            pos = vstart + length
        if in_item:
            raise _fail("item without delimiter", pos)
        return pos

    def items(self, pos: int, length: int, end: int, depth: int) -> int:
        """The items of a sequence value from pos; returns where the sequence ends."""
        undefined = length == _UNDEFINED
        if not undefined and length > end - pos:
            raise _fail("sequence runs past the end", pos)
        stop = end if undefined else pos + length
        while pos < stop:
            tag, _, ilen, vstart = self.header(pos, stop)
            if tag == _SEQ_END:
                if not undefined:
                    raise _fail("sequence delimiter in a defined-length sequence", pos)
                if ilen:
                    raise _fail("sequence delimiter with a length", pos)
                return pos + 8
            if tag != _ITEM:
                raise _fail("not an item in a sequence", pos)
            if ilen == _UNDEFINED:
                pos = self.elements(vstart, stop, depth, in_item=True)
            else:
                if ilen > stop - vstart:
                    raise _fail("item runs past its sequence", pos)
                iend = vstart + ilen
                if self.elements(vstart, iend, depth, in_item=False) != iend:
                    raise _fail("item delimiter inside a defined-length item", pos)
                pos = iend
        if undefined:
            raise _fail("sequence without delimiter", pos)
        return pos

    def fragments(self, pos: int, end: int) -> int:
        """Encapsulated Pixel Data: fragment items up to the sequence delimiter."""
        while end - pos >= 8:
            g, e, length = struct.unpack_from(self.e + "HHI", self.buf, pos)
            tag = g << 16 | e
            if tag == _SEQ_END:
                if length:
                    raise _fail("sequence delimiter with a length", pos)
                return pos + 8
            if tag != _ITEM or length == _UNDEFINED or length > end - pos - 8:
                raise _fail("malformed encapsulated pixel data", pos)
            pos += 8 + length
        raise _fail("encapsulated pixel data without delimiter", pos)
