"""A transfer syntax pydicom does not know is quarantined as unsupported, by name, not as damage."""

from __future__ import annotations

import io
import zlib

import pydicom
import pytest
from medveil.dicom.strict import DEFLATED_SYNTAXES, check_structure
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.errors import DicomInputError
from medveil.policy.presets import load_policy
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

# Written by pydicom under a syntax of the same length, then renamed in the meta: pydicom
# refuses to write a syntax it does not know.
_STAND_IN = b"1.2.840.10008.1.2.4.50"


def _file_under(ts: bytes) -> bytes:
    """CT_small with each frame deflated and encapsulated, its meta naming ``ts``."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    ds.PixelData = encapsulate([packer.compress(ds.PixelData) + packer.flush()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = _STAND_IN.decode()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    assert data.count(_STAND_IN) == 1
    return data.replace(_STAND_IN, ts.ljust(len(_STAND_IN), b"\0"))


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        (b"1.2.840.10008.1.2.8.1", "unsupported transfer syntax: Deflated Image Frame Compression"),
        (b"1.2.3.4", "unsupported transfer syntax: not a standard one"),
        (b"SMITH^JOHN", "unsupported transfer syntax: not a standard one"),
    ],
)
def test_unknown_syntax_is_quarantined_by_name(ts: bytes, reason: str) -> None:
    data = _file_under(ts)
    with pytest.raises(DicomInputError) as err:
        check_structure(data)
    assert str(err.value) == reason
    engine = Deidentifier(load_policy(None), secret=b"k" * 32)
    result = clean_instance(engine, bytearray(data), "frames.dcm")
    assert (result.status, result.reason) == ("quarantined", reason)
    assert b"SMITH" not in result.reason.encode()


def test_frame_deflation_is_not_a_deflated_data_set() -> None:
    # Deflated Image Frame Compression deflates frames, not the data set after the meta:
    # read as a deflated data set, every such file looked structurally damaged.
    assert "1.2.840.10008.1.2.8.1" not in DEFLATED_SYNTAXES
    assert "1.2.840.10008.1.2.1.99" in DEFLATED_SYNTAXES


def test_known_syntax_still_passes_the_check() -> None:
    data = _file_under(b"1.2.840.10008.1.2.5")  # RLE Lossless: known, encapsulated
    assert check_structure(data) == "1.2.840.10008.1.2.5"
