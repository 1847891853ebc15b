"""Vendors' private SOP classes (Siemens CSA Non-Image, Philips MR Series Data).

Every Siemens and Philips MR export holds such objects. The policy keeps SOP Class UIDs as
they are (safety_net_keep.csv: "a vendor's private class must stay readable"), and the
private groups go; but the post-check learns a SOP Class UID that is not a DICOM constant
as an identifying UID, finds it again in (0002,0002) and (0008,0016), and quarantines the
file ("an original identifying value is still in the output"). A class UID names a kind
of object, never a patient: ``verify.values.classify`` does not learn the class and
transfer syntax UID elements. Names and IDs are still hunted in every byte.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from medveil import Policy
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.adversarial.generator import save
from tests.corpus import modalities

SECRET = bytes(range(32))


def _instance(sop_class: str) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "ABERNATHY^LUCIUS", "MRN5524324", "MR"
    block = ds.private_block(0x0029, "SIEMENS CSA NON-IMAGE", create=True)
    block.add_new(0x10, "OB", modalities.csa_header([("DataPointColumns", "IS", ["1024"])]))
    return save(ds)


@pytest.mark.parametrize(
    "sop_class", [modalities.SIEMENS_CSA_NON_IMAGE, modalities.PHILIPS_SERIES_DATA]
)
def test_private_sop_class_is_released_with_its_class(sop_class: str) -> None:
    result = clean_instance(Deidentifier(Policy.default(), SECRET), _instance(sop_class), "x")
    assert result.status == "written", result.reason
    out = pydicom.dcmread(io.BytesIO(b"".join(result.parts)))
    assert out.SOPClassUID == sop_class == out.file_meta.MediaStorageSOPClassUID
    assert not [t for t in out.keys() if t.group & 1]  # the private groups went
