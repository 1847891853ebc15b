"""``deid --dry-run``: the whole pipeline runs, no DICOM byte is written, verdicts match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from medveil.cli.main import main
from medveil.errors import MedveilError
from medveil.policy.schema import Policy
from medveil.run.archive import DRY_RUN_REPORT, RECORDS, deidentify_archive
from medveil.run.outputs import IDENTICAL

from tests.archive.mixed import (
    SECRET,
    catalog_paths,
    catalog_verdicts,
    dicom_files,
    mixed_input,
)

FILTERED = Policy.from_toml(
    '[[filter.exclude]]\nlabel = "MR"\ntests = [{field = "Modality", op = "equals", value = "MR"}]'
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """One dry run and one real run of the same input and policy."""
    tmp = tmp_path_factory.mktemp("dry")
    src = mixed_input(tmp / "in")
    seen: list[tuple[str, str, str]] = []
    dry = deidentify_archive(
        src,
        tmp / "dry",
        policy=FILTERED,
        secret=SECRET,
        workers=1,
        dry_run=True,
        on_verdict=lambda *v: seen.append(v),
    )
    real = deidentify_archive(src, tmp / "real", policy=FILTERED, secret=SECRET, workers=1)
    return tmp, dry, real, seen


def test_dry_run_writes_no_dicom_bytes(runs) -> None:
    tmp, dry, _real, _seen = runs
    assert dry.dry_run and dry.written >= 3  # it did find files to release
    assert dicom_files(tmp / "dry") == []
    files = sorted(p.relative_to(tmp / "dry").as_posix() for p in (tmp / "dry").rglob("*"))
    # The lock and the one report: no catalog (a later run must not take inputs for done),
    # no pixel log, no release tree, no quarantine copies.
    assert files == [RECORDS, f"{RECORDS}/{DRY_RUN_REPORT}", f"{RECORDS}/lock"]


def test_dry_run_verdicts_equal_a_real_run(runs) -> None:
    tmp, dry, real, _seen = runs
    report = json.loads((tmp / "dry" / RECORDS / DRY_RUN_REPORT).read_text())
    dry_verdicts = {v["input"]: (v["status"], v["reason"] or "") for v in report["inputs"]}
    assert dry_verdicts == catalog_verdicts(tmp / "real")
    dry_paths = {v["input"]: v["path"] for v in report["inputs"] if v["path"]}
    assert dry_paths == catalog_paths(tmp / "real")
    for name in ("files_in", "written", "quarantined", "skipped", "duplicates", "excluded"):
        assert getattr(dry, name) == getattr(real, name), name
    assert report["summary"]["written"] == real.written and report["summary"]["dry_run"]
    # Every kind of verdict is exercised, each with the reason a real run gives.
    statuses = {s for s, _ in dry_verdicts.values()}
    assert statuses == {"written", "quarantined", "skipped", "duplicate", "excluded"}
    reasons = {r for s, r in dry_verdicts.values() if s != "written"}
    assert {IDENTICAL, "exclude[0]", "not DICOM"} <= reasons
    # A file sharing another's SOP Instance UID with other content is released as a variant.
    assert any("~2.dcm" in p for p in dry_paths.values())


def test_dry_run_names_each_input_once_with_its_detail(runs) -> None:
    tmp, dry, _real, seen = runs
    names = [name for name, _s, _d in seen]
    assert sorted(names) == sorted(p.name for p in (tmp / "in").iterdir())
    released = {name: detail for name, status, detail in seen if status == "written"}
    assert len(released) == dry.written and all(d.endswith(".dcm") for d in released.values())
    cut = [detail for name, status, detail in seen if name == "cut.dcm"]
    assert cut and cut[0]  # a quarantine always says why


def test_real_run_into_a_dry_runs_folder_starts_afresh(runs, tmp_path: Path) -> None:
    tmp, _dry, real, _seen = runs
    out = tmp_path / "out"
    src = tmp / "in"
    deidentify_archive(src, out, policy=FILTERED, secret=SECRET, workers=1, dry_run=True)
    again = deidentify_archive(src, out, policy=FILTERED, secret=SECRET, workers=1)
    assert (again.written, again.resumed) == (real.written, 0)
    assert len(dicom_files(out)) == real.written


def test_dry_run_refuses_resume_and_vault(tmp_path: Path) -> None:
    src = mixed_input(tmp_path / "in")
    with pytest.raises(MedveilError, match="--resume"):
        deidentify_archive(src, tmp_path / "o", secret=SECRET, dry_run=True, resume=True)
    assert not (tmp_path / "o").exists()


def test_cli_dry_run_lists_releases_and_quarantines(runs, tmp_path: Path, capsys) -> None:
    tmp, dry, _real, _seen = runs
    key = tmp_path / "k"
    key.write_text(SECRET.hex())
    key.chmod(0o600)
    policy = tmp_path / "p.toml"
    policy.write_text(
        '[[filter.exclude]]\nlabel = "MR"\n'
        'tests = [{field = "Modality", op = "equals", value = "MR"}]\n'
    )
    out = tmp_path / "out"
    argv = ["deid", str(tmp / "in"), str(out), "--dry-run", "--secret-file", str(key)]
    rc = main([*argv, "--policy", str(policy), "--workers", "1"])
    assert rc == 1  # as a real run: something would be quarantined
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("would release ") for line in lines) == dry.written
    quarantine = [line for line in lines if line.startswith("would quarantine ")]
    assert len(quarantine) == dry.quarantined
    released = [line for line in lines if line.startswith("would release ")]
    assert any("zz-other-ct-same-uid.dcm -> " in r and r.endswith("~2.dcm") for r in released)
    assert any(line.startswith("excluded ") and "exclude[0] (MR)" in line for line in lines)
    assert "No DICOM file was written" in lines[-1] and "1 excluded" in lines[-1]
    assert dicom_files(out) == []


def test_cli_dry_run_refuses_the_spark_engine(tmp_path: Path, capsys) -> None:
    src = mixed_input(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["deid", str(src), str(out), "--dry-run", "--engine", "spark"]) == 2
    assert "--dry-run runs on this machine only" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was made
