"""The C++ text screen against a numpy reference, on rendered text and text-free images."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil import _core
from medveil.pixels.text.screen import TextBox, find_text_boxes
from PIL import Image, ImageDraw, ImageFont

from tests.textscreen.reference import reference_boxes


def _blocks_image(seed: int, rows: int, cols: int, noise: int) -> np.ndarray:
    """A background with rows of small bright/dark blocks, like glyphs on a line."""
    rng = np.random.default_rng(seed)
    img = np.full((rows, cols), rng.integers(0, 256), dtype=np.int64)
    if noise:
        img += rng.integers(-noise, noise + 1, size=(rows, cols))
    for _ in range(rng.integers(0, 4)):
        h = int(rng.integers(3, 12))
        y = int(rng.integers(0, max(1, rows - h)))
        x = int(rng.integers(0, cols))
        level = int(rng.integers(0, 256))
        while x < cols:
            w = int(rng.integers(1, 2 * h))
            bh = int(rng.integers(max(1, h // 2), h + 1))
            img[y : y + bh, x : x + w] = level
            if rng.random() < 0.5:  # a hole makes the block's density glyph-like
                img[y + bh // 3 : y + bh // 2 + 1, x + w // 3 : x + w // 2 + 1] = 255 - level
            x += w + int(rng.integers(1, h + 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _core_boxes(img: np.ndarray, **kw: object) -> list[tuple[int, int, int, int, int, float]]:
    """The C++ screen's boxes of one frame in the reference's tuple layout."""
    boxes, scores = _core.textscreen.find_text_boxes(img, **kw)
    return [
        (b[1], b[2], b[3], b[4], b[5], s)
        for b, s in zip(boxes.tolist(), scores.tolist(), strict=True)
    ]


def _assert_same(got: list, want: list) -> None:
    """Boxes and glyph counts equal exactly, scores to rounding."""
    assert [g[:5] for g in got] == [w[:5] for w in want]
    assert [g[5] for g in got] == pytest.approx([w[5] for w in want], rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 48),
    cols=st.integers(1, 64),
    noise=st.sampled_from([0, 0, 5, 40]),
    threshold=st.integers(0, 60),
    radius=st.integers(1, 9),
    min_height=st.integers(1, 6),
    polarity=st.sampled_from([(True, True), (True, False), (False, True)]),
)
def test_matches_reference(
    backend: str,
    seed: int,
    rows: int,
    cols: int,
    noise: int,
    threshold: int,
    radius: int,
    min_height: int,
    polarity: tuple[bool, bool],
) -> None:
    img = _blocks_image(seed, rows, cols, noise)
    kw = dict(
        bright=polarity[0],
        dark=polarity[1],
        min_height=min_height,
        max_height=min_height + 20,
        threshold=threshold,
        radius=radius,
    )
    _assert_same(_core_boxes(img, **kw), reference_boxes(img, **kw))


def test_reference_finds_blocks_sometimes() -> None:
    # Guards the differential test against comparing two empty lists only.
    found = sum(bool(reference_boxes(_blocks_image(s, 48, 64, 0))) for s in range(40))
    assert found >= 5


def _render(
    img: np.ndarray, text: str, xy: tuple[int, int], size: float, fill: int
) -> tuple[int, int, int, int]:
    """Draw text into img in place; return its ink bbox as (row0, row1, col0, col1)."""
    font = ImageFont.load_default(size=size)
    layer = Image.new("L", (img.shape[1], img.shape[0]), 0)
    ImageDraw.Draw(layer).text(xy, text, fill=255, font=font)
    ink = np.asarray(layer).astype(np.float64) / 255.0
    img[...] = np.rint(img * (1.0 - ink) + fill * ink).astype(np.uint8)
    rows = np.flatnonzero((ink > 0.5).any(axis=1))
    cols = np.flatnonzero((ink > 0.5).any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _background(kind: str, rows: int, cols: int, seed: int) -> np.ndarray:
    """Flat, speckle-noise (US-like) or CT-like disc backgrounds."""
    rng = np.random.default_rng(seed)
    if kind == "flat":
        return np.full((rows, cols), 30, dtype=np.uint8)
    if kind == "noise":
        return np.clip(rng.rayleigh(25.0, size=(rows, cols)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:rows, 0:cols]
    r = np.hypot(yy - rows / 2, xx - cols / 2)
    disc = np.where(r < min(rows, cols) * 0.3, 110.0, 5.0) + rng.normal(0, 4, (rows, cols))
    return np.clip(disc, 0, 255).astype(np.uint8)


def _covered(box: TextBox, ink: tuple[int, int, int, int], slack: int = 1) -> bool:
    """True when the box covers the ink bbox (up to antialiasing slack)."""
    r0, r1, c0, c1 = ink
    return (
        box.row0 <= r0 + slack
        and box.row1 >= r1 - slack
        and box.col0 <= c0 + slack
        and box.col1 >= c1 - slack
    )


@pytest.mark.parametrize("kind", ["flat", "noise", "ct"])
@pytest.mark.parametrize("size", [12, 18, 28])
@pytest.mark.parametrize("fill", [255, 0])
def test_rendered_text_is_found(backend: str, kind: str, size: int, fill: int) -> None:
    img = _background(kind, 320, 480, seed=size)
    if fill == 0:
        img = np.maximum(img, 200).astype(np.uint8)  # dark text needs a light background
    ink = _render(img, "PATIENT 12345", (10, 12), size, fill)
    boxes = find_text_boxes(img)
    # A line may split at a wide gap (the word space); the union of boxes covering the
    # ink's rows must span the whole ink bbox.
    on_line = [
        b
        for b in boxes
        if b.row0 < ink[1] and b.row1 > ink[0] and b.col1 > ink[2] and b.col0 < ink[3]
    ]
    assert on_line, boxes
    union = TextBox(
        0,
        min(b.row0 for b in on_line),
        max(b.row1 for b in on_line),
        min(b.col0 for b in on_line),
        max(b.col1 for b in on_line),
        0.0,
    )
    assert _covered(union, ink), (union, ink)
    assert any(b.col1 - b.col0 >= (ink[3] - ink[2]) // 3 for b in on_line)


def test_stack_and_rgb_report_frames(backend: str) -> None:
    stack = np.stack([_background("flat", 120, 200, 0)] * 3)
    ink = _render(stack[1], "ID 998877", (10, 40), 18, 255)
    boxes = find_text_boxes(stack)
    assert {b.frame for b in boxes} == {1}
    assert any(_covered(b, ink) for b in boxes)
    rgb = np.repeat(stack[..., None], 3, axis=-1)
    assert find_text_boxes(rgb) == boxes
    wide = stack.astype(np.uint16) * 16
    assert [b.frame for b in find_text_boxes(wide)] == [b.frame for b in boxes]


@pytest.mark.parametrize("kind", ["gradient", "noise", "ct", "flat"])
def test_text_free_images_give_few_boxes(backend: str, kind: str) -> None:
    if kind == "gradient":
        yy, xx = np.mgrid[0:300, 0:400]
        img = ((yy * 0.5 + xx * 0.3) % 256).astype(np.uint8)
    else:
        img = _background(kind, 300, 400, seed=7)
    boxes = find_text_boxes(img)
    area = sum((b.row1 - b.row0) * (b.col1 - b.col0) for b in boxes)
    assert len(boxes) <= 3
    assert area <= 0.02 * img.size


def test_polarity_selects_passes(backend: str) -> None:
    img = _background("flat", 100, 200, 0)
    _render(img, "ABC DEF", (10, 10), 18, 255)
    bright = find_text_boxes(img, polarity="bright")
    dark = find_text_boxes(img, polarity="dark")
    assert bright
    assert find_text_boxes(img) == bright + dark


def test_errors() -> None:
    ts = _core.textscreen.find_text_boxes
    with pytest.raises(TypeError, match="uint8"):
        ts(np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="ndim"):
        ts(np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        ts(np.zeros((8, 8), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="min_height"):
        ts(np.zeros((8, 8), np.uint8), min_height=5, max_height=4)
    with pytest.raises(ValueError, match="radius"):
        ts(np.zeros((8, 8), np.uint8), radius=0)
    with pytest.raises(ValueError, match="threshold"):
        ts(np.zeros((8, 8), np.uint8), threshold=300)
    with pytest.raises(ValueError, match="polarity"):
        find_text_boxes(np.zeros((8, 8), np.uint8), polarity="light")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="RGB"):
        find_text_boxes(np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        find_text_boxes(np.zeros((8, 8), np.int32))
    assert find_text_boxes(np.zeros((0, 8), np.uint8)) == []
