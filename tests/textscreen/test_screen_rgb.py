"""The core screen's RGB input, per-frame thresholds, noise estimate and luma, against numpy.

Every test runs on each SIMD backend (the ``backend`` fixture): the AVX2 kernels (luma,
column sums, row prefix sums, classification to bits, noise counting) must give what the
scalar code and the numpy reference give, bit for bit, at every width (vector bodies,
tails, frames narrower than the window).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil import _core
from medveil.pixels.text.detect import NOISE_MAX, NOISE_STEP, _luma, noise_threshold

from tests.textscreen.reference import reference_boxes
from tests.textscreen.test_textscreen import _blocks_image

screen = _core.textscreen.screen


def _rgb_of(grey: np.ndarray, seed: int) -> np.ndarray:
    """An RGB image whose channels differ (so luma is not any one of them)."""
    rng = np.random.default_rng(seed)
    g = grey.astype(np.int64)
    r = np.clip(g + rng.integers(-40, 41, g.shape), 0, 255)
    b = np.clip(g + rng.integers(-40, 41, g.shape), 0, 255)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def _per_frame_reference(
    grey: np.ndarray, thresholds: list[int], **kw: object
) -> list[tuple[int, int, int, int, int, int]]:
    """Reference boxes of a (frames, rows, cols) stack: (frame, row0, row1, col0, col1, glyphs)."""
    out = []
    for f in range(grey.shape[0]):
        for b in reference_boxes(grey[f], threshold=thresholds[f], **kw):  # type: ignore[arg-type]
            out.append((f, *b[:5]))
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    frames=st.integers(1, 3),
    rows=st.integers(1, 40),
    cols=st.integers(1, 140),
    noise=st.sampled_from([0, 5, 40]),
    threshold=st.integers(0, 60),
    radius=st.sampled_from([1, 3, 7, 8]),
)
def test_rgb_screen_matches_reference_on_luma(
    backend: str,
    seed: int,
    frames: int,
    rows: int,
    cols: int,
    noise: int,
    threshold: int,
    radius: int,
) -> None:
    grey = np.stack([_blocks_image(seed + f, rows, cols, noise) for f in range(frames)])
    rgb = _rgb_of(grey, seed)
    luma = _luma(rgb)
    kw = dict(min_height=2, max_height=30, radius=radius)
    want = _per_frame_reference(luma, [threshold] * frames, **kw)
    boxes, scores, used = screen(rgb, threshold=threshold, **kw)
    assert [tuple(b) for b in boxes.tolist()] == want
    assert used.tolist() == [threshold] * frames
    # The grey path on the luma gives the same boxes and scores.
    gboxes, gscores, _ = screen(luma, threshold=threshold, **kw)
    np.testing.assert_array_equal(gboxes, boxes)
    np.testing.assert_array_equal(gscores, scores)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 40),
    cols=st.integers(1, 200),
    noise=st.sampled_from([0, 5, 40]),
    threshold=st.integers(0, 60),
)
def test_grey_screen_matches_find_text_boxes_and_scores_are_optional(
    backend: str, seed: int, rows: int, cols: int, noise: int, threshold: int
) -> None:
    img = _blocks_image(seed, rows, cols, noise)
    kw = dict(min_height=2, max_height=30, threshold=threshold)
    want_b, want_s = _core.textscreen.find_text_boxes(img, **kw)
    got_b, got_s, _ = screen(img, **kw)
    np.testing.assert_array_equal(got_b, want_b)
    np.testing.assert_array_equal(got_s, want_s)
    fast_b, fast_s, _ = screen(img, scores=False, **kw)
    np.testing.assert_array_equal(fast_b, want_b)
    assert not fast_s.any()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    frames=st.integers(1, 3),
    rows=st.integers(1, 30),
    cols=st.integers(1, 90),
    spread=st.sampled_from([0, 3, 20, 90, 255]),
    base=st.integers(0, 255),
    rgb=st.booleans(),
)
def test_noise_thresholds_match_python(
    backend: str,
    seed: int,
    frames: int,
    rows: int,
    cols: int,
    spread: int,
    base: int,
    rgb: bool,
) -> None:
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, spread + 1, size=(frames, rows, cols)).astype(np.uint8)
    grey[:, : rows // 3] = 0  # a black border pulls the median down, as in ultrasound
    img = _rgb_of(grey, seed) if rgb else grey
    luma = _luma(img) if rgb else grey
    _, _, used = screen(
        img, threshold=base, noise_factor=2.0, noise_step=NOISE_STEP, noise_max=NOISE_MAX
    )
    assert used.tolist() == [noise_threshold(luma[f], base) for f in range(frames)]


def test_noise_threshold_rises_on_speckle_and_boxes_follow(backend: str) -> None:
    rng = np.random.default_rng(5)
    speckle = np.clip(rng.rayleigh(40.0, size=(2, 120, 160)), 0, 255).astype(np.uint8)
    speckle[0] = 30  # flat frame: base threshold
    _, _, used = screen(speckle, threshold=30, noise_factor=2.0)
    assert used[0] == 30 and used[1] > 45
    # The frames are screened with the thresholds reported.
    boxes, _, _ = screen(speckle, threshold=30, noise_factor=2.0, min_height=2)
    want = _per_frame_reference(speckle, used.tolist(), min_height=2)
    assert [tuple(b) for b in boxes.tolist()] == want


def test_given_thresholds_apply_per_frame(backend: str) -> None:
    stack = np.stack([_blocks_image(s, 48, 64, 5) for s in range(4)])
    per_frame = np.array([5, 20, 40, 60], dtype=np.int32)
    boxes, _, used = screen(stack, thresholds=per_frame, min_height=2)
    assert used.tolist() == per_frame.tolist()
    want = _per_frame_reference(stack, per_frame.tolist(), min_height=2)
    assert [tuple(b) for b in boxes.tolist()] == want
    # Given thresholds win over the noise estimate.
    boxes2, _, used2 = screen(stack, thresholds=per_frame, noise_factor=2.0, min_height=2)
    np.testing.assert_array_equal(boxes2, boxes)
    assert used2.tolist() == per_frame.tolist()


@pytest.mark.parametrize("cols", [1, 2, 15, 16, 31, 32, 33, 63, 64, 65, 95, 127, 128, 129])
def test_luma_matches_numpy_at_every_width(backend: str, cols: int) -> None:
    rng = np.random.default_rng(cols)
    rgb = rng.integers(0, 256, size=(2, 5, cols, 3), dtype=np.uint8)
    rgb[0, 0] = 255  # the largest sums
    np.testing.assert_array_equal(_core.textscreen.luma(rgb), _luma(rgb))


def test_luma_of_strided_crops(backend: str) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(3, 40, 90, 3), dtype=np.uint8)
    want = _luma(rgb)
    np.testing.assert_array_equal(_core.textscreen.luma(rgb[1, 5:30, 7:77]), want[1, 5:30, 7:77])
    np.testing.assert_array_equal(_core.textscreen.luma(rgb[:, ::3, 10:]), want[:, ::3, 10:])
    np.testing.assert_array_equal(_core.textscreen.luma(rgb[::-1, ::-2]), want[::-1, ::-2])
    assert _core.textscreen.luma(rgb[0, 4:4]).shape == (0, 90)


def test_wide_frames_every_tail(backend: str) -> None:
    # Widths around the 16-, 32- and 64-pixel steps of the vector loops, text on the edges.
    for cols in (7, 8, 14, 15, 16, 17, 47, 64, 65, 100, 129, 191, 192, 193):
        img = _blocks_image(cols, 30, cols, 3)
        img[:, -3:] = 255 - img[:, -3:]
        want = reference_boxes(img, min_height=2, threshold=10)
        # Equal channels: the luma is the grey value itself.
        rgb = np.repeat(img[np.newaxis, ..., np.newaxis], 3, axis=-1)
        got, _, _ = screen(rgb, threshold=10, min_height=2)
        assert [tuple(b[1:]) for b in got.tolist()] == [w[:5] for w in want], cols


def test_screen_errors() -> None:
    img = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="RGB"):
        screen(np.zeros((1, 8, 8, 4), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        screen(np.zeros((1, 8, 8, 3), np.uint16))
    with pytest.raises(ValueError, match="C-contiguous"):
        screen(np.zeros((1, 8, 16, 3), np.uint8)[:, :, ::2])
    with pytest.raises(ValueError, match=r"shape \(frames,\)"):
        screen(img, thresholds=np.array([1, 2, 3], np.int32))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        screen(img, thresholds=np.array([1, 256], np.int32))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        screen(img, thresholds=np.array([1, 2**32 + 5], np.int64))
    with pytest.raises(TypeError, match="integer"):
        screen(img, thresholds=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="noise_factor"):
        screen(img, noise_factor=-1.0)
    with pytest.raises(ValueError, match="noise_step"):
        screen(img, noise_step=0)
    with pytest.raises(ValueError, match="noise_max"):
        screen(img, noise_max=256)
    with pytest.raises(ValueError, match="3 samples"):
        _core.textscreen.luma(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="packed"):
        _core.textscreen.luma(np.zeros((4, 8, 3), np.uint8)[:, ::2])
    with pytest.raises(TypeError, match="uint8"):
        _core.textscreen.luma(np.zeros((4, 4, 3), np.int16))
    boxes, _, used = screen(np.zeros((3, 0, 5), np.uint8), threshold=7)
    assert boxes.shape == (0, 6) and used.tolist() == [7, 7, 7]
