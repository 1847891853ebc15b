"""Pixel cleaning in an archive run: what masking adds to read + write, against a numpy peer.

Run: python bench/bench_pixels.py [--files 12] [--repeat 5]

Corpus (synthetic, written to a temporary folder, deleted afterwards):
- ultrasound: US Image Storage, 600 x 800 RGB 8-bit, 1 frame, Philips iU22 headers, so the
  shipped CTP rule "ctp-23" (rows 0..59) fires;
- radiograph: CR, 2592 x 2208 MONOCHROME2 16-bit with BitsStored 12 and an overlay plane
  hidden in bit 14, Canon CXDI headers, so "ctp-46" (two 80-row bands) fires and Clean
  Graphics clears the hidden plane.

Competitors, each timed on every file of a kind, per repetition, in rotated order:
- ``io``: dcmread + save_as, the floor an archive run pays anyway;
- ``medveil``: dcmread + PixelCleaner.clean + save_as;
- ``numpy``: dcmread + ds.pixel_array + slice assignment + high-bit AND + ds.PixelData =
  arr.tobytes() + save_as, the usual pydicom way (same rectangles, same result: checked).

Reported: medians over repetitions of the per-file time, ``overhead`` = (medveil - io) / io
(the issue's budget is < 10 %), and ``speedup`` = (numpy - io) / (medveil - io), both as
medians of per-repetition ratios with their p10-p90 range.
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
from medveil.pixels import PixelCleaner
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
            for rep in range(args.repeat):
                order = names[rep % 3 :] + names[: rep % 3]
                for name in order:
                    t0 = time.perf_counter()
                    for p in paths:
                        ds = pydicom.dcmread(p)
                        comps[name](ds)
                        ds.save_as(io.BytesIO(), enforce_file_format=True)
                    times[name].append((time.perf_counter() - t0) / len(paths))
            t = {k: np.array(v) for k, v in times.items()}
            over = (t["medveil"] - t["io"]) / t["io"]
            speed = (t["numpy"] - t["io"]) / np.maximum(t["medveil"] - t["io"], 1e-9)
            size = paths[0].stat().st_size / 1e6
            print(f"## {kind}: {args.files} files of {size:.1f} MB, {args.repeat} repetitions")
            for k in names:
                print(f"  {k:8s} {np.median(t[k]) * 1e3:8.2f} ms/file")
            print(
                f"  overhead of medveil cleaning over read+write: {np.median(over):+.1%} "
                f"(p10-p90 {np.percentile(over, 10):+.1%}..{np.percentile(over, 90):+.1%})"
            )
            print(
                f"  cleaning cost, numpy peer / medveil: {np.median(speed):.2f}x "
                f"(p10-p90 {np.percentile(speed, 10):.2f}..{np.percentile(speed, 90):.2f})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
