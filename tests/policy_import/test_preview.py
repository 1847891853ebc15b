"""`medveil preview FILE`: every element with its action, before and after; PNG of masks."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from medveil.cli.preview import preview
from medveil.run.demo import demo_rule_file, write_demo_archive

from tests.policy_import.helpers import cli, ct_small

SECRET = bytes(range(32))


def test_rows_match_the_engine_output() -> None:
    from medveil.engine.dataset import Deidentifier
    from medveil.policy.presets import load_policy

    rows, _pixels = preview(ct_small(), "research", SECRET)
    by_path = {r.path: r for r in rows}
    original = pydicom.dcmread(ct_small())
    expected = pydicom.dcmread(ct_small())
    Deidentifier(load_policy("research"), SECRET).apply(expected)
    name = by_path["(0010,0010)"]
    assert name.action == "pseudonym"
    assert name.before == str(original.PatientName)
    assert name.after == str(expected.PatientName)  # the same secret gives the same output
    institution = by_path["(0008,0080)"]
    assert institution.before == original.InstitutionName
    assert institution.after == expected.InstitutionName != original.InstitutionName
    assert by_path["(0010,1002)[0]/(0010,0020)"].action == "X (parent)"
    assert by_path["(0020,0013)"].action == "K"
    assert by_path["(0012,0062)"].action == "added"
    # Every element of the original appears once.
    originals = sum(1 for _ in original.iterall())
    assert (
        sum(1 for r in rows if not r.path.startswith("meta") and r.action != "added") == originals
    )


def test_cli_prints_and_writes_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert cli(["preview", str(ct_small()), "--policy", "basic", "--changed"]) == 0
    out = capsys.readouterr().out
    assert "throwaway secret" in out
    assert "CompressedSamples^CT1" in out  # the original value, on the console only
    assert "(0020,0013)" not in out  # --changed hides unchanged elements
    assert list(tmp_path.iterdir()) == []  # nothing written: no record, no secret


def test_png_shows_the_masked_band(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    write_demo_archive(tmp_path / "demo")
    policy = tmp_path / "p.toml"
    policy.write_text(f'[pixels]\nrules = ["{demo_rule_file()}"]\n')
    cine = tmp_path / "demo" / "patient1" / "us" / "cine.dcm"
    png = tmp_path / "boxes.png"
    assert cli(["preview", str(cine), "--policy", str(policy), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "masked (" in out and "1 region(s) drawn on frame 0" in out
    img = Image.open(png).convert("RGB")
    ds = pydicom.dcmread(cine)
    assert img.size == (ds.Columns, ds.Rows)
    assert img.getpixel((0, 0)) == (255, 0, 0)  # the box outline over the text band
    assert img.getpixel((ds.Columns // 2, ds.Rows - 10)) != (255, 0, 0)  # outside it


def test_no_pixels_no_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = pydicom.dcmread(ct_small())
    del ds.PixelData
    path = tmp_path / "nopix.dcm"
    ds.save_as(path)
    assert cli(["preview", str(path), "--png", str(tmp_path / "x.png")]) == 2
    assert "no pixel data" in capsys.readouterr().err


def test_a_file_that_would_be_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Burned-in ultrasound with no rule for its device, under rules-only pixel handling:
    the engine refuses it, and so does the preview, with the engine's reason."""
    write_demo_archive(tmp_path / "demo")
    cine = tmp_path / "demo" / "patient1" / "us" / "cine.dcm"
    rules_only = tmp_path / "rules.toml"
    rules_only.write_text('[pixels]\npixel_text = "rules"\n')
    assert cli(["preview", str(cine), "--policy", str(rules_only)]) == 1
    out = capsys.readouterr().out
    assert "would be quarantined" in out and "BurnedInAnnotation is YES" in out
