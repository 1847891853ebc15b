"""check_pixel_length: the native Pixel Data length a header needs, subsampled YBR included.

``SC_ybr_full_422_uncompressed.dcm`` (pydicom's) was quarantined as truncated: 4:2:2 YBR
stores Y Y Cb Cr per pair of pixels, two samples a pixel, not three (PS3.3 C.7.6.3.1.2).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from medveil.cli.main import main
from medveil.dicom.io import check_pixel_length, read_dataset
from medveil.errors import DicomInputError
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

YBR_422 = get_testdata_file("SC_ybr_full_422_uncompressed.dcm")


def _truncated(path: str, keep: int) -> bytes:
    """The file with its (last) Pixel Data value cut to ``keep`` bytes, lengths consistent."""
    data = Path(path).read_bytes()
    at = data.rfind(b"\xe0\x7f\x10\x00")
    assert data[at + 4 : at + 6] in (b"OB", b"OW")
    return data[: at + 8] + struct.pack("<I", keep) + data[at + 12 : at + 12 + keep]


def test_bundled_ybr_full_422_is_not_truncated() -> None:
    ds = read_dataset(YBR_422, "ybr.dcm")
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and ds.SamplesPerPixel == 3
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 2  # what the header needs


@pytest.mark.parametrize("keep", [18000, 19998])
def test_truncated_ybr_full_422_is_refused(keep: int) -> None:
    with pytest.raises(DicomInputError, match=f"holds {keep} bytes, the header needs 20000"):
        read_dataset(bytearray(_truncated(YBR_422, keep)), "cut.dcm")


def _native(photometric: str, samples: int, nbytes: int, frames: int = 1) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 4, 6, samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = bytes(nbytes)
    return ds


# 4 x 6 pixels, 8 bits: samples stored per pixel as PS3.3 C.7.6.3.1.2 lays them out.
NEEDS = [
    ("MONOCHROME2", 1, 24),
    ("RGB", 3, 72),
    ("YBR_FULL", 3, 72),
    ("YBR_FULL_422", 3, 48),
    ("YBR_PARTIAL_422", 3, 48),
    ("YBR_PARTIAL_420", 3, 36),
]


@pytest.mark.parametrize(("photometric", "samples", "needs"), NEEDS)
@pytest.mark.parametrize("frames", [1, 3])
def test_expected_length_by_photometric(
    photometric: str, samples: int, needs: int, frames: int
) -> None:
    check_pixel_length(_native(photometric, samples, needs * frames, frames), "ok.dcm")
    short = _native(photometric, samples, needs * frames - 2, frames)
    with pytest.raises(DicomInputError, match=f"the header needs {needs * frames}"):
        check_pixel_length(short, "short.dcm")


def test_through_the_cli(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "ybr.dcm").write_bytes(Path(YBR_422).read_bytes())
    (src / "cut.dcm").write_bytes(_truncated(YBR_422, 18000))
    key = tmp_path / "k"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    argv = ["deid", str(src), str(out), "--secret-file", str(key), "--workers", "1"]
    assert main([*argv, "--quiet", "--no-fsync"]) == 1  # the cut copy is quarantined
    (written,) = [p for p in out.rglob("*.dcm") if ".medveil" not in p.parts]
    ds = pydicom.dcmread(written)
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and len(ds.PixelData) == 20000
    records = "".join(p.read_text() for p in (out / ".medveil").glob("*.jsonl"))
    assert "truncated: pixel data holds 18000 bytes, the header needs 20000" in records
