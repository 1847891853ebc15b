"""The archive run fills the vault; reidentify of an output folder name finds the patient."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from medveil.cli.main import main
from medveil.crypto.vault import Vault
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy
from medveil.run.archive import RECORDS, deidentify_archive
from medveil.run.demo import with_demo_rules, write_demo_archive


def demo_policy() -> Policy:
    """The default policy plus the demo's pixel rule (as `medveil deid --demo` uses)."""
    return with_demo_rules(Policy.default())


def source_datasets(folder: Path) -> list[pydicom.Dataset]:
    """Every DICOM file of the demo archive, headers only."""
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                out.append(pydicom.dcmread(path, stop_before_pixels=True))
            except pydicom.errors.InvalidDicomError:
                continue
    return out


def test_archive_run_then_reidentify(
    tmp_path: Path, vault_url: str, key: bytes, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_demo_archive(src)
    secret = os.urandom(32)
    policy = demo_policy()
    with Vault(vault_url, key) as vault:
        summary = deidentify_archive(src, out, policy=policy, secret=secret, workers=2, vault=vault)
    assert summary.quarantined == 0 and summary.written > 0
    sources = source_datasets(src)
    assert len(sources) == summary.written
    keyed = Keyed(secret)
    folders = sorted(p.name for p in out.iterdir() if p.name != RECORDS)
    assert len(folders) == len({str(ds.PatientID) for ds in sources}) >= 2

    with Vault(vault_url, key) as vault:
        counts = vault.counts()
        assert counts["patients"] == len(folders)
        assert counts["studies"] == len({str(ds.StudyInstanceUID) for ds in sources})
        assert counts["series"] == len({str(ds.SeriesInstanceUID) for ds in sources})
        for ds in sources:
            # Find this source's output file by its keyed SOP Instance UID.
            sop = keyed.uid(str(ds.SOPInstanceUID))
            (written,) = out.rglob(f"{sop}.dcm")
            folder = written.relative_to(out).parts[0]
            cleaned = pydicom.dcmread(written, stop_before_pixels=True)
            got = vault.lookup(str(cleaned.SeriesInstanceUID))
            assert got is not None
            assert got.patient["pseudonym"] == folder
            assert got.patient["patient_id"] == str(ds.PatientID)
            assert got.patient["patient_name"] == str(ds.PatientName)
            assert got.patient["birth_date"] == str(ds.PatientBirthDate)
            assert int(got.patient["date_offset"]) == keyed.date_offset(
                str(ds.PatientID), policy.shift_days
            )
            assert got.study["original_uid"] == str(ds.StudyInstanceUID)
            assert got.study["accession_number"] == str(ds.AccessionNumber)
            assert got.series["original_uid"] == str(ds.SeriesInstanceUID)

    # The command line, given only a folder name of the released archive.
    names = {str(ds.PatientID): str(ds.PatientName) for ds in sources}
    found = set()
    for folder in folders:
        assert main(["reidentify", "--vault", vault_url, "--key-file", str(key_file), folder]) == 0
        text = capsys.readouterr().out
        for pid, name in names.items():
            if f"PatientID: {pid}\n" in text:
                assert f"PatientName: {name}\n" in text
                found.add(pid)
    assert found == set(names)

    # A second run of the same archive (same secret) adds no rows.
    with Vault(vault_url, key) as vault:
        before = vault.counts()
        deidentify_archive(
            src, tmp_path / "out2", policy=policy, secret=secret, workers=1, vault=vault
        )
        after = vault.counts()
    assert {k: after[k] for k in ("patients", "studies", "series")} == {
        k: before[k] for k in ("patients", "studies", "series")
    }


def test_deid_cli_with_vault(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(os.urandom(32).hex() + "\n")
    secret_file.chmod(0o600)  # key files open to others are refused
    url = f"sqlite://{tmp_path / 'vault.sqlite'}"
    out = tmp_path / "out"
    base = [
        "deid",
        "--demo",
        str(out),
        "--secret-file",
        str(secret_file),
        "--quiet",
        "--workers",
        "1",
    ]
    assert main([*base, "--vault", url]) == 2  # --vault without --vault-key
    assert "--vault-key" in capsys.readouterr().err
    # The pseudonym secret is refused as the vault key.
    assert main([*base, "--vault", url, "--vault-key", str(secret_file)]) == 2
    assert "differ" in capsys.readouterr().err
    assert main([*base, "--vault", url, "--vault-key", str(key_file)]) == 0
    capsys.readouterr()
    folders = sorted(p.name for p in out.iterdir() if p.name != RECORDS)
    assert main(["reidentify", "--vault", url, "--key-file", str(key_file), *folders]) == 0
    text = capsys.readouterr().out
    assert "PatientName: Fakename^Alice^Q" in text
    assert "PatientID: DEMO-10001" in text
