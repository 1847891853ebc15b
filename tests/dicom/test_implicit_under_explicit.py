"""A data set encoded in Implicit VR under an Explicit VR transfer syntax is written right.

pydicom reads such a file (``SC_rgb_jpeg.dcm`` is one) with a warning; its elements come
back without VRs, and both writers failed with "TypeError: encoding without a string
argument", which quarantined the file with a reason no user can act on.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.cli.main import main
from medveil.dicom.io import read_dataset, write_dataset, write_fast_or_generic
from medveil.dicom.writer import fast_write_parts
from medveil.errors import DicomInputError
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset as pydicom_write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SC_RGB_JPEG = get_testdata_file("SC_rgb_jpeg.dcm")


def _read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Expected explicit VR, but found implicit VR"
        return read_dataset(bytearray(data), "in.dcm")


def _reread(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the output must be what its syntax says
        return pydicom.dcmread(io.BytesIO(data))


def test_bundled_file_is_written_in_explicit_vr() -> None:
    src = Path(SC_RGB_JPEG).read_bytes()
    out = write_dataset(_read(src))
    parts, _ = write_fast_or_generic(_read(src))
    assert b"".join(parts) == out  # the two writers agree
    ds = _reread(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orig = pydicom.dcmread(SC_RGB_JPEG)
    assert ds.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
    assert ds["ImageType"].VR == "CS" and ds["PixelData"].VR == "OB"
    assert ds.PixelData == orig.PixelData
    np.testing.assert_array_equal(ds.pixel_array, orig.pixel_array)
    for elem in orig:
        if elem.tag != 0x7FE00010:
            assert ds[elem.tag].value == elem.value


def _implicit_under_explicit() -> bytes:
    """A CT whose data set (a nested sequence, an 'US or SS' element) is implicit VR,
    under a file meta that says Explicit VR Little Endian."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientID = "CT", "IMPL01"
    ds.PixelRepresentation = 1
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "T-1", "99X", "thing"
    item = Dataset()
    item.ConceptNameCodeSequence = Sequence([inner])
    item.SmallestImagePixelValue = -5  # 'US or SS': SS by PixelRepresentation
    ds.ContentSequence = Sequence([item])
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelData = np.arange(-8, 8, dtype=np.int16).tobytes()
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    pydicom_write_dataset(body, ds)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
    )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    pydicom.filewriter.write_file_meta_info(head, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + head.getvalue() + body.getvalue()


def test_nested_implicit_elements_get_their_vrs() -> None:
    out = _reread(write_dataset(_read(_implicit_under_explicit())))
    item = out.ContentSequence[0]
    assert item["SmallestImagePixelValue"].VR == "SS" and item.SmallestImagePixelValue == -5
    assert item.ConceptNameCodeSequence[0]["CodeMeaning"].VR == "LO"
    assert out["PixelData"].VR == "OW"
    np.testing.assert_array_equal(out.pixel_array.ravel(), np.arange(-8, 8))


def test_fast_writer_refuses_elements_without_vr() -> None:
    # Without prepare_meta the fast writer must hand over, not crash.
    with pytest.raises(DicomInputError, match="without a VR"):
        fast_write_parts(_read(_implicit_under_explicit()))


@pytest.mark.parametrize("make", [lambda: Path(SC_RGB_JPEG).read_bytes(), _implicit_under_explicit])
def test_released_through_the_cli(tmp_path: Path, make: object) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "f.dcm").write_bytes(make())  # type: ignore[operator]
    key = tmp_path / "k"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    argv = ["deid", str(src), str(out), "--secret-file", str(key), "--workers", "1"]
    assert main([*argv, "--quiet", "--no-fsync"]) == 0
    (written,) = [p for p in out.rglob("*.dcm") if ".medveil" not in p.parts]
    ds = _reread(written.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orig = pydicom.dcmread(src / "f.dcm")
    # Screened (SC) or not (CT), nothing is masked: same syntax, same pixels.
    assert ds.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(ds.pixel_array, orig.pixel_array)
    assert ds.PatientID != orig.PatientID or not orig.PatientID
