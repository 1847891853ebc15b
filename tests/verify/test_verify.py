"""The verifier finds every planted identifier, at the right path, without printing it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from medveil.cli.main import main
from medveil.verify import Finding, VerifyReport, verify_archive
from medveil.verify.matcher import have_aho_corasick
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.verify import factory as f


@pytest.fixture
def originals(tmp_path: Path) -> Path:
    """A directory with one original (plus an unrelated clean file)."""
    root = tmp_path / "orig"
    f.save(f.original(), root / "patient" / "ct1.dcm")
    return root


def _assert_no_value_printed(*texts: str) -> None:
    for text in texts:
        low = text.lower()
        for secret in f.SECRETS:
            for spelling in {secret, secret.replace("^", " "), secret.strip("^Q")}:
                assert spelling.lower() not in low, "a report printed an identifying value"


def _verify(originals: Path, out: Path, **kw) -> VerifyReport:
    """Run the verifier; with pyahocorasick present, both engines must report the same."""
    report = verify_archive(originals, out, engine="regex", hash_key=b"test key", **kw)
    _assert_no_value_printed(report.table(), report.to_json())
    if have_aho_corasick():
        other = verify_archive(originals, out, engine="aho", hash_key=b"test key", **kw)
        assert other.findings == report.findings
    return report


def _where(report: VerifyReport) -> set[tuple[str, str]]:
    return {(x.category, x.path) for x in report.findings}


def test_clean_output_exits_zero(originals: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    f.save(f.clean_output(), out / "a.dcm")
    report = _verify(originals, out)
    assert report.findings == [] and report.clean and report.exit_code == 0
    assert report.values >= 15 and report.dates == 2
    assert main(["verify", str(originals), str(out)]) == 0
    assert "CLEAN" in capsys.readouterr().out


def _set(keyword: str, value) -> Callable[[Dataset], None]:
    return lambda ds: setattr(ds, keyword, value)


def _nested_uid(ds: Dataset) -> None:
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = f.REF_UID


def _nested_name(ds: Dataset) -> None:
    item = Dataset()
    item.PersonName = f.NAME
    ds.ContentSequence = [Dataset()]
    ds.ContentSequence[0].ContentSequence = [Dataset(), item]


def _private(ds: Dataset) -> None:
    ds.private_block(0x0013, "OTHER FAKE", create=True).add_new(0x01, "LO", f.PRIVATE_TEXT)


def _private_name(ds: Dataset) -> None:
    ds.private_block(0x0019, "OTHER FAKE", create=True).add_new(0x05, "SH", "Janette")


def _meta(ds: Dataset) -> None:
    ds.file_meta.MediaStorageSOPInstanceUID = f.SOP_UID


def _un_standard(ds: Dataset) -> None:
    ds.add_new(0x00101000, "UN", f.ALT_ID.encode())  # OtherPatientIDs written as UN


def _un_private(ds: Dataset) -> None:
    ds.private_block(0x0021, "OTHER FAKE", create=True).add_new(0x02, "UN", f.MRN.encode())


def _binary(payload: bytes) -> Callable[[Dataset], None]:
    # Control bytes around the text keep the element from decoding as text: only the raw
    # byte search can see it.
    return lambda ds: ds.add_new(0x00420011, "OB", b"\x01\x02\x03" + payload + b"\x00\x04")


def _nested_date(ds: Dataset) -> None:
    item = Dataset()
    item.ScheduledProcedureStepStartDate = f.STUDY_DATE
    ds.ScheduledProcedureStepSequence = [item]


def _hidden_bits(ds: Dataset) -> None:
    px = np.frombuffer(ds.PixelData, dtype="<u2").copy()
    px[5] |= 1 << 13  # above BitsStored 12: an overlay hidden in the pixel data
    ds.PixelData = px.tobytes()


PLANTS = [
    ("standard id", _set("PatientID", f.MRN), "ids", "(0010,0020)", "element"),
    ("name", _set("PatientName", f.NAME), "names", "(0010,0010)", "element"),
    ("accession", _set("AccessionNumber", f.ACCESSION), "ids", "(0008,0050)", "element"),
    ("serial", _set("DeviceSerialNumber", f.SERIAL), "ids", "(0018,1000)", "element"),
    ("address", _set("InstitutionAddress", f.ADDRESS), "free_text", "(0008,0081)", "element"),
    ("station", _set("StationName", f.STATION), "free_text", "(0008,1010)", "element"),
    ("nested uid", _nested_uid, "uids", "(0008,1110)[0]/(0008,1155)", "element"),
    (
        "deep name",
        _nested_name,
        "names",
        "(0040,A730)[0]/(0040,A730)[1]/(0040,A123)",
        "element",
    ),
    ("private", _private, "private", "(0013,1001)", "element"),
    ("private name component", _private_name, "private", "(0019,1005)", "element"),
    ("file meta", _meta, "meta", "(0002,0003)", "element"),
    ("UN standard", _un_standard, "ids", "(0010,1000)", "element"),
    ("UN private", _un_private, "private", "(0021,1002)", "element"),
    (
        "free text",
        _set("StudyDescription", f"Follow-up of {f.NAME_SPACED}, see report"),
        "free_text",
        "(0008,1030)",
        "element",
    ),
    (
        "free text LT",
        _set("ImageComments", f"Phone {f.PHONE} for results"),
        "free_text",
        "(0020,4000)",
        "element",
    ),
    (
        "latin-1 bytes",
        _binary(f.ADDRESS.encode("latin-1")),
        "free_text",
        "(0042,0011)",
        "bytes:latin-1",
    ),
    (
        "utf-16 bytes",
        _binary(f.INSTITUTION.upper().encode("utf-16-le")),
        "free_text",
        "(0042,0011)",
        "bytes:utf-16-le",
    ),
    (
        "utf-8 bytes, ^ as space",
        _binary(f.NAME.encode()),
        "free_text",
        "(0042,0011)",
        "bytes:utf-8",
    ),
    ("unshifted date", _set("StudyDate", f.STUDY_DATE), "dates", "(0008,0020)", "element"),
    ("birth date", _set("PatientBirthDate", f.BIRTH), "dates", "(0010,0030)", "element"),
    (
        "date in DT",
        _set("AcquisitionDateTime", f.STUDY_DATE + "101500"),
        "dates",
        "(0008,002A)",
        "element",
    ),
    ("nested date", _nested_date, "dates", "(0040,0100)[0]/(0040,0002)", "element"),
    ("uid", _set("FrameOfReferenceUID", f.FOR_UID), "uids", "(0020,0052)", "element"),
    ("hidden bits", _hidden_bits, "hidden_bits", "(7FE0,0010)", "pixels"),
]


@pytest.mark.parametrize(
    ("plant", "category", "path", "how"), [p[1:] for p in PLANTS], ids=[p[0] for p in PLANTS]
)
def test_planted_identifier_is_found(
    originals: Path, tmp_path: Path, plant, category: str, path: str, how: str, capsys
) -> None:
    ds = f.clean_output()
    plant(ds)
    out = tmp_path / "out"
    f.save(ds, out / "x" / "renamed-0001.dcm")  # output names have nothing to do with inputs
    report = _verify(originals, out)
    assert (category, path) in _where(report), report.table()
    hit = next(x for x in report.findings if (x.category, x.path) == (category, path))
    assert hit.how == how
    assert report.exit_code == 1
    if category != "hidden_bits":
        assert hit.sources == (str(originals / "patient" / "ct1.dcm"),)
        assert hit.length > 0 and len(hit.value_hash) == 16
    rc = main(["verify", str(originals), str(out), "--report", str(tmp_path / "r.json")])
    printed = capsys.readouterr()
    assert rc == 1
    written = (tmp_path / "r.json").read_text()
    _assert_no_value_printed(printed.out, printed.err, written)
    assert json.loads(written)["counts"][category] >= 1


def test_each_category_and_only_planted_paths(originals: Path, tmp_path: Path) -> None:
    """All plants in one file: every category is counted, and nothing else is reported."""
    ds = f.clean_output()
    for _id, plant, *_ in PLANTS:
        plant(ds)
    out = tmp_path / "out"
    f.save(ds, out / "all.dcm")
    report = _verify(originals, out)
    expected = {(c, p) for _id, _plant, c, p, _how in PLANTS}
    assert expected <= _where(report)
    assert all(n > 0 for n in report.counts().values()), report.counts()
    extra = _where(report) - expected
    # A planted value may show up in a second place only where a plant put it as well.
    assert {p for _c, p in extra} <= {"(0002,0003)", "(0008,0018)"}, extra


def test_latin1_only_seen_by_byte_search(originals: Path, tmp_path: Path) -> None:
    ds = f.clean_output()
    _binary(f.ADDRESS.encode("latin-1"))(ds)
    out = f.save(ds, tmp_path / "out" / "o.dcm")
    report = _verify(originals, out)
    assert [x.how for x in report.findings] == ["bytes:latin-1"]


def test_charset_decoded_name(originals: Path, tmp_path: Path) -> None:
    """A name re-encoded in Latin-1 (ISO_IR 100) is still found by the element search."""
    ds = f.clean_output()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstitutionAddress = f.ADDRESS.upper()
    out = f.save(ds, tmp_path / "out" / "o.dcm")
    report = _verify(originals, out)
    assert ("free_text", "(0008,0081)", "element") in {
        (x.category, x.path, x.how) for x in report.findings
    }


def test_iso_2022_name_found_by_element_search(tmp_path: Path) -> None:
    """A name learned in UTF-8 and released in ISO 2022 (JIS escapes) is decoded and found."""
    orig = f.original()
    orig.PatientName = "Yamadaya^Tarou=山田屋^太郎"
    originals = f.save(orig, tmp_path / "orig" / "o.dcm")
    ds = f.clean_output()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.ReferringPhysicianName = "=山田屋^太郎"
    out = f.save(ds, tmp_path / "out" / "o.dcm")
    assert "山田屋".encode() not in out.read_bytes()  # so no UTF-8 byte search can see it
    report = _verify(originals, out)
    assert [(x.category, x.path, x.how) for x in report.findings] == [
        ("names", "(0008,0090)", "element")
    ]
    assert "山" not in report.table() + report.to_json()


def test_implicit_vr_private_un_and_deflated(originals: Path, tmp_path: Path) -> None:
    """Private elements read back as UN (implicit VR), and deflated datasets, are searched."""
    ds = f.clean_output()
    _private(ds)
    a = f.save(ds, tmp_path / "out" / "implicit.dcm", transfer_syntax=ImplicitVRLittleEndian)
    ds = f.clean_output()
    ds.PatientID = f.MRN
    b = f.save(
        ds, tmp_path / "out" / "deflated.dcm", transfer_syntax=DeflatedExplicitVRLittleEndian
    )
    report = _verify(originals, tmp_path / "out")
    got = {(Path(x.file).name, x.category, x.path) for x in report.findings}
    assert (a.name, "private", "(0013,1001)") in got
    assert (b.name, "ids", "(0010,0020)") in got


def test_preamble_and_non_dicom_files(originals: Path, tmp_path: Path) -> None:
    ds = f.clean_output()
    ds.preamble = f.MRN.encode().ljust(128, b"\x00")
    out = tmp_path / "out"
    f.save(ds, out / "p.dcm")
    (out / "notes.txt").write_text(f"patient {f.NAME_SPACED.upper()} moved\n", encoding="utf-16-le")
    report = _verify(originals, out)
    got = {(Path(x.file).name, x.category, x.path.split("@")[0], x.how) for x in report.findings}
    assert ("p.dcm", "meta", "preamble", "bytes:utf-8") in got
    assert ("notes.txt", "names", "file", "bytes:utf-16-le") in got
    assert report.not_dicom == [str(out / "notes.txt")]


def test_pixel_data_is_not_byte_searched(originals: Path, tmp_path: Path) -> None:
    """Pixel bytes that happen to spell a value are not a header leak (and 16 of 16 bits used)."""
    ds = f.clean_output()
    ds.BitsStored, ds.HighBit = 16, 15
    ds.PixelData = f.MRN.encode().ljust(32, b" ")
    out = f.save(ds, tmp_path / "o.dcm")
    assert _verify(originals, out).findings == []


def test_signed_pixels_sign_extension_is_not_hidden(originals: Path, tmp_path: Path) -> None:
    ds = f.clean_output()
    ds.PixelRepresentation = 1
    px = np.array([-5, -2048, 2047, 0] * 4, dtype="<i2")  # sign-extended 12-bit values
    ds.PixelData = px.tobytes()
    out = f.save(ds, tmp_path / "o.dcm")
    assert _verify(originals, out).findings == []
    px[3] = 0x1000  # bit 12 set on a positive value: not a sign extension
    ds.PixelData = px.tobytes()
    f.save(ds, out)
    assert [x.category for x in _verify(originals, out).findings] == ["hidden_bits"]


def test_counting_rule_and_strict(originals: Path, tmp_path: Path) -> None:
    """Short values, stop words, 1-letter components and private codes count only in strict."""
    ds = f.clean_output()
    ds.StudyID = f.SHORT_STUDY_ID  # 2 characters
    ds.ImageComments = f.STOP_WORD_HISTORY  # a stop word
    ds.PatientName = "SUBJECT^0001^Q"  # 'Q' is a one-character component of the real name
    # ScanOptions = HELICAL is kept in the output; the original also had it in a private LO.
    out = f.save(ds, tmp_path / "o.dcm")
    lenient = _verify(originals, out)
    assert lenient.findings == [] and lenient.exit_code == 0
    strict = _verify(originals, out, strict=True)
    got = {(x.category, x.path) for x in strict.findings}
    assert ("ids", "(0020,0010)") in got
    assert ("free_text", "(0020,4000)") in got
    assert ("names", "(0010,0010)") in got
    assert ("free_text", "(0018,0022)") in got
    assert strict.skipped_values == 0 < lenient.skipped_values
    assert main(["verify", "--strict", str(originals), str(out)]) == 1


def test_well_known_uids_never_count(originals: Path, tmp_path: Path) -> None:
    out = f.save(f.clean_output(), tmp_path / "o.dcm")  # same SOP class + transfer syntax
    found = _verify(originals, out, strict=True).findings
    assert found and {x.category for x in found} == {"free_text"}  # the kept private code only


def test_matching_ignores_file_names(tmp_path: Path) -> None:
    """Two originals, two outputs with swapped names: each leak points at its true source."""
    a = f.original()
    b = f.original()
    b.PatientID = "MRN-55555-B"
    b.PatientName = "Quillfeather^Bartholomew"
    f.save(a, tmp_path / "orig" / "a.dcm")
    f.save(b, tmp_path / "orig" / "b.dcm")
    out_a, out_b = f.clean_output(), f.clean_output()
    out_a.PatientID = f.MRN
    out_b.PatientID = "MRN-55555-B"
    f.save(out_a, tmp_path / "out" / "b.dcm")
    f.save(out_b, tmp_path / "out" / "a.dcm")
    report = _verify(tmp_path / "orig", tmp_path / "out")
    src = {Path(x.file).name: {Path(s).name for s in x.sources} for x in report.findings}
    assert src == {"b.dcm": {"a.dcm"}, "a.dcm": {"b.dcm"}}
    assert "quillfeather" not in report.to_json().lower()


def test_unreadable_files_are_reported(originals: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    good = f.save(f.clean_output(), out / "ok.dcm")
    raw = good.read_bytes()
    (out / "truncated.dcm").write_bytes(raw[: len(raw) // 2] + b"\x00" + f.PHONE.encode())
    (originals / "junk.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    report = _verify(originals, out)
    assert [p for p, _ in report.unreadable_originals] == [str(originals / "junk.dcm")]
    assert any(x.file.endswith("truncated.dcm") for x in report.findings)
    assert main(["verify", str(originals), str(out), "--json"]) == 1
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["clean"] is False


def test_usage_errors_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["verify", str(tmp_path / "missing"), str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(tmp_path)])
    assert exc.value.code == 2
    capsys.readouterr()


def test_finding_hint_is_not_the_value() -> None:
    x = Finding(file="f", category="names", path="(0010,0010)", how="element", first="d", length=7)
    assert x.hint() == "d… (7)"


def test_values_in_file_and_folder_names_are_findings_and_redacted(tmp_path: Path, capsys) -> None:
    """PACS exports name folders after patients: the report names them, never prints them."""
    orig_root = tmp_path / "orig"
    f.save(f.original(), orig_root / "DOELING_JANETTE" / "ct1.dcm")
    out = tmp_path / "out"
    ds = f.clean_output()
    ds.PatientID = f.MRN
    f.save(ds, out / "Doeling Janette" / f"{f.MRN}.dcm")
    report = _verify(orig_root, out)
    got = {(x.category, x.path, x.how) for x in report.findings}
    assert ("ids", "(file name)", "file-name") in got
    assert ("names", "(folder name)", "file-name") in got
    assert ("ids", "(0010,0020)", "element") in got
    assert {x.file for x in report.findings} == {str(out / "[redacted]" / "[redacted]")}
    assert {s for x in report.findings for s in x.sources} == {
        str(orig_root / "[redacted]" / "ct1.dcm")
    }
    assert main(["verify", str(orig_root), str(out), "--json"]) == 1
    printed = capsys.readouterr()
    _assert_no_value_printed(printed.out, printed.err)


def test_one_finding_per_name_not_per_component(originals: Path, tmp_path: Path) -> None:
    ds = f.clean_output()
    ds.PatientName = f.NAME
    ds.StudyDescription = "Janette Doeling, follow-up"  # given name first, no middle
    out = f.save(ds, tmp_path / "o.dcm")
    found = [(x.path, x.length) for x in _verify(originals, out).findings]
    assert found == [("(0008,1030)", len("janette doeling")), ("(0010,0010)", len(f.NAME))]


def test_zip_and_tar_archives_are_opened(tmp_path: Path) -> None:
    """Originals shipped as a .tar.gz teach; a .zip release is searched member by member."""
    import tarfile
    import zipfile

    src = f.save(f.original(), tmp_path / "stage" / "ct1.dcm")
    originals = tmp_path / "orig.tar.gz"
    with tarfile.open(originals, "w:gz") as tf:
        tf.add(src, arcname="DOELING_JANETTE/ct1.dcm")
    ds = f.clean_output()
    ds.PatientID = f.MRN
    leaked = f.save(ds, tmp_path / "stage" / "leak.dcm")
    clean = f.save(f.clean_output(), tmp_path / "stage" / "clean.dcm")
    out = tmp_path / "out"
    out.mkdir()
    with zipfile.ZipFile(out / "release.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(leaked, "a/1.dcm")
        zf.write(clean, "b/2.dcm")
    report = _verify(originals, out)
    assert report.originals == 1 and report.outputs == 2
    assert [(x.file, x.category, x.path) for x in report.findings] == [
        (str(out / "release.zip") + "!a/1.dcm", "ids", "(0010,0020)")
    ]
    assert report.findings[0].sources == (f"{originals}![redacted]/ct1.dcm",)


def test_broken_archive_is_an_unreadable_output(originals: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "release.tar.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    (out / "x.tar").write_bytes(b"not a tar at all")
    report = _verify(originals, out)
    assert [p for p, _e in report.unreadable_outputs] == [
        str(out / "release.tar.gz"),
        str(out / "x.tar"),
    ]
    assert all(e.endswith("Error") for _p, e in report.unreadable_outputs)
    assert report.findings == [] and report.exit_code == 1


def test_nothing_learned_is_not_clean(tmp_path: Path, capsys) -> None:
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "notes.txt").write_text("no DICOM here")
    out = f.save(f.clean_output(), tmp_path / "out" / "o.dcm")
    report = _verify(tmp_path / "orig", out)
    assert report.findings == [] and not report.clean and report.exit_code == 1
    assert "NOT VERIFIED" in report.table()
    assert main(["verify", str(tmp_path / "orig"), str(out)]) == 1
    capsys.readouterr()
