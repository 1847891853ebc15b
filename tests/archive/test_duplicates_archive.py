"""Duplicate SOP Instance UIDs through a whole archive run (issue 19 item 6, as decided).

Different content under one UID: every input is released, as ``<uid>.dcm``, ``<uid>~2.dcm``,
... in the order of the input paths, each catalog row naming the files that share its UID;
identical content is written once (a duplicate). Summary, catalog and disk agree.

``deidentify_archive`` places outputs with :func:`medveil.run.outputs.place_variant` and
settles their order with :func:`medveil.run.outputs.settle_variants` at the end of the run.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.durable import UnsafePath, check_relpath
from medveil.run.outputs import SHARES_COLUMN, file_sha256
from pydicom.data import get_testdata_file

from .test_outputs import assert_agree, outputs, run


def _variants(src: Path) -> None:
    """b, c: CT_small with other pixels (same UID); a2: a byte copy of a."""
    ct = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    src.mkdir()
    shutil.copyfile(ct, src / "a.dcm")
    shutil.copyfile(ct, src / "a2.dcm")
    for name, delta in (("c.dcm", 2), ("b.dcm", 1)):  # written in another order than sorted
        ds = pydicom.dcmread(ct)
        arr = ds.pixel_array.copy()
        arr[0, 0] += delta
        ds.PixelData = arr.tobytes()
        ds.save_as(src / name)


@pytest.mark.parametrize("workers", [1, 2])
def test_different_content_is_released_under_variant_names(tmp_path: Path, workers: int) -> None:
    _variants(tmp_path / "in")
    out = tmp_path / "out"
    summary, reasons = run(tmp_path / "in", out, workers=workers)
    assert reasons == {}
    assert (summary.written, summary.duplicates, summary.quarantined) == (3, 1, 0)
    assert_agree(out, summary)
    files = outputs(out)
    stems = sorted(p.name for p in files)
    uid = files[0].name.split("~")[0].removesuffix(".dcm")
    assert stems == [f"{uid}.dcm", f"{uid}~2.dcm", f"{uid}~3.dcm"]
    # In the order of the input paths: a (and its copy a2), b, c.
    first = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array[0, 0]  # type: ignore[arg-type]
    by_name = {p.name: int(np.asarray(pydicom.dcmread(p).pixel_array)[0, 0]) for p in files}
    assert by_name == {f"{uid}.dcm": first, f"{uid}~2.dcm": first + 1, f"{uid}~3.dcm": first + 2}
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    try:
        rows = db.execute(f"SELECT path, sha256, {SHARES_COLUMN} FROM instances").fetchall()
    finally:
        db.close()
    paths = {p: (sha, shares) for p, sha, shares in rows}
    assert len(paths) == 3
    for path, (sha, shares) in paths.items():
        assert file_sha256(out / path) == sha  # each row describes its own file
        others = {q.rsplit("/", 1)[-1] for q in shares.split(";")}
        assert others == set(stems) - {path.rsplit("/", 1)[-1]}


@pytest.mark.parametrize("name", ["1.4~2.dcm", "1.4~10.dcm", "1.4~64.dcm", "1.4~999.dcm"])
def test_variant_names_are_safe_output_paths(name: str) -> None:
    check_relpath(f"P1/1.2/1.3/{name}")


@pytest.mark.parametrize(
    "name", ["1.4~1.dcm", "1.4~.dcm", "~2.dcm", "1.4~2~3.dcm", "1.4~02.dcm", "1.4~2a.dcm"]
)
def test_other_tildes_are_refused(name: str) -> None:
    with pytest.raises(UnsafePath):
        check_relpath(f"P1/1.2/1.3/{name}")
