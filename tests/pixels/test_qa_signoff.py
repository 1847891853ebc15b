"""QA sign-off: a real run's output, qa-signoff.json read strictly, refused folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.errors import MedveilError
from medveil.pixels.qa import (
    SIGNOFF,
    NotRunOutputError,
    Signoff,
    SignoffError,
    check_run_output,
    import_signoff,
    known_paths,
    read_signoff,
    released_paths,
    write_signoff,
)
from medveil.run.archive import deidentify_archive
from pydicom.data import get_testdata_file

from .helpers import make_dataset

SECRET = bytes(range(32))
FRAMES = 5


def cine(frames: int = FRAMES, rows: int = 240, cols: int = 320) -> np.ndarray:
    """A multi-frame image whose frames differ: a gradient and a square moving per frame."""
    img = np.empty((frames, rows, cols), np.uint16)
    grad = np.add.outer(np.arange(rows), np.arange(cols)).astype(np.uint16) * 6
    for f in range(frames):
        img[f] = grad
        img[f, 60:150, 20 + 50 * f : 70 + 50 * f] = 4000
    return img


def make_run(root: Path) -> Path:
    """De-identify a multi-frame ACME image and two pydicom files into root/out."""
    src = root / "in"
    src.mkdir(parents=True)
    ds = make_dataset(cine(), manufacturer="ACME Medical", model="Veil 3000", modality="MR")
    ds.PatientName, ds.PatientID = "DOE^JANE", "PHI-123456"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), "1.2.3.4.5"
    ds.WindowCenter, ds.WindowWidth = 2000, 4000
    ds.save_as(src / "cine.dcm", enforce_file_format=True)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), src / name)
    out = root / "out"
    summary = deidentify_archive(src, out, secret=SECRET, workers=1)
    assert summary.written == 3, summary
    return out


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run shared by the module's tests (each copies it before changing it)."""
    return make_run(tmp_path_factory.mktemp("qa-run"))


@pytest.fixture
def out(run_out: Path, tmp_path: Path) -> Path:
    """A private copy of the run's output."""
    dest = tmp_path / "out"
    shutil.copytree(run_out, dest)
    return dest


def test_released_paths_come_from_the_catalog(out: Path) -> None:
    paths = released_paths(out)
    assert len(paths) == 3 and all(p.endswith(".dcm") for p in paths)
    assert all((out / p).is_file() for p in paths)
    assert not any(p.startswith(("dicomdir/", ".medveil/")) for p in paths)
    (out / "stray.dcm").write_bytes(b"not released by the run")
    assert released_paths(out) == paths  # the catalog, not whatever lies in the folder


@pytest.mark.parametrize("make", ["missing", "file", "plain", "empty-records"])
def test_not_a_run_output_is_refused(tmp_path: Path, make: str) -> None:
    folder = tmp_path / "f"
    if make == "file":
        folder.write_text("x")
    elif make == "plain":
        folder.mkdir()
        shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    elif make == "empty-records":
        (folder / ".medveil").mkdir(parents=True)
    with pytest.raises(NotRunOutputError, match="f"):
        check_run_output(folder)
    with pytest.raises(NotRunOutputError):
        released_paths(folder)


def _write(out: Path, obj: object) -> None:
    (out / SIGNOFF).write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_round_trip_and_absent(out: Path) -> None:
    assert read_signoff(out) is None
    a, b, c = released_paths(out)
    s = Signoff("Dr Reviewer", "2026-12-06T20:31:00Z", frozenset({a, b}), frozenset({c}))
    path = write_signoff(out, s)
    assert path == out / SIGNOFF
    assert read_signoff(out) == s
    assert json.loads(path.read_text())["approved"] == sorted([a, b])
    with pytest.raises(AttributeError):
        s.reviewer = "x"  # type: ignore[misc]
    # Decisions may be partial: a reviewer can reject one file and decide the rest later.
    _write(
        out, {"reviewer": "R", "time": "2026-12-06T20:31:00+01:00", "approved": [], "rejected": [c]}
    )
    got = read_signoff(out)
    assert got is not None and got.rejected == {c} and got.approved == frozenset()


BAD = {
    "malformed": ("{not json", "not valid JSON"),
    "list": ("[]", "JSON object"),
    "nan": ('{"reviewer": "R", "time": NaN}', "not valid JSON"),
    "dup-key": ('{"reviewer": "R", "reviewer": "S"}', "twice"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_json_is_refused(out: Path, case: str) -> None:
    text, why = BAD[case]
    _write(out, text)
    with pytest.raises(SignoffError, match=why):
        read_signoff(out)


def test_not_utf8_is_refused(out: Path) -> None:
    (out / SIGNOFF).write_bytes(b'{"reviewer": "\xff"}')
    with pytest.raises(SignoffError, match="not valid JSON"):
        read_signoff(out)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"approved": ["../../etc/passwd"]}, "not a relative path"),
        ({"approved": ["/etc/passwd"]}, "not a relative path"),
        ({"approved": ["a/./b.dcm"]}, "not a relative path"),
        ({"rejected": ["a\\..\\b.dcm"]}, "not a relative path"),
        ({"rejected": [".medveil/catalog.sqlite"]}, "not a relative path"),
        ({"rejected": ["C:/x.dcm"]}, "not a relative path"),
        ({"approved": ["nobody/never/released.dcm"]}, "not a file this run released"),
        ({"approved": "x.dcm"}, "must be a list"),
        ({"approved": [1]}, "must be a list"),
        ({"reviewer": ""}, "reviewer"),
        ({"reviewer": "a\nb"}, "one line"),
        ({"reviewer": None}, "reviewer"),
        ({"time": "yesterday"}, "not ISO 8601"),
        ({"time": "2026-12-06T20:31:00"}, "no time zone"),
        ({"time": 1765000000}, "ISO 8601"),
        ({"version": 2}, "version"),
        ({"extra": 1}, "unknown key"),
    ],
)
def test_invalid_content_is_refused(out: Path, change: dict[str, object], why: str) -> None:
    a = released_paths(out)[0]
    doc: dict[str, object] = {"reviewer": "R", "time": "2026-12-06T20:31:00Z"}
    doc.update({"approved": [a], "rejected": []})
    doc.update(change)
    _write(out, doc)
    with pytest.raises(SignoffError, match=why):
        read_signoff(out)


def test_missing_duplicate_and_contradictory_entries(out: Path) -> None:
    a, b, _ = released_paths(out)
    _write(out, {"reviewer": "R", "time": "2026-12-06T20:31:00Z", "approved": [a]})
    with pytest.raises(SignoffError, match=r"missing key.*rejected"):
        read_signoff(out)
    _write(
        out, {"reviewer": "R", "time": "2026-12-06T20:31:00Z", "approved": [a, a], "rejected": []}
    )
    with pytest.raises(SignoffError, match="twice"):
        read_signoff(out)
    _write(
        out, {"reviewer": "R", "time": "2026-12-06T20:31:00Z", "approved": [a, b], "rejected": [b]}
    )
    with pytest.raises(SignoffError, match="both approved and rejected"):
        read_signoff(out)


def test_symlinked_signoff_is_refused(out: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "s.json"
    elsewhere.write_text("{}")
    (out / SIGNOFF).symlink_to(elsewhere)
    with pytest.raises(SignoffError, match="not a regular file"):
        read_signoff(out)


def test_a_rejected_file_removed_later_stays_known(out: Path) -> None:
    """Once a page listed a file, a sign-off naming it stays valid after it leaves the tree."""
    from medveil.pixels.qa import _record_manifest

    a = released_paths(out)[0]
    _record_manifest(out, released_paths(out))
    (out / a).unlink()  # e.g. quarantined by a resumed run
    assert a not in released_paths(out) and a in known_paths(out)
    _write(out, {"reviewer": "R", "time": "2026-12-06T20:31:00Z", "approved": [], "rejected": [a]})
    got = read_signoff(out)
    assert got is not None and got.rejected == {a}


def test_import_validates_before_installing(out: Path, tmp_path: Path) -> None:
    a = released_paths(out)[0]
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"reviewer": "R", "time": "2026-12-06T20:31:00Z", "approved": ["../x"], "rejected": []}
        )
    )
    with pytest.raises(SignoffError, match=r"bad\.json"):
        import_signoff(out, bad)
    assert not (out / SIGNOFF).exists()
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {"reviewer": "R", "time": "2026-12-06T20:31:00Z", "approved": [a], "rejected": []}
        )
    )
    assert import_signoff(out, good).approved == {a}
    assert read_signoff(out) == import_signoff(out, good)


def test_page_reports_the_current_signoff(out: Path) -> None:
    from medveil.pixels.qa import write_report

    a, b, c = released_paths(out)
    _write(
        out,
        {
            "reviewer": "<b>R</b>",
            "time": "2026-12-06T20:31:00Z",
            "approved": [a, b],
            "rejected": [c],
        },
    )
    page = write_report(out).read_text()
    assert (
        "Signed off by &lt;b&gt;R&lt;/b&gt; at 2026-12-06T20:31:00Z: 2 approved, 1 rejected" in page
    )
    _write(out, "{broken")
    page = write_report(out).read_text()
    assert "is invalid and ignored" in page and "not valid JSON" in page


def test_page_is_written_when_the_records_cannot_be(out: Path, tmp_path: Path) -> None:
    """The listed-paths record is best effort: a page of a read-only release still builds."""
    from medveil.pixels.qa import MANIFEST, write_report

    (out / ".medveil" / MANIFEST).mkdir()  # os.replace onto it fails, as on a read-only disk
    index = write_report(out, out_dir=tmp_path / "page")
    assert index.read_text().count("<article") == 3


def test_a_rebuilt_page_drops_the_frames_of_files_gone_since(out: Path, tmp_path: Path) -> None:
    """A file quarantined after review must not stay rendered under the output."""
    import sqlite3

    from medveil.pixels.qa import write_report

    index = write_report(out)
    assert len(list((index.parent / "img").rglob("f*.png"))) == FRAMES + 2
    gone = next(p for p in released_paths(out) if "NumberOfFrames" not in pydicom.dcmread(out / p))
    (out / gone).unlink()
    with sqlite3.connect(out / ".medveil" / "catalog.sqlite") as db:
        db.execute("DELETE FROM instances WHERE path = ?", (gone,))
    db.close()
    index = write_report(out)
    assert len(list((index.parent / "img").rglob("f*.png"))) == FRAMES + 1
    # A folder medveil did not write is never emptied.
    foreign = tmp_path / "mine"
    (foreign / "img").mkdir(parents=True)
    (foreign / "img" / "keep.txt").write_text("mine")
    with pytest.raises(MedveilError, match="not written by medveil qa"):
        write_report(out, out_dir=foreign)
    assert (foreign / "img" / "keep.txt").exists()
