"""PixelCleaner on encapsulated syntaxes: decode, mask, re-encode losslessly or go native."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from medveil.errors import QuarantineError
from medveil.pixels.cleaner import LOSSY_METHOD, PixelCleaner
from medveil.pixels.rules import RuleSet
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from .helpers import RULES_TOML, burned_image, expected_after, make_dataset

pytest.importorskip("pylibjpeg")
pytest.importorskip("jpeg_ls")
pytest.importorskip("openjpeg")

RULES = RuleSet.loads(RULES_TOML)
# Rule for pydicom's bundled files: their Manufacturer varies, so match on the rows.
WHOLE_TOP = RuleSet.loads(
    "[[rule]]\nid='top'\nmatch = { attr = 'Rows', present = true }\n"
    "regions = [{ rows = [0, 10], cols = [0, 40] }]\n"
)


def _frames(ds: pydicom.Dataset, **kw: object) -> np.ndarray:
    arr = pixel_array(ds, **kw)
    return arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[None]


LOSSLESS = [
    (RLELossless, "uint8", 8, 1),
    (RLELossless, "int16", 12, 1),
    (RLELossless, "uint8", 8, 3),
    (RLELossless, "uint16", 16, 3),
    (JPEGLSLossless, "uint8", 8, 1),
    (JPEGLSLossless, "uint16", 12, 1),
    (JPEGLSLossless, "uint8", 8, 3),
    (JPEG2000Lossless, "uint8", 8, 1),
    (JPEG2000Lossless, "uint16", 16, 1),
    (JPEG2000Lossless, "int16", 12, 1),
    (JPEG2000Lossless, "uint8", 8, 3),
]


@pytest.mark.parametrize(("ts", "dtype", "bits", "samples"), LOSSLESS)
def test_lossless_round_trip_to_the_same_syntax(
    ts: str, dtype: str, bits: int, samples: int
) -> None:
    img = burned_image(frames=3, dtype=dtype, bits_stored=bits, samples=samples, rows=48, cols=96)
    ds = make_dataset(img, bits_stored=bits)
    ds.compress(ts, generate_instance_uid=False)
    np.testing.assert_array_equal(_frames(ds), img)  # the input really holds the text
    uid = ds.SOPInstanceUID
    report = PixelCleaner(RULES).clean(ds)
    assert report.reencoded and report.transfer_syntax_in == report.transfer_syntax_out == ts
    assert ds.file_meta.TransferSyntaxUID == ts and ds.SOPInstanceUID == uid
    assert ds["PixelData"].is_undefined_length  # still encapsulated
    np.testing.assert_array_equal(_frames(ds), expected_after(img))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    again = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    assert again.file_meta.TransferSyntaxUID == ts
    np.testing.assert_array_equal(_frames(again), expected_after(img))


def test_lossless_without_encoder_goes_native(monkeypatch: pytest.MonkeyPatch) -> None:
    import medveil.pixels.cleaner as px

    monkeypatch.setitem(px.REENCODERS, JPEGLSLossless, "no-such-plugin")
    img = burned_image(frames=2, dtype="uint16", bits_stored=12)
    ds = make_dataset(img, bits_stored=12)
    ds.compress(JPEGLSLossless, generate_instance_uid=False)
    report = PixelCleaner(RULES).clean(ds)
    assert report.transfer_syntax_out == ExplicitVRLittleEndian and report.reencoded
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not ds["PixelData"].is_undefined_length
    assert "LossyImageCompression" not in ds
    np.testing.assert_array_equal(_frames(ds), expected_after(img))


@pytest.mark.parametrize("ts", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_without_masking_is_left_byte_identical(ts: str) -> None:
    img = burned_image(dtype="uint16", bits_stored=12)
    ds = make_dataset(img, bits_stored=12, manufacturer="Other")
    ds.compress(ts, generate_instance_uid=False)
    before = ds.PixelData
    report = PixelCleaner(RULES).clean(ds)
    assert ds.PixelData is before and not report.modified
    # RLE is decoded to look for hidden bits (none here); JPEG-family streams declare a
    # 12-bit depth, so they cannot have any and are not decoded.
    assert report.notes == []


def test_rle_hidden_bits_found_without_any_rule() -> None:
    img = burned_image(dtype="uint16", bits_stored=12)
    ds = make_dataset(img | np.uint16(0x2000), bits_stored=12, manufacturer="Other")
    ds.BitsStored, ds.HighBit = 16, 15
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.BitsStored, ds.HighBit = 12, 11
    report = PixelCleaner(RULES).clean(ds)
    assert report.hidden_bits_cleared and report.regions == []
    assert report.transfer_syntax_out == RLELossless
    np.testing.assert_array_equal(_frames(ds, correct_unused_bits=False), img)


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "ISO_10918_1"),  # JPEG baseline, YBR_FULL
        ("JPGExtended.dcm", "ISO_10918_1"),  # JPEG extended, 12-bit
        ("JPEG2000.dcm", None),  # JPEG 2000 (lossy allowed), signed 16-bit
        ("JPEGLSNearLossless_16.dcm", None),  # JPEG-LS near-lossless
    ],
)
def test_lossy_sources_go_native_and_keep_lossy_flag(name: str, method: str | None) -> None:
    path = get_testdata_file(name)
    assert path is not None
    ds = pydicom.dcmread(path)
    lossy_flag = ds.get("LossyImageCompression")
    src_ts = ds.file_meta.TransferSyntaxUID
    before = _frames(ds).copy()  # pydicom's own decode, converted to RGB if YBR
    report = PixelCleaner(WHOLE_TOP).clean(ds)
    assert report.transfer_syntax_in == src_ts
    assert report.transfer_syntax_out == ExplicitVRLittleEndian
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    after = _frames(ds)
    want = before.copy()
    want[:, 0:10, 0:40] = 0
    np.testing.assert_array_equal(after, want)
    if before.ndim == 4:
        assert ds.PhotometricInterpretation == "RGB"
    if method:  # always-lossy syntaxes are marked, with the method
        assert ds.LossyImageCompression == "01"
        assert ds.LossyImageCompressionMethod == method
    else:
        assert ds.get("LossyImageCompression") == lossy_flag


def test_undecodable_pixels_quarantine_when_masking_is_required() -> None:
    img = burned_image(dtype="uint8")
    ds = make_dataset(img)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8 not a jpeg at all \xff\xd9"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(QuarantineError, match="cannot decode"):
        PixelCleaner(RULES).clean(ds)


def test_compressed_hidden_bits_cleared_when_decoded() -> None:
    img = burned_image(frames=2, dtype="uint16", bits_stored=12)
    dirty = img | np.uint16(0x4000)
    ds = make_dataset(dirty, bits_stored=12)
    # pydicom refuses to encode values above BitsStored; say 16 while compressing.
    ds.BitsStored, ds.HighBit = 16, 15
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.BitsStored, ds.HighBit = 12, 11
    report = PixelCleaner(RULES).clean(ds)
    assert report.hidden_bits_cleared and report.transfer_syntax_out == RLELossless
    np.testing.assert_array_equal(_frames(ds), expected_after(img))


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "SC_rgb_rle_2frame.dcm",
        "SC_rgb_rle_32bit_2frame.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ],
)
def test_bundled_lossless_files_round_trip(name: str) -> None:
    path = get_testdata_file(name)
    assert path is not None
    ds = pydicom.dcmread(path)
    src_ts = ds.file_meta.TransferSyntaxUID
    before = _frames(ds, as_rgb=False).copy()
    report = PixelCleaner(WHOLE_TOP).clean(ds)
    assert report.reencoded
    # Re-encoded to the same syntax, or (with a note saying why) to Explicit VR Little Endian.
    assert report.transfer_syntax_out in (src_ts, ExplicitVRLittleEndian)
    assert (report.transfer_syntax_out == src_ts) or report.notes
    assert ds.file_meta.TransferSyntaxUID == report.transfer_syntax_out
    want = before.copy()
    want[:, 0:10, 0:40] = 0
    np.testing.assert_array_equal(_frames(ds, as_rgb=False), want)


BUNDLED_COMPRESSED = [
    "693_J2KI.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "JPEG2000.dcm",
    "JPEGLSNearLossless_08.dcm",
    "JPGExtended.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_gdcm_KY.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1: no encoder, goes native
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "examples_jpeg2k.dcm",
    "examples_ybr_color.dcm",  # 30 frames of YBR_FULL_422 JPEG
    "rtdose_rle.dcm",  # 32-bit RLE: no 32-bit RLE encoder, goes native
]


@pytest.mark.parametrize("name", BUNDLED_COMPRESSED)
def test_every_bundled_compressed_file_masks_exactly(name: str) -> None:
    path = get_testdata_file(name)
    assert path is not None
    ds = pydicom.dcmread(path)
    lossy = ds.file_meta.TransferSyntaxUID in LOSSY_METHOD
    before = _frames(ds, as_rgb=lossy).copy()
    report = PixelCleaner(WHOLE_TOP).clean(ds)
    assert report.reencoded and report.regions
    assert report.transfer_syntax_out in (report.transfer_syntax_in, ExplicitVRLittleEndian)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    again = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    want = before.copy()
    want[:, 0:10, 0:40] = 0
    np.testing.assert_array_equal(_frames(again, as_rgb=lossy), want)


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"])
def test_bundled_broken_files_quarantine(name: str) -> None:
    path = get_testdata_file(name)
    assert path is not None
    with pytest.raises(QuarantineError, match="cannot decode"):
        PixelCleaner(WHOLE_TOP).clean(pydicom.dcmread(path))


def test_hidden_bits_kept_when_clean_graphics_is_off() -> None:
    # pydicom's encoders refuse values above BitsStored, so the file goes out native, with
    # every stored bit outside the rectangles kept (Clean Graphics is the policy's to ask).
    img = burned_image(frames=2, dtype="uint16", bits_stored=12)
    dirty = img | np.uint16(0x4000)
    ds = make_dataset(dirty, bits_stored=12)
    ds.BitsStored, ds.HighBit = 16, 15
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.BitsStored, ds.HighBit = 12, 11
    report = PixelCleaner(RULES, clean_graphics=False).clean(ds)
    assert not report.hidden_bits_cleared
    assert report.transfer_syntax_out == ExplicitVRLittleEndian and "re-encode" in report.notes[0]
    out = np.frombuffer(ds.PixelData, dtype="<u2").reshape(dirty.shape)
    np.testing.assert_array_equal(out, expected_after(dirty))


def test_video_syntax_with_a_rule_quarantines() -> None:
    from pydicom.uid import MPEG4HP41

    ds = make_dataset(burned_image(dtype="uint8", samples=3), sop_class=VIDEO_ENDOSCOPIC)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3 not really mpeg"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(QuarantineError, match="cannot decode MPEG-4"):
        PixelCleaner(RULES).clean(ds)


VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
