"""Whole slide microscopy label images: the slide label is the patient's identity.

A LABEL image (Image Type value 3) is a photograph of the slide's label, and Specimen
Label in Image (0048,0010) YES says an image shows it: the name, the ID and the accession
number, printed, as a barcode or handwritten. Scanners write Burned In Annotation NO on
such images; the cleaner released them with the label readable. Text detection finds
printed text only, so without a pixel rule for the scanner the image is quarantined.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil import Policy
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.pixels.cleaner import specimen_label_reason
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.adversarial.generator import save
from tests.corpus.realistic import _render_lines

SECRET = bytes(range(32))
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _slide_image(flavour: str, burned: str | None, label_in_image: str) -> bytes:
    """A small WSI image of ``flavour`` (LABEL, OVERVIEW) showing the patient's name."""
    alpha, _ = _render_lines(96, 160, [("WIJNGAARDEN P", 10, 6), ("MRN5520113", 40, 6)], 14)
    grey = np.clip(230 - 220 * alpha, 0, 255).astype(np.uint8)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = WSI, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "WIJNGAARDEN^PETRONELLA", "MRN5520113", "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", flavour, "NONE"]
    if burned is not None:
        ds.BurnedInAnnotation = burned
    ds.SpecimenLabelInImage = label_in_image
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns, ds.NumberOfFrames = 96, 160, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.repeat(grey[:, :, None], 3, axis=2).tobytes()
    return save(ds)


@pytest.mark.parametrize(
    ("flavour", "burned", "label_in_image", "why"),
    [
        ("LABEL", "NO", "YES", "SpecimenLabelInImage"),  # the scanners' usual flags
        ("LABEL", None, "NO", "ImageType says LABEL"),  # a label image whatever it says
        ("LABEL", "YES", "YES", "SpecimenLabelInImage"),
        ("OVERVIEW", "NO", "YES", "SpecimenLabelInImage"),  # an overview with the label
    ],
)
def test_label_images_are_quarantined(
    flavour: str, burned: str | None, label_in_image: str, why: str
) -> None:
    data = _slide_image(flavour, burned, label_in_image)
    result = clean_instance(Deidentifier(Policy.default(), SECRET), data, "slide.dcm")
    assert result.status == "quarantined"
    assert why in result.reason and "barcode" in result.reason


def test_an_overview_without_the_label_is_released() -> None:
    ds = pydicom.dcmread(io.BytesIO(_slide_image("OVERVIEW", "NO", "NO")))
    assert specimen_label_reason(ds) is None
    ds.SpecimenLabelInImage = "Y"  # not exactly NO: read as YES (fail closed)
    assert specimen_label_reason(ds) == "SpecimenLabelInImage is not NO"


def test_a_label_never_reuses_its_series_verdict(tmp_path: Path) -> None:
    """The native road reuses a series' pixel verdict for files whose verdict attributes
    match: an OVERVIEW without the label, released, then a LABEL of the same size and
    series must still be looked at (and held back)."""
    from medveil.run.archive import deidentify_archive

    first = pydicom.dcmread(io.BytesIO(_slide_image("OVERVIEW", "NO", "NO")))
    second = pydicom.dcmread(io.BytesIO(_slide_image("LABEL", "NO", "YES")))
    second.SeriesInstanceUID, second.StudyInstanceUID = (
        first.SeriesInstanceUID,
        first.StudyInstanceUID,
    )
    src = tmp_path / "in"
    src.mkdir()
    first.save_as(src / "a_overview.dcm")
    second.save_as(src / "b_label.dcm")
    reasons: dict[str, str] = {}
    deidentify_archive(
        src,
        tmp_path / "out",
        policy=Policy.default(),
        secret=SECRET,
        workers=1,
        durable=False,
        on_quarantine=lambda name, why: reasons.__setitem__(name, why),
    )
    assert list(reasons) == ["b_label.dcm"], reasons
    assert "SpecimenLabelInImage" in reasons["b_label.dcm"]
