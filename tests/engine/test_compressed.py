"""Compressed files through clean_instance with text detection: released, and masked.

The raw-byte road hands encapsulated Pixel Data to the pixel cleaner as bytes: pydicom's
frame parser reads a buffer with `.read`, which a memoryview does not have, so every
compressed file that had to be decoded used to be quarantined.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file

from .conftest import SECRET, quiet

SYNTAXES = {
    "RLE": ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
    "JPEG baseline": ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),
    "JPEG-LS": ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    "JPEG 2000": ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
}
BAND = """
[[rule]]
id = "test-band"
description = "test: the top band of every image"
match = { all = [{ attr = "SOPClassUID", present = true }] }
regions = [{ rows = [0, 4], cols = [0, 16] }]
"""


def _input(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_detection_decodes_on_the_raw_road_and_releases(syntax: str) -> None:
    name, uid = SYNTAXES[syntax]
    policy = Policy.from_toml('[pixels]\npixel_text = "detect"\nallow_unmatched_burned_in = true\n')
    with quiet():
        result = clean_instance(Deidentifier(policy, SECRET), _input(name))
    assert (result.status, result.reason) == ("written", "")
    assert result.engine == "raw"
    assert result.pixels is not None and result.pixels["transfer_syntax_in"] == uid
    out = pydicom.dcmread(io.BytesIO(result.data))
    assert out.file_meta.TransferSyntaxUID == uid  # nothing to mask: the pixels are copied


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
def test_detection_with_a_rule_masks_compressed_pixels(syntax: str, tmp_path: Path) -> None:
    name = SYNTAXES[syntax][0]
    rules = tmp_path / "band.toml"
    rules.write_text(BAND)
    policy = Policy.from_toml(
        f'[pixels]\npixel_text = "detect+rules"\nrules = ["{rules}"]\n'
        "allow_unmatched_burned_in = true\n"
    )
    data = _input(name)
    with quiet():
        result = clean_instance(Deidentifier(policy, SECRET), data)
        assert (result.status, result.reason) == ("written", "")
        before = pydicom.dcmread(io.BytesIO(data)).pixel_array
        after = pydicom.dcmread(io.BytesIO(result.data)).pixel_array
    assert result.pixels is not None and result.pixels["regions"]
    assert not after[:4, :16].any()  # the band is blank
    if syntax != "JPEG baseline":  # lossless in, lossless out: the rest is untouched
        np.testing.assert_array_equal(after[4:], before[4:])


def test_cli_releases_compressed_files_with_detection(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    # One file per syntax, each its own instance (the MR_small family shares its UIDs).
    names = ["MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEGLSNearLossless_08.dcm"]
    names.append("JPEG2000.dcm")
    for name in names:
        (src / name).write_bytes(_input(name))
    policy = tmp_path / "policy.toml"
    policy.write_text('[pixels]\npixel_text = "detect"\nallow_unmatched_burned_in = true\n')
    secret = tmp_path / "secret.key"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "medveil", "deid", str(src), str(out)]
    command += ["--policy", str(policy), "--secret-file", str(secret), "--workers", "1", "--quiet"]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == len(names)
