"""Burned-in text detection: screen every frame, OCR the candidates, plan the boxes to mask.

The pixel cleaner calls :class:`TextDetector` on every image (policy ``pixel_text =
"detect"`` or ``"detect+rules"``), or only on images of the classes that usually carry
burned-in text (``"auto"``: US, SC, XA/RF, document and visible-light classes, and any file
whose BurnedInAnnotation is YES; see :func:`medveil.pixels.cleaner.text_classes`):

1. :func:`screen_input` passes interleaved 8-bit RGB on as it is (the core converts it to
   luma a frame at a time) and turns any other layout the cleaner handles into a (frames,
   rows, cols) uint8 grey stack (:func:`grey_frames`; 16-bit samples are mapped from each
   frame's range onto 0..255 by the core's ``window`` kernel, which was most of the
   detector's cost on a large radiograph when numpy did it);
2. the C++ screen (``medveil._core.textscreen.screen``) finds candidate text lines, with
   its threshold raised on frames whose background is itself noisy (the noise estimate of
   :func:`noise_threshold`, computed in the core);
3. the candidates are checked (not blobs, frame edges or speckle clumps:
   :func:`not_text`, :func:`noisy_surround`) and grown over trailing ink
   (:func:`extend_line`), by the core's ``check_lines`` for all candidates of the stack
   at once; the Python functions are the reference it is tested against;
4. each box is padded (anti-aliased edges, accents and punctuation lie outside the glyph
   components the screen groups);
5. ``mask = "all-text"`` masks every box; ``mask = "identifiers"`` sends each padded box
   (never the whole image) to Tesseract and masks it when the text matches an identifying
   value of the file's own header (:mod:`medveil.textmatch`), or when OCR cannot read it.

OCR text is PHI: only its length leaves this module.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from medveil import _core
from medveil.errors import QuarantineError
from medveil.pixels.text.match import Identifiers

MaskMode = Literal["all-text", "identifiers"]
MASK_MODES = ("all-text", "identifiers")
PIXEL_TEXT_MODES = ("rules", "detect", "detect+rules", "auto")

#: Frames whose background noise (robust sigma of neighbour differences) is high get a
#: threshold of NOISE_FACTOR * sigma instead of the screen's base threshold, so speckle
#: and dithering are not taken for glyphs.
NOISE_FACTOR = 2.0
#: Rows sampled for the noise estimate (every NOISE_STEP-th row).
NOISE_STEP = 4
#: The noise never raises the threshold above this.
NOISE_MAX = 200
#: A line grows sideways over ink at most this many line heights away, ... (8, not 4: in
#: small monospaced text a surname's glyphs touch and the screen sees no glyph there, so
#: the line must grow over the whole word; "OKONKWO," at 10 px is 7 line heights wide.
#: bench/README.md, Release rate, has what it costs.)
EXTEND_LINES = 8
#: ... across gaps of at most this many line heights; never more than EXTEND_MAX px
#: (tall candidates are more often drawings than text).
GAP_LINES = 2
EXTEND_MAX = 128
#: Candidates with more glyphs than this skip the shape and noise checks.
CHECK_GLYPHS = 4
#: Candidates in noise are kept when they have this many glyphs ...
MIN_GLYPHS_IN_NOISE = 4
#: ... or when their ink stands out by this many sigma.
STRONG_FACTOR = 4.0
#: Candidate lines narrower than this fraction of their height are not text.
NARROW = 0.2
#: Two-glyph (or 40 px tall) candidates with less ink than this fraction of their box
#: are the edges of drawn frames and panels.
SPARSE_INK = 0.08
#: Candidate lines whose stroke width exceeds this fraction of their height are blobs.
BLOB_STROKE = 0.3
#: OCR reading fewer letters and digits than this share of the glyphs the screen counted
#: counts as unreadable (and is masked).
MIN_READ = 0.4
#: OCR whose mean word confidence is below this counts as unreadable (and is masked).
MIN_CONF = 50.0
#: The check constants as the core's check_lines takes them.
CHECKS = dict(
    check_glyphs=CHECK_GLYPHS,
    min_glyphs_in_noise=MIN_GLYPHS_IN_NOISE,
    narrow=NARROW,
    sparse_ink=SPARSE_INK,
    blob_stroke=BLOB_STROKE,
    noise_factor=NOISE_FACTOR,
    strong_factor=STRONG_FACTOR,
    extend_lines=EXTEND_LINES,
    gap_lines=GAP_LINES,
    extend_max=EXTEND_MAX,
)
#: Text height OCR is given (Tesseract reads best at ~30-40 px per line).
OCR_HEIGHT = 40


@dataclass(frozen=True)
class Detection:
    """A detected text line: padded box on one frame, and whether it is masked.

    ``text_len`` is the number of non-blank characters OCR read (None when no OCR ran);
    ``why`` says why it is masked or kept: "all-text", "identifier", "unreadable" (OCR read
    nothing, or much less than the box holds), "same line" (another piece of the line is
    an identifier) or "kept".
    """

    frame: int
    row0: int
    row1: int
    col0: int
    col1: int
    masked: bool
    why: str
    text_len: int | None = None

    def record(self) -> dict[str, object]:
        """A JSON-ready description for the run records (no OCR text: it is PHI)."""
        return {
            "frame": self.frame,
            "box": [self.row0, self.row1, self.col0, self.col1],
            "source": "detect",
            "masked": self.masked,
            "why": self.why,
            "text_len": self.text_len,
        }


#: A grey frame as the checks read it: a uint8 (rows, cols) array, or an RGB frame whose
#: slices come out as their luma (:class:`_LumaFrame`).
GreyFrame: TypeAlias = "np.ndarray | _LumaFrame"


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of (frames, rows, cols, 3) uint8 samples, 16-bit integer arithmetic.

    Frame by frame into two reused buffers: whole-stack temporaries of a long cine cost
    more in page faults than the arithmetic.
    """
    out = np.empty(rgb.shape[:-1], dtype=np.uint8)
    acc = np.empty(rgb.shape[1:-1], dtype=np.uint16)
    tmp = np.empty_like(acc)
    for f in range(rgb.shape[0]):
        frame = rgb[f]
        np.multiply(frame[..., 0], 77, out=acc, dtype=np.uint16, casting="unsafe")
        np.multiply(frame[..., 1], 150, out=tmp, dtype=np.uint16, casting="unsafe")
        acc += tmp
        np.multiply(frame[..., 2], 29, out=tmp, dtype=np.uint16, casting="unsafe")
        acc += tmp
        acc += 128
        acc >>= 8
        np.copyto(out[f], acc, casting="unsafe")
    return out


def _to_u8(a: np.ndarray, bits_stored: int, signed: bool, *, invert: bool = False) -> np.ndarray:
    """Scale each frame's value range onto 0..255 (values outside BitsStored clipped).

    ``invert`` gives 255 minus that (MONOCHROME1 as displayed). 16-bit samples go through
    the core's kernel, which computes :func:`_to_u8_reference`'s float32 arithmetic bit for
    bit in one pass per frame: numpy's version of it (a float32 copy, clip, min, max,
    scale, round, cast) was most of the detector's cost on a large radiograph.
    """
    if a.dtype == np.uint8 and bits_stored >= 8:
        out = np.ascontiguousarray(a)
        return 255 - out if invert else out
    if a.dtype.kind in "iu" and a.dtype.itemsize == 2 and 1 <= bits_stored <= 16 and a.ndim == 3:
        top = 1 << (bits_stored - 1 if signed else bits_stored)
        lo_v, hi_v = (-top, top - 1) if signed else (0, top - 1)
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        out16: np.ndarray = _core.textscreen.window(
            np.ascontiguousarray(a), clip_lo=lo_v, clip_hi=hi_v, invert=invert
        )
        return out16
    out = _to_u8_reference(a, bits_stored, signed)
    return 255 - out if invert else out


def _to_u8_reference(a: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """:func:`_to_u8` in numpy (float32), for every dtype; the core's kernel is tested on it."""
    top = 1 << (bits_stored - 1 if signed else bits_stored)
    lo_v, hi_v = (-top, top - 1) if signed else (0, top - 1)
    f = np.clip(a.astype(np.float32), lo_v, hi_v)
    lo = f.min(axis=(1, 2), keepdims=True)
    hi = f.max(axis=(1, 2), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)
    f -= lo
    f *= 255.0 / span
    return np.ascontiguousarray(np.rint(f).astype(np.uint8))


def grey_frames(
    arr: np.ndarray,
    *,
    planar: bool = False,
    subsampled: bool = False,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 8,
    signed: bool = False,
) -> np.ndarray:
    """A (frames, rows, cols) uint8 grey stack of pixels in the pixel cleaner's layout.

    Layouts: (f, r, c) grey; (f, r, c, s) interleaved; (f, s, r, c) planar; (f, r, c/2, 4)
    Y Y Cb Cr 4:2:2. For YBR colour the Y plane is the grey image; RGB goes through luma.
    """
    a = np.asarray(arr)
    if subsampled:
        f, r, half, _ = a.shape
        return np.ascontiguousarray(a[..., :2]).reshape(f, r, half * 2).astype(np.uint8)
    if a.ndim == 4:
        if planar:
            a = np.moveaxis(a, 1, -1)
        if photometric.startswith("YBR"):
            a = a[..., 0]
        elif a.shape[-1] >= 3 and a.dtype == np.uint8:
            return _luma(a[..., :3])
        else:
            a = a[..., :3].mean(axis=-1) if a.shape[-1] >= 3 else a[..., 0]
    if a.ndim == 2:
        a = a[np.newaxis]
    # MONOCHROME1 as displayed (the screen looks for both polarities anyway).
    return _to_u8(a, bits_stored, signed, invert=photometric == "MONOCHROME1")


def screen_input(
    arr: np.ndarray,
    *,
    planar: bool = False,
    subsampled: bool = False,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 8,
    signed: bool = False,
) -> np.ndarray:
    """The stack the screen reads: interleaved 8-bit RGB as it is, else :func:`grey_frames`.

    The core converts RGB to luma a frame at a time with the formula of :func:`_luma`, so
    a cine is never converted (or copied, when contiguous) as a whole.
    """
    a = np.asarray(arr)
    if (
        a.ndim == 4
        and not planar
        and not subsampled
        and not photometric.startswith("YBR")
        and a.shape[-1] == 3
        and a.dtype == np.uint8
    ):
        return np.ascontiguousarray(a)
    return grey_frames(
        a,
        planar=planar,
        subsampled=subsampled,
        photometric=photometric,
        bits_stored=bits_stored,
        signed=signed,
    )


class _GreyFrames:
    """Grey frames of a screen input, for the candidate checks and OCR crops.

    A grey stack is its own; of RGB, only the regions the checks read are converted.
    """

    def __init__(self, stack: np.ndarray) -> None:
        self.stack = stack

    def __getitem__(self, f: int) -> np.ndarray | _LumaFrame:
        """The uint8 (rows, cols) grey frame f (RGB: a view converting what is sliced)."""
        frame: np.ndarray = self.stack[f]
        return frame if self.stack.ndim == 3 else _LumaFrame(frame)


class _LumaFrame:
    """One RGB frame seen as grey: slicing it returns the luma of the slice only.

    The checks read a few line heights around each candidate; converting whole frames
    for them cost more than the checks.
    """

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb
        self.shape = rgb.shape[:2]

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        """Luma (uint8) of rgb[key] for a pair of row and column slices."""
        return _core.textscreen.luma(self.rgb[key])


def noise_threshold(frame: np.ndarray, base: int) -> int:
    """The screen threshold for one uint8 frame: base, or more on a noisy background."""
    sample = frame[::NOISE_STEP]
    d = np.abs(np.diff(sample.astype(np.int16), axis=1)).ravel()
    if d.size == 0:
        return base
    # Median of |neighbour difference| / (0.6745 * sqrt 2) estimates the noise sigma; flat
    # areas (zero differences) pull it down, which is right: text there is easy to see.
    med = float(np.bincount(d, minlength=1).cumsum().searchsorted(d.size / 2))
    sigma = med / 0.9539
    return max(base, min(NOISE_MAX, int(np.ceil(NOISE_FACTOR * sigma))))


def _median(a: np.ndarray) -> float:
    """np.median of a non-empty array (same arithmetic) by a partial sort: the checks run
    per candidate line, where np.median's own overhead outweighed its work."""
    a = a.ravel()
    n = a.size
    if n == 0:
        return float(np.median(a))
    k = n // 2
    if n % 2:
        return float(np.partition(a, k)[k])
    part = np.partition(a, (k - 1, k))
    return (float(part[k - 1]) + float(part[k])) / 2


def _quantile(a: np.ndarray, q: float) -> float:
    """np.quantile(a, q) of a non-empty array, linear method, with numpy's arithmetic."""
    a = a.ravel()
    n = a.size
    if n == 0:
        return float(np.quantile(a, q))
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return float(a.max())
    lo = int(np.floor(virtual))
    part = np.partition(a, (lo, lo + 1))
    x, y = float(part[lo]), float(part[lo + 1])
    gamma = virtual - lo
    d = y - x
    # numpy's _lerp: from the nearer end, so that gamma 1 gives y exactly.
    return y - d * (1 - gamma) if gamma >= 0.5 else x + d * gamma


def _median_run(ink: np.ndarray) -> float:
    """Median length of the runs of True along the last axis (0 when there are none)."""
    edges = np.diff(np.pad(ink, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts = np.nonzero(edges == 1)
    stops = np.nonzero(edges == -1)
    if starts[0].size == 0:
        return 0.0
    return _median(stops[1] - starts[1])


def not_text(frame: GreyFrame, box: tuple[int, int, int, int], glyphs: int) -> bool:
    """True when a candidate line is solid blobs or a pair of bars, not strokes of text.

    Text strokes are thin for their line: the stroke width (the smaller of the median
    horizontal and vertical ink run) stays below ~0.25 of the line height even in black
    weights; filled discs and ellipses have runs close to their diameter. And two glyphs
    that leave nearly all of their box empty are two edges of a drawn frame or panel.
    """
    r0, r1, c0, c1 = box
    h = r1 - r0
    if c1 - c0 < NARROW * h:
        return True  # two glyphs side by side are never this narrow: stacked edges
    c = frame[r0:r1, c0:c1].astype(np.int16)
    # The background level from the rows just outside the box: inside, a dense bold
    # line may have more ink than background.
    ring = np.concatenate(
        [frame[max(0, r0 - 2) : r0, c0:c1].ravel(), frame[r1 : r1 + 2, c0:c1].ravel()]
    )
    bg = int(_median(ring if ring.size else c))
    dev = np.abs(c - bg)
    top = int(dev.max())
    if top < 20:
        return False
    ink = dev > top // 2
    if glyphs <= 2:
        # Two glyphs need two columns of ink with a gap between them; one piece of ink
        # means the screen paired the background around a single mark (an "L" marker).
        cols = np.flatnonzero(ink.any(axis=0))
        if cols.size == 0 or int((np.diff(cols) > 1).sum()) == 0:
            return True
    if h < 12:
        return False
    if (glyphs <= 2 or h >= 40) and float(ink.mean()) < SPARSE_INK:
        return True
    width = min(_median_run(ink), _median_run(ink.T))
    return width >= 6 and width > BLOB_STROKE * h


def noisy_surround(
    frame: GreyFrame, box: tuple[int, int, int, int], threshold: int, glyphs: int
) -> bool:
    """True when a candidate is more likely a clump of noise than a line of text.

    The noise is measured on the bands of one line height above and below the box (text
    on a flat background has none there; speckle does). In noise, a candidate is kept
    when the screen's threshold was above NOISE_FACTOR sigma of that noise, when it has
    MIN_GLYPHS_IN_NOISE glyphs or more (speckle rarely lines up three blobs of one size),
    or when its ink contrast is STRONG_FACTOR sigma or more.
    """
    if glyphs >= MIN_GLYPHS_IN_NOISE:
        return False
    r0, r1, c0, c1 = box
    h = r1 - r0
    bands = [frame[max(0, r0 - h) : r0, c0:c1], frame[r1 : r1 + h, c0:c1]]
    diffs = [np.abs(np.diff(b.astype(np.int16), axis=1)).ravel() for b in bands if b.size]
    d = np.concatenate(diffs) if diffs else np.zeros(0, dtype=np.int16)
    if d.size < 16:
        return False
    # The upper quartile, not the median: a band half on the black border of an image and
    # half in its speckle must count as noisy.
    sigma = _quantile(d, 0.75) / 0.9539
    if threshold >= NOISE_FACTOR * sigma:
        return False
    crop = frame[r0:r1, c0:c1].astype(np.int16)
    contrast = _quantile(np.abs(crop - _median(crop)), 0.95)
    return contrast < STRONG_FACTOR * sigma


def extend_line(
    frame: GreyFrame, box: tuple[int, int, int, int], threshold: int
) -> tuple[int, int, int, int]:
    """Grow a line sideways over ink in its rows, across gaps of up to GAP_LINES heights.

    The screen joins glyphs across gaps of 1.5 heights; a last glyph after a colon and
    a space ("Se: 3") or a word after a wide space is left out, as are marks too small
    to be glyphs ("-", "."). Growth stops after EXTEND_LINES heights on each side.
    """
    r0, r1, c0, c1 = box
    h = r1 - r0
    cols = frame.shape[1]
    reach = min(EXTEND_LINES * h, EXTEND_MAX)
    lo, hi = max(0, c0 - reach), min(cols, c1 + reach)
    band = frame[r0:r1, lo:hi].astype(np.int16)
    ink = np.asarray((np.abs(band - int(_median(band))) > threshold).any(axis=0))
    gap = min(GAP_LINES * h, EXTEND_MAX // 2)
    right = c1 - lo
    x = right
    while x < hi - lo and x - right <= gap:
        if ink[x]:
            right = x + 1
        x += 1
    left = c0 - lo
    x = left - 1
    while x >= 0 and left - 1 - x <= gap:
        if ink[x]:
            left = x
        x -= 1
    return r0, r1, lo + left, lo + right


def pad_box(
    row0: int, row1: int, col0: int, col1: int, rows: int, cols: int
) -> tuple[int, int, int, int]:
    """Grow a screen box to cover the whole rendered line, clipped to the frame."""
    h = row1 - row0
    pv = max(2, (h + 2) // 3)
    ph = max(3, h)  # a trailing glyph after a wide space ("Se: 3") is not in the line
    return max(0, row0 - pv), min(rows, row1 + pv), max(0, col0 - ph), min(cols, col1 + ph)


def _merge(
    boxes: list[tuple[int, int, int, int, int]],
) -> list[tuple[int, int, int, int, int]]:
    """Union (row0, row1, col0, col1, glyphs) boxes that overlap, keeping the most glyphs.

    The screen reports a line once per polarity (and per window radius), plus the holes
    of its letters; repeated until stable.
    """
    out = sorted(boxes)
    changed = True
    while changed:
        changed = False
        merged: list[tuple[int, int, int, int, int]] = []
        for b in out:
            for i, m in enumerate(merged):
                if b[0] < m[1] and m[0] < b[1] and b[2] < m[3] and m[2] < b[3]:
                    merged[i] = (
                        min(b[0], m[0]),
                        max(b[1], m[1]),
                        min(b[2], m[2]),
                        max(b[3], m[3]),
                        max(b[4], m[4]),
                    )
                    changed = True
                    break
            else:
                merged.append(b)
        out = sorted(merged)
    return out


@functools.lru_cache(maxsize=1)
def ocr_available() -> bool:
    """True when pytesseract and the tesseract binary (with English data) are installed."""
    try:
        import pytesseract
    except ImportError:
        return False
    try:
        pytesseract.get_tesseract_version()
    except Exception:
        return False
    return True


def ocr_line(crop: np.ndarray) -> str:
    """OCR a padded text-line crop (uint8 grey) with Tesseract; returns the text."""
    return ocr_read(crop)[0]


def ocr_read(crop: np.ndarray) -> tuple[str, float]:
    """OCR a text-line crop with Tesseract: the words read and their mean confidence (0-100).

    Page segmentation mode 6 (a block of text): a crop usually holds one line, but two
    lines close together can come as one box, and mode 7 (one line) garbles those.
    """
    import pytesseract
    from PIL import Image

    img = np.asarray(crop, dtype=np.uint8)
    # Low-contrast text (grey on grey, coloured on coloured) reads better stretched.
    lo, hi = (float(v) for v in np.percentile(img, [1, 99]))
    if hi > lo:
        img = np.clip((img.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255)
        img = img.astype(np.uint8)
    # Tesseract wants dark text on a light page: the background dominates a line crop.
    if np.median(img) < 128:
        img = 255 - img
    h = img.shape[0]
    scale = max(1.0, min(4.0, OCR_HEIGHT / max(1, h) * 1.5))
    pil = Image.fromarray(np.ascontiguousarray(img))
    if scale > 1.0:
        pil = pil.resize(
            (max(1, round(img.shape[1] * scale)), max(1, round(h * scale))),
            Image.Resampling.LANCZOS,
        )
    page = Image.new("L", (pil.width + 20, pil.height + 20), 255)
    page.paste(pil, (10, 10))
    data = pytesseract.image_to_data(
        page, lang="eng", config="--psm 6", output_type=pytesseract.Output.DICT
    )
    words = [
        (str(w), float(c))
        for w, c in zip(data["text"], data["conf"], strict=True)
        if str(w).strip()
    ]
    if not words:
        return "", 0.0
    return " ".join(w for w, _ in words), sum(c for _, c in words) / len(words)


class TextDetector:
    """Finds burned-in text lines and decides which to mask (all, or identifying ones)."""

    def __init__(
        self,
        mask: MaskMode = "all-text",
        *,
        threshold: int = 30,
        min_height: int = 4,
        max_height: int = 120,
        radii: tuple[int, ...] = (7,),
        wide_extra: int = 10,
        ocr: Callable[[np.ndarray], str | tuple[str, float]] | None = None,
    ) -> None:
        """Screen with ``threshold`` and each window radius in ``radii``.

        Radii after the first (bold and large text, whose strokes fill the small window)
        use ``threshold + wide_extra``. ``ocr`` overrides Tesseract (tests) and returns the
        text or (text, mean confidence 0-100); None uses :func:`ocr_read` when installed.
        """
        if mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}, got {mask!r}")
        self.mask = mask
        self.threshold = threshold
        self.min_height = min_height
        self.max_height = max_height
        self.radii = radii
        self.wide_extra = wide_extra
        self._ocr = ocr

    def screen(self, frames: np.ndarray) -> list[tuple[int, int, int, int, int]]:
        """Padded candidate boxes (frame, row0, row1, col0, col1) of a uint8 stack."""
        _, rows, cols = frames.shape[:3]
        return [
            (f, *pad_box(r0, r1, c0, c1, rows, cols)) for f, r0, r1, c0, c1 in self.lines(frames)
        ]

    def lines(self, frames: np.ndarray) -> list[tuple[int, int, int, int, int]]:
        """Unpadded candidate lines (frame, row0, row1, col0, col1), both polarities merged."""
        return [line[:5] for line in self.lines_with_glyphs(frames)]

    def _screen(
        self, frames: np.ndarray
    ) -> tuple[list[dict[int, list[tuple[int, int, int, int, int]]]], list[int]]:
        """Core screen boxes per radius and frame, and each frame's threshold."""
        found: list[dict[int, list[tuple[int, int, int, int, int]]]] = [{} for _ in self.radii]
        # The detector never reads the screen's scores: not computing them saves a pass
        # over every marked pixel.
        # The first radius estimates each frame's noise threshold in the core; the wider
        # windows look for large and bold text with a higher one: they see more of the
        # background's texture too.
        boxes, _, used = _core.textscreen.screen(
            frames,
            threshold=self.threshold,
            radius=self.radii[0],
            noise_factor=NOISE_FACTOR,
            noise_step=NOISE_STEP,
            noise_max=NOISE_MAX,
            min_height=self.min_height,
            max_height=self.max_height,
            scores=False,
        )
        per_radius = [boxes]
        for radius in self.radii[1:]:
            wide = np.minimum(used.astype(np.int64) + self.wide_extra, 255)
            per_radius.append(
                _core.textscreen.screen(
                    frames,
                    thresholds=wide,
                    radius=radius,
                    min_height=self.min_height,
                    max_height=self.max_height,
                    scores=False,
                )[0]
            )
        for i, bs in enumerate(per_radius):
            for f, r0, r1, c0, c1, glyphs in bs.tolist():
                found[i].setdefault(f, []).append((r0, r1, c0, c1, glyphs))
        return found, used.tolist()

    def lines_with_glyphs(self, frames: np.ndarray) -> list[tuple[int, int, int, int, int, int]]:
        """:meth:`lines` with the screen's glyph count of each line as a sixth item.

        ``frames`` is a uint8 grey (frames, rows, cols) or RGB (frames, rows, cols, 3)
        stack (see :func:`screen_input`).
        """
        found, thresholds = self._screen(frames)
        per_frame: dict[int, list[tuple[int, int, int, int, int]]] = {}
        for f in sorted(set().union(*found)):
            fine = _merge(found[0].get(f, []))
            coarse = [
                w
                for w in _merge([b for extra in found[1:] for b in extra.get(f, [])])
                # Wide windows only add lines the fine one missed: their boxes can span
                # two neighbouring lines, and OCR reads one line at a time.
                if not any(
                    w[0] < m[1] and m[0] < w[1] and w[2] < m[3] and m[2] < w[3] for m in fine
                )
            ]
            if fine or coarse:
                per_frame[f] = fine + coarse
        # Merge before padding: the two polarities report the same line (and the holes of
        # its letters), while padded boxes of neighbouring lines would run together.
        cands = [(f, *m) for f in sorted(per_frame) for m in _merge(per_frame[f])]
        if not cands:
            return []
        # The checks (not_text, noisy_surround, extend_line: this module keeps them as the
        # reference) run in the core, all candidates of the stack in one call.
        checked = _core.textscreen.check_lines(
            frames,
            np.array(cands, dtype=np.int64),
            np.array(thresholds, dtype=np.int32),
            **CHECKS,
        )
        return [
            (cand[0], r0, r1, c0, c1, cand[5])
            for cand, (keep, r0, r1, c0, c1) in zip(cands, checked.tolist(), strict=True)
            if keep
        ]

    @staticmethod
    def check_reference(
        frame: GreyFrame, box: tuple[int, int, int, int], glyphs: int, threshold: int
    ) -> tuple[int, int, int, int] | None:
        """The checks on one candidate line in Python: the extended box, or None if not text."""
        # Blobs, frame edges and speckle clumps line up only a few "glyphs"; a long line
        # is text (or, at worst, over-masked).
        text = glyphs > CHECK_GLYPHS or (
            not not_text(frame, box, glyphs) and not noisy_surround(frame, box, threshold, glyphs)
        )
        return extend_line(frame, box, threshold) if text else None

    def detect(self, frames: np.ndarray, identifiers: Identifiers | None = None) -> list[Detection]:
        """Every candidate line of a uint8 grey or RGB stack, with the decision.

        ``frames`` is (frames, rows, cols) grey or (frames, rows, cols, 3) RGB (see
        :func:`screen_input`). Raises QuarantineError in identifiers mode when there is
        text to read but no OCR.
        """
        _, rows, cols = frames.shape[:3]
        lines = self.lines_with_glyphs(frames)
        boxes = [(f, *pad_box(r0, r1, c0, c1, rows, cols)) for f, r0, r1, c0, c1, _ in lines]
        if self.mask == "all-text" or not boxes:
            return [Detection(f, r0, r1, c0, c1, True, "all-text") for f, r0, r1, c0, c1 in boxes]
        ocr = self._ocr
        if ocr is None:
            if not ocr_available():
                raise QuarantineError(
                    "burned-in text found and the policy masks identifiers only "
                    '(mask = "identifiers"), but OCR is not installed (pytesseract and the '
                    "tesseract binary with English data); install medveil[ocr] and "
                    'tesseract-ocr, or use mask = "all-text"'
                )
            ocr = ocr_read
        ids = identifiers if identifiers is not None else Identifiers(frozenset(), ())
        grey = _GreyFrames(frames)
        seen: dict[bytes, tuple[bool, str, int]] = {}
        out = []
        for (f, r0, r1, c0, c1), (_, a0, a1, b0, b1, glyphs) in zip(boxes, lines, strict=True):
            # OCR sees the line with a thin margin only: the mask's margin may reach into
            # the next line, whose cut-off glyphs would be read as noise.
            h = a1 - a0
            crop = grey[f][max(0, a0 - 2) : a1 + 2, max(0, b0 - h // 2) : b1 + h // 2]
            # A static overlay repeats byte for byte on every frame of a cine: read it once.
            key = np.array((*crop.shape, glyphs), dtype=np.int64).tobytes() + crop.tobytes()
            if key not in seen:
                read = ocr(crop)
                text, conf = read if isinstance(read, tuple) else (read, 100.0)
                length = sum(1 for ch in text if not ch.isspace())
                # The screen counted about one glyph per letter or digit; OCR that returns
                # far fewer has lost most of the line, and what it lost may be the name.
                # Low confidence means it read texture (text over speckle) as letters.
                if sum(ch.isalnum() for ch in text) < MIN_READ * glyphs or conf < MIN_CONF:
                    seen[key] = (True, "unreadable", length)  # fail closed
                elif ids.matches(text):
                    seen[key] = (True, "identifier", length)
                else:
                    seen[key] = (False, "kept", length)
                del text, read
            masked, why, length = seen[key]
            out.append(Detection(f, r0, r1, c0, c1, masked, why, length))
        return _mask_line_neighbours(out)


def _mask_line_neighbours(dets: list[Detection]) -> list[Detection]:
    """Mask the kept pieces of a text line one of whose pieces matched an identifier.

    The screen may cut a line at a wide space ("ID 12345   DOB 1970-01-31"); OCR may read
    one piece badly and the other well. A line that holds an identifier is masked whole.
    """
    out = list(dets)
    changed = True
    while changed:
        changed = False
        for i, d in enumerate(out):
            if d.masked:
                continue
            h = d.row1 - d.row0
            for m in out:
                if not m.masked or m.frame != d.frame or m.why == "unreadable":
                    continue
                overlap = min(d.row1, m.row1) - max(d.row0, m.row0)
                gap = max(m.col0 - d.col1, d.col0 - m.col1)
                if 2 * overlap >= min(h, m.row1 - m.row0) and gap <= 2 * h:
                    out[i] = dataclasses.replace(d, masked=True, why="same line")
                    changed = True
                    break
    return out


def frame_runs(detections: list[Detection]) -> list[tuple[int, int, int, int, int, int]]:
    """The masked boxes as (row0, row1, col0, col1, frame0, frame1) regions, frame runs joined."""
    by_box: dict[tuple[int, int, int, int], list[int]] = {}
    for d in detections:
        if d.masked:
            by_box.setdefault((d.row0, d.row1, d.col0, d.col1), []).append(d.frame)
    out = []
    for (r0, r1, c0, c1), frames in sorted(by_box.items()):
        frames = sorted(set(frames))
        first = prev = frames[0]
        for f in frames[1:]:
            if f != prev + 1:
                out.append((r0, r1, c0, c1, first, prev + 1))
                first = f
            prev = f
        out.append((r0, r1, c0, c1, first, prev + 1))
    return out
