"""Burned-in text screen: candidate text-line boxes in 8-bit frames (C++ core)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medveil import _core

Polarity = Literal["both", "bright", "dark"]


@dataclass(frozen=True)
class TextBox:
    """A candidate text line on one frame: half-open rows [row0, row1), cols [col0, col1)."""

    frame: int
    row0: int
    row1: int
    col0: int
    col1: int
    score: float
    glyphs: int = 0


def to_uint8_frames(image: np.ndarray) -> np.ndarray:
    """Return image as a C-contiguous uint8 (frames, rows, cols) stack for the screen."""
    a = np.asarray(image)
    if a.ndim == 4:
        if a.shape[-1] != 3:
            raise ValueError(f"4-d images must be (frames, rows, cols, 3) RGB, got shape {a.shape}")
        a = _luminance(a)
    if a.ndim == 2:
        a = a[np.newaxis]
    if a.ndim != 3:
        raise ValueError(
            f"image must be (rows, cols), (frames, rows, cols) or RGB, got shape {a.shape}"
        )
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype in (np.uint16, np.int16, np.float32, np.float64):
        return _window(a)
    raise TypeError(
        f"image dtype {a.dtype} is not supported; use uint8, uint16, int16 or RGB uint8"
    )


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB stack in uint8, by the core: the detector's own conversion."""
    if rgb.dtype != np.uint8:
        raise TypeError(f"RGB images must be uint8, got {rgb.dtype}")
    return _core.textscreen.luma(rgb)


def _window(a: np.ndarray) -> np.ndarray:
    """Map each frame's min..max range linearly onto 0..255."""
    f = a.astype(np.float64)
    lo = f.min(axis=(1, 2), keepdims=True)
    hi = f.max(axis=(1, 2), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.ascontiguousarray(np.rint((f - lo) * (255.0 / span)).astype(np.uint8))


def find_text_boxes(
    image: np.ndarray,
    *,
    polarity: Polarity = "both",
    min_height: int = 4,
    max_height: int = 120,
    threshold: int = 40,
    radius: int = 7,
) -> list[TextBox]:
    """Find candidate burned-in text lines in a 2-d, 3-d (frames) or RGB image.

    ``radius`` sets the local-mean window ((2 radius + 1) squared): it must be wider than
    the strokes, so bold or large text needs a larger one.
    """
    if polarity not in ("both", "bright", "dark"):
        raise ValueError(f"polarity must be 'both', 'bright' or 'dark', got {polarity!r}")
    frames = to_uint8_frames(image)
    boxes, scores = _core.textscreen.find_text_boxes(
        frames,
        bright=polarity in ("both", "bright"),
        dark=polarity in ("both", "dark"),
        min_height=min_height,
        max_height=max_height,
        threshold=threshold,
        radius=radius,
    )
    return [
        TextBox(int(b[0]), int(b[1]), int(b[2]), int(b[3]), int(b[4]), float(s), int(b[5]))
        for b, s in zip(boxes.tolist(), scores.tolist(), strict=True)
    ]
