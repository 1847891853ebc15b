"""Binary values: which are searched as substrings, and the compressed streams they hold.

Binary values (OB, OW, OD, OF, OL, OV, UN, and VRs no standard names) carry no word
structure: a name glued to an ID (``1SurnPID1``) or a compressed copy of the patient's
identity inside a vendor's private blob is still a leak. The post-check
(:mod:`medveil.engine.postcheck`) and ``medveil verify`` both search them for learned
values as substrings and inflate the compressed streams they hold (zlib, gzip, ZIP
members and raw DEFLATE data, anywhere in the value), with bounds that turn a
decompression bomb into an error, never an allocation.
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
# Compressed streams are looked for anywhere in a binary value: a zlib or gzip header at
# any offset, a ZIP member (its local header says where its raw DEFLATE data starts), and
# raw DEFLATE data (no header at all) tried at every offset of the first RAW_WINDOW bytes
# and right after each stream found. Raw data deeper in a value is not looked for: every
# offset of a long value costs too much (a 384 KiB palette LUT: 17 s, most offsets start
# a chance stream there), so that is a documented limit. ZLIB_SCAN: the callers' old test.
ZLIB_SCAN = 64
RAW_WINDOW = 1024
# A raw stream is probed on this many bytes first: nearly every offset of ordinary binary
# data fails within them (measured: 0.5 % of random offsets pass), and only those that
# pass are inflated in full.
_PROBE = 64
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
_ZIP_LOCAL = re.compile(rb"PK\x03\x04", re.DOTALL)


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
    """Whether value is long enough to hold a compressed stream worth searching.

    Raw DEFLATE data has no header to look for: any value of a few bytes may be one.
    """
    return len(value) >= 6


def _inflate_at(
    value: bytes, off: int, budget: Budget, raw: bool = False
) -> tuple[bytes, int, bool] | None:
    """(inflated bytes, end of the stream, whether it ended) of a stream at off.

    A zlib or gzip stream (by its header), or with ``raw`` raw DEFLATE data. None when the
    bytes there do not start a stream (a chance header in binary data); a stream cut short
    or corrupt gives what it inflated before the error. Raises Uninspectable when the
    stream would inflate past its bound.
    """
    gzip = not raw and value[off : off + 3] == b"\x1f\x8b\x08"
    if not gzip and not raw:
        cmf, flg = value[off], value[off + 1]
        if (cmf << 8 | flg) % 31 or flg & 0x20:  # header check, or a preset dictionary
            return None
    limit = min(max(INFLATE_RATIO * (len(value) - off), INFLATE_FLOOR), budget.bytes)
    d = zlib.decompressobj(-15 if raw else 31 if gzip else 15)
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
    if raw:
        # Chance raw streams end often in binary data (a few bytes each): only the bytes
        # they inflate to count, against INFLATE_TOTAL.
        return b"".join(out), fed - len(d.unused_data), True
    budget.streams -= 1
    if budget.streams < 0:
        raise Uninspectable(f"more than {MAX_STREAMS} compressed streams in the binary values")
    return b"".join(out), fed - len(d.unused_data), True


def _probe_raw(value: bytes, off: int) -> bool:
    """Whether raw DEFLATE data could start at off (its first _PROBE bytes inflate)."""
    try:
        zlib.decompressobj(-15).decompress(value[off : off + _PROBE], 1 << 16)
    except zlib.error:
        return False
    return True


def _zip_members(value: bytes) -> list[int]:
    """Offsets of the DEFLATE data of the ZIP members in value (local file headers)."""
    out = []
    for m in _ZIP_LOCAL.finditer(value):
        head = m.start()
        if head + 30 > len(value):
            break
        method = int.from_bytes(value[head + 8 : head + 10], "little")
        names = int.from_bytes(value[head + 26 : head + 28], "little")
        extra = int.from_bytes(value[head + 28 : head + 30], "little")
        if method == 8 and head + 30 + names + extra < len(value):
            out.append(head + 30 + names + extra)
    return out


def inflated(value: bytes, budget: Budget, depth: int = 0) -> list[bytes]:
    """Everything the compressed streams in a binary value inflate to.

    Every zlib/gzip header, every ZIP member and, for raw DEFLATE data, every offset of
    the first RAW_WINDOW bytes and the offset right after each stream found; each
    candidate is tried on its own, so a chance stream never hides a real one. What a
    stream inflates to is searched again once (a stream inside a stream).
    Raises Uninspectable past the bounds.
    """
    found: list[bytes] = []
    covered: list[tuple[int, int]] = []  # streams found by their header: [start, end)
    ends: set[int] = set()

    def keep(out: bytes) -> None:
        found.append(out)
        if depth + 1 < _INFLATE_DEPTH:
            found.extend(inflated(out, budget, depth + 1))

    n = len(value)
    for m in _STREAM_START.finditer(value, 0, max(0, n - 2)):
        got = _inflate_at(value, m.start(), budget)
        if got is None:
            continue
        out, end, ended = got
        if out:
            keep(out)
        if ended:
            covered.append((m.start(), end))
            ends.add(end)
    for off in _zip_members(value):
        got = _inflate_at(value, off, budget, raw=True)
        if got is not None and got[0]:
            keep(got[0])
            if got[2]:
                covered.append((off, got[1]))
                ends.add(got[1])
    # Raw DEFLATE data: every offset of the window not inside a stream inflated whole.
    span = min(n, RAW_WINDOW)
    offsets = sorted(set(range(0, min(n, span))) | {e for e in ends if e < n})
    covered.sort()
    ci = 0
    raw_ends: list[int] = []
    for off in offsets:
        while ci < len(covered) and covered[ci][1] <= off:
            ci += 1
        if ci < len(covered) and covered[ci][0] <= off:
            continue
        if n - off < 4 or not _probe_raw(value, off):
            continue
        got = _inflate_at(value, off, budget, raw=True)
        if got is None:
            continue
        out, end, ended = got
        if len(out) >= 4:  # shorter holds no term: the noise of a chance start
            keep(out)
        if ended and end > span and end < n:
            raw_ends.append(end)
    for off in raw_ends:  # a stream right after a raw stream that ran past the window
        if _probe_raw(value, off):
            got = _inflate_at(value, off, budget, raw=True)
            if got is not None and len(got[0]) >= 4:
                keep(got[0])
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
