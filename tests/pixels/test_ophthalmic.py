"""Ophthalmic photographs: fundus cameras print the patient's name on the image.

The Ophthalmic Photography classes (and modality OP) are classes that typically carry
burned-in text, as ultrasound is: a fundus photograph whose device wrote Burned In
Annotation NO was released with the name and ID printed under the retina.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from medveil import Policy
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.adversarial.generator import save
from tests.corpus.realistic import _render_lines

SECRET = bytes(range(32))
OP_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"


def _fundus(burned: str) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """A fundus photograph with the name and ID printed under the disc, and their boxes."""
    rows, cols = 192, 256
    yy, xx = np.mgrid[0:rows, 0:cols]
    disc = np.hypot(yy - rows / 2, xx - cols / 2) < 88
    base = np.where(disc, 120 + 40 * np.cos(xx / 9.0), 0.0)
    lines = [("WIJNGAARDEN, PETRONELLA", rows - 30, 4), ("MRN5520113 2023-03-12", rows - 16, 4)]
    alpha, boxes = _render_lines(rows, cols, lines, 11)
    grey = np.clip(base * (1 - alpha) + 250 * alpha, 0, 255).astype(np.uint8)
    rgb = np.stack([grey, (grey * 0.6).astype(np.uint8), (grey * 0.3).astype(np.uint8)], 2)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = OP_8BIT, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "WIJNGAARDEN^PETRONELLA", "MRN5520113", "OP"
    ds.ImageType, ds.BurnedInAnnotation = ["ORIGINAL", "PRIMARY"], burned
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    return save(ds), boxes


@pytest.mark.parametrize("burned", ["NO", "YES"])
def test_fundus_text_is_masked_whatever_the_flag_says(burned: str) -> None:
    data, boxes = _fundus(burned)
    result = clean_instance(Deidentifier(Policy.default(), SECRET), data, "fundus.dcm")
    assert result.status == "written", result.reason
    arr = pydicom.dcmread(io.BytesIO(b"".join(result.parts))).pixel_array
    for r0, r1, c0, c1 in boxes:
        assert np.ptp(arr[r0:r1, c0:c1]) == 0  # every ink box one flat value
    assert arr[96, 128].any()  # the retina is still there


def test_under_rules_alone_an_unmatched_fundus_is_held_back() -> None:
    data, _ = _fundus("NO")
    policy = Policy.from_toml('[pixels]\npixel_text = "rules"\n')
    result = clean_instance(Deidentifier(policy, SECRET), data, "fundus.dcm")
    assert result.status == "quarantined"
    assert "Ophthalmic Photography" in result.reason
