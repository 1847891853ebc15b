"""Patient free text that Clean Descriptors keeps and the post-check learns as identifying.

The default policy cleans AdditionalPatientHistory, PatientComments, MedicalAlerts,
Allergies, Occupation and PatientState (C); the post-check (and ``medveil verify``) learn
their whole values as identifying free text and refuse them anywhere in the output. The
decision layer makes the two agree: a value cleaning leaves as it was is removed, so a
file with PHI-free text is released, and the same text copied into another kept element
is still caught.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.decide import seen_as_identifying, tag_text
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from .conftest import SECRET, base_dataset, both_roads, part10, quiet

TEXTS = {
    "AdditionalPatientHistory": "Headache for two weeks. No prior surgery.",
    "PatientComments": "Claustrophobic, needs sedation",
    "MedicalAlerts": "Pacemaker",
    "Allergies": "Iodine contrast",
    "Occupation": "teacher",
    "PatientState": "stable",
}


def run(ds: Dataset, implicit: bool = False) -> tuple[str, str, bytes]:
    """(status, reason, output bytes) of the whole pipeline, post-check included."""
    with quiet():
        result = clean_instance(Deidentifier(Policy(), SECRET), bytearray(part10(ds, implicit)))
    return result.status, result.reason, b"".join(bytes(p) for p in result.parts)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("keyword", sorted(TEXTS))
def test_phi_free_patient_text_is_released_without_it(keyword: str, implicit: bool) -> None:
    ds = base_dataset()
    setattr(ds, keyword, TEXTS[keyword])
    status, reason, data = run(ds, implicit)
    assert status == "written", reason
    assert TEXTS[keyword].encode() not in data
    assert keyword not in pydicom.dcmread(io.BytesIO(data))


@pytest.mark.parametrize("keyword", sorted(TEXTS))
def test_both_engines_remove_it_with_a_reason(keyword: str) -> None:
    tag = tag_for_keyword(keyword)
    assert tag is not None and seen_as_identifying(tag, dictionary_VR(tag))
    ds = base_dataset()
    setattr(ds, keyword, TEXTS[keyword])
    with quiet():
        report = Deidentifier(Policy(), SECRET).apply(ds, check=False)
    assert (tag_text(tag), "X-identifying-text") in report.entries
    ds = base_dataset()
    setattr(ds, keyword, TEXTS[keyword])
    assert keyword not in pydicom.dcmread(io.BytesIO(both_roads(ds)))  # engines agree


@pytest.mark.parametrize("keyword", sorted(TEXTS))
def test_same_text_copied_into_a_kept_element_is_still_caught(keyword: str) -> None:
    ds = base_dataset()
    setattr(ds, keyword, TEXTS[keyword])
    ds.ImageComments = TEXTS[keyword]  # Clean Descriptors keeps it: nothing to clean
    status, reason, _ = run(ds)
    assert status == "quarantined", "a learned identifying value got out elsewhere"
    assert "post-check" in reason
    assert TEXTS[keyword] not in reason  # the reason never quotes the value


def test_text_holding_the_name_is_cleaned_and_kept() -> None:
    ds = base_dataset()
    ds.AdditionalPatientHistory = "Headache for two weeks, seen by Doe"
    status, reason, data = run(ds)
    assert status == "written", reason
    got = pydicom.dcmread(io.BytesIO(data))
    assert got.AdditionalPatientHistory == "Headache for two weeks, seen by"
    assert b"Doe" not in data


def test_multi_valued_text_with_one_unchanged_value_is_removed() -> None:
    ds = base_dataset()
    ds.Occupation = ["teacher", "Doe"]  # cleaning changes only the second value
    status, reason, data = run(ds)
    assert status == "written", reason
    assert "Occupation" not in pydicom.dcmread(io.BytesIO(data))
    assert b"teacher" not in data


def test_other_clean_descriptors_text_is_not_touched() -> None:
    ds = base_dataset()
    ds.ImageComments = TEXTS["AdditionalPatientHistory"]
    status, reason, data = run(ds)
    assert status == "written", reason
    assert pydicom.dcmread(io.BytesIO(data)).ImageComments == ds.ImageComments
