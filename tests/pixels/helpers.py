"""Synthetic DICOM images with text burned into known rectangles, for the pixel tests."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

RULES_TOML = """
[[rule]]
id = "test-acme"
description = "Acme scanner, banner on top, serial in a corner of frames 1-2"
match = { all = [
  { attr = "Manufacturer", contains = "acme", ignore_case = true },
  { attr = "ManufacturerModelName", prefix = "Veil" },
] }
regions = [
  { rows = [0, 12], cols = [4, 60] },
  { rows = [40, 52], cols = [70, 90], frames = [1, 3] },
]
"""

#: The rectangles of RULES_TOML as (r0, r1, c0, c1, f0, f1); f1 None = every frame.
RULE_RECTS = [(0, 12, 4, 60, 0, None), (40, 52, 70, 90, 1, 3)]


def text_mask(rows: int, cols: int, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A boolean image that is True where Pillow drew text inside each (r0, r1, c0, c1)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (cols, rows), 0)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for r0, r1, c0, c1 in rects:
        # Draw on a patch of the rectangle's size so no stroke can leave it.
        patch = Image.new("L", (c1 - c0, r1 - r0), 0)
        ImageDraw.Draw(patch).text((1, 0), "DOE^JANE 19700101", fill=255, font=font)
        img.paste(patch, (c0, r0))
    del draw
    return np.asarray(img) > 0


def burned_image(
    *,
    frames: int = 1,
    rows: int = 64,
    cols: int = 96,
    samples: int = 1,
    dtype: str = "uint16",
    bits_stored: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Noise with bright text in every rule rectangle; shape (frames, rows, cols[, samples])."""
    dt = np.dtype(dtype)
    bs = bits_stored or dt.itemsize * 8
    rng = np.random.default_rng(seed)
    if dt.kind == "i":
        lo, hi = -(1 << (bs - 1)), (1 << (bs - 1)) - 1
    else:
        lo, hi = 0, (1 << bs) - 1
    shape = (frames, rows, cols) + ((samples,) if samples > 1 else ())
    img = rng.integers(lo, hi // 2, size=shape, endpoint=True, dtype=np.int64)
    txt = text_mask(rows, cols, [r[:4] for r in RULE_RECTS])
    if samples > 1:
        txt = txt[..., None]
    img = np.where(txt[None], hi, img)
    return img.astype(dt)


def expected_after(img: np.ndarray, fill: int = 0) -> np.ndarray:
    """What the test rule should leave: every rule rectangle filled, the rest identical."""
    out = img.copy()
    for r0, r1, c0, c1, f0, f1 in RULE_RECTS:
        out[f0 : (out.shape[0] if f1 is None else f1), r0:r1, c0:c1] = fill
    return out


def make_dataset(
    img: np.ndarray,
    *,
    photometric: str | None = None,
    bits_stored: int | None = None,
    planar: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    manufacturer: str = "ACME Medical",
    model: str = "Veil 3000",
    modality: str = "OT",
    sop_class: str = CT_IMAGE,
    pixel_bytes: bytes | None = None,
) -> pydicom.Dataset:
    """A minimal image dataset holding ``img`` (frames, rows, cols[, samples]) natively."""
    frames, rows, cols = img.shape[:3]
    samples = img.shape[3] if img.ndim == 4 else 1
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PhotometricInterpretation = photometric or ("RGB" if samples == 3 else "MONOCHROME2")
    if samples > 1:
        ds.PlanarConfiguration = int(planar)
    ds.BitsAllocated = img.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(img.dtype.kind == "i")
    if pixel_bytes is None:
        data = np.moveaxis(img, 3, 1) if planar and samples > 1 else img
        order = ">" if transfer_syntax == ExplicitVRBigEndian else "<"
        pixel_bytes = np.ascontiguousarray(data).astype(img.dtype.newbyteorder(order)).tobytes()
    if len(pixel_bytes) % 2:
        pixel_bytes += b"\x00"
    ds.PixelData = pixel_bytes
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    return ds
