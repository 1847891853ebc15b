"""Clean Graphics on compressed pixels: bits above BitsStored in any codestream are cleared.

A JPEG-LS or JPEG 2000 codestream may be 16 bits deep under a 12-bit header and carry an
overlay in bit 15; it used to be released unchanged. The cleaner reads each frame's
declared depth (microseconds) and decodes only codestreams deeper than BitsStored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.cli.main import main
from medveil.errors import QuarantineError
from medveil.pixels import cleaner as px
from medveil.pixels.cleaner import PixelCleaner, codestream_depth
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, JPEGLSNearLossless, generate_uid

jpeg_ls = pytest.importorskip("jpeg_ls")
openjpeg_utils = pytest.importorskip("openjpeg.utils")

CT = "1.2.840.10008.5.1.4.1.1.2"


def _image(seed: int = 0, overlay: bool = True) -> np.ndarray:
    """A 64 x 64 12-bit image; with ``overlay``, a block of it has bit 15 set too."""
    arr = np.random.default_rng(seed).integers(0, 4096, (64, 64)).astype(np.uint16)
    if overlay:
        arr[4:8, 2:40] |= 0x8000
    return arr


def _encode(ts: str, arr: np.ndarray, bits: int = 16) -> bytes:
    """Encode one frame at ``bits`` depth, whatever the header will say."""
    if ts == JPEG2000Lossless:
        return bytes(openjpeg_utils.encode_array(arr, bits_stored=bits, use_mct=False))
    near = 2 if ts == JPEGLSNearLossless else 0
    if bits < 16:
        # CharLS takes the precision from the values: keep them within ``bits``.
        assert int(arr.max()) < (1 << bits)
    return bytes(jpeg_ls.encode_array(arr, lossy_error=near))


def _dataset(ts: str, frames: list[bytes], *, signed: bool = False) -> Dataset:
    """A 12-bit CT holding the encoded ``frames`` under ``ts``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CT
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer = "CT", "NOBODY"
    ds.PatientName, ds.PatientID = "HIGHBITS^PAT", "HB0001"
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = int(signed)
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames, has_bot=len(frames) > 1)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def _raw(ds: Dataset) -> np.ndarray:
    arr = pixel_array(ds, raw=True)
    return arr if arr.ndim == 3 else arr[None]


# -- reading the declared depth ---------------------------------------------------------------

BUNDLED = [
    ("693_J2KI.dcm", 16),  # signed 16-bit stream under BitsStored 14: decoded when checked
    ("J2K_pixelrep_mismatch.dcm", 14),  # unsigned 13-bit stream, signed header: one bit more
    ("JPEG-lossy.dcm", 12),
    ("JPGExtended.dcm", 12),
    ("JPEGLSNearLossless_16.dcm", 16),
    ("MR_small_jp2klossless.dcm", 16),
    ("MR_small_jpeg_ls_lossless.dcm", 16),
    ("SC_rgb_jpeg_gdcm.dcm", 8),  # JPEG lossless, 3 components
    ("SC_rgb_gdcm_KY.dcm", 8),
    ("GDCMJ2K_TextGBR.dcm", 8),  # a JP2 file in place of a codestream
    ("SC_rgb_jls_lossy_line.dcm", 8),
    ("JPEG2000-embedded-sequence-delimiter.dcm", None),  # Rsiz says Part 2: decode
]


@pytest.mark.parametrize(("name", "depth"), BUNDLED)
def test_declared_depth_of_bundled_files(name: str, depth: int | None) -> None:
    ds = pydicom.dcmread(get_testdata_file(name))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    signed = ds.get("PixelRepresentation", 0) == 1
    ts = ds.file_meta.TransferSyntaxUID
    assert codestream_depth(ts, ds.PixelData, frames, signed) == depth
    # The same from a memoryview (the raw-byte engine's Pixel Data).
    assert codestream_depth(ts, memoryview(ds.PixelData), frames, signed) == depth


def _jls_with_segment(segment: bytes) -> bytes:
    """A 12-bit JPEG-LS codestream with ``segment`` inserted just before its scan."""
    stream = _encode(JPEGLSLossless, _image(overlay=False), bits=12)
    sos = stream.index(b"\xff\xda")
    return stream[:sos] + segment + stream[sos:]


def test_jpeg_ls_extensions_that_widen_samples_are_not_trusted() -> None:
    plain = _encode(JPEGLSLossless, _image(overlay=False), bits=12)
    assert px._jpeg_depth(plain) == 12
    # LSE id 1 (preset) with MAXVAL 65535 bounds the samples by 16 bits, not 12.
    assert px._jpeg_depth(_jls_with_segment(b"\xff\xf8\x00\x0d\x01\xff\xff" + bytes(8))) == 16
    # LSE id 2 (mapping table): decoded samples are table entries, of any width.
    assert px._jpeg_depth(_jls_with_segment(b"\xff\xf8\x00\x06\x02\x01\x02\x00")) is None
    # A scan header selecting a mapping table (Tm != 0).
    sos = plain.index(b"\xff\xda")
    mapped = bytearray(plain)
    mapped[sos + 6] = 1  # Ls(2) Ns(1) C1(1) then Tm1
    assert px._jpeg_depth(bytes(mapped)) is None


def test_jpeg_lossless_frame_header_depth() -> None:
    # SOI, SOF3 (precision 16, 64 x 64, 1 component), SOS: a Process 14 header.
    sof3 = b"\xff\xc3\x00\x0b\x10\x00\x40\x00\x40\x01\x01\x11\x00"
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x01\x00\x00"
    assert px._jpeg_depth(b"\xff\xd8" + sof3 + sos + b"\x00" * 8) == 16
    assert px._jpeg_depth(b"\xff\xd8" + sos + sof3) is None  # scan before the frame header
    assert px._jpeg_depth(b"\xff\xd8" + sof3 + sof3 + sos) is None  # two frame headers


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 120), st.booleans())
def test_depth_readers_never_raise(noise: bytes, cut: int, signed: bool) -> None:
    jls = _encode(JPEGLSLossless, _image(overlay=False), bits=12)[:120]
    j2k = _encode(JPEG2000Lossless, _image(overlay=False), bits=12)[:120]
    for stream in (jls, j2k):
        damaged = stream[:cut] + noise + stream[cut + len(noise) :]
        for depth in (px._jpeg_depth(damaged), px._j2k_depth(damaged, signed)):
            assert depth is None or 0 <= depth <= 1 << 16


# -- the cleaner ---------------------------------------------------------------------------

LOSSLESS = [JPEGLSLossless, JPEG2000Lossless]


@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda t: pydicom.uid.UID(t).name)
def test_deep_codestream_overlay_bits_are_cleared_and_syntax_kept(ts: str) -> None:
    img = _image()
    ds = _dataset(ts, [_encode(ts, img)])
    assert _raw(ds).max() > 4095  # the input really hides bit 15
    report = PixelCleaner().clean(ds)
    assert report.hidden_bits_cleared and report.reencoded
    assert ds.file_meta.TransferSyntaxUID == ts == report.transfer_syntax_out
    np.testing.assert_array_equal(_raw(ds)[0], img & 0x0FFF)
    assert codestream_depth(ts, ds.PixelData, 1) == 12  # re-encoded at the header's depth


def test_lossy_deep_codestream_goes_native_and_is_cleared() -> None:
    img = _image()
    ds = _dataset(JPEGLSNearLossless, [_encode(JPEGLSNearLossless, img)])
    report = PixelCleaner().clean(ds)
    assert report.hidden_bits_cleared
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert _raw(ds).max() <= 4095


@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda t: pydicom.uid.UID(t).name)
def test_only_the_second_frame_is_deep(ts: str) -> None:
    shallow, deep = _image(1, overlay=False), _image(2)
    ds = _dataset(ts, [_encode(ts, shallow, bits=12), _encode(ts, deep)])
    report = PixelCleaner().clean(ds)
    assert report.hidden_bits_cleared
    out = _raw(ds)
    np.testing.assert_array_equal(out[0], shallow)
    np.testing.assert_array_equal(out[1], deep & 0x0FFF)


@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda t: pydicom.uid.UID(t).name)
def test_shallow_codestream_is_not_decoded(ts: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _dataset(ts, [_encode(ts, _image(overlay=False), bits=12)])
    before = ds.PixelData

    def no_decode(*_a: object, **_k: object) -> None:
        raise AssertionError("decoded although the codestream is 12 bits deep")

    monkeypatch.setattr(px, "_as_array", no_decode)
    report = PixelCleaner().clean(ds)
    assert ds.PixelData is before and not report.modified


def test_deep_codestream_without_high_bits_is_left_as_it_is() -> None:
    # A 16-bit codestream (some encoders follow BitsAllocated) whose values fit 12 bits:
    # decoded, found clean, and left byte-identical.
    ds = _dataset(JPEG2000Lossless, [_encode(JPEG2000Lossless, _image(overlay=False))])
    assert codestream_depth(JPEG2000Lossless, ds.PixelData, 1) == 16
    before = ds.PixelData
    assert not PixelCleaner().clean(ds).modified and ds.PixelData is before


def test_signed_j2k_overlay_bits_are_cleared() -> None:
    img = np.random.default_rng(3).integers(-2048, 2048, (64, 64)).astype(np.int16)
    dirty = img.copy()
    dirty[10:20, 10:20] |= np.int16(0x4000)  # positive samples gain bit 14
    dirty[30:40, 10:20] &= np.int16(0x3FFF)  # negative ones lose their sign copies
    stream = bytes(openjpeg_utils.encode_array(dirty, bits_stored=16, use_mct=False))
    ds = _dataset(JPEG2000Lossless, [stream], signed=True)
    report = PixelCleaner().clean(ds)
    assert report.hidden_bits_cleared
    out = _raw(ds)[0]
    assert out.min() >= -2048 and out.max() <= 2047
    np.testing.assert_array_equal(out, ((dirty.astype(np.int32) << 20) >> 20).astype(np.int16))


def test_deep_codestream_that_cannot_be_decoded_is_quarantined() -> None:
    stream = _encode(JPEG2000Lossless, _image())
    ds = _dataset(JPEG2000Lossless, [stream[:80]])  # the SIZ says 16 bits; the rest is gone
    assert codestream_depth(JPEG2000Lossless, ds.PixelData, 1) == 16
    with pytest.raises(QuarantineError, match=r"^Clean Graphics must check the bits above"):
        PixelCleaner().clean(ds)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("JPEG-lossy.dcm", "the data may be damaged or use a variant no installed decoder"),
        ("JPEG2000-embedded-sequence-delimiter.dcm", "the data may be damaged"),
    ],
)
def test_undecodable_reason_is_one_line_and_says_why_first(name: str, hint: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(name))
    with pytest.raises(QuarantineError) as err:
        PixelCleaner(pixel_text="detect").clean(ds)
    reason = str(err.value)
    assert "\n" not in reason
    ts = ds.file_meta.TransferSyntaxUID.name
    assert reason.startswith(f"text detection must look at the pixels, but cannot decode {ts}")
    assert hint in reason and "medveil[codecs]" not in reason


def test_no_decoder_at_all_is_said_so() -> None:
    ds = _dataset(JPEGLSLossless, [_encode(JPEGLSLossless, _image())])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264
    with pytest.raises(QuarantineError, match="no decoder for this transfer syntax"):
        PixelCleaner().clean(ds)


def test_high_bits_are_cleared_through_the_cli(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    kept = {}
    for k, ts in enumerate(LOSSLESS):
        img = _image(k)
        _dataset(ts, [_encode(ts, img)]).save_as(src / f"deep{k}.dcm", enforce_file_format=True)
        shallow = _dataset(ts, [_encode(ts, img & 0x0FFF, bits=12)])
        shallow.save_as(src / f"shallow{k}.dcm", enforce_file_format=True)
        kept[str(ts)] = img & 0x0FFF
    key = tmp_path / "k"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    argv = ["deid", str(src), str(out), "--secret-file", str(key), "--workers", "1"]
    assert main([*argv, "--quiet", "--no-fsync"]) == 0
    written = [p for p in out.rglob("*.dcm") if ".medveil" not in p.parts]
    assert len(written) == 4
    for path in written:
        ds = pydicom.dcmread(path)
        ts = ds.file_meta.TransferSyntaxUID
        assert ts in LOSSLESS  # lossless syntaxes are kept
        np.testing.assert_array_equal(_raw(ds)[0], kept[str(ts)])
