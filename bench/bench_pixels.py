"""Pixel cleaning in an archive run: what masking adds to read + write, against a numpy peer.

Run: python bench/bench_pixels.py [--files 12] [--repeat 5]

Corpus (synthetic, written to a temporary folder, deleted afterwards):
- ultrasound: US Image Storage, 600 x 800 RGB 8-bit, 1 frame, Philips iU22 headers, so the
  shipped CTP rule "ctp-23" (rows 0..59) fires;
- radiograph: CR, 2592 x 2208 MONOCHROME2 16-bit with BitsStored 12 and an overlay plane
  hidden in bit 14, Canon CXDI headers, so "ctp-46" (two 80-row bands) fires and Clean
  Graphics clears the hidden plane.

Competitors take turns on each file (rotated order), every repetition:
- ``io``: dcmread + save_as, the floor an archive run pays anyway;
- ``medveil``: dcmread + PixelCleaner.clean + save_as;
- ``numpy``: dcmread + ds.pixel_array + slice assignment + high-bit AND + ds.PixelData =
  arr.tobytes() + save_as, the usual pydicom way (same rectangles, same result: checked).

Reported: median per-file times with p10-p90, ``overhead`` = (medveil - io) / io of the
medians (with the p10-p90 of the same ratio paired per file), and the cleaning-cost ratio
(numpy - io) / (medveil - io) of the medians.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from medveil.pixels.cleaner import PixelCleaner
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def _dataset(kind: str, seed: int) -> pydicom.Dataset:
    rng = np.random.default_rng(seed)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    if kind == "ultrasound":
        sop, rows, cols = "1.2.840.10008.5.1.4.1.1.6.1", 600, 800
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "US", "Philips", "iU22"
        ds.BurnedInAnnotation = "YES"
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        arr = rng.integers(0, 256, size=(rows, cols, 3), dtype=np.uint8)
    else:
        sop, rows, cols = "1.2.840.10008.5.1.4.1.1.1", 2592, 2208
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CR", "Canon", "CXDI-70C"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored = 16, 12
        arr = rng.integers(0, 4096, size=(rows, cols), dtype=np.uint16)
        arr[1000:1200, 500:1500] |= 1 << 14  # an overlay plane in an unused bit
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop
    ds.Rows, ds.Columns = rows, cols
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    return ds


def _numpy_peer(ds: pydicom.Dataset, cleaner: PixelCleaner) -> None:
    rects = [reg for rule in cleaner.rules.matching(ds) for reg in rule.regions]
    arr = ds.pixel_array.copy()
    for r0, r1, c0, c1, _f0, _f1 in rects:
        arr[r0:r1, c0:c1] = 0
    if ds.BitsStored < ds.BitsAllocated:
        arr &= (1 << ds.BitsStored) - 1
    ds.PixelData = arr.tobytes()


def main() -> int:
    """Build the corpus, time the competitors, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=12, help="files per kind")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cleaner = PixelCleaner()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("ultrasound", "radiograph"):
            paths = []
            for i in range(args.files):
                p = Path(tmp) / f"{kind}{i}.dcm"
                _dataset(kind, i).save_as(p, enforce_file_format=True)
                paths.append(p)

            def run_io(ds: pydicom.Dataset) -> None:
                pass

            def run_medveil(ds: pydicom.Dataset) -> None:
                cleaner.clean(ds)

            def run_numpy(ds: pydicom.Dataset) -> None:
                _numpy_peer(ds, cleaner)

            comps: dict[str, Callable[[pydicom.Dataset], None]] = {
                "io": run_io,
                "medveil": run_medveil,
                "numpy": run_numpy,
            }
            # Same output from both cleaners, checked before timing.
            a, b = pydicom.dcmread(paths[0]), pydicom.dcmread(paths[0])
            run_medveil(a)
            run_numpy(b)
            assert a.PixelData == b.PixelData, "medveil and numpy peer disagree"
            times: dict[str, list[float]] = {k: [] for k in comps}
            names = list(comps)
            k = 0
            for _rep in range(args.repeat):
                for p in paths:
                    # Competitors take turns on the same file moments apart, in rotated order,
                    # so load from other processes hits them alike.
                    k += 1
                    for name in names[k % 3 :] + names[: k % 3]:
                        t0 = time.perf_counter()
                        ds = pydicom.dcmread(p)
                        comps[name](ds)
                        ds.save_as(io.BytesIO(), enforce_file_format=True)
                        times[name].append(time.perf_counter() - t0)
            t = {k: np.array(v) for k, v in times.items()}
            med = {k: float(np.median(v)) for k, v in t.items()}
            paired = (t["medveil"] - t["io"]) / t["io"]
            size = paths[0].stat().st_size / 1e6
            print(f"## {kind}: {args.files} files of {size:.1f} MB x {args.repeat} repetitions")
            for name in names:
                lo, hi = np.percentile(t[name], [10, 90]) * 1e3
                print(f"  {name:8s} {med[name] * 1e3:8.2f} ms/file (p10-p90 {lo:.2f}..{hi:.2f})")
            print(
                f"  overhead of medveil cleaning over read+write: "
                f"{(med['medveil'] - med['io']) / med['io']:+.1%} of medians "
                f"(paired per file: p10-p90 {np.percentile(paired, 10):+.1%}.."
                f"{np.percentile(paired, 90):+.1%})"
            )
            print(
                "  cleaning cost (time above read+write), numpy peer / medveil: "
                f"{(med['numpy'] - med['io']) / max(med['medveil'] - med['io'], 1e-9):.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
