"""Part 10 files in and out: a strict-enough reader with clear errors, and the writers.

Reading and writing live here, below the engine, so that every layer that touches files
(engine, run, net, verify's tests) shares one reader and one writer.
"""

from __future__ import annotations

import io
import os

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset

from medveil.dicom.peek import peek, peek_int
from medveil.dicom.pydicom_private import elements
from medveil.dicom.strict import StructureError, check_structure
from medveil.dicom.writer import fast_write_parts, prepare_meta
from medveil.errors import DicomInputError


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
        end = (
            len(self._view) if size is None or size < 0 else min(self._pos + size, len(self._view))
        )
        chunk = self._view[self._pos : end]
        self._pos = end
        return chunk if len(chunk) >= 65536 else bytes(chunk)

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
