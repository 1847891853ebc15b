"""output_references keeps the reference rows per row structure: values still per file.

Two outputs with the same structure (one Shape) and other referenced UIDs: the second
read takes the first's rows from the Shape's memo and must give its own UIDs, the same as
a read with no memo and as pydicom's.
"""

from __future__ import annotations

import io

import pydicom
from medveil.run.outputs import references
from medveil.run.refs import output_references
from medveil.verify import elements
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.10.999"


def _file(k: int) -> bytes:
    """A marked output of slice k: its own SOP UID, a nested reference, a frame UID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = f"{ROOT}.3.{k}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = f"{ROOT}.4.{k}.{k}"
    ds.ReferencedImageSequence = Sequence([ref])
    ds.FrameOfReferenceUID = f"{ROOT}.5.{k}"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_second_file_of_a_structure_reads_its_own_values() -> None:
    elements._SHAPES.clear()
    first, second = _file(1), _file(22)
    a = output_references([first])
    b = output_references([second])  # the Shape's memo, made for the first
    assert a == references([first])
    assert b == references([second])
    assert f"{ROOT}.4.22.22" in b[0] and f"{ROOT}.4.1.1" not in b[0]
    assert b[1] == f"{ROOT}.5.22"
    elements._SHAPES.clear()
    assert output_references([second]) == b  # no memo: the same answer
