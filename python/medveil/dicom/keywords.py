"""The one home of the identity keyword lists every layer shares.

The engine builds its free-text cleaning terms from them, the post-check its search
terms, text detection the words it looks for in pixels, and the HIPAA view its report.
"""

from __future__ import annotations

#: Person names: every component of one identifies on its own.
NAME_KEYWORDS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "OperatorsName",
)
#: Identifiers matched as a whole (a token, or adjacent tokens run together).
ID_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "MedicalRecordLocator",
    "PatientTelephoneNumbers",
    "StudyID",
)
#: Dates (DA) a device may print: each is expanded to the formats devices use.
DATE_KEYWORDS = (
    "PatientBirthDate",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
)
#: Free-text values matched word by word in any order.
PHRASE_KEYWORDS = (
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "PatientAddress",
)
#: Identifiers and contact details Clean Descriptors removes from kept free text.
CLEAN_ID_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "StudyID",
    "MedicalRecordLocator",
    "PatientAddress",
    "PatientTelephoneNumbers",
)
#: Places and contacts Clean Descriptors removes from kept free text as whole phrases.
CLEAN_PHRASE_KEYWORDS = (
    "PatientAddress",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianAddress",
)
#: Every keyword whose values become cleaning terms (besides every PN value in the file).
TERM_KEYWORDS = (
    *NAME_KEYWORDS,
    *CLEAN_ID_KEYWORDS,
    "PatientBirthDate",
    *(k for k in CLEAN_PHRASE_KEYWORDS if k not in CLEAN_ID_KEYWORDS),
    "ReferringPhysicianTelephoneNumbers",
)
#: The patient's own identity: the post-check refuses an output that still holds any.
IDENTITY_KEYWORDS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
)
