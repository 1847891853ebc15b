"""Burned-in text detection: recall, false masks, and what it adds to an archive run.

Run: python bench/bench_textdetect.py [--images 60] [--seed 0] [--us-files 3] [--frames 30]
     [--ocr 12] [--rounds 3] [--dx-images 12] [--skip-archive] [--skip-quality]
     [--skip-radiograph]

1. Quality. A generated set of images, each kind both with text and without:
   ultrasound-like (600x800 uint8, correlated Rayleigh speckle in a sector, black outside),
   CT-like (512x512 int16, air around a body disc of soft tissue with noise and bones),
   RGB screenshots (600x800x3, flat panels, frames, a plot with curves). Text lines are
   rendered by Pillow in every TrueType font ``fc-list`` finds (DejaVu, Liberation, ...)
   plus Pillow's built-in font, at sizes 8-48 px, contrasts from 60 grey levels up, at
   random positions (borders and over the image content). Each image goes through
   :class:`medveil.pixels.PixelCleaner` (policy ``pixel_text = "detect"``, mask all-text)
   as a DICOM dataset, like an archive run. A line counts as found when every pixel of its
   ink (anti-aliasing coverage >= 25 %) lies inside the masked regions. False-mask rate:
   masked area as a percentage of the image on text-free images. Then the same on
   ``--dx-images`` radiographs (3000x2500 uint16, BitsStored 12: collimated chest with
   lung fields, spine and noise; half MONOCHROME1).
2. Identifiers mode (``--ocr N`` images, needs pytesseract + tesseract): the fraction of
   lines holding the patient's name / ID / birth date that are masked, and of other lines
   that are kept.
3. Archive cost: ``medveil.deidentify_archive`` (one worker) on ``--us-files`` multi-frame
   ultrasound files built with ``bench/archive/corpus.py``'s header, with ``pixel_text =
   "rules"`` (the corpus's device rule) and ``"detect"`` alternately, ``--rounds`` rounds
   (3), in the same process; CPU time of the parent plus its worker processes (median), and
   wall time. Two corpora:
   the archive corpus's own US cine (iid uniform RGB noise, a flat band where the name
   goes: the worst case for the screen) and a speckle cine with rendered text per frame.
   Then ``clean_instance`` alone on one file of each (what the detection adds per file
   without the archive's reading and writing around it; minimum CPU time of the rounds,
   which the machine's other load disturbs less than a median).
4. Radiographs: ``clean_instance`` on one 3000x2500 16-bit CR (BitsStored 12), with
   ``pixel_text`` "rules", "auto" and "detect", minimum CPU time of the rounds; once
   without text, once with BurnedInAnnotation YES and four 48 px lines (which "auto"
   screens), and on ``bench/archive/corpus.py``'s first DX. For each, the CPU time of the
   detection stage inside ``clean_instance`` (``PixelCleaner._detect``), its share, and
   MB (file bytes) per CPU-second of the stage and of the whole call.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from medveil.pixels.cleaner import PixelCleaner
from medveil.pixels.text.detect import ocr_available
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent / "archive"))
import corpus

US = "1.2.840.10008.5.1.4.1.1.6.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
WORDS = [
    "LIVER", "KIDNEY L", "GAIN 45", "DR 60", "MI 1.1", "TIS 0.4", "C5-1", "FR 32Hz",
    "ABDOMEN", "W 400 L 40", "kVp 120", "mAs 250", "Se: 3", "Im: 117", "Thk 1.25 mm",
    "HFS", "Zoom 1.2", "Study Date", "Exported by PACS", "Ref. Phys.", "Page 1 of 2",
]  # fmt: skip
FIRST = ["JANE", "JOHN", "Maria", "Ahmed", "Li", "Olga", "Pierre", "Ngozi"]
LAST = ["DOE", "SMITH", "Garcia", "Okafor", "Novak", "Yamada", "Muller", "Brown"]


def fonts() -> list[str]:
    """TrueType files of the machine (fc-list), one per family/style; may be empty."""
    try:
        out = subprocess.run(
            ["fc-list", ":fontformat=TrueType", "file"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    files = sorted({line.split(":")[0].strip() for line in out.splitlines() if line.strip()})
    return [f for f in files if f.endswith((".ttf", ".otf"))][:40]


def load_font(path: str, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A font of ``size`` px: the TrueType file, or Pillow's built-in one for ''."""
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    return ImageFont.load_default(size=size)


@dataclass
class Line:
    """One rendered text line: ink box and ink mask (in image coordinates)."""

    box: tuple[int, int, int, int]
    ink: np.ndarray  # bool, box-sized
    height: int
    text: str
    identifying: bool = False


@dataclass
class Sample:
    """A generated image, its text lines and the header values it identifies."""

    kind: str
    pixels: np.ndarray
    lines: list[Line] = field(default_factory=list)
    name: str = ""
    pid: str = ""
    birth: str = ""


def us_background(rng: np.random.Generator, rows: int = 600, cols: int = 800) -> np.ndarray:
    """Correlated Rayleigh speckle in a sector, black outside."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    ang = np.arctan2(xx - cols / 2, yy + 40)
    rad = np.hypot(xx - cols / 2, yy + 40)
    sector = (np.abs(ang) < 0.65) & (rad > 60) & (rad < rows - 30)
    sp = rng.rayleigh(1.0, size=(rows, cols))
    # Speckle grains span a few pixels: smooth along both axes.
    k = np.ones(3) / 3
    sp = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, sp)
    depth = 1.0 - 0.5 * (rad / rows)
    img = np.clip(sp * 70.0 * depth, 0, 255)
    return np.where(sector, img, 0).astype(np.uint8)


def ct_background(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Air (-1000 HU) around a body disc (~40 HU, noise 15) with a few bones (~700 HU)."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size), -1000.0)
    body = (yy - size / 2) ** 2 / (0.38 * size) ** 2 + (xx - size / 2) ** 2 / (0.45 * size) ** 2 < 1
    img[body] = 40 + rng.normal(0, 15, size=int(body.sum()))
    for _ in range(4):
        cy, cx = rng.integers(size // 3, 2 * size // 3, size=2)
        r = rng.integers(8, 25)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 700 + rng.normal(0, 30)
    return np.rint(img).astype(np.int16)


def rgb_background(rng: np.random.Generator, rows: int = 600, cols: int = 800) -> np.ndarray:
    """A screenshot: flat panels, panel borders, a plot with curves and grid lines."""
    img = Image.new("RGB", (cols, rows), tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, cols - 100)), int(rng.integers(0, rows - 80))
        x1, y1 = x0 + int(rng.integers(80, 400)), y0 + int(rng.integers(60, 300))
        d.rectangle(
            (x0, y0, x1, y1),
            fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
            outline=tuple(int(v) for v in rng.integers(0, 256, 3)),
            width=int(rng.integers(1, 4)),
        )
    px0, py0 = int(rng.integers(0, cols // 2)), int(rng.integers(0, rows // 2))
    for i in range(0, 300, 30):
        d.line((px0, py0 + i, px0 + 300, py0 + i), fill=(90, 90, 90))
    xs = np.arange(300)
    for _ in range(2):
        ys = py0 + 150 + 100 * np.sin(xs / rng.uniform(10, 60) + rng.uniform(0, 6))
        d.line(
            list(zip((px0 + xs).tolist(), ys.tolist(), strict=True)),
            fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
            width=2,
        )
    return np.asarray(img).copy()


def _grey(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        return img @ np.array([0.299, 0.587, 0.114])
    return img.astype(np.float64)


def render_line(
    sample: Sample,
    text: str,
    font_path: str,
    size: int,
    rng: np.random.Generator,
    taken: np.ndarray,
    contrast: float,
    identifying: bool = False,
) -> None:
    """Draw ``text`` somewhere free in ``sample.pixels`` with at least ``contrast``."""
    img = sample.pixels
    rows, cols = img.shape[:2]
    font = load_font(font_path, size)
    probe = Image.new("L", (cols, rows), 0)
    left, top, right, bottom = ImageDraw.Draw(probe).textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    if w + 4 >= cols or h + 4 >= rows:
        return
    grey = _grey(img)
    if img.dtype == np.int16:
        lo, hi = -1024.0, 3071.0  # the CT value range; contrast is in display grey levels
        unit = (hi - lo) / 255.0
    elif img.dtype == np.uint16:
        lo, hi = 0.0, 4095.0  # a 12-bit radiograph
        unit = hi / 255.0
    else:
        lo, hi, unit = 0.0, 255.0, 1.0
    for _ in range(60):
        # Half the lines near the borders (where devices write), half anywhere.
        if rng.random() < 0.5:
            top_band = int(rng.integers(2, max(3, rows // 8)))
            bottom_band = int(rng.integers(rows * 7 // 8, rows - h - 2))
            y = top_band if rng.random() < 0.5 else bottom_band
        else:
            y = int(rng.integers(2, rows - h - 2))
        x = int(rng.integers(2, cols - w - 2))
        if taken[max(0, y - 6) : y + h + 6, max(0, x - 6) : x + w + 6].any():
            continue
        # Contrast counts from the background's 10-90 % range under the line, so a
        # line over speckle or across an edge stands out everywhere along it.
        p10, p90 = np.percentile(grey[y : y + h, x : x + w], [10, 90])
        if p90 + contrast * unit <= hi:
            level = p90 + contrast * unit
            break
        if p10 - contrast * unit >= lo:
            level = p10 - contrast * unit
            break
    else:
        return
    layer = Image.new("L", (cols, rows), 0)
    ImageDraw.Draw(layer).text((x - left, y - top), text, fill=255, font=font)
    alpha = np.asarray(layer).astype(np.float64) / 255.0
    ys, xs = np.nonzero(alpha >= 0.25)
    if ys.size == 0:
        return
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    r0, r1, c0, c1 = box
    if img.ndim == 3:
        # A colour whose luma is at least as far outside the background range.
        want_bright = level > p90
        for _ in range(200):
            colour = rng.integers(0, 256, 3)
            luma = float(colour @ np.array([0.299, 0.587, 0.114]))
            if (want_bright and luma >= level) or (not want_bright and luma <= level):
                break
        else:
            colour = np.array([255, 255, 255]) if want_bright else np.array([0, 0, 0])
        value_arr = colour.astype(np.float64)
    else:
        value_arr = np.array(level)
    a = alpha[..., None] if img.ndim == 3 else alpha
    out = img.astype(np.float64) * (1 - a) + value_arr * a
    info = np.iinfo(img.dtype)
    img[...] = np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
    taken[r0:r1, c0:c1] = True
    sample.lines.append(Line(box, alpha[r0:r1, c0:c1] >= 0.25, r1 - r0, text, identifying))


KINDS = ("us", "ct", "rgb")
BACKGROUNDS = {
    "us": us_background,
    "ct": ct_background,
    "rgb": rgb_background,
    "dx": corpus.chest,  # the archive corpus's radiograph
}


def make_samples(
    n: int, seed: int, with_text: bool, kinds: tuple[str, ...] = KINDS
) -> list[Sample]:
    """n images (kinds in turn), with 3-7 text lines each when ``with_text``."""
    rng = np.random.default_rng(seed)
    paths = [*fonts(), ""]  # "" = Pillow's built-in font
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        bg = BACKGROUNDS[kind](rng)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        birth = f"19{rng.integers(30, 99)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
        s = Sample(kind, bg, name=f"{last}^{first}", pid=f"PID{rng.integers(10**5, 10**7)}")
        s.birth = birth
        if with_text:
            taken = np.zeros(bg.shape[:2], dtype=bool)
            for k in range(int(rng.integers(3, 8))):
                size = int(rng.choice([8, 10, 12, 14, 16, 20, 24, 32, 40, 48]))
                contrast = float(rng.choice([60, 90, 130, 200]))
                font_path = str(rng.choice(paths))
                if k == 0:
                    text, ident = f"{last}, {first}", True
                elif k == 1:
                    text, ident = f"ID {s.pid}  DOB {birth[6:]}.{birth[4:6]}.{birth[:4]}", True
                else:
                    text, ident = str(rng.choice(WORDS)), False
                render_line(s, text, font_path, size, rng, taken, contrast, ident)
        out.append(s)
    return out


def dataset(s: Sample) -> pydicom.Dataset:
    """A DICOM dataset holding the sample (US / CT / Secondary Capture)."""
    img = s.pixels
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop = {"us": US, "ct": CT, "rgb": SC, "dx": DX}[s.kind]
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = {"us": "US", "ct": "CT", "rgb": "OT", "dx": "DX"}[s.kind]
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = s.name, s.pid, s.birth
    ds.Rows, ds.Columns = img.shape[:2]
    ds.SamplesPerPixel = 3 if img.ndim == 3 else 1
    ds.PhotometricInterpretation = "RGB" if img.ndim == 3 else "MONOCHROME2"
    if s.kind == "dx" and int(ds.SOPInstanceUID.split(".")[-1]) % 2:
        # Half the radiographs as MONOCHROME1 (the same pixels shown inverted): the
        # detector screens them as displayed.
        ds.PhotometricInterpretation = "MONOCHROME1"
    if img.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = img.dtype.itemsize * 8
    ds.BitsStored = 12 if img.dtype in (np.int16, np.uint16) else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(img.dtype.kind == "i")
    ds.PixelData = img.tobytes()
    return ds


def masked_area(regions: list, shape: tuple[int, int]) -> np.ndarray:
    """The union of a report's regions on frame 0, as a boolean image."""
    m = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1, f0, _f1 in regions:
        if f0 == 0:
            m[r0:r1, c0:c1] = True
    return m


def quality(args: argparse.Namespace, kinds: tuple[str, ...] = KINDS, n: int | None = None) -> None:
    """Recall by text height and false-mask rate, all-text mode, on images of ``kinds``."""
    n = args.images if n is None else n
    cleaner = PixelCleaner(pixel_text="detect", allow_unmatched_burned_in=True)
    buckets: dict[str, list[bool]] = {"< 10 px": [], "10-19 px": [], "20-39 px": [], ">= 40 px": []}
    by_kind: dict[str, list[bool]] = {}
    extra: list[float] = []
    # CPU time of the cleaner only (not of rendering the images).
    t_text = t_free = 0.0
    for s in make_samples(n, args.seed, with_text=True, kinds=kinds):
        ds = dataset(s)
        t0 = time.process_time()
        rep = cleaner.clean(ds)
        t_text += time.process_time() - t0
        m = masked_area(rep.regions, s.pixels.shape[:2])
        ink_all = np.zeros_like(m)
        for ln in s.lines:
            r0, r1, c0, c1 = ln.box
            found = bool(m[r0:r1, c0:c1][ln.ink].all())
            key = (
                "< 10 px"
                if ln.height < 10
                else "10-19 px"
                if ln.height < 20
                else "20-39 px"
                if ln.height < 40
                else ">= 40 px"
            )
            buckets[key].append(found)
            if ln.height >= 10:
                by_kind.setdefault(s.kind, []).append(found)
            ink_all[r0 - 6 : r1 + 6, c0 - 6 : c1 + 6] = True
        extra.append(float((m & ~ink_all).mean()))
    free = []
    per_kind_free: dict[str, list[float]] = {}
    for s in make_samples(n, args.seed + 1, with_text=False, kinds=kinds):
        ds = dataset(s)
        t0 = time.process_time()
        rep = cleaner.clean(ds)
        t_free += time.process_time() - t0
        frac = float(masked_area(rep.regions, s.pixels.shape[:2]).mean())
        free.append(frac)
        per_kind_free.setdefault(s.kind, []).append(frac)
    print(f"fonts: {len(fonts())} TrueType files from fc-list + Pillow's built-in font")
    what = "/".join(kinds)
    print(f"\n## Recall (all-text), {n} {what} images with text, seed {args.seed}\n")
    print("| ink height | lines | fully masked | recall |\n|---|---|---|---|")
    big = []
    for key, vals in buckets.items():
        if key != "< 10 px":
            big += vals
        if vals:
            print(f"| {key} | {len(vals)} | {sum(vals)} | {np.mean(vals):.3f} |")
    print(f"| **>= 10 px** | {len(big)} | {sum(big)} | **{np.mean(big):.3f}** |")
    per_kind = ", ".join(f"{k} {np.mean(v):.3f} ({len(v)})" for k, v in sorted(by_kind.items()))
    print(f"\nrecall >= 10 px by image kind: {per_kind}")
    print(f"masked area away from any text on images with text: mean {100 * np.mean(extra):.2f} %")
    print(f"\n## False masks, {n} text-free {what} images, seed {args.seed + 1}\n")
    print("| kind | images | mean masked area | max | images with any mask |")
    print("|---|---|---|---|---|")
    for k, v in sorted(per_kind_free.items()):
        print(
            f"| {k} | {len(v)} | {100 * np.mean(v):.3f} % | {100 * np.max(v):.3f} % | "
            f"{sum(x > 0 for x in v)} |"
        )
    print(
        f"| **all** | {len(free)} | **{100 * np.mean(free):.3f} %** | "
        f"{100 * np.max(free):.3f} % | {sum(x > 0 for x in free)} |"
    )
    per_image = 1000 * (t_text + t_free) / (2 * n)
    print(f"\ncleaner CPU time per image: {per_image:.1f} ms (screen + mask)")


def identifiers_quality(args: argparse.Namespace) -> None:
    """Identifiers mode with Tesseract: identifying lines masked, other lines kept."""
    if not ocr_available():
        print("\n(identifiers mode skipped: pytesseract / tesseract not installed)")
        return
    cleaner = PixelCleaner(
        pixel_text="detect", text_mask="identifiers", allow_unmatched_burned_in=True
    )
    hit, keep = [], []
    t0 = time.time()
    for s in make_samples(args.ocr, args.seed + 2, with_text=True):
        rep = cleaner.clean(dataset(s))
        m = masked_area(rep.regions, s.pixels.shape[:2])
        for ln in s.lines:
            if ln.height < 10:
                continue
            r0, r1, c0, c1 = ln.box
            inside = m[r0:r1, c0:c1][ln.ink]
            (hit if ln.identifying else keep).append(
                bool(inside.all()) if ln.identifying else not inside.any()
            )
    dt = time.time() - t0
    print(f"\n## Identifiers mode (Tesseract), {args.ocr} images, seed {args.seed + 2}\n")
    print(
        f"identifying lines (name; ID + birth date) fully masked: {sum(hit)}/{len(hit)} "
        f"= {np.mean(hit):.3f}"
    )
    print(f"other lines left untouched: {sum(keep)}/{len(keep)} = {np.mean(keep):.3f}")
    print(f"wall time per image (OCR of every candidate line): {1000 * dt / args.ocr:.0f} ms")


def speckle_cine(frames: int, seed: int) -> np.ndarray:
    """A (frames, 600, 800, 3) RGB cine: speckle sector, grey text, a changing frame counter."""
    rng = np.random.default_rng(seed)
    base = us_background(rng)
    layer = Image.new("L", (800, 600), 0)
    d = ImageDraw.Draw(layer)
    f16 = load_font((fonts() or [""])[0], 16)
    d.text((10, 8), "FAKENAME, ALICE  MRN0000200", fill=255, font=f16)
    d.text((10, 30), "01.02.1960  BENCHSOUND 9", fill=255, font=f16)
    d.text((620, 560), "MI 1.1 TIS 0.4", fill=220, font=f16)
    text = np.asarray(layer)
    out = np.empty((frames, 600, 800, 3), dtype=np.uint8)
    for f in range(frames):
        g = np.maximum(np.roll(base, 3 * f, axis=1), text)
        counter = Image.new("L", (120, 20), 0)
        ImageDraw.Draw(counter).text((0, 0), f"FRAME {f + 1}", fill=255, font=f16)
        g[570:590, 20:140] = np.maximum(g[570:590, 20:140], np.asarray(counter))
        out[f] = g[..., None]
    return out


def build_us(folder: Path, n: int, frames: int, realistic: bool) -> None:
    """n US cines with the archive corpus's header (and its pixels unless ``realistic``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if realistic:
        cine = speckle_cine(frames, 7)
    else:
        rng = np.random.default_rng(3)  # as bench/archive/corpus.py build_us
        cine = rng.integers(0, 200, size=(frames, 600, 800, 3), dtype=np.uint8)
        cine[:, :40, :400, :] = 255
    for i in range(n):
        p = corpus.patient(200 + i)
        study = f"{corpus.ROOT}3.{i + 1}"
        ds = corpus.header(p, corpus.US_MULTI, study, f"{study}.1", 1)
        ds.Modality = "US"
        ds.Manufacturer = corpus.US_DEVICE
        ds.ManufacturerModelName = "BenchSound 9"
        ds.BurnedInAnnotation = "YES"
        ds.FrameTime = "33.3"
        ds.FrameIncrementPointer = 0x00181063
        corpus.pixels(ds, cine, samples=3, bits_stored=8)
        corpus.write(ds, folder / f"us_{i + 1:03d}.dcm")


# The two cine corpora of the cost tables: (label, speckle with text rather than the archive
# corpus's own pixels), and the archive corpus's device rule for the "rules" mode.
US_CORPORA = (("archive corpus US (iid noise)", False), ("speckle + text", True))
US_RULES = str(Path(__file__).resolve().parent / "archive" / "us_pixel_rules.toml")


def cpu() -> float:
    """CPU seconds of this process and its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def archive_cost(args: argparse.Namespace) -> None:
    """deidentify_archive on US cines, rules vs detect, alternating, same process."""
    from medveil.policy.schema import Policy
    from medveil.run.archive import deidentify_archive

    policies = {
        "rules": Policy(pixel_rule_files=(US_RULES,)),
        "detect": Policy(pixel_text="detect"),
    }
    secret = bytes(range(32))
    print(f"\n## Archive run, {args.us_files} US files x {args.frames} frames (600x800 RGB)\n")
    print(
        f"| corpus | pixel_text | CPU s (median of {args.rounds}) | wall s | written "
        "| masked lines/file |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="mv-textdetect-") as tmp:
        for label, realistic in US_CORPORA:
            src = Path(tmp) / ("real" if realistic else "corpus")
            build_us(src, args.us_files, args.frames, realistic)
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in policies}
            written: dict[str, int] = {}
            lines: dict[str, float] = {}
            for rnd in range(args.rounds):
                for mode, pol in policies.items():
                    out = Path(tmp) / f"out-{mode}-{rnd}-{realistic}"
                    c0, w0 = cpu(), time.perf_counter()
                    summary = deidentify_archive(
                        src, out, policy=pol, secret=secret, workers=1, durable=False
                    )
                    times[mode].append((cpu() - c0, time.perf_counter() - w0))
                    written[mode] = summary.written
                    recs = (out / ".medveil" / "pixels.jsonl").read_text().splitlines()
                    n_det = [
                        sum(d["masked"] for d in json.loads(r).get("detected", [])) for r in recs
                    ]
                    lines[mode] = float(np.mean(n_det)) if n_det else 0.0
            med = {k: np.median([c for c, _ in v]) for k, v in times.items()}
            for mode in policies:
                wall = np.median([w for _, w in times[mode]])
                print(
                    f"| {label} | {mode} | {med[mode]:.2f} | {wall:.2f} | "
                    f"{written[mode]}/{args.us_files} | {lines[mode]:.0f} |"
                )
            print(
                f"| {label} | **detect / rules** | **{med['detect'] / med['rules']:.2f}x** | | | |"
            )


def instance_cost(args: argparse.Namespace) -> None:
    """clean_instance alone (no archive around it), rules vs detect: CPU, min of rounds."""
    from medveil.engine.dataset import Deidentifier
    from medveil.engine.instance import clean_instance
    from medveil.policy.schema import Policy

    engines = {
        "rules": Deidentifier(Policy(pixel_rule_files=(US_RULES,)), bytes(range(32))),
        "detect": Deidentifier(Policy(pixel_text="detect"), bytes(range(32))),
    }
    rounds = max(5, args.rounds)
    print(
        f"\n## clean_instance alone, one {args.frames}-frame 600x800 RGB US file, CPU ms "
        f"(min of {rounds}, modes alternating)\n"
    )
    print("| corpus | rules | detect | detect adds | per frame | detect / rules |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="mv-textdetect-") as tmp:
        for label, realistic in US_CORPORA:
            src = Path(tmp) / ("real" if realistic else "corpus")
            build_us(src, 1, args.frames, realistic)
            raw = next(src.iterdir()).read_bytes()
            times: dict[str, list[float]] = {k: [] for k in engines}
            for eng in engines.values():
                assert clean_instance(eng, raw).status == "written"  # warm up
            for _ in range(rounds):
                for mode, eng in engines.items():
                    t0 = time.process_time()
                    clean_instance(eng, raw)
                    times[mode].append(time.process_time() - t0)
            r, d = (1000 * min(times[k]) for k in ("rules", "detect"))
            print(
                f"| {label} | {r:.0f} | {d:.0f} | {d - r:.0f} | {(d - r) / args.frames:.2f} "
                f"| {d / r:.2f}x |"
            )


CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"


def radiograph(rows: int, cols: int, burned: bool, seed: int = 0) -> bytes:
    """A CR file's bytes: 12-bit chest-like gradient with noise; text lines when ``burned``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    img = 1800 + 900 * np.cos(xx / cols * 3.1) * np.cos(yy / rows * 2)
    img += rng.normal(0, 30, img.shape).astype(np.float32)
    img = np.clip(img, 0, 4095).astype(np.uint16)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer = "CR", "GENERIC"
    ds.PatientName, ds.PatientID = "DOE^JOHN", "SB7300421"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if burned:
        ds.BurnedInAnnotation = "YES"
        layer = Image.new("L", (cols, rows), 0)
        draw = ImageDraw.Draw(layer)
        font = load_font(fonts()[0], 48) if fonts() else ImageFont.load_default(size=48)
        for i, text in enumerate(["DOE, JOHN", "SB7300421", "2024-03-14 09:30", "PA ERECT"]):
            draw.text((60, 60 + 70 * i), text, fill=255, font=font)
        img = np.where(np.asarray(layer) > 127, 4095, img).astype(np.uint16)
    ds.PixelData = img.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def corpus_dx() -> bytes:
    """The first radiograph of ``bench/archive/corpus.py``: iid uniform 12-bit noise."""
    rng = np.random.default_rng(2)
    base = rng.integers(0, 4096, size=(3000, 2500), dtype=np.uint16)
    p = corpus.patient(100)
    study = f"{corpus.ROOT}2.1"
    ds = corpus.header(p, corpus.DX, study, f"{study}.1", 1)
    ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "DX", "BENCHRAY", "CHEST"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    corpus.pixels(ds, base)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def radiograph_cost(args: argparse.Namespace) -> None:
    """clean_instance on 3000x2500 radiographs per pixel_text mode, and its detection stage.

    CPU time (min of the rounds, modes alternating) of the whole ``clean_instance`` and of
    the detection stage inside it (``PixelCleaner._detect``: grey conversion, screen,
    checks, padding); MB per CPU-second counts the file's bytes.
    """
    from medveil.engine.dataset import Deidentifier
    from medveil.engine.instance import clean_instance
    from medveil.policy.schema import Policy

    modes = ("rules", "auto", "detect")
    engines = {m: Deidentifier(Policy(pixel_text=m), bytes(range(32))) for m in modes}
    stage: list[float] = []
    for eng in engines.values():
        cleaner = eng._pixels
        if cleaner is None:
            continue
        inner = cleaner._detect

        def timed(*a: object, _inner: object = inner, **kw: object) -> object:
            t0 = time.process_time()
            try:
                return _inner(*a, **kw)  # type: ignore[operator]
            finally:
                stage.append(time.process_time() - t0)

        setattr(cleaner, "_detect", timed)  # noqa: B010 (an instance attribute)
    rounds = max(5, args.rounds)
    files = [
        ("CR, no text", radiograph(3000, 2500, False)),
        ("CR, BurnedInAnnotation YES, 4 lines", radiograph(3000, 2500, True)),
        ("DX of bench/archive/corpus.py (uniform noise)", corpus_dx()),
    ]
    print(
        f"\n## clean_instance on one 3000x2500 16-bit radiograph, CPU ms (min of {rounds}, "
        "modes alternating)\n"
    )
    print("| file | " + " | ".join(modes) + " | lines masked (auto) |")
    print("|---|---|---|---|---|")
    screened: list[tuple[str, int, float, float]] = []
    for label, raw in files:
        times: dict[str, list[float]] = {m: [] for m in modes}
        det: dict[str, list[float]] = {m: [] for m in modes}
        status = {m: clean_instance(eng, bytearray(raw)).status for m, eng in engines.items()}
        for _ in range(rounds):
            for m, eng in engines.items():
                buf = bytearray(raw)  # masked in place: a fresh copy each time
                stage.clear()
                t0 = time.process_time()
                clean_instance(eng, buf)
                times[m].append(time.process_time() - t0)
                det[m].append(sum(stage))
        ds = pydicom.dcmread(io.BytesIO(raw))
        masked = len(engines["auto"]._pixels.clean(ds).detected)  # type: ignore[union-attr]
        cells = " | ".join(
            f"{1000 * min(times[m]):.0f}" + ("" if status[m] == "written" else f" ({status[m]})")
            for m in modes
        )
        print(f"| {label} | {cells} | {masked} |")
        m = "auto" if status["auto"] == "written" and min(det["auto"]) > 0 else "detect"
        screened.append((f"{label}, {m}", len(raw), min(det[m]), min(times[m])))
    print(
        "\n## Detection's share of a screened radiograph (CPU, min of the rounds; MB = file "
        "bytes / 1e6)\n"
    )
    print(
        "| file, mode | detection ms | detection MB per CPU-s | clean_instance ms | "
        "clean_instance MB per CPU-s | detection share |"
    )
    print("|---|---|---|---|---|---|")
    for label, size, d, t in screened:
        print(
            f"| {label} | {1000 * d:.1f} | {size / 1e6 / d:.0f} | {1000 * t:.1f} | "
            f"{size / 1e6 / t:.0f} | {100 * d / t:.0f} % |"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the quality and cost measurements; print markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ocr", type=int, default=12)
    ap.add_argument("--us-files", type=int, default=3)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="archive runs per mode (median)")
    ap.add_argument("--skip-archive", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-radiograph", action="store_true")
    ap.add_argument(
        "--dx-images", type=int, default=12, help="3000x2500 radiographs in the quality sets"
    )
    args = ap.parse_args(argv)
    if not args.skip_quality:
        quality(args)
        if args.dx_images:
            quality(args, kinds=("dx",), n=args.dx_images)
        if args.ocr:
            identifiers_quality(args)
    if not args.skip_archive:
        archive_cost(args)
        instance_cost(args)
    if not args.skip_radiograph:
        radiograph_cost(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
