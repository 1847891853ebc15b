"""Duplicate SOP Instance UIDs, DICOMDIR inputs and references in an archive run (issue 19).

The run's three accounts of what was released (summary, catalog, files on disk) must
agree whatever the input holds twice; a DICOMDIR input is replaced by one for the output;
references between instances follow them to their new UIDs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from medveil.dicom.vr import LONG_VRS
from medveil.policy.keys import Keyed
from medveil.run.archive import RunSummary, deidentify_archive
from medveil.run.outputs import (
    MEDIA_STORAGE_DIRECTORY,
    REFERENCE_TAGS,
    SHARES_COLUMN,
    is_dicomdir,
    place_exclusive,
)
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.corpus import realistic  # noqa: E402

SECRET = bytes(range(32))


@contextmanager
def file_set(dicomdir: Path) -> Iterator[FileSet]:
    """pydicom's FileSet of a DICOMDIR, its staging folder removed on leaving.

    Left to the garbage collector, a forked worker of a later run could remove the folder
    first, and this process's finalizer then fails.
    """
    fs = FileSet(pydicom.dcmread(dicomdir))
    try:
        yield fs
    finally:
        fs._stage["t"].cleanup()


def outputs(out: Path) -> list[Path]:
    """The released files of a run: OUTPUT/patient/study/series/instance.dcm."""
    return sorted(out.glob("*/*/*/*.dcm"))


def catalog_rows(out: Path) -> int:
    """Rows of the run's catalog."""
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    try:
        return int(db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
    finally:
        db.close()


def assert_agree(out: Path, summary: RunSummary) -> None:
    """Files on disk == catalog rows == summary's written (this run's and earlier ones')."""
    written = json.loads((out / ".medveil" / "summary.json").read_text())["written"]
    assert written == summary.written
    on_disk = len(outputs(out))
    assert on_disk == catalog_rows(out) == summary.written + _earlier(out, summary)


def _earlier(out: Path, summary: RunSummary) -> int:
    """Outputs written by the earlier runs a resumed summary does not count."""
    if not summary.resumed:
        return 0
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    try:
        n = db.execute("SELECT COUNT(*) FROM inputs WHERE status = 'written'").fetchone()[0]
    finally:
        db.close()
    return int(n) - summary.written


def run(src: Path, out: Path, **kw: object) -> tuple[RunSummary, dict[str, str]]:
    """deidentify_archive with the default policy; the quarantined inputs' reasons."""
    reasons: dict[str, str] = {}
    summary = deidentify_archive(
        src,
        out,
        secret=SECRET,
        workers=kw.pop("workers", 2),  # type: ignore[arg-type]
        durable=False,
        on_quarantine=lambda name, why: reasons.__setitem__(name, why),
        **kw,  # type: ignore[arg-type]
    )
    return summary, reasons


# ---------------------------------------------------------------------------- duplicates
def test_identical_copies_are_written_once(tmp_path: Path) -> None:
    """40 copies of one file over several worker tasks at once: one file, 39 duplicates."""
    src = tmp_path / "in"
    src.mkdir()
    ct = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    for i in range(40):
        shutil.copyfile(ct, src / f"copy{i:02d}.dcm")
    summary, reasons = run(src, tmp_path / "out")
    assert reasons == {}
    assert (summary.written, summary.duplicates, summary.quarantined) == (1, 39, 0)
    assert summary.exit_code == 0
    assert_agree(tmp_path / "out", summary)


def test_pydicom_files_summary_catalog_and_disk_agree(tmp_path: Path) -> None:
    """pydicom's bundled files share SOP Instance UIDs: no output is lost silently."""
    local = Path(pydicom.data.__file__).parent / "test_files"  # type: ignore[attr-defined]
    src = tmp_path / "in"
    for i, f in enumerate(sorted(p for p in local.rglob("*") if p.is_file())):
        (src / f"{i:03d}").mkdir(parents=True)
        shutil.copyfile(f, src / f"{i:03d}" / f.name)
    summary, reasons = run(src, tmp_path / "out")
    assert_agree(tmp_path / "out", summary)
    db = sqlite3.connect(tmp_path / "out" / ".medveil" / "catalog.sqlite")
    try:
        (differing,) = db.execute(
            f"SELECT COUNT(*) FROM instances WHERE {SHARES_COLUMN} != ''"
        ).fetchone()
    finally:
        db.close()
    # Once 140 were counted as written with 118 on disk: now identical copies are counted
    # duplicates and different files sharing a UID are all on disk, under variant names.
    assert summary.duplicates + differing >= 10
    assert summary.duplicates > 0 and differing > 0
    assert not any("duplicate SOP Instance UID" in r for r in reasons.values())


def test_resume_does_not_take_its_own_file_for_a_duplicate(tmp_path: Path) -> None:
    """A file placed by a killed run but never recorded is redone, not a duplicate."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(get_testdata_file(name), src / name)  # type: ignore[arg-type]
    out = tmp_path / "out"
    summary, _ = run(src, out)
    assert summary.written == 2
    # As if the run had been killed after the rename and before its records: the
    # catalog forgets one input; its file is still on disk.
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    (key, path) = db.execute("SELECT source_key, path FROM instances LIMIT 1").fetchone()
    db.execute("DELETE FROM instances WHERE source_key = ?", (key,))
    db.execute("DELETE FROM inputs WHERE source_key = ?", (key,))
    db.commit()
    db.close()
    assert (out / path).exists()
    again, reasons = run(src, out, resume=True)
    assert (again.written, again.duplicates, again.resumed, reasons) == (1, 0, 1, {})
    assert (out / path).exists()
    assert_agree(out, again)


@pytest.mark.parametrize("second", [b"A" * 1000, b"B" * 1000], ids=["same", "different"])
def test_place_exclusive_two_at_once(tmp_path: Path, second: bytes) -> None:
    """Two threads placing one name at once: one wins, the other sees same/different."""
    final = tmp_path / "x.dcm"
    tmps = [tmp_path / ".a.tmp", tmp_path / ".b.tmp"]
    tmps[0].write_bytes(b"A" * 1000)
    tmps[1].write_bytes(second)
    shas = [hashlib.sha256(t.read_bytes()).hexdigest() for t in tmps]
    got: list[str] = []
    barrier = threading.Barrier(2)

    def place(i: int) -> None:
        barrier.wait()
        got.append(place_exclusive(tmps[i], final, shas[i]))

    threads = [threading.Thread(target=place, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expect = "same" if second == b"A" * 1000 else "different"
    assert sorted(got) == sorted(["new", expect])
    assert not any(t.exists() for t in tmps)
    assert final.read_bytes() in (b"A" * 1000, second)


# ---------------------------------------------------------------------------- realistic
@pytest.fixture(scope="module")
def realistic_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, object, RunSummary]:
    """The realistic corpus (2 patients, with its DICOMDIR) through the default policy."""
    base = tmp_path_factory.mktemp("realistic")
    man = realistic.generate(base / "in", patients=2)
    summary, _ = run(base / "in", base / "out")
    return base / "in", base / "out", man, summary


def test_dicomdir_is_replaced(realistic_run: tuple[Path, Path, object, RunSummary]) -> None:
    """The input's DICOMDIR is not released; the output's one lists only released files."""
    src, out, man, summary = realistic_run
    assert isinstance(man, realistic.Manifest) and man.dicomdir
    assert is_dicomdir((src / man.dicomdir).read_bytes())
    assert summary.replaced == 1 and summary.dicomdir == "dicomdir/DICOMDIR"
    assert summary.dicomdir_left_out == 0
    assert_agree(out, summary)
    released = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in outputs(out)
    }
    listed = set()
    with file_set(out / summary.dicomdir) as fs:
        for instance in fs:
            path = Path(instance.path)
            assert path.is_file() and out / "dicomdir" in path.parents
            assert all(len(part) <= 8 for part in instance.ReferencedFileID)
            uid = str(instance.load().SOPInstanceUID)
            listed.add(uid)
            # The released file itself (a hard link), pixels and all.
            assert path.read_bytes() == released[uid].read_bytes()
    assert listed == set(released)
    needles = [s.encode() for s in man.all_identifiers()]
    data = (out / summary.dicomdir).read_bytes().upper()
    assert not [n for n in needles if n in data]
    originals = {u.encode() for u in man.uids}
    assert not [u for u in originals if u in data]


def test_dicomdir_flag_and_detection(tmp_path: Path) -> None:
    """--dicomdir writes one without a DICOMDIR input; pydicom's own DICOMDIR is detected."""
    assert is_dicomdir(Path(get_testdata_file("DICOMDIR")).read_bytes())  # type: ignore[arg-type]
    assert not is_dicomdir(Path(get_testdata_file("CT_small.dcm")).read_bytes())  # type: ignore[arg-type]
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src / "ct.dcm")  # type: ignore[arg-type]
    summary, _ = run(src, tmp_path / "plain")
    assert summary.dicomdir == "" and not (tmp_path / "plain" / "dicomdir").exists()
    summary, _ = run(src, tmp_path / "with", dicomdir=True)
    assert summary.dicomdir == "dicomdir/DICOMDIR"
    with file_set(tmp_path / "with" / summary.dicomdir) as fs:
        assert len(fs) == 1


@pytest.mark.parametrize("vr", sorted(LONG_VRS))
def test_dicomdir_detected_past_a_meta_element_of_every_long_vr(vr: str) -> None:
    """A 4-byte-length meta element before the SOP Class is stepped over, SV and UV too."""

    def meta_naming(sop_class: str) -> bytes:
        uid = sop_class.encode() + b"\0" * (len(sop_class) % 2)
        first = struct.pack("<HH2sHI", 2, 1, vr.encode(), 0, 8) + bytes(8)
        return bytes(128) + b"DICM" + first + struct.pack("<HH2sH", 2, 2, b"UI", len(uid)) + uid

    assert is_dicomdir(meta_naming(MEDIA_STORAGE_DIRECTORY))
    assert not is_dicomdir(meta_naming("1.2.840.10008.5.1.4.1.1.2"))


def test_dicomdir_lists_files_whose_study_id_the_policy_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every released demo file gets a record although the policy empties Study ID.

    The directory records' Type 1 keys get placeholders; the released files are not
    changed, and pydicom's staging folder does not outlive the run.
    """
    from medveil.run.demo import write_demo_archive

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    write_demo_archive(tmp_path / "in")
    summary, _ = run(tmp_path / "in", tmp_path / "out", dicomdir=True)
    out = tmp_path / "out"
    released = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in outputs(out)
    }
    assert released and summary.written == len(released)
    # The demo's files lose their Study ID: the case FileSet refused before.
    assert all(
        not pydicom.dcmread(p, stop_before_pixels=True).get("StudyID") for p in released.values()
    )
    assert summary.dicomdir == "dicomdir/DICOMDIR" and summary.dicomdir_left_out == 0
    with file_set(out / summary.dicomdir) as fs:
        listed = {}
        for instance in fs:
            listed[str(instance.load().SOPInstanceUID)] = Path(instance.path).read_bytes()
    assert set(listed) == set(released)
    assert all(listed[uid] == released[uid].read_bytes() for uid in released)
    assert not list(temp.iterdir())


def _nested_refs(ds: pydicom.Dataset) -> list[str]:
    """Values of the reference attributes inside the sequences of ds."""
    out: list[str] = []

    def walk(d: pydicom.Dataset, nested: bool) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item, True)
            elif nested and elem.tag in REFERENCE_TAGS and elem.value:
                out.append(str(elem.value))

    walk(ds, False)
    return out


def test_references_follow_their_instances(
    realistic_run: tuple[Path, Path, object, RunSummary],
) -> None:
    """Every reference to an input instance names its new UID; the summary counts the rest."""
    _src, out, man, summary = realistic_run
    assert isinstance(man, realistic.Manifest)
    keyed = Keyed(SECRET)
    new_of = {u: keyed.uid(u) for u in man.uids}
    known_new = set(new_of.values())
    have: set[str] = set()
    refs: list[str] = []
    checked = 0
    for p in outputs(out):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        have |= {
            str(ds.get(k, ""))
            for k in (
                "SOPInstanceUID",
                "SeriesInstanceUID",
                "StudyInstanceUID",
                "FrameOfReferenceUID",
            )
        }
        for u in _nested_refs(ds):
            checked += 1
            assert u not in new_of, "an input UID left as it was"
            if u.startswith("2.25."):
                assert u in known_new, "a new UID that is no input's"
        refs += sorted(set(_nested_refs(ds)))
    assert checked > 50  # SR, RT, source images and series references were looked at
    assert summary.references_unchecked == 0
    assert summary.unresolved_references == sum(u not in have for u in refs)


def test_unresolved_reference_is_counted(tmp_path: Path) -> None:
    """A reference to an instance the archive does not hold is counted as unresolved."""
    src = tmp_path / "in"
    src.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    ds.SourceImageSequence = [item]
    ds.save_as(src / "ct.dcm")
    summary, _ = run(src, tmp_path / "out")
    assert summary.written == 1
    assert summary.unresolved_references == 1
