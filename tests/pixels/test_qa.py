"""medveil qa: thumbnails, windowing, outlines, grouping, sampling, the PHI opt-in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.cli.main import main as cli_main
from medveil.pixels.cleaner import PixelCleaner
from medveil.pixels.qa import (
    QaItem,
    display_u8,
    render_frames,
    sample_items,
    thumbnail,
    write_report,
)
from medveil.pixels.rules import RuleSet

from .helpers import RULES_TOML, US_IMAGE, burned_image, make_dataset

pytest.importorskip("PIL")

RULES = RuleSet.loads(RULES_TOML)


def _archive(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    for i in range(3):
        ds = make_dataset(expected_after(i), manufacturer="ACME Medical")
        ds.save_as(out / "a" / f"acme{i}.dcm", enforce_file_format=True)
    for i in range(2):
        ds = make_dataset(
            burned_image(samples=3, dtype="uint8", seed=i),
            manufacturer="Other",
            modality="US",
            sop_class=US_IMAGE,
        )
        ds.save_as(out / f"other{i}.dcm", enforce_file_format=True)
    (out / "notes.txt").write_text("not dicom")
    (out / ".medveil").mkdir()
    # A run's records without a SQLite catalog (as a Spark run leaves): the tree is listed.
    (out / ".medveil" / "summary.json").write_text("{}")
    (out / ".medveil" / "quarantine.jsonl").write_text(
        json.dumps({"input": "in/us.dcm", "reason": "BurnedInAnnotation is YES, no pixel rule"})
        + "\n"
        + json.dumps({"input": "in/bad.dcm", "reason": "cannot read: EOF"})
        + "\n"
    )
    return out


def expected_after(seed: int) -> np.ndarray:
    from .helpers import expected_after as ea

    return ea(burned_image(seed=seed))


def test_display_window_and_monochrome1() -> None:
    ds = pydicom.Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 100, 200
    frame = np.array([[0, 100, 200, 300]], dtype=np.uint16)
    np.testing.assert_array_equal(display_u8(ds, frame), [[0, 127, 255, 255]])
    ds.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_array_equal(display_u8(ds, frame), [[255, 127, 0, 0]])
    ds.RescaleSlope, ds.RescaleIntercept = 1, -100  # window applies to rescaled values
    ds.PhotometricInterpretation = "MONOCHROME2"
    np.testing.assert_array_equal(display_u8(ds, frame), [[0, 0, 127, 255]])


def test_thumbnail_outlines_the_masked_rectangle(tmp_path: Path) -> None:
    ds = make_dataset(np.full((1, 64, 96), 1000, np.uint16))
    ds.WindowCenter, ds.WindowWidth = 1000, 10
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    item = QaItem(path=path, label="x", device="d", regions=[(10, 30, 20, 60, 0, 1)])
    img = np.asarray(thumbnail(item, size=256))
    assert img.shape == (64, 96, 3)  # never enlarged
    assert tuple(img[10, 40]) == (255, 0, 0) and tuple(img[29, 40]) == (255, 0, 0)
    assert tuple(img[20, 20]) == (255, 0, 0) and tuple(img[20, 59]) == (255, 0, 0)
    assert tuple(img[20, 40]) == (127, 127, 127)  # inside: the image, not the outline
    item.regions = [(10, 30, 20, 60, 1, 2)]  # on another frame: not drawn
    assert (np.asarray(thumbnail(item, size=256))[..., 1] == 127).all()


def test_sample_spreads_over_devices() -> None:
    items = [
        QaItem(Path(f"{d}{i}"), f"{d}{i}", d) for d in "abc" for i in range(10 if d == "a" else 2)
    ]
    picked = sample_items(items, 5, seed=1)
    assert len(picked) == 5 and {p.device for p in picked} == {"a", "b", "c"}
    assert sample_items(items, 5, seed=1) == picked
    assert sample_items(items, None) == items


def test_report_groups_by_device_and_hides_quarantined_by_default(tmp_path: Path) -> None:
    out = _archive(tmp_path)
    index = write_report(out, rules=RULES)
    page = index.read_text()
    assert "OT · ACME Medical Veil 3000 — 3 image(s)" in page
    assert "US · Other Veil 3000 — 2 image(s)" in page
    assert "test-acme ×3" in page and "matched again" in page
    # Single-frame files: the rule's frames 1-2 rectangle does not apply, frame ranges clip.
    assert "0,12,4,60,0,1" in page and "40,52,70,90" not in page
    assert "QUARANTINED" not in page and "in/us.dcm" not in page
    assert "notes.txt" not in page  # not DICOM: not an image to review
    fulls = sorted(index.parent.glob("img/*/f*.png"))
    assert len(fulls) == 5  # one full-resolution frame per single-frame file
    from PIL import Image

    reds = 0
    for f in fulls:
        with Image.open(f) as im:
            reds += bool((np.asarray(im.convert("RGB")) == (255, 0, 0)).all(axis=-1).any())
    assert reds == 3  # the three ACME files show their rule's outline, the others none


def test_quarantined_inputs_only_on_request_with_warning(tmp_path: Path) -> None:
    out = _archive(tmp_path)
    index = write_report(out, rules=RULES, include_quarantined=tmp_path / "in-root", sample=2)
    page = index.read_text()
    assert "QUARANTINED INPUT" in page and "may show patient names" in page
    assert "in/us.dcm" in page and "in/bad.dcm" not in page  # only pixel reasons
    assert "2 of 5 released images" in page
    assert "data-path='in/us.dcm'" not in page  # input side: never signed off


def test_recorded_pixel_reports_are_preferred(tmp_path: Path) -> None:
    out = _archive(tmp_path)
    site = RuleSet.loads(RULES_TOML.replace("test-acme", "site-x").replace("acme", "other"))
    ds = make_dataset(burned_image(), manufacturer="Other")
    report = PixelCleaner(site).clean(ds, source="PHI-bearing input name")
    line = json.dumps(report.record("other0.dcm"))
    assert "PHI-bearing" not in line
    (out / ".medveil" / "pixels.jsonl").write_text(line + "\n")
    page = write_report(out, rules=RULES).read_text()
    assert "site-x ×1" in page and "test-acme" not in page and "recorded by the run" in page
    assert "0,12,4,60,0,1" in page


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _archive(tmp_path)
    rules = tmp_path / "r.toml"
    rules.write_text(RULES_TOML)
    assert cli_main(["qa", str(out), "--rules", str(rules), "--out", str(tmp_path / "qa")]) == 0
    assert (tmp_path / "qa" / "index.html").exists()
    assert "index.html" in capsys.readouterr().out
    assert cli_main(["qa", str(tmp_path / "missing")]) == 2
    plain = tmp_path / "plain"
    (plain / "a").mkdir(parents=True)
    (out / "a" / "acme0.dcm").rename(plain / "a" / "acme0.dcm")
    assert cli_main(["qa", str(plain)]) == 2  # DICOM files, but no run's records
    assert "not the output of a medveil run" in capsys.readouterr().err
    assert not (plain / ".medveil").exists()


def test_render_frames_every_frame_with_its_own_rectangles(tmp_path: Path) -> None:
    ds = make_dataset(np.full((4, 64, 96), 1000, np.uint16))
    ds.WindowCenter, ds.WindowWidth = 1000, 10
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    item = QaItem(path=path, label="x", device="d", regions=[(10, 30, 20, 60, 1, 3)])
    strip = render_frames(item, tmp_path / "img", size=32)
    assert [s[:2] for s in strip] == [(f"t{i:05d}.png", f"f{i:05d}.png") for i in range(4)]
    assert item.frames == 4 and all(s[2:] == (96, 64) for s in strip)
    from PIL import Image

    for i in range(4):
        with Image.open(tmp_path / "img" / f"f{i:05d}.png") as im:
            full = np.asarray(im.convert("RGB"))
        with Image.open(tmp_path / "img" / f"t{i:05d}.png") as im:
            assert im.size == (32, 21)  # thumbnails fit the size, full frames do not shrink
        assert full.shape == (64, 96, 3)
        assert (tuple(full[10, 40]) == (255, 0, 0)) == (i in (1, 2))  # frames [1, 3) only


def test_render_frames_of_a_real_colour_multiframe_file(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    path = Path(str(get_testdata_file("SC_rgb_rle_2frame.dcm")))
    item = QaItem(path=path, label="sc", device="d")
    strip = render_frames(item, tmp_path / "img", size=64)
    assert len(strip) == 2 and item.frames == 2 and not item.note
    from PIL import Image
    from pydicom.pixels.utils import pixel_array

    ds = pydicom.dcmread(path)
    for i in range(2):
        with Image.open(tmp_path / "img" / f"f{i:05d}.png") as im:
            np.testing.assert_array_equal(np.asarray(im), pixel_array(ds, index=i))


def test_an_undecodable_file_gets_an_error_tile_not_a_crash(tmp_path: Path) -> None:
    ds = make_dataset(np.zeros((2, 16, 16), np.uint16))
    ds.PixelData = ds.PixelData[:10]  # truncated
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    item = QaItem(path=path, label="x", device="d")
    assert [s[0] for s in render_frames(item, tmp_path / "img", size=32)] == ["error.png"]
    assert item.note.startswith("not rendered")
