"""Dummy items (Content Sequence, action D) keep the values a binary element must hold.

An SR's SCOORD item holds Graphic Data (0070,0022), FL with VM 2-n: a dummy of one value
made the released SR invalid (dciodvfy: "Bad attribute Value Multiplicity"), on every
Comprehensive SR of tests/corpus/modalities.py.
"""

from __future__ import annotations

import copy
import io

import pydicom
from medveil import Policy
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECRET = bytes(range(32))
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _sr() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = COMPREHENSIVE_SR, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "ABERNATHY^LUCIUS", "MRN5524324", "SR"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("126000", "DCM", "Imaging Measurement Report")])
    coord = Dataset()
    coord.RelationshipType, coord.ValueType = "CONTAINS", "SCOORD"
    coord.ConceptNameCodeSequence = Sequence([_code("111030", "DCM", "Image Region")])
    coord.GraphicType = "POLYLINE"
    coord.GraphicData = [10.0, 10.0, 30.0, 22.0, 40.0, 5.0]
    ds.ContentSequence = Sequence([coord])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _graphic_data(ds: Dataset) -> list[float]:
    value = ds.ContentSequence[0].GraphicData
    return list(value) if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]


def test_raw_road_keeps_graphic_data_vm() -> None:
    buf = io.BytesIO()
    _sr().save_as(buf, enforce_file_format=True)
    result = clean_instance(Deidentifier(Policy.default(), SECRET), buf.getvalue(), "sr.dcm")
    assert result.status == "written", result.reason
    out = pydicom.dcmread(io.BytesIO(b"".join(result.parts)))
    assert _graphic_data(out) == [0.0, 0.0]  # the least VM 2-n allows, every value a dummy


def test_dataset_road_keeps_graphic_data_vm() -> None:
    ds = copy.deepcopy(_sr())
    Deidentifier(Policy.default(), SECRET).apply(ds)
    assert _graphic_data(ds) == [0.0, 0.0]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert _graphic_data(pydicom.dcmread(io.BytesIO(buf.getvalue()))) == [0.0, 0.0]
