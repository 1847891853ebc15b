"""Archive conversion end to end: accounting, determinism, bad inputs, zip/tar, kill + resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pydicom
import pytest
from medveil.policy.schema import Policy
from medveil.run.archive import RunSummary, deidentify_archive
from medveil.run.demo import demo_rule_file, write_demo_archive

SECRET = bytes(range(32))
POLICY = Policy(pixel_rule_files=(str(demo_rule_file()),))


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every output file (run records excluded)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".medveil" not in p.parts
    }


def run_with_reasons(src: Path, out: Path, workers: int) -> tuple[RunSummary, dict[str, str]]:
    """deidentify_archive with the test policy, and every quarantined input's reason."""
    reasons: dict[str, str] = {}
    summary = deidentify_archive(
        src,
        out,
        policy=POLICY,
        secret=SECRET,
        workers=workers,
        on_quarantine=lambda name, why: reasons.__setitem__(name, why),
    )
    return summary, reasons


def resumable_run(tmp_path: Path, batches: int, workers: int) -> tuple[list[str], Path, Path]:
    """A demo archive of many batches, its reference output, and the CLI command to run it."""
    src = tmp_path / "in"
    for i in range(batches):
        write_demo_archive(src / f"batch{i}")
    reference = tmp_path / "ref"
    deidentify_archive(src, reference, policy=POLICY, secret=SECRET, workers=workers)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(f'[pixels]\nrules = ["{demo_rule_file()}"]\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medveil", "deid", str(src), str(out), "--quiet"]
    cmd += ["--policy", str(policy_file), "--secret-file", str(secret_file)]
    return [*cmd, "--workers", str(workers)], out, reference


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo-in")
    write_demo_archive(folder)
    return folder


def test_end_to_end_accounts_for_every_input(demo, tmp_path) -> None:
    out = tmp_path / "out"
    summary = deidentify_archive(demo, out, policy=POLICY, secret=SECRET, workers=2)
    assert (summary.files_in, summary.written, summary.skipped, summary.quarantined) == (
        15,
        14,
        1,
        0,
    )
    assert summary.exit_code == 0
    # The demo's files are plain Explicit VR Little Endian: the native road or the
    # raw-byte one (a patient's first file fills the native road's cache), never pydicom's.
    assert set(summary.engines) <= {"native", "raw"} and sum(summary.engines.values()) == 14
    assert not summary.declined
    files = [p for p in out.rglob("*.dcm")]
    assert len(files) == 14
    patients = {p.relative_to(out).parts[0] for p in files}
    studies = {p.relative_to(out).parts[1] for p in files}
    series = {p.relative_to(out).parts[2] for p in files}
    assert (len(patients), len(studies), len(series)) == (2, 2, 6)
    for p in files:
        ds = pydicom.dcmread(p)
        assert p.parts[-4] == ds.PatientID and p.stem == ds.SOPInstanceUID
        assert "Fakename" not in str(ds.PatientName) and ds.PatientIdentityRemoved == "YES"
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    rows = db.execute(
        "SELECT patient_pseudonym, modality, age_band, path, sha256 FROM instances"
    ).fetchall()
    assert len(rows) == 14 and {r[1] for r in rows} == {"CT", "MR", "US"}
    assert {r[2] for r in rows} == {"65-69", "90+"}
    for _pid, _mod, _age, rel, digest in rows:
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    pixel_lines = [
        json.loads(x) for x in (out / ".medveil" / "pixels.jsonl").read_text().splitlines()
    ]
    fired = {p["path"]: p["rules"] for p in pixel_lines}
    us_paths = {r[3] for r in rows if r[1] == "US"}
    assert len(us_paths) == 2 and all(fired[p] == ["demo-us-top-band"] for p in us_paths)
    summary_json = json.loads((out / ".medveil" / "summary.json").read_text())
    assert summary_json["written"] == 14
    # The secret never lands in the output tree.
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert SECRET not in data and SECRET.hex().encode() not in data


def test_same_output_across_runs_worker_counts_and_containers(demo, tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    deidentify_archive(demo, a, policy=POLICY, secret=SECRET, workers=1)
    deidentify_archive(demo, b, policy=POLICY, secret=SECRET, workers=2)
    assert tree(a) == tree(b)
    zpath = tmp_path / "in.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(demo.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(demo).as_posix())
    tpath = tmp_path / "in.tar.gz"
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(demo, arcname=".")
    z, t = tmp_path / "z", tmp_path / "t"
    deidentify_archive(zpath, z, policy=POLICY, secret=SECRET, workers=2)
    deidentify_archive(tpath, t, policy=POLICY, secret=SECRET, workers=2)
    assert tree(z) == tree(a) == tree(t)


def test_bad_inputs_are_skipped_or_quarantined(demo, tmp_path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    good = next(demo.rglob("img1.dcm")).read_bytes()
    (src / "good.dcm").write_bytes(good)
    (src / "truncated.dcm").write_bytes(good[: len(good) // 3])
    (src / "zero.dcm").write_bytes(b"")
    (src / "notes.txt").write_text("not dicom at all")
    (src / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    locked = src / "locked.dcm"
    locked.write_bytes(good)
    locked.chmod(0)
    summary, reasons = run_with_reasons(src, tmp_path / "out", workers=2)
    locked.chmod(0o600)
    can_lock = os.geteuid() != 0  # root reads a mode-0 file anyway
    # As root, locked.dcm is read: the same bytes as good.dcm, so one file and a duplicate.
    assert summary.files_in == 6 and summary.written == 1
    assert summary.duplicates == (0 if can_lock else 1)
    assert summary.skipped == 2  # zero-byte and text
    assert "truncated.dcm" in reasons and "garbage.dcm" in reasons
    if can_lock:
        assert "cannot read" in reasons["locked.dcm"]
    assert summary.exit_code == 1
    lines = (tmp_path / "out" / ".medveil" / "quarantine.jsonl").read_text().splitlines()
    assert len(lines) == len(reasons)
    assert all(".dcm" not in line for line in lines)  # keyed hashes, never paths


def test_output_must_be_empty_without_resume(demo, tmp_path) -> None:
    out = tmp_path / "out"
    deidentify_archive(demo, out, policy=POLICY, secret=SECRET, workers=1)
    with pytest.raises(Exception, match="not empty"):
        deidentify_archive(demo, out, policy=POLICY, secret=SECRET, workers=1)


def test_kill_then_resume_gives_identical_output(tmp_path) -> None:
    cmd, out, reference = resumable_run(tmp_path, batches=12, workers=2)
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.rglob("*.dcm"))) < 20:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list(out.rglob("*.dcm")))
    assert partial < 168, "the run finished before it could be killed"
    for p in out.rglob("*.dcm"):
        pydicom.dcmread(p)  # nothing half written under a final name
    rc = subprocess.run([*cmd, "--resume"], capture_output=True, text=True).returncode
    assert rc == 0
    assert tree(out) == tree(reference)
    assert not [p for p in out.rglob("*.tmp")]


def test_ctrl_c_then_resume_gives_identical_output(tmp_path) -> None:
    """Ctrl-C: the files in flight are finished and recorded, exit 1; --resume does the rest."""
    cmd, out, reference = resumable_run(tmp_path, batches=30, workers=1)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.rglob("*.dcm"))) < 5:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert summary["interrupted"] and summary["files_in"] < 450
    assert summary["quarantined"] == 0  # nothing cancelled is reported as a failure
    rc = subprocess.run([*cmd, "--resume"], capture_output=True, text=True).returncode
    assert rc == 0
    assert tree(out) == tree(reference)
