"""mask_regions and fix_unused_bits against plain-numpy references, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from medveil import fix_unused_bits, mask_regions

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]


def reference_mask(
    pixels: np.ndarray, regions: list[tuple[int, ...]], value, planar: bool
) -> np.ndarray:
    """Slice assignment with the kernel's clipping semantics (negative starts mean 0)."""
    out = pixels.copy()
    view = out[np.newaxis] if out.ndim == 2 else out
    for reg in regions:
        r0, r1, c0, c1 = (max(v, 0) for v in reg[:4])
        f0, f1 = (max(reg[4], 0), max(reg[5], 0)) if len(reg) == 6 else (0, view.shape[0])
        if planar:
            view[f0:f1, :, r0:r1, c0:c1] = value
        else:
            view[f0:f1, r0:r1, c0:c1] = value
    return out


shapes = st.one_of(
    st.tuples(st.integers(0, 9), st.integers(0, 40)),
    st.tuples(st.integers(0, 4), st.integers(0, 9), st.integers(0, 40)),
    st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 20), st.integers(1, 4)),
)
coord = st.integers(-5, 45)
region4 = st.tuples(coord, coord, coord, coord)
region6 = st.tuples(coord, coord, coord, coord, st.integers(-2, 6), st.integers(-2, 6))


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=shapes,
    regions=st.lists(st.one_of(region4, region6), max_size=8),
    planar=st.booleans(),
    data=st.data(),
)
def test_mask_matches_numpy(backend, dtype, shape, regions, planar, data) -> None:
    planar = planar and len(shape) == 4
    pixels = data.draw(
        hnp.arrays(dtype, shape, elements=hnp.from_dtype(np.dtype(dtype), allow_nan=False))
    )
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    value = data.draw(
        st.sampled_from(
            [
                0,
                int(info.max) if np.dtype(dtype).kind in "iu" else 1.5,
                int(info.min) if np.dtype(dtype).kind in "iu" else -2.25,
            ]
        )
    )
    expected = reference_mask(pixels, regions, value, planar)
    mask_regions(pixels, regions, value, planar=planar)
    np.testing.assert_array_equal(pixels, expected)


def test_many_regions_fused_on_large_stack(backend) -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(-3000, 3000, size=(20, 128, 96), dtype=np.int16)
    regions = [
        (*tuple(int(v) for v in rng.integers(-10, 140, size=4)), int(f), int(f) + 3)
        for f in rng.integers(0, 20, size=60)
    ]
    expected = reference_mask(pixels, regions, -1024, planar=False)
    mask_regions(pixels, np.array(regions, dtype=np.int64), -1024)
    np.testing.assert_array_equal(pixels, expected)


# Enough frames and regions for the frame sweep to add, drop and re-plan regions often.
frame_region = st.tuples(
    st.integers(-3, 30),
    st.integers(-3, 30),
    st.integers(-3, 30),
    st.integers(-3, 30),
    st.integers(-2, 12),
    st.integers(-2, 12),
)


@settings(max_examples=150, deadline=None)
@given(
    regions=st.lists(st.one_of(frame_region, region4), max_size=60),
    dtype=st.sampled_from(["uint8", "int16", "float64"]),
)
def test_many_frame_ranges_match_numpy(backend, regions, dtype) -> None:
    pixels = np.arange(10 * 24 * 28, dtype=dtype).reshape(10, 24, 28)
    expected = reference_mask(pixels, regions, 3, planar=False)
    mask_regions(pixels, regions, 3)
    np.testing.assert_array_equal(pixels, expected)


def test_thousands_of_regions_on_every_frame(backend) -> None:
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 255, size=(30, 64, 80, 3), dtype=np.uint8)
    per_frame = [
        (int(r), int(r) + int(h), int(c), int(c) + int(w), f, f + 1)
        for f in range(30)
        for r, h, c, w in rng.integers([-4, 0, -4, 0], [64, 20, 80, 40], size=(200, 4))
    ]
    everywhere = [(60, 70, 0, 80), (0, 64, 75, 90)]  # span all frames, clipped at the edges
    regions = per_frame + everywhere
    expected = reference_mask(pixels, regions, 200, planar=False)
    mask_regions(pixels, regions, 200)
    np.testing.assert_array_equal(pixels, expected)


@pytest.mark.parametrize(
    ("shape", "dtype", "value", "region"),
    [
        # Over 8 MB written in runs of 16 KB or more: the AVX2 path streams these with
        # non-temporal stores; runs start mid cache line (row 3, odd row lengths).
        ((3, 1100, 1000), "float32", 1.5, (3, 1090, 0, 1000, 0, 3)),
        ((6, 600, 799, 3), "uint8", 0, (1, 597, 0, 799, 0, 6)),
        ((12, 400, 1030), "int16", -2, (0, 400, 0, 1030, 1, 12)),
        # Partial-width runs of 32 KB: streamed one row at a time.
        ((2, 400, 3000), "float64", -0.25, (2, 399, 5, 2995, 0, 2)),
    ],
)
def test_long_fills_stream_correctly(backend, shape, dtype, value, region) -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(1, 100, size=shape).astype(dtype)
    regions = [region, (0, 2, 0, 3)]  # a short run too, so both store kinds meet
    expected = reference_mask(pixels, regions, value, planar=False)
    mask_regions(pixels, regions, value)
    np.testing.assert_array_equal(pixels, expected)


def test_region_arrays_reach_the_core_in_every_form(backend) -> None:
    from medveil import _core

    rng = np.random.default_rng(9)
    pixels = rng.integers(0, 1000, size=(5, 30, 40), dtype=np.int32)
    six = rng.integers(-3, 45, size=(12, 6)).astype(np.int64)
    six[:, 4:] = rng.integers(-1, 7, size=(12, 2))
    regions = [tuple(int(v) for v in row) for row in six]
    expected = reference_mask(pixels, regions, 77, planar=False)
    # Every other row of a (24, 6) array: not C-contiguous, so the wrapper copies it.
    spaced = np.zeros((24, 6), dtype=np.int64)
    spaced[::2] = six
    for form in (six, spaced[::2], six.astype(np.int16), six.astype(">i8")):
        got = pixels.copy()
        mask_regions(got, form, 77)
        np.testing.assert_array_equal(got, expected)
    # Four int64 columns go to the core as they are and mean "every frame".
    four = six[:, :4].copy()
    got = pixels.copy()
    _core.mask.mask_regions(got, four, 77)
    np.testing.assert_array_equal(got, reference_mask(pixels, [tuple(r) for r in four], 77, False))
    with pytest.raises(ValueError, match=r"\(n, 6\)"):
        _core.mask.mask_regions(got, six[:, :5].copy(), 0)
    with pytest.raises(ValueError, match="C-contiguous int64"):
        _core.mask.mask_regions(got, spaced[::2], 0)


def test_region_lists_fast_and_slow_paths_agree() -> None:
    rng = np.random.default_rng(3)
    coords = rng.integers(-5, 40, size=(50, 6))
    as_tuples = [tuple(int(v) for v in row) for row in coords]
    as_numpy_ints = [tuple(row) for row in coords]  # np.int64 items
    mixed = [*as_tuples[:10], tuple(as_tuples[10][:4])]  # lengths 6 and 4: per-item path
    from medveil.pixels.masking import regions_array

    np.testing.assert_array_equal(regions_array(as_tuples), coords)
    np.testing.assert_array_equal(regions_array(as_numpy_ints), coords)
    np.testing.assert_array_equal(regions_array(coords), coords)
    four = regions_array([t[:4] for t in as_tuples])
    np.testing.assert_array_equal(four[:, :4], coords[:, :4])
    assert (four[:, 4] == 0).all() and (four[:, 5] == np.iinfo(np.int64).max).all()
    out = regions_array(mixed)
    np.testing.assert_array_equal(out[:10], coords[:10])
    np.testing.assert_array_equal(out[10, :4], coords[10, :4])
    with pytest.raises(TypeError, match="integers"):
        regions_array([(0, 1, 0, 2)] * 5 + [(0, True, 0, 2)])
    with pytest.raises(TypeError, match="integers"):
        regions_array([(0, 1, 0, 2), (0, 1, 0, 2.0)])


def test_full_width_band_and_big_endian(backend) -> None:
    pixels = np.arange(4 * 50 * 64, dtype=">u2").reshape(4, 50, 64)
    expected = reference_mask(pixels, [(10, 30, 0, 64)], 0x1234, planar=False)
    mask_regions(pixels, [(10, 30, 0, 64)], 0x1234)
    np.testing.assert_array_equal(pixels, expected)
    assert pixels[0, 10, 0] == 0x1234


def test_regions_as_arrays_of_four_columns(backend) -> None:
    pixels = np.ones((3, 8, 8), dtype=np.float32)
    mask_regions(pixels, np.array([[1, 3, 2, 5]], dtype=np.int32), 7.0)
    assert pixels[:, 1:3, 2:5].min() == 7.0 and pixels.sum() == 3 * (64 - 6) + 3 * 6 * 7.0


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("uint8", 256),
        ("uint8", -1),
        ("int8", 128),
        ("int16", -32769),
        ("uint16", 1.5),
        ("uint32", 2**32),
        ("int32", 2**31),
        ("float32", 1e39),
    ],
)
def test_value_that_does_not_fit_is_an_error(dtype, value) -> None:
    pixels = np.zeros((4, 4), dtype=dtype)
    with pytest.raises((ValueError, TypeError), match=r"does not fit|must be an integer"):
        mask_regions(pixels, [(0, 2, 0, 2)], value)
    assert not pixels.any()


def test_bad_inputs_raise_clear_errors() -> None:
    a = np.zeros((8, 8), dtype=np.uint16)
    with pytest.raises(ValueError, match="read-only"):
        ro = a.copy()
        ro.flags.writeable = False
        mask_regions(ro, [(0, 1, 0, 1)])
    with pytest.raises(ValueError, match="C-contiguous"):
        mask_regions(np.zeros((8, 8), dtype=np.uint16).T[::2], [(0, 1, 0, 1)])
    with pytest.raises(TypeError, match="not supported"):
        mask_regions(np.zeros((8, 8), dtype=np.complex64), [(0, 1, 0, 1)])
    with pytest.raises(TypeError, match="not supported"):
        mask_regions(np.zeros((8, 8), dtype=np.int64), [(0, 1, 0, 1)])
    with pytest.raises(ValueError, match="expected"):
        mask_regions(a, [(0, 1, 0)])
    with pytest.raises(TypeError, match="integers"):
        mask_regions(a, [(0, 1.5, 0, 2)])
    with pytest.raises(ValueError, match="shape"):
        mask_regions(a, np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="ndim"):
        mask_regions(np.zeros((2, 2, 2, 2, 2), dtype=np.uint8), [])
    with pytest.raises(ValueError, match="planar"):
        mask_regions(a, [], planar=True)
    with pytest.raises(TypeError, match="numpy array"):
        mask_regions([[0, 1]], [])  # type: ignore[arg-type]


def reference_fix(pixels: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    bits = pixels.dtype.itemsize * 8
    u = pixels.view(f"u{pixels.dtype.itemsize}").astype(np.uint64)
    low = u & np.uint64((1 << bits_stored) - 1)
    if signed:
        sign = (low >> np.uint64(bits_stored - 1)) & np.uint64(1)
        high = np.uint64(((1 << bits) - 1) ^ ((1 << bits_stored) - 1))
        low = np.where(sign == 1, low | high, low)
    return low.astype(f"u{pixels.dtype.itemsize}").view(pixels.dtype)


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from(["uint16", "int16", "uint32", "int32"]),
    n=st.integers(0, 300),
    signed=st.booleans(),
    data=st.data(),
)
def test_fix_unused_bits_matches_numpy(backend, dtype, n, signed, data) -> None:
    bits = np.dtype(dtype).itemsize * 8
    bits_stored = data.draw(st.integers(1, bits))
    pixels = data.draw(hnp.arrays(dtype, n))
    expected = reference_fix(pixels, bits_stored, signed)
    fix_unused_bits(pixels, bits_stored, signed)
    np.testing.assert_array_equal(pixels, expected)


def test_fix_unused_bits_removes_hidden_overlay(backend) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4096, size=(64, 64), dtype=np.uint16)
    overlay = (rng.random((64, 64)) < 0.1).astype(np.uint16) << 15
    pixels = image | overlay
    fix_unused_bits(pixels, 12, signed=False)
    np.testing.assert_array_equal(pixels, image)
    signed = np.array([-2048, 2047, -1, 0], dtype=np.int16) & 0x0FFF | 0x7000
    fix_unused_bits(signed, 12, signed=True)
    assert signed.tolist() == [-2048, 2047, -1, 0]


def test_fix_unused_bits_errors() -> None:
    with pytest.raises(TypeError, match="16- or 32-bit"):
        fix_unused_bits(np.zeros(4, dtype=np.uint8), 4, False)
    with pytest.raises(TypeError, match="16- or 32-bit"):
        fix_unused_bits(np.zeros(4, dtype=np.float32), 4, False)
    with pytest.raises(ValueError, match="outside"):
        fix_unused_bits(np.zeros(4, dtype=np.uint16), 17, False)
    with pytest.raises(ValueError, match="outside"):
        fix_unused_bits(np.zeros(4, dtype=np.uint16), 0, False)
    with pytest.raises(ValueError, match="byte order"):
        fix_unused_bits(np.zeros(4, dtype=">u2"), 12, False)
    with pytest.raises(TypeError, match="integer"):
        fix_unused_bits(np.zeros(4, dtype=np.uint16), 12.0, False)  # type: ignore[arg-type]
