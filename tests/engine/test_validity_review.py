"""Released files stay valid instances: no new dciodvfy errors (review round 2, F4-F6).

D on GraphicAnnotationSequence (1C) and WaveformAnnotationSequence (Type 3) removes the
sequence, since dummy items break their items' rules; the safety net cleans segment labels
instead of emptying them, and a Type 1 label cleaned to nothing gets the dummy.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile

import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.decide import dummy_count
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy
from medveil.policy.standard import Option, safety_net_clean
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .conftest import SECRET, base_dataset, both_roads, part10, quiet

DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")


def item(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def run(ds: Dataset, policy: Policy | None = None) -> bytes:
    """The released file of the whole pipeline (post-check included)."""
    with quiet():
        result = clean_instance(Deidentifier(policy or Policy(), SECRET), bytearray(part10(ds)))
    assert result.status == "written", result.reason
    return b"".join(bytes(p) for p in result.parts)


def errors(data: bytes) -> set[str]:
    """dciodvfy's Error lines, values blanked so input and output compare by kind."""
    assert DCIODVFY is not None
    with tempfile.NamedTemporaryFile(suffix=".dcm") as f:
        f.write(data)
        f.flush()
        err = subprocess.run([DCIODVFY, f.name], capture_output=True, text=True).stderr
    out = set()
    for line in err.splitlines():
        if line.startswith("Error"):
            line = re.sub(r"value <[^>]*> for", "value <> for", line)
            out.add(re.sub(r"\[\d+\] = <[^>]*>", "", line))
    return out


def gsps() -> Dataset:
    ds = base_dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"
    ds.Modality = "PR"
    ds.ContentLabel = "GSPS"
    ds.ContentDescription = "Annotations"
    text = item(
        UnformattedTextValue="lesion 12 mm",
        AnchorPointAnnotationUnits="PIXEL",
        AnchorPoint=[10.0, 10.0],
        AnchorPointVisibility="N",
    )
    graphic = item(
        GraphicAnnotationUnits="PIXEL",
        GraphicDimensions=2,
        NumberOfGraphicPoints=2,
        GraphicData=[1.0, 1.0, 5.0, 5.0],
        GraphicType="POLYLINE",
        GraphicFilled="N",
    )
    layer = item(GraphicLayer="L1", TextObjectSequence=Sequence([text]))
    layer.GraphicObjectSequence = Sequence([graphic])
    ds.GraphicAnnotationSequence = Sequence([layer])
    ds.GraphicLayerSequence = Sequence([item(GraphicLayer="L1", GraphicLayerOrder=1)])
    return ds


def ecg() -> Dataset:
    ds = base_dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    ds.Modality = "ECG"
    note = item(UnformattedTextValue="Sinus rhythm", ReferencedWaveformChannels=[1, 1])
    ds.WaveformAnnotationSequence = Sequence([note])
    return ds


def seg(label: str = "Liver") -> Dataset:
    ds = base_dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.Modality = "SEG"
    ds.ContentLabel = "SEGMENTATION"
    segment = item(
        SegmentNumber=1,
        SegmentLabel=label,
        SegmentDescription=label,
        SegmentAlgorithmType="AUTOMATIC",
        SegmentAlgorithmName="TotalSegmentator",
    )
    ds.SegmentSequence = Sequence([segment])
    return ds


def rtplan(label: str) -> Dataset:
    ds = base_dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"
    ds.Modality = "RTPLAN"
    ds.OperatorsName = "Zyxbarr^Tomq"
    ds.RTPlanLabel = label
    ds.RTPlanGeometry = "PATIENT"
    return ds


@pytest.mark.parametrize(
    ("make", "keyword"),
    [(gsps, "GraphicAnnotationSequence"), (ecg, "WaveformAnnotationSequence")],
)
def test_d_on_an_optional_sequence_removes_it(make: object, keyword: str) -> None:
    assert callable(make)
    got = pydicom.dcmread(io.BytesIO(both_roads(make())))
    assert keyword not in got
    released = run(make())
    assert b"lesion" not in released and b"Sinus" not in released


def test_clean_graphics_keeps_the_annotations_cleaned() -> None:
    policy = Policy(options=(*Policy().options, Option.CLEAN_GRAPHICS))
    got = pydicom.dcmread(io.BytesIO(run(gsps(), policy)))
    layer = got.GraphicAnnotationSequence[0]
    assert layer.GraphicLayer == "L1"
    assert layer.TextObjectSequence[0].UnformattedTextValue == "lesion 12 mm"


def test_segment_labels_are_cleaned_not_emptied() -> None:
    got = pydicom.dcmread(io.BytesIO(run(seg())))
    segment = got.SegmentSequence[0]
    assert segment.SegmentLabel == "Liver"
    assert segment.SegmentDescription == "Liver"


def test_a_segment_label_naming_the_patient_gets_the_dummy() -> None:
    data = run(seg("Doe John"))
    assert pydicom.dcmread(io.BytesIO(data)).SegmentSequence[0].SegmentLabel == "ANONYMIZED"
    assert b"Doe" not in data and b"John" not in data


def test_without_clean_descriptors_a_segment_label_is_a_dummy() -> None:
    policy = Policy(options=tuple(o for o in Policy().options if o != Option.CLEAN_DESCRIPTORS))
    data = run(seg(), policy)
    assert pydicom.dcmread(io.BytesIO(data)).SegmentSequence[0].SegmentLabel == "ANONYMIZED"


def test_type1_label_cleaned_to_nothing_gets_the_dummy() -> None:
    data = run(rtplan("Zyxbarr"))  # the operator's name, and nothing else
    assert pydicom.dcmread(io.BytesIO(data)).RTPlanLabel == "ANONYMIZED"
    assert b"zyxbarr" not in data.lower()


def test_type1_label_with_other_words_keeps_them() -> None:
    data = run(rtplan("Zyxbarr prostate"))
    assert pydicom.dcmread(io.BytesIO(data)).RTPlanLabel == "prostate"


def test_clean_list_rows_are_known_free_text_keywords() -> None:
    for keyword, entry in safety_net_clean().items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        assert dictionary_VR(tag) in {"LO", "SH", "ST", "LT", "UT", "UC"}, keyword
        assert entry.action in ("C", "D") and entry.reason


@needs_dciodvfy
@pytest.mark.parametrize(
    "make",
    [gsps, ecg, seg, lambda: seg("Doe John"), lambda: rtplan("Zyxbarr")],
    ids=["gsps", "ecg", "seg", "seg-name", "rtplan-name"],
)
def test_released_file_gains_no_dciodvfy_error(make: object) -> None:
    assert callable(make)
    before = errors(part10(make()))
    after = errors(run(make()))
    assert sorted(after - before) == []


def test_hierarchic_designator_ids_get_dummies_not_empty() -> None:
    ds = base_dataset()
    issuer = item(LocalNamespaceEntityID="HOSPX", UniversalEntityID="1.2.3.4.5")
    issuer.UniversalEntityIDType = "ISO"
    ds.IssuerOfPatientIDQualifiersSequence = Sequence([issuer])
    got = pydicom.dcmread(io.BytesIO(both_roads(ds))).IssuerOfPatientIDQualifiersSequence[0]
    assert got.LocalNamespaceEntityID == "ANONYMIZED"
    assert got.UniversalEntityID == "ANONYMIZED"
    assert got.UniversalEntityIDType == "ISO"


def sr_with_scoord() -> Dataset:
    ds = base_dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    region = item(RelationshipType="CONTAINS", ValueType="SCOORD", GraphicType="POLYLINE")
    region.GraphicData = [1.0, 1.0, 5.0, 5.0]
    region.PixelSpacing = ["0.5", "0.5"]  # a DS of VM 2 inside a dummy item
    ds.ContentSequence = Sequence([region])
    return ds


def test_dummy_items_keep_enumerated_shapes_and_the_values_vm_needs() -> None:
    got = pydicom.dcmread(io.BytesIO(both_roads(sr_with_scoord())))
    region = got.ContentSequence[0]
    assert region.ValueType == "SCOORD"
    assert region.GraphicType == "POLYLINE"
    assert list(region.PixelSpacing) == [0, 0]


def test_a_graphic_type_that_is_not_enumerated_is_a_dummy() -> None:
    ds = sr_with_scoord()
    ds.ContentSequence[0].GraphicType = "DOE"
    got = pydicom.dcmread(io.BytesIO(both_roads(ds)))
    assert got.ContentSequence[0].GraphicType == "ANONYMIZED"


def test_dummy_count_reads_the_dictionary_vm() -> None:
    counts = {k: dummy_count(tag_for_keyword(k) or 0) for k in COUNTS}
    assert counts == COUNTS


COUNTS = {
    "ImagePositionPatient": 3,
    "PixelSpacing": 2,
    "ReferencedWaveformChannels": 2,
    "GraphicData": 2,
    "PatientName": 1,
    "OtherPatientIDs": 1,
}
