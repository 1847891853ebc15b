"""What a pixel data element holds besides the image: its byte layout, parsed strictly.

A compressed frame carries more than its samples: JPEG and JPEG-LS APPn segments (EXIF
with dates, the photographer, GPS; XMP), COM segments, JPEG 2000 COM (FF64) segments and
JP2 boxes around the codestream, and bytes after the end of the image (after EOI, after
an RLE frame's last segment, fragments beyond NumberOfFrames, native Pixel Data longer
than the image). None of it is needed to decode the samples, and any of it can hold the
patient's name. This module finds those bytes without decoding the image:

* :func:`expected_length`: how many bytes native (or float) pixel data needs;
* :func:`parse_encapsulated`: the frames of an encapsulated value, each frame's metadata
  segments and trailing bytes, and the fragments beyond the last frame;
* :func:`strip_encapsulated`: the same value with those segments and bytes removed, no
  entropy-coded byte changed, lengths and the Basic/Extended Offset Tables updated.

Parsing is strict and bounded (every loop advances; nothing is decoded beyond RLE packet
headers): whatever it cannot follow raises :class:`PixelParseError`, and callers fail
closed. Only the stdlib is used.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

__all__ = [
    "EncapsulatedLayout",
    "Frame",
    "PixelParseError",
    "Segment",
    "expected_length",
    "family",
    "parse_encapsulated",
    "split_frames",
    "strip_encapsulated",
]

_ITEM = b"\xfe\xff\x00\xe0"
_SEQ_END = b"\xfe\xff\xdd\xe0"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"

JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
    }
)
J2K_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.92",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }
)
RLE_SYNTAX = "1.2.840.10008.1.2.5"


class PixelParseError(ValueError):
    """A pixel data value this module cannot follow for sure (callers quarantine)."""


@dataclass(frozen=True)
class Segment:
    """Bytes ``[start, end)`` of a frame (offsets in the frame's joined fragments).

    ``kind`` names it ("APP1", "COM", "J2K COM", "JP2 box 'xml '", "after EOI", ...);
    ``strip`` is False for segments decoding needs (APP0 JFIF, APP14 Adobe), which are
    kept; ``replacement`` is what a stripped segment becomes (usually nothing; a JFIF
    segment without its thumbnail, an Adobe segment without extra bytes).
    """

    start: int
    end: int
    kind: str
    strip: bool = True
    replacement: bytes = b""


@dataclass
class Frame:
    """One frame: its fragments (value offsets of each fragment's bytes) and segments."""

    fragments: list[tuple[int, int]]
    segments: list[Segment] = field(default_factory=list)

    def absolute(self, seg: Segment) -> list[tuple[int, int]]:
        """Value offsets of a segment's bytes (one range per fragment it touches)."""
        out: list[tuple[int, int]] = []
        pos = 0
        for a, b in self.fragments:
            lo, hi = max(seg.start, pos), min(seg.end, pos + b - a)
            if lo < hi:
                out.append((a + lo - pos, a + hi - pos))
            pos += b - a
        return out


@dataclass
class EncapsulatedLayout:
    """An encapsulated value: Basic Offset Table, frames, and fragments beyond the frames."""

    bot: tuple[int, int]
    frames: list[Frame]
    extra: list[tuple[int, int]]

    @property
    def stripped(self) -> list[str]:
        """Kinds of what stripping removes, frame by frame (empty: nothing to strip)."""
        out = [
            f"frame {i + 1}: {s.kind}"
            for i, f in enumerate(self.frames)
            for s in f.segments
            if s.strip
        ]
        if self.extra:
            out.append(f"{len(self.extra)} fragment(s) beyond the last frame")
        return out


def family(ts: str) -> str:
    """'jpeg', 'j2k', 'rle' or '' (a syntax whose frames this module does not read)."""
    if ts in JPEG_SYNTAXES:
        return "jpeg"
    if ts in J2K_SYNTAXES:
        return "j2k"
    if ts == RLE_SYNTAX:
        return "rle"
    return ""


def expected_length(
    rows: int,
    columns: int,
    *,
    samples: int = 1,
    bits_allocated: int = 8,
    frames: int = 1,
    photometric: str = "",
) -> int:
    """Bytes native pixel data needs (before the pad byte to an even length).

    4:2:2 YBR stores two samples a pixel and 4:2:0 one and a half (PS3.3 C.7.6.3.1.2);
    1-bit data is packed eight pixels a byte across frames (PS3.5 8.1.1).
    """
    if min(rows, columns, samples, bits_allocated, frames) <= 0:
        raise PixelParseError("image attributes give no pixels")
    per_two = samples * 2
    if samples == 3:
        per_two = {"YBR_FULL_422": 4, "YBR_PARTIAL_422": 4, "YBR_PARTIAL_420": 3}.get(
            photometric.strip().upper(), per_two
        )
    bits = (rows * columns * frames * per_two + 1) // 2 * bits_allocated
    return (bits + 7) // 8


# ------------------------------------------------------------------------- encapsulation
def _items(value: bytes) -> list[tuple[int, int]]:
    """(start, end) of each item's bytes; the sequence delimiter, when there, ends them."""
    out: list[tuple[int, int]] = []
    pos, n = 0, len(value)
    while pos < n:
        if n - pos < 8:
            raise PixelParseError("encapsulated pixel data ends inside an item header")
        head = value[pos : pos + 4]
        length = struct.unpack_from("<I", value, pos + 4)[0]
        if head == _SEQ_END:
            if length or pos + 8 != n:
                raise PixelParseError("bytes after the encapsulated pixel data's delimiter")
            break
        if head != _ITEM or length == 0xFFFFFFFF or length > n - pos - 8:
            raise PixelParseError("malformed item in encapsulated pixel data")
        out.append((pos + 8, pos + 8 + length))
        pos += 8 + length
    if not out:
        raise PixelParseError("encapsulated pixel data has no Basic Offset Table item")
    return out


def _starts_frame(data: bytes, fam: str) -> bool:
    if fam == "jpeg":
        return data[:2] == b"\xff\xd8"
    if fam == "j2k":
        return data[:2] == b"\xff\x4f" or data[:12] == _JP2_SIGNATURE
    return False


def _split(
    value: bytes,
    frags: list[tuple[int, int]],
    bot: bytes,
    frames: int,
    fam: str,
    eot: list[int] | None,
) -> tuple[list[list[tuple[int, int]]], list[tuple[int, int]]]:
    """Fragments of each frame, and the fragments beyond the last, as readers split them."""
    first = frags[0][0] - 8 if frags else 0  # offsets count from the first fragment's item
    item_at = {a - 8 - first: k for k, (a, _) in enumerate(frags)}
    if eot is not None:
        if bot:
            raise PixelParseError("both a Basic and an Extended Offset Table")
        if len(eot) != frames:
            raise PixelParseError("Extended Offset Table does not list every frame")
        idx = [item_at.get(o) for o in eot]
        if any(k is None for k in idx) or idx != sorted(set(idx)):  # type: ignore[type-var]
            raise PixelParseError("Extended Offset Table does not point at fragments in order")
        ks = [k for k in idx if k is not None]
        bounds = [*ks, len(frags)]
        return [frags[bounds[i] : bounds[i + 1]] for i in range(frames)], []
    if bot:
        if len(bot) % 4:
            raise PixelParseError("Basic Offset Table length is not a multiple of 4")
        offs = list(struct.unpack(f"<{len(bot) // 4}I", bot))
        if len(offs) != frames:
            raise PixelParseError(
                f"Basic Offset Table lists {len(offs)} frames, the header {frames}"
            )
        idx2 = [item_at.get(o) for o in offs]
        if any(k is None for k in idx2) or idx2 != sorted(set(idx2)) or idx2[0] != 0:  # type: ignore[type-var]
            raise PixelParseError("Basic Offset Table does not point at fragments in order")
        ks = [k for k in idx2 if k is not None]
        bounds = [*ks, len(frags)]
        return [frags[bounds[i] : bounds[i + 1]] for i in range(frames)], []
    if frames == 1:
        return [frags], []
    if len(frags) < frames:
        raise PixelParseError(f"{len(frags)} fragments for {frames} frames")
    if len(frags) == frames or fam == "rle":
        # RLE: one fragment per frame (PS3.5 A.4.2); more are beyond the last frame.
        return [[f] for f in frags[:frames]], frags[frames:]
    starts = [k for k, (a, b) in enumerate(frags) if _starts_frame(value[a:b], fam)]
    if not starts or starts[0] != 0 or len(starts) < frames:
        raise PixelParseError("cannot tell which fragments make which frame")
    bounds = [*starts[:frames], starts[frames] if len(starts) > frames else len(frags)]
    return [frags[bounds[i] : bounds[i + 1]] for i in range(frames)], frags[bounds[frames] :]


def split_frames(
    value: bytes, ts: str, frames: int, eot: list[int] | None = None
) -> tuple[list[list[tuple[int, int]]], list[tuple[int, int]]]:
    """Value offsets of each frame's fragments, and of the fragments beyond the last frame.

    The split readers make (see :func:`parse_encapsulated`), without parsing the frames.
    """
    fam = family(ts)
    if not fam:
        raise PixelParseError(f"frames of transfer syntax {ts} cannot be parsed")
    if frames < 1:
        raise PixelParseError("NumberOfFrames is below 1")
    items = _items(value)
    return _split(value, items[1:], value[items[0][0] : items[0][1]], frames, fam, eot)


def parse_encapsulated(
    value: bytes,
    ts: str,
    frames: int,
    *,
    rows: int = 0,
    columns: int = 0,
    samples: int = 1,
    bits_allocated: int = 8,
    eot: list[int] | None = None,
) -> EncapsulatedLayout:
    """Frames, segments and extra fragments of an encapsulated Pixel Data value.

    ``value`` starts at the Basic Offset Table item (the sequence delimiter may follow
    the last fragment); ``eot`` is the Extended Offset Table when the file has one. RLE
    frames need ``rows``, ``columns``, ``samples`` and ``bits_allocated`` to find where
    their segments end. Raises :class:`PixelParseError` on anything it cannot follow.
    """
    fam = family(ts)
    if not fam:
        raise PixelParseError(f"frames of transfer syntax {ts} cannot be parsed")
    if frames < 1:
        raise PixelParseError("NumberOfFrames is below 1")
    items = _items(value)
    bot = value[items[0][0] : items[0][1]]
    groups, extra = _split(value, items[1:], bot, frames, fam, eot)
    out: list[Frame] = []
    for frags in groups:
        data = b"".join(value[a:b] for a, b in frags)
        if fam == "jpeg":
            segs = jpeg_segments(data)
        elif fam == "j2k":
            segs = j2k_segments(data)
        else:
            segs = rle_segments(data, rows * columns, samples * ((bits_allocated + 7) // 8))
        out.append(Frame(frags, segs))
    return EncapsulatedLayout(items[0], out, extra)


def strip_encapsulated(value: bytes, layout: EncapsulatedLayout) -> tuple[bytes, list[int]]:
    """The value without its stripped segments and extra fragments, and each frame's length.

    Unchanged frames keep their fragments byte for byte; a changed frame becomes one
    fragment (padded with a zero byte to an even length). The Basic Offset Table is
    rewritten when it was not empty; the returned lengths (of each frame's fragments,
    item headers excluded) and the offsets they imply serve an Extended Offset Table.
    """
    parts: list[bytes] = []
    offsets: list[int] = []
    lengths: list[int] = []
    pos = 0
    for frame in layout.frames:
        offsets.append(pos)
        frags: list[bytes]
        if any(s.strip for s in frame.segments):
            data = b"".join(value[a:b] for a, b in frame.fragments)
            pieces, at = [], 0
            for s in sorted(frame.segments, key=lambda s: s.start):
                if s.strip:
                    pieces += [data[at : s.start], s.replacement]
                    at = s.end
            pieces.append(data[at:])
            new = b"".join(pieces)
            frags = [new + b"\x00" * (len(new) % 2)]
        else:
            frags = [value[a:b] for a, b in frame.fragments]
        length = 0
        for f in frags:
            parts.append(_ITEM + struct.pack("<I", len(f)) + f)
            pos += 8 + len(f)
            length += len(f)
        lengths.append(length)
    a, b = layout.bot
    bot = struct.pack(f"<{len(offsets)}I", *offsets) if b > a else b""
    head = _ITEM + struct.pack("<I", len(bot)) + bot
    tail = _SEQ_END + b"\x00" * 4 if value.rstrip(b"\x00").endswith(_SEQ_END[:4]) else b""
    return head + b"".join(parts) + tail, [*offsets, *lengths]


# ------------------------------------------------------------------------------- JPEG
# The next marker in entropy-coded data: ISO 10918 stuffs 00 after FF and has RSTn
# (D0-D7) inside a scan; ISO 14495 (JPEG-LS) stuffs a zero bit, so a marker's second
# byte has its high bit set. FF FF is fill before a marker.
_NEXT_10918 = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_NEXT_14495 = re.compile(rb"\xff[\x80-\xcf\xd8-\xfe]")
# Marker segments decoders read (ISO 10918-1 B.1.1.3, ISO 14495-1 C.2): frame headers,
# tables, scan headers, restart interval, DNL, DHP, EXP, JPEG-LS LSE.
_KNOWN = frozenset({*range(0xC0, 0xD0), 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xF7, 0xF8}) - {0xC8}


def _app_segment(marker: int, payload: bytes) -> tuple[bool, bytes]:
    """(strip, replacement) of an APPn segment: keep JFIF and Adobe, minus extra bytes."""
    if marker == 0xE0 and payload[:5] == b"JFIF\x00" and len(payload) >= 14:
        if len(payload) == 14 and payload[12] == payload[13] == 0:
            return False, b""
        # A thumbnail (or bytes after the header) is dropped: the header alone remains.
        keep = payload[:12] + b"\x00\x00"
        return True, b"\xff\xe0" + struct.pack(">H", 2 + len(keep)) + keep
    if marker == 0xE8 and payload == b"mrfx" + payload[4:5] and len(payload) == 5:
        return False, b""  # HP's JPEG-LS colour transform (CharLS reads it to decode)
    if marker == 0xEE and payload[:5] == b"Adobe":
        if len(payload) <= 12:
            return False, b""  # its transform flag decides the colour space
        keep = payload[:12]
        return True, b"\xff\xee" + struct.pack(">H", 2 + len(keep)) + keep
    return True, b""


def jpeg_segments(data: bytes) -> list[Segment]:
    """Metadata segments (APPn, COM) and the bytes after EOI of a JPEG / JPEG-LS stream."""
    n = len(data)
    if data[:2] != b"\xff\xd8":
        raise PixelParseError("JPEG frame does not start with SOI")
    segs: list[Segment] = []
    pos, nxt, in_scan = 2, _NEXT_10918, False
    while True:
        if in_scan:
            m = nxt.search(data, pos)
            if m is None:
                raise PixelParseError("JPEG frame has no EOI")
            pos = m.start()
        if pos + 2 > n:
            raise PixelParseError("JPEG frame has no EOI")
        if data[pos] != 0xFF:
            raise PixelParseError(f"no JPEG marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            pos += 2
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if pos + 4 > n:
            raise PixelParseError("JPEG marker segment cut short")
        length = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 2 + length
        if length < 2 or end > n:
            raise PixelParseError(f"JPEG marker segment FF{marker:02X} runs past the frame")
        if 0xE0 <= marker <= 0xEF:
            strip, repl = _app_segment(marker, data[pos + 4 : end])
            segs.append(Segment(pos, end, f"APP{marker - 0xE0}", strip, repl))
        elif marker == 0xFE:
            segs.append(Segment(pos, end, "COM"))
        elif marker not in _KNOWN:
            raise PixelParseError(f"unknown JPEG marker FF{marker:02X}")
        if marker == 0xF7:
            nxt = _NEXT_14495
        in_scan = marker == 0xDA
        pos = end
    _trailing(data, pos, segs, "after EOI")
    return segs


def _trailing(data: bytes, pos: int, segs: list[Segment], kind: str) -> None:
    """Bytes after the end of the image: a pad byte or zeros are left, the rest stripped."""
    rest = data[pos:]
    if len(rest) > 1 and rest.strip(b"\x00"):
        segs.append(Segment(pos, len(data), kind))


# -------------------------------------------------------------------------- JPEG 2000
# Marker segments of main and tile-part headers (ISO 15444-1 A.2, 15444-15 CAP/CPF).
_J2K_KNOWN = frozenset({*range(0x50, 0x64)})


def j2k_segments(data: bytes) -> list[Segment]:
    """COM segments and bytes after EOC of a codestream; every box of a JP2 file but jp2c."""
    if data[:12] == _JP2_SIGNATURE:
        return _jp2_segments(data)
    return _codestream_segments(data, 0, len(data))


def _jp2_segments(data: bytes) -> list[Segment]:
    segs: list[Segment] = []
    pos, n, found = 0, len(data), False
    while pos < n:
        if n - pos < 8:
            if data[pos:].strip(b"\x00"):
                segs.append(Segment(pos, n, "after the last JP2 box"))
            break
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        head = 8
        if size == 1:
            if n - pos < 16:
                raise PixelParseError("JP2 box header cut short")
            size, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = n - pos
        if size < head or pos + size > n:
            raise PixelParseError("JP2 box runs past the frame")
        if kind == b"jp2c" and not found:
            found = True
            segs.append(Segment(pos, pos + head, "JP2 box header"))
            segs += _codestream_segments(data, pos + head, pos + size)
        else:
            name = kind.decode("latin-1")
            segs.append(Segment(pos, pos + size, f"JP2 box {name!r}"))
        pos += size
    if not found:
        raise PixelParseError("JP2 file without a codestream box")
    return segs


def _codestream_segments(data: bytes, start: int, stop: int) -> list[Segment]:
    """Walk a J2K codestream in data[start:stop] by marker lengths and tile-part lengths."""
    if data[start : start + 4] != b"\xff\x4f\xff\x51":
        raise PixelParseError("JPEG 2000 frame does not start with SOC, SIZ")
    segs: list[Segment] = []
    pos = start + 2
    tlm = False
    while True:  # main header, up to the first SOT
        marker, length, end = _j2k_marker(data, pos, stop)
        if marker == 0x90:
            break
        if marker == 0x55:
            tlm = True
        pos = _j2k_header_segment(data, marker, pos, end, segs)
    while True:  # tile-parts: SOT, header, SOD, data, by Psot
        marker, length, end = _j2k_marker(data, pos, stop)
        if marker == 0xD9:
            pos += 2
            break
        if marker != 0x90 or length != 10:
            raise PixelParseError(f"JPEG 2000 marker FF{marker:02X} where a tile-part belongs")
        psot = int.from_bytes(data[pos + 6 : pos + 10], "big")
        sot, pos = pos, end
        stripped = 0
        while True:
            marker, length, end = _j2k_marker(data, pos, stop)
            if marker == 0x93:  # SOD
                pos += 2
                break
            before = len(segs)
            pos = _j2k_header_segment(data, marker, pos, end, segs)
            if len(segs) > before and segs[-1].strip:
                stripped += end - segs[-1].start
        if psot == 0:
            eoc = data.rfind(b"\xff\xd9", pos, stop)
            if eoc < 0:
                raise PixelParseError("JPEG 2000 tile-part without a length runs to no EOC")
            pos = eoc
        else:
            if sot + psot > stop or sot + psot < pos:
                raise PixelParseError("JPEG 2000 tile-part runs past the frame")
            pos = sot + psot
        if stripped:
            if tlm:
                raise PixelParseError("JPEG 2000 tile-part COM with a TLM marker")
            if psot:
                # The tile-part length shrinks by what is stripped from its header.
                new = (psot - stripped).to_bytes(4, "big")
                repl = data[sot : sot + 6] + new + data[sot + 10 : sot + 12]
                segs.append(Segment(sot, sot + 12, "tile-part length", True, repl))
    _trailing(data[:stop], pos, segs, "after EOC")
    return segs


def _j2k_marker(data: bytes, pos: int, stop: int) -> tuple[int, int, int]:
    """(marker, length, end) of the marker at pos; length 0 for SOD and EOC."""
    if pos + 2 > stop or data[pos] != 0xFF:
        raise PixelParseError(f"no JPEG 2000 marker at byte {pos}")
    marker = data[pos + 1]
    if marker in (0x93, 0xD9):
        return marker, 0, pos + 2
    if pos + 4 > stop:
        raise PixelParseError("JPEG 2000 marker segment cut short")
    length = (data[pos + 2] << 8) | data[pos + 3]
    end = pos + 2 + length
    if length < 2 or end > stop:
        raise PixelParseError(f"JPEG 2000 marker segment FF{marker:02X} runs past the frame")
    return marker, length, end


#: Comments encoders write on their own, matched whole: nothing else fits in them, so they
#: stay (and a file needs no rewrite for them).
_ENCODER_COMMENTS = re.compile(
    rb"\x00\x01(?:Created by (?:GDCM/)?OpenJPEG version [0-9]{1,3}(?:\.[0-9]{1,3}){1,3}"
    rb"|Creator: JasPer Version [0-9]{1,3}(?:\.[0-9]{1,3}){1,3}"
    rb"|Kakadu-v?[0-9]{1,3}(?:\.[0-9]{1,3}){1,3})"
)


def _j2k_header_segment(data: bytes, marker: int, pos: int, end: int, segs: list[Segment]) -> int:
    """Record a COM; refuse markers no reader of Part 1 / Part 15 knows. Returns end."""
    if marker == 0x64:
        benign = _ENCODER_COMMENTS.fullmatch(data, pos + 4, end) is not None
        segs.append(Segment(pos, end, "J2K COM", not benign))
    elif marker not in _J2K_KNOWN:
        raise PixelParseError(f"unknown JPEG 2000 marker FF{marker:02X}")
    return end


# -------------------------------------------------------------------------------- RLE
def rle_segments(data: bytes, pixels: int, nsegments: int) -> list[Segment]:
    """Bytes after each RLE segment's last packet (beyond a pad byte), PS3.5 G.

    Each segment decodes to ``pixels`` bytes (one byte plane); its packets are walked
    (header bytes only) to where that count is reached.
    """
    if pixels <= 0:
        raise PixelParseError("RLE frame needs Rows and Columns")
    if len(data) < 64:
        raise PixelParseError("RLE frame shorter than its header")
    header = struct.unpack_from("<16I", data, 0)
    count = header[0]
    if count != nsegments:
        raise PixelParseError(f"RLE frame has {count} segments, the header implies {nsegments}")
    offsets = list(header[1 : 1 + count])
    if header[1 + count :] != (0,) * (15 - count) or offsets[0] != 64:
        raise PixelParseError("RLE header offsets are malformed")
    bounds = [*offsets, len(data)]
    if any(bounds[i] > bounds[i + 1] for i in range(count)):
        raise PixelParseError("RLE segment offsets are not in order")
    segs: list[Segment] = []
    for i in range(count):
        a, b = bounds[i], bounds[i + 1]
        end = _rle_end(data, a, b, pixels)
        end += (end - a) % 2  # a pad byte to an even length is the segment's own
        end = min(end, b)
        if data[end:b].strip(b"\x00"):
            segs.append(Segment(end, b, f"after RLE segment {i + 1}"))
    if any(s.end != len(data) for s in segs):
        raise PixelParseError("bytes between RLE segments")
    return segs


def _rle_end(data: bytes, pos: int, stop: int, pixels: int) -> int:
    """Where the packets of a PackBits segment have produced ``pixels`` bytes."""
    made = 0
    while made < pixels:
        if pos >= stop:
            raise PixelParseError("RLE segment ends before its byte plane is complete")
        h = data[pos]
        if h < 128:
            made += h + 1
            pos += h + 2
        elif h > 128:
            made += 257 - h
            pos += 2
        else:
            pos += 1
    if made != pixels or pos > stop:
        raise PixelParseError("RLE segment does not end at its byte plane's end")
    return pos
