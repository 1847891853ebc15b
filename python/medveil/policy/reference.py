"""The policy reference (docs/policy.md), generated from the policy schema.

The keys come from the schema's own validator (each section's "known:" list), defaults
from :class:`~medveil.policy.schema.Policy`, coded choices from the Enums of
:mod:`medveil.policy.choices`, options from PS3.15 Table E.1-1 as shipped, actions from
``POLICY_ACTIONS``. The prose below says, for a privacy officer, what each setting keeps
and what risk remains. A key, choice, option or action the schema knows but this module
does not describe stops the generation, so the document cannot silently fall behind.

Regenerate with ``python -m medveil.policy.reference --write docs/policy.md``.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

from medveil.errors import PolicyError
from medveil.policy import choices as choices_module
from medveil.policy.presets import FILTER_KINDS, FILTER_OPS, PRESETS, load_policy
from medveil.policy.presets.toml_write import toml_value
from medveil.policy.schema import LOOKUP_ON_MISSING, POLICY_ACTIONS, Policy
from medveil.policy.standard import (
    ATTRIBUTION,
    COMBINED_ACTIONS,
    SIMPLE_ACTIONS,
    Option,
    option_action,
    table_rows,
)


class ReferenceDrift(RuntimeError):
    """The schema knows something this reference does not describe."""


@dataclass(frozen=True)
class KeyDoc:
    """What one policy key does, for a privacy officer."""

    field: str | None  # the Policy attribute holding its value (None: no single default)
    what: str
    keeps: str
    risk: str
    example: str
    checked: bool = True  # False when the example names a file that only a site has


SECTION_INTRO: dict[str, str] = {
    "profile": "Which PS3.15 options apply and what happens to elements no rule names.",
    "secret": "Where the project secret lives (the key of every pseudonym, UID and date shift).",
    "dates": "How far dates move when Retain Longitudinal Modified Dates is selected.",
    "pseudonyms": "The shape of keyed pseudonyms.",
    "clean_descriptors": "What Clean Descriptors removes from free text besides the file's "
    "own identifiers.",
    "pixels": "How burned-in text in the pixels is found and masked (Clean Pixel Data).",
    "elements": "Per-element overrides: an action for one attribute, a tag mask or a private "
    "element, taking precedence over the table.",
    "lookup": "Site-assigned values from a table (CTP's @lookup): each original value of an "
    "element is replaced by the value its row gives.",
    "filter": "Which instances are processed at all: conditions on header attributes.",
}

KEYS: dict[tuple[str, str], KeyDoc] = {
    ("profile", "options"): KeyDoc(
        "options",
        "The PS3.15 Annex E options applied on top of the Basic Profile (see Options below).",
        "Each option keeps (or cleans) the attributes of its column of Table E.1-1; no option "
        "means the Basic Profile alone.",
        "Every retain option keeps real information: dates or intervals, age, sex, size, "
        "device and institution names, UIDs. Combined with outside knowledge (a known scan "
        "date, a rare device) they can single a patient out.",
        'options = ["retain_patient_characteristics", "clean_descriptors"]',
    ),
    ("profile", "unknown_elements"): KeyDoc(
        "unknown_elements",
        "What happens to a standard element that no rule names.",
        "See the values below.",
        "With keep, a standard element outside Table E.1-1 that a site fills with "
        "identifying text is released unless the safety net (names, free text, UIDs, "
        "dates by VR) catches it; codes and numbers are not screened.",
        'unknown_elements = "remove"',
    ),
    ("profile", "combined_codes"): KeyDoc(
        "combined_codes",
        "How the table's combined codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) are resolved.",
        "See the values below.",
        "conservative may leave a dummy value (ANONYMIZED, 19000101) or an empty element "
        "where minimal removes it; neither keeps the original value.",
        'combined_codes = "minimal"',
    ),
    ("profile", "keep"): KeyDoc(
        "keep",
        'Keywords kept as they are in allow-list mode (unknown_elements = "remove"), in '
        "addition to medveil's structural elements (UIDs, pixel geometry, modality).",
        "The listed elements, verbatim.",
        "Nothing cleans a kept element: list only attributes that cannot hold identity.",
        'keep = ["SliceThickness", "ContrastBolusAgent"]',
    ),
    ("profile", "pseudonymize"): KeyDoc(
        "pseudonymized",
        "Keywords replaced by keyed pseudonyms (prefix + base32 of HMAC-SHA256 under the "
        "secret) instead of the table's action, so one patient's studies stay linked.",
        "Linkage: the same original gives the same pseudonym in every file and run with "
        "the same secret.",
        "Whoever holds the secret can confirm a guess (compute the pseudonym of a known ID). "
        "A code derived from an identifier is not a Safe Harbor re-identification code "
        "(45 CFR 164.514(c)); use [] for Safe Harbor.",
        'pseudonymize = ["PatientID", "PatientName"]',
    ),
    ("secret", "file"): KeyDoc(
        "secret_file",
        "Path of the 32-byte project secret (raw, or 64 hex characters); --secret-file wins.",
        "Nothing from the files; the secret is never written to the output or the records.",
        "The secret is the re-identification key of every pseudonym, UID and date shift: "
        "store it like a password, apart from the released data.",
        'file = "~/.config/medveil/site.key"',
    ),
    ("dates", "shift_days"): KeyDoc(
        "shift_days",
        "Range of the per-patient date shift: one keyed offset in [-N, N] days, never 0, "
        "for all of a patient's dates, when Retain Longitudinal Modified Dates is selected.",
        "Intervals between a patient's dates, the approximate season and year.",
        "The true date lies within N days of the shifted one; a small N narrows it, and a "
        "known event (a scan date told by the patient) reveals that patient's offset.",
        "shift_days = 730",
    ),
    ("pseudonyms", "prefix"): KeyDoc(
        "pseudonym_prefix",
        "Up to 8 characters (A-Z, 0-9, _ or -) put before every pseudonym.",
        "Nothing from the files.",
        "None: the prefix is the same for everyone.",
        'prefix = "STUDY7"',
    ),
    ("pseudonyms", "length"): KeyDoc(
        "pseudonym_length",
        "Base32 characters per pseudonym (16 to 52; 5 bits each).",
        "Nothing from the files.",
        "Shorter pseudonyms collide sooner: 16 characters (80 bits) is the floor for 10^9 "
        "patients; a collision seen in a run stops it.",
        "length = 24",
    ),
    ("clean_descriptors", "patterns"): KeyDoc(
        "clean_patterns",
        "Regular expressions removed from free text under Clean Descriptors, besides the "
        "file's own names, IDs, accession numbers and birth date.",
        "The rest of the text (findings, protocol names).",
        "Names of other people (relatives, staff), addresses and misspelt identifiers that "
        "no pattern matches stay in the text.",
        'patterns = ["\\\\bDr\\\\.? [A-Z][a-z]+"]',
    ),
    ("clean_descriptors", "replacement"): KeyDoc(
        "clean_replacement",
        "Text put where a match was removed.",
        "Nothing from the files.",
        "None.",
        'replacement = "[removed]"',
    ),
    ("pixels", "rules"): KeyDoc(
        "pixel_rule_files",
        "Extra device rule files (TOML) added to the shipped RSNA CTP pixel rules: "
        "rectangles masked on images of a given device and geometry.",
        "Every pixel outside the rules' rectangles.",
        "Text outside the rectangles (a device that moved its overlay) stays unless text "
        "detection is on; files of burned-in classes with no matching rule are quarantined.",
        'rules = ["site-devices.toml"]',
        checked=False,
    ),
    ("pixels", "allow_unmatched_burned_in"): KeyDoc(
        "allow_unmatched_burned_in",
        "Release a file whose BurnedInAnnotation says YES although no rule or detector "
        "found text to mask.",
        "Such files, unmasked.",
        "Burned-in names and dates on those images are released: leave false unless a "
        "reviewer checks every such image (medveil qa).",
        "allow_unmatched_burned_in = false",
    ),
    ("pixels", "pixel_text"): KeyDoc(
        "pixel_text",
        "How burned-in text is found.",
        "See the values below.",
        "Detection finds lines of text by local contrast: very faint or very large text, "
        "and text drawn over busy anatomy, can be missed (recall is measured in "
        "bench/README.md); rules only cover devices they know.",
        'pixel_text = "detect+rules"',
    ),
    ("pixels", "mask"): KeyDoc(
        "pixel_mask",
        "What text detection masks.",
        "See the values below.",
        "identifiers masks only lines OCR reads as the file's own identifiers (or cannot "
        "read): other people's names or a misread identifier stay visible.",
        'mask = "identifiers"',
    ),
}

# Prose for each coded choice: (what it keeps, what risk remains), full sentences.
CHOICES: dict[str, dict[str, tuple[str, str]]] = {
    "UnknownElements": {
        "keep": (
            "Keeps standard elements no rule names, as the standard's Basic Profile does, "
            "after the safety net; even tags the standard does not define are removed.",
            "Identifying values in codes or numbers outside Table E.1-1 stay.",
        ),
        "remove": (
            "Keeps only elements a rule keeps, medveil's structural elements and [profile] "
            "keep (allow-list mode).",
            "The lowest: research attributes not listed are lost; identity in listed ones "
            "goes as their rules say.",
        ),
    },
    "CombinedCodes": {
        "conservative": (
            "Keeps the output a valid instance of its IOD: a dummy or empty value where the "
            "attribute may be required.",
            "Dummies and empty elements show that a value existed.",
        ),
        "minimal": (
            "Keeps nothing: always the most removing choice (X, else Z, else D).",
            "The output may no longer be a valid instance of its IOD.",
        ),
    },
    "PixelText": {
        "rules": (
            "Masks the rectangles of the device rules that match the file.",
            "Text on devices no rule knows stays.",
        ),
        "detect": (
            "Masks the lines of text the detector finds, on every frame.",
            "Text the detector misses stays.",
        ),
        "detect+rules": (
            "Masks both the rules' rectangles and the detected lines.",
            "Text missed by the detector on a device no rule knows stays.",
        ),
        "auto": (
            "Masks detected lines and rule rectangles on the classes that usually carry "
            "burned-in text (ultrasound, secondary capture, ...), rule rectangles alone on "
            "the rest.",
            "Text on a CT/MR-like image from a device no rule knows stays.",
        ),
    },
    "PixelMask": {
        "all-text": (
            "Masks every detected line of text, with no OCR.",
            "Only what detection misses stays.",
        ),
        "identifiers": (
            "Masks the lines OCR reads as the file's own identifiers, or cannot read; "
            "measurements and labels stay visible.",
            "Names of other people, and identifiers OCR misreads beyond the match distance, stay.",
        ),
    },
}

OPTIONS: dict[Option, tuple[str, str]] = {
    Option.RETAIN_SAFE_PRIVATE: (
        "Private elements listed as safe in Table E.3.10-1 (by creator and element), with "
        "the value representation the table gives.",
        "Vendors may misuse a listed element; a value of another VR is removed.",
    ),
    Option.RETAIN_UIDS: (
        "Study, series, instance and other UIDs as they are.",
        "Original UIDs link the release back to the source PACS and to other releases.",
    ),
    Option.RETAIN_DEVICE_IDENTITY: (
        "Station names, device serial numbers, detector and plate IDs.",
        "A rare device, or a serial number, points to the site and narrows the patients.",
    ),
    Option.RETAIN_INSTITUTION_IDENTITY: (
        "Institution names, addresses and departments.",
        "Geography smaller than a state (HIPAA category B) and the site's identity.",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: (
        "Sex, age, size, weight, ethnic group, smoking and pregnancy status and the like.",
        "Rare combinations single patients out; ages over 89 are still capped at 090Y.",
    ),
    Option.RETAIN_LONGITUDINAL_FULL_DATES: (
        "Every date and time as it is.",
        "Real dates identify visits; not compatible with HIPAA Safe Harbor.",
    ),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "Dates moved by one keyed offset per patient ([dates] shift_days); times kept.",
        "Intervals and the approximate period survive (see shift_days).",
    ),
    Option.CLEAN_DESCRIPTORS: (
        "Descriptions and comments, cleaned of the file's own identifiers and patterns.",
        "Identifiers of other people, and identifiers no pattern matches (see "
        "[clean_descriptors]).",
    ),
    Option.CLEAN_STRUCTURED_CONTENT: (
        "Structured report content, with identifying items cleaned.",
        "Free text inside report items is cleaned like descriptors, with the same limits.",
    ),
    Option.CLEAN_GRAPHICS: (
        "Graphic annotations and overlays, cleaned of identifying text.",
        "Text drawn as graphics rather than stored as text.",
    ),
    Option.CLEAN_PIXEL_DATA: (
        "The pixels, with burned-in text masked and hidden overlay bits cleared ([pixels]).",
        "Text the rules and detector miss; faces reconstructed from CT/MR volumes (no defacing).",
    ),
}

ACTIONS: dict[str, str] = {
    "D": "replace with a dummy value of the same VR (ANONYMIZED, 19000101, 0)",
    "Z": "replace with an empty value",
    "X": "remove the element",
    "K": "keep the element (a sequence is kept and its items cleaned by their own rules)",
    "C": "clean: shift a date, clean free text of identifiers, keep a time, pseudonymise an "
    "AE title",
    "U": "replace UIDs with keyed 2.25 UIDs (well-known UIDs stay)",
    "X/Z": "remove, or empty where the attribute may be required (combined_codes)",
    "X/D": "remove, or a dummy where the attribute may be required",
    "Z/D": "empty, or a dummy",
    "X/Z/D": "remove, empty or dummy",
    "X/Z/U*": "remove or empty; UIDs replaced and sequences kept with their items cleaned",
    "year": "a DA/DT to its year (20210317 -> 20210101)",
    "year_month": "a DA/DT to its year and month (20210317 -> 20210301)",
    "age_band": "an age to the lower edge of its band, `width` years (default 5), `top` and "
    "above as one band (default 90)",
    "bin": "a number to the centre of its bin of `width`",
    "map": "text to a category through `table` (original -> category), else `default`",
    "value": "a fixed `value`",
    "noise": "Laplace noise (`epsilon`, `sensitivity`), clamped to [`lower`, `upper`], the "
    "same for the same patient and value",
    "pseudonym": "a keyed pseudonym, as [profile] pseudonymize",
}

ELEMENT_EXAMPLES = """\
[elements]
PatientWeight = { action = "bin", width = 5 }
"(0010,1010)" = { action = "age_band", width = 5 }
StudyDate = "year"
InstitutionName = { value = "RESEARCH SITE" }
"(60xx,4000)" = "X"
"GEMS_IDEN_01:(0009,xx10)" = "K"
"""


def _known(section: str | None) -> list[str]:
    """Ask the schema's validator which sections (or keys of a section) it knows."""
    text = "[__probe__]\n" if section is None else f"[{section}]\n__probe__ = 1\n"
    try:
        Policy.from_toml(text, source="probe")
    except PolicyError as exc:
        m = re.search(r"\(known: ([^)]*)\)", str(exc))
        if m:
            return [k.strip() for k in m.group(1).split(",")]
        raise ReferenceDrift(f"the schema's error no longer lists known keys: {exc}") from None
    return []  # the section takes any key ([elements])


def _choice_enum(section: str, key: str) -> type[enum.Enum] | None:
    """The Enum of choices.py whose docstring names ``[section] key``."""
    for _name, cls in inspect.getmembers(choices_module, inspect.isclass):
        if issubclass(cls, enum.Enum) and f"[{section}] {key}" in (cls.__doc__ or ""):
            return cls
    return None


def _default(field: str | None) -> str:
    if field is None:
        return "none"
    for f in fields(Policy):
        if f.name == field:
            value = getattr(Policy(), field)
            if isinstance(value, tuple) and value and isinstance(value[0], Option):
                return toml_value([o.name.lower() for o in value])
            if value is None:
                return "none"
            return toml_value(list(value) if isinstance(value, tuple) else value)
    raise ReferenceDrift(f"Policy has no field {field!r}")


def _option_rows(option: Option) -> list[tuple[str, str, str]]:
    """Attributes whose action this option sets, alone on the Basic Profile."""
    out = []
    for row in table_rows():
        action, decided = option_action(row, [option])
        if decided != "basic":
            out.append((row.tag_text, row.keyword or row.name, f"{row.basic} -> {action}"))
    return out


def _check_example(section: str, example: str) -> None:
    text = example if example.lstrip().startswith("[") else f"[{section}]\n{example}\n"
    try:
        Policy.from_toml(text, source=f"example of [{section}]")
    except PolicyError as exc:
        raise ReferenceDrift(f"the reference's example does not validate: {exc}") from None


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines


def _presets() -> list[str]:
    from medveil.policy.hipaa import assess

    out = ["## Presets", ""]
    out.append(
        "`--policy NAME` (and `medveil policy show NAME`) accepts these names wherever a "
        "policy file is accepted; a file of the same name in the working folder wins."
    )
    out.append("")
    rows: list[tuple[str, ...]] = []
    policies = {name: load_policy(name) for name in PRESETS}
    for name, policy in policies.items():
        rows.append(
            (
                f"`{name}`",
                PRESETS[name],
                ", ".join(o.name.lower() for o in policy.options) or "none",
                ", ".join(policy.pseudonymized) or "none",
                str(policy.unknown_elements),
            )
        )
    out += _table(("name", "what", "options", "pseudonymised", "unknown elements"), rows)
    out += [
        "",
        "HIPAA Safe Harbor categories left OPEN by each preset "
        "(`medveil profile --policy NAME --hipaa` gives the reasons):",
        "",
    ]
    status = {name: assess(p.compile()) for name, p in policies.items()}
    cats = [s.category for s in next(iter(status.values()))]
    matrix = [
        [cat] + ["OPEN" if status[n][i].open_because else "handled" for n in PRESETS]
        for i, cat in enumerate(cats)
    ]
    out += _table(["category", *PRESETS], matrix)
    out += [
        "",
        "medveil does not deface: safe-harbor handles P and Q by excluding the classes "
        "that can show a face or carry a voice (see its [filter] rules and the --hipaa "
        "notes); the other presets leave them open.",
        "",
    ]
    return out


def generate() -> str:
    """The full text of docs/policy.md."""
    sections = _known(None)
    missing_sections = [s for s in sections if s not in SECTION_INTRO]
    if missing_sections:
        raise ReferenceDrift(f"undocumented policy sections: {', '.join(missing_sections)}")
    out = [
        "# Policy reference",
        "",
        "<!-- Generated by `python -m medveil.policy.reference --write docs/policy.md` from the",
        "     policy schema; do not edit by hand (tests/policy_import/test_reference.py). -->",
        "",
        "A medveil policy is a TOML file. It starts from the DICOM PS3.15 Basic Application "
        "Confidentiality Profile (Table E.1-1, one action per attribute), adds the PS3.15 "
        "options it names, and applies per-element overrides. This page lists every key: "
        "what it does, what each choice keeps, and what risk remains, so that a privacy "
        "officer can sign a policy off.",
        "",
        "To check a policy before a run:",
        "",
        "- `medveil policy validate FILE`: exit 0, or 2 with `FILE:LINE: problem`;",
        "- `medveil policy show NAME|FILE`: every setting with its default filled in;",
        "- `medveil profile --policy P`: the action in force for every attribute and which "
        "option decided it; `--hipaa`: the 18 Safe Harbor categories, OPEN ones with reasons;",
        "- `medveil preview FILE --policy P`: one file, every element before and after "
        "(console only).",
        "",
        f"Source of the tables: {ATTRIBUTION}.",
        "",
    ]
    out += _presets()
    for section in sorted(sections, key=lambda s: list(SECTION_INTRO).index(s)):
        out += [f"## [{section}]", "", SECTION_INTRO[section], ""]
        if section == "elements":
            out += _elements()
            continue
        if section == "filter":
            out += _filters()
            continue
        if section == "lookup":
            out += _lookups()
            continue
        keys = _known(section)
        undocumented = [k for k in keys if (section, k) not in KEYS]
        if undocumented:
            raise ReferenceDrift(f"undocumented keys in [{section}]: {', '.join(undocumented)}")
        for key in keys:
            doc = KEYS[(section, key)]
            if doc.checked:
                _check_example(section, doc.example)
            out += [f"### `{key}`", "", doc.what, ""]
            out.append(f"- **Default:** `{_default(doc.field)}`")
            kind = _choice_enum(section, key)
            if kind is not None:
                prose = CHOICES.get(kind.__name__, {})
                values = [str(m.value) for m in kind]
                lacking = [v for v in values if v not in prose]
                if lacking:
                    raise ReferenceDrift(f"{kind.__name__}: undocumented {', '.join(lacking)}")
                out.append("- **Values:**")
                out += [f"  - `{v}`: {prose[v][0]} Risk: {prose[v][1]}" for v in values]
            else:
                out.append(f"- **Keeps:** {doc.keeps}")
            out += [
                f"- **Risk that remains:** {doc.risk}",
                "",
                "```toml",
                f"[{section}]",
                doc.example,
                "```",
                "",
            ]
            if (section, key) == ("profile", "options"):
                out += _options()
    out += [
        "## Coming from CTP or deid",
        "",
        "`medveil policy import-ctp SCRIPT... -o policy.toml` converts RSNA CTP anonymizer "
        "scripts, `medveil policy import-deid RECIPE -o policy.toml` converts pydicom/deid "
        "recipes; both print every rule without an exact equivalent. A CTP script that "
        "claims PS3.15 conformance gives medveil's profile for the claimed options, with "
        "the script's differences listed (`--follow script` turns them into overrides).",
        "",
    ]
    return "\n".join(out)


def _options() -> list[str]:
    undocumented = [o.name.lower() for o in Option if o not in OPTIONS]
    if undocumented:
        raise ReferenceDrift(f"undocumented options: {', '.join(undocumented)}")
    out = ["#### Options", ""]
    for option in Option:
        keeps, risk = OPTIONS[option]
        rows = _option_rows(option)
        out += [
            f"##### `{option.name.lower()}`",
            "",
            f"{option.meaning} (CID 7050 code {option.code}).",
            "",
            f"- **Keeps:** {keeps}",
            f"- **Risk that remains:** {risk}",
        ]
        if rows:
            sample = ", ".join(f"{kw} ({change})" for _t, kw, change in rows[:6])
            more = f", and {len(rows) - 6} more" if len(rows) > 6 else ""
            out.append(f"- **Table E.1-1:** changes {len(rows)} attribute(s): {sample}{more}.")
        else:
            out.append(
                "- **Table E.1-1:** no column; medveil carries the option out itself "
                "(see [pixels])."
            )
        out.append("")
    return out


def _elements() -> list[str]:
    known = set(SIMPLE_ACTIONS) | set(COMBINED_ACTIONS) | set(POLICY_ACTIONS)
    undocumented = sorted(known - set(ACTIONS))
    if undocumented:
        raise ReferenceDrift(f"undocumented actions: {', '.join(undocumented)}")
    _check_example("elements", ELEMENT_EXAMPLES)
    out = [
        'A key is a keyword (`PatientWeight`), a tag (`"(0010,1010)"`), a mask with `x` for '
        'any hex digit (`"(60xx,4000)"`) or a private element by its creator '
        '(`"GEMS_IDEN_01:(0009,xx10)"`). The value is an action, or a table with `action` '
        "and its parameters (`{ value = ... }` alone means the value action).",
        "",
    ]
    rows = []
    for action in sorted(known, key=lambda a: (a not in SIMPLE_ACTIONS, "/" in a, a)):
        vrs = POLICY_ACTIONS.get(action)
        allowed = "any" if vrs is None else ", ".join(sorted(vrs))
        rows.append((f"`{action}`", ACTIONS[action], allowed))
    out += _table(("action", "does", "VRs"), rows)
    out += [
        "",
        "- **Keeps:** what the action says; an override replaces the table's action and "
        "every option's for that element.",
        "- **Encapsulated documents:** `EncapsulatedDocument` (0042,0011) accepts only `D`, "
        "`X` or `Z` (any other action, or a mask over it, is refused at load with the file "
        "and line). A PDF or CDA names the patient in text the post-check cannot read for "
        "sure (kerned pieces, hex strings, compressed streams), so it is never released. "
        "With the default `D`, the released instance holds a 2-byte dummy and "
        "`EncapsulatedDocumentLength` is removed.",
        "- **Risk that remains:** an override can keep what the profile would remove: "
        "`K`, `value`, `map` and the generalisations keep real information. `medveil "
        "profile` marks overrides as decided by `policy`.",
        "",
        "```toml",
        ELEMENT_EXAMPLES.rstrip(),
        "```",
        "",
    ]
    return out


LOOKUP_EXAMPLE = """\
[lookup]
PatientID = "subjects.csv"
on_missing = "quarantine"
"""

FILTER_EXAMPLE = """\
[[filter.exclude]]
label = "screen captures and burned-in text"
tests = [
    { field = "BurnedInAnnotation", op = "equals", value = "YES" },
    { field = "ImageType", op = "equals", value = "SECONDARY", join = "or" },
]

[[filter.exclude]]
label = "scouts"
tests = [{ field = "SeriesDescription", op = "contains", value = "^(scout|localizer)" }]

[[filter.include]]
tests = [{ field = "Modality", op = "matches", value = "CT|MR|PT" }]
"""


def _lookups() -> list[str]:
    try:  # the example names a file the reference does not ship: its text alone is checked
        Policy.from_toml(LOOKUP_EXAMPLE, source="example of [lookup]", check_files=False)
    except PolicyError as exc:
        raise ReferenceDrift(f"the reference's example does not validate: {exc}") from None
    return [
        '- *keyword* = `"table.csv"`: the element\'s values are looked up in the CSV file '
        "(found next to the policy file when the path is relative). The file has two "
        "columns, the original value and its replacement, UTF-8, an optional header row "
        "(`original,replacement`); a duplicate original value or an empty cell is refused "
        "at load with the file's line. Only text elements (LO, SH, PN, CS, ...) can be "
        "looked up; the element is decided by the table wherever it appears, nested "
        "sequences included, and may not also have an [elements] action.",
        f"- `on_missing`: {', '.join(f'`{v}`' for v in LOOKUP_ON_MISSING)} "
        "(default `quarantine`): what happens to a file holding a value the table lacks. "
        "`quarantine` keeps the file out (the reason names the element and the table, "
        "never the value); `keep-pseudonym` gives that value the keyed pseudonym it would "
        "have had without a table.",
        "- **Keeps:** the table's replacement values, nothing of the original values.",
        "- **Risk that remains:** the table itself links originals to site values: it is "
        "identifying and stays with the site (it never reaches the output, the run records "
        "or the logs). A replacement that is itself identifying (a hospital number) is "
        "released as written.",
        "",
        "```toml",
        LOOKUP_EXAMPLE.rstrip(),
        "```",
        "",
    ]


def _filters() -> list[str]:
    _check_example("filter", FILTER_EXAMPLE)
    return [
        "An excluded instance is not processed and not written; it is not a quarantine. "
        "The run summary counts excluded instances by the rule that excluded them "
        '(`"excluded": {"exclude[0]": 12}`; `include` for an instance no include rule '
        "matched). `medveil policy import-deid` writes a recipe's %filter sections here.",
        "",
        f"- lists: {', '.join(f'`{k}`' for k in FILTER_KINDS)} (deid's whitelist, blacklist "
        "and graylist). With include rules, only instances that one of them matches are "
        "processed; an instance an exclude rule matches is excluded by the first such rule; "
        "graylist rules select nothing (a recipe's note for pixel review);",
        "- each entry: `label`, `tests` (tables of `field`, `op`, `value`, and `join` = "
        "`and`/`or` with the result so far, read left to right as deid does) and, for "
        "graylists, `coordinates` (x0, y0, x1, y1 boxes, recorded only);",
        "- `field`: a keyword or a tag of a top-level attribute, e.g. `Modality`, "
        "`SOPClassUID`, `ImageType`, `SeriesDescription`, `BurnedInAnnotation`;",
        f"- ops: {', '.join(f'`{o}`' for o in FILTER_OPS)}. `contains` searches the value "
        "for a regular expression, ignoring case; `matches` wants the whole value to match "
        "one (case counts); `equals` compares the whole value or any one of its values "
        "(ImageType `DERIVED\\SECONDARY` equals `SECONDARY`); `missing`, `present` and "
        "`empty` take no value. A test on an absent attribute holds only for `notcontains`, "
        "`notequals` and `missing`.",
        "- **Risk that remains:** none is added: an excluded instance is simply not "
        "released. A filter is not a de-identification step: an included instance gets the "
        "whole policy.",
        "",
        "```toml",
        FILTER_EXAMPLE.rstrip(),
        "```",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    """Print the reference, or write it to a file with --write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--write", metavar="PATH", help="write here instead of printing")
    args = parser.parse_args(argv)
    text = generate()
    if args.write:
        Path(args.write).write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
