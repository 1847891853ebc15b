"""A structurally damaged original cannot be verified: never CLEAN, exit code 1."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pydicom
from medveil.cli.main import main
from medveil.verify import verify_archive

from tests.verify import factory as f


def _overrun(path: Path) -> bytes:
    """The file with a private UT whose length runs 40 bytes past the end (issue 18, 1)."""
    data = path.read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "UT", "abcd")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out = bytearray(buf.getvalue())
    at = out.find(b"\x09\x00\x01\x10UT")
    struct.pack_into("<I", out, at + 8, len(out) - at - 12 + 40)
    return bytes(out)


def test_a_damaged_original_is_cannot_verify(tmp_path: Path, capsys) -> None:
    orig = f.save(f.original(), tmp_path / "orig" / "o.dcm")
    orig.write_bytes(_overrun(orig))
    out = f.save(f.clean_output(), tmp_path / "out" / "o.dcm")
    report = verify_archive(orig, out)
    assert report.findings == []  # the output is clean of what could be learned...
    assert report.damaged_originals and not report.clean and report.exit_code == 1
    assert "runs past the end" in report.damaged_originals[0][1]
    assert report.table().splitlines()[-1] == "CANNOT VERIFY: an original is structurally damaged"
    assert json.loads(report.to_json())["damaged_originals"]
    capsys.readouterr()
    assert main(["verify", str(orig), str(out)]) == 1
    printed = capsys.readouterr().out
    assert "CANNOT VERIFY" in printed and "CLEAN" not in printed.splitlines()[-1]


def test_a_sound_original_still_verifies_clean(tmp_path: Path) -> None:
    orig = f.save(f.original(), tmp_path / "orig" / "o.dcm")
    out = f.save(f.clean_output(), tmp_path / "out" / "o.dcm")
    report = verify_archive(orig, out)
    assert report.damaged_originals == [] and report.exit_code == 0
