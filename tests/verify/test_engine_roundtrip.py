"""The verifier audits the de-identification engine: clean by default, a broken policy caught."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from medveil.verify import verify_archive
from pydicom.data import get_testdata_file

deid = pytest.importorskip("medveil.engine.dataset")
dicom_io = pytest.importorskip("medveil.dicom.io")
policy_mod = pytest.importorskip("medveil.policy.schema")
errors = pytest.importorskip("medveil.errors")

SECRET = bytes(range(32))
# pydicom's bundled files (no download needed) that the engine releases under its default
# policy; the others are quarantined for likely burned-in text, which is the point.
FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "liver_1frame.dcm",
    "waveform_ecg.dcm",
    "examples_overlay.dcm",
    "UN_sequence.dcm",
    "priv_SQ.dcm",
]
# The default policy applies Retain Device Identity (PS3.15 E.3.x), which keeps these on
# purpose; the verifier still reports them, under 'allowed'. Written here from the option's
# definition, not read from the engine's tables.
DEVICE_IDENTITY = ["StationName", "DeviceSerialNumber"]
PLANTED = "Doeling^Janette"
# pydicom's test files are deliberately non-conformant in places; pydicom warns on reading.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _deidentify(engine, names: list[str], orig: Path, out: Path) -> int:
    """Copy each test file to orig/ and its de-identified version to out/ (renamed)."""
    orig.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    released = 0
    for i, name in enumerate(names):
        src = get_testdata_file(name)
        if src is None:
            continue
        ds = pydicom.dcmread(src, force=True)
        try:
            engine.apply(ds, source=name, check=False)
        except errors.QuarantineError:
            continue
        (orig / name).write_bytes(Path(src).read_bytes())
        (out / f"released-{i:03d}.dcm").write_bytes(dicom_io.write_dataset(ds))
        released += 1
    return released


def test_default_policy_output_verifies_clean(tmp_path: Path) -> None:
    engine = deid.Deidentifier(policy_mod.Policy.default(), SECRET)
    n = _deidentify(engine, FILES, tmp_path / "orig", tmp_path / "out")
    assert n >= 4, "the engine released too few of pydicom's test files to mean anything"
    report = verify_archive(tmp_path / "orig", tmp_path / "out", allow=DEVICE_IDENTITY)
    assert report.outputs == n
    assert report.values > 50  # the originals did carry identifying values
    assert report.findings == [], report.table()
    assert report.exit_code == 0
    if report.allowed:  # device identity kept: without --allow it is reported
        assert verify_archive(tmp_path / "orig", tmp_path / "out").exit_code == 1


def _with_planted_private(path: Path) -> str:
    """Save CT_small with a name in a private element; returns that element's path."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    block = ds.private_block(0x0029, "FAKE VENDOR", create=True)
    block.add_new(0x10, "LO", PLANTED)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    tag = block.get_tag(0x10)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def test_broken_policy_keeping_a_private_name_is_caught(tmp_path: Path) -> None:
    orig = tmp_path / "orig" / "ct.dcm"
    planted_at = _with_planted_private(orig)
    broken = policy_mod.Policy.from_toml(
        '[elements]\n"FAKE VENDOR:(0029,xx10)" = "K"\n', source="broken.toml"
    )
    for name, policy, expect_clean in (
        ("default", policy_mod.Policy.default(), True),
        ("broken", broken, False),
    ):
        ds = pydicom.dcmread(orig)
        deid.Deidentifier(policy, SECRET).apply(ds, check=False)
        out = tmp_path / name / "x.dcm"
        out.parent.mkdir()
        out.write_bytes(dicom_io.write_dataset(ds))
        report = verify_archive(orig.parent, out.parent, allow=DEVICE_IDENTITY)
        if expect_clean:
            assert report.findings == [], report.table()
        else:
            where = {(x.category, x.path) for x in report.findings}
            assert ("private", planted_at) in where, report.table()
            text = report.table() + report.to_json()
            assert "doeling" not in text.lower() and "janette" not in text.lower()
