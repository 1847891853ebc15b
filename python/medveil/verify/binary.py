"""Binary values: which are searched as substrings, and the compressed streams they hold.

Binary values (OB, OW, OD, OF, OL, OV, UN, and VRs no standard names) carry no word
structure: a name glued to an ID (``1SurnPID1``) or a zlib stream of the patient's
identity inside a vendor's private blob is still a leak. The post-check
(:mod:`medveil.engine.postcheck`) and ``medveil verify`` both search them for learned
values as substrings and inflate the zlib and gzip streams found at or near their start,
with bounds that turn a decompression bomb into an error, never an allocation.
"""

from __future__ import annotations

import re
import zlib

# Binary values are searched for terms as substrings, not whole words. Only terms of this
# many characters or more: three-letter name components ("lee", "ann") and IDs ("id1")
# turn up inside ordinary words of the text vendors store in binary and UN values, while
# four letters keep glued surnames such as "chan". Measured on the realistic corpus plus
# pydicom's files (one file's terms in the other files' binary values, found as substrings
# but not as words): 8 chance finds at 3 characters, 4 at 4, 2 at 5; no release lost.
SUBSTRING_MIN = 4

# Binary VRs searched for substrings (besides any VR code that is no standard VR).
SUBSTRING_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
KNOWN_VRS = frozenset(
    "AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    "UN UR US UT UV".split()
)
# A compressed stream is looked for at the start of a binary value and this far into it
# (vendors put a short header of their own before the stream), and right after the end of
# each stream found (concatenated streams, gzip members).
ZLIB_SCAN = 64
# What one stream may inflate to: 64 times its compressed size (text and XML compress 3 to
# 10 times), at least 1 MiB (cheap to search) and at most what is left of the file's
# INFLATE_TOTAL. Past that the value cannot be inspected: never searched in part.
INFLATE_RATIO = 64
INFLATE_FLOOR = 1 << 20
INFLATE_TOTAL = 64 << 20
MAX_STREAMS = 256  # whole streams inflated per file; more cannot be inspected
_INFLATE_DEPTH = 2  # a stream inside an inflated stream is inflated too, once
_CHUNK = 1 << 12
_STREAM_START = re.compile(
    rb"(?=([\x08\x18\x28\x38\x48\x58\x68\x78][\x00-\xff]|\x1f\x8b\x08))", re.DOTALL
)


class Uninspectable(ValueError):
    """A compressed stream in a binary value inflates past its bound (a bomb, say)."""


def is_binary_vr(vr: str) -> bool:
    """Whether values of this VR are searched as substrings (binary, or no standard VR)."""
    return vr in SUBSTRING_VRS or vr not in KNOWN_VRS


class Budget:
    """What is left of one file's inflation allowance (bytes and whole streams)."""

    def __init__(self) -> None:
        self.bytes = INFLATE_TOTAL
        self.streams = MAX_STREAMS


def may_hold_stream(value: bytes) -> bool:
    """Whether a zlib or gzip header could start in the first ZLIB_SCAN bytes (cheap)."""
    return _STREAM_START.search(value[: ZLIB_SCAN + 2]) is not None


def _inflate_at(value: bytes, off: int, budget: Budget) -> tuple[bytes, int, bool] | None:
    """(inflated bytes, end of the stream, whether it ended) of a zlib/gzip stream at off.

    None when the bytes there do not start a stream (a chance header in binary data); a
    stream cut short or corrupt gives what it inflated before the error. Raises
    Uninspectable when the stream would inflate past its bound.
    """
    gzip = value[off : off + 3] == b"\x1f\x8b\x08"
    if not gzip:
        cmf, flg = value[off], value[off + 1]
        if (cmf << 8 | flg) % 31 or flg & 0x20:  # header check, or a preset dictionary
            return None
    limit = min(max(INFLATE_RATIO * (len(value) - off), INFLATE_FLOOR), budget.bytes)
    d = zlib.decompressobj(31 if gzip else 15)
    out: list[bytes] = []
    got, pos, fed, broken = 0, off, off, False

    def take(chunk: bytes) -> None:
        nonlocal got
        got += len(chunk)
        out.append(chunk)
        if got > limit:
            raise Uninspectable("a compressed stream in a binary value inflates past its bound")

    # Input in chunks, the output of each call bounded (a bomb never allocates past its
    # limit). zlib drops a call's output when the call meets an error: the chunk that
    # failed is replayed a byte at a time from the state before it, so what a corrupt
    # stream inflates before the error is searched too.
    while pos < len(value) and not d.eof:
        fed = min(pos + _CHUNK, len(value))
        saved = d.copy()
        try:
            take(d.decompress(value[pos:fed], limit + 1 - got))
        except zlib.error:
            d, broken = saved, True
            for k in range(pos, fed):
                try:
                    take(d.decompress(value[k : k + 1], limit + 1 - got))
                except zlib.error:
                    break
            break
        pos = fed
    if not got and (broken or not d.eof):
        return None
    budget.bytes -= got
    if broken or not d.eof:
        return b"".join(out), len(value), False
    budget.streams -= 1
    if budget.streams < 0:
        raise Uninspectable(f"more than {MAX_STREAMS} compressed streams in the binary values")
    return b"".join(out), fed - len(d.unused_data), True


def inflated(value: bytes, budget: Budget, depth: int = 0) -> list[bytes]:
    """Everything the zlib/gzip streams in a binary value inflate to (see ZLIB_SCAN).

    Every candidate header in the window is tried until one starts a stream that ends;
    the window then moves to that stream's end (a second stream after the first). Raises
    Uninspectable past the bounds.
    """
    found: list[bytes] = []
    base = 0
    while base < len(value) - 2:
        nxt = -1
        for m in _STREAM_START.finditer(value, base, min(len(value), base + ZLIB_SCAN + 2)):
            got = _inflate_at(value, m.start(), budget)
            if got is None:
                continue
            out, end, ended = got
            if out:
                found.append(out)
                if depth + 1 < _INFLATE_DEPTH:
                    found.extend(inflated(out, budget, depth + 1))
            if ended:
                nxt = end
                break
        if nxt <= base:
            break
        base = nxt
    return found


def digit_widths(patterns: list[bytes]) -> dict[int, int]:
    """Pattern index -> code unit width (1, or 2 for UTF-16) of the all-digit patterns."""
    out: dict[int, int] = {}
    for i, p in enumerate(patterns):
        units = p.replace(b"\0", b"")
        if units.isdigit():
            out[i] = 1 if len(units) == len(p) else 2
    return out


def in_digit_run(hay: bytes, s: int, e: int, width: int) -> bool:
    """Whether a digit-only match continues a longer run of digits (a number, not an ID).

    An ID of digits inside a longer number ("12345678" in "0123456789") is a chance match
    in binary data; glued to letters ("Surn12345678") it is found.
    """
    before = hay[s - width : s] if s >= width else b""
    after = hay[e : e + width]
    return any(c.strip(b"\0").isdigit() for c in (before, after) if len(c) == width)
