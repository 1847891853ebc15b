"""What the vault records of one instance: originals read before cleaning, new keys after.

:func:`read_originals` runs on the dataset before the engine touches it and
:func:`identity_of` on the cleaned dataset, so the vault holds exactly the values the
engine replaced and exactly the pseudonym and UIDs it wrote.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

ORIGINAL_KEYWORDS = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "birth_date": "PatientBirthDate",
    "accession_number": "AccessionNumber",
    "original_study_uid": "StudyInstanceUID",
    "original_series_uid": "SeriesInstanceUID",
}
# output_relpath's folder for instances without a PatientID: not a pseudonym.
NO_PATIENT = "unknown-patient"


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip("\x00 ")


def read_originals(ds: Dataset) -> dict[str, str]:
    """The identifying values the vault keeps, read before de-identification."""
    return {name: _text(ds, kw) for name, kw in ORIGINAL_KEYWORDS.items()}


def identity_of(
    originals: dict[str, str], cleaned: Dataset, patient_folder: str, date_offset: int
) -> dict[str, object]:
    """The vault record of one instance (a plain dict, cheap to send between processes).

    ``patient_folder`` is the first component of the output path, i.e. the pseudonym a
    researcher sees; instances without a PatientID get no patient record.
    """
    return {
        **originals,
        "pseudonym": "" if patient_folder == NO_PATIENT else patient_folder,
        "date_offset": int(date_offset),
        "study_uid": _text(cleaned, "StudyInstanceUID"),
        "series_uid": _text(cleaned, "SeriesInstanceUID"),
    }
