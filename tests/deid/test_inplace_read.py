"""Reading a dataset in place (the archive's read buffer): only native pixels stay views.

The Dataset engine reads a bytearray without copying it, so that Pixel Data is a view the
pixel cleaner masks in place. Any other large value given to pydicom as a view broke code
that expects bytes: an encapsulated JPEG 2000 file was quarantined with an AttributeError
from pydicom's writer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.dicom.io import read_dataset
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

SECRET = bytes(range(32))


def _file(tmp_path: Path, implicit: bool) -> bytes:
    """A CT with 128 KiB of native pixels, a 100 KB UT text and a 70 KB private OB."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "CT"
    ds.TextValue = "word " * 20_000
    ds.add_new(0x00091010, "LO", "ACME 1.0")
    ds.add_new(0x00091011, "LO", "ACME 1.0")
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091012, "OB", bytes(70_000))
    ds.Rows, ds.Columns = 256, 256
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.arange(256 * 256, dtype="<u2").tobytes()
    path = tmp_path / "f.dcm"
    ds.save_as(path, implicit_vr=implicit, enforce_file_format=True)
    return path.read_bytes()


@pytest.mark.parametrize("implicit", [False, True])
def test_only_native_pixel_data_is_a_view(tmp_path: Path, implicit: bool) -> None:
    """Pixel Data is a view of the caller's buffer; large text and blobs are bytes."""
    buf = bytearray(_file(tmp_path, implicit))
    ds = read_dataset(buf, "f.dcm", strict=False)
    pixels = ds.get_item(0x7FE00010).value
    assert isinstance(pixels, memoryview)
    assert pixels.obj is buf  # in place: no copy of the pixels
    assert isinstance(ds.get_item(0x0040A160).value, bytes)
    assert isinstance(ds.get_item(0x00091012).value, bytes)
    assert str(ds.TextValue).startswith("word word")


def test_encapsulated_file_on_the_dataset_road_is_released(tmp_path: Path) -> None:
    """pydicom's JPEG 2000 file with two character sets (the Dataset engine's road)."""
    data = Path(get_testdata_file("J2K_pixelrep_mismatch.dcm", download=False)).read_bytes()  # type: ignore[arg-type]
    engine = Deidentifier(Policy(), SECRET)
    result = clean_instance(engine, bytearray(data), "j2k.dcm")
    assert result.status == "written", result.reason
    assert result.engine == "dataset"
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(b"".join(bytes(p) for p in result.parts)))
    original = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert out.PixelData == original.PixelData


def test_huge_uid_written_as_un_is_remapped_the_same_way_each_time() -> None:
    """A 70 KB Study UID written as UN: one remapped UID, the same bytes on every run.

    Given to the engine as a view of the buffer, the value was remapped from the view's
    repr (its memory address), so every run (and every --resume) wrote other bytes.
    """
    import io

    from medveil.policy.presets import load_policy

    ds = pydicom.dcmread(get_testdata_file("rtdose_rle_1frame.dcm", download=False))
    ds.add_new(0x0020000D, "UN", ("1.2." + "3" * 69996).encode())
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    policy = load_policy("safe-harbor")
    written = set()
    for _ in range(3):
        result = clean_instance(Deidentifier(policy, SECRET), bytearray(data), "x.dcm")
        assert result.status == "written", result.reason
        written.add(b"".join(bytes(p) for p in result.parts))
    assert len(written) == 1
