"""The core's window kernel (16-bit samples onto 0..255 for the text screen) against numpy.

Every test runs on each SIMD backend (the ``backend`` fixture): the AVX2 kernels (min/max
16 samples per step, float32 scaling 32 per step with a scalar tail) must give what the
scalar code and numpy's float32 arithmetic (``_to_u8_reference``) give, bit for bit.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil import _core
from medveil.pixels.text.detect import _to_u8, _to_u8_reference, grey_frames

window = _core.textscreen.window


def _clip(bits: int, signed: bool) -> tuple[int, int]:
    top = 1 << (bits - 1 if signed else bits)
    return (-top, top - 1) if signed else (0, top - 1)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.uint16, np.int16]),
    frames=st.integers(1, 3),
    rows=st.integers(1, 9),
    cols=st.integers(1, 80),
    bits=st.integers(1, 16),
    signed=st.booleans(),
    invert=st.booleans(),
    narrow=st.booleans(),
)
def test_matches_numpy_float32(
    backend: str,
    seed: int,
    dtype: type,
    frames: int,
    rows: int,
    cols: int,
    bits: int,
    signed: bool,
    invert: bool,
    narrow: bool,
) -> None:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    # Narrow ranges make spans whose 255 / span rounds (ties in rint); wide ones make
    # values beyond BitsStored, which are clipped.
    lo = int(rng.integers(info.min, info.max))
    hi = min(info.max, lo + int(rng.integers(0, 8))) if narrow else info.max
    a = rng.integers(lo, hi, size=(frames, rows, cols), endpoint=True).astype(dtype)
    lo_v, hi_v = _clip(bits, signed)
    got = window(a, clip_lo=lo_v, clip_hi=hi_v, invert=invert)
    ref = _to_u8_reference(a, bits, signed)
    assert got.dtype == np.uint8 and got.shape == a.shape
    np.testing.assert_array_equal(got, 255 - ref if invert else ref)


@pytest.mark.parametrize("cols", [1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 200])
def test_every_tail_and_exact_rounding(backend: str, cols: int) -> None:
    # A ramp over every width: each output within half a level of the exact rational
    # value, the frame's min at 0 and its max at 255.
    rng = np.random.default_rng(cols)
    a = rng.integers(0, 4096, size=(2, 3, cols)).astype(np.uint16)
    a[:, 0, 0] = 0
    a[:, -1, -1] = 4095
    got = window(a, clip_lo=0, clip_hi=4095)
    np.testing.assert_array_equal(got, _to_u8_reference(a, 12, False))
    for v, g in zip(a.ravel().tolist(), got.ravel().tolist(), strict=True):
        assert abs(Fraction(v * 255, 4095) - g) <= Fraction(1, 2)
    assert got.min() == 0 and got.max() == 255


def test_frames_scale_independently(backend: str) -> None:
    a = np.stack(
        [np.arange(100, 164, dtype=np.uint16), np.arange(30000, 30064, dtype=np.uint16)]
    ).reshape(2, 4, 16)
    got = window(a, clip_lo=0, clip_hi=65535)
    np.testing.assert_array_equal(got[0], got[1])
    assert got[0].min() == 0 and got[0].max() == 255


def test_constant_and_clipped_frames_are_zero(backend: str) -> None:
    a = np.full((1, 5, 40), 7, dtype=np.int16)
    np.testing.assert_array_equal(window(a, clip_lo=-2048, clip_hi=2047), 0)
    np.testing.assert_array_equal(window(a, clip_lo=-2048, clip_hi=2047, invert=True), 255)
    # Everything above BitsStored's range clips to one value: a flat frame.
    b = np.full((1, 2, 50), 5000, dtype=np.uint16)
    b[0, 0, :25] = 4096
    np.testing.assert_array_equal(window(b, clip_lo=0, clip_hi=4095), 0)


def test_signed_negative_values(backend: str) -> None:
    a = np.array([[[-1000, -1, 0, 999] * 10]], dtype=np.int16)
    got = window(a, clip_lo=-2048, clip_hi=2047)
    np.testing.assert_array_equal(got, _to_u8_reference(a, 12, True))
    assert got[0, 0, :4].tolist() == [0, 127, 128, 255]  # 999 and 1000 of 1999 steps


def test_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="uint16 or int16"):
        window(np.zeros((2, 2), np.uint8), clip_lo=0, clip_hi=1)
    with pytest.raises(ValueError, match="native byte order"):
        window(np.zeros((2, 2), ">u2"), clip_lo=0, clip_hi=1)
    with pytest.raises(ValueError, match="C-contiguous"):
        window(np.zeros((4, 4), np.uint16)[:, ::2], clip_lo=0, clip_hi=1)
    with pytest.raises(ValueError, match="clip_lo <= clip_hi"):
        window(np.zeros((2, 2), np.uint16), clip_lo=5, clip_hi=1)
    with pytest.raises(ValueError, match="shape"):
        window(np.zeros(4, np.uint16), clip_lo=0, clip_hi=1)
    assert window(np.zeros((2, 0, 3), np.uint16), clip_lo=0, clip_hi=1).shape == (2, 0, 3)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_grey_frames_uses_it_with_numpy_results(backend: str, order: str, photometric: str) -> None:
    # The detector's entry point: big-endian samples (swapped first) and MONOCHROME1
    # (inverted in the kernel) give what the numpy path gives.
    rng = np.random.default_rng(1)
    a = rng.integers(-3000, 3000, size=(2, 40, 70)).astype(f"{order}i2")
    got = grey_frames(a, bits_stored=12, signed=True, photometric=photometric)
    ref = _to_u8_reference(a.astype(np.int16), 12, True)
    np.testing.assert_array_equal(got, 255 - ref if photometric == "MONOCHROME1" else ref)
    # Other dtypes stay on numpy.
    f = rng.integers(0, 255, size=(1, 8, 9)).astype(np.int32)
    np.testing.assert_array_equal(_to_u8(f, 8, False), _to_u8_reference(f, 8, False))


def _numpy_window(a: np.ndarray, lo_v: int, hi_v: int) -> np.ndarray:
    """_to_u8_reference's float32 arithmetic with any clip bounds."""
    f = np.clip(a.astype(np.float32), lo_v, hi_v)
    lo = f.min(axis=(1, 2), keepdims=True)
    hi = f.max(axis=(1, 2), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    f -= lo
    f *= 255.0 / span
    return np.rint(f).astype(np.uint8)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.uint16, np.int16]),
    cols=st.integers(1, 70),
    bounds=st.tuples(st.integers(-(2**20), 2**20), st.integers(-(2**20), 2**20)),
)
def test_any_clip_bounds(
    backend: str, seed: int, dtype: type, cols: int, bounds: tuple[int, int]
) -> None:
    # Bounds beyond the samples' range, inside it, or around a single value: the kernels
    # clamp to the frame's clipped extremes, which must come to the same thing.
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    a = rng.integers(info.min, info.max, size=(2, 3, cols), endpoint=True).astype(dtype)
    lo_v, hi_v = min(bounds), max(bounds)
    if rng.random() < 0.5:  # bounds among the samples' values
        v = np.sort(rng.choice(a.ravel(), 2)).tolist()
        lo_v, hi_v = int(v[0]), int(v[1])
    got = window(a, clip_lo=lo_v, clip_hi=hi_v)
    np.testing.assert_array_equal(got, _numpy_window(a, lo_v, hi_v))
