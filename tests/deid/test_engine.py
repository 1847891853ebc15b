"""Engine behaviour: determinism, consistency, dates, PHI scan, pydicom's own files."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import pydicom
import pytest
from medveil.dicom.io import read_dataset, write_dataset
from medveil.engine.dataset import Deidentifier, shift_date_value
from medveil.errors import MedveilError
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy
from medveil.policy.standard import Option
from medveil.run.demo import new_instance
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.conftest import bundled_test_files

from .conftest import OTHER_SECRET, SECRET

HEADER_ONLY = Policy(options=tuple(o for o in Policy().options if o is not Option.CLEAN_PIXEL_DATA))

PHI = {
    "name": "Zyxwvut^Henrietta",
    "id": "MRN-48213-X",
    "acc": "ACC99123",
    "birth": "19511023",
    "addr": "42 Elmwood Lane",
    "phone": "555-867-5309",
    "inst": "Saint Gertrude Hospital",
    "study_uid": "1.2.826.0.1.3680043.9.7777.1",
    "series_uid": "1.2.826.0.1.3680043.9.7777.2",
    "sop_uid": "1.2.826.0.1.3680043.9.7777.3",
}


def planted_dataset() -> Dataset:
    """A synthetic CT header with fake PHI in standard, private, nested, meta and text elements."""
    ds = new_instance("1.2.840.10008.5.1.4.1.1.2", PHI["sop_uid"])
    ds.file_meta.SourceApplicationEntityTitle = "GERTRUDECT1"
    ds.StudyInstanceUID = PHI["study_uid"]
    ds.SeriesInstanceUID = PHI["series_uid"]
    ds.PatientName = PHI["name"]
    ds.PatientID = PHI["id"]
    ds.PatientBirthDate = PHI["birth"]
    ds.PatientAddress = PHI["addr"]
    ds.PatientTelephoneNumbers = PHI["phone"]
    ds.AccessionNumber = PHI["acc"]
    ds.InstitutionName = PHI["inst"]
    ds.Modality = "CT"
    ds.StudyDate = "20240102"
    ds.SeriesDate = "20240102"
    ds.StudyDescription = f"CT chest for Henrietta Zyxwvut {PHI['id']} call {PHI['phone']}"
    ds.ImageComments = "patient Zyxwvut born 1951-10-23"
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "OTHER-77812"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = PHI["sop_uid"]
    ref.PatientName = PHI["name"]  # identity hidden in a nested item
    ds.ReferencedImageSequence = Sequence([ref])
    block = ds.private_block(0x0011, "ACME PRIVATE", create=True)
    block.add_new(0x01, "LO", PHI["name"])
    block.add_new(0x02, "LO", PHI["id"])
    ds.add_new(0x00291010, "UN", PHI["name"].encode())
    ds.add_new(0x60004000, "LT", "overlay by Zyxwvut")
    return ds


def test_no_planted_phi_in_written_bytes() -> None:
    ds = planted_dataset()
    Deidentifier(HEADER_ONLY, SECRET).apply(ds, check=False)
    data = write_dataset(ds)
    lowered = data.lower()
    for key, value in PHI.items():
        for token in [value, *value.split("^")]:
            assert token.encode().lower() not in lowered, f"{key} leaked"
    assert b"zyxwvut" not in lowered and b"henrietta" not in lowered
    assert b"other-77812" not in lowered and b"gertrude" not in lowered
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.PatientIdentityRemoved == "YES"
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.ReferencedImageSequence[0].ReferencedSOPInstanceUID == back.SOPInstanceUID
    assert "CT chest for" in back.StudyDescription
    codes = {item.CodeValue for item in back.DeidentificationMethodCodeSequence}
    assert {"113100", "113107", "113108", "113109", "113105"} <= codes
    assert back.LongitudinalTemporalInformationModified == "MODIFIED"


def test_same_secret_same_output_different_secret_unrelated() -> None:
    a, b, c = planted_dataset(), planted_dataset(), planted_dataset()
    Deidentifier(HEADER_ONLY, SECRET).apply(a, check=False)
    Deidentifier(HEADER_ONLY, SECRET).apply(b, check=False)
    Deidentifier(HEADER_ONLY, OTHER_SECRET).apply(c, check=False)
    assert write_dataset(a) == write_dataset(b)
    for kw in ("PatientID", "PatientName", "AccessionNumber", "StudyInstanceUID", "StudyDate"):
        assert str(a.data_element(kw).value) != str(c.data_element(kw).value), kw


def test_determinism_across_processes() -> None:
    code = (
        "import sys; from tests.deid.test_engine import planted_dataset, HEADER_ONLY; "
        "from tests.deid.conftest import SECRET; "
        "from medveil.dicom.io import write_dataset; "
        "from medveil.engine.dataset import Deidentifier; "
        "import hashlib; ds = planted_dataset(); "
        "Deidentifier(HEADER_ONLY, SECRET).apply(ds, check=False); "
        "print(hashlib.sha256(write_dataset(ds)).hexdigest())"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout.strip()
        for seed in (1, 2)
    }
    ds = planted_dataset()
    Deidentifier(HEADER_ONLY, SECRET).apply(ds, check=False)
    import hashlib

    assert outs == {hashlib.sha256(write_dataset(ds)).hexdigest()}


def test_uid_references_consistent_within_study() -> None:
    engine = Deidentifier(HEADER_ONLY, SECRET)
    first, second = planted_dataset(), planted_dataset()
    second.SOPInstanceUID = "1.2.826.0.1.3680043.9.7777.4"
    second.ReferencedImageSequence[0].ReferencedSOPInstanceUID = PHI["sop_uid"]
    engine.apply(first, check=False)
    engine.apply(second, check=False)
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # well-known: untouched
    assert len(first.StudyInstanceUID) <= 64 and first.StudyInstanceUID.startswith("2.25.")


def test_dates_shift_by_one_offset_per_patient() -> None:
    engine = Deidentifier(HEADER_ONLY, SECRET)
    a, b = planted_dataset(), planted_dataset()
    b.StudyDate = "20240302"
    b.add_new(0x00181012, "DA", "20240101")  # DateOfSecondaryCapture, not in the table
    engine.apply(a, check=False)
    engine.apply(b, check=False)
    import datetime as dt

    def day(s: str) -> dt.date:
        return dt.date(int(s[:4]), int(s[4:6]), int(s[6:]))

    assert (day(b.StudyDate) - day(a.StudyDate)).days == 60
    assert day(b.DateOfSecondaryCapture) != dt.date(2024, 1, 1)
    offset = Keyed(SECRET).date_offset(PHI["id"], 365)
    assert offset != 0 and (day(a.StudyDate) - dt.date(2024, 1, 2)).days == offset
    assert "PatientBirthDate" not in a or a.PatientBirthDate == ""


@pytest.mark.parametrize(
    ("value", "vr", "days", "expected"),
    [
        ("20240228", "DA", 1, "20240229"),
        ("20241231", "DA", 1, "20250101"),
        ("20240101120000.5+0100", "DT", -1, "20231231120000.5+0100"),
        ("2024", "DT", 0, "2024"),
        ("20240101-20240105", "DA", 2, "20240103-20240107"),
        ("2024X101", "DA", 1, None),
        ("20241301", "DA", 1, None),
    ],
)
def test_shift_date_value(value, vr, days, expected) -> None:
    assert shift_date_value(value, days, vr) == expected


def test_age_over_89_capped() -> None:
    ds = planted_dataset()
    ds.PatientAge = "093Y"
    Deidentifier(HEADER_ONLY, SECRET).apply(ds, check=False)
    assert ds.PatientAge == "090Y"
    ds = planted_dataset()
    ds.PatientAge = "045Y"
    Deidentifier(HEADER_ONLY, SECRET).apply(ds, check=False)
    assert ds.PatientAge == "045Y"


def test_safe_private_retained_only_with_option() -> None:
    def make() -> Dataset:
        ds = Dataset()
        ds.PatientID = "X1"
        block = ds.private_block(0x00E1, "ELSCINT1", create=True)  # block byte 0x10
        block.add_new(0x21, "DS", "12.5")  # safe: DLP
        block.add_new(0x99, "LO", "Zyxwvut")  # not safe
        return ds

    ds = make()
    Deidentifier(Policy(options=(Option.RETAIN_SAFE_PRIVATE,)), SECRET).apply(ds, check=False)
    assert ds[0x00E11021].value == "12.5" and ds[0x00E10010].value == "ELSCINT1"
    assert 0x00E11099 not in ds
    ds = make()
    Deidentifier(Policy(options=()), SECRET).apply(ds, check=False)
    assert not any(int(t) >> 16 == 0x00E1 for t in ds.keys())


def test_allow_list_mode_removes_unnamed_elements() -> None:
    ds = planted_dataset()
    ds.add_new(0x00181030, "LO", "protocol")  # ProtocolName: X in the table anyway
    ds.add_new(0x00180050, "DS", "2.5")  # SliceThickness: structural, kept
    ds.add_new(0x00181150, "IS", "12")  # ExposureTime: structural
    ds.add_new(0x00180060, "DS", "120")  # KVP: structural
    ds.add_new(0x00280030, "DS", [0.5, 0.5])
    ds.add_new(0x00189004, "CS", "RESEARCH")  # ContentQualification: not in the table
    Deidentifier(Policy(unknown_elements="remove", options=()), SECRET).apply(ds, check=False)
    assert 0x00189004 not in ds and ds.SliceThickness == 2.5 and "PixelSpacing" in ds


def test_every_pydicom_test_file_goes_through() -> None:
    engine = Deidentifier(Policy(allow_unmatched_burned_in=True), SECRET)
    done = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = bundled_test_files()
        for path in files:
            try:
                ds = read_dataset(path, path)
                engine.apply(ds, source=path)
                data = write_dataset(ds)
            except MedveilError as exc:
                assert path.split("/")[-1] in str(exc) or str(exc), exc  # typed, with a reason
                continue
            back = pydicom.dcmread(io.BytesIO(data), force=True)
            assert back.get("PatientIdentityRemoved") == "YES"
            done += 1
    assert done >= 60, done


def test_ct_small_roundtrip_keeps_pixels() -> None:
    path = get_testdata_file("CT_small.dcm")
    original = pydicom.dcmread(path)
    ds = read_dataset(path, path)
    Deidentifier(Policy(), SECRET).apply(ds, check=False)
    back = pydicom.dcmread(io.BytesIO(write_dataset(ds)))
    assert back.PixelData == original.PixelData
    assert back.ImagePositionPatient == original.ImagePositionPatient
    assert back.PatientName != original.PatientName


def test_undefined_even_tags_are_removed() -> None:
    ds = planted_dataset()
    ds.add_new(0x08200500, "UN", b"Zyxwvut^Henrietta MRN-48213-X")  # not in the dictionary
    ds.add_new(0x00181030, "LO", "protocol")  # defined: its own rule decides
    report = Deidentifier(HEADER_ONLY, SECRET).apply(ds, check=False)
    assert 0x08200500 not in ds
    assert ("(0820,0500)", "X-undefined-tag") in report.entries
