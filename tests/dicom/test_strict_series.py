"""The strict check's per-structure plan of pixel rows: each file still judged on its bytes.

_check_pixel_lengths finds the top-level image attribute and pixel rows once per row
structure (tags and depths). A second file of the same structure with bytes beyond its
image, or other image attributes, must get the verdict a check with no plan kept gives.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from medveil.dicom import strict
from medveil.dicom.strict import StructureError, check_structure_scan
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.10.999"


def _file(k: int, rows: int = 4, tail: bytes = b"") -> bytes:
    """Slice k: 4 x 6 x 8-bit pixels, Pixel Data padded with ``tail`` (same length)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}.{k}"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, 6, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.PixelData = bytes([k % 251 + 1]) * (rows * 6) + tail
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _verdict(data: bytes) -> str:
    try:
        check_structure_scan(data)
    except StructureError as exc:
        return str(exc)
    return "ok"


@pytest.mark.parametrize(
    "second, fails",
    [
        (_file(2), False),
        (_file(2, tail=b"\x00\x00\x00\x00\x00\x00"), False),  # zeros beyond: padding
        (_file(2, tail=b"PHI..."), True),  # new in slice 2: text beyond the image
        (_file(2, rows=3, tail=b"\x00\x00\x00\x00\x00\x07"), True),  # other Rows, same rows
    ],
)
def test_second_file_of_a_structure(second: bytes, fails: bool) -> None:
    strict._PIXEL_PLANS.clear()
    first = _file(1, tail=b"\x00" * 6)
    assert _verdict(first) == "ok"
    kept = _verdict(second)  # the plan made for the first file
    strict._PIXEL_PLANS.clear()
    fresh = _verdict(second)
    assert kept == fresh
    assert ("beyond the image" in kept) is fails


def test_plan_follows_the_structure_not_the_tags_alone() -> None:
    # Two files whose rows carry the same tags but other nesting get their own plans.
    strict._PIXEL_PLANS.clear()
    a = _file(1)
    _verdict(a)
    ds = pydicom.dcmread(io.BytesIO(_file(3, tail=b"XY")))
    item = Dataset()
    item.Rows = 9  # a nested Rows: not the image's
    ds.ReferencedImageSequence = pydicom.sequence.Sequence([item])
    buf = io.BytesIO()
    ds.save_as(buf)
    data = buf.getvalue()
    kept = _verdict(data)
    strict._PIXEL_PLANS.clear()
    assert kept == _verdict(data)
    assert "beyond the image" in kept
