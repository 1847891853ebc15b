"""Text detection on full-size frames: every SIMD backend against the portable path.

A 3000x2500 12-bit radiograph with burned-in text in several sizes (10-56 px),
contrasts (full bright, full dark, ~60 display levels over the background) and positions
(the four corners, over the lung edge), shown as MONOCHROME2 and MONOCHROME1, and a cine
of 600x800 RGB frames with speckle and text. The vector kernels (the avx2 and avx512
backends: luma, window sums, classification, noise counts, 16-bit windowing) are the fast
path; the scalar backend is the portable one. Each backend must give the same grey frames,
noise thresholds and detections, box for box, and every line's ink must be masked.
Frames this big reach what the small hypothesis tests do not: the noise counter's flush
every 255 vector steps, long rows of full 64-pixel words, many label runs per row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import medveil
import numpy as np
import pytest
from medveil import _core
from medveil.pixels.text.detect import (
    NOISE_FACTOR,
    NOISE_MAX,
    NOISE_STEP,
    Detection,
    TextDetector,
    _to_u8_reference,
    grey_frames,
    noise_threshold,
)
from PIL import Image, ImageDraw, ImageFont

T = TypeVar("T")
ROWS, COLS = 3000, 2500
# text, size px, (row, col) of the top left, 12-bit level (None: ~60 display levels
# above the background's 90th percentile under the line)
LINES = [
    ("DOE^JANE Q", 56, (40, 200), 4095),
    ("MRN 0012345", 36, (130, 200), 0),
    ("2024-03-14 09:30", 22, (60, 1900), 4095),
    ("Acc 778812  R", 14, (200, 2000), None),
    ("PA ERECT kVp 120", 10, (2900, 150), 4095),
    ("St. Elsewhere", 28, (2850, 1700), 0),
    ("LEFT", 40, (1300, 760), None),  # across the left lung's edge
]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at ``size`` px, or Pillow's built-in font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _chest(seed: int) -> np.ndarray:
    """A 12-bit chest-like radiograph: collimated margins, lung fields, spine, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(np.float32)
    img = 2600 + 500 * np.cos(xx / COLS * 3.1) * np.cos(yy / ROWS * 2)
    for side in (-1, 1):
        lung = ((yy - ROWS * 0.45) / (ROWS * 0.3)) ** 2 + (
            (xx - COLS / 2 - side * COLS * 0.2) / (COLS * 0.14)
        ) ** 2 < 1
        img[lung] -= 1100
    img[:, int(COLS * 0.47) : int(COLS * 0.53)] += 600
    img += rng.normal(0, 40, img.shape).astype(np.float32)
    img[:30], img[-25:], img[:, :20], img[:, -35:] = 4000, 4000, 4000, 4000
    return np.clip(img, 0, 4095).astype(np.uint16)


def _burn(img: np.ndarray) -> list[np.ndarray]:
    """Draw LINES into img; each line's ink (pixels moved by more than 250 of 4095)."""
    inks = []
    for text, size, (y, x), level in LINES:
        layer = Image.new("L", (COLS, ROWS), 0)
        ImageDraw.Draw(layer).text((x, y), text, fill=255, font=_font(size))
        alpha = np.asarray(layer, dtype=np.float32) / 255.0
        if level is None:
            level = min(4095, int(np.percentile(img[alpha > 0], 90)) + 1000)
        before = img.copy()
        img[...] = np.clip(np.rint(img * (1 - alpha) + level * alpha), 0, 4095).astype(np.uint16)
        inks.append(np.abs(img.astype(np.int32) - before) > 250)
    return inks


@pytest.fixture(scope="module")
def radiograph() -> tuple[np.ndarray, list[np.ndarray]]:
    """The radiograph (1, ROWS, COLS) uint16 and each line's ink mask."""
    img = _chest(11)
    inks = _burn(img)
    return img[np.newaxis], inks


@pytest.fixture(scope="module")
def cine() -> tuple[np.ndarray, np.ndarray]:
    """Four 600x800 RGB frames of speckle with text that moves per frame, and the ink of
    each frame's name line."""
    rng = np.random.default_rng(12)
    frames, inks = [], []
    for f in range(4):
        sp = rng.rayleigh(1.0, size=(600, 800)).astype(np.float32)
        grey = np.clip(sp * 60, 0, 255).astype(np.uint8)
        grey[:, :60] = 0
        name = Image.new("L", (800, 600), 0)
        ImageDraw.Draw(name).text((10 + 40 * f, 8), "SMITH^JOHN  ID 4471", fill=255, font=_font(16))
        other = Image.new("L", (800, 600), 0)
        ImageDraw.Draw(other).text((500, 560 - 30 * f), "GAIN 45 DR 60", fill=255, font=_font(12))
        a = np.asarray(name, dtype=np.float32) / 255
        b = np.asarray(other, dtype=np.float32) / 255
        g = grey * (1 - a) + 255 * a
        g = g * (1 - b) + 230 * b
        rgb = np.repeat(np.rint(g)[..., np.newaxis], 3, axis=-1).astype(np.int16)
        rgb[..., 0] += rng.integers(-3, 4, size=rgb.shape[:2], dtype=np.int16)
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
        inks.append(a >= 0.25)
    return np.ascontiguousarray(np.stack(frames)), np.stack(inks)


@contextlib.contextmanager
def _on(backend: str) -> Iterator[None]:
    """Run the block on ``backend``, restoring the active one after it."""
    before = _core.dispatch.active()
    medveil.set_backend(backend)
    try:
        yield
    finally:
        medveil.set_backend(before)


def _portable(fn: Callable[[], T]) -> T:
    """fn() computed on the scalar backend."""
    with _on("scalar"):
        return fn()


def _masked(dets: list[Detection], shape: tuple[int, int], frame: int = 0) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for d in dets:
        if d.masked and d.frame == frame:
            m[d.row0 : d.row1, d.col0 : d.col1] = True
    return m


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_radiograph_same_on_every_backend_and_every_line_masked(
    backend: str, radiograph: tuple[np.ndarray, list[np.ndarray]], photometric: str
) -> None:
    img, inks = radiograph
    kw = dict(photometric=photometric, bits_stored=12)
    grey = grey_frames(img, **kw)
    want_grey = _to_u8_reference(img, 12, False)
    if photometric == "MONOCHROME1":
        want_grey = 255 - want_grey
    np.testing.assert_array_equal(grey, want_grey)
    det = TextDetector()
    got = det.detect(grey)
    assert got == _portable(lambda: det.detect(grey_frames(img, **kw)))
    masked = _masked(got, (ROWS, COLS))
    for (text, size, _, _), ink in zip(LINES, inks, strict=True):
        assert ink.any()
        assert not (ink & ~masked).any(), f"{size} px line {text!r} not fully masked"
    # Text-free areas stay mostly unmasked (the boxes are line-sized).
    assert masked.mean() < 0.05


def test_radiograph_screen_boxes_and_threshold(
    backend: str, radiograph: tuple[np.ndarray, list[np.ndarray]]
) -> None:
    img, _ = radiograph
    grey = grey_frames(img, bits_stored=12)
    kw = dict(
        threshold=30,
        radius=7,
        noise_factor=NOISE_FACTOR,
        noise_step=NOISE_STEP,
        noise_max=NOISE_MAX,
        min_height=4,
        max_height=120,
    )
    boxes, scores, used = _core.textscreen.screen(grey, **kw)
    want_b, want_s, want_used = _portable(lambda: _core.textscreen.screen(grey, **kw))
    np.testing.assert_array_equal(boxes, want_b)
    np.testing.assert_array_equal(scores, want_s)
    assert used.tolist() == want_used.tolist() == [noise_threshold(grey[0], 30)]


def test_noisy_radiograph_threshold_counts(backend: str) -> None:
    # A noise level that lifts the threshold: the median is found by counting millions of
    # differences, past many flushes of the vector byte counters.
    rng = np.random.default_rng(13)
    img = rng.normal(2000, 300, size=(1, ROWS, COLS)).clip(0, 4095).astype(np.uint16)
    grey = grey_frames(img, bits_stored=12)
    _, _, used = _core.textscreen.screen(
        grey,
        threshold=5,
        noise_factor=NOISE_FACTOR,
        noise_step=NOISE_STEP,
        noise_max=NOISE_MAX,
        scores=False,
    )
    assert used.tolist() == [noise_threshold(grey[0], 5)]
    assert used[0] > 5


def test_cine_same_on_every_backend_and_name_masked(
    backend: str, cine: tuple[np.ndarray, np.ndarray]
) -> None:
    stack, inks = cine
    det = TextDetector()
    got = det.detect(stack)
    assert got == _portable(lambda: det.detect(stack))
    for f in range(stack.shape[0]):
        assert inks[f].any()
        assert _masked(got, stack.shape[1:3], f)[inks[f]].all(), f
