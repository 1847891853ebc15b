"""Large outputs on the native road: joined by the core, the raw-byte engine's bytes.

From 4 MiB of pixel data the native road joins its output with ``_core.gather`` (as the
raw-byte engine does from 64 KiB): a radiograph and a cine, Explicit and Implicit VR, must
give the raw-byte engine's result exactly, with the catalog hash of the bytes handed out.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from medveil.engine import instance as inst
from medveil.engine import native as native_module
from medveil.engine.dataset import Deidentifier
from medveil.policy.schema import Policy
from pydicom.dataset import Dataset

from tests.engine.conftest import base_dataset, part10

from .roads import SECRET, Coverage, check_roads, quiet


def _image(frames: int, rows: int, cols: int, rgb: bool) -> Dataset:
    """A DX radiograph (16-bit grey) or a US cine (8-bit RGB frames) with a patient."""
    ds = base_dataset()
    rng = np.random.default_rng(frames * rows * cols)
    ds.Rows, ds.Columns = rows, cols
    ds.PixelRepresentation = 0
    if rgb:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
        ds.Modality = "US"
        ds.NumberOfFrames = frames
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.PhotometricInterpretation = "RGB"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = rng.integers(0, 256, frames * rows * cols * 3, dtype=np.uint8).tobytes()
    else:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        ds.Modality = "DX"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelData = rng.integers(0, 4096, rows * cols, dtype=np.uint16).tobytes()
    return ds


@pytest.mark.parametrize("rgb", [False, True])
@pytest.mark.parametrize("implicit", [False, True])
def test_native_road_matches_raw(rgb: bool, implicit: bool) -> None:
    """Above the gather size the road writes the file, with the raw-byte engine's bytes."""
    ds = _image(6, 700, 800, rgb) if rgb else _image(1, 1500, 1600, rgb)
    assert len(ds.PixelData) >= native_module._GATHER_AT
    engine = Deidentifier(Policy(), SECRET)
    cov = Coverage()
    check_roads(engine, part10(ds, implicit), f"rgb={rgb} implicit={implicit}", cov)
    assert cov.native == 1, cov.reasons  # the road, not a fallback, wrote the second pass


def test_one_part_and_the_catalog_hash() -> None:
    """The road hands out one bytes object, and the catalog hashes exactly those bytes."""
    data = part10(_image(1, 1500, 1600, False))
    engine = Deidentifier(Policy(), SECRET)
    with quiet():
        inst.clean_instance(engine, bytearray(data), "input")  # teaches the road
        out = inst.native_engine_of(engine).apply(bytearray(data))
        result = inst.clean_instance(engine, bytearray(data), "input")
    assert isinstance(out, native_module.NativeOutcome)
    assert len(out.parts) == 1 and type(out.parts[0]) is bytes
    assert out.sha256 == hashlib.sha256(out.parts[0]).hexdigest()
    assert result.engine == "native"
    assert result.row["sha256"] == hashlib.sha256(result.data).hexdigest()
