"""The raw-byte engine's former pure-Python element scanner: the oracle for the core's.

Kept verbatim in behaviour (the rules the engine always applied), so the core scanner
(``medveil._core.scan_elements`` via ``rawengine._scan``) can be checked against it tree
for tree on real, generated and damaged files.
"""

from __future__ import annotations

import struct

from medveil.engine.raw import _UNDEFINED, PIXEL_DATA, NotRaw, _Elem, _implicit_vr, _Item

_LONG = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UR", b"UT", b"SV", b"UV"}
)
_SHORT = frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO",
        b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
_TAG = struct.Struct("<HH")
_U32 = struct.Struct("<L")
_HEAD = struct.Struct("<HH2sH")
_IHEAD = struct.Struct("<HHL")


def scan(
    buf: bytearray | bytes, pos: int, end: int, top: bool, implicit: bool = False
) -> tuple[list[_Elem], int]:
    """The elements from pos up to end (or up to an item delimiter); returns (elems, pos).

    Implicit VR elements get their VR from the data dictionary, as the Dataset engine
    reads them.
    """
    elems: list[_Elem] = []
    head, ihead, u32 = _HEAD.unpack_from, _IHEAD.unpack_from, _U32.unpack_from
    last = -1
    while pos < end:
        if pos + 8 > end:
            raise NotRaw("truncated element header")
        if implicit:
            group, el, length = ihead(buf, pos)
            tag = (group << 16) | el
            vr = "" if tag == _ITEM_END else _implicit_vr(tag)
            vstart = pos + 8
        else:
            group, el, vrb, length = head(buf, pos)
            tag = (group << 16) | el
            if vrb in _SHORT:
                vstart = pos + 8
            elif vrb in _LONG or vrb == b"UN":
                length = u32(buf, pos + 8)[0]
                vstart = pos + 12
            elif tag != _ITEM_END:
                raise NotRaw("unknown VR")
            vr = vrb.decode("latin-1")
        if tag == _ITEM_END:
            return elems, pos + 8
        if tag <= last:
            raise NotRaw("elements out of order")
        last = tag
        if vr == "SQ" or (vr == "UN" and length == _UNDEFINED):
            # An undefined-length UN is a sequence in Implicit VR (PS3.5 6.2.2).
            items, stop = _scan_items(buf, vstart, length, end, implicit or vr == "UN")
            elems.append(_Elem(tag, vr, pos, vstart, length, stop, items))
            pos = stop
            continue
        if length == _UNDEFINED:
            if tag != PIXEL_DATA or implicit:
                raise NotRaw("undefined length outside a sequence")
            stop = _fragments_end(buf, vstart, end)
        else:
            stop = vstart + length
            if stop > end:
                raise NotRaw("value runs past the end")
        elems.append(_Elem(tag, vr, pos, vstart, length, stop, []))
        pos = stop
    if not top:
        raise NotRaw("item without delimiter")
    return elems, pos


def _fragments_end(buf: bytearray | bytes, pos: int, end: int) -> int:
    """Where encapsulated Pixel Data starting at pos ends (after its sequence delimiter)."""
    while pos + 8 <= end:
        group, el, length = _IHEAD.unpack_from(buf, pos)
        tag = (group << 16) | el
        if tag == _SEQ_END:
            return pos + 8
        if tag != _ITEM or length == _UNDEFINED or pos + 8 + length > end:
            raise NotRaw("malformed encapsulated pixel data")
        pos += 8 + length
    raise NotRaw("encapsulated pixel data without delimiter")


def _scan_items(
    buf: bytearray | bytes, pos: int, length: int, end: int, implicit: bool
) -> tuple[list, int]:
    """The items of a sequence value starting at pos; returns (items, end of the element)."""
    undefined = length == _UNDEFINED
    stop = end if undefined else pos + length
    if stop > end:
        raise NotRaw("sequence runs past the end")
    items: list[_Item] = []
    while pos < stop:
        if pos + 8 > stop:
            raise NotRaw("truncated item header")
        group, el = _TAG.unpack_from(buf, pos)
        tag = (group << 16) | el
        ilen = _U32.unpack_from(buf, pos + 4)[0]
        if tag == _SEQ_END:
            if not undefined:
                raise NotRaw("sequence delimiter in a defined-length sequence")
            return items, pos + 8
        if tag != _ITEM:
            raise NotRaw("not an item in a sequence")
        start = pos
        if ilen == _UNDEFINED:
            elems, pos = scan(buf, pos + 8, stop, False, implicit)
            items.append(_Item(elems, True, start, pos))
        else:
            iend = pos + 8 + ilen
            if iend > stop:
                raise NotRaw("item runs past its sequence")
            elems, pos = scan(buf, pos + 8, iend, True, implicit)
            items.append(_Item(elems, False, start, iend))
    if undefined:
        raise NotRaw("sequence without delimiter")
    return items, stop
