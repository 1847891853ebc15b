"""Quarantine reasons for unusable pixel geometry name the element and say why.

``badVR.dcm`` (pydicom's) has NumberOfFrames ``1A``; the reason must say which element
is wrong and what that stops, while the records blank the value itself (it is file text).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from medveil.cli.main import main
from medveil.errors import QuarantineError
from medveil.pixels.cleaner import PixelCleaner
from medveil.pixels.rules import RuleSet
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from .helpers import make_dataset

# Invalid values are the point here: pydicom's warnings about them are not.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR IS")

WHY = "is not a whole number, so the pixel layout is unknown and the pixels cannot be cleaned"


@pytest.mark.parametrize("value", ["1A", "2.5.1", "many"])
def test_reason_names_element_and_why(value: str) -> None:
    ds = make_dataset(np.zeros((1, 4, 4), np.uint16), bits_stored=12)
    raw = value.encode("ascii") + b" " * (len(value) % 2)
    # As read from a file: a raw element, which the cleaner only peeks at.
    ds._dict[BaseTag(0x00280008)] = RawDataElement(
        BaseTag(0x00280008), "IS", len(raw), raw, 0, False, True
    )
    with pytest.raises(QuarantineError) as err:
        PixelCleaner(RuleSet([])).clean(ds)
    assert str(err.value).startswith(f"NumberOfFrames (0028,0008) {WHY}")
    assert str(err.value).endswith(f"(value {value!r})")


def test_bad_vr_file_through_the_cli(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "badVR.dcm").write_bytes(Path(get_testdata_file("badVR.dcm")).read_bytes())
    key = tmp_path / "k"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    argv = ["deid", str(src), str(out), "--secret-file", str(key), "--workers", "1"]
    assert main([*argv, "--quiet", "--no-fsync"]) == 1
    (line,) = (out / ".medveil" / "quarantine.jsonl").read_text().splitlines()
    reason = json.loads(line)["reason"]
    assert reason.startswith(f"NumberOfFrames (0028,0008) {WHY}")
    assert "1A" not in reason  # the value is blanked in the records
