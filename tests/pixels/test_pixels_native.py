"""PixelCleaner on native transfer syntaxes: masks land on the right samples, nothing else moves."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil import mask_regions
from medveil.errors import QuarantineError
from medveil.pixels.cleaner import PixelCleaner, _Geometry, _splice
from medveil.pixels.rules import RuleSet
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .helpers import (
    RULE_RECTS,
    RULES_TOML,
    US_IMAGE,
    burned_image,
    expected_after,
    make_dataset,
)

RULES = RuleSet.loads(RULES_TOML)

CASES = [
    # (photometric, dtype, bits_stored, samples, planar)
    ("MONOCHROME2", "uint8", 8, 1, False),
    ("MONOCHROME2", "uint16", 12, 1, False),
    ("MONOCHROME2", "uint16", 16, 1, False),
    ("MONOCHROME1", "int16", 12, 1, False),
    ("MONOCHROME2", "int16", 16, 1, False),
    ("MONOCHROME2", "uint32", 32, 1, False),
    ("MONOCHROME2", "int32", 24, 1, False),
    ("RGB", "uint8", 8, 3, False),
    ("RGB", "uint8", 8, 3, True),
    ("RGB", "uint16", 16, 3, True),
    ("YBR_FULL", "uint8", 8, 3, False),
]
SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]


def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    """Decode with pydicom (an independent reader), always as (frames, rows, cols[, samples])."""
    arr = ds.pixel_array if ds.PhotometricInterpretation != "YBR_FULL" else _raw_ybr(ds)
    return arr if int(ds.get("NumberOfFrames", 1)) > 1 else arr[None]


def _raw_ybr(ds: pydicom.Dataset) -> np.ndarray:
    from pydicom.pixels import pixel_array

    return pixel_array(ds, as_rgb=False)


@pytest.mark.parametrize("ts", SYNTAXES, ids=["explicit-le", "implicit-le", "explicit-be"])
@pytest.mark.parametrize(("photometric", "dtype", "bits", "samples", "planar"), CASES)
@pytest.mark.parametrize("frames", [1, 3])
def test_rectangles_hold_only_fill_rest_byte_identical(
    ts: str, photometric: str, dtype: str, bits: int, samples: int, planar: bool, frames: int
) -> None:
    if ts == ImplicitVRLittleEndian and samples == 3 and dtype == "uint16":
        pytest.skip("covered by the explicit syntaxes")
    img = burned_image(frames=frames, samples=samples, dtype=dtype, bits_stored=bits, seed=bits)
    want = expected_after(img)
    # Text really was there, so the test can fail.
    assert (img[:, 0:12, 4:60] != 0).sum() > 50
    ds = make_dataset(
        img, photometric=photometric, bits_stored=bits, planar=planar, transfer_syntax=ts
    )
    report = PixelCleaner(RULES).clean(ds, source="synthetic")
    assert report.rules_fired == ["test-acme"]
    assert report.transfer_syntax_out == ts and not report.reencoded
    f1 = frames if frames < 3 else 3
    expected_regions = [(0, 12, 4, 60, 0, frames)]
    if frames > 1:
        expected_regions.append((40, 52, 70, 90, 1, f1))
    assert report.regions == expected_regions
    ref = make_dataset(
        want, photometric=photometric, bits_stored=bits, planar=planar, transfer_syntax=ts
    )
    assert ds.PixelData == ref.PixelData  # every byte outside the rectangles is unchanged
    np.testing.assert_array_equal(_pixels(ds), want)


def test_fill_value_from_rule() -> None:
    rules = RuleSet.loads(
        RULES_TOML.replace('description = "Acme', 'fill = 77\ndescription = "Acme')
    )
    img = burned_image(dtype="uint8")
    ds = make_dataset(img)
    PixelCleaner(rules).clean(ds)
    np.testing.assert_array_equal(_pixels(ds), expected_after(img, fill=77))


def test_fill_value_that_does_not_fit_quarantines() -> None:
    rules = RuleSet.loads(
        RULES_TOML.replace('description = "Acme', 'fill = 300\ndescription = "Acme')
    )
    ds = make_dataset(burned_image(dtype="uint8"))
    with pytest.raises(QuarantineError, match="fill value 300"):
        PixelCleaner(rules).clean(ds)


def test_ybr_full_422_masks_whole_pixel_pairs() -> None:
    rng = np.random.default_rng(3)
    frames, rows, cols = 2, 20, 30
    quads = rng.integers(1, 255, size=(frames, rows, cols // 2, 4), dtype=np.uint8)
    rules = RuleSet.loads(
        RULES_TOML.split("regions")[0] + "regions = [{ rows = [2, 9], cols = [5, 11] }]\n"
    )
    ds = make_dataset(
        np.zeros((frames, rows, cols, 3), np.uint8),
        photometric="YBR_FULL_422",
        pixel_bytes=quads.tobytes(),
    )
    report = PixelCleaner(rules).clean(ds)
    # Columns 5..10 live in pairs 2..5 (columns 4..11): all four bytes of each pair blanked.
    assert report.regions == [(2, 9, 4, 12, 0, 2)]
    want = quads.copy()
    want[:, 2:9, 2:6, :] = 0
    assert ds.PixelData == want.tobytes()


def test_odd_length_pad_byte_kept() -> None:
    img = burned_image(rows=63, cols=95, dtype="uint8")
    ds = make_dataset(img)
    assert len(ds.PixelData) == 63 * 95 + 1
    PixelCleaner(RULES).clean(ds)
    assert len(ds.PixelData) == 63 * 95 + 1
    np.testing.assert_array_equal(_pixels(ds), expected_after(img))


def test_default_rules_on_a_philips_iu22_frame() -> None:
    img = np.full((1, 480, 640, 3), 200, dtype=np.uint8)
    ds = make_dataset(img, modality="US", sop_class=US_IMAGE, manufacturer="Philips")
    ds.ManufacturerModelName = "iU22"
    ds.BurnedInAnnotation = "YES"
    report = PixelCleaner().clean(ds)
    assert report.rules_fired == ["ctp-21-us-philips"]
    out = _pixels(ds)
    assert (out[:, :47] == 0).all() and (out[:, 47:] == 200).all()


# -- fail closed --------------------------------------------------------------------------------


def test_burned_in_yes_without_rule_quarantines_and_rule_releases() -> None:
    img = burned_image()
    ds = make_dataset(img, manufacturer="Unknown Corp")
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(QuarantineError, match="BurnedInAnnotation is YES"):
        PixelCleaner(RULES).clean(ds)
    ds.Manufacturer = "ACME Medical"  # now a rule matches
    report = PixelCleaner(RULES).clean(ds)
    assert report.rules_fired == ["test-acme"]
    np.testing.assert_array_equal(_pixels(ds), expected_after(img))


@pytest.mark.parametrize(
    ("modality", "sop_class", "reason"),
    [
        ("US", US_IMAGE, "US Image"),
        ("OT", "1.2.840.10008.5.1.4.1.1.7", "Secondary Capture"),
        ("ES", "1.2.840.10008.5.1.4.1.1.77.1.1.1", "Video Endoscopic"),
        ("XC", "1.2.840.10008.5.1.4.1.1.2", "modality XC"),
    ],
)
def test_burned_in_classes_quarantine_unless_allowed(
    modality: str, sop_class: str, reason: str
) -> None:
    ds = make_dataset(
        burned_image(), manufacturer="Unknown Corp", modality=modality, sop_class=sop_class
    )
    with pytest.raises(QuarantineError, match=reason):
        PixelCleaner(RULES).clean(ds)
    before = ds.PixelData
    report = PixelCleaner(RULES, allow_unmatched_burned_in=True).clean(ds)
    assert report.rules_fired == [] and ds.PixelData is before


def test_burned_in_no_does_not_release_a_burned_in_class() -> None:
    ds = make_dataset(burned_image(), manufacturer="Unknown", modality="US", sop_class=US_IMAGE)
    ds.BurnedInAnnotation = "NO"
    with pytest.raises(QuarantineError, match="US Image"):
        PixelCleaner(RULES).clean(ds)


def test_rule_whose_rectangles_miss_the_image_does_not_release() -> None:
    ds = make_dataset(burned_image(rows=10, cols=3))  # rectangles start at column 4
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(QuarantineError, match="no pixel rule masks anything"):
        PixelCleaner(RULES).clean(ds)


def test_no_rule_no_hidden_bits_leaves_pixel_data_untouched() -> None:
    ds = make_dataset(burned_image(bits_stored=12), bits_stored=12, manufacturer="Other")
    before = ds.PixelData
    report = PixelCleaner(RULES).clean(ds)
    assert ds.PixelData is before
    assert not report.modified and report.regions == [] and not report.hidden_bits_cleared


def test_truncated_pixel_data_quarantines() -> None:
    ds = make_dataset(burned_image())
    ds.PixelData = ds.PixelData[:-100]
    with pytest.raises(QuarantineError, match="PixelData holds"):
        PixelCleaner(RULES).clean(ds)


def test_one_bit_pixels_cannot_be_masked() -> None:
    ds = make_dataset(burned_image(dtype="uint8"))
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    with pytest.raises(QuarantineError, match="1-bit"):
        PixelCleaner(RULES).clean(ds)


def test_no_pixel_data_is_a_no_op() -> None:
    ds = make_dataset(burned_image())
    del ds.PixelData
    ds.BurnedInAnnotation = "YES"
    report = PixelCleaner(RULES).clean(ds)
    assert report.rules_fired == ["test-acme"] and not report.modified


# -- Clean Graphics: overlays hidden above BitsStored -----------------------------------------


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize(
    ("dtype", "bits"), [("uint16", 12), ("int16", 12), ("uint8", 6), ("int32", 20)]
)
def test_high_bit_overlay_removed_low_bits_unchanged(ts: str, dtype: str, bits: int) -> None:
    img = burned_image(frames=2, dtype=dtype, bits_stored=bits, seed=7)
    dirty = img.copy()
    overlay_bit = np.array(1 << (bits + 1), dtype=np.int64).astype(dtype)
    dirty[:, 20:30, 10:50] |= overlay_bit  # a graphic plane hidden in an unused bit
    ds = make_dataset(dirty, bits_stored=bits, transfer_syntax=ts, manufacturer="Other")
    report = PixelCleaner(RULES).clean(ds)
    assert report.hidden_bits_cleared and report.regions == []
    clean = make_dataset(img, bits_stored=bits, transfer_syntax=ts)
    assert ds.PixelData == clean.PixelData
    # With Clean Graphics off, the file is left alone.
    ds2 = make_dataset(dirty, bits_stored=bits, transfer_syntax=ts, manufacturer="Other")
    before = ds2.PixelData
    assert not PixelCleaner(RULES, clean_graphics=False).clean(ds2).hidden_bits_cleared
    assert ds2.PixelData is before


def test_overlay_and_mask_together() -> None:
    img = burned_image(frames=3, dtype="uint16", bits_stored=10)
    dirty = img | np.uint16(0x8000)
    ds = make_dataset(dirty, bits_stored=10)
    report = PixelCleaner(RULES).clean(ds)
    assert report.hidden_bits_cleared and len(report.regions) == 2
    assert ds.PixelData == make_dataset(expected_after(img), bits_stored=10).PixelData


def test_high_bit_not_at_bits_stored_quarantines_only_for_clean_graphics() -> None:
    ds = make_dataset(burned_image(bits_stored=12), bits_stored=12, manufacturer="Other")
    ds.HighBit = 15
    with pytest.raises(QuarantineError, match="HighBit 15"):
        PixelCleaner(RULES).clean(ds)
    PixelCleaner(RULES, clean_graphics=False).clean(ds)


def test_rule_regions_constants_match_helper() -> None:
    assert RULES.rules[0].regions == tuple(RULE_RECTS)


# -- the byte-splicing path against the array kernels (differential, random layouts) ----------


@settings(max_examples=150, deadline=None)
@given(
    frames=st.integers(1, 3),
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    samples=st.sampled_from([1, 3]),
    planar=st.booleans(),
    dtype=st.sampled_from(["uint8", "int16", ">u2", "<i4", ">i4"]),
    raw_regions=st.lists(
        st.tuples(*(st.integers(0, 13) for _ in range(4)), st.integers(0, 3), st.integers(0, 3)),
        min_size=1,
        max_size=5,
    ),
    fills=st.lists(st.integers(0, 100), min_size=1, max_size=2),
)
def test_splice_equals_array_masking(
    frames: int,
    rows: int,
    cols: int,
    samples: int,
    planar: bool,
    dtype: str,
    raw_regions: list[tuple[int, ...]],
    fills: list[int],
) -> None:
    dt = np.dtype(dtype)
    geo = _Geometry(
        frames=frames,
        rows=rows,
        cols=cols,
        samples=samples,
        bits_allocated=dt.itemsize * 8,
        bits_stored=dt.itemsize * 8,
        high_bit=dt.itemsize * 8 - 1,
        signed=dt.kind == "i",
        planar=planar and samples > 1,
        photometric="RGB" if samples == 3 else "MONOCHROME2",
    )
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=geo.nbytes(), dtype=np.uint8).tobytes() + b"\x07"
    groups: dict[int, list] = {}
    for i, (a, b, c, d, e, f) in enumerate(raw_regions):
        reg = (min(a, b, rows), min(max(a, b), rows), min(c, d, cols), min(max(c, d), cols))
        reg += (min(e, f, frames), min(max(e, f), frames))
        if reg[0] < reg[1] and reg[2] < reg[3] and reg[4] < reg[5]:
            groups.setdefault(fills[i % len(fills)], []).append(reg)
    if not groups:
        return
    _, spliced = _splice(raw, groups, geo, dt)
    arr = np.frombuffer(raw, dtype=dt, count=geo.nbytes() // dt.itemsize)
    arr = arr.reshape(geo.shape()).astype(dt.newbyteorder("="))
    for fill, regs in groups.items():
        mask_regions(arr, regs, fill, planar=geo.planar)
    assert spliced == arr.astype(dt).tobytes() + b"\x07"


def test_splice_nested_and_overlapping_spans() -> None:
    geo = _Geometry(1, 1, 20, 1, 8, 8, 7, False, False, "MONOCHROME2")
    raw = bytes(range(1, 21))
    regs = [(0, 1, 0, 10, 0, 1), (0, 1, 2, 3, 0, 1), (0, 1, 5, 6, 0, 1), (0, 1, 9, 12, 0, 1)]
    _, out = _splice(raw, {0: regs}, geo, np.dtype("uint8"))
    assert out == bytes(12) + bytes(range(13, 21))


def test_deflated_syntax_round_trips_through_a_file(tmp_path) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    img = burned_image(frames=3, dtype="int16", bits_stored=12)
    ds = make_dataset(img, bits_stored=12, transfer_syntax=DeflatedExplicitVRLittleEndian)
    path = tmp_path / "d.dcm"
    ds.save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    report = PixelCleaner(RULES).clean(ds)
    assert report.transfer_syntax_out == DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    again = pydicom.dcmread(path)
    assert again.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(_pixels(again), expected_after(img))


@pytest.mark.parametrize(
    ("name", "big_endian"), [("MR_small_bigendian.dcm", True), ("MR_small.dcm", False)]
)
def test_dataset_without_file_meta_uses_its_read_encoding(name: str, big_endian: bool) -> None:
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(name))
    before = ds.pixel_array.copy()
    del ds.file_meta.TransferSyntaxUID
    ds.Manufacturer, ds.ManufacturerModelName = "ACME", "Veil 1"
    report = PixelCleaner(RULES).clean(ds)
    assert (report.transfer_syntax_in == ExplicitVRBigEndian) is big_endian
    dt = before.dtype.newbyteorder(">" if big_endian else "<")
    after = np.frombuffer(ds.PixelData, dtype=dt).reshape(before.shape)
    want = before.copy()
    want[0:12, 4:60] = 0
    np.testing.assert_array_equal(after, want)


@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small.dcm"])
def test_in_place_masking_of_either_byte_order(name: str, tmp_path) -> None:
    """Read in place (the archive's buffer), the pixels are masked in that very buffer.

    Big-endian samples are swapped to native order for the kernels and swapped back: the
    buffer ends up with the masked image in the file's byte order and nothing else moved.
    """
    from medveil.dicom.io import read_dataset
    from pydicom.data import get_testdata_file

    big = "bigendian" in name
    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    # Large enough (128 KiB) to be read as a view of the buffer.
    ds.Rows = ds.Columns = 256
    before = (np.arange(256 * 256, dtype=np.int64) * 7919 % 4000).astype(np.int16)
    before = before.reshape(256, 256)
    ds.PixelData = before.astype(">i2" if big else "<i2").tobytes()
    ds.Manufacturer, ds.ManufacturerModelName = "ACME", "Veil 1"
    path = tmp_path / "f.dcm"
    ds.save_as(path, little_endian=not big, implicit_vr=False)
    data = path.read_bytes()
    buf = bytearray(data)
    ds = read_dataset(buf, name, strict=False)
    assert isinstance(ds.get_item(0x7FE00010).value, memoryview)
    PixelCleaner(RULES).clean(ds)
    pixels = ds.get_item(0x7FE00010).value
    assert isinstance(pixels, memoryview) and pixels.obj is buf  # masked where it was read
    after = np.frombuffer(pixels, dtype=">i2" if big else "<i2").reshape(before.shape)
    want = before.copy()
    want[0:12, 4:60] = 0
    np.testing.assert_array_equal(after, want)
    start = data.index(before.astype(">i2" if big else "<i2").tobytes())
    assert buf[:start] == data[:start]  # the header before it is untouched
