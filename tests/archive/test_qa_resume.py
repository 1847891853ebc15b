"""``medveil deid --resume`` moves the files a QA reviewer rejected (qa-signoff.json, here
written by hand) to quarantine: disk, catalog, DICOMDIR, quarantine list and summary agree."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pydicom
import pytest
from medveil.cli.main import main
from medveil.pixels.qa import read_signoff

from tests.archive.mixed import SECRET, catalog_paths, catalog_verdicts, mixed_input

REVIEWER = "Dr Q. Reviewer"
WHEN = "2026-12-06T20:31:00Z"
REASON = f"rejected in QA review by {REVIEWER} at {WHEN}"


def _key(tmp_path: Path) -> str:
    key = tmp_path / "k"
    key.write_text(SECRET.hex())
    key.chmod(0o600)
    return str(key)


def _released_on_disk(out: Path) -> set[str]:
    """Released files in the release tree (patient/study/series/instance.dcm)."""
    return {
        p.relative_to(out).as_posix()
        for p in out.glob("*/*/*/*.dcm")
        if not p.relative_to(out).parts[0].startswith(".")
        and p.relative_to(out).parts[0] != "dicomdir"
    }


def _sign_off(out: Path, approved: list[str], rejected: list[str]) -> None:
    (out / "qa-signoff.json").write_text(
        json.dumps(
            {
                "version": 1,
                "reviewer": REVIEWER,
                "time": WHEN,
                "approved": approved,
                "rejected": rejected,
            }
        )
    )


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A finished run with a DICOMDIR; its input, output and deid arguments."""
    src = mixed_input(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["deid", str(src), str(out), "--secret-file", _key(tmp_path), "--workers", "1"]
    assert main([*argv, "--dicomdir"]) == 1  # the mixed input has quarantines
    return src, out, argv


def test_resume_quarantines_rejected_files(run, capsys) -> None:
    _src, out, argv = run
    before = catalog_paths(out)
    assert len(before) >= 3 and set(before.values()) == _released_on_disk(out)
    paths = sorted(before.values())
    rejected, approved = paths[:2], paths[2:]
    keys = {before_key for before_key, p in before.items() if p in rejected}
    # Files sharing a SOP Instance UID are all released (<uid>~2.dcm): only the UIDs no
    # approved file has may not be in the rewritten DICOMDIR.
    approved_uids = {str(pydicom.dcmread(out / p).SOPInstanceUID) for p in approved}
    rejected_uids = {str(pydicom.dcmread(out / p).SOPInstanceUID) for p in rejected}
    rejected_uids -= approved_uids
    rejected_bytes = {(out / p).read_bytes() for p in rejected}
    _sign_off(out, approved, rejected)
    assert read_signoff(out) is not None  # the QA page's own reader takes the file
    capsys.readouterr()

    assert main([*argv, "--resume"]) == 1
    captured = capsys.readouterr()
    for p in rejected:
        assert f"quarantined: {p}: {REASON}" in captured.err
    assert "(2 rejected in QA review)" in captured.out

    # Disk and catalog agree: the rejected files left both; the others stay.
    after = catalog_paths(out)
    assert set(after.values()) == set(approved) == _released_on_disk(out)
    verdicts = catalog_verdicts(out)
    assert all(verdicts[k] == ("quarantined", REASON) for k in keys)
    lines = (out / ".medveil" / "quarantine.jsonl").read_text().splitlines()
    quarantine = [json.loads(line) for line in lines]
    assert {q["input"] for q in quarantine if q["reason"] == REASON} == keys
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert (summary["rejected"], summary["quarantined"], summary["written"]) == (2, 2, 0)
    assert summary["files_in"] == len(verdicts)
    assert summary["resumed"] == len(verdicts) - 2

    # The DICOMDIR was rewritten: it holds the approved files only, and no hard link to a
    # rejected file is left in its file set.
    from pydicom.fileset import FileSet

    fs = FileSet(out / "dicomdir" / "DICOMDIR")
    try:
        assert len(fs) + summary["dicomdir_left_out"] == len(approved)
        assert not {str(i.SOPInstanceUID) for i in fs} & rejected_uids
    finally:
        fs._stage["t"].cleanup()  # pydicom's staging folder, now rather than at exit
    in_set = [p for p in (out / "dicomdir").rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    assert len(in_set) == len(fs)
    assert not any(p.read_bytes() in rejected_bytes for p in in_set)

    # A second resume changes nothing and says nothing about the moved files.
    assert main([*argv, "--resume"]) == 0
    again = capsys.readouterr()
    assert "quarantined:" not in again.err and "rejected" not in again.out
    assert catalog_paths(out) == after and _released_on_disk(out) == set(approved)


def test_an_approval_only_sign_off_changes_nothing(run, capsys) -> None:
    _src, out, argv = run
    before = catalog_paths(out)
    _sign_off(out, sorted(before.values()), [])
    assert main([*argv, "--resume"]) == 0
    assert catalog_paths(out) == before and _released_on_disk(out) == set(before.values())


def test_a_sign_off_naming_an_unknown_file_stops_the_resume(run, capsys) -> None:
    _src, out, argv = run
    before = catalog_paths(out)
    _sign_off(out, [], ["MVNOBODY/1.2/3.4/5.6.dcm"])
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medveil: ") and "is not a file this run released" in err
    assert catalog_paths(out) == before  # nothing moved


def test_a_resume_killed_mid_move_finishes_it(run, capsys) -> None:
    """The file goes first, then its row: a row whose file is gone is moved next time."""
    _src, out, argv = run
    before = catalog_paths(out)
    victim = sorted(before.values())[0]
    (out / victim).unlink()  # as if killed right after the unlink
    _sign_off(out, [], [victim])
    assert main([*argv, "--resume"]) == 1
    assert victim not in set(catalog_paths(out).values())
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    (n,) = db.execute("SELECT COUNT(*) FROM inputs WHERE reason = ?", (REASON,)).fetchone()
    db.close()
    assert n == 1


def test_rejecting_every_file_leaves_no_dicomdir_naming_them(run, capsys) -> None:
    _src, out, argv = run
    before = catalog_paths(out)
    assert (out / "dicomdir" / "DICOMDIR").is_file()
    _sign_off(out, [], sorted(before.values()))
    assert main([*argv, "--resume"]) == 1
    assert catalog_paths(out) == {} and _released_on_disk(out) == set()
    assert not (out / "dicomdir").exists()
    assert not [p for p in out.rglob("*.dcm") if ".medveil" not in p.parts]


def test_resume_removes_the_pages_renderings_of_rejected_files(run, capsys) -> None:
    _src, out, argv = run
    from medveil.pixels.qa import IMAGE_MARKER, write_report

    write_report(out)
    img = out / ".medveil" / "qa" / "img"
    assert (img / IMAGE_MARKER).is_file() and any(p.is_file() for p in img.rglob("*.*"))
    paths = sorted(catalog_paths(out).values())
    _sign_off(out, paths[1:], paths[:1])
    assert main([*argv, "--resume"]) == 1
    # Full-resolution frames of a rejected file must not stay under the output.
    assert not img.exists()


def test_resume_leaves_a_foreign_image_folder_alone(run, capsys) -> None:
    _src, out, argv = run
    img = out / ".medveil" / "qa" / "img"
    img.mkdir(parents=True)
    (img / "mine.txt").write_text("not medveil's")
    paths = sorted(catalog_paths(out).values())
    _sign_off(out, paths[1:], paths[:1])
    assert main([*argv, "--resume"]) == 1
    assert (img / "mine.txt").is_file()
