"""A small synthetic archive with planted fake PHI, for `medveil deid --demo`.

Generated on the fly with pydicom (nothing real, nothing downloaded): two patients, a CT
series, an MR series, a multi-frame ultrasound with text burned into its top rows (and a
pixel rule for that device), plus one non-DICOM file that the run skips.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

if TYPE_CHECKING:
    from medveil.policy.schema import Policy

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
US_MULTI = "1.2.840.10008.5.1.4.1.1.3.1"
DEMO_ROOT = "1.2.826.0.1.3680043.10.1311."


def new_instance(sop_class: str, sop_instance: str) -> Dataset:
    """An empty dataset of one SOP instance with file meta (Explicit VR Little Endian) to match."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    return ds


def set_pixels(
    ds: Dataset, pixels: np.ndarray, samples: int = 1, bits_stored: int | None = None
) -> None:
    """Attach pixels (frames, rows, cols[, 3]) and the pixel module attributes describing them.

    bits_stored defaults to 12 for 16-bit pixels and 8 otherwise.
    """
    if bits_stored is None:
        bits_stored = 12 if pixels.dtype.itemsize == 2 else 8
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples == 3:
        ds.PlanarConfiguration = 0
    if pixels.ndim == (4 if samples == 3 else 3):
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if samples == 3 else pixels.shape[-2:]
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = pixels.tobytes()


def _base(patient: dict[str, str], sop_class: str, study: str, series: str, n: int) -> Dataset:
    ds = new_instance(sop_class, f"{series}.{n}")
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientName = patient["name"]
    ds.PatientID = patient["id"]
    ds.PatientBirthDate = patient["birth"]
    ds.PatientSex = patient["sex"]
    ds.PatientAge = patient["age"]
    ds.PatientAddress = patient["address"]
    ds.AccessionNumber = patient["acc"]
    ds.InstitutionName = "Demo General Hospital"
    ds.ReferringPhysicianName = "Strange^Stephen"
    ds.StudyDate = patient["date"]
    ds.SeriesDate = patient["date"]
    ds.StudyTime = "101500"
    ds.StudyDescription = f"Follow-up for {patient['name'].replace('^', ' ')} MRN {patient['id']}"
    ds.InstanceNumber = n
    ds.SeriesNumber = 1
    block = ds.private_block(0x0019, "DEMO VENDOR", create=True)
    block.add_new(0x01, "LO", patient["name"])
    return ds


def write_demo_archive(folder: str | Path) -> list[Path]:
    """Write the demo archive into folder and return the files written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    patients = [
        {
            "name": "Fakename^Alice^Q",
            "id": "DEMO-10001",
            "birth": "19580704",
            "sex": "F",
            "age": "066Y",
            "address": "1 Imaginary Road, Nowhere",
            "acc": "A0001",
            "date": "20240110",
        },
        {
            "name": "Placeholder^Bob",
            "id": "DEMO-10002",
            "birth": "19320229",
            "sex": "M",
            "age": "092Y",
            "address": "2 Fictional Street, Elsewhere",
            "acc": "A0002",
            "date": "20240212",
        },
    ]
    written = []
    for p, patient in enumerate(patients):
        study = f"{DEMO_ROOT}{p + 1}"
        for kind, sop in (("ct", CT), ("mr", MR)):
            series = f"{study}.{1 if kind == 'ct' else 2}"
            for n in range(1, 4):
                ds = _base(patient, sop, study, series, n)
                ds.Modality = kind.upper()
                ds.Manufacturer = "MEDVEIL DEMO"
                ds.SliceThickness = "2.5" if kind == "ct" else "5"
                ds.BodyPartExamined = "CHEST" if kind == "ct" else "HEAD"
                pixels = rng.integers(0, 4096, size=(64, 64)).astype(
                    np.int16 if kind == "ct" else np.uint16
                )
                set_pixels(ds, pixels)
                path = out / f"patient{p + 1}" / kind / f"img{n}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                written.append(path)
        # Ultrasound with the patient's name "burned" into the top rows of every frame.
        ds = _base(patient, US_MULTI, study, f"{study}.3", 1)
        ds.Modality = "US"
        ds.Manufacturer = "MEDVEIL DEMO"
        ds.ManufacturerModelName = "DemoSound 1"
        ds.BurnedInAnnotation = "YES"
        frames = rng.integers(0, 200, size=(4, 48, 64, 3), dtype=np.uint8)
        frames[:, :8, :40, :] = 255  # the "text" band the demo pixel rule masks
        ds.FrameTime = "33.3"
        ds.FrameIncrementPointer = 0x00181063
        set_pixels(ds, frames, samples=3)
        path = out / f"patient{p + 1}" / "us" / "cine.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    note = out / "README.txt"
    note.write_text("Synthetic demo archive generated by medveil; all names are fake.\n")
    written.append(note)
    return written


def write_copies(folder: str | Path, template: str | Path, n: int) -> list[Path]:
    """Write n copies of a DICOM file into folder, each its own instance; return their paths.

    Copy i gets SOP Instance UID <series>.9<i> (no demo instance uses it) and Instance
    Number i + 1, so each copy is a distinct instance with its own de-identified output.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ds = dcmread(template)
    written = []
    for i in range(n):
        uid = UID(f"{ds.SeriesInstanceUID}.9{i}")
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = i + 1
        path = out / f"copy{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def demo_rule_file() -> Path:
    """The pixel rule file for the demo's ultrasound device."""
    return Path(__file__).parent.parent / "data" / "demo_pixel_rules.toml"


def with_demo_rules(policy: Policy) -> Policy:
    """The policy plus the demo ultrasound's pixel rule (what `medveil deid --demo` runs)."""
    return dataclasses.replace(
        policy,
        pixel_rule_files=(*policy.pixel_rule_files, str(demo_rule_file())),
    )


# Keep generate_uid importable for callers building bigger demo sets.
__all__ = [
    "demo_rule_file",
    "generate_uid",
    "new_instance",
    "set_pixels",
    "with_demo_rules",
    "write_copies",
    "write_demo_archive",
]
