"""Large outputs of the raw-byte engine: joined once by the core, the same bytes as before.

A radiograph or a cine (pixel data of 64 KiB and more) is joined by ``_core.gather`` in
RawEngine.apply; these check it against the Dataset engine byte for byte, the hash it can
make against hashlib, and the written file against the catalog row's SHA-256.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from medveil.engine import raw as raw_module
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance, raw_engine_of
from medveil.policy.schema import Policy
from pydicom.dataset import Dataset

from .conftest import SECRET, base_dataset, both_roads, part10, quiet


def _radiograph(rows: int, cols: int) -> Dataset:
    """A 16-bit (12 stored) grey image of rows x cols with a patient."""
    ds = base_dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image for Presentation
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(rows * cols)
    ds.PixelData = rng.integers(0, 4096, rows * cols, dtype=np.uint16).tobytes()
    return ds


def _cine(frames: int, rows: int, cols: int) -> Dataset:
    """An 8-bit RGB multi-frame ultrasound cine."""
    ds = base_dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image
    ds.Modality = "US"
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(frames)
    ds.PixelData = rng.integers(0, 256, frames * rows * cols * 3, dtype=np.uint8).tobytes()
    return ds


CASES = {
    "radiograph 64 KiB": lambda: _radiograph(128, 256),
    "radiograph 4.6 MB": lambda: _radiograph(1100, 2100),
    "cine 5.8 MB": lambda: _cine(8, 400, 600),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("implicit", [False, True])
def test_same_bytes_as_the_dataset_engine(case: str, implicit: bool) -> None:
    """The joined output equals the Dataset engine's, with the pixels where they were."""
    ds = CASES[case]()
    data = both_roads(ds, implicit)
    pixels = bytes(ds.PixelData)
    assert data.endswith(pixels) or pixels in data


@pytest.mark.parametrize("hash_output", [False, True])
def test_one_part_and_its_hash(monkeypatch: pytest.MonkeyPatch, hash_output: bool) -> None:
    """A large output is one bytes object; its hash, when made, is hashlib's of those bytes."""
    monkeypatch.setattr(raw_module, "_HASH_OUTPUT", hash_output)
    engine = Deidentifier(Policy(), SECRET)
    with quiet():
        out = raw_engine_of(engine).apply(bytearray(part10(_radiograph(600, 700))), "input")
    assert len(out.parts) == 1 and type(out.parts[0]) is bytes
    want = hashlib.sha256(out.parts[0]).hexdigest() if hash_output else None
    assert out.sha256 == want


def test_small_output_is_joined_in_python() -> None:
    """Without a large value there is nothing to gather: one part, no hash made."""
    engine = Deidentifier(Policy(), SECRET)
    with quiet():
        out = raw_engine_of(engine).apply(bytearray(part10(_radiograph(16, 16))), "input")
    assert len(out.parts) == 1 and out.sha256 is None


@pytest.mark.parametrize("hash_output", [False, True])
def test_catalog_hash_is_the_written_bytes(
    monkeypatch: pytest.MonkeyPatch, hash_output: bool
) -> None:
    """clean_instance's catalog SHA-256 is that of the very bytes it hands out to write."""
    monkeypatch.setattr(raw_module, "_HASH_OUTPUT", hash_output)
    engine = Deidentifier(Policy(), SECRET)
    with quiet():
        result = clean_instance(engine, bytearray(part10(_cine(6, 300, 500))), "input")
    assert result.status == "written" and result.engine in ("raw", "native")
    assert result.row["sha256"] == hashlib.sha256(result.data).hexdigest()
    assert result.row["size"] == len(result.data)
