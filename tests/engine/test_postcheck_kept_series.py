"""A kept value rechecked for the patient's identity, with the series' caches and without.

The default policy keeps the Station Name (Retain Device Identity). A kept value that
holds the patient's name is a leak: when the longest term at its start is the kept value
itself, the post-check rechecks it with the never-kept terms alone, a matcher a file with
the series' shared Terms takes from them. From slice k on, the station's name carries
the patient's family name: every slice must get the verdict a fresh process gives.
"""

from __future__ import annotations

import io

import pytest
from medveil.engine import postcheck
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.engine.postcheck import Terms
from medveil.policy.schema import Policy
from medveil.verify import elements
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from .conftest import SECRET, quiet

ROOT = "1.2.826.0.1.3680043.10.998"
LEAK_FROM = 3


def _forget() -> None:
    """Drop every cache the post-check keeps across files (a fresh worker)."""
    postcheck._LEARNED.clear()
    postcheck._AUTOMATA.clear()
    elements._SHAPES.clear()


def _slice(k: int) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = f"{ROOT}.3.{k + 1}"
    ds.StudyInstanceUID = f"{ROOT}.1"
    ds.SeriesInstanceUID = f"{ROOT}.1.2"
    ds.Modality = "CT"
    ds.PatientName = "Qzdoebrak^Wxmelkin"
    ds.PatientID = "QX7741230"
    ds.StationName = "QZDOEBRAK CT1" if k >= LEAK_FROM else "QZSCANNER"
    ds.DeviceSerialNumber = "QZSN77123"
    ds.InstanceNumber = k + 1
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    with quiet():
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _status(engine: Deidentifier, k: int) -> tuple[str, str]:
    result = clean_instance(engine, bytearray(_slice(k)), f"s{k}.dcm")
    return result.status, result.reason


def test_series_verdicts_equal_fresh_ones() -> None:
    engine = Deidentifier(Policy(), secret=SECRET)
    _forget()
    series = [_status(engine, k) for k in range(6)]
    for k in range(6):
        _forget()
        assert _status(Deidentifier(Policy(), secret=SECRET), k) == series[k]
    assert all(s == "written" for s, _ in series[:LEAK_FROM])
    for status, reason in series[LEAK_FROM:]:
        assert status == "quarantined" and "(0008,1010)" in reason


@pytest.mark.parametrize("form", ["always-bytes", "always-text"])
def test_always_matcher_of_a_series_file_is_a_fresh_ones(form: str) -> None:
    _forget()
    terms = [postcheck.learn_terms(_slice(k)) for k in range(LEAK_FROM + 2)]
    shared = [t for t in terms if t._shared is not None]
    assert shared, "no file took the series' shared Terms"
    for t in shared:
        cached, flags = t.matcher(form)
        fresh = Terms(set(t.always), dict(t.kinds), dict(t.spellings))  # no series part
        _forget()
        want, want_flags = fresh.matcher(form)
        assert dict(zip(cached.patterns, flags, strict=True)) == dict(
            zip(want.patterns, want_flags, strict=True)
        )
