"""The Python API: apply, apply_bytes and apply_file are post-checked; no source identity.

Issue 18 item 11: the API gives the same safety as the CLI. A value the policy keeps but
the post-check finds (here the patient's name in a kept description) is a QuarantineError,
and nothing is written; ``apply(ds)`` then ``ds.save_as`` keeps neither the source's
preamble nor its implementation identity.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from medveil.dicom.strict import StructureError
from medveil.dicom.writer import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from medveil.engine.dataset import Deidentifier
from medveil.errors import QuarantineError
from medveil.policy.schema import Policy

from .conftest import SECRET, base_dataset, part10, quiet

# An operator's override keeps StudyDescription verbatim: the name in it must still be caught.
KEEPS_DESCRIPTION = Policy.from_toml('[elements]\nStudyDescription = "K"\n')


def source_file(description: str = "CT HEAD") -> bytes:
    """A file with a vendor preamble, a source implementation identity and a description."""
    ds = base_dataset()
    ds.PatientName = "Qwertzuiop^Anna"
    ds.StudyDescription = description
    data = bytearray(part10(ds))
    data[:128] = b"VENDOR Qwertzuiop ".ljust(128, b"!")
    out = pydicom.dcmread(io.BytesIO(bytes(data)))
    out.file_meta.ImplementationVersionName = "SITE_PACS_7"
    out.file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7.999"
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_apply_bytes_releases_a_clean_file() -> None:
    out, report = Deidentifier(Policy(), SECRET).apply_bytes(source_file())
    assert b"Qwertzuiop" not in out and report.actions
    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.file_meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME


def test_apply_bytes_raises_when_the_output_holds_a_name() -> None:
    data = source_file("Qwertzuiop follow-up")
    engine = Deidentifier(KEEPS_DESCRIPTION, SECRET)
    with pytest.raises(QuarantineError, match="identifying value"):
        engine.apply_bytes(data)
    # apply(ds) is checked the same way; check=False is the unchecked walk alone.
    ds = pydicom.dcmread(io.BytesIO(data))
    with pytest.raises(QuarantineError, match="identifying value"):
        engine.apply(ds)
    ds = pydicom.dcmread(io.BytesIO(data))
    engine.apply(ds, check=False)
    assert "Qwertzuiop" in ds.StudyDescription


def test_apply_file_writes_nothing_when_the_check_fails(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
    src.write_bytes(source_file("Qwertzuiop follow-up"))
    with pytest.raises(QuarantineError):
        Deidentifier(KEEPS_DESCRIPTION, SECRET).apply_file(src, dst)
    assert not dst.exists() and list(tmp_path.iterdir()) == [src]
    src.write_bytes(source_file())
    Deidentifier(Policy(), SECRET).apply_file(src, dst)
    assert b"Qwertzuiop" not in dst.read_bytes()


def test_apply_bytes_refuses_a_damaged_file() -> None:
    data = bytearray(source_file())
    at = data.index(b"CT HEAD") - 2  # StudyDescription's 2-byte length: run past the end
    data[at : at + 2] = (0xFFF0).to_bytes(2, "little")
    with pytest.raises(StructureError):
        Deidentifier(Policy(), SECRET).apply_bytes(bytes(data))


def test_apply_then_save_as_has_no_source_preamble_or_identity() -> None:
    ds = pydicom.dcmread(io.BytesIO(source_file()))
    assert ds.preamble != b"\x00" * 128
    with quiet():
        Deidentifier(Policy(), SECRET).apply(ds)
    buf = io.BytesIO()
    ds.save_as(buf)
    data = buf.getvalue()
    assert data[:128] == b"\x00" * 128
    assert b"SITE_PACS_7" not in data and b"3680043.9.7.999" not in data
    meta = pydicom.dcmread(io.BytesIO(data)).file_meta
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError, match="secret"):
        Deidentifier(Policy(), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        Deidentifier(Policy(), b"short")
    assert Deidentifier(None, SECRET).policy == Policy.default()
