"""check_pixel_length: the native Pixel Data length a header needs, subsampled YBR included.

``SC_ybr_full_422_uncompressed.dcm`` (pydicom's) was quarantined as truncated: 4:2:2 YBR
stores Y Y Cb Cr per pair of pixels, two samples a pixel, not three (PS3.3 C.7.6.3.1.2).
"""

from __future__ import annotations

import io
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


# -- bytes beyond the image (issue 18, F2) -----------------------------------------------------

SECRET = bytes(range(32))
CANARY = "Qwzvrt^Jkplmn QZX908172 19610713"


def _file(ds: Dataset) -> bytes:
    meta = ds.file_meta
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "CT"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Qwzvrt^Jkplmn", "QZX908172", "19610713"
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 7, 0
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _leaks(data: bytes) -> bool:
    words = ("Qwzvrt", "Jkplmn", "QZX908172", "19610713")
    return any(w.encode(c) in data for w in words for c in ("ascii", "utf-16-le"))


def _clean(data: bytes) -> tuple[str, str, bytes]:
    from medveil.engine.dataset import Deidentifier
    from medveil.engine.instance import clean_instance
    from medveil.policy.schema import Policy

    result = clean_instance(Deidentifier(Policy.default(), SECRET), data, "t.dcm")
    return result.status, result.reason, result.data if result.status == "written" else b""


@pytest.mark.parametrize("codec", ["ascii", "utf-16-le"])
@pytest.mark.parametrize(("photometric", "samples", "needs"), NEEDS)
def test_text_beyond_a_native_image_is_quarantined(
    codec: str, photometric: str, samples: int, needs: int
) -> None:
    extra = CANARY.encode(codec)
    data = _file(_native(photometric, samples, needs + len(extra) + len(extra) % 2))
    # The planted bytes go after the image (the value was zeros of the full length).
    at = data.rindex(bytes(needs + len(extra)))
    data = data[: at + needs] + extra + data[at + needs + len(extra) :]
    status, reason, _ = _clean(data)
    assert status == "quarantined"
    assert f"Pixel Data holds {len(extra) + len(extra) % 2} bytes beyond the image" in reason


def test_zero_padding_after_the_image_is_cut_and_released() -> None:
    data = _file(_native("MONOCHROME2", 1, 24 + 128))
    status, reason, out = _clean(data)
    assert status == "written", reason
    assert len(pydicom.dcmread(io.BytesIO(out)).PixelData) == 24


def test_a_pad_byte_to_an_even_length_is_not_excess() -> None:
    ds = _native("MONOCHROME2", 1, 0)
    ds.Rows, ds.Columns = 3, 3
    ds.PixelData = bytes(9) + b"\xff"  # nine pixels and one pad byte (of any value)
    status, reason, out = _clean(_file(ds))
    assert status == "written", reason
    assert len(pydicom.dcmread(io.BytesIO(out)).PixelData) == 10


@pytest.mark.filterwarnings("ignore:The pixel data is 8320 bytes long")
def test_bundled_padded_file_is_released_without_its_padding() -> None:
    path = get_testdata_file("MR_small_padded.dcm")
    ds = pydicom.dcmread(path)
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 2 + 128  # zeros after the image
    status, reason, out = _clean(Path(path).read_bytes())
    assert status == "written", reason
    back = pydicom.dcmread(io.BytesIO(out))
    assert len(back.PixelData) == ds.Rows * ds.Columns * 2
    assert (back.pixel_array == ds.pixel_array).all()


def test_float_pixel_data_beyond_the_image_or_holding_identity_is_quarantined() -> None:
    ds = _native("MONOCHROME2", 1, 0)
    del ds.PixelData
    ds.Rows, ds.Columns, ds.BitsAllocated = 2, 2, 32
    ds.add_new(0x7FE00008, "OF", bytes(16) + CANARY.encode()[:16])
    status, reason, _ = _clean(_file(ds))
    assert status == "quarantined" and "Float Pixel Data holds 16 bytes beyond" in reason
    ds[0x7FE00008].value = CANARY.encode()[:16]  # the "samples" are the text
    status, reason, _ = _clean(_file(ds))
    assert status == "quarantined" and "identifying value" in reason
    ds[0x7FE00008].value = struct.pack("<4f", 0.5, 1.5, -2.0, 3.25)
    status, reason, out = _clean(_file(ds))
    assert status == "written", reason
    assert not _leaks(out)


def test_expected_length_agrees_with_the_truncation_check() -> None:
    from medveil.dicom.pixelbytes import expected_length

    for photometric, samples, needs in NEEDS:
        for frames in (1, 3):
            got = expected_length(4, 6, samples=samples, frames=frames, photometric=photometric)
            assert got == needs * frames
    assert expected_length(3, 3, bits_allocated=1) == 2  # nine bits, packed
    assert expected_length(4, 6, bits_allocated=16, frames=2) == 96


def test_strict_check_names_the_excess_for_every_policy() -> None:
    from medveil.dicom.strict import StructureError, check_structure

    data = _file(_native("MONOCHROME2", 1, 24 + 40))
    check_structure(data)  # zeros: padding
    at = data.rindex(bytes(64))
    bad = data[: at + 24] + CANARY.encode()[:40].ljust(40, b"!") + data[at + 64 :]
    with pytest.raises(StructureError, match="Pixel Data holds 40 bytes beyond the image"):
        check_structure(bad)
