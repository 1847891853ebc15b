"""Variant names (<uid>~N.dcm) do not depend on how many workers ran or which finished first.

pydicom ships one MR slice in nine encodings and one RT dose in seven, each family under
one SOP Instance UID: some encodings clean to identical bytes (one file, the others
duplicates), others to different bytes (variants). A shared file's place among its UID's
variants is that of the first input listed that gave it; it used to be that of whichever
input a worker finished first, so two workers numbered the variants otherwise than one.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from medveil.policy.keys import Keyed
from medveil.run.archive import RunRecords, deidentify_archive
from medveil.run.outputs import VARIANT_MARK
from pydicom.data import get_testdata_file

SECRET = bytes(range(32))


def _inputs(folder: Path) -> Path:
    src = Path(get_testdata_file("MR_small.dcm", download=False)).parent
    folder.mkdir()
    for path in sorted(src.iterdir()):
        # All of them: with only the two families, one worker task took every file.
        if path.suffix == ".dcm":
            shutil.copy(path, folder / path.name)
    return folder


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.dcm"))
        if ".medveil" not in p.parts
    }


def test_variant_names_are_the_same_for_any_number_of_workers(tmp_path: Path) -> None:
    src = _inputs(tmp_path / "in")
    deidentify_archive(src, tmp_path / "one", secret=SECRET, workers=1, durable=False)
    one = _tree(tmp_path / "one")
    assert sum(VARIANT_MARK in name for name in one) >= 4  # the case this is about
    for n in range(3):
        out = tmp_path / f"two{n}"
        summary = deidentify_archive(src, out, secret=SECRET, workers=2, durable=False)
        assert summary.duplicates > 0
        assert _tree(out) == one


@pytest.mark.parametrize("order", [(5, 2, 7), (2, 5), (7,)])
def test_a_path_keeps_its_first_listing(tmp_path: Path, order: tuple[int, ...]) -> None:
    records = RunRecords(tmp_path, Keyed(SECRET))
    try:
        for seq in order:
            records.note_listed([("P/S/1.2.dcm", seq)])
        assert records.listing_order()["P/S/1.2.dcm"] == f"{min(order):015d}"
    finally:
        records.close()
