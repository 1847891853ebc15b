"""Every element value of a file, decoded with the file's own character sets, from its bytes.

The shared front end of the verifier and of the engine's post-check: the raw walker
(:mod:`medveil.verify.rawscan`) gives the byte range of each element at every depth (file
meta, sequences, private blocks, after Pixel Data, inside a deflated data set), and this
decodes each text value with the Specific Character Set in force where it sits (the data
set's, or an item's own). Nothing here trusts a tolerant parser: a file the walker cannot
follow to its end is reported incomplete, and callers treat that as a failure.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import keyword_for_tag

from medveil._core import scan_elements
from medveil.dicom.strict import (
    DEFLATED_SYNTAXES,
    Prescan,
    StructureError,
    dataset_offset,
    inflate_dataset,
    sq_tags,
)
from medveil.verify.rawscan import PIXEL_TAGS, RawLayout, Span, dictionary_vr, layouts
from medveil.verify.values import Learner, ValueIndex, decode_un

# VRs whose value is text in the data set's character set (multi-valued with backslash).
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})
# Binary values: searched as bytes only, never decoded as text.
_NUMERIC_VRS = frozenset(
    {"US", "SS", "UL", "SL", "FL", "FD", "AT", "OF", "OD", "OL", "OV", "SV", "UV", "OW"}
)
_PN_DELIMS = {0x5E, 0x3D, 0x5C}
_TEXT_DELIMS = {0x0D, 0x0A, 0x09, 0x0C, 0x5C}
_CHARSET = 0x00080005
_ASCII_ONLY = ["iso8859"]
_VR_BYTES = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US "
    b"OB OD OF OL OV OW SQ UC UR UT SV UV UN".split()
)
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_ITEM_TAG = b"\xfe\xff\x00\xe0"


class Decoded(NamedTuple):
    """One element's value: where it is (layout, span) and its text values (maybe none)."""

    layout: RawLayout
    span: Span
    texts: tuple[str, ...]

    @property
    def in_meta(self) -> bool:
        """True for a file meta element (group 0002 of the file itself)."""
        return self.layout.name == "file" and self.span.start < self.layout.meta_end


def _codecs(raw: bytes) -> list[str]:
    """Python codecs of a Specific Character Set value (ASCII when unknown)."""
    return list(_codecs_of(bytes(raw)))


@lru_cache(maxsize=256)
def _codecs_of(raw: bytes) -> tuple[str, ...]:
    """_codecs, memoised: an archive repeats a handful of character sets in every file."""
    return tuple(_convert(raw))


def _convert(raw: bytes) -> list[str]:
    """Python codecs of a Specific Character Set value (ASCII when unknown)."""
    terms = [t.strip(" \x00") for t in raw.decode("latin-1").split("\\")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return convert_encodings(terms)
        except Exception:
            return ["iso8859"]


def _prefix(path: str) -> str:
    """The item prefix of an element path: ``(0008,1111)[0]/`` of ``(0008,1111)[0]/(x,y)``."""
    return path[: path.rfind("/") + 1]


def _parent(prefix: str) -> str:
    """The enclosing item's prefix (``''`` at the top)."""
    inner = prefix[:-1]
    return inner[: inner.rfind("/") + 1] if "/" in inner else ""


def span_texts(data: bytes, span: Span, codecs: list[str]) -> tuple[str, ...]:
    """The text values of one element's bytes, decoded as its VR and character set say."""
    return value_texts(data, span.start, span.end, span.vr, codecs)


def value_texts(
    data: bytes | bytearray | memoryview, start: int, end: int, vr: str, codecs: list[str]
) -> tuple[str, ...]:
    """The text values of the bytes ``data[start:end]`` of an element of this VR."""
    if end <= start or vr == "SQ" or vr in _NUMERIC_VRS:
        return ()
    raw = bytes(data[start:end])
    if vr in _CHARSET_VRS:
        if raw.isascii() and b"\x1b" not in raw:
            # The usual case, without pydicom's machinery: ASCII without an escape sequence
            # decodes to itself in every character set pydicom maps (tests check them all).
            text = raw.decode("ascii")
        else:
            try:
                text = decode_bytes(raw, codecs, _PN_DELIMS if vr == "PN" else _TEXT_DELIMS)
            except Exception:
                text = raw.decode("latin-1")
    elif vr in _ASCII_VRS:
        text = raw.decode("latin-1")
    else:  # UN, OB, unknown: text only if it reads as text
        text = decode_un(raw) or ""
        vr = "UT"
    values = [text] if vr in _SINGLE_VALUED else text.split("\\")
    return tuple(t for t in (v.strip(" \x00") for v in values) if t)


def decoded_elements(data: bytes) -> tuple[list[RawLayout], list[Decoded]]:
    """The file's layouts and every non-pixel element value in them, decoded.

    Sequences are listed (without texts) so callers see the whole tree; the deflated
    blob of a deflated file is not decoded (its inflated layout is).
    """
    lays = scanned_layouts(data) or layouts(data)
    out: list[Decoded] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on every odd character set
        for lay in lays:
            _decode_layout(lay, out)
    return lays, out


def _decode_layout(lay: RawLayout, out: list[Decoded]) -> None:
    """Append the decoded values of one layout to out."""
    buf = lay.data
    charsets: dict[str, list[str]] = {}
    for sp in lay.spans:
        if sp.tag == _CHARSET:
            charsets[_prefix(sp.path)] = _codecs(buf[sp.start : sp.end])
    # The usual file has one character set, the data set's: no per-item lookup then.
    single = charsets.get("", _ASCII_ONLY) if set(charsets) <= {""} else None
    for sp in lay.spans:
        if sp.tag in PIXEL_TAGS or (sp.tag == 0 and sp.path == "(deflated)"):
            continue
        codecs = single
        if codecs is None:
            prefix = _prefix(sp.path)
            codecs = charsets.get(prefix)
            while codecs is None and prefix:
                prefix = _parent(prefix)
                codecs = charsets.get(prefix)
        out.append(Decoded(lay, sp, span_texts(buf, sp, codecs or _ASCII_ONLY)))


def scanned_layouts(data: bytes) -> list[RawLayout] | None:
    """The layouts of a well-formed little-endian file from the core's element scanner.

    The fast road for files that passed the strict check (and for the engines' own
    output); None when the scanner cannot read the file, and the tolerant walker of
    :mod:`medveil.verify.rawscan` does instead.
    """
    try:
        meta_start, pos, ts = dataset_offset(data)
        if ts is None or ts == _EXPLICIT_BE:
            return None
        lay = RawLayout("file", data, meta_end=pos)
        if meta_start < pos:
            _spans(lay, data, meta_start, pos, False)
        if ts in DEFLATED_SYNTAXES:
            lay.spans.append(Span(pos, len(data), "(deflated)", 0, "OB", False))
            inner = RawLayout("inflated", inflate_dataset(data, pos))
            _spans(inner, inner.data, 0, len(inner.data), False)
            return [lay, inner]
        implicit = ts == _IMPLICIT_LE
        if not implicit and bytes(data[pos + 4 : pos + 6]) not in _VR_BYTES:
            return None  # Implicit VR under an Explicit VR syntax: the walker reads it
        _spans(lay, data, pos, len(data), implicit)
        return [lay]
    except (StructureError, ValueError):
        return None


def _spans(lay: RawLayout, buf: bytes, pos: int, end: int, implicit: bool) -> None:
    """Fill lay's spans and pixel ranges from the scanner's rows of buf[pos:end]."""
    rows, _stop, error = scan_elements(buf, pos, end, implicit, sq_tags())
    if error is not None:
        raise ValueError(error)
    _spans_of_rows(lay, buf, rows)


def _spans_of_rows(lay: RawLayout, buf: bytes, rows: np.ndarray) -> None:
    """Fill lay's spans and pixel ranges from the scanner's rows (one span per element row)."""
    prefix = [""]  # element path prefix per depth
    private = [False]
    seq_path: dict[int, str] = {}
    seq_private: dict[int, bool] = {}
    counter: dict[int, int] = {}
    spans = lay.spans
    for tag, code, _start, vstart, _length, stop, nitems, depth in rows.tolist():
        if tag < 0:  # an item of the sequence one level up
            i = counter.get(depth, 0)
            counter[depth] = i + 1
            del prefix[depth:], private[depth:]
            prefix.append(seq_path[depth - 1] + f"[{i}]/")
            private.append(seq_private[depth - 1])
            continue
        del prefix[depth + 1 :], private[depth + 1 :]
        vr = (chr(code & 0xFF) + chr(code >> 8)) if code else dictionary_vr(tag)
        path = f"{prefix[depth]}({tag >> 16:04X},{tag & 0xFFFF:04X})"
        priv = private[depth] or bool(tag >> 16 & 1)
        if nitems >= 0:
            seq_path[depth] = path
            seq_private[depth] = priv
            counter[depth + 1] = 0
            if vr not in ("SQ", "UN"):
                vr = "SQ"
        elif tag in PIXEL_TAGS:
            lay.pixel_ranges.append((vstart, stop))
        elif vr == "UN" and buf[vstart : vstart + 4] == _ITEM_TAG:
            # A sequence sent as UN with a defined length: the tolerant walker opens it.
            raise ValueError("sequence inside a UN value")
        spans.append(Span(vstart, stop, path, tag, vr, priv))


def value_segments(lays: list[RawLayout]) -> Iterator[tuple[RawLayout, Span | None, int, int]]:
    """Byte ranges to search raw: the preamble and every leaf value outside pixel data.

    Element headers are left out (they hold tags and lengths, no text), so a word
    boundary is always computed on a value, never across the next element's tag.
    """
    deflated = len(lays) > 1
    for lay in lays:
        if lay.name == "file" and lay.meta_end >= 128:
            yield lay, None, 0, 128
        walked = {sp.path[: sp.path.rfind("[")] for sp in lay.spans if "[" in sp.path}
        for sp in lay.spans:
            if sp.tag in PIXEL_TAGS or sp.end <= sp.start:
                continue
            if deflated and lay.name == "file" and sp.path == "(deflated)":
                continue  # searched inflated
            if sp.vr == "SQ" or sp.path in walked:
                continue  # its items' elements are segments of their own
            yield lay, sp, sp.start, sp.end


def learn_bytes(data: bytes, *, strict: bool = False, src: str = "input") -> ValueIndex:
    """The identifying values of one file, learned from its decoded bytes (every depth)."""
    learner = Learner(strict=strict)
    _, decoded = decoded_elements(data)
    for d in decoded:
        sp = d.span
        if d.texts:
            kw = keyword_for_tag(sp.tag) or ""
            learner.element(sp.tag, sp.vr, kw, d.texts, bool(sp.tag >> 16 & 1), src)
    learner.index.originals = 1
    return learner.finish()


# ----------------------------------------------------------------- the scanner's rows, direct
# The fast road of the post-check: a well-formed little-endian file is read from the core
# scanner's rows (tag, VR code, header start, value start, length, value end, items, depth)
# without a Span per element; the spans (with their paths) are built only when a caller
# needs to name or judge one element.
_TAG, _CODE, _START, _VSTART, _LENGTH, _STOP, _NITEMS, _DEPTH = range(8)


def _vr_code(vr: str) -> int:
    """The scanner's code of a VR: its two ASCII letters, little-endian."""
    return ord(vr[0]) | ord(vr[1]) << 8


_SQ = _vr_code("SQ")
_UN = _vr_code("UN")


def pixel_rows(tags: np.ndarray) -> np.ndarray:
    """Which rows are pixel data elements (PIXEL_TAGS; np.isin costs more on small arrays)."""
    out = np.zeros(len(tags), dtype=bool)
    for tag in PIXEL_TAGS:
        out |= tags == tag
    return out


def vr_table(vrs: str) -> np.ndarray:
    """A lookup table over scanner VR codes: ``table[codes]`` is True for these VRs."""
    table = np.zeros(1 << 16, dtype=bool)
    for vr in vrs.split():
        table[_vr_code(vr)] = True
    return table


_VR_OF_CODE: dict[int, str] = {}
_DICT_CODE: dict[int, int] = {}


def vr_of_code(code: int) -> str:
    """The VR string of a scanner VR code."""
    vr = _VR_OF_CODE.get(code)
    if vr is None:
        vr = _VR_OF_CODE[code] = chr(code & 0xFF) + chr(code >> 8)
    return vr


def _dict_code(tag: int) -> int:
    """The scanner code of a tag's dictionary VR (Implicit VR data sets), memoised."""
    code = _DICT_CODE.get(tag)
    if code is None:
        if len(_DICT_CODE) > 65536:  # private tags of many vendors: keep it bounded
            _DICT_CODE.clear()
        code = _DICT_CODE[tag] = _vr_code(dictionary_vr(tag))
    return code


class Scanned:
    """A well-formed little-endian file (file meta optional, not deflated) as scanner rows.

    ``rows`` holds the file meta's rows then the data set's, in file order, with absolute
    offsets; ``codes`` the VR code of each element row as :func:`decoded_elements` reads it
    (the dictionary's in Implicit VR, ``SQ`` for an opened sequence that says otherwise).
    ``codecs`` is the data set's character set, or None when an item has its own (callers
    then take the span road, which tracks one per item).
    """

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        rows: np.ndarray,
        codes: np.ndarray,
        meta_end: int,
        codecs: list[str] | None,
        shape: Shape | None = None,
    ) -> None:
        self.data = data
        self.rows = rows
        self.codes = codes
        self.meta_end = meta_end
        self.codecs = codecs
        self.shape = shape if shape is not None else _shape_of(rows)
        self._spans: list[Span] | None = None
        self._bounds: tuple[list[int], list[int]] | None = None
        self._span_of_row: np.ndarray | None = None

    def vr(self, i: int) -> str:
        """The VR of element row i."""
        return vr_of_code(int(self.codes[i]))

    def bounds(self) -> tuple[list[int], list[int]]:
        """(value start, value end) of every row, as lists."""
        if self._bounds is None:
            self._bounds = (self.rows[:, _VSTART].tolist(), self.rows[:, _STOP].tolist())
        return self._bounds

    def texts(self, i: int, vr: str | None = None) -> tuple[str, ...]:
        """The decoded text values of element row i (the data set's character set)."""
        starts, stops = self._bounds or self.bounds()
        return value_texts(
            self.data,
            starts[i],
            stops[i],
            vr or self.vr(i),
            self.codecs or _ASCII_ONLY,
        )

    def span(self, i: int) -> Span:
        """The Span (path, privacy) of element row i, as :func:`decoded_elements` names it."""
        if self._spans is None or self._span_of_row is None:
            lay = RawLayout("file", bytes(self.data), meta_end=self.meta_end)
            _spans_of_rows(lay, lay.data, self.rows[self.rows[:, _START] < self.meta_end])
            _spans_of_rows(lay, lay.data, self.rows[self.rows[:, _START] >= self.meta_end])
            self._spans = lay.spans
            self._span_of_row = np.cumsum(self.rows[:, _TAG] >= 0) - 1
        return self._spans[int(self._span_of_row[i])]


def scan_file(
    data: bytes | bytearray | memoryview, prescan: Prescan | None = None
) -> Scanned | None:
    """The scanner rows of a file that :func:`scanned_layouts` reads as one layout; else None.

    None for what the span road handles (no file meta, big endian, deflated, Implicit VR
    under an Explicit VR syntax, a sequence sent as UN with a defined length) and for a
    file the scanner cannot read: callers then use :func:`decoded_elements`, exactly as
    before this road existed. ``prescan``: what the strict check read of these very bytes
    (:func:`medveil.dicom.strict.check_structure_scan`), its rows then not scanned again.
    """
    if prescan is not None:
        meta_start, pos, ts = prescan.meta_start, prescan.pos, prescan.ts
    else:
        try:
            meta_start, pos, ts = dataset_offset(data)
        except StructureError:
            return None
    if ts is None or ts == _EXPLICIT_BE or ts in DEFLATED_SYNTAXES:
        return None
    implicit = ts == _IMPLICIT_LE
    if not implicit and bytes(data[pos + 4 : pos + 6]) not in _VR_BYTES:
        return None
    sq = sq_tags()
    parts = []
    if meta_start < pos:
        meta, _stop, error = scan_elements(data, meta_start, pos, False, sq)
        if error is not None:
            return None
        parts.append(meta)
    if prescan is not None and prescan.implicit == implicit:
        body = prescan.rows  # the strict check's scan of the same bytes, same arguments
    else:
        body, _stop, error = scan_elements(data, pos, len(data), implicit, sq)
        if error is not None:
            return None
    parts.append(body)
    rows = np.concatenate(parts) if len(parts) > 1 else body
    shape = _shape_of(rows)
    for i in shape.un_values:
        v = int(rows[i, _VSTART])
        if bytes(data[v : v + 4]) == _ITEM_TAG:
            return None  # a sequence sent as UN with a defined length: the walker opens it
    codecs: list[str] | None = _ASCII_ONLY
    if shape.charset is not None:
        if shape.charset < 0:
            codecs = None
        else:
            i = shape.charset
            codecs = _codecs(bytes(data[int(rows[i, _VSTART]) : int(rows[i, _STOP])]))
    return Scanned(data, rows, shape.codes, pos, codecs, shape)


class Shape:
    """What scan_file reads from the rows' structure alone (tags, VR codes, items, depths).

    The files of a series share it (same elements in the same nesting), so it is worked
    out once per structure: the VR code of each row as :func:`decoded_elements` reads it
    (read-only), the UN values to look into, the row of the character set (-1 when an
    item has one). ``memo`` holds what other readers derive from the structure alone.
    """

    def __init__(self, rows: np.ndarray) -> None:
        tags = rows[:, _TAG]
        codes = rows[:, _CODE].copy()
        is_elem = tags >= 0
        codes[~is_elem] = 0
        # The scanner gives no VR in Implicit VR (the data set's, or inside a sequence sent
        # as UN): the dictionary's, as the span road reads it.
        for i in np.flatnonzero(is_elem & (codes == 0)).tolist():
            codes[i] = _dict_code(int(tags[i]))
        opened = is_elem & (rows[:, _NITEMS] >= 0)
        codes[opened & (codes != _SQ) & (codes != _UN)] = _SQ
        codes.flags.writeable = False  # shared by every file of this structure
        self.codes = codes
        self.pixel = pixel_rows(tags)
        self.pixel.flags.writeable = False
        self.un_values: list[int] = np.flatnonzero(
            is_elem & ~opened & ~self.pixel & (codes == _UN)
        ).tolist()
        charset = np.flatnonzero(tags == _CHARSET)
        self.charset: int | None = None
        if len(charset):
            self.charset = -1 if (rows[charset, _DEPTH] > 0).any() else int(charset[-1])
        self.memo: dict[str, Any] = {}


_SHAPES: dict[bytes, Shape] = {}


def _shape_of(rows: np.ndarray) -> Shape:
    """The Shape of these rows, from a bounded cache keyed by their structural columns."""
    key = rows[:, [_TAG, _CODE, _NITEMS, _DEPTH]].tobytes()
    shape = _SHAPES.get(key)
    if shape is None:
        shape = Shape(rows)
        if len(_SHAPES) >= 64:
            _SHAPES.clear()
        _SHAPES[key] = shape
    return shape


# The post-check's scan of the last output it passed, for the archive's reference reader
# (run/refs.py), which reads the very same bytes right after: one scan, not two. Bounded
# (a large output is scanned again rather than kept alive) and per thread.
_REMEMBER_MAX = 16 << 20
_REMEMBERED = threading.local()


def remember_scan(scan: Scanned) -> None:
    """Keep ``scan`` (of bytes that will not change) for :func:`recall_scan`."""
    _REMEMBERED.scan = scan if len(scan.data) <= _REMEMBER_MAX else None


def forget_scan() -> None:
    """Drop the remembered scan (its bytes are then freed with their last user)."""
    _REMEMBERED.scan = None


def recall_scan(parts: Sequence[bytes | bytearray | memoryview]) -> Scanned | None:
    """The remembered scan if its bytes are exactly ``parts`` joined (compared), else None.

    Taken once: the scan is forgotten either way.
    """
    scan: Scanned | None = getattr(_REMEMBERED, "scan", None)
    _REMEMBERED.scan = None
    if scan is None or not isinstance(scan.data, bytes):
        return None
    data = scan.data
    if len(parts) == 1 and parts[0] is data:
        return scan  # the very buffer scanned (and immutable): nothing to compare
    if sum(len(p) for p in parts) != len(data):
        return None
    at = 0
    for p in parts:
        if not data.startswith(p, at):
            return None
        at += len(p)
    return scan
