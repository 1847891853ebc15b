"""The detector's candidate checks in the core against their Python reference, and the
fast medians, quantiles and RGB screen input the detection path uses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil import _core
from medveil.pixels.text.detect import (
    CHECKS,
    TextDetector,
    _luma,
    _median,
    _merge,
    _quantile,
    grey_frames,
    screen_input,
)

from tests.textdetect.render import draw_text, speckle


def _scene(seed: int) -> np.ndarray:
    """A (2, 160, 240) grey stack: speckle or flat, text lines, blobs, frames and bars."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(2):
        img = (
            speckle(160, 240, seed=seed + f)
            if (seed + f) % 2
            else np.full((160, 240), 40, np.uint8)
        )
        draw_text(img, "DOE^JANE 1970", 5, 4, size=int(rng.integers(10, 20)))
        draw_text(img, "L", 60, 200, size=18)
        draw_text(img, "MI 1.1 TIS", 120, 100, size=12, value=int(rng.integers(120, 256)))
        yy, xx = np.mgrid[0:160, 0:240]
        img[(yy - 90) ** 2 + (xx - 50) ** 2 < 81] = 230  # a filled disc
        img[(yy - 92) ** 2 + (xx - 75) ** 2 < 64] = 230  # and its neighbour
        img[40:42, 100:180] = 250  # a frame's edge
        img[40:70, 100:102] = 250
        img[40:70, 178:180] = 250
        out.append(img)
    return np.stack(out)


def _python_checks(
    grey: np.ndarray, lines: list[tuple[int, ...]], thresholds: list[int]
) -> list[tuple[int, int, int, int] | None]:
    return [
        TextDetector.check_reference(grey[f], (r0, r1, c0, c1), glyphs, thresholds[f])
        for f, r0, r1, c0, c1, glyphs in lines
    ]


def _core_checks(
    stack: np.ndarray, lines: list[tuple[int, ...]], thresholds: list[int]
) -> list[tuple[int, int, int, int] | None]:
    got = _core.textscreen.check_lines(
        stack, np.array(lines, np.int64).reshape(-1, 6), np.array(thresholds, np.int32), **CHECKS
    )
    return [tuple(g[1:]) if g[0] else None for g in got.tolist()]


@pytest.mark.parametrize("seed", range(6))
def test_core_checks_match_python_on_screen_candidates(backend: str, seed: int) -> None:
    grey = _scene(seed)
    det = TextDetector()
    found, thresholds = det._screen(grey)
    lines = [(f, *m) for f in sorted(found[0]) for m in _merge(found[0][f])]
    assert len(lines) >= 4
    want = _python_checks(grey, lines, thresholds)
    assert _core_checks(grey, lines, thresholds) == want
    assert any(w is None for w in want) and any(w is not None for w in want)
    # RGB whose luma is the grey stack: the core reads it as luma.
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=-1)
    assert _core_checks(rgb, lines, thresholds) == want


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 5),
    frame=st.integers(0, 1),
    r0=st.integers(0, 150),
    h=st.integers(1, 60),
    c0=st.integers(0, 230),
    w=st.integers(1, 240),
    glyphs=st.integers(1, 7),
    threshold=st.integers(0, 120),
    tint=st.integers(-30, 30),
)
def test_core_checks_match_python_on_any_box(
    seed: int,
    frame: int,
    r0: int,
    h: int,
    c0: int,
    w: int,
    glyphs: int,
    threshold: int,
    tint: int,
) -> None:
    grey = _scene(seed)
    r1, c1 = min(160, r0 + h), min(240, c0 + w)
    lines = [(frame, r0, r1, c0, c1, glyphs)]
    thresholds = [threshold, threshold]
    # Colour: the core converts RGB to luma itself; the reference reads the luma.
    g = grey.astype(np.int64)
    rgb = np.stack([np.clip(g + tint, 0, 255), g, np.clip(g - tint, 0, 255)], -1).astype(np.uint8)
    luma = _luma(rgb)
    assert _core_checks(grey, lines, thresholds) == _python_checks(grey, lines, thresholds)
    assert _core_checks(rgb, lines, thresholds) == _python_checks(luma, lines, thresholds)


def test_check_lines_errors() -> None:
    stack = np.zeros((2, 10, 10), np.uint8)
    t = np.zeros(2, np.int32)
    for bad in ([2, 0, 1, 0, 1, 2], [0, 0, 11, 0, 1, 2], [0, 3, 3, 0, 1, 2], [0, 0, 1, -1, 1, 2]):
        with pytest.raises(ValueError, match="inside a frame"):
            _core.textscreen.check_lines(stack, np.array([bad], np.int64), t, **CHECKS)
    with pytest.raises(ValueError, match=r"\(n, 6\)"):
        _core.textscreen.check_lines(stack, np.zeros((1, 5), np.int64), t, **CHECKS)
    with pytest.raises(ValueError, match=r"\(frames,\)"):
        _core.textscreen.check_lines(stack, np.zeros((0, 6), np.int64), t[:1], **CHECKS)
    with pytest.raises(ValueError, match="thresholds"):
        _core.textscreen.check_lines(stack, np.zeros((0, 6), np.int64), t + 300, **CHECKS)
    empty = _core.textscreen.check_lines(stack, np.zeros((0, 6), np.int64), t, **CHECKS)
    assert empty.shape == (0, 5)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(-300, 300), min_size=1, max_size=60),
    q=st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.95, 1.0]),
    as_float=st.booleans(),
)
def test_median_and_quantile_are_numpys(values: list[int], q: float, as_float: bool) -> None:
    a = np.array(values, dtype=np.float64 if as_float else np.int16)
    if as_float:
        a = np.abs(a - 0.5)
    assert _median(a) == float(np.median(a))
    assert _quantile(a, q) == float(np.quantile(a, q))


def test_screen_input_passes_interleaved_rgb_and_converts_the_rest() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(2, 20, 30, 3), dtype=np.uint8)
    same = screen_input(rgb, photometric="RGB")
    assert same is rgb or np.shares_memory(same, rgb)
    planar = np.ascontiguousarray(np.moveaxis(rgb, 3, 1))
    np.testing.assert_array_equal(screen_input(planar, planar=True, photometric="RGB"), _luma(rgb))
    np.testing.assert_array_equal(
        screen_input(rgb, photometric="YBR_FULL"), grey_frames(rgb, photometric="YBR_FULL")
    )
    grey16 = rng.integers(0, 4096, size=(2, 20, 30), dtype=np.uint16)
    np.testing.assert_array_equal(
        screen_input(grey16, bits_stored=12), grey_frames(grey16, bits_stored=12)
    )


def test_detect_on_rgb_equals_detect_on_its_luma(backend: str) -> None:
    grey = _scene(3)
    g = grey.astype(np.int64)
    rgb = np.stack([np.clip(g + 20, 0, 255), g, np.clip(g - 20, 0, 255)], -1).astype(np.uint8)
    det = TextDetector()
    want = det.detect(_luma(rgb))
    assert want
    assert det.detect(rgb) == want
