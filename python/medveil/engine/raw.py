"""The raw-byte engine: de-identify a plain little-endian file straight from its bytes.

The Dataset engine (:mod:`medveil.engine.dataset`) builds pydicom objects for every
element, walks them and writes them again; on a CT slice that is most of the time the
archive run takes. This engine scans the element headers with the core scanner, asks
:mod:`medveil.engine.decide` (the layer the Dataset engine asks too) what happens to each
element, copies the bytes of what it keeps, encodes only what changes, and leaves Pixel
Data where it is in the input buffer.

It covers the common case: Explicit or Implicit VR Little Endian files with file meta (and
the compressed syntaxes, while their pixels need no change), one plain character set, no
kept UN elements and no undefined lengths outside sequences. For anything else it raises
:class:`NotRaw` and the caller uses the Dataset engine. Its output is byte-for-byte the
Dataset engine's (tests/engine/test_equality.py checks it on every file the tests have);
it is a faster road to the same file.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Container
from dataclasses import dataclass
from functools import partial

import numpy as np
import pydicom.uid
from pydicom import datadict
from pydicom.charset import convert_encodings
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID

from medveil._core import gather, scan_elements
from medveil.dicom.io import check_pixel_length
from medveil.dicom.keywords import IDENTITY_KEYWORDS, TERM_KEYWORDS
from medveil.dicom.peek import decode_text
from medveil.dicom.pydicom_private import (
    character_set,
    dataset_over,
    elements,
    raw_element,
    raw_tuple,
)
from medveil.dicom.vr import LONG_VR_BYTES
from medveil.dicom.writer import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    PIXEL_DATA,
    file_meta_template,
    splice_file_meta,
)
from medveil.engine.dataset import Deidentifier, dummy_zeros, pixel_marks
from medveil.engine.decide import (
    CODE_MEANING,
    CODING_SCHEME,
    KEEP,
    KIND_DUMMY_ITEMS,
    KIND_EMPTY,
    KIND_KEEP,
    KIND_PUT,
    KIND_REMOVE,
    KIND_ZERO,
    ROUTE_DROP,
    ROUTE_PRIVATE,
    VERDICT_ACT,
    VERDICT_CREATOR,
    VERDICT_KEEP,
    VERDICT_NOT_SAFE,
    VERDICT_REMOVE,
    VERDICT_SAFE,
    VERDICT_SAFE_RECURSE,
    Decision,
    DeidReport,
    Identity,
    PatientContext,
    cap_age,
    capped_age,
    dictionary_vr,
    identity_of,
    is_empty,
    tag_text,
    zero_value,
)
from medveil.errors import MedveilError
from medveil.policy.standard import COMBINED_ACTIONS, Rule

# The long-length VRs but UN: this engine measures and writes the file meta with them, and
# the core's dicom_le::long_vr mirrors it byte for byte (an element of VR UN is never kept).
_LONG = LONG_VR_BYTES - {b"UN"}
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNDEFINED = 0xFFFFFFFF
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")
_IMPLICIT_LE = "1.2.840.10008.1.2"
# Compressed syntaxes: Explicit VR Little Endian with encapsulated Pixel Data.
_ENCAPSULATED = frozenset(
    str(uid)
    for uid in pydicom.uid.AllTransferSyntaxes
    if uid.is_compressed and uid.is_little_endian and not uid.is_implicit_VR and not uid.is_deflated
)
_LONG_VR_STR = frozenset(v.decode() for v in _LONG)
_LONG_CODES = frozenset(_U16.unpack(v)[0] for v in _LONG)
_ITEM_DELIMS = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQ_DELIMS = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_VR_NAMES: dict[int, str] = {}  # the scanner's VR codes (two bytes, little-endian) as text
_NO_ITEMS: list[_Item] = []  # shared by every element that is not a sequence; never appended to


class NotRaw(Exception):
    """This file (or this policy on it) needs the Dataset engine."""


class _Elem:
    """One element of the input: where its header and value are, and its items if SQ."""

    __slots__ = ("end", "items", "length", "start", "tag", "vr", "vstart")

    def __init__(
        self,
        tag: int,
        vr: str,
        start: int,
        vstart: int,
        length: int,
        end: int,
        items: list[_Item],
    ) -> None:
        self.tag, self.vr, self.start, self.vstart = tag, vr, start, vstart
        self.length, self.end, self.items = length, end, items


class _Item:
    """One sequence item: its elements and how its length was encoded."""

    __slots__ = ("elems", "end", "start", "undefined")

    def __init__(self, elems: list[_Elem], undefined: bool, start: int, end: int) -> None:
        self.elems, self.undefined, self.start, self.end = elems, undefined, start, end


def _scan(
    buf: bytearray | bytes | memoryview, pos: int, end: int, implicit: bool = False
) -> tuple[list[_Elem], int]:
    """The elements of the data set buf[pos:end] as a tree; returns (elems, stop).

    The core scans the element headers (``medveil._core.scan_elements``) and this builds
    the tree from its rows. Implicit VR elements get their VR from the data dictionary,
    as the Dataset engine reads them.
    """
    rows, stop = _rows(buf, pos, end, implicit)
    elems, _ = _tree(rows.tolist(), 0, -1)
    return elems, stop


def _rows(
    buf: bytearray | bytes | memoryview, pos: int, end: int, implicit: bool = False
) -> tuple[np.ndarray, int]:
    """The core scanner's rows of the data set buf[pos:end] and where it stopped; NotRaw."""
    if end > len(buf):
        raise NotRaw("data set runs past the end")
    rows, stop, error = scan_elements(buf, pos, end, implicit, _SQ_TAGS)
    if error is not None:
        raise NotRaw(error)
    return rows, stop


def _tree(rows: list[list[int]], i: int, n: int) -> tuple[list[_Elem], int]:
    """The next n elements (all when n < 0) of the scanner's rows from row i, with items."""
    out: list[_Elem] = []
    total = len(rows)
    vr_names = _VR_NAMES
    while n and i < total:
        tag, code, start, vstart, length, end, nitems, _ = rows[i]
        i += 1
        vr = vr_names.get(code) if code else _implicit_vr(tag)
        if vr is None:
            vr = vr_names[code] = chr(code & 0xFF) + chr(code >> 8)
        items: list[_Item] = _NO_ITEMS
        if nitems >= 0:
            # Implicit VR: the scanner opens every undefined length as a sequence; only
            # sequences and unknown (UN) elements may have one.
            if not code and vr not in ("SQ", "UN"):
                raise NotRaw("undefined length outside a sequence")
            items = []
            for _ in range(nitems):
                _, undefined, istart, iend, nelems, _, _, _ = rows[i]
                sub, i = _tree(rows, i + 1, nelems)
                items.append(_Item(sub, undefined == 1, istart, iend))
        elif vr == "SQ":
            raise NotRaw("sequence the scanner did not open")
        out.append(_Elem(tag, vr, start, vstart, length, end, items))
        n -= 1
    return out, i


def _implicit_vr(tag: int) -> str:
    """The VR the Dataset engine gives an Implicit VR element (_vr_of's rule)."""
    if tag >> 16 & 1 and 0x0010 <= tag & 0xFFFF <= 0x00FF:
        return "LO"  # private creators, as pydicom reads them
    return dictionary_vr(tag) or "UN"


def _meta_end(buf: bytes | bytearray | memoryview) -> int:
    """Where the file meta ends: after the last group 0002 element from offset 132."""
    pos, size = 132, len(buf)
    unpack = _U16.unpack_from
    while pos + 8 <= size and unpack(buf, pos)[0] == 2:
        if unpack(buf, pos + 4)[0] in _LONG_CODES:
            if pos + 12 > size:
                break
            length = _U32.unpack_from(buf, pos + 8)[0]
            if length == _UNDEFINED:
                raise NotRaw("undefined length in the file meta")
            pos += 12 + length
        else:
            pos += 8 + _U16.unpack_from(buf, pos + 6)[0]
    if pos > size:
        raise NotRaw("file meta runs past the end")
    return pos


def _header(tag: int, vr: str, length: int, implicit: bool = False) -> bytes:
    """Little-endian element header, Explicit VR unless implicit."""
    if implicit:
        return _TAG.pack(tag >> 16, tag & 0xFFFF) + _U32.pack(length)
    head = _TAG.pack(tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in _LONG_VR_STR:
        return head + b"\x00\x00" + _U32.pack(length)
    if length > 0xFFFF:
        raise NotRaw("value too long for its VR")
    return head + _U16.pack(length)


def _text_bytes(vr: str, values: list[str]) -> bytes:
    """Values as _put stores them (ASCII only; anything else goes to the Dataset engine)."""
    if not all(v.isascii() for v in values):
        raise NotRaw("non-ASCII replacement")
    text = "\\".join(values).encode("ascii")
    if len(text) % 2:
        text += b"\x00" if vr == "UI" else b" "
    return text


@dataclass
class RawOutcome:
    """What the raw engine made of one file."""

    parts: list[bytes | memoryview]
    pixel_at: int
    report: DeidReport
    final: Dataset  # top level of the output's catalog elements, as raw elements
    implicit: bool  # the output's encoding: Implicit VR (else Explicit VR) Little Endian
    # SHA-256 (hex) of parts[0], made while joining it (None: not made; hash the output).
    sha256: str | None = None


_FLOAT_PIXELS = frozenset({BaseTag(0x7FE00008), BaseTag(0x7FE00009)})
# Whether apply hashes a large output while joining it (RawOutcome.sha256): worth it only
# where the caller takes that hash instead of hashing the output again.
_HASH_OUTPUT = True
_EXTENDED_OFFSETS = BaseTag(0x7FE00001)


def _only_stripped(report: object, store: Container[BaseTag]) -> bool:
    """Whether the pixel cleaner only cut metadata beside the image out of the fragments.

    The new fragments are then written here like masked native pixels; an Extended
    Offset Table (rewritten with them) sends the file to the Dataset engine.
    """
    return (
        bool(getattr(report, "stripped", None))
        and not getattr(report, "regions", True)
        and not getattr(report, "hidden_bits_cleared", True)
        and not getattr(report, "reencoded", True)
        and getattr(report, "transfer_syntax_out", None)
        == getattr(report, "transfer_syntax_in", None)
        and _EXTENDED_OFFSETS not in store
    )


_CHARSETS: dict[tuple[str | None, bytes] | None, str] = {}
_CATALOG_TAGS = (
    0x00080018,
    0x00080020,
    0x00080060,
    0x00080070,
    0x00100020,
    0x00100040,
    0x00101010,
    0x00180015,
    0x00180050,
    0x0020000D,
    0x0020000E,
    0x00280008,
    0x00280010,
    0x00280011,
)


class RawEngine:
    """De-identifies Explicit VR Little Endian files from their bytes, like its Deidentifier."""

    def __init__(self, engine: Deidentifier) -> None:
        """Use the policy, secret, pixel cleaner and marks of ``engine``."""
        self.engine = engine
        self.compiled = engine.compiled
        self.policy = engine.policy
        self.decider = engine.decider
        # (tag, encoded element) in tag order, for each encoding and whether the Clean
        # Pixel Data Option held: merged into every output.
        self._marks_by = {
            (implicit, clean): sorted(
                (
                    int(t),
                    _header(int(t), e.VR or "", len(e.value or b""), implicit) + (e.value or b""),
                )
                for t, e in engine.marks_raw(implicit, True, clean).items()
            )
            for implicit in (False, True)
            for clean in (False, True)
        }
        self.implicit = False
        self._plain: dict[int, str] = {}
        self.charset: RawDataElement | None = None
        self._dummies: dict[tuple[int, str, bool, bool], bytes] = {}
        self._meta_templates: dict[
            tuple[object, ...], tuple[bytes, bytes, list[tuple[str, int, str]]]
        ] = {}
        # Per file, set by _header_work.
        self.buf: bytes | bytearray | memoryview = b""
        self.view = memoryview(b"")
        self.codec = "iso8859"
        self.final: dict[int, bytes] = {}
        self.final_vr: dict[int, str] = {}
        self.age_override: bytes | None = None
        self.pixel_elem: _Elem | None = None
        self._marks: list[tuple[int, bytes]] = []
        # The last file's patient context: the native road (engine/native.py) learns its
        # answers for a patient's values from it.
        self.last_ctx: PatientContext | None = None

    # ------------------------------------------------------------------ entry point
    def apply(self, buf: bytes | bytearray | memoryview, name: str = "input") -> RawOutcome:
        """De-identify one file held in buf (pixels are masked in place if it is writable)."""
        try:
            # Everything that may send the file to the Dataset engine happens here, before
            # the pixels are masked in place: the buffer is only read.
            top, out, head, report = self._header_work(buf)
        except (NotRaw, MedveilError):
            raise
        except Exception as exc:
            # A damaged file the scanner let through: the Dataset engine names the problem.
            raise NotRaw(f"{type(exc).__name__} while reading") from None
        pixels = self.engine.pixels
        new_pixels = None
        store = elements(top)
        if pixels is None and (PIXEL_DATA in store or _FLOAT_PIXELS & store.keys()):
            from medveil.pixels.sidebytes import strip_beside_image

            # Without Clean Pixel Data too: metadata beside the image is not the image.
            if strip_beside_image(top):
                if _EXTENDED_OFFSETS in store:
                    raise NotRaw("an Extended Offset Table to rewrite")
                new_pixels = store[_PIXEL_TAG].value
        if pixels is not None and PIXEL_DATA not in store and _FLOAT_PIXELS & store.keys():
            # Float pixel data is checked (a quarantine at most), never changed.
            report.pixels = pixels.clean(top, source=name)  # type: ignore[attr-defined]
        if pixels is not None and PIXEL_DATA in store:
            before = store[_PIXEL_TAG].value
            report.pixels = pixels.clean(top, source=name)  # type: ignore[attr-defined]
            after = store[_PIXEL_TAG].value
            if after is not before:
                new_pixels = after
            pixel_report = report.pixels
            if (
                self.pixel_elem is not None
                and self.pixel_elem.length == _UNDEFINED
                and (
                    new_pixels is not None
                    or getattr(pixel_report, "modified", False)
                    or getattr(pixel_report, "transfer_syntax_out", None)
                    != getattr(pixel_report, "transfer_syntax_in", None)
                )
                and not _only_stripped(pixel_report, store)
            ):
                # Decoded, masked and re-encoded: the Dataset engine writes that file. The
                # input was not touched (compressed pixels are never masked in place).
                raise NotRaw("compressed pixels changed")
        if new_pixels is not None and len(new_pixels) % 2:
            raise NotRaw("odd-length new pixel data")  # a new object: the input is untouched
        self._pixel_marks(report)
        pieces = self._assemble(out, new_pixels)
        chunks: list[bytes | memoryview] = [head]
        size = len(head)
        pixel_at = -1
        big = False
        for tag, chunk, is_big in pieces:
            if tag == PIXEL_DATA:
                pixel_at = size
            size += len(chunk)
            big = big or is_big
            chunks.append(chunk)
        # The post-check, the write and the catalog's hash all take the output whole: it is
        # made once here. A large one through the core (huge pages, no GIL; with the hash in
        # the same pass when _HASH_OUTPUT), not b"".join's fresh 4 KiB page per fault.
        data, sha256 = gather(chunks, _HASH_OUTPUT) if big else (b"".join(chunks), None)
        values = {}
        for tag in _CATALOG_TAGS:
            text = self.final.get(tag)
            if text is not None:
                vr = self.final_vr[tag]
                key = BaseTag(tag)
                values[key] = raw_tuple((key, vr, len(text), text, 0, False, True, True, False))
        if self.charset is not None:
            values[BaseTag(0x00080005)] = self.charset
        final = dataset_over(values)
        return RawOutcome([data], pixel_at, report, final, self.implicit, sha256)

    def _header_work(
        self, buf: bytes | bytearray | memoryview
    ) -> tuple[Dataset, list[tuple[int, bytes | memoryview]], bytes, DeidReport]:
        """Scan, decide every element and encode the file meta; the buffer is only read."""
        if len(buf) < 144 or buf[128:132] != b"DICM":
            raise NotRaw("no preamble")
        if buf[132:136] != b"\x02\x00\x00\x00" or buf[136:138] != b"UL":
            raise NotRaw("no meta group length")
        # The meta ends where group 2 does, whatever its group length says: pydicom reads
        # it so, and a short length must not carry meta elements into the data set.
        meta_end = _meta_end(buf)
        meta_elems, _ = _scan(buf, 132, meta_end)
        if any(e.tag == 0x00020000 and (e.vr != "UL" or e.length != 4) for e in meta_elems):
            # The meta templates are keyed without the group length (the writer computes
            # it anew): one of another size or VR would change the meta, or not write.
            raise NotRaw("file meta group length not one UL value")
        self.buf = buf
        self.view = memoryview(buf)
        meta = FileMetaDataset({BaseTag(e.tag): self._raw(e) for e in meta_elems})
        ts = elements(meta).get(_TS_TAG)
        syntax = None if ts is None else bytes(ts.value or b"").rstrip(b"\x00 ").decode("latin-1")
        if syntax not in (_EXPLICIT_LE, _IMPLICIT_LE) and syntax not in _ENCAPSULATED:
            raise NotRaw("not a little-endian transfer syntax it covers")
        self.implicit = implicit = syntax == _IMPLICIT_LE
        self._marks = self._marks_by[(implicit, False)]
        elems, _ = _scan(buf, meta_end, len(buf), implicit)
        top = dataset_over({BaseTag(e.tag): self._raw(e) for e in elems}, implicit, meta)
        charset = elements(top).get(_CHARSET_TAG)
        # The VR with the bytes: written with another VR, the same bytes may not read as
        # a character set at all (pydicom raises), whatever an earlier file's CS said.
        key = (charset.VR, bytes(charset.value or b"")) if charset is not None else None
        codec = _CHARSETS.get(key)
        if codec is None:
            codecs = convert_encodings(character_set(top))
            if len(codecs) != 1:
                raise NotRaw("more than one character set")
            codec = _CHARSETS[key] = codecs[0]
        self.codec = codec
        if "SOPClassUID" not in top or "SOPInstanceUID" not in top:
            raise NotRaw("not a composite instance")
        # "input", not the file's name: the reason goes to the run records, names may be PHI.
        check_pixel_length(top, "input")
        report = DeidReport()
        ctx = self.decider.context(
            lambda kw: [str(v) for v in self._values(top, kw)], lambda: self._identity(top, elems)
        )
        report.date_offset_days = ctx.offset if self.compiled.shift_dates else 0
        self.last_ctx = ctx
        self.final = {}
        self.final_vr = {}
        self.age_override = None
        self.pixel_elem = None
        out = self._walk(elems, ctx, report, "", top=True)
        pixel = self.pixel_elem
        if pixel is not None and pixel.length != _UNDEFINED and (pixel.end - pixel.vstart) % 2:
            raise NotRaw("odd-length pixel data")
        sop = self._final_text(0x00080018)
        if not sop:
            raise NotRaw("no SOP Instance UID in the output")
        head = b"\x00" * 128 + b"DICM" + self._file_meta(meta_elems, meta, ctx, report, sop)
        self._cap_age(report)  # after the meta, as the Dataset engine reports it
        self.charset = charset if isinstance(charset, RawDataElement) else None
        return top, out, head, report

    # ------------------------------------------------------------------ pieces
    def _raw(self, e: _Elem) -> RawDataElement:
        end = e.end - 8 if e.length == _UNDEFINED else e.end
        if e.tag == PIXEL_DATA and e.length != _UNDEFINED:
            value: bytes | memoryview = self.view[e.vstart : end]  # masked in place
        else:
            # Encapsulated pixels are bytes: pydicom's frame parser cannot read a view.
            value = bytes(self.buf[e.vstart : end])
        length = _UNDEFINED if e.length == _UNDEFINED else len(value)
        implicit = self.implicit and e.tag >> 16 != 2  # the file meta is always explicit
        vr = None if implicit else e.vr
        # By position: the hot path (keywords cost twice as much); pydicom_private checks
        # the order against RAW_FIELDS when it is imported.
        return raw_tuple((BaseTag(e.tag), vr, length, value, e.vstart, implicit, True, True, False))

    def _identity(self, top: Dataset, elems: list[_Elem]) -> Identity:
        """The file's identifying values: its keywords' values and every PN in it."""
        pns: list[_Elem] = []
        stack = [elems]
        while stack:
            for e in stack.pop():
                vr = e.vr
                if vr == "PN" or (vr == "UN" and self._vr(e) == "PN"):
                    pns.append(e)
                elif vr == "SQ":
                    stack.extend(item.elems for item in e.items)
        # A patient's files carry the same values: keyed by their bytes, the identity is
        # decoded once per patient and series, not once per file.
        buf, d = self.buf, elements(top)
        key = (
            self.codec,
            tuple(bytes(buf[e.vstart : e.end]) for e in pns),
            tuple(None if (elem := d.get(tag)) is None else elem.value for tag in _TERM_TAGS),
        )
        found = _IDENTITIES.get(key)
        if found is None:
            names = [name for e in pns for name in self._text(e)]
            found = identity_of(lambda kw: [str(v) for v in self._values(top, kw)], names)
            if len(_IDENTITIES) >= 256:
                _IDENTITIES.clear()
            _IDENTITIES[key] = found
        return found

    def _values(self, top: Dataset, keyword: str) -> list[object]:
        """An element's values as identity_terms reads them, decoded straight from its bytes."""
        tag = _KEYWORD_TAGS.get(keyword)
        if tag is None:
            found = tag_for_keyword(keyword)
            tag = _KEYWORD_TAGS[keyword] = BaseTag(found if found is not None else 0xFFFFFFFF)
        elem = elements(top).get(tag)
        if elem is None:
            return []
        value = elem.value
        if elem.VR == "SQ" or not isinstance(value, bytes) or b"\x1b" in value:
            found = top.get(keyword)
            if found is None or found == "":
                return []
            return list(found) if isinstance(found, (list, MultiValue)) else [found]
        try:
            values = decode_text(value, self.codec)
        except UnicodeDecodeError:
            values = None
        if values is None:
            raise NotRaw("undecodable identifying value")
        return list(values)

    def _file_meta(
        self,
        elems: list[_Elem],
        meta: FileMetaDataset,
        ctx: PatientContext,
        report: DeidReport,
        sop: str,
    ) -> bytes:
        """The output's File Meta Information, as the Dataset engine and writer make it.

        The meta goes through the Dataset engine's own walk and pydicom's meta writer, once
        per distinct meta: within a run only the SOP Instance UID changes between files.
        """
        key = self.meta_template_key(self.buf, elems, ctx)
        cached = self._meta_templates.get(key)
        if cached is None:
            walked = DeidReport()
            meta = self._meta_out(elems, ctx, walked)
            if "MediaStorageSOPClassUID" not in meta:
                raise NotRaw("no Media Storage SOP Class")
            meta.MediaStorageSOPInstanceUID = UID(sop)
            meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
            meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
            pre, post = file_meta_template(meta)
            if len(self._meta_templates) >= 256:
                self._meta_templates.clear()
            cached = self._meta_templates[key] = (pre, post, list(walked.taken))
        pre, post, taken = cached
        for path, tag, action in taken:
            report.add(path, tag, action)
        return splice_file_meta(pre, post, sop)

    def _meta_out(
        self, elems: list[_Elem], ctx: PatientContext, report: DeidReport
    ) -> FileMetaDataset:
        """The file meta after the walk, as raw elements for pydicom's meta writer."""
        implicit, self.implicit = self.implicit, False  # the meta is always Explicit VR
        try:
            out = self._walk(elems, ctx, report, "meta", top=False)
        finally:
            self.implicit = implicit
        meta = FileMetaDataset()
        for tag, chunk in out:
            data = bytes(chunk)
            vr = data[4:6].decode("latin-1")
            value = data[12:] if vr in _LONG_VR_STR else data[8:]
            elements(meta)[BaseTag(tag)] = raw_element(
                tag, vr, len(value), value, implicit=False, little=True
            )
        return meta

    def meta_template_key(
        self, buf: bytes | bytearray | memoryview, elems: list[_Elem], ctx: PatientContext
    ) -> tuple[object, ...]:
        """Everything the output meta's template depends on, for the template cache.

        Each element's VR is part of it: the walk removes a meta element whose VR its
        tag does not allow, so two metas alike but for a VR make different templates.
        The character set counts only where a value holds bytes it could decode.
        """
        values = [
            (e.tag, e.vr, e.length, bytes(buf[e.vstart : e.end]))
            for e in elems
            if e.tag not in (0x00020000, 0x00020003)
        ]
        # The SOP Instance UID changes file by file: only its VR, whether it is empty and
        # whether it decodes (the walk reads it to map it) shape the template; the value
        # itself where it is not plain ASCII or holds more than one UID (each is mapped:
        # many may not fit the VR's length).
        sop = []
        plain = all(v.isascii() and b"\x1b" not in v for *_, v in values)
        for e in elems:
            if e.tag == 0x00020003:
                value = bytes(buf[e.vstart : e.end])
                odd = not value.isascii() or b"\x1b" in value or b"\\" in value
                sop.append((e.vr, bool(e.length), value if odd else None))
                plain = plain and not odd
        return (
            *values,
            tuple(sop),
            None if plain else self.codec,
            self._meta_context(elems, ctx),
        )

    def _meta_context(self, elems: list[_Elem], ctx: PatientContext) -> object:
        """What of the patient the meta's rules read: nothing, unless one cleans or shifts."""
        compiled = self.compiled
        for e in elems:
            rule = compiled.by_tag.get(e.tag) or compiled.rule_for(e.tag)
            if rule is not None and rule.action not in _CONTEXT_FREE:
                return (ctx.offset, ctx.identity)
        return None

    def _final_text(self, tag: int) -> str | None:
        value = self.final.get(tag)
        if value is None:
            return None
        text: str = value.decode("ascii", "replace")
        return text.rstrip("\x00 ")

    def _assemble(
        self, out: list[tuple[int, bytes | memoryview]], new_pixels: object
    ) -> list[tuple[int, bytes | memoryview, bool]]:
        """Top-level output pieces in tag order: (tag, bytes, is a big value)."""
        pieces: list[tuple[int, bytes | memoryview, bool]] = []
        marks = self._marks
        mi = 0
        for tag, chunk in out:
            while mi < len(marks) and marks[mi][0] < tag:
                pieces.append((marks[mi][0], marks[mi][1], False))
                mi += 1
            if mi < len(marks) and marks[mi][0] == tag:
                pieces.append((tag, marks[mi][1], False))
                mi += 1
                continue
            if tag == 0x00101010 and self.age_override is not None:
                pieces.append((tag, self.age_override, False))
                continue
            if tag == PIXEL_DATA and self.pixel_elem is not None:
                e = self.pixel_elem
                if e.length == _UNDEFINED:
                    # New fragments only when metadata beside the image was cut from them.
                    frags = (
                        new_pixels
                        if isinstance(new_pixels, (bytes, bytearray, memoryview))
                        else self.view[e.vstart : e.end - 8]
                    )
                    pieces.append((tag, _header(tag, e.vr, _UNDEFINED, self.implicit), False))
                    pieces.append((-1, memoryview(frags), len(frags) >= 65536))
                    pieces.append((-1, _SEQ_DELIMS, False))
                    continue
                value = (
                    new_pixels
                    if isinstance(new_pixels, (bytes, bytearray, memoryview))
                    else self.view[e.vstart : e.end]
                )
                pieces.append((tag, _header(tag, e.vr, len(value), self.implicit), False))
                pieces.append((-1, memoryview(value), len(value) >= 65536))
                continue
            pieces.append((tag, chunk, False))
        for tag, chunk in marks[mi:]:
            pieces.append((tag, chunk, False))
        return pieces

    # ------------------------------------------------------------------ the walk
    def _walk(
        self, elems: list[_Elem], ctx: PatientContext, report: DeidReport, path: str, top: bool
    ) -> list[tuple[int, bytes | memoryview]]:
        """Decide every element of one dataset; returns (tag, bytes) in order."""
        decider = self.decider
        by_tag = decider.by_tag
        out: list[tuple[int, bytes | memoryview | None]] = []
        private: list[int] = []
        by_pos: dict[int, _Elem] = {}
        plain = self._plain
        view = self.view
        for e in elems:
            tag = e.tag
            vr = plain.get(tag)
            if vr is None:
                vr = plain[tag] = self._plain_vr(tag)
            if vr == e.vr and tag != PIXEL_DATA:
                # Kept as it is, nothing to report: the common case, decided once per tag.
                chunk = view[e.start : e.end]
                if top and tag in _CATALOG_TAGS_SET:
                    self._note_final(e, chunk)
                out.append((tag, chunk))
                continue
            rule = by_tag.get(tag)
            if rule is None:
                if tag >> 16 & 1:  # the common route of a rule-less tag, without a call
                    route = ROUTE_PRIVATE
                else:
                    route, rule = decider.rule(tag)
                if route is ROUTE_PRIVATE:
                    by_pos[tag] = e
                    out.append((tag, None))
                    private.append(tag)
                    continue
                if route is ROUTE_DROP:
                    continue
            if rule is None:
                vr = self._vr(e)
                empty = vr in ("DA", "DT") and self._empty(e)
                decision = decider.unknown(tag, vr, empty, partial(self._text, e), ctx)
            elif tag == CODE_MEANING and decider.cleans_code_meaning:
                decision = self._code_meaning(e, elems, rule, ctx)
            else:
                decision = self._decide(e, rule, ctx)
            res = self._do(e, decision, ctx, report, path)
            if res is None:
                continue
            if top and tag in _CATALOG_TAGS_SET:
                self._note_final(e, res)
            if tag == PIXEL_DATA and top:
                self.pixel_elem = e
            out.append((tag, res))
        if private:
            keep = self._private(private, by_pos, ctx, report, path)
            return [
                (tag, chunk if chunk is not None else keep[tag])
                for tag, chunk in out
                if chunk is not None or tag in keep
            ]
        return out  # type: ignore[return-value]

    def _plain_vr(self, tag: int) -> str:
        """The VR with which this tag is kept as it is, unreported ("" if never)."""
        compiled = self.compiled
        if tag >> 16 & 1:
            return ""
        vr = dictionary_vr(tag) or ""
        if vr in ("", "SQ", "AS"):
            return ""  # files that give it another VR take the general path; ages are capped
        if tag == CODE_MEANING and self.decider.cleans_code_meaning:
            return ""  # judged with its item's coding scheme
        rule = self.decider.by_tag.get(tag)
        if rule is None:
            if tag & 0xFFFF == 0 and tag >> 16 != 2:
                return ""
            rule = self.decider.rule(tag)[1]
        if rule is not None:
            return vr if rule.action == "K" else ""
        if not compiled.keeps_unknown(tag):
            return ""
        return "" if vr in ("DA", "DT") and compiled.shift_dates else vr

    def _note_final(self, e: _Elem, chunk: bytes | memoryview) -> None:
        """Remember the output value of a catalog element (the bytes after its header)."""
        head = 12 if e.vr in _LONG_VR_STR and not self.implicit else 8
        self.final_vr[e.tag] = e.vr
        self.final[e.tag] = bytes(chunk[head:])

    def _keep(self, e: _Elem) -> bytes | memoryview:
        """The element unchanged; an explicit UN one is not (pydicom writes it as its VR)."""
        if e.vr == "UN" and not self.implicit:
            raise NotRaw("an element of VR UN is kept")
        return self._copy(e)

    def _copy(self, e: _Elem) -> bytes | memoryview:
        # A view of the input: the output is joined from the pieces once, at the end.
        return self.view[e.start : e.end] if e.tag != PIXEL_DATA else b""

    def _text(self, e: _Elem) -> list[str]:
        """The values of a text element, as raw_text decodes them."""
        values = decode_text(bytes(self.buf[e.vstart : e.end]), self.codec)
        if values is None:
            raise NotRaw("ISO 2022 escapes or undecodable text")
        return values

    def _put(self, e: _Elem, values: list[str]) -> bytes:
        if e.vr in _CODEC_TEXT and not all(v.isascii() for v in values):
            # pydicom encodes such text with the file's one character set, space-padded.
            try:
                value = "\\".join(values).encode(self.codec)
            except UnicodeEncodeError:
                raise NotRaw("replacement outside the character set") from None
            if len(value) % 2:
                value += b" "
        else:
            value = _text_bytes(e.vr, values)
        return _header(e.tag, e.vr, len(value), self.implicit) + value

    def _empty(self, e: _Elem) -> bool:
        """True when the element holds nothing (a sequence: no items)."""
        if e.vr == "SQ":
            return not e.items
        return is_empty(self.buf[e.vstart : e.end])

    def _code_meaning(
        self, e: _Elem, elems: list[_Elem], rule: Rule, ctx: PatientContext
    ) -> Decision:
        """CodeMeaning, judged with its item's coding scheme as the input has it."""
        scheme = None
        for sib in elems:
            if sib.tag == CODING_SCHEME:
                if self._vr(sib) == "SH":  # anything else is not trusted: read as none
                    scheme = self._text(sib)
                break
        empty = False if rule.action in ("K", "X") else self._empty(e)
        text = partial(self._text, e)
        return self.decider.code_meaning(self._vr(e), rule, scheme, empty, text, ctx)

    def _decide(self, e: _Elem, rule: Rule, ctx: PatientContext) -> Decision:
        """The decision layer's answer for an element with a rule."""
        empty = False if rule.action in ("K", "X") and e.vr != "SQ" else self._empty(e)
        return self.decider.act(e.tag, self._vr(e), rule, empty, lambda: self._text(e), ctx)

    @staticmethod
    def _vr(e: _Elem) -> str:
        """The VR the element is decided with: UN reads as the dictionary's, as pydicom does."""
        if e.vr == "UN":
            return dictionary_vr(e.tag) or "UN"
        return e.vr

    def _do(
        self, e: _Elem, decision: Decision, ctx: PatientContext, report: DeidReport, path: str
    ) -> bytes | memoryview | None:
        """Carry out one decision: the element's output bytes, or None to remove it."""
        kind, vr, tag = decision.kind, e.vr, e.tag
        out: bytes | memoryview | None
        if kind is KIND_REMOVE:
            out = None
        elif vr == "UN":
            raise NotRaw(f"action {decision.report or 'K'} on an element of unknown VR")
        elif kind is KIND_KEEP:
            out = self._recurse(e, ctx, report, path) if vr == "SQ" else self._keep(e)
        elif kind is KIND_PUT:
            out = self._put(e, list(decision.values))
        elif kind is KIND_EMPTY:
            out = self._sequence(e, []) if vr == "SQ" else _header(tag, vr, 0, self.implicit)
        elif kind is KIND_ZERO:
            zero = zero_value(vr)
            out = _header(tag, vr, len(zero), self.implicit) + zero
        elif kind is KIND_DUMMY_ITEMS:
            out = self._sequence(e, [(self._dummy_body(i), i.undefined) for i in e.items])
        else:
            raise NotRaw(f"action {decision.report} on {vr}")
        report.record(path, tag, decision)
        return out

    def _dummy_body(self, item: _Item) -> bytes:
        """An item of a sequence whose action is D, every value its VR's dummy."""
        decider = self.decider
        chunks: list[bytes | memoryview] = []
        cache = self._dummies
        for e in item.elems:
            # Most dummies depend on the tag and VR alone: their bytes are made once.
            key = (e.tag, e.vr, self.implicit, self._empty(e))
            chunk = cache.get(key)
            if chunk is not None:
                chunks.append(chunk)
                continue
            decision = decider.dummy_item_element(
                e.tag, self._vr(e), self._empty(e), partial(self._text, e)
            )
            kind = decision.kind
            if kind is KIND_REMOVE:
                continue
            if e.vr == "UN":
                raise NotRaw("an element of VR UN in a dummy item")
            if kind is KIND_PUT:
                chunk = self._put(e, list(decision.values))
                if decider.dummy_is_fixed(e.tag, e.vr) and len(cache) < 4096:
                    cache[key] = chunk
                chunks.append(chunk)
            elif kind is KIND_ZERO:
                zero = dummy_zeros(e.tag, e.vr)
                chunks.append(_header(e.tag, e.vr, len(zero), self.implicit) + zero)
            elif kind is KIND_DUMMY_ITEMS:
                chunks.append(
                    self._sequence(e, [(self._dummy_body(i), i.undefined) for i in e.items])
                )
            else:
                chunks.append(self._copy(e))
        return b"".join(chunks)

    def _recurse(self, e: _Elem, ctx: PatientContext, report: DeidReport, path: str) -> bytes:
        base = path + tag_text(e.tag)
        bodies: list[tuple[bytes, bool]] = []
        for i, item in enumerate(e.items):
            for sub in item.elems:
                if sub.tag == 0x00080005:
                    raise NotRaw("character set inside an item")
            out = self._walk(item.elems, ctx, report, f"{base}[{i}]/", top=False)
            bodies.append((b"".join(chunk for _, chunk in out), item.undefined))
        return self._sequence(e, bodies)

    def _sequence(self, e: _Elem, bodies: list[tuple[bytes, bool]]) -> bytes:
        """Encode a sequence as pydicom writes one read from a file."""
        items = []
        for body, undefined in bodies:
            if undefined:
                items.append(b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + bytes(body) + _ITEM_DELIMS)
            else:
                items.append(b"\xfe\xff\x00\xe0" + _U32.pack(len(body)) + bytes(body))
        value = b"".join(items)
        head = _TAG.pack(e.tag >> 16, e.tag & 0xFFFF) + (b"" if self.implicit else b"SQ\x00\x00")
        if e.length == _UNDEFINED:
            return head + b"\xff\xff\xff\xff" + value + _SEQ_DELIMS
        return head + _U32.pack(len(value)) + value

    def _private(
        self,
        tags: list[int],
        by_pos: dict[int, _Elem],
        ctx: PatientContext,
        report: DeidReport,
        path: str,
    ) -> dict[int, bytes | memoryview]:
        """The Dataset engine's private-block decisions; tag -> the bytes of what is kept."""
        creators: dict[tuple[int, int], str] = {}
        creator_bytes: dict[int, bytes] = {}
        for tag in tags:
            elem_no = tag & 0xFFFF
            if 0x0010 <= elem_no <= 0x00FF:
                e = by_pos[tag]
                if e.vr == "SQ" or e.items:
                    raise NotRaw("sequence as private creator")
                text = bytes(self.buf[e.vstart : e.end])
                if b"\\" in text:
                    raise NotRaw("multi-valued private creator")
                try:
                    decoded = text.decode(self.codec)
                except UnicodeDecodeError:
                    raise NotRaw("undecodable private creator") from None
                if e.vr not in _TEXTISH and e.vr != "UN":
                    raise NotRaw("private creator of a binary VR")
                value = decoded.rstrip("\x00 ")
                creators[(tag >> 16, elem_no)] = value.strip()
                # The Dataset engine decodes creators, so pydicom writes them re-encoded.
                encoded = value.encode(self.codec)
                if len(encoded) % 2:
                    encoded += b" "
                # pydicom reads a creator of VR UN as the LO it always is.
                vr = "LO" if e.vr == "UN" else e.vr
                creator_bytes[tag] = _header(tag, vr, len(encoded), self.implicit) + encoded
        keep: dict[int, bytes | memoryview] = {}
        plan = self.decider.plan_private(tags, creators, lambda tag: self._written(by_pos[tag]))
        for tag, verdict, rule in plan:
            if verdict is VERDICT_REMOVE or (verdict is VERDICT_ACT and rule is None):
                report.add(path, tag, "X")
            elif verdict is VERDICT_NOT_SAFE:
                report.add(path, tag, verdict.value)
            elif verdict is VERDICT_SAFE_RECURSE:
                e = by_pos[tag]
                if e.vr != "SQ" and not (self.implicit and e.items is not _NO_ITEMS):
                    # Items without a VR in the file (a defined-length Implicit VR value,
                    # an explicit UN): the Dataset engine parses them, or removes the value.
                    raise NotRaw("safe private sequence without VR SQ")
                keep[tag] = self._recurse(e, ctx, report, path)
                report.add(path, tag, verdict.value)
            elif verdict is VERDICT_ACT and rule is not None:
                e = by_pos[tag]
                res = self._do(e, self._decide(e, rule, ctx), ctx, report, path)
                if res is not None:
                    keep[tag] = res
            elif verdict is VERDICT_CREATOR:
                keep[tag] = creator_bytes[tag]
            elif verdict in (VERDICT_KEEP, VERDICT_SAFE):
                if verdict is VERDICT_SAFE:
                    report.add(path, tag, verdict.value)
                e = by_pos[tag]
                if e.vr == "SQ":
                    raise NotRaw("private sequence kept")
                if e.vr == "AS":  # a kept private age is capped like any other
                    capped = capped_age(partial(self._text, e))
                    if capped is not KEEP:
                        res = self._do(e, capped, ctx, report, path)
                        if res is not None:
                            keep[tag] = res
                        continue
                keep[tag] = self._keep(e)
        return keep

    def _written(self, e: _Elem) -> tuple[str | None, bytes | None]:
        """The element as Retain Safe Private judges it (the Dataset engine's _written)."""
        if e.vr == "SQ" or e.items is not _NO_ITEMS:
            return "SQ", None  # read as items, as pydicom reads it
        return (None if self.implicit else e.vr), bytes(self.buf[e.vstart : e.end])

    def _pixel_marks(self, report: DeidReport) -> None:
        """This file's marks and Burned In Annotation, as the Dataset engine sets them."""
        value, clean = pixel_marks(report)
        marks = self._marks_by[(self.implicit, clean)]
        if value is not None:
            text = value.encode("ascii")
            if len(text) % 2:
                text += b" "
            head = _header(_BURNED_IN, "CS", len(text), self.implicit)
            # Merged in tag order like the marks, replacing any (0028,0301) of the input.
            marks = sorted([*marks, (_BURNED_IN, head + text)])
        self._marks = marks

    def _cap_age(self, report: DeidReport) -> None:
        """Safe Harbor's age cap on the output value, as the Dataset engine does it."""
        value = self.final.get(0x00101010)
        if value is None:
            return
        values = decode_text(value, self.codec)
        if values is None:
            raise NotRaw("undecodable age")
        capped = cap_age("\\".join(values))
        if capped is None:
            return
        new = capped[0].encode("ascii")
        report.add("", 0x00101010, capped[1])
        self.final[0x00101010] = new
        self.final_vr[0x00101010] = "AS"
        self.age_override = _header(0x00101010, "AS", len(new), self.implicit) + new


# Actions whose result depends on the value alone (and the secret), not on the patient.
_CONTEXT_FREE = frozenset({"K", "X", "Z", "D", "U", "pseudonym", *COMBINED_ACTIONS})
_KEYWORD_TAGS: dict[str, BaseTag] = {
    kw: BaseTag(tag_for_keyword(kw) or 0xFFFFFFFF) for kw in IDENTITY_KEYWORDS
}
_TERM_TAGS = tuple(BaseTag(tag_for_keyword(kw) or 0xFFFFFFFF) for kw in TERM_KEYWORDS)
_IDENTITIES: dict[tuple[object, ...], Identity] = {}
_PIXEL_TAG = BaseTag(PIXEL_DATA)
_BURNED_IN = 0x00280301
_TS_TAG = BaseTag(0x00020010)
_CHARSET_TAG = BaseTag(0x00080005)
# Text VRs whose non-ASCII values pydicom encodes with the file's character set as is
# (PN is encoded per component group, and goes to the Dataset engine).
_CODEC_TEXT = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_TEXTISH = frozenset({"LO", "SH", "CS", "AE", "UC", "ST", "LT", "UT", "PN"})
_CATALOG_TAGS_SET = frozenset(_CATALOG_TAGS)


def _sequence_tags() -> np.ndarray:
    """Every tag the data dictionary makes a sequence, for the scanner's Implicit VR reads."""
    dictionary: dict[int, tuple[str, str, str, str, str]] = datadict.DicomDictionary  # type: ignore[attr-defined]
    repeaters: dict[str, tuple[str, str, str, str, str]] = datadict.RepeatersDictionary  # type: ignore[attr-defined]
    # An entry's first VR is the one dictionary_vr gives for a tag the dictionary lists;
    # read straight from the entries, as dictionary_vr per tag costs ~10 ms at import.
    tags = {t for t, entry in dictionary.items() if entry[0].split(" or ")[0] == "SQ"}
    for mask, entry in repeaters.items():
        if entry[0].split(" or ")[0] != "SQ":
            continue
        # A mask such as "50xx2600": each x is any hex digit.
        for digits in itertools.product("0123456789abcdef", repeat=mask.count("x")):
            text = mask
            for d in digits:
                text = text.replace("x", d, 1)
            if dictionary_vr(int(text, 16)) == "SQ":
                tags.add(int(text, 16))
    return np.array(sorted(tags), dtype=np.uint32)


_SQ_TAGS = _sequence_tags()
