"""Read element values without converting the dataset's raw elements.

Reading ``ds.Rows`` makes pydicom replace the raw element by a decoded one for good, and
the writer must then encode it again. Code that only looks (pixel geometry, rule
conditions) peeks instead, so untouched elements stay raw and are copied byte for byte.
"""

from __future__ import annotations

import struct
import typing

from pydicom import config
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from medveil.dicom.pydicom_private import character_set, element

_NUMBERS = {
    "US": struct.Struct("<H"),
    "UL": struct.Struct("<L"),
    "SS": struct.Struct("<h"),
    "SL": struct.Struct("<l"),
}
_TEXT_TYPES: dict[str, type] = {
    "CS": str,
    "LO": str,
    "SH": str,
    "LT": str,
    "ST": str,
    "UT": str,
    "UC": str,
    "PN": PersonName,
    "UI": UID,
}
_NOT_PLAIN = object()


def plain_value(elem: RawDataElement) -> object:
    """pydicom's value of a raw element, decoded directly for one plain single value.

    Covers little-endian single numbers and single ASCII text values, where pydicom's
    conversion is a decode and a strip; anything else returns a sentinel (use pydicom).
    """
    value = elem.value
    vr = elem.VR
    if not elem.is_little_endian or not isinstance(value, bytes):
        return _NOT_PLAIN
    number = _NUMBERS.get(vr)  # type: ignore[arg-type]
    if number is not None:
        return number.unpack(value)[0] if len(value) == number.size else _NOT_PLAIN
    kind = _TEXT_TYPES.get(vr)  # type: ignore[arg-type]
    if kind is None or not value.isascii() or b"\\" in value or b"\x1b" in value:
        return _NOT_PLAIN
    text = value.decode("ascii").rstrip("\x00 ")
    if not text:
        return _NOT_PLAIN  # pydicom's empty values depend on the VR and its settings
    if kind is str:
        return text
    if kind is UID:
        # A UID is an immutable str whose construction validates it: the few of a series
        # (its classes, syntaxes) are made once (bounded, so memory stays flat).
        # Keyed with pydicom's validation mode: a mode that raises still raises each time.
        key = (text, config.settings.reading_validation_mode)
        uid = _UIDS.get(key)
        if uid is None:
            if len(_UIDS) >= 4096:
                _UIDS.clear()
            uid = _UIDS[key] = UID(text)
        return uid
    return kind(text)


_UIDS: dict[tuple[str, int], UID] = {}


def peek(ds: Dataset, tag: int, default: object = None) -> object:
    """The value of element `tag` (top level), decoded but not stored back into ds."""
    elem = element(ds, tag)
    if elem is None:
        return default
    if isinstance(elem, RawDataElement):
        value = plain_value(elem)
        if value is not _NOT_PLAIN:
            return value
        elem = convert_raw_data_element(elem, encoding=character_set(ds), ds=ds)
    return elem.value


def peek_int(ds: Dataset, tag: int, default: int | None = None) -> int | None:
    """An integer element value (first value if multi-valued), without converting ds."""
    value = peek(ds, tag)
    if value is None or value == "":
        return default
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else default
    try:
        return int(typing.cast("str | bytes | float", value))  # int() says if it is not
    except (TypeError, ValueError):
        return default


def raw_text(ds: Dataset, elem: RawDataElement) -> list[str] | None:
    """The values of a raw text element, decoded directly when that is unambiguous.

    Only for datasets with a single plain character set and values without ISO 2022
    escape sequences; otherwise None, and the caller lets pydicom decode.
    """
    charsets = character_set(ds)
    if isinstance(charsets, str):
        charsets = [charsets]
    value = elem.value
    if value is None:
        return []
    if len(charsets) != 1 or not isinstance(value, (bytes, bytearray)):
        return None
    return decode_text(bytes(value), charsets[0])


def decode_text(value: bytes, codec: str) -> list[str] | None:
    """The values of a text element's bytes in one plain character set (None if not plain)."""
    if b"\x1b" in value:
        return None  # ISO 2022 escapes: pydicom switches character sets on them
    try:
        text = value.decode(codec)
    except (LookupError, UnicodeDecodeError):
        return None
    text = text.rstrip("\x00 ")
    return [v.strip(" ") for v in text.split("\\")] if text else []


def peek_str(ds: Dataset, tag: int, default: str = "") -> str:
    """An element's value as text (multi-values joined by backslash), without converting ds."""
    elem = element(ds, tag)
    if elem is None:
        return default
    if isinstance(elem, RawDataElement) and elem.VR != "UN":
        values = raw_text(ds, elem)
        if values is not None:
            return "\\".join(values)
    value = peek(ds, tag)
    if value is None:
        return default
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)
