"""A small mixed input of real DICOM files for the dry-run, excluded and QA-resume tests.

pydicom's own test files, plus the cases where a run's verdicts are decided by more than
one file: an identical copy (a duplicate), a different file reusing a SOP Instance UID
(quarantined), a file cut short (quarantined), a text file (skipped).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

SECRET = bytes(range(32))
RELEASED_FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm")


def mixed_input(folder: Path) -> Path:
    """Write the mixed input under folder; returns folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in RELEASED_FILES:
        (folder / name).write_bytes(Path(get_testdata_file(name)).read_bytes())
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (folder / "zz-copy-of-ct.dcm").write_bytes(ct)  # identical output: a duplicate
    other = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    other.PixelData = bytes(len(other.PixelData))  # other pixels, the same UIDs
    other.save_as(folder / "zz-other-ct-same-uid.dcm")
    (folder / "cut.dcm").write_bytes(ct[: len(ct) // 3])
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def catalog_verdicts(output: Path) -> dict[str, tuple[str, str]]:
    """{input key: (status, reason)} from a real run's catalog."""
    db = sqlite3.connect(output / ".medveil" / "catalog.sqlite")
    try:
        rows = db.execute("SELECT source_key, status, reason FROM inputs").fetchall()
    finally:
        db.close()
    return {k: (s, r or "") for k, s, r in rows}


def catalog_paths(output: Path) -> dict[str, str]:
    """{input key: released path} from a real run's catalog."""
    db = sqlite3.connect(output / ".medveil" / "catalog.sqlite")
    try:
        return dict(db.execute("SELECT source_key, path FROM instances").fetchall())
    finally:
        db.close()


def dicom_files(root: Path) -> list[Path]:
    """Every file under root that carries DICOM bytes (the DICM magic at 128)."""
    found = []
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                head = f.read(132)
            if head[128:132] == b"DICM":
                found.append(p)
    return found
