"""HIPAA Safe Harbor (45 CFR 164.514(b)(2)): the 18 identifier categories and the rules
of a policy that handle each, so a privacy officer can see what a policy leaves open."""

from __future__ import annotations

from dataclasses import dataclass

from medveil.dicom.keywords import NAME_KEYWORDS
from medveil.policy.schema import CompiledPolicy
from medveil.policy.standard import Option

# Category -> keywords whose handling decides it; "open_if" names the options that retain it.
CATEGORIES: tuple[tuple[str, tuple[str, ...], tuple[Option, ...]], ...] = (
    (
        "A. Names",
        (*NAME_KEYWORDS, "ResponsiblePerson"),
        (),
    ),
    (
        "B. Geographic subdivisions smaller than a state",
        ("PatientAddress", "InstitutionAddress", "RegionOfResidence", "CountryOfResidence"),
        (Option.RETAIN_INSTITUTION_IDENTITY,),
    ),
    (
        "C. Dates (except year) and ages over 89",
        (
            "PatientBirthDate",
            "StudyDate",
            "SeriesDate",
            "AcquisitionDate",
            "ContentDate",
            "PatientAge",
        ),
        (Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES),
    ),
    ("D. Telephone numbers", ("PatientTelephoneNumbers", "InstitutionalDepartmentName"), ()),
    ("E. Fax numbers", ("PatientTelephoneNumbers",), ()),
    ("F. E-mail addresses", ("PatientTelecomInformation",), ()),
    ("G. Social security numbers", ("PatientID", "OtherPatientIDsSequence"), ()),
    (
        "H. Medical record numbers",
        ("PatientID", "OtherPatientIDsSequence", "MedicalRecordLocator"),
        (),
    ),
    ("I. Health plan beneficiary numbers", ("PatientInsurancePlanCodeSequence",), ()),
    ("J. Account numbers", ("AccessionNumber", "AdmissionID"), ()),
    ("K. Certificate/license numbers", ("PatientID",), ()),
    ("L. Vehicle identifiers and serial numbers", ("PatientID",), ()),
    (
        "M. Device identifiers and serial numbers",
        ("DeviceSerialNumber", "DeviceUID", "StationName"),
        (Option.RETAIN_DEVICE_IDENTITY,),
    ),
    ("N. Web URLs", ("RetrieveURL", "RetrieveURI"), ()),
    ("O. IP addresses", ("SourcePresentationAddress",), ()),
    ("P. Biometric identifiers", ("PixelData",), ()),
    ("Q. Full-face photographs and comparable images", ("PixelData",), ()),
    (
        "R. Any other unique identifying number, characteristic or code",
        ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyID"),
        (Option.RETAIN_UIDS,),
    ),
)


@dataclass(frozen=True)
class CategoryStatus:
    """How a policy handles one Safe Harbor category."""

    category: str
    rules: tuple[str, ...]
    open_because: tuple[str, ...]


def assess(compiled: CompiledPolicy) -> list[CategoryStatus]:
    """List each Safe Harbor category, the rules that handle it, and why it may be open."""
    from pydicom.datadict import tag_for_keyword

    out = []
    for name, keywords, retaining in CATEGORIES:
        rules = []
        for kw in keywords:
            tag = tag_for_keyword(kw)
            rule = compiled.rule_for(tag) if tag is not None else None
            if rule is not None:
                rules.append(f"{kw}: {rule.action} ({rule.decided_by})")
            elif tag is not None and compiled.keeps_unknown(tag):
                rules.append(f"{kw}: K (not in Table E.1-1)")
            elif tag is not None:
                rules.append(f"{kw}: X (no rule: removed in allow-list mode)")
        reasons = [o.name.lower() for o in retaining if compiled.policy.has(o)]
        if name.startswith("C.") and compiled.shift_dates:
            reasons = [
                "dates are shifted, not removed: Safe Harbor needs expert determination here"
            ]
        if name.startswith(("P.", "Q.")):
            if not compiled.policy.has(Option.CLEAN_PIXEL_DATA):
                reasons.append("pixel data is not cleaned (clean_pixel_data is off)")
            reasons.append("faces in CT/MR volumes can be reconstructed: defacing is not done")
        for r in rules:
            if r.split(": ")[1].startswith("K") and not name.startswith(("P.", "Q.")):
                reasons.append(f"{r.split(':')[0]} is kept")
        out.append(CategoryStatus(name, tuple(rules), tuple(dict.fromkeys(reasons))))
    return out
