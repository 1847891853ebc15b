"""A fast DICOM writer: elements the engine left untouched are copied as raw bytes.

pydicom's writer re-wraps every element; after de-identification most elements are still
the :class:`~pydicom.dataelem.RawDataElement` the reader produced, so their encoded form
is just tag + VR + length + the original value bytes. Only converted (changed or added)
elements go through pydicom's encoder. The output is byte-identical to
:func:`medveil.dicom.io.write_dataset` (a test checks this on every pydicom test file), and
the writer also reports where the top-level Pixel Data starts, so the post-check can scan
the header without searching the pixels.
"""

from __future__ import annotations

import struct

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import (
    correct_ambiguous_vr_element,
    write_data_element,
    write_file_meta_info,
)
from pydicom.multival import MultiValue
from pydicom.uid import UID

from medveil._version import __version__
from medveil.dicom.pydicom_private import character_set, elements, raw_element
from medveil.dicom.vr import LONG_VRS
from medveil.errors import DicomInputError

PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF


# medveil's Implementation Class UID: the 2.25 form of uuid5(NAMESPACE_URL,
# "https://github.com/medveil/medveil#implementation"), fixed so outputs are reproducible.
IMPLEMENTATION_CLASS_UID = "2.25.239146330412718645523627206655271444772"
IMPLEMENTATION_VERSION_NAME = ("MEDVEIL_" + __version__)[:16]

# Values at least this large are passed on as they are, never copied into a joined buffer.
BIG_VALUE = 1 << 16


def fast_write(ds: Dataset) -> tuple[bytes, int]:
    """Encode ds like write_dataset; return (file bytes, offset of Pixel Data or -1)."""
    chunks, pixel_at = fast_write_parts(ds)
    return b"".join(chunks), pixel_at


def fast_write_parts(ds: Dataset) -> tuple[list[bytes], int]:
    """Encode ds like write_dataset, as chunks whose concatenation is the file.

    Small pieces are joined; large values (pixel data) stay the objects they are, so a
    100 MB image is never copied to be written or hashed.
    """
    meta = ds.file_meta
    ts = meta.TransferSyntaxUID
    implicit, little = ts.is_implicit_VR, ts.is_little_endian
    if ds.original_encoding != (implicit, little) or (
        ds.original_character_set != character_set(ds)
    ):
        raise DicomInputError("encoding changed: the fast writer only copies like for like")
    if ts.is_deflated:
        raise DicomInputError("deflated transfer syntax: use the generic writer")
    if "MediaStorageSOPClassUID" not in meta or "MediaStorageSOPInstanceUID" not in meta:
        raise DicomInputError("no conformant file meta: use the generic writer")
    # The original preamble may hide data: it is never copied.
    parts: list[bytes] = [b"\x00" * 128 + b"DICM" + encode_file_meta(meta)]
    # (index in parts, value kept as is: large values stay views of the input, never copied)
    big: list[tuple[int, bytes | bytearray | memoryview]] = []
    size = len(parts[0])
    pixel_at = -1
    end = "<" if little else ">"
    tag_fmt = struct.Struct(end + "HH")
    short_len = struct.Struct(end + "H")
    long_len = struct.Struct(end + "L")
    encoding = ds.get("SpecificCharacterSet", "iso8859")
    d = elements(ds)
    for tag in sorted(d):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem = d[tag]
        if tag == PIXEL_DATA:
            pixel_at = size
        value: bytes | bytearray | memoryview | None
        if isinstance(elem, RawDataElement):
            if not implicit and (elem.VR is None or len(elem.VR) != 2):
                # Read as Implicit VR under an explicit syntax; prepare_meta gives VRs.
                raise DicomInputError("element without a VR: use the generic writer")
            value = elem.value
        elif (
            elem.VR in ("OB", "OW")
            and not elem.is_undefined_length
            and isinstance(elem.value, (bytes, bytearray, memoryview))
            and len(elem.value) % 2 == 0
        ):
            # Decoded binary values (new pixel data) are written as the bytes they are.
            value = elem.value
            elem = raw_element(tag, elem.VR, len(value), value, implicit=implicit, little=little)
        else:
            value = None
        vr = elem.VR or ""
        if (
            isinstance(elem, RawDataElement)
            and isinstance(value, (bytes, bytearray, memoryview))
            and elem.length != _UNDEFINED
            # pydicom resolves UN to the dictionary VR when writing: let it.
            and (implicit or (len(vr) == 2 and vr != "UN"))
            and (implicit or vr in LONG_VRS or len(value) <= 0xFFFF)
        ):
            parts.append(tag_fmt.pack(tag >> 16, tag & 0xFFFF))
            if implicit:
                parts.append(long_len.pack(len(value)))
                size += 8
            elif vr in LONG_VRS:
                parts.append(vr.encode("ascii") + b"\x00\x00" + long_len.pack(len(value)))
                size += 12
            else:
                parts.append(vr.encode("ascii") + short_len.pack(len(value)))
                size += 8
            if len(value) >= BIG_VALUE:
                big.append((len(parts), value))
                parts.append(b"")
            else:
                parts.append(bytes(value))
            size += len(value)
            continue
        scratch = DicomBytesIO()
        scratch.is_little_endian = little
        scratch.is_implicit_VR = implicit
        write_data_element(scratch, ds.get_item(tag), encoding)
        chunk = scratch.getvalue()
        parts.append(chunk)
        size += len(chunk)
    chunks: list[bytes] = []
    start = 0
    for index, value in big:
        chunks.append(b"".join(parts[start:index]))
        chunks.append(value)  # type: ignore[arg-type]  # a view: written as is, never copied
        start = index + 1
    chunks.append(b"".join(parts[start:]))
    return [c for c in chunks if c], pixel_at


_META_SOP_INSTANCE = 0x00020003
_META_CACHE: dict[tuple[object, ...], tuple[bytes, bytes]] = {}


def _split_meta(encoded: bytes) -> tuple[bytes, bytes]:
    """Split pydicom's encoded meta into the elements before and after the SOP instance UID."""
    pos, pre_end, post_start = 0, -1, -1
    while pos < len(encoded):
        group, elem = struct.unpack_from("<HH", encoded, pos)
        vr = encoded[pos + 4 : pos + 6].decode("ascii")
        if vr in LONG_VRS:
            length, head = struct.unpack_from("<L", encoded, pos + 8)[0], 12
        else:
            length, head = struct.unpack_from("<H", encoded, pos + 6)[0], 8
        tag = (group << 16) | elem
        if tag == 0x00020000:
            first = pos + head + length
        if tag == _META_SOP_INSTANCE:
            pre_end, post_start = pos, pos + head + length
        pos += head + length
    return encoded[first:pre_end], encoded[post_start:]


def encode_file_meta(meta: FileMetaDataset) -> bytes:
    """Encode the File Meta Information exactly as pydicom does, reusing a per-run template.

    Within a run only MediaStorageSOPInstanceUID changes from file to file, so the other
    elements (as completed by pydicom's validation) are encoded once and reused.
    """
    pre, post = file_meta_template(meta)
    return splice_file_meta(pre, post, str(meta.MediaStorageSOPInstanceUID))


def _value_key(value: object) -> object:
    """A decoded value as the template cache tells it apart: a list of UIDs and the text
    of that list are written differently, so their keys differ (type and items)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (list, tuple, MultiValue)):
        return ("list", tuple(str(v) for v in value))
    return (type(value).__name__, str(value))


def file_meta_template(meta: FileMetaDataset) -> tuple[bytes, bytes]:
    """The encoded meta elements before and after MediaStorageSOPInstanceUID (cached)."""
    key = tuple(
        (int(t), e.VR, _value_key(e.value))
        for t, e in meta.items()
        if int(t) not in (0x00020000, _META_SOP_INSTANCE)
    )
    cached = _META_CACHE.get(key)
    if cached is None:
        full = DicomBytesIO()
        full.is_little_endian, full.is_implicit_VR = True, False
        write_file_meta_info(full, meta, enforce_standard=True)  # validates and completes meta
        if len(_META_CACHE) > 64:
            _META_CACHE.clear()
        _META_CACHE[key] = cached = _split_meta(full.getvalue())
    return cached


def splice_file_meta(pre: bytes, post: bytes, sop_instance_uid: str) -> bytes:
    """The encoded File Meta Information group with this SOP Instance UID between pre and post."""
    uid = sop_instance_uid.encode("ascii")
    if len(uid) % 2:
        uid += b"\x00"
    mid = b"\x02\x00\x03\x00UI" + struct.pack("<H", len(uid)) + uid
    body = pre + mid + post
    return b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<L", len(body)) + body


def prepare_meta(ds: Dataset) -> None:
    """Make the file meta consistent with the dataset, and top-level VRs explicit.

    Raw elements read with VR UN are decoded, so pydicom gives them their dictionary VR:
    both writers then produce the same bytes (pydicom alone would convert only the
    elements something happened to read).
    """
    for tag, elem in list(elements(ds).items()):
        if isinstance(elem, RawDataElement) and elem.VR == "UN":
            ds[tag]
    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if little is False:
            meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
        elif implicit is False:
            meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        else:
            meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    if not meta.TransferSyntaxUID.is_implicit_VR and any(
        isinstance(e, RawDataElement) and e.VR is None for e in elements(ds).values()
    ):
        _give_vrs(ds, meta.TransferSyntaxUID.is_little_endian)
    if "SOPClassUID" in ds and "MediaStorageSOPClassUID" not in meta:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    # medveil wrote this file: the source's software identity does not travel with it, and
    # a file gets the same meta whether it arrived as a file or over the network.
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME


def _give_vrs(ds: Dataset, little: bool) -> None:
    """Decode every element read without a VR, at every depth, so it gets its dictionary VR.

    A data set encoded in Implicit VR under an Explicit VR transfer syntax (pydicom reads
    it, with a warning) leaves raw elements with no VR, which neither writer can write in
    explicit VR ("encoding without a string argument"). Decoded, each takes the VR the
    data dictionary gives (UN for unknown private elements; the value decides between
    ambiguous ones such as "OB or OW", as pydicom's writer does), and the file is written
    as its transfer syntax says.
    """
    for tag, elem in list(elements(ds).items()):
        if isinstance(elem, RawDataElement):
            if elem.VR is not None and elem.VR != "SQ" and len(elem.VR) == 2:
                continue  # a real VR (pydicom gives Pixel Data "OB or OW" when implicit)
            elem = correct_ambiguous_vr_element(ds[tag], ds, little)
        if elem.VR == "SQ":
            for item in elem.value or ():
                if isinstance(item, Dataset):
                    _give_vrs(item, little)
