"""Text rendered with Pillow at known places, for the detection tests."""

from __future__ import annotations

import glob
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont


@lru_cache(maxsize=8)
def font(size: int, mono: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A DejaVu font of ``size`` px when installed, else Pillow's built-in scalable font."""
    name = "DejaVuSansMono.ttf" if mono else "DejaVuSans.ttf"
    found = glob.glob(f"/usr/share/fonts/**/{name}", recursive=True)
    if found:
        return ImageFont.truetype(found[0], size)
    return ImageFont.load_default(size=size)


def draw_text(
    img: np.ndarray, text: str, row: int, col: int, *, size: int = 16, value: int = 255
) -> tuple[int, int, int, int]:
    """Draw ``text`` into a 2-d uint8 frame in place; return the ink box (r0, r1, c0, c1)."""
    layer = Image.new("L", (img.shape[1], img.shape[0]), 0)
    ImageDraw.Draw(layer).text((col, row), text, fill=255, font=font(size))
    alpha = np.asarray(layer).astype(np.float64) / 255.0
    img[...] = np.rint(img * (1.0 - alpha) + value * alpha).astype(img.dtype)
    ys, xs = np.nonzero(alpha >= 0.25)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def speckle(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """An ultrasound-like frame: Rayleigh speckle in a sector, black outside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    ang = np.arctan2(xx - cols / 2, yy + 20)
    rad = np.hypot(xx - cols / 2, yy + 20)
    sector = (np.abs(ang) < 0.6) & (rad > 40) & (rad < rows - 10)
    sp = np.clip(rng.rayleigh(28.0, size=(rows, cols)), 0, 255)
    return np.where(sector, sp, 0).astype(np.uint8)


def covered(regions: list[tuple[int, ...]], box: tuple[int, int, int, int], frame: int) -> bool:
    """True when the Region6 list masks every pixel of ``box`` on ``frame``."""
    r0, r1, c0, c1 = box
    m = np.zeros((r1, c1), dtype=bool)
    for a, b, c, d, f0, f1 in regions:
        if f0 <= frame < f1:
            m[a:b, c:d] = True
    return bool(m[r0:r1, c0:c1].all())
