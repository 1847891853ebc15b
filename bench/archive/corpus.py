"""Build the archive benchmark's synthetic corpus: CT, radiographs, ultrasound, all with fake PHI.

Run: python bench/archive/corpus.py OUT [--ct 2000 --dx 20 --us 10] [--dx-text K] [--memory N]

Layout: OUT/ct/ct_<p>_<n>.dcm (512x512 int16, 4 patients),
OUT/dx/dx_<n>.dcm (3000x2500 uint16), OUT/us/us_<n>.dcm (60x600x800 RGB uint8,
BurnedInAnnotation YES, the device name "BENCHSOUND" that `us_pixel_rules.toml` masks).
``--dx-text K`` makes every K-th radiograph (the 1st, K+1-th, ...) a chest-like image
with the patient's name, ID and date burned into its corners in four sizes and contrasts,
and BurnedInAnnotation YES, so that the default policy (``pixel_text = "auto"``) screens it.
Each part is one flat folder with names unique across the corpus: dicom-anonymizer only
lists the top level of its input folder, pydicom/deid writes every output under its
input's base name. ``--memory N`` builds N small CT files (64x64) instead.
Nothing here is real: names, IDs, addresses and dates are invented.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from medveil.run.demo import new_instance
from medveil.run.demo import set_pixels as pixels  # also bench_textdetect.py's corpus.pixels
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

CT = "1.2.840.10008.5.1.4.1.1.2"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
US_MULTI = "1.2.840.10008.5.1.4.1.1.3.1"
ROOT = "1.2.826.0.1.3680043.10.1311.77."
US_DEVICE = "BENCHSOUND"

FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro"]
LAST = ["Fakename", "Placeholder", "Notreal", "Madeup", "Synthetic", "Dummy", "Invented"]


def patient(i: int) -> dict[str, str]:
    """Fake identity number i (deterministic)."""
    return {
        "name": f"{LAST[i % len(LAST)]}^{FIRST[i % len(FIRST)]}^Q",
        "id": f"MRN{700000 + i:07d}",
        "birth": f"19{40 + i % 50:02d}{1 + i % 12:02d}{1 + i % 28:02d}",
        "sex": "FM"[i % 2],
        "age": f"{30 + i % 60:03d}Y",
        "address": f"{i + 1} Imaginary Road, Nowhere {1000 + i}",
        "phone": f"+1-555-{i:04d}",
        "acc": f"ACC{i:06d}",
        "date": f"2024{1 + i % 12:02d}{1 + i % 28:02d}",
    }


def header(p: dict[str, str], sop_class: str, study: str, series: str, n: int) -> Dataset:
    """A dataset with the identity, study and equipment attributes a PACS export carries."""
    ds = new_instance(sop_class, f"{series}.{n}")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = p["date"]
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AcquisitionTime = ds.ContentTime = f"1016{n % 60:02d}"
    ds.AccessionNumber = p["acc"]
    ds.InstitutionName = "Imaginary General Hospital"
    ds.InstitutionAddress = "99 Hospital Lane, Nowhere"
    ds.ReferringPhysicianName = "Strange^Stephen"
    ds.StationName = "STATION-7"
    ds.StudyDescription = f"Follow-up for {p['name'].replace('^', ' ')} MRN {p['id']}"
    ds.SeriesDescription = "Routine"
    ds.OperatorsName = "Tech^Terry"
    ds.PerformingPhysicianName = "House^Gregory"
    ds.PatientName = p["name"]
    ds.PatientID = p["id"]
    ds.IssuerOfPatientID = "IMAGINARY"
    ds.PatientBirthDate = p["birth"]
    ds.PatientSex = p["sex"]
    ds.PatientAge = p["age"]
    ds.PatientAddress = p["address"]
    ds.PatientTelephoneNumbers = p["phone"]
    ds.OtherPatientIDs = p["id"].replace("MRN", "OID")
    ds.PatientComments = f"Call {p['phone']} before the visit"
    ds.DeviceSerialNumber = "SN-000042"
    ds.SoftwareVersions = "1.0"
    ds.ProtocolName = "BENCH"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = n
    ds.FrameOfReferenceUID = f"{study}.99"
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = f"{series}.{n + 100000}"
    ds.ReferencedImageSequence = Sequence([item])
    proc = Dataset()
    proc.RequestedProcedureID = p["acc"]
    proc.ScheduledProcedureStepID = "SPS1"
    ds.RequestAttributesSequence = Sequence([proc])
    block = ds.private_block(0x0019, "BENCH VENDOR", create=True)
    block.add_new(0x01, "LO", p["name"])
    block.add_new(0x02, "DS", "1.5")
    return ds


def write(ds: Dataset, path: Path) -> None:
    """Save with a DICOM file preamble and meta header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def build_ct(out: Path, n: int, size: int = 512, patients: int = 4) -> None:
    """n CT slices in `patients` patients (one study, one series each)."""
    rng = np.random.default_rng(1)
    base = rng.integers(-1000, 2000, size=(size, size), dtype=np.int16)
    per = -(-n // patients)
    for i in range(n):
        pi, k = divmod(i, per)
        p = patient(pi)
        study = f"{ROOT}1.{pi + 1}"
        series = f"{study}.1"
        ds = header(p, CT, study, series, k + 1)
        ds.Modality = "CT"
        ds.Manufacturer = "BENCHSCAN"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = "1.25"
        ds.ImagePositionPatient = [0, 0, -1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        pixels(ds, np.roll(base, k, axis=0))
        write(ds, out / f"ct_{pi + 1}_{k + 1:05d}.dcm")


def chest(rng: np.random.Generator, rows: int = 3000, cols: int = 2500) -> np.ndarray:
    """A 12-bit chest-like radiograph: collimated field, two lung fields, spine, noise."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    img = 2600 + 500 * np.cos(xx / cols * 3.1) * np.cos(yy / rows * 2)
    for side in (-1, 1):
        cy, cx = rows * 0.45, cols / 2 + side * cols * 0.2
        lung = ((yy - cy) / (rows * 0.3)) ** 2 + ((xx - cx) / (cols * 0.14)) ** 2 < 1
        img[lung] -= 1100
    img[:, int(cols * 0.47) : int(cols * 0.53)] += 600  # the spine
    img += rng.normal(0, 40, img.shape).astype(np.float32)
    # Collimator edges: unexposed (bright) margins.
    t, b, left, right = (int(v) for v in rng.integers(0, 150, size=4))
    img[:t], img[rows - b :] = 4000, 4000
    img[:, :left], img[:, cols - right :] = 4000, 4000
    return np.clip(img, 0, 4095).astype(np.uint16)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans (or Pillow's built-in font) at ``size`` px."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def burn_text(img: np.ndarray, p: dict[str, str]) -> None:
    """Burn the patient's name, ID, study date and a view label into a radiograph's corners.

    Four sizes (14, 22, 36, 56 px) and contrasts (bright, dark, and ~60 of 255 display
    levels over the background), as a device's annotation would be.
    """
    rows, cols = img.shape
    lines = [  # text, size, (row, col) of its top left, level (None: low contrast)
        (p["name"].replace("^", " "), 56, (60, 180), 4095),
        (p["id"], 36, (160, 180), 0),
        (f"{p['date'][:4]}-{p['date'][4:6]}-{p['date'][6:]} 10:15", 22, (rows - 260, 200), 3600),
        ("PA ERECT  kVp 120", 14, (rows - 300, cols - 500), None),
    ]
    for text, size, (y, x), level in lines:
        layer = Image.new("L", (cols, rows), 0)
        ImageDraw.Draw(layer).text((x, y), text, fill=255, font=_font(size))
        alpha = np.asarray(layer, dtype=np.float32) / 255.0
        if level is None:  # low contrast: ~60 display levels over the background's top
            under = img[alpha > 0]
            level = min(4095, int(np.percentile(under, 90)) + 1000)
        out = img * (1 - alpha) + level * alpha
        img[...] = np.clip(np.rint(out), 0, 4095).astype(np.uint16)


def build_dx(out: Path, n: int, text_every: int = 0) -> None:
    """n radiographs of 3000x2500 uint16, one per patient; burned-in text on every
    ``text_every``-th one (0: none)."""
    rng = np.random.default_rng(2)
    base = rng.integers(0, 4096, size=(3000, 2500), dtype=np.uint16)
    for i in range(n):
        p = patient(100 + i)
        study = f"{ROOT}2.{i + 1}"
        ds = header(p, DX, study, f"{study}.1", 1)
        ds.Modality = "DX"
        ds.Manufacturer = "BENCHRAY"
        ds.BodyPartExamined = "CHEST"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.PresentationIntentType = "FOR PRESENTATION"
        if text_every and i % text_every == 0:
            img = chest(rng)
            burn_text(img, p)
            ds.BurnedInAnnotation = "YES"
            pixels(ds, img)
        else:
            pixels(ds, np.roll(base, i, axis=1))
        write(ds, out / f"dx_{i + 1:03d}.dcm")


def build_us(out: Path, n: int, frames: int = 60) -> None:
    """n ultrasound cines (frames x 600 x 800 RGB) with a 'burned-in' name band on top."""
    rng = np.random.default_rng(3)
    cine = rng.integers(0, 200, size=(frames, 600, 800, 3), dtype=np.uint8)
    cine[:, :40, :400, :] = 255  # where the device writes the patient's name
    for i in range(n):
        p = patient(200 + i)
        study = f"{ROOT}3.{i + 1}"
        ds = header(p, US_MULTI, study, f"{study}.1", 1)
        ds.Modality = "US"
        ds.Manufacturer = US_DEVICE
        ds.ManufacturerModelName = "BenchSound 9"
        ds.BurnedInAnnotation = "YES"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.FrameTime = "33.3"
        ds.FrameIncrementPointer = 0x00181063
        pixels(ds, cine, samples=3, bits_stored=8)
        write(ds, out / f"us_{i + 1:03d}.dcm")


def build(out: Path, ct: int, dx: int, us: int, dx_text: int = 0) -> None:
    """The three parts under out/ct, out/dx and out/us."""
    build_ct(out / "ct", ct)
    build_dx(out / "dx", dx, dx_text)
    build_us(out / "us", us)


def build_memory(out: Path, n: int) -> None:
    """n small CT files (64x64) in 4 patients: many files, little disk."""
    build_ct(out, n, size=64)


def main(argv: list[str] | None = None) -> int:
    """Command line: build a corpus into OUT."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--ct", type=int, default=2000)
    ap.add_argument("--dx", type=int, default=20)
    ap.add_argument("--us", type=int, default=10)
    ap.add_argument(
        "--dx-text",
        type=int,
        default=0,
        help="burn text into every K-th radiograph (BurnedInAnnotation YES); 0: none",
    )
    ap.add_argument("--memory", type=int, default=0, help="build N small CT files instead")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.memory:
        build_memory(out, args.memory)
    else:
        build(out, args.ct, args.dx, args.us, args.dx_text)
    print(f"corpus written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
