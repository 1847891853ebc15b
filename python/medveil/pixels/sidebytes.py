"""Remove what pixel data elements hold besides the image (issue 18, F1 and F2).

Compressed frames carry metadata no decoder needs (JPEG APPn with EXIF dates, names and
GPS, COM segments, JPEG 2000 COM segments, JP2 boxes) and may have bytes after the end of
the image; native pixel data may run past the image. :func:`clean_side_bytes` strips the
first kind without re-encoding any entropy-coded byte (see
:mod:`medveil.dicom.pixelbytes`) and cuts zero padding; bytes beyond the image that are
not zeros (a header that does not describe the data, or data hidden after it) and
anything the parser cannot follow are quarantined: the file is never released with them.
"""

from __future__ import annotations

import re
import struct
from typing import cast

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from medveil.dicom.keywords import ID_KEYWORDS, NAME_KEYWORDS
from medveil.dicom.peek import peek, peek_int, peek_str
from medveil.dicom.pixelbytes import (
    PixelParseError,
    expected_length,
    family,
    parse_encapsulated,
    strip_encapsulated,
)
from medveil.dicom.pydicom_private import element, elements
from medveil.errors import QuarantineError

__all__ = ["clean_side_bytes", "strip_beside_image"]

_PIXEL = BaseTag(0x7FE00010)
_FLOAT = {BaseTag(0x7FE00008): 32, BaseTag(0x7FE00009): 64}
_EOT, _EOT_LENGTHS = BaseTag(0x7FE00001), BaseTag(0x7FE00002)
_WORDS = re.compile(r"[\s^=,]+")


def _value(ds: pydicom.Dataset, tag: BaseTag) -> bytes | memoryview | None:
    """A pixel element's bytes as stored (a raw element's value is not converted)."""
    elem = element(ds, tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value if not isinstance(value, bytearray) else bytes(value)
    if value is None:
        return b""
    raise QuarantineError(f"pixel element {tag} does not hold bytes; cannot check it")


def _geometry(ds: pydicom.Dataset) -> tuple[int, int, int, int, int, str]:
    """(rows, columns, samples, bits allocated, frames, photometric) from the header."""
    rows, cols = peek_int(ds, 0x00280010), peek_int(ds, 0x00280011)
    if rows is None or cols is None:
        raise QuarantineError("Rows or Columns is missing; cannot tell where the image ends")
    samples = peek_int(ds, 0x00280002, 1) or 1
    bits = peek_int(ds, 0x00280100, 0) or 0
    frames = peek_int(ds, 0x00280008, 1) or 1
    photometric = str(peek(ds, 0x00280004, "") or "")
    return rows, cols, samples, bits, frames, photometric


def _is_compressed(ts: str) -> bool:
    uid = pydicom.uid.UID(ts)
    return bool(uid.is_transfer_syntax and uid.is_compressed)


def strip_beside_image(ds: pydicom.Dataset) -> list[str]:
    """:func:`clean_side_bytes` under the dataset's own transfer syntax.

    For policies without Clean Pixel Data: metadata beside the image is not pixel data,
    and goes whatever the policy does to the image.
    """
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return clean_side_bytes(ds, str(ts or "1.2.840.10008.1.2"))


def clean_side_bytes(ds: pydicom.Dataset, ts: str) -> list[str]:
    """Strip metadata and bytes beside the image from ds's pixel elements; what went.

    Raises :class:`QuarantineError` when a pixel element holds non-zero bytes beyond the
    image, or a compressed frame cannot be parsed for sure.
    """
    done: list[str] = []
    if element(ds, _PIXEL) is not None:
        if _is_compressed(ts):
            done += _encapsulated(ds, ts)
        else:
            done += _native(ds, _PIXEL, None)
    for tag, bits in _FLOAT.items():
        if element(ds, tag) is not None:
            _float_text(ds, tag)
            done += _native(ds, tag, bits)
    return done


#: Shortest identifying value searched for in float samples (shorter ones occur by chance).
MIN_FLOAT_TERM = 5


def _identity(ds: pydicom.Dataset) -> set[bytes]:
    """The patient's name components, IDs and birth date, lower-cased, as search terms."""
    out: set[str] = set()
    for kw in (*NAME_KEYWORDS, *ID_KEYWORDS, "PatientBirthDate"):
        tag = tag_for_keyword(kw)
        if tag is None:
            continue
        text = peek_str(ds, tag, "")
        out.update(w for w in _WORDS.split(text.lower()) if len(w) >= MIN_FLOAT_TERM)
    terms: set[bytes] = set()
    for word in out:
        for codec in ("utf-8", "utf-16-le"):
            terms.add(word.encode(codec, "replace"))
    return terms


def _float_text(ds: pydicom.Dataset, tag: BaseTag) -> None:
    """Quarantine float pixel data that holds the patient's identity as text.

    Float samples are not decoded: their bytes are the image, so text written there in
    place of samples is found only by looking for the file's own identifying values.
    """
    value = _value(ds, tag)
    if not value:
        return
    hay = bytes(value).lower()
    if any(term in hay for term in _identity(ds)):
        raise QuarantineError(
            f"Float Pixel Data {tag} holds an identifying value of this file as text"
        )


def _native(ds: pydicom.Dataset, tag: BaseTag, float_bits: int | None) -> list[str]:
    """Cut zero bytes after a native image; quarantine any other bytes there."""
    value = _value(ds, tag)
    if value is None:
        return []
    rows, cols, samples, bits, frames, photometric = _geometry(ds)
    try:
        need = expected_length(
            rows,
            cols,
            samples=samples,
            bits_allocated=float_bits or bits,
            frames=frames,
            photometric=photometric,
        )
    except PixelParseError as exc:
        raise QuarantineError(f"{exc}; cannot tell where the image in {tag} ends") from None
    keep = need + need % 2  # one pad byte to an even length belongs to the value
    extra = len(value) - keep
    if extra <= 0:
        return []
    name = "Pixel Data" if float_bits is None else f"Float Pixel Data {tag}"
    if bytes(value[keep:]).strip(b"\x00"):
        raise QuarantineError(
            f"{name} holds {extra} bytes beyond the image (the header describes "
            f"{need} bytes); they are not padding"
        )
    if float_bits is not None:
        return []  # zeros hide nothing; float data is only checked, never rewritten
    _set(ds, tag, value[:keep])
    return [f"{name}: {extra} zero bytes after the image cut"]


def _set(ds: pydicom.Dataset, tag: BaseTag, value: bytes | memoryview) -> None:
    """Replace a pixel element's value, keeping its VR and (un)defined length."""
    elem = element(ds, tag)
    if isinstance(elem, RawDataElement):
        length = elem.length if elem.length == 0xFFFFFFFF else len(value)
        # The raw-byte engine's values are views of its input (pydicom's stub says bytes).
        elements(ds)[tag] = elem._replace(value=cast("bytes", value), length=length)
    elif elem is not None:
        elem.value = value


def _eot(ds: pydicom.Dataset) -> list[int] | None:
    """The Extended Offset Table's offsets, when the file has one."""
    value = _value(ds, _EOT)
    if value is None:
        return None
    if len(value) % 8:
        raise QuarantineError("Extended Offset Table length is not a multiple of 8")
    return list(struct.unpack(f"<{len(value) // 8}Q", bytes(value)))


def _encapsulated(ds: pydicom.Dataset, ts: str) -> list[str]:
    """Strip metadata segments and trailing bytes from every frame; refuse what is unclear."""
    value = _value(ds, _PIXEL)
    if value is None:
        return []
    if not family(ts):
        # MPEG, HEVC, JPEG XL and other streams are not parsed here (not yet covered).
        return []
    rows, cols, samples, bits, frames, _ = _geometry(ds)
    data = bytes(value)
    try:
        layout = parse_encapsulated(
            data,
            ts,
            frames,
            rows=rows,
            columns=cols,
            samples=samples,
            bits_allocated=bits,
            eot=_eot(ds),
        )
    except PixelParseError as exc:
        raise QuarantineError(
            f"compressed Pixel Data cannot be parsed to find metadata beside the image ({exc})"
        ) from None
    beyond = sum(b - a for a, b in layout.extra if data[a:b].strip(b"\x00"))
    if beyond:
        raise QuarantineError(
            f"Pixel Data holds {beyond} bytes beyond the image "
            f"(in fragments after the {frames} frame(s) the header describes)"
        )
    stripped = layout.stripped
    if not stripped:
        return []
    new, table = strip_encapsulated(data, layout)
    _set(ds, _PIXEL, new)
    if element(ds, _EOT) is not None:
        n = len(layout.frames)
        _set(ds, _EOT, struct.pack(f"<{n}Q", *table[:n]))
        if element(ds, _EOT_LENGTHS) is not None:
            _set(ds, _EOT_LENGTHS, struct.pack(f"<{n}Q", *table[n:]))
    return stripped
