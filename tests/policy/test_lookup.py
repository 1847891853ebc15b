"""[lookup] tables: site-assigned values for original ones, the same bytes on both roads."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.errors import PolicyError
from medveil.policy.presets import load_policy, policy_from_text, policy_to_toml
from medveil.policy.schema import Policy

from tests.engine.conftest import (
    SECRET,
    base_dataset,
    both_roads,
    dataset_road,
    part10,
    quiet,
    raw_road,
)

TABLE = "original,replacement\nDEMO-10001,SUBJ-001\nDEMO-10002,SUBJ-002\n"


def policy_with(tmp_path: Path, table: str = TABLE, extra: str = "") -> Policy:
    """A policy file in tmp_path whose [lookup] maps PatientID through subjects.csv."""
    (tmp_path / "subjects.csv").write_text(table, "utf-8")
    path = tmp_path / "policy.toml"
    path.write_text(f'[lookup]\nPatientID = "subjects.csv"\n{extra}', "utf-8")
    return load_policy(path)


def test_lookup_replaces_on_both_roads_byte_identical(tmp_path: Path) -> None:
    policy = policy_with(tmp_path)
    data = both_roads(base_dataset(), policy=policy)  # asserts both roads agree
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.PatientID == "SUBJ-001"
    assert b"DEMO-10001" not in data
    # Implicit VR too.
    implicit = pydicom.dcmread(io.BytesIO(both_roads(base_dataset(), True, policy)))
    assert implicit.PatientID == "SUBJ-001"


def test_lookup_reaches_nested_elements(tmp_path: Path) -> None:
    policy = policy_with(tmp_path)
    ds = base_dataset()
    item = pydicom.Dataset()
    item.PatientID = "DEMO-10002"
    item.IssuerOfPatientID = "HOSP"
    ds.OtherPatientIDsSequence = [item]
    engine = Deidentifier(policy, SECRET)
    with quiet():
        data = part10(ds)
        by_dataset = dataset_road(engine, data)
        by_raw = raw_road(engine, data)
    assert not isinstance(by_dataset, str)
    if by_raw is not None:  # the raw-byte engine may hand nested text to the Dataset one
        assert by_raw == by_dataset
    assert b"DEMO-10002" not in by_dataset[0]
    assert b"SUBJ-002" in by_dataset[0] or "OtherPatientIDsSequence" not in pydicom.dcmread(
        io.BytesIO(by_dataset[0])
    )


def test_missing_key_quarantines_without_the_value(tmp_path: Path) -> None:
    policy = policy_with(tmp_path)
    ds = base_dataset()
    ds.PatientID = "DEMO-99999"
    engine = Deidentifier(policy, SECRET)
    with quiet():
        data = part10(ds)
        by_dataset = dataset_road(engine, data)
        by_raw = raw_road(engine, data)
        result = clean_instance(engine, bytearray(data), "x.dcm")
    assert by_dataset == by_raw == "failed: QuarantineError"
    assert result.status == "quarantined"
    assert "lookup" in result.reason and "subjects.csv" in result.reason
    assert "99999" not in result.reason and "DEMO" not in result.reason
    assert "SUBJ" not in result.reason


def test_missing_key_keep_pseudonym(tmp_path: Path) -> None:
    policy = policy_with(tmp_path, extra='on_missing = "keep-pseudonym"\n')
    ds = base_dataset()
    ds.PatientID = "DEMO-99999"
    out = pydicom.dcmread(io.BytesIO(both_roads(ds, policy=policy)))
    default = pydicom.dcmread(io.BytesIO(both_roads(ds)))
    assert out.PatientID == default.PatientID  # the keyed pseudonym it would have had
    assert out.PatientID.startswith("MV")


def test_table_values_never_in_records(tmp_path: Path) -> None:
    policy = policy_with(tmp_path)
    engine = Deidentifier(policy, SECRET)
    with quiet():
        result = clean_instance(engine, bytearray(part10(base_dataset())), "x.dcm")
    assert result.status == "written", result.reason
    assert result.actions.get("lookup") == 1
    records = json.dumps([result.row, result.actions, result.pixels, result.relpath])
    # The replacement is the patient's output ID (and so its path), the original never.
    assert "DEMO-10001" not in records and "DEMO-10002" not in records
    assert "SUBJ-002" not in records
    assert "DEMO-10001" not in repr(policy) and "SUBJ" not in repr(policy)


@pytest.mark.parametrize(
    ("table", "line", "problem"),
    [
        ("a,b\nDEMO-1,S1\nDEMO-1,S2\n", 3, "duplicate"),
        ("DEMO-1,S1\nDEMO-2,\n", 2, "empty value"),
        ("DEMO-1,S1\n,S2\n", 2, "empty value"),
        ("DEMO-1,S1,extra\n", 1, "two columns"),
        ("DEMO-1," + "S" * 65 + "\n", 1, "at most 64"),
    ],
)
def test_bad_tables_name_file_and_line(tmp_path: Path, table: str, line: int, problem: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy_with(tmp_path, table)
    message = str(err.value)
    assert f"subjects.csv:{line}:" in message and problem in message
    assert "DEMO" not in message and "S2" not in message


def test_header_is_optional(tmp_path: Path) -> None:
    policy = policy_with(tmp_path, "DEMO-10001,SUBJ-001\n")
    assert pydicom.dcmread(io.BytesIO(both_roads(base_dataset(), policy=policy))).PatientID == (
        "SUBJ-001"
    )
    assert len(policy.lookups[0].table) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('PatientID = "nope.csv"', "nope.csv"),
        ('Rows = "subjects.csv"', "only text elements"),
        ('NotAKeyword = "subjects.csv"', "not a standard keyword"),
        ('PatientID = "subjects.csv"\non_missing = "ignore"', "on_missing"),
    ],
)
def test_bad_lookup_settings(tmp_path: Path, body: str, problem: str) -> None:
    (tmp_path / "subjects.csv").write_text(TABLE, "utf-8")
    path = tmp_path / "policy.toml"
    path.write_text(f"[lookup]\n{body}\n", "utf-8")
    with pytest.raises(PolicyError, match=problem) as err:
        load_policy(path)
    assert f"{path}:" in str(err.value)


def test_lookup_and_elements_action_conflict(tmp_path: Path) -> None:
    (tmp_path / "subjects.csv").write_text(TABLE, "utf-8")
    path = tmp_path / "policy.toml"
    path.write_text('[elements]\nPatientID = "X"\n[lookup]\nPatientID = "subjects.csv"\n', "utf-8")
    with pytest.raises(PolicyError, match="lookup"):
        load_policy(path)


def test_resolved_policy_keeps_its_lookup(tmp_path: Path) -> None:
    policy = policy_with(tmp_path, extra='on_missing = "keep-pseudonym"\n')
    again = policy_from_text(policy_to_toml(policy))
    assert again.lookups == policy.lookups
    assert again.lookups[0].table == policy.lookups[0].table


def test_archive_run_records_hold_no_table_value(tmp_path: Path) -> None:
    from medveil.run.archive import deidentify_archive

    policy = policy_with(tmp_path)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for n, patient in enumerate(["DEMO-10001", "DEMO-10002", "DEMO-77777"]):
        ds = base_dataset()
        ds.PatientID = patient
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7.100.{n}"
        (src / f"{n}.dcm").write_bytes(part10(ds))
    summary = deidentify_archive(src, out, policy=policy, secret=SECRET, workers=1)
    assert (summary.written, summary.quarantined) == (2, 1)
    assert sorted(p.parent.parent.parent.name for p in out.rglob("*.dcm")) == [
        "SUBJ-001",
        "SUBJ-002",
    ]
    quarantine = (out / ".medveil" / "quarantine.jsonl").read_text()
    assert "[lookup]" in quarantine and "77777" not in quarantine
    for record in (out / ".medveil").rglob("*"):
        if record.is_file():
            data = record.read_bytes()
            for original in (b"DEMO-10001", b"DEMO-10002", b"DEMO-77777", b"subjects.csv:"):
                assert original not in data, record.name
