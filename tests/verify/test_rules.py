"""What the verifier learns and counts: the documented rules, each one tested both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
from medveil.cli.main import main
from medveil.verify import verify_archive
from medveil.verify.scan import leaf_tag, resolve_tags
from medveil.verify.values import classify, dates_in, learn
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from tests.verify import factory as f


@pytest.mark.parametrize(
    ("keyword", "kind"),
    [
        ("PatientName", "names"),
        ("PatientID", "ids"),
        ("OtherPatientIDs", "ids"),
        ("IssuerOfPatientID", "ids"),
        ("AccessionNumber", "ids"),
        ("StudyID", "ids"),
        ("DeviceSerialNumber", "ids"),
        ("InstitutionName", "free_text"),
        ("InstitutionAddress", "free_text"),
        ("InstitutionalDepartmentName", "free_text"),
        ("PatientTelephoneNumbers", "ids"),
        ("StationName", "free_text"),
        ("PatientBirthDate", "dates"),
        ("AcquisitionDateTime", "dates"),
        ("StudyInstanceUID", "uids"),
        ("RetrieveAETitle", "ids"),
        ("StudyDescription", None),
        ("Manufacturer", None),
        ("Modality", None),
        ("SeriesNumber", None),
        ("CodingSchemeUID", None),
        ("ImplementationClassUID", None),
    ],
)
def test_classification_by_vr_and_keyword(keyword: str, kind: str | None) -> None:
    from pydicom.datadict import dictionary_VR

    tag = tag_for_keyword(keyword)
    assert classify(tag, dictionary_VR(tag).split(" ")[0], keyword) == kind


def test_private_classification() -> None:
    assert classify(0x00291010, "LO", "") == "private"
    assert classify(0x00291010, "UN", "") == "private"
    assert classify(0x00291010, "PN", "") == "names"
    assert classify(0x00290010, "LO", "") is None  # private creator
    assert classify(0x00291010, "CS", "") is None
    assert classify(0x00291010, "CS", "", strict=True) == "private"


def test_dates_in_values() -> None:
    assert dates_in("20230105") == ["20230105"]
    assert dates_in("20230105-20230301") == ["20230105", "20230301"]
    assert dates_in("2023.01.05") == ["20230105"]
    assert dates_in("20230105101500.000000+0100") == ["20230105"]
    assert dates_in("101500") == []


def _learned(tmp_path: Path, ds, strict: bool = False) -> dict[str, str]:
    path = f.save(ds, tmp_path / "orig" / "o.dcm")
    return {k: v.kind for k, v in learn([path], strict=strict).values.items()}


def test_counting_rule_in_learning(tmp_path: Path) -> None:
    ds = f.original()
    ds.InstitutionalDepartmentName = "----"  # no letter or digit
    ds.Manufacturer = "Acme Medical Systems"
    ds.InstitutionName = "ACME"  # a word of the maker's name: a device code, not a site
    lenient = _learned(tmp_path, ds)
    strict = _learned(tmp_path, ds, strict=True)
    for value in ("q", "77", "none", "----", "acme", "helical"):
        assert value not in lenient, value
        assert value in strict, value
    assert lenient["doeling janette q"] == "names"
    assert lenient["doeling"] == "names" and lenient["janette"] == "names"
    assert lenient["mrn-48213-x"] == "ids"
    assert lenient["harrowgate clinic ward nine"] == "private"
    assert "müllerstrasse 12, kleinstadt" in lenient  # case-folded: ß == ss


def test_software_uid_is_not_an_identifier(tmp_path: Path) -> None:
    ds = f.original()
    ds.InstanceCreatorUID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's implementation UID
    assert "1.2.826.0.1.3680043.8.498.1" not in _learned(tmp_path, ds, strict=True)
    assert f.SOP_UID.lower() in _learned(tmp_path, ds, strict=True)


def test_uid_matches_whole_uids_only(tmp_path: Path) -> None:
    originals = f.save(f.original(), tmp_path / "orig" / "o.dcm")
    ds = f.clean_output()
    ds.FrameOfReferenceUID = f.FOR_UID + ".7"  # a longer UID that starts like an original one
    ds.SeriesInstanceUID = "9." + f.SERIES_UID
    out = f.save(ds, tmp_path / "out" / "o.dcm")
    assert verify_archive(originals, out).findings == []
    ds.FrameOfReferenceUID = f.FOR_UID
    f.save(ds, out)
    assert [x.path for x in verify_archive(originals, out).findings] == ["(0020,0052)"]


def test_allow_lists_but_does_not_count(tmp_path: Path, capsys) -> None:
    originals = f.save(f.original(), tmp_path / "orig" / "o.dcm")
    ds = f.clean_output()
    ds.StationName = f.STATION
    ds.ImageComments = f"acquired on {f.STATION}"
    out = f.save(ds, tmp_path / "out" / "o.dcm")
    report = verify_archive(originals, out, allow=["StationName"])
    assert [x.path for x in report.allowed] == ["(0008,1010)"]
    # The same value elsewhere is still a finding.
    assert [x.path for x in report.findings] == ["(0020,4000)"]
    ds.ImageComments = "none"
    f.save(ds, out)
    assert main(["verify", str(originals), str(out), "--allow", "StationName"]) == 0
    assert main(["verify", str(originals), str(out), "--allow", "(0008,1010),PatientID"]) == 0
    assert main(["verify", str(originals), str(out)]) == 1
    assert main(["verify", str(originals), str(out), "--allow", "NoSuchKeyword"]) == 2
    capsys.readouterr()


def test_tag_helpers() -> None:
    assert leaf_tag("(0008,1111)[0]/(0008,1155)") == 0x00081155
    assert leaf_tag("file@12") is None
    assert resolve_tags(["PatientID", "(0029,1010)", "00100010", 0x10]) == {
        0x00100020,
        0x00291010,
        0x00100010,
        0x10,
    }
    assert keyword_for_tag(0x00100020) == "PatientID"


def test_unusable_originals_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "orig"
    root.mkdir()
    (root / "a.txt").write_bytes(b" " + b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")  # off by one
    # Parses as one element (0820,0500): DICOM-like, but nothing pydicom knows.
    (root / "b.dcm").write_bytes(b"\x20\x08\x00\x05" + (4).to_bytes(4, "little") + b"abcd")
    index = learn(sorted(root.iterdir()))
    assert [(Path(p).name, r) for p, r in index.unreadable] == [
        ("a.txt", "not DICOM"),
        ("b.dcm", "no standard data elements"),
    ]
    assert index.originals == 0


def test_outermost_drops_contained_matches() -> None:
    from medveil.verify.scan import outermost

    assert outermost([(0, 17, 0), (0, 7, 1), (8, 15, 2), (20, 24, 3), (22, 30, 4)]) == [
        (0, 17, 0),
        (20, 24, 3),
        (22, 30, 4),
    ]
    assert outermost([]) == []


def test_private_dates_are_dates(tmp_path: Path) -> None:
    """A private value that reads as a date is learned as a date and checked as one."""
    orig = f.original()
    orig.private_block(0x0023, "FAKE DATES", create=True).add_new(0x01, "LO", "20190917")
    originals = f.save(orig, tmp_path / "orig" / "o.dcm")
    index = learn([originals])
    assert "20190917" in index.dates and "20190917" not in index.values
    ds = f.clean_output()
    ds.StudyID = "20190917"  # not a date element: a number, not a date leak
    ds.private_block(0x0025, "OTHER", create=True).add_new(0x07, "UN", b"20190917")
    out = f.save(ds, tmp_path / "out" / "o.dcm")
    found = [(x.category, x.path, x.kind) for x in verify_archive(originals, out).findings]
    assert found == [("private", "(0025,1007)", "dates")]


def test_long_values_are_cut_at_a_word_break(tmp_path: Path) -> None:
    """A 3 KB private note is searched by its first ~1 KiB, cut where a match can end."""
    note = " ".join(f"word{i:04d}" for i in range(400))  # 3.6 KB, no break at 1024
    orig = f.original()
    orig.private_block(0x0027, "FAKE NOTES", create=True).add_new(0x01, "LT", note)
    originals = f.save(orig, tmp_path / "orig" / "o.dcm")
    (value,) = [v for v in learn([originals]).values if v.startswith("word0000")]
    assert 512 < len(value) <= 1024 and note.startswith(value) and note[len(value)] == " "
    ds = f.clean_output()
    ds.ImageComments = note
    out = f.save(ds, tmp_path / "out" / "o.dcm")
    assert [x.path for x in verify_archive(originals, out).findings] == ["(0020,4000)"]
