"""Part 10 files in and out: a strict-enough reader with clear errors, and the writers.

Reading and writing live here, below the engine, so that every layer that touches files
(engine, run, net, verify's tests) shares one reader and one writer.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset

from medveil.dicom.peek import peek, peek_int
from medveil.dicom.pydicom_private import elements
from medveil.dicom.strict import MAX_INFLATED, StructureError, check_structure, dataset_offset
from medveil.dicom.vr import LONG_VR_BYTES
from medveil.dicom.writer import fast_write_parts, prepare_meta
from medveil.errors import DicomInputError, QuarantineError

# (7FE0,0008) Float, (7FE0,0009) Double Float and (7FE0,0010) Pixel Data, as stored.
_PIXEL_TAGS_LE = frozenset(
    (0x7FE0).to_bytes(2, "little") + e.to_bytes(2, "little") for e in (0x0008, 0x0009, 0x0010)
)
_PIXEL_TAGS_BE = frozenset(
    (0x7FE0).to_bytes(2, "big") + e.to_bytes(2, "big") for e in (0x0008, 0x0009, 0x0010)
)


class _BufferReader(io.RawIOBase):
    """A file over a bytearray (or a writable memoryview) whose large reads are views.

    pydicom keeps what read() returns as element values, so Pixel Data read through this
    is a writable view of the caller's buffer: the pixel cleaner masks it in place.
    """

    def __init__(self, buf: bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(buf)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes | memoryview:
        start = self._pos
        end = len(self._view) if size is None or size < 0 else min(start + size, len(self._view))
        chunk = self._view[start:end]
        self._pos = end
        # Only a native pixel value stays a view: other values (text, encapsulated
        # fragments, large private blobs) go to code that expects bytes (pydicom's writer
        # calls bytes methods on them).
        if len(chunk) >= 65536 and self._is_pixel_value(start, len(chunk)):
            return chunk
        return bytes(chunk)

    def _is_pixel_value(self, start: int, size: int) -> bool:
        """Whether [start, start+size) is the value of a (Float/Double) Pixel Data element.

        The element's header sits right before its value: explicit VR (tag, OB/OW/OF/OD,
        2 reserved bytes, 4-byte length) or implicit VR (tag, 4-byte length), either
        endianness; its length must be the size read.
        """
        view = self._view
        for header in (12, 8):
            at = start - header
            if at < 0:
                continue
            tag = bytes(view[at : at + 4])
            length = bytes(view[start - 4 : start])
            if tag in _PIXEL_TAGS_LE and int.from_bytes(length, "little") == size:
                return True
            if tag in _PIXEL_TAGS_BE and int.from_bytes(length, "big") == size:
                return True
        return False

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def in_place(raw: bytes | bytearray | memoryview) -> bool:
    """Whether read_dataset reads ``raw`` without copying it (its large values stay views)."""
    return isinstance(raw, bytearray) or (
        isinstance(raw, memoryview) and not raw.readonly and raw.contiguous
    )


def read_dataset(
    src: str | os.PathLike[str] | io.BytesIO | bytearray | memoryview,
    name: str,
    *,
    strict: bool = True,
) -> Dataset:
    """Read a DICOM file fully, with a clear error naming the file when it is not DICOM.

    With ``strict`` (the default) the file's structure is validated first
    (:func:`medveil.dicom.strict.check_structure`): a damaged file raises StructureError
    and is never read tolerantly. A bytearray or writable memoryview is read without
    copying its large values: they stay views of it, and the pixel cleaner may change it
    in place (a read-only memoryview is copied once).
    """
    if isinstance(src, memoryview) and not in_place(src):
        src = io.BytesIO(src)
    if strict:
        validate(src, name)
    fh: str | os.PathLike[str] | io.BytesIO | _BufferReader = (
        _BufferReader(src) if isinstance(src, (bytearray, memoryview)) else src
    )
    try:
        ds = pydicom.dcmread(fh, force=False)  # type: ignore[arg-type]
    except pydicom.errors.InvalidDicomError:
        try:
            if isinstance(fh, (io.BytesIO, _BufferReader)):
                fh.seek(0)
            ds = pydicom.dcmread(fh, force=True)  # type: ignore[arg-type]
        except Exception as exc:
            raise DicomInputError(f"{name}: not a DICOM file ({exc})") from None
        if len(elements(ds)) == 0 or (
            not hasattr(ds, "SOPClassUID") and not hasattr(ds, "PatientID")
        ):
            raise DicomInputError(
                f"{name}: not a DICOM file (no preamble, no parsable dataset)"
            ) from None
    except (
        OSError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        NotImplementedError,
    ) as exc:
        raise DicomInputError(f"{name}: cannot read: {exc}") from None
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    check_pixel_length(ds, name)
    return ds


def validate(
    src: str | os.PathLike[str] | io.BytesIO | bytearray | bytes | memoryview, name: str
) -> None:
    """Raise StructureError (naming ``name``) unless the file's structure is consistent."""
    try:
        if isinstance(src, io.BytesIO):
            data: bytes | bytearray | memoryview = src.getbuffer()
        elif isinstance(src, (bytes, bytearray, memoryview)):
            data = src
        else:
            with open(src, "rb") as fh:
                data = fh.read()
    except OSError as exc:
        raise DicomInputError(f"{name}: cannot read: {exc}") from None
    try:
        check_structure(data)
    except StructureError as exc:
        raise StructureError(f"{name}: {exc}") from None
    finally:
        if isinstance(src, io.BytesIO) and isinstance(data, memoryview):
            data.release()  # a BytesIO cannot be resized while a view of it is alive


def check_pixel_length(ds: Dataset, name: str) -> None:
    """Raise DicomInputError when native pixel data is shorter than its header says.

    pydicom returns whatever bytes a truncated file still has; a short PixelData is the
    usual sign of an interrupted copy, and cleaning such a file cannot be trusted.
    """
    elem = ds.get_item(0x7FE00010)
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None)
    if elem is None or (ts is not None and ts.is_compressed):
        return
    rows, cols = peek_int(ds, 0x00280010), peek_int(ds, 0x00280011)
    bits = peek_int(ds, 0x00280100)
    if rows is None or cols is None or bits is None:
        return
    samples = peek_int(ds, 0x00280002, 1) or 1
    # Samples stored per 2 pixels: 4:2:2 YBR keeps Y Y Cb Cr for each pair of pixels and
    # 4:2:0 one Cb Cr pair per 2 x 2 block (PS3.3 C.7.6.3.1.2, PS3.5 8.2.3).
    per_two = samples * 2
    if samples == 3:
        photometric = str(peek(ds, 0x00280004, "") or "").strip().upper()
        per_two = {"YBR_FULL_422": 4, "YBR_PARTIAL_422": 4, "YBR_PARTIAL_420": 3}.get(
            photometric, per_two
        )
    pixels = rows * cols * (peek_int(ds, 0x00280008, 1) or 1)
    expected = (pixels * per_two + 1) // 2 * bits
    # The declared length is not what was read: a truncated file has a shorter value.
    value = elem.value
    length = len(value) if value is not None else 0
    if length * 8 < expected:
        raise DicomInputError(
            f"{name}: truncated: pixel data holds {length} bytes, "
            f"the header needs {(expected + 7) // 8}"
        )


def write_dataset(ds: Dataset) -> bytes:
    """Serialise a dataset in its original encoding, with file meta made consistent."""

    buf = io.BytesIO()
    prepare_meta(ds)
    meta = ds.file_meta
    # A dataset without SOP Class/Instance cannot have conformant file meta; it is still
    # written (preamble, meta, dataset) so it stays readable.
    conformant = "MediaStorageSOPClassUID" in meta and "MediaStorageSOPInstanceUID" in meta
    # The 128-byte preamble is free for applications and can carry anything: zero it.
    ds.preamble = b"\x00" * 128
    try:
        if conformant:
            ds.save_as(buf, enforce_file_format=True)
        else:
            # Without SOP Class/Instance no conformant file meta exists: write the bare
            # dataset in its transfer syntax (readable as a dataset without preamble).
            ts = meta.TransferSyntaxUID
            ds.file_meta = FileMetaDataset()
            pydicom.dcmwrite(
                buf,
                ds,
                implicit_vr=ts.is_implicit_VR,
                little_endian=ts.is_little_endian,
                enforce_file_format=False,
            )
    except Exception as exc:
        raise DicomInputError(f"cannot be written after de-identification: {exc}") from None
    return buf.getvalue()


def write_fast_or_generic(ds: Dataset) -> tuple[list[bytes], int]:
    """Encode with fast_write_parts when the dataset allows it, else with write_dataset."""
    prepare_meta(ds)
    try:
        return fast_write_parts(ds)
    except DicomInputError:
        data = write_dataset(ds)
        return [data], data.rfind(b"\xe0\x7f\x10\x00")


# ---------------------------------------------------------------------------- deflated
DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian
_EXPLICIT_LE_UID = b"1.2.840.10008.1.2.1\x00"  # Explicit VR Little Endian, padded even
_IN_STEP = 1 << 20  # compressed bytes fed to zlib at a time
_OUT_STEP = 1 << 20  # inflated bytes taken from zlib at a time: the transient memory


class InflatedTooLarge(QuarantineError):
    """A deflated data set that inflates past the per-file size limit."""


def inflated_too_large(limit: int) -> str:
    """The quarantine reason of a deflated file over the size limit once inflated."""
    mb = limit / 1e6
    return (
        f"too large once inflated: over the per-file limit of {mb:.0f} MB (--max-file-size)"
        if mb >= 10
        else f"too large once inflated: over the per-file limit of {mb:.1f} MB (--max-file-size)"
    )


def inflate_file(
    raw: bytes | bytearray | memoryview,
    limit: int | None = None,
    alloc: Callable[[int], memoryview] | None = None,
) -> memoryview | None:
    """A Deflated Explicit VR Little Endian file as the same file in Explicit VR LE; else None.

    The result (preamble, file meta with the transfer syntax rewritten, the inflated data
    set) is one buffer from ``alloc`` (default: a new bytearray), sized exactly: a first
    pass inflates 1 MB at a time only to measure and validate the stream, so a deflate
    bomb costs time up to the limit, never memory. Raises InflatedTooLarge past ``limit``
    bytes (default MAX_INFLATED) and StructureError when the stream does not inflate
    exactly (the rules of :func:`medveil.dicom.strict.check_structure`). Files of any
    other syntax, or whose file meta is damaged (left to the strict check), give None.
    """
    if not _may_be_deflated(raw):
        return None
    try:
        meta_start, pos, ts = dataset_offset(raw)
    except StructureError:
        return None
    if ts != DEFLATED:
        return None
    limit = MAX_INFLATED if limit is None else limit
    view = memoryview(raw).cast("B")
    head = bytearray(view[:meta_start]) + _explicit_meta(view[meta_start:pos])
    if len(head) > limit:
        raise InflatedTooLarge(inflated_too_large(limit))
    try:
        size = _inflate_into(view, pos, limit - len(head), None)
    except _Over:
        raise InflatedTooLarge(inflated_too_large(limit)) from None
    out = alloc(len(head) + size) if alloc is not None else memoryview(bytearray(len(head) + size))
    out[: len(head)] = head
    _inflate_into(view, pos, size, out[len(head) :])
    return out


_PEEK = 4096
_DEFLATED_BYTES = DEFLATED.encode()
_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"


def _may_be_deflated(raw: bytes | bytearray | memoryview) -> bool:
    """False when the file meta, within its first 4 KB, does not name the deflated syntax.

    Every file passes here: a look at 4 KB is cheaper than walking the meta. A meta whose
    group length does not say it ends in those 4 KB is walked (dataset_offset) all the same.
    """
    head = bytes(raw[:_PEEK])
    if _DEFLATED_BYTES in head:
        return True
    pos = 132 if head[128:132] == b"DICM" else 0
    if head[pos : pos + 2] != b"\x02\x00":
        return False  # no file meta: the syntax is guessed, never deflated
    if head[pos : pos + 8] == _GROUP_LENGTH and len(head) >= pos + 12:
        return pos + 12 + int.from_bytes(head[pos + 8 : pos + 12], "little") > _PEEK
    return True


def _explicit_meta(meta: memoryview) -> bytes:
    """File meta elements with the transfer syntax set to Explicit VR LE, group length fixed."""
    elements: list[bytes] = []
    at = 0
    while at + 8 <= len(meta):
        tag = struct.unpack_from("<I", meta, at)[0]
        tag = (tag & 0xFFFF) << 16 | tag >> 16  # (group, element) as read little-endian
        vr = bytes(meta[at + 4 : at + 6])
        if vr in LONG_VR_BYTES:
            end = at + 12 + struct.unpack_from("<I", meta, at + 8)[0]
        else:
            end = at + 8 + struct.unpack_from("<H", meta, at + 6)[0]
        if tag == 0x00020010:
            elements.append(
                meta[at : at + 6].tobytes()
                + struct.pack("<H", len(_EXPLICIT_LE_UID))
                + _EXPLICIT_LE_UID
            )
        elif tag != 0x00020000:
            elements.append(meta[at:end].tobytes())
        at = end
    body = b"".join(elements)
    group_length = b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<I", len(body))
    return group_length + body


class _Over(Exception):
    """The inflated stream passed its limit."""


def _inflate_into(view: memoryview, pos: int, limit: int, out: memoryview | None) -> int:
    """Inflate the raw deflate stream at ``pos`` (into ``out`` when given); its length.

    StructureError unless it inflates exactly; _Over past ``limit`` bytes.
    """
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    got, adler, crc = 0, 1, 0
    at = pos
    try:
        while not d.eof:
            if d.unconsumed_tail:
                chunk: bytes | memoryview = d.unconsumed_tail
            elif at < len(view):
                chunk = view[at : at + _IN_STEP]
                at += len(chunk)
            else:
                chunk = b""
            piece = d.decompress(chunk, _OUT_STEP)
            if not piece and not chunk:
                break  # all input given, nothing more comes: cut short
            if got + len(piece) > limit:
                raise _Over
            if out is not None:
                out[got : got + len(piece)] = piece
            else:
                adler, crc = zlib.adler32(piece, adler), zlib.crc32(piece, crc)
            got += len(piece)
    except zlib.error:
        raise _damaged("deflated data set does not inflate", pos) from None
    if not d.eof:
        raise _damaged("deflated data set is cut short", pos)
    if out is None:
        unused, rest = d.unused_data, view[at:]
        if not _trailer_ok(unused, rest, got, adler, crc):
            raise _damaged("bytes after the deflated data set", at - len(unused))
    return got


def _trailer_ok(unused: bytes, rest: memoryview, size: int, adler: int, crc: int) -> bool:
    """Whether the bytes after the stream are zero padding, or its own trailer then zeros.

    Some writers append the zlib (Adler-32) or gzip (CRC-32, size) trailer: no payload.
    """
    head = (unused + rest[:12].tobytes())[:12]
    trailers = (
        b"",
        adler.to_bytes(4, "big"),
        crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"),
    )
    return any(head.startswith(t) and _zeros_from(unused, rest, len(t)) for t in trailers)


def _zeros_from(unused: bytes, rest: memoryview, start: int) -> bool:
    """Whether every byte of unused + rest from ``start`` on is zero (1 MB at a time)."""
    if unused[start:].strip(b"\x00"):
        return False
    at = max(0, start - len(unused))
    while at < len(rest):
        if rest[at : at + _IN_STEP].tobytes().strip(b"\x00"):
            return False
        at += _IN_STEP
    return True


def _damaged(why: str, at: int) -> StructureError:
    """A StructureError worded as the strict check words it."""
    return StructureError(f"structurally damaged: {why} at byte {at}")
