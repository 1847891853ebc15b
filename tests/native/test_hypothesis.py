"""The native road against the raw-byte engine on hypothesis-generated datasets.

Names that recur in free text, dates valid and not, ages around the Safe Harbor cap,
UIDs well known and not, private blocks, nested sequences and code items, either
little-endian encoding, with and without pixels; each under three policies.
"""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil.engine.dataset import Deidentifier
from medveil.policy.presets import load_policy
from medveil.policy.schema import Policy
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.native.roads import SECRET, Coverage, check_roads, quiet

_WORD = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", min_size=1, max_size=8)
_DATE = st.one_of(
    st.dates().map(lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}"),
    st.sampled_from(["", "2024", "19510227-19520101", "20241399", "notadate"]),
)
_UID = st.one_of(
    st.lists(st.integers(0, 99999), min_size=3, max_size=8).map(
        lambda xs: "1.2." + ".".join(str(x) for x in xs)
    ),
    st.sampled_from(["1.2.840.10008.1.2", "1.2.840.10008.5.1.4.1.1.2"]),
)
_AGE = st.sampled_from(["", "045Y", "089Y", "090Y", "095Y", "012M", "003W", "010D", "45"])
ENGINES: dict[str, Deidentifier] = {}
SEEN: Counter[str] = Counter()


def _engine(name: str) -> Deidentifier:
    if name not in ENGINES:
        policy = Policy.default() if name == "default" else load_policy(name)
        ENGINES[name] = Deidentifier(policy, SECRET)
    return ENGINES[name]


@st.composite
def datasets(draw: st.DrawFn) -> bytes:
    """One CT-like Part 10 file."""
    with quiet():  # invalid values are drawn on purpose
        return _dataset(draw)


def _dataset(draw: st.DrawFn) -> bytes:
    family, given_name = draw(_WORD), draw(_WORD)
    pid = draw(st.text(alphabet="0123456789ABC", min_size=1, max_size=10))
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = draw(_UID)
    if draw(st.booleans()):
        ds.SpecificCharacterSet = draw(st.sampled_from(["ISO_IR 100", "ISO_IR 192"]))
    ds.PatientName = f"{family}^{given_name}"
    ds.PatientID = pid
    ds.PatientBirthDate = draw(_DATE)
    ds.PatientAge = draw(_AGE)
    ds.PatientSex = draw(st.sampled_from(["M", "F", "O", ""]))
    ds.StudyDate = draw(_DATE)
    ds.SeriesDate = draw(_DATE)
    ds.StudyTime = "101500"
    ds.AccessionNumber = draw(_WORD)
    ds.Modality = "CT"
    ds.StudyInstanceUID = draw(_UID)
    ds.SeriesInstanceUID = draw(_UID)
    ds.FrameOfReferenceUID = draw(_UID)
    text = draw(st.sampled_from(["", "Routine", f"{family} follow-up", f"MRN {pid}", "CT HEAD"]))
    ds.StudyDescription = text
    ds.SeriesDescription = draw(st.sampled_from(["Routine", f"{given_name} {family}", "AX 5mm"]))
    if draw(st.booleans()):
        ds.ImageComments = draw(st.text(alphabet="abc XYZ 0123/", max_size=30))
    if draw(st.booleans()):
        ds.ReferringPhysicianName = f"{draw(_WORD)}^{draw(_WORD)}"
    if draw(st.booleans()):
        ds.InstitutionName = draw(_WORD)
    if draw(st.booleans()):
        ds.SliceThickness = draw(st.sampled_from(["1.0", "5", "0.625"]))
    if draw(st.booleans()):
        items = []
        for _ in range(draw(st.integers(0, 3))):
            item = Dataset()
            item.ReferencedSOPClassUID = CTImageStorage
            item.ReferencedSOPInstanceUID = draw(_UID)
            items.append(item)
        ds.ReferencedImageSequence = Sequence(items)
    if draw(st.booleans()):
        code = Dataset()
        code.CodeValue = draw(st.sampled_from(["T-D1100", "XYZ"]))
        code.CodingSchemeDesignator = draw(st.sampled_from(["SRT", "DCM", "99LOCAL", "L"]))
        code.CodeMeaning = draw(st.sampled_from(["Head", f"{family} protocol"]))
        ds.ProcedureCodeSequence = Sequence([code])
    if draw(st.booleans()):
        block = ds.private_block(
            0x0011, draw(st.sampled_from(["ACME 1.0", "SIEMENS CT"])), create=True
        )
        block.add_new(0x01, "LO", f"{family}")
        block.add_new(0x02, "DS", "1.5")
    if draw(st.booleans()):
        ds.Rows = ds.Columns = 4
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        values = draw(st.lists(st.integers(0, 65535), min_size=16, max_size=16))
        ds.PixelData = np.array(values, dtype=np.uint16).tobytes()
    implicit = draw(st.booleans())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


@pytest.mark.parametrize("policy", ["default", "basic", "safe-harbor"])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=datasets())
def test_generated_datasets(policy: str, data: bytes) -> None:
    cov = Coverage()
    check_roads(_engine(policy), data, f"{policy}: generated", cov)
    SEEN["native" if cov.native else "python"] += 1


def test_generated_datasets_reached_the_native_road() -> None:
    # Runs after the property test in file order: the road must have written some.
    if not SEEN:
        pytest.skip("the property test did not run")
    assert SEEN["native"] > 0, SEEN
