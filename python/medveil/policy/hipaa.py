"""HIPAA Safe Harbor (45 CFR 164.514(b)(2)): the 18 identifier categories and the rules
of a policy that handle each, so a privacy officer can see what a policy leaves open.

A category is "handled" only when every place this view knows for it is removed, emptied
or replaced by a value not derived from the original. A pseudonym is a keyed hash of the
original value: a code derived from the identifier, which 164.514(c)(1) does not allow as
a re-identification code, so a pseudonymised element leaves its categories OPEN (a
pseudonymised Patient ID does not make licence numbers handled; a pseudonymised name is
not removed). Free text kept under Clean Descriptors counts only when the policy's
patterns remove sample values of the category. Faces and other biometrics (P, Q) count
only when the policy's [filter] keeps every class that can show them out of the release.
Notes list what stays true of a handled category (a caveat, not a gap this view can see).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from medveil.dicom.keywords import NAME_KEYWORDS
from medveil.policy.filters import filter_verdict
from medveil.policy.schema import (
    LOOKUP_ACTION,
    CompiledPolicy,
)
from medveil.policy.standard import Option

# Category -> keywords whose handling decides it; the options that retain it.
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
    ("K. Certificate/license numbers", ("PatientID", "OtherPatientIDsSequence"), ()),
    ("L. Vehicle identifiers and serial numbers", ("PatientID", "OtherPatientIDsSequence"), ()),
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

# Values of a category that can be written into free text (descriptions, comments): with
# Clean Descriptors on, a category is handled only if the policy's patterns remove them.
FREE_TEXT_SAMPLES: dict[str, tuple[str, ...]] = {
    "D.": ("(555) 867-5309",),
    "E.": ("+1 555 867 5309",),
    "F.": ("jane.doe@example.org",),
    "G.": ("078-05-1120",),
    "K.": ("D1234567", "LIC 48213377"),
    "L.": ("1HGCM82633A004352", "7ABC123"),
}

_VL = "1.2.840.10008.5.1.4.1.1.77.1"
# Instances whose pixels (or sound) can show a face or another biometric: each a header
# the policy's [filter] must exclude for P and Q to count as handled.
FACE_SAMPLES: tuple[tuple[str, dict[str, str]], ...] = (
    ("a VL photograph (external camera)", {"SOPClassUID": f"{_VL}.4", "Modality": "XC"}),
    ("a video photograph", {"SOPClassUID": f"{_VL}.4.1", "Modality": "XC"}),
    (
        "a camera photograph stored as secondary capture",
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7", "Modality": "XC"},
    ),
    ("an ophthalmic (retina) photograph", {"SOPClassUID": f"{_VL}.5.1", "Modality": "OP"}),
    (
        "a voice recording (audio waveform)",
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.9.4.1", "Modality": "AU"},
    ),
    (
        "a CT slice of the head",
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "Modality": "CT", "BodyPartExamined": "HEAD"},
    ),
    (
        "an MR slice of the brain",
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4", "Modality": "MR", "BodyPartExamined": "BRAIN"},
    ),
    (
        "an enhanced MR volume of the head and neck",
        {
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4.1",
            "Modality": "MR",
            "BodyPartExamined": "HEADNECK",
        },
    ),
    (
        "a CT slice that names no body part",
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "Modality": "CT"},
    ),
    (
        "an MR slice with an empty body part",
        {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4", "Modality": "MR", "BodyPartExamined": ""},
    ),
    (
        "a volume rendering of a head CT stored as secondary capture",
        {
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7",
            "Modality": "OT",
            "SeriesDescription": "VRT HEAD",
        },
    ),
)


@dataclass(frozen=True)
class CategoryStatus:
    """How a policy handles one Safe Harbor category."""

    category: str
    rules: tuple[str, ...]
    open_because: tuple[str, ...]
    notes: tuple[str, ...] = ()


def _sample(header: dict[str, str]) -> Dataset:
    """A header-only dataset of the given keyword values."""
    ds = Dataset()
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    return ds


def _patterns_remove(patterns: tuple[str, ...], value: str) -> bool:
    """Whether the policy's clean patterns remove every digit of value from a text."""
    text = f"seen {value} today"
    for pattern in patterns:
        try:
            text = re.sub(pattern, "", text, flags=re.IGNORECASE)
        except re.error:
            continue
    return not any(ch.isdigit() or ch == "@" for ch in text)


def _faces(compiled: CompiledPolicy) -> tuple[list[str], list[str], list[str]]:
    """P and Q: (rules that keep faces out, open reasons, notes)."""
    policy = compiled.policy
    labels = {r.name: r.label for r in policy.filters}
    rules: list[str] = []
    reasons: list[str] = []
    released: list[str] = []
    for what, header in FACE_SAMPLES:
        rule = filter_verdict(_sample(header), policy.filters)
        if rule is None:
            released.append(what)
        else:
            label = f" ({labels[rule]})" if labels.get(rule) else ""
            rules.append(f"{what}: excluded by {rule}{label}")
    if released:
        reasons.append(
            f"no [filter] rule keeps these out, and medveil does not deface: {'; '.join(released)}"
        )
    if not policy.has(Option.CLEAN_PIXEL_DATA):
        reasons.append("pixel data is not cleaned (clean_pixel_data is off)")
    notes = []
    if not reasons:
        notes = [
            "a head volume whose header names another body part, or a face photograph "
            "stored under another class and modality, is not recognised",
            "a volume the header says was defaced (DeidentificationMethod) is trusted",
        ]
    return rules, reasons, notes


def assess(compiled: CompiledPolicy) -> list[CategoryStatus]:
    """List each Safe Harbor category, the rules that handle it, and why it may be open."""
    policy = compiled.policy
    free_text_kept = policy.has(Option.CLEAN_DESCRIPTORS)
    out = []
    for name, keywords, retaining in CATEGORIES:
        letter = name[:2]
        rules: list[str] = []
        reasons = [o.name.lower() for o in retaining if policy.has(o)]
        notes: list[str] = []
        if letter in ("P.", "Q."):
            rules, reasons, notes = _faces(compiled)
            out.append(CategoryStatus(name, tuple(rules), tuple(reasons), tuple(notes)))
            continue
        for kw in keywords:
            tag = tag_for_keyword(kw)
            rule = compiled.rule_for(tag) if tag is not None else None
            if rule is not None:
                rules.append(f"{kw}: {rule.action} ({rule.decided_by})")
                action = rule.action
            elif tag is not None and compiled.keeps_unknown(tag):
                rules.append(f"{kw}: K (not in Table E.1-1)")
                action = "K"
            elif tag is not None:
                rules.append(f"{kw}: X (no rule: removed in allow-list mode)")
                action = "X"
            else:
                continue
            if action == "pseudonym":
                reasons.append(
                    f"{kw} is pseudonymised, not removed: a keyed hash of the original "
                    "is a code derived from it (164.514(c)(1))"
                )
            elif action.startswith("K"):
                reasons.append(f"{kw} is kept")
            elif action == LOOKUP_ACTION:
                notes.append(
                    f"{kw} is replaced from the site's [lookup] table: its values must not "
                    "be derived from the identifier, and the table stays with the site"
                )
            elif action == "U":
                notes.append(
                    f"{kw} is replaced by a UID derived from it under the project secret: "
                    "keep the secret from recipients (164.514(c)(2))"
                )
        if letter == "C." and compiled.shift_dates:
            reasons.insert(
                0, "dates are shifted, not removed: Safe Harbor needs expert determination here"
            )
        if letter == "C." and free_text_kept and compiled.full_dates:
            reasons.append("descriptions are kept with their full dates (retained dates)")
        samples = FREE_TEXT_SAMPLES.get(letter, ())
        if free_text_kept and samples:
            missed = [s for s in samples if not _patterns_remove(policy.clean_patterns, s)]
            if missed:
                reasons.append(
                    "descriptions are kept (clean_descriptors) and no [clean_descriptors] "
                    f"pattern removes a value such as {missed[0]!r} from them"
                )
            else:
                rules.append("free text: kept, cleaned by [clean_descriptors] patterns")
        elif samples:
            rules.append("free text: descriptions and comments removed (Basic Profile)")
        out.append(
            CategoryStatus(
                name, tuple(rules), tuple(dict.fromkeys(reasons)), tuple(dict.fromkeys(notes))
            )
        )
    return out
