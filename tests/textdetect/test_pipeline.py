"""Detection through the policy, clean_instance and deidentify_archive (real DICOM files)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.errors import PolicyError
from medveil.pixels.cleaner import PixelCleaner
from medveil.pixels.text import detect as textdetect
from medveil.policy.schema import Policy
from medveil.run.archive import deidentify_archive

from tests.pixels.helpers import US_IMAGE, make_dataset
from tests.textdetect.render import covered, draw_text, speckle

SECRET = bytes(range(32))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[pixels]\npixel_text = "ocr"\n', 2, "pixel_text must be one of"),
        ('[pixels]\nrules = []\n\nmask = "names"\n', 4, "mask must be one of"),
        ("[pixels]\nmask = 3\n", 2, "mask must be one of"),
        ('[pixels]\npixel_txt = "detect"\n', 2, "unknown setting 'pixel_txt'"),
    ],
)
def test_policy_errors_name_line_and_problem(text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as err:
        Policy.from_toml(text, source="p.toml")
    assert f"p.toml:{line}:" in str(err.value)


def test_policy_defaults_and_values() -> None:
    p = Policy.from_toml("")
    assert (p.pixel_text, p.pixel_mask) == ("auto", "all-text")
    p = Policy.from_toml('[pixels]\npixel_text = "detect+rules"\nmask = "identifiers"\n')
    assert (p.pixel_text, p.pixel_mask) == ("detect+rules", "identifiers")
    engine = Deidentifier(p, SECRET)
    assert engine._pixels.pixel_text == "detect+rules"  # type: ignore[union-attr]
    assert engine._pixels.detector.mask == "identifiers"  # type: ignore[union-attr]


def _us_file(frames: int = 2) -> tuple[bytes, dict[str, tuple[int, int, int, int]]]:
    """A US cine with the patient's name, a scale label and an L marker burned in."""
    img = np.stack([speckle(200, 300, seed=f) for f in range(frames)])
    boxes = {}
    for f in range(frames):
        boxes["name"] = draw_text(img[f], "DOE^JANE  31.01.1970", 4, 6, size=14)
        boxes["scale"] = draw_text(img[f], "5 cm", 178, 250, size=14)
        boxes["marker"] = draw_text(img[f], "L", 90, 6, size=20)
    ds = make_dataset(img, modality="US", sop_class=US_IMAGE, manufacturer="NOBODY KNOWS")
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-4711-X"
    ds.PatientBirthDate = "19700131"
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.BurnedInAnnotation = "YES"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), boxes


def _out_pixels(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array


@pytest.mark.parametrize("as_bytearray", [False, True])
def test_clean_instance_detect_all_text_round_trip(as_bytearray: bool) -> None:
    raw, boxes = _us_file()
    before = pydicom.dcmread(io.BytesIO(raw)).pixel_array
    rules_only = clean_instance(Deidentifier(Policy(pixel_text="rules"), SECRET), raw)
    assert rules_only.status == "quarantined"  # no rule knows this device
    engine = Deidentifier(Policy(pixel_text="detect"), SECRET)
    res = clean_instance(engine, bytearray(raw) if as_bytearray else raw)
    assert res.status == "written", res.reason
    after = _out_pixels(res.data)
    r0, r1, c0, c1 = boxes["name"]
    assert not after[:, r0:r1, c0:c1].any()
    assert res.pixels is not None
    regions = [tuple(r) for r in res.pixels["regions"]]  # type: ignore[union-attr]
    assert covered(regions, boxes["name"], 0) and covered(regions, boxes["scale"], 1)
    changed = (after != before).any(axis=0)
    mask = np.zeros(changed.shape, dtype=bool)
    for a, b, c, d, *_ in regions:
        mask[a:b, c:d] = True
    assert not (changed & ~mask).any()  # nothing outside the recorded boxes changed
    assert all(d["source"] == "detect" for d in res.pixels["detected"])  # type: ignore[index]


def test_clean_instance_identifiers_uses_original_header_values() -> None:
    pytest.importorskip("pytesseract")
    textdetect.ocr_available.cache_clear()
    if not textdetect.ocr_available():
        pytest.skip("the tesseract binary is not installed")
    raw, boxes = _us_file()
    before = pydicom.dcmread(io.BytesIO(raw)).pixel_array
    engine = Deidentifier(Policy(pixel_text="detect", pixel_mask="identifiers"), SECRET)
    res = clean_instance(engine, raw)
    assert res.status == "written", res.reason
    after = _out_pixels(res.data)
    r0, r1, c0, c1 = boxes["name"]
    assert not after[:, r0:r1, c0:c1].any()  # masked although the output header has no name
    for key in ("scale", "marker"):
        r0, r1, c0, c1 = boxes[key]
        np.testing.assert_array_equal(after[:, r0:r1, c0:c1], before[:, r0:r1, c0:c1])
    assert "DOE" not in json.dumps(res.pixels).upper()


def test_archive_run_records_detected_boxes(tmp_path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    raw, _boxes = _us_file()
    (src / "a.dcm").write_bytes(raw)
    blank = make_dataset(speckle(100, 120)[None], modality="US", sop_class=US_IMAGE)
    blank.BurnedInAnnotation = "YES"
    blank.PatientName = "Roe^Richard"
    blank.save_as(src / "b.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    summary = deidentify_archive(
        src, out, policy=Policy(pixel_text="detect"), secret=SECRET, workers=1
    )
    assert (summary.written, summary.quarantined) == (1, 1)
    recs = [json.loads(x) for x in (out / ".medveil" / "pixels.jsonl").read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["detected"]
    q = (out / ".medveil" / "quarantine.jsonl").read_text()
    assert "text detection found no text" in q


def test_compressed_pixels_are_decoded_screened_and_masked() -> None:
    from pydicom.pixels import pixel_array
    from pydicom.uid import RLELossless

    img = np.zeros((2, 120, 200), dtype=np.uint8)
    for f in range(2):
        box = draw_text(img[f], "DOE^JANE 1970", 10, 20, size=16)
    ds = make_dataset(img)
    ds.compress(RLELossless, img, generate_instance_uid=False)
    rep = PixelCleaner(pixel_text="detect").clean(ds)
    assert rep.reencoded and rep.transfer_syntax_out == RLELossless
    out = pixel_array(ds)
    r0, r1, c0, c1 = box
    assert not out[:, r0:r1, c0:c1].any()
    blank = make_dataset(np.zeros((1, 64, 64), dtype=np.uint8))
    blank.compress(RLELossless, np.zeros((64, 64), dtype=np.uint8), generate_instance_uid=False)
    before = blank.PixelData
    assert PixelCleaner(pixel_text="detect").clean(blank).regions == []
    assert blank.PixelData is before  # decoded to look, nothing found: left as it was


def test_readme_policy_example_parses_with_the_pixel_text_keys() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    # The example names a site's own rule file, which the policy loader now opens.
    block = "\n".join(line for line in block.splitlines() if not line.startswith("rules ="))
    p = Policy.from_toml(block, source="README.md")
    assert (p.pixel_text, p.pixel_mask) == ("detect+rules", "identifiers")
