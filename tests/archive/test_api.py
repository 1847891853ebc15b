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


def test_cli_no_fsync_writes_the_same_files(tmp_path) -> None:
    from medveil.cli.main import main

    src = tmp_path / "export"
    src.mkdir()
    (src / "ct.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    key = tmp_path / "k"
    key.write_text(bytes(range(32)).hex())
    key.chmod(0o600)  # load_secret refuses a secret others can read
    args = ["deid", str(src), "--quiet", "--secret-file", str(key), "--workers", "1"]
    assert main([*args[:2], str(tmp_path / "a"), *args[2:]]) == 0
    assert main([*args[:2], str(tmp_path / "b"), *args[2:], "--no-fsync"]) == 0
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.dcm"))
    b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.dcm"))
    assert a == b and len(a) == 1
    assert (tmp_path / "a" / a[0]).read_bytes() == (tmp_path / "b" / b[0]).read_bytes()


def test_missing_input_is_a_usage_error_and_makes_no_output(tmp_path, capsys) -> None:
    from medveil.cli.main import main

    key = tmp_path / "k"
    key.write_text(bytes(range(32)).hex())
    key.chmod(0o600)  # load_secret refuses a secret others can read
    out = tmp_path / "release"
    code = main(["deid", str(tmp_path / "no-such-export"), str(out), "--secret-file", str(key)])
    assert code == 2
    assert "input not found" in capsys.readouterr().err
    assert not out.exists()


def test_the_summary_says_which_engine_wrote_what(tmp_path, capsys) -> None:
    from medveil.cli.main import main

    src = tmp_path / "export"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small_bigendian.dcm"):
        (src / name).write_bytes(Path(get_testdata_file(name)).read_bytes())
    key = tmp_path / "k"
    key.write_text(bytes(range(32)).hex())
    key.chmod(0o600)  # load_secret refuses a secret others can read
    out = tmp_path / "release"
    assert main(["deid", str(src), str(out), "--quiet", "--secret-file", str(key)]) == 0
    line = capsys.readouterr().out
    assert "1 by the raw-byte engine, 1 by the Dataset engine" in line
    assert "1 not a little-endian transfer syntax it covers" in line


def test_a_policy_refused_at_compile_stops_the_run_before_any_output(tmp_path) -> None:
    """A policy built in code that keeps the PDF: one PolicyError, no worker dies, no output."""
    import dataclasses
    import shutil

    import pytest
    from medveil.errors import PolicyError
    from medveil.run.archive import deidentify_archive

    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), src / "ct.dcm")  # type: ignore[arg-type]
    good = medveil.Policy.from_toml('[elements]\nEncapsulatedDocument = "X"\n')
    kept = dataclasses.replace(good.overrides[0], action="K")
    bad = dataclasses.replace(good, overrides=(kept,))
    with pytest.raises(PolicyError, match="EncapsulatedDocument"):
        deidentify_archive(src, tmp_path / "out", policy=bad, secret=bytes(32))
    assert not (tmp_path / "out").exists()
