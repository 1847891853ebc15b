"""Synthetic originals and de-identified outputs for the verifier tests (fake PHI only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

# Every identifying value planted below is invented.
NAME = "Doeling^Janette^Q"
NAME_SPACED = "Doeling Janette"
MRN = "MRN-48213-X"
ALT_ID = "ALT-99812-Z"
ACCESSION = "ACC-77123-K"
INSTITUTION = "Northfield General Hospital"
ADDRESS = "Müllerstraße 12, Kleinstadt"
PHONE = "555-0199-2243"
STATION = "CTSTATION-N7"
SERIAL = "SN-0042-XYZ"
BIRTH = "19710314"
STUDY_DATE = "20230105"
PRIVATE_TEXT = "Harrowgate Clinic Ward Nine"
STUDY_UID = "1.2.826.0.1.3680043.9.7133.1001.20230105.1"
SERIES_UID = "1.2.826.0.1.3680043.9.7133.1001.20230105.2"
SOP_UID = "1.2.826.0.1.3680043.9.7133.1001.20230105.3"
FOR_UID = "1.2.826.0.1.3680043.9.7133.1001.20230105.4"
REF_UID = "1.2.826.0.1.3680043.9.7133.1001.20230105.5"
SHORT_STUDY_ID = "77"
STOP_WORD_HISTORY = "NONE"
CODE = "HELICAL"

#: Values the reports must never contain, in every spelling a leak could take.
SECRETS = [
    NAME,
    NAME_SPACED,
    "Doeling",
    "Janette",
    MRN,
    ALT_ID,
    ACCESSION,
    INSTITUTION,
    ADDRESS,
    PHONE,
    STATION,
    SERIAL,
    BIRTH,
    STUDY_DATE,
    PRIVATE_TEXT,
    STUDY_UID,
    SERIES_UID,
    SOP_UID,
    FOR_UID,
    REF_UID,
]

NEW = "1.2.826.0.1.3680043.9.7133.2002.9999."


def _base(
    *,
    name: str,
    pid: str,
    uids: tuple[str, str, str, str, str],
    date: str,
) -> Dataset:
    study, series, sop, frame, ref = uids
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = frame
    ds.PatientName = name
    ds.PatientID = pid
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.Modality = "CT"
    ds.StudyDescription = "CT CHEST ROUTINE"
    ds.ScanOptions = CODE
    ref_item = Dataset()
    ref_item.ReferencedSOPClassUID = CTImageStorage
    ref_item.ReferencedSOPInstanceUID = ref
    ds.ReferencedStudySequence = Sequence([ref_item])
    ds.Rows, ds.Columns = 4, 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(16, dtype="<u2") * 100).tobytes()
    return ds


def original() -> Dataset:
    """A fully identified CT header with a value of every kind the verifier learns."""
    ds = _base(
        name=NAME, pid=MRN, uids=(STUDY_UID, SERIES_UID, SOP_UID, FOR_UID, REF_UID), date=STUDY_DATE
    )
    ds.OtherPatientIDs = [ALT_ID]
    ds.AccessionNumber = ACCESSION
    ds.StudyID = SHORT_STUDY_ID
    ds.PatientBirthDate = BIRTH
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = ADDRESS
    ds.PatientTelephoneNumbers = PHONE
    ds.StationName = STATION
    ds.DeviceSerialNumber = SERIAL
    ds.AdditionalPatientHistory = STOP_WORD_HISTORY
    block = ds.private_block(0x0011, "ACME FAKE VENDOR", create=True)
    block.add_new(0x10, "LO", PRIVATE_TEXT)
    block.add_new(0x11, "LO", CODE)
    return ds


def clean_output() -> Dataset:
    """What a correct de-identification of :func:`original` could look like."""
    uids = tuple(f"{NEW}{i}" for i in range(1, 6))
    ds = _base(name="SUBJECT^0001", pid="SUBJ-0001", uids=uids, date="20220901")  # type: ignore[arg-type]
    ds.PatientIdentityRemoved = "YES"
    return ds


def save(ds: Dataset, path: Path, *, transfer_syntax: str | None = None) -> Path:
    """Write a dataset as a DICOM file (explicit VR little endian unless told)."""
    if transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    path.parent.mkdir(parents=True, exist_ok=True)
    if ds.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID:
        # pydicom rewrites the meta from the dataset; keep a deliberately planted meta as is.
        if getattr(ds, "preamble", None) is None:
            ds.preamble = b"\x00" * 128
        ds.save_as(path, enforce_file_format=False)
        return path
    ds.save_as(path, enforce_file_format=True)
    return path
