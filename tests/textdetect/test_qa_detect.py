"""medveil qa shows detected boxes in their own colours, OCR text only as its length."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from medveil.pixels.cleaner import PixelCleaner
from medveil.pixels.qa import (
    DETECTED_COLOUR,
    KEPT_COLOUR,
    RULE_COLOUR,
    QaItem,
    redacted,
    thumbnail,
    write_report,
)
from medveil.pixels.text.detect import TextDetector
from medveil.policy.schema import Policy
from medveil.run.archive import deidentify_archive

from tests.pixels.helpers import US_IMAGE, make_dataset
from tests.textdetect.render import draw_text, speckle

pytest.importorskip("PIL")
SECRET = bytes(range(32))


def test_redacted_shows_length_only() -> None:
    assert redacted(5) == "▮▮▮▮▮ (5 chars)"
    assert redacted(1) == "▮ (1 char)"
    assert redacted(None) == "not read by OCR"
    assert len(redacted(400)) < 40  # long lines do not flood the page


def _image_file(path: Path) -> tuple[int, int, int, int]:
    img = np.zeros((1, 120, 200), dtype=np.uint8)
    img[0, 60:] = speckle(60, 200)
    box = draw_text(img[0], "DOE^JANE 1970", 10, 20, size=16)
    ds = make_dataset(img, modality="US", sop_class=US_IMAGE, manufacturer="NOBODY")
    ds.PatientName = "Doe^Jane"
    ds.save_as(path, enforce_file_format=True)
    return box


def test_thumbnail_colours_rule_detected_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    _image_file(path)
    item = QaItem(
        path=path,
        label="x.dcm",
        device="US",
        regions=[(80, 100, 10, 60, 0, 1), (5, 30, 10, 150, 0, 1)],
        detected=[
            {"frame": 0, "box": [5, 30, 10, 150], "masked": True, "why": "all-text"},
            {"frame": 0, "box": [100, 115, 120, 190], "masked": False, "why": "kept"},
        ],
    )
    img = np.asarray(thumbnail(item, size=400))

    def colour_at(r: int, c: int) -> tuple[int, ...]:
        return tuple(int(v) for v in img[r, c])

    assert colour_at(80, 30) == RULE_COLOUR  # top edge of the rule rectangle
    assert colour_at(5, 80) == DETECTED_COLOUR  # the detected box is not drawn red
    assert colour_at(100, 150) == KEPT_COLOUR


def test_archive_run_then_qa_page_has_legend_and_no_text(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _image_file(src / "a.dcm")
    out = tmp_path / "out"
    summary = deidentify_archive(
        src, out, policy=Policy(pixel_text="detect"), secret=SECRET, workers=1
    )
    assert summary.written == 1
    index = write_report(out)
    page = index.read_text(encoding="utf-8")
    assert "found by detection" in page and "kept (matched no identifier" in page
    assert "masked [" in page and "not read by OCR" in page
    assert "DOE" not in page.upper() and "JANE" not in page.upper()


def test_identifiers_mode_records_lengths_not_text(tmp_path: Path) -> None:
    img = np.zeros((1, 120, 200), dtype=np.uint8)
    draw_text(img[0], "DOE^JANE", 10, 20, size=16)
    draw_text(img[0], "5 cm", 90, 120, size=14)
    ds = make_dataset(img)
    ds.PatientName = "Doe^Jane"

    def fake_ocr(crop: np.ndarray) -> str:
        return "DOE^JANE" if crop.shape[1] > 60 else "5 cm"

    cleaner = PixelCleaner(pixel_text="detect", detector=TextDetector("identifiers", ocr=fake_ocr))
    rec = cleaner.clean(ds).record("x.dcm")
    assert sorted((d["masked"], d["text_len"]) for d in rec["detected"]) == [
        (False, 3),
        (True, 8),
    ]
    out = tmp_path / "out"
    (out / ".medveil").mkdir(parents=True)
    ds.save_as(out / "x.dcm", enforce_file_format=True)
    (out / ".medveil" / "pixels.jsonl").write_text(json.dumps(rec) + "\n")
    page = write_report(out).read_text(encoding="utf-8")
    assert "▮▮▮▮▮▮▮▮ (8 chars)" in page and "▮▮▮ (3 chars)" in page
    assert "identifier" in page and "kept" in page
    assert "DOE" not in page.upper() and "5 CM" not in page.upper()
