"""Every compressed syntax with burned-in text through ``medveil deid`` (issue 19 item 1).

Every compressed file that had to be decoded used to be quarantined with "install
medveil[codecs]" (pydicom's frame parser called ``.read`` on the memoryview the raw-byte
engine handed over; ``test_auto_mode`` tests the cleaner's side of that). Here each
syntax goes through the CLI with text detection, whichever engine takes it, and must
come out written, its text masked, its syntax kept when it was lossless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.cli.main import main
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from tests.corpus.realistic import US_MULTIFRAME, _set_pixels
from tests.textdetect.render import draw_text, speckle

SYNTAXES = [RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGBaseline8Bit]


def _us_file(path: Path, ts: str) -> list[tuple[int, int, int, int]]:
    """Write a 2-frame grey US cine in ``ts`` with two text lines; return their ink boxes."""
    frames, boxes = [], []
    for f in range(2):
        img = speckle(160, 240, seed=f)
        boxes = [
            draw_text(img, "ZANETTI^MARGUERITE", 4, 6, size=14),
            draw_text(img, "ID SB7316259", 22, 6, size=14),
        ]
        frames.append(img)
    ds = Dataset()
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer = "US", "NOBODY"
    ds.PatientName, ds.PatientID = "ZANETTI^MARGUERITE", "SB7316259"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    _set_pixels(ds, np.stack(frames), ts)
    ds.save_as(path, enforce_file_format=True)
    return boxes


@pytest.mark.parametrize("ts", SYNTAXES, ids=lambda t: pydicom.uid.UID(t).name)
def test_compressed_text_is_masked_through_the_cli(tmp_path: Path, ts: str) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    boxes = _us_file(src / "us.dcm", ts)
    policy = tmp_path / "p.toml"
    policy.write_text('[pixels]\npixel_text = "detect+rules"\n')
    key = tmp_path / "k"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    argv = ["deid", str(src), str(out), "--secret-file", str(key), "--policy", str(policy)]
    assert main([*argv, "--workers", "1", "--quiet", "--no-fsync"]) == 0
    (written,) = [p for p in out.rglob("*.dcm") if ".medveil" not in p.parts]
    ds = pydicom.dcmread(written)
    lossless = ts != JPEGBaseline8Bit
    assert ds.file_meta.TransferSyntaxUID == (ts if lossless else ExplicitVRLittleEndian)
    arr = ds.pixel_array
    for r0, r1, c0, c1 in boxes:
        assert (arr[:, r0:r1, c0:c1] == 0).all()
    assert arr[:, 80:, :].any()  # the image below the text is still there
