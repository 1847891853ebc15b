"""Burned In Annotation (0028,0301): any value but NO is read as YES (fail closed).

``YES\\NO``, ``Y`` and ``TRUE`` on a CT used to be released with no text screening,
because only an exact (case-folded) YES counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.cli.main import main
from medveil.errors import QuarantineError
from medveil.pixels.cleaner import PixelCleaner, burned_in_reasons, says_burned_in, text_classes
from medveil.pixels.rules import RuleSet
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

# Unusual spellings are the point of these tests: pydicom's warnings about them are not.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR CS")

CT = "1.2.840.10008.5.1.4.1.1.2"
NOT_NO = ["YES", "yes", "Yes", "YES\\NO", "NO\\YES", "Y", "TRUE", "no", "N0", "UNKNOWN"]
NO_OR_ABSENT = [None, "", "NO", "NO ", " NO", "NO\x00"]


def _ct(flag: str | None, *, raw: bool = False) -> Dataset:
    """A blank 8 x 8 CT whose BurnedInAnnotation is ``flag`` (None: absent)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CT
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer = "CT", "NOBODY"
    ds.PatientName, ds.PatientID = "FLAG^PAT", "FLAG01"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()
    if flag is not None:
        value: str | bytes = flag.encode("latin-1") if raw else flag
        ds.add(DataElement(0x00280301, "CS", value))
    return ds


def _from_file(ds: Dataset, tmp_path: Path) -> Dataset:
    """``ds`` as read back from a file: values stay raw, as the engines see them."""
    path = tmp_path / "f.dcm"
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


@pytest.mark.parametrize("flag", NOT_NO)
def test_any_value_but_no_says_burned_in(flag: str, tmp_path: Path) -> None:
    for ds in (_ct(flag), _from_file(_ct(flag), tmp_path)):
        assert says_burned_in(ds)
        assert any("BurnedInAnnotation" in r for r in burned_in_reasons(ds))
        assert text_classes(ds)  # so "auto" screens it
    reason = burned_in_reasons(_ct(flag))[0]
    assert reason == "BurnedInAnnotation is YES" if flag == "YES" else "is not NO" in reason


@pytest.mark.parametrize("flag", NO_OR_ABSENT)
def test_no_or_absent_says_nothing(flag: str | None, tmp_path: Path) -> None:
    for ds in (_ct(flag), _from_file(_ct(flag), tmp_path)):
        assert not says_burned_in(ds)
        assert burned_in_reasons(ds) == [] and text_classes(ds) == []


@pytest.mark.parametrize("flag", NOT_NO)
def test_rules_mode_holds_a_ct_that_does_not_say_no(flag: str) -> None:
    with pytest.raises(QuarantineError, match="BurnedInAnnotation is"):
        PixelCleaner(RuleSet([]), pixel_text="rules").clean(_ct(flag))


@pytest.mark.parametrize("flag", NOT_NO)
def test_auto_mode_screens_and_holds_when_no_text_is_found(flag: str) -> None:
    # A blank image: detection finds nothing, so nothing proves the flag wrong.
    with pytest.raises(QuarantineError, match="text detection found no text"):
        PixelCleaner(RuleSet([]), pixel_text="auto").clean(_ct(flag))


def test_allowed_unmatched_annotation_is_not_marked_clean() -> None:
    report = PixelCleaner(RuleSet([]), allow_unmatched_burned_in=True).clean(_ct("YES\\NO"))
    assert not report.clean_pixel_data  # BurnedInAnnotation is not rewritten to NO


@pytest.mark.parametrize("flag", NO_OR_ABSENT)
def test_a_ct_saying_no_is_released_unscreened(flag: str | None) -> None:
    report = PixelCleaner(RuleSet([]), pixel_text="auto").clean(_ct(flag))
    assert not report.screened and report.clean_pixel_data


def test_through_the_cli(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for k, flag in enumerate(["YES\\NO", "Y", "TRUE", "yes", "NO"]):
        _ct(flag).save_as(src / f"{k}.dcm", enforce_file_format=True)
    key = tmp_path / "k"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    argv = ["deid", str(src), str(out), "--secret-file", str(key), "--workers", "1"]
    assert main([*argv, "--quiet", "--no-fsync"]) == 1  # some quarantined
    written = [p for p in out.rglob("*.dcm") if ".medveil" not in p.parts]
    assert len(written) == 1
    assert pydicom.dcmread(written[0]).BurnedInAnnotation == "NO"
