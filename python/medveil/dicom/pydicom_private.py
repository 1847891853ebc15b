"""The few pydicom internals medveil relies on, in one place, each with the reason.

pydicom's public API decodes an element when it is read; the engines must look at, copy
and replace elements *without* decoding them (speed, and bytes kept verbatim), which only
its internals allow. tests/dicom/test_pydicom_private.py fails loudly when a pydicom
release changes any of them.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

Element = DataElement | RawDataElement

#: RawDataElement's fields, in pydicom 3.0's order; construction is by keyword only.
RAW_FIELDS = (
    "tag",
    "VR",
    "length",
    "value",
    "value_tell",
    "is_implicit_VR",
    "is_little_endian",
    "is_raw",
    "is_buffered",
)


def elements(ds: Dataset) -> MutableMapping[BaseTag, Element]:
    """The dataset's element store: read and replaced without decoding (``Dataset._dict``)."""
    return ds._dict


def element(ds: Dataset, tag: int) -> Element | None:
    """One top-level element as stored, raw or decoded, or None; never decodes it."""
    return ds._dict.get(BaseTag(tag))


def character_set(ds: Dataset) -> str | list[str]:
    """The Python codecs of the dataset's Specific Character Set (``Dataset._character_set``)."""
    return ds._character_set


def raw_element(
    tag: int,
    vr: str | None,
    length: int,
    value: bytes | bytearray | memoryview | None,
    *,
    value_tell: int = 0,
    implicit: bool,
    little: bool,
    is_raw: bool = True,
    is_buffered: bool = False,
) -> RawDataElement:
    """A RawDataElement built by field name, so a reordered tuple cannot go unnoticed."""
    return RawDataElement(
        tag=BaseTag(tag),
        VR=vr,
        length=length,
        value=value,  # type: ignore[arg-type]  # views are kept as views: no copy of pixels
        value_tell=value_tell,
        is_implicit_VR=implicit,
        is_little_endian=little,
        is_raw=is_raw,
        is_buffered=is_buffered,
    )


def decodable_syntaxes() -> list[str]:
    """Transfer syntaxes pydicom has a pixel decoder for (``_PIXEL_DATA_DECODERS``).

    pydicom has no public list of them; the gateway offers exactly these.
    """
    from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS

    return [str(uid) for uid in _PIXEL_DATA_DECODERS]
