"""Burned-in text screen (C++ core) vs a numpy/scipy implementation of the same algorithm.

Run: python bench/bench_textscreen.py [--frames 60] [--repeat 5] [--peer-frames 4]

Corpus: a (frames, 600, 800) uint8 ultrasound-like stack (Rayleigh speckle inside a
sector, black outside) with a few lines of text rendered by Pillow in the corners of every
frame. MB/s counts 8-bit input pixels per second on one thread (the kernel is single
threaded), for every SIMD backend of this machine; medians over the repetitions. The
numpy/scipy peer runs on the first --peer-frames frames only (it is slow) and its boxes
are compared with the core's first.

Then the text detector's own use of the screen (``screen``: per-frame noise threshold in
the core, no scores) on the same stack as grey and as interleaved RGB (the core computes
the luma a frame at a time), against what the detector did before the luma and the noise
estimate moved into the core: numpy luma and numpy noise estimate, then the grey screen.

Last, the conversion of 16-bit frames to the screen's uint8 (``window``: each frame's
min..max onto 0..255) per backend, against the numpy float32 code it replaced, on a
3000x2500 radiograph and a 60-slice CT stack; MB/s counts 16-bit input bytes per CPU-second.
"""

from __future__ import annotations

import argparse
import time

import medveil
import numpy as np
from medveil import _core
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def us_stack(frames: int, rows: int = 600, cols: int = 800, seed: int = 0) -> np.ndarray:
    """Speckle in a sector with rendered annotation text on every frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    ang = np.arctan2(xx - cols / 2, yy + 40)
    rad = np.hypot(xx - cols / 2, yy + 40)
    sector = (np.abs(ang) < 0.6) & (rad > 80) & (rad < rows - 20)
    layer = Image.new("L", (cols, rows), 0)
    draw = ImageDraw.Draw(layer)
    draw.text((10, 8), "ACME US 3000  LIVER", fill=255, font=ImageFont.load_default(size=16))
    draw.text((10, 30), "DOE^JANE  1970-01-01", fill=255, font=ImageFont.load_default(size=14))
    draw.text((600, 560), "MI 1.1 TIS 0.4", fill=230, font=ImageFont.load_default(size=12))
    text = np.asarray(layer)
    out = np.empty((frames, rows, cols), dtype=np.uint8)
    for f in range(frames):
        speckle = np.clip(rng.rayleigh(28.0, size=(rows, cols)), 0, 255).astype(np.uint8)
        out[f] = np.maximum(np.where(sector, speckle, 0).astype(np.uint8), text)
    return out


def peer_frame(
    img: np.ndarray, threshold: int = 40, r: int = 7, min_h: int = 4, max_h: int = 120
) -> list:
    """The screen of textscreen.hpp in numpy/scipy: [(row0, row1, col0, col1, glyphs, score)]."""
    h, w = img.shape
    p = np.zeros((h + 1, w + 1), dtype=np.int32)
    p[1:, 1:] = img.astype(np.int32).cumsum(0).cumsum(1)
    ys, xs = np.arange(h), np.arange(w)
    y0, y1 = np.maximum(ys - r, 0), np.minimum(ys + r, h - 1) + 1
    x0, x1 = np.maximum(xs - r, 0), np.minimum(xs + r, w - 1) + 1
    s = p[np.ix_(y1, x1)] - p[np.ix_(y0, x1)] - p[np.ix_(y1, x0)] + p[np.ix_(y0, x0)]
    n = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    pn = img.astype(np.int32) * n
    contrast = np.abs(pn - s) / n
    out = []
    for mask in (pn > s + threshold * n, pn + threshold * n < s):
        labels, k = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        if k == 0:
            continue
        area = np.bincount(labels.ravel(), minlength=k + 1)[1:]
        csum = np.bincount(labels.ravel(), weights=contrast.ravel(), minlength=k + 1)[1:]
        sl = ndimage.find_objects(labels)
        bb = np.array([(a.start, a.stop, b.start, b.stop) for a, b in sl], dtype=np.int64)
        gh, gw = bb[:, 1] - bb[:, 0], bb[:, 3] - bb[:, 2]
        keep = (gh >= min_h) & (gh <= max_h) & (gw <= 4 * gh) & (10 * area >= gh * gw)
        keep &= (20 * area <= 19 * gh * gw) | (4 * gw <= gh)
        g, gh, gc = bb[keep], gh[keep], (csum / area)[keep]
        m = len(g)
        if m < 2:
            continue
        lo = np.minimum(gh[:, None], gh[None, :])
        hi = np.maximum(gh[:, None], gh[None, :])
        overlap = np.minimum(g[:, None, 1], g[None, :, 1]) - np.maximum(
            g[:, None, 0], g[None, :, 0]
        )
        gap = np.maximum(g[None, :, 2] - g[:, None, 3], g[:, None, 2] - g[None, :, 3])
        link = (hi <= 2 * lo) & (2 * overlap >= lo) & (2 * gap < 3 * hi)
        i, j = np.nonzero(link)
        _, lab = connected_components(
            coo_matrix((np.ones(len(i)), (i, j)), shape=(m, m)), directed=False
        )
        lines = []
        for li in np.unique(lab):
            sel = lab == li
            if sel.sum() < 2:
                continue
            q = g[sel]
            lines.append(
                (
                    int(q[:, 0].min()),
                    int(q[:, 1].max()),
                    int(q[:, 2].min()),
                    int(q[:, 3].max()),
                    int(sel.sum()),
                    float(gc[sel].sum()),
                )
            )
        out += sorted(lines, key=lambda b: (b[0], b[2], b[1], b[3]))
    return out


def detector_rows(stack: np.ndarray, repeat: int) -> None:
    """The detector's screen on grey and RGB stacks, each backend, vs the numpy front end."""
    from medveil.pixels.text.detect import (
        NOISE_FACTOR,
        NOISE_MAX,
        NOISE_STEP,
        _luma,
        noise_threshold,
    )

    rgb = np.repeat(stack[..., np.newaxis], 3, axis=-1)
    rgb[..., 0] = np.clip(stack.astype(np.int16) + 9, 0, 255)  # channels differ
    kw = dict(
        threshold=30,
        noise_factor=NOISE_FACTOR,
        noise_step=NOISE_STEP,
        noise_max=NOISE_MAX,
        scores=False,
    )
    luma = _luma(rgb)
    want, _, _ = _core.textscreen.screen(luma, **kw)

    def numpy_front_end() -> np.ndarray:
        grey = _luma(rgb)
        thr = np.array([noise_threshold(grey[f], 30) for f in range(len(grey))], np.int32)
        return _core.textscreen.screen(grey, thresholds=thr, scores=False)[0]

    backends = list(_core.dispatch.available())
    before = _core.dispatch.active()
    times: dict[str, list[float]] = {}
    try:
        for _ in range(repeat):
            for b in backends:
                medveil.set_backend(b)
                for label, img in (("grey", luma), ("RGB", rgb)):
                    t0 = time.perf_counter()
                    got, _, _ = _core.textscreen.screen(img, **kw)
                    times.setdefault(f"{b} {label}", []).append(time.perf_counter() - t0)
                    assert np.array_equal(got, want), f"{b} {label} disagrees"
                t0 = time.perf_counter()
                got = numpy_front_end()
                times.setdefault(f"{b} numpy luma+noise, core grey", []).append(
                    time.perf_counter() - t0
                )
                assert np.array_equal(got, want), f"{b} numpy front end disagrees"
    finally:
        medveil.set_backend(before)
    px = luma.size
    print(f"\ndetector screen (noise threshold, no scores) on {rgb.shape} RGB / its luma:")
    for key, ts in times.items():
        t = float(np.median(ts))
        print(f"  {key:34s}: {px / t / 1e6:7.1f} Mpx/s, {1e3 * t / len(luma):6.3f} ms/frame")


def window_rows(repeat: int) -> None:
    """16-bit frames to the screen's uint8 (``window``) per backend, against numpy float32."""
    from medveil.pixels.text.detect import _to_u8_reference

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:3000, 0:2500].astype(np.float32)
    cr = 1800 + 900 * np.cos(xx / 2500 * 3.1) * np.cos(yy / 3000 * 2)
    cr = np.clip(cr + rng.normal(0, 30, cr.shape), 0, 4095).astype(np.uint16)[np.newaxis]
    ct = rng.integers(-1024, 3072, size=(60, 512, 512)).astype(np.int16)
    cases = [("3000x2500 uint16 radiograph", cr, 0, 4095), ("60x512x512 int16 CT", ct, -2048, 2047)]
    print("\n16-bit frames to uint8 for the screen (CPU time, min of the repetitions):")
    before = _core.dispatch.active()
    try:
        for label, a, lo, hi in cases:
            ref = _to_u8_reference(a, 12, lo < 0)
            times: dict[str, list[float]] = {"numpy float32": []}
            for _ in range(repeat):
                t0 = time.process_time()
                _to_u8_reference(a, 12, lo < 0)
                times["numpy float32"].append(time.process_time() - t0)
                for b in _core.dispatch.available():
                    medveil.set_backend(b)
                    t0 = time.process_time()
                    got = _core.textscreen.window(a, clip_lo=lo, clip_hi=hi)
                    times.setdefault(f"core {b}", []).append(time.process_time() - t0)
                    assert np.array_equal(got, ref), f"backend {b} disagrees with numpy"
            for key, ts in times.items():
                t = min(ts)
                print(f"  {label:28s} {key:14s}: {a.nbytes / t / 1e6:8.0f} MB/s, {1e3 * t:6.2f} ms")
    finally:
        medveil.set_backend(before)


def main() -> None:
    """Time the core and the numpy/scipy peer on the same stack and print MB/s."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peer-frames", type=int, default=4)
    args = ap.parse_args()
    stack = us_stack(args.frames)
    boxes, scores = _core.textscreen.find_text_boxes(stack)
    for f in range(min(args.peer_frames, args.frames)):
        sel = boxes[:, 0] == f
        got = [tuple(b[1:]) for b in boxes[sel].tolist()]
        want = peer_frame(stack[f])
        assert got == [w[:5] for w in want], f"frame {f}: core and peer boxes disagree"
        assert np.allclose(scores[sel], [w[5] for w in want], rtol=1e-9), f"frame {f}: scores"
    per_frame = len(boxes) / args.frames
    backends = list(_core.dispatch.available())
    before = _core.dispatch.active()
    core_t: dict[str, list[float]] = {b: [] for b in backends}
    peer_t = []
    try:
        for _ in range(args.repeat):
            for b in backends:
                medveil.set_backend(b)
                t0 = time.perf_counter()
                got_b, _ = _core.textscreen.find_text_boxes(stack)
                core_t[b].append(time.perf_counter() - t0)
                assert np.array_equal(got_b, boxes), f"backend {b} disagrees"
            t0 = time.perf_counter()
            for f in range(args.peer_frames):
                peer_frame(stack[f])
            peer_t.append(time.perf_counter() - t0)
    finally:
        medveil.set_backend(before)
    peer_mbs = args.peer_frames * stack[0].nbytes / np.median(peer_t) / 1e6
    print(f"stack {stack.shape} uint8, {per_frame:.1f} boxes/frame, boxes match the peer")
    for b in backends:
        mbs = stack.nbytes / np.median(core_t[b]) / 1e6
        ratio = mbs / peer_mbs
        print(f"medveil core ({b:6s}): {mbs:8.1f} MB/s (one thread), {ratio:6.1f}x numpy/scipy")
    print(f"numpy/scipy          : {peer_mbs:8.1f} MB/s")
    detector_rows(stack, args.repeat)
    window_rows(args.repeat)


if __name__ == "__main__":
    main()
