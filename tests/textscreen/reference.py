"""Plain numpy/scipy re-implementation of the C++ text screen (see textscreen.hpp)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _window_sums(img: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and pixel count of the (2r+1)^2 window clipped to the frame, per pixel."""
    h, w = img.shape
    p = np.zeros((h + 1, w + 1), dtype=np.int64)
    p[1:, 1:] = img.astype(np.int64).cumsum(0).cumsum(1)
    ys = np.arange(h)
    xs = np.arange(w)
    y0, y1 = np.maximum(ys - r, 0), np.minimum(ys + r, h - 1) + 1
    x0, x1 = np.maximum(xs - r, 0), np.minimum(xs + r, w - 1) + 1
    s = p[np.ix_(y1, x1)] - p[np.ix_(y0, x1)] - p[np.ix_(y1, x0)] + p[np.ix_(y0, x0)]
    n = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return s, n


def _find(parent: list[int], i: int) -> int:
    """Union-find root of i."""
    while parent[i] != i:
        i = parent[i]
    return i


def _lines(
    mask: np.ndarray, contrast: np.ndarray, min_h: int, max_h: int
) -> list[tuple[int, int, int, int, int, float]]:
    """Glyph components of mask grouped into lines: (row0, row1, col0, col1, glyphs, score)."""
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    glyphs = []
    for k, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None:
            continue
        comp = labels[sl] == k + 1
        r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        h, w, area = r1 - r0, c1 - c0, int(comp.sum())
        if h < min_h or h > max_h or w > 4 * h:
            continue
        if 10 * area < h * w or (20 * area > 19 * h * w and 4 * w > h):
            continue
        glyphs.append((r0, r1, c0, c1, float(contrast[sl][comp].sum()) / area))
    parent = list(range(len(glyphs)))
    for i, a in enumerate(glyphs):
        for j in range(i + 1, len(glyphs)):
            b = glyphs[j]
            ha, hb = a[1] - a[0], b[1] - b[0]
            lo, hi = min(ha, hb), max(ha, hb)
            overlap = min(a[1], b[1]) - max(a[0], b[0])
            gap = max(b[2] - a[3], a[2] - b[3])
            if hi <= 2 * lo and 2 * overlap >= lo and 2 * gap < 3 * hi:
                parent[_find(parent, j)] = _find(parent, i)
    groups: dict[int, list[tuple[int, int, int, int, float]]] = {}
    for i, g in enumerate(glyphs):
        groups.setdefault(_find(parent, i), []).append(g)
    out = []
    for gs in groups.values():
        if len(gs) < 2:
            continue
        out.append(
            (
                min(g[0] for g in gs),
                max(g[1] for g in gs),
                min(g[2] for g in gs),
                max(g[3] for g in gs),
                len(gs),
                sum(g[4] for g in gs),
            )
        )
    return sorted(out, key=lambda b: (b[0], b[2], b[1], b[3]))


def reference_boxes(
    img: np.ndarray,
    *,
    bright: bool = True,
    dark: bool = True,
    min_height: int = 4,
    max_height: int = 120,
    threshold: int = 40,
    radius: int = 7,
) -> list[tuple[int, int, int, int, int, float]]:
    """Line boxes of one uint8 frame, bright polarity first, as the C++ screen returns them."""
    s, n = _window_sums(img, radius)
    pn = img.astype(np.int64) * n
    contrast = np.abs(pn - s) / n
    out = []
    if bright:
        out += _lines(pn > s + threshold * n, contrast, min_height, max_height)
    if dark:
        out += _lines(pn + threshold * n < s, contrast, min_height, max_height)
    return out
