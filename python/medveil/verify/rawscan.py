"""Raw view of a DICOM file: byte range of every element, and where the pixel data lies.

The parser-independent half of the verifier. A tolerant walker records the value range and
path of each element at every depth (explicit/implicit VR, little/big endian, deflated
datasets, undefined-length sequences and items, encapsulated pixel data), so a raw byte hit
can be named by element path and the pixel data can be skipped. Anything the walker cannot
follow is left unmapped: the byte search still covers it.

Only image samples are skipped: what a pixel element holds beside the image (JPEG APPn and
COM segments, JPEG 2000 COM segments and JP2 boxes, bytes after EOI or the last RLE
segment, fragments beyond the frames, native or float data beyond the image) gets a span
of its own (:func:`pixel_side_spans`, path ``(7FE0,0010) frame 1: APP1`` and so on, tag
:data:`PIXEL_SIDE_TAG`, VR OB) in ``RawLayout.side_spans``, and is left out of
``pixel_ranges``: a raw search that skips pixel data searches it.
"""

from __future__ import annotations

import bisect
import struct
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

from pydicom.datadict import dictionary_VR

from medveil.dicom.pixelbytes import PixelParseError, expected_length, parse_encapsulated
from medveil.dicom.strict import DEFLATED_SYNTAXES
from medveil.dicom.vr import LONG_VR_BYTES

_UNDEFINED = 0xFFFFFFFF
# Pixel data elements (at any depth, icons included) are excluded from the byte search;
# what they hold beside the image is not (see pixel_side_spans).
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
#: The tag of the spans of bytes beside the image: no standard element has it, and it is
#: not a pixel tag, so every search that skips pixel data searches these.
PIXEL_SIDE_TAG = 0x7FE0FFFF
_FLOAT_BITS = {0x7FE00008: 32, 0x7FE00009: 64}
# Image attributes read to find where the image ends (PS3.3 C.7.6.3).
_ROWS, _COLUMNS, _SAMPLES, _BITS = 0x00280010, 0x00280011, 0x00280002, 0x00280100
_FRAMES, _PHOTOMETRIC, _EOT = 0x00280008, 0x00280004, 0x7FE00001
_ATTRS = frozenset({_ROWS, _COLUMNS, _SAMPLES, _BITS, _FRAMES, _PHOTOMETRIC, _EOT})
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_NATIVE = frozenset({None, _IMPLICIT_LE, "1.2.840.10008.1.2.1", _EXPLICIT_BE, *DEFLATED_SYNTAXES})
_MAX_DEPTH = 32
_ITEM_LE = b"\xfe\xff\x00\xe0"


class Span(NamedTuple):
    """Value bytes ``[start, end)`` of one element in a buffer, with its path and VR.

    A named tuple: files have hundreds of elements and the post-check builds a span for
    each on every file, where a frozen dataclass costs several times more to create.
    """

    start: int
    end: int
    path: str
    tag: int
    vr: str
    private: bool
    truncated: bool = False  # the declared length ran past the data: the walk went astray


@dataclass
class RawLayout:
    """What the walker learned about one buffer (the file, or its inflated dataset)."""

    name: str  # 'file' or 'inflated'
    data: bytes
    spans: list[Span] = field(default_factory=list)
    pixel_ranges: list[tuple[int, int]] = field(default_factory=list)
    meta_end: int = 0  # preamble + file meta end here (0 when there is no meta)
    complete: bool = True  # False when the walker stopped early (truncated or odd data)
    #: Paths of pixel elements whose frames could not be parsed (nothing beside their
    #: image is known; the pixel cleaner quarantines such input).
    pixel_unparsed: list[str] = field(default_factory=list)
    #: Spans of what pixel elements hold beside the image (see :func:`add_pixel_side`).
    side_spans: list[Span] = field(default_factory=list)
    _order: list[Span] | None = field(default=None, repr=False)
    _starts: list[int] = field(default_factory=list, repr=False)

    def element_at(self, start: int, end: int) -> Span | None:
        """Innermost element whose value range contains ``[start, end)``.

        Element ranges nest like a tree, so among the spans that contain the range the one
        that starts last is the innermost: search back from the last start <= ``start``.
        """
        if self._order is None or len(self._order) != len(self.spans) + len(self.side_spans):
            every = self.spans + self.side_spans
            self._order = sorted(every, key=lambda sp: (sp.start, -sp.end))
            self._starts = [sp.start for sp in self._order]
        i = bisect.bisect_right(self._starts, start) - 1
        while i >= 0:
            sp = self._order[i]
            if end <= sp.end:
                return sp
            i -= 1
        return None


class _Walker:
    def __init__(self, layout: RawLayout, little: bool, explicit: bool) -> None:
        self.lay = layout
        self.buf = layout.data
        self.e = "<" if little else ">"
        self.explicit = explicit

    def _u16(self, pos: int) -> int:
        return int(struct.unpack_from(self.e + "H", self.buf, pos)[0])

    def _u32(self, pos: int) -> int:
        return int(struct.unpack_from(self.e + "I", self.buf, pos)[0])

    def dataset(
        self,
        pos: int,
        end: int,
        prefix: str,
        private: bool,
        depth: int,
        *,
        stop_group: int | None = None,
    ) -> int:
        """Walk elements from ``pos`` to ``end``; returns where it stopped."""
        buf = self.buf
        while pos + 8 <= end:
            group, elem = self._u16(pos), self._u16(pos + 2)
            if stop_group is not None and group != stop_group:
                return pos
            tag = (group << 16) | elem
            if group == 0xFFFE:
                # Item or sequence delimiter: the caller's undefined-length container ends here.
                return pos if elem != 0xE00D else pos + 8
            vr_b = buf[pos + 4 : pos + 6]
            if self.explicit and vr_b.isalpha() and vr_b.isupper():
                if vr_b in LONG_VR_BYTES:
                    if pos + 12 > end:
                        break
                    length, hdr = self._u32(pos + 8), 12
                else:
                    length, hdr = self._u16(pos + 6), 8
                vr = vr_b.decode()
            else:
                length, hdr = self._u32(pos + 4), 8
                vr = dictionary_vr(tag)
            start = pos + hdr
            path = f"{prefix}({group:04X},{elem:04X})"
            priv = private or group % 2 == 1
            if length == _UNDEFINED:
                if tag in PIXEL_TAGS:
                    stop = self._encapsulated(start, end)
                    self.lay.pixel_ranges.append((start, stop))
                else:
                    # SQ, or UN of undefined length (implicit VR little endian inside, PS3.5 6.2.2)
                    stop = self._items(start, end, path, priv, depth, vr == "UN")
                self.lay.spans.append(Span(start, stop, path, tag, vr, priv))
                pos = stop
                continue
            stop = start + length
            truncated = stop > end
            if truncated:
                self.lay.complete = False
                stop = end
            if tag in PIXEL_TAGS:
                self.lay.pixel_ranges.append((start, stop))
            elif vr == "SQ" and depth < _MAX_DEPTH:
                self._items(start, stop, path, priv, depth, False)
            elif (
                vr == "UN"
                and depth < _MAX_DEPTH
                and (dictionary_vr(tag) == "SQ" or self.buf[start : start + 4] == _ITEM_LE)
            ):
                # A sequence sent as UN: implicit VR little endian inside (PS3.5 6.2.2).
                self._items(start, stop, path, priv, depth, True)
            self.lay.spans.append(Span(start, stop, path, tag, vr, priv, truncated))
            pos = stop
        if pos < end and stop_group is None:
            self.lay.complete = False
        return pos

    def _items(self, pos: int, end: int, path: str, priv: bool, depth: int, un: bool) -> int:
        if depth >= _MAX_DEPTH:
            self.lay.complete = False
            return end
        saved = (self.e, self.explicit)
        if un:
            self.e, self.explicit = "<", False
        i = 0
        try:
            while pos + 8 <= end:
                group, elem = self._u16(pos), self._u16(pos + 2)
                length = self._u32(pos + 4)
                if group != 0xFFFE:
                    self.lay.complete = False
                    return end
                if elem == 0xE0DD:
                    return pos + 8
                if elem != 0xE000:
                    self.lay.complete = False
                    return end
                start = pos + 8
                prefix = f"{path}[{i}]/"
                if length == _UNDEFINED:
                    pos = self.dataset(start, end, prefix, priv, depth + 1)
                else:
                    stop = min(start + length, end)
                    self.dataset(start, stop, prefix, priv, depth + 1)
                    pos = stop
                i += 1
            return pos
        finally:
            self.e, self.explicit = saved

    def _encapsulated(self, pos: int, end: int) -> int:
        while pos + 8 <= end:
            group, elem, length = self._u16(pos), self._u16(pos + 2), self._u32(pos + 4)
            if group != 0xFFFE or length == _UNDEFINED:
                self.lay.complete = False
                return end
            pos += 8
            if elem == 0xE0DD:
                return pos
            pos += length
        return min(pos, end)


def dictionary_vr(tag: int) -> str:
    """VR of a tag from pydicom's dictionary, 'UN' when unknown or ambiguous."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return vr if len(vr) == 2 else "UN"


def layouts(data: bytes) -> list[RawLayout]:
    """Walk a file's bytes; a second layout holds the inflated dataset of deflated files."""
    lay = RawLayout("file", data)
    pos, ts = 0, None
    try:
        if len(data) >= 132 and data[128:132] == b"DICM":
            pos = 132
        if pos or data[:2] == b"\x02\x00":
            # File meta: always explicit VR little endian, group 0002 only.
            w = _Walker(lay, True, True)
            pos = w.dataset(pos, len(data), "", False, 0, stop_group=0x0002)
            lay.meta_end = pos
            for sp in lay.spans:
                if sp.tag == 0x00020010:
                    ts = data[sp.start : sp.end].decode("ascii", "replace").strip("\x00 ")
        if ts in DEFLATED_SYNTAXES:
            try:
                inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[pos:])
            except zlib.error:
                lay.complete = False
                lay.spans.append(Span(pos, len(data), "(deflated)", 0, "OB", False))
                return [lay]
            lay.spans.append(Span(pos, len(data), "(deflated)", 0, "OB", False))
            inner = RawLayout("inflated", inflated)
            _Walker(inner, True, True).dataset(0, len(inflated), "", False, 0)
            add_pixel_side(inner, ts)
            return [lay, inner]
        if ts is None:
            # No meta: guess explicit VR when bytes 4-5 look like a VR, and the byte order
            # that makes the first group number small (datasets start with low groups).
            explicit = data[pos + 4 : pos + 6].isalpha() and data[pos + 4 : pos + 6].isupper()
            first = data[pos : pos + 2]
            little = int.from_bytes(first, "little") <= int.from_bytes(first, "big")
        else:
            explicit = ts != _IMPLICIT_LE
            little = ts != _EXPLICIT_BE
        _Walker(lay, little, explicit).dataset(pos, len(data), "", False, 0)
        add_pixel_side(lay, ts, little=little)
    except struct.error:
        lay.complete = False
    return [lay]


def _prefix(path: str) -> str:
    """The item path an element's path starts with ('' at the top level)."""
    return path[: path.rfind("/") + 1]


def add_pixel_side(lay: RawLayout, ts: str | None, *, little: bool = True) -> None:
    """Give the bytes beside the image of each pixel element a span, and skip only the rest.

    ``lay.side_spans`` gets :func:`pixel_side_spans`' spans and ``lay.pixel_ranges``
    loses their bytes (so a raw search that skips pixel data searches them; hits in them
    are named by :meth:`RawLayout.element_at`). ``lay.spans`` stays one span an element.
    """
    attrs: dict[str, dict[int, bytes]] = {}
    pixels = []
    for sp in lay.spans:
        if sp.tag in _ATTRS:
            attrs.setdefault(_prefix(sp.path), {})[sp.tag] = lay.data[sp.start : sp.end]
        elif sp.tag in PIXEL_TAGS:
            pixels.append(sp)
    if not pixels:
        return
    side: list[Span] = []
    for sp in pixels:
        # Encapsulated: a compressed syntax's Pixel Data that the walker read as items.
        undefined = (
            ts not in _NATIVE
            and sp.end - sp.start >= 8
            and lay.data[sp.end - 8 : sp.end - 4] == b"\xfe\xff\xdd\xe0"
        )
        found = pixel_side_spans(
            lay.data,
            sp,
            ts,
            attrs.get(_prefix(sp.path), {}),
            little=little,
            encapsulated=undefined and sp.tag == 0x7FE00010,
        )
        if found is None:
            lay.pixel_unparsed.append(sp.path)
            continue
        side += found
    if not side:
        return
    lay.side_spans.extend(side)
    cuts = sorted((s.start, s.end) for s in side)
    ranges: list[tuple[int, int]] = []
    for a, b in lay.pixel_ranges:
        pos = a
        for c, d in cuts:
            if d <= pos or c >= b:
                continue
            if c > pos:
                ranges.append((pos, c))
            pos = max(pos, d)
        if pos < b:
            ranges.append((pos, b))
    lay.pixel_ranges[:] = ranges


def _number(value: bytes | None, little: bool) -> int | None:
    """A US value's first number, or an IS value's, from its bytes."""
    if not value:
        return None
    if len(value) == 2:
        return int.from_bytes(value, "little" if little else "big")
    try:
        return int(value.split(b"\\")[0].strip(b" \x00") or b"x")
    except ValueError:
        return None


def pixel_side_spans(
    data: bytes,
    sp: Span,
    ts: str | None,
    attrs: dict[int, bytes],
    *,
    little: bool = True,
    encapsulated: bool = False,
) -> list[Span] | None:
    """Spans of what pixel element ``sp`` holds beside its image; None if unparseable.

    ``attrs``: the raw values of the image attributes of the same data set (Rows,
    Columns, SamplesPerPixel, BitsAllocated, NumberOfFrames, PhotometricInterpretation,
    ExtendedOffsetTable), by tag. Native and float data: the bytes beyond the image and
    its pad byte; encapsulated: every metadata segment and trailing byte of every frame
    (those a decoder needs too: they are searched, not removed) and the fragments beyond
    the frames. Without the attributes the image's end is unknown: nothing is returned.
    """
    rows, cols = _number(attrs.get(_ROWS), little), _number(attrs.get(_COLUMNS), little)
    samples = _number(attrs.get(_SAMPLES), little) or 1
    bits = _number(attrs.get(_BITS), little) or 0
    frames = _number(attrs.get(_FRAMES), little) or 1
    photometric = (attrs.get(_PHOTOMETRIC) or b"").decode("ascii", "replace").strip(" \x00")
    out: list[Span] = []

    def add(a: int, b: int, kind: str) -> None:
        out.append(Span(a, b, f"{sp.path} {kind}", PIXEL_SIDE_TAG, "OB", sp.private))

    try:
        if encapsulated:
            eot_raw = attrs.get(_EOT)
            eot = (
                list(struct.unpack(f"<{len(eot_raw) // 8}Q", eot_raw[: len(eot_raw) // 8 * 8]))
                if eot_raw
                else None
            )
            layout = parse_encapsulated(
                data[sp.start : sp.end],
                ts or "",
                frames,
                rows=rows or 0,
                columns=cols or 0,
                samples=samples,
                bits_allocated=bits,
                eot=eot,
            )
            for i, frame in enumerate(layout.frames):
                for seg in frame.segments:
                    for a, b in frame.absolute(seg):
                        add(sp.start + a, sp.start + b, f"frame {i + 1}: {seg.kind}")
            for a, b in layout.extra:
                add(sp.start + a, sp.start + b, "beyond the last frame")
            return out
        if rows is None or cols is None:
            return out
        need = expected_length(
            rows,
            cols,
            samples=samples,
            bits_allocated=_FLOAT_BITS.get(sp.tag, bits),
            frames=frames,
            photometric=photometric,
        )
    except PixelParseError:
        return None
    keep = sp.start + need + need % 2
    if keep < sp.end:
        add(keep, sp.end, "beyond the image")
    return out


def looks_like_dicom(data: bytes) -> bool:
    """DICM at 128, or a first element that parses as a tag with a VR or a fitting length."""
    if data[128:132] == b"DICM":
        return True
    if len(data) < 8:
        return False
    group = int.from_bytes(data[:2], "little")
    if group % 2 or not 0x0002 <= group <= 0x7FE0:
        return False
    vr = data[4:6]
    return (vr.isalpha() and vr.isupper()) or int.from_bytes(data[4:8], "little") <= len(data) - 8
