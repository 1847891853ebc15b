"""The top-level API named in the README works as written."""

from __future__ import annotations

from pathlib import Path

import medveil
import pydicom
from pydicom.data import get_testdata_file


def test_readme_example_runs(tmp_path) -> None:
    secret = bytes(range(32))
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    report = medveil.Deidentifier(medveil.Policy.default(), secret).apply(ds)
    assert report.actions["pseudonym"] >= 1 and ds.PatientIdentityRemoved == "YES"
    ds.save_as(tmp_path / "ct-deid.dcm")
    src = tmp_path / "export"
    src.mkdir()
    (src / "ct.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    summary = medveil.deidentify_archive(src, tmp_path / "release", secret=secret, workers=1)
    assert (summary.written, summary.exit_code) == (1, 0)
