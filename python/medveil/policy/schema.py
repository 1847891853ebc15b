"""De-identification policies: a TOML file, validated, compiled into a per-tag lookup.

A policy names the PS3.15 options, where the secret lives, the date-shift range, the
pseudonym format and per-element overrides. Mistakes are rejected with the line and the
problem. Without a file, :meth:`Policy.default` gives the Basic Profile with Retain
Longitudinal Modified Dates, Retain Patient Characteristics, Retain Device Identity and
Clean Descriptors (plus Clean Pixel Data, done by :mod:`medveil.pixels`).

Compiling adds, beyond the table: the safety net for standard elements the table does not
list (:mod:`medveil.policy.net`), one rule for each whole overlay group (60xx), and policy
masks that reach listed attributes too.

Example::

    [profile]
    options = ["retain_longitudinal_modified_dates", "clean_descriptors"]
    unknown_elements = "keep"          # or "remove": allow-list mode
    combined_codes = "conservative"    # or "minimal"
    keep = ["DocumentTitle"]           # kept verbatim: allow-list entries, exempt from the net

    [dates]
    shift_days = 365                   # 1 to 36500; real dates: retain_longitudinal_full_dates

    [pixels]
    rules = ["site-devices.toml"]      # next to this file; checked when the policy is loaded
    pixel_text = "auto"                # "rules" | "detect" | "detect+rules" | "auto"

    [pseudonyms]
    prefix = "MV"
    length = 20

    [elements]
    PatientWeight = { action = "bin", width = 5 }
    "(0010,1010)" = { action = "age_band", width = 5 }
    "(60xx,3000)" = "K"                # keep overlays: the whole 60xx group stays
    "GEMS_IDEN_01:(0009,xx10)" = "K"
    InstitutionName = { value = "RESEARCH SITE" }
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from pydicom._dicom_dict import DicomDictionary  # datadict does not re-export it
from pydicom.datadict import (
    dictionary_VR,
    keyword_dict,
    keyword_for_tag,
    tag_for_keyword,
)

from medveil.errors import PolicyError
from medveil.policy import tablecache
from medveil.policy.choices import (
    CombinedCodes,
    PixelMask,
    PixelText,
    SafePrivateVerdict,
    UnknownElements,
)
from medveil.policy.net import net_mask_rules, net_rules
from medveil.policy.standard import (
    COMBINED_ACTIONS,
    EXCLUSIVE,
    SIMPLE_ACTIONS,
    Option,
    Rule,
    SafePrivate,
    option_action,
    parse_tag_pattern,
    safe_private_elements,
    safe_private_verdict,
    table_rows,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has the same parser as the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

DEFAULT_OPTIONS = (
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    Option.RETAIN_PATIENT_CHARACTERISTICS,
    Option.RETAIN_DEVICE_IDENTITY,
    Option.CLEAN_DESCRIPTORS,
    Option.CLEAN_PIXEL_DATA,
)

# Identifiers replaced by keyed pseudonyms rather than emptied, so that a researcher can
# still group a patient's files (the table's own action for each is Z or Z/D).
DEFAULT_PSEUDONYMIZED = ("PatientID", "PatientName", "AccessionNumber", "StudyID")

# Generalisation and other policy actions, with the VRs each is valid for.
NUMERIC_VRS = frozenset({"DS", "IS", "FL", "FD", "US", "SS", "UL", "SL", "UV", "SV"})
TEXT_VRS = frozenset({"CS", "LO", "SH", "ST", "LT", "UT", "UC", "PN"})
POLICY_ACTIONS: dict[str, frozenset[str] | None] = {
    "year": frozenset({"DA", "DT"}),
    "year_month": frozenset({"DA", "DT"}),
    "age_band": frozenset({"AS"}),
    "bin": NUMERIC_VRS,
    "map": TEXT_VRS,
    "noise": frozenset({"DS", "IS", "FL", "FD"}),
    "value": None,  # checked against the VR when the value is parsed
    "pseudonym": frozenset({"LO", "SH", "PN", "CS", "AE", "UC"}),
}

# Elements every image needs; kept in allow-list mode unless the policy says otherwise.
STRUCTURAL_KEEP = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "ImageType",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelData",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "PixelSpacing",
    "SliceThickness",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceLocation",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "SpecificCharacterSet",
    "InstanceNumber",
    "SeriesNumber",
    "AcquisitionNumber",
    "PatientPosition",
    "BodyPartExamined",
    "KVP",
    "ExposureTime",
    "XRayTubeCurrent",
    "ConvolutionKernel",
    "EchoTime",
    "RepetitionTime",
    "MagneticFieldStrength",
    "FrameTime",
    "FrameIncrementPointer",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    "PatientSex",
    "PatientAge",
    "Manufacturer",
    "ManufacturerModelName",
)

# Identity-bearing elements Table E.1-1 does not list (file meta AE titles name the
# sending station; PrivateInformation is opaque vendor data).
SUPPLEMENT = {
    "SourceApplicationEntityTitle": "X",
    "SendingApplicationEntityTitle": "X",
    "ReceivingApplicationEntityTitle": "X",
    "SourcePresentationAddress": "X",
    "SendingPresentationAddress": "X",
    "ReceivingPresentationAddress": "X",
    "PrivateInformationCreatorUID": "X",
    "PrivateInformation": "X",
    # Type 3: the length of the document it describes, which no policy keeps (see
    # DOCUMENT_ACTIONS); left as it was it would describe a document that is gone.
    "EncapsulatedDocumentLength": "X",
}

ENCAPSULATED_DOCUMENT = 0x00420011
#: The only actions a policy may give Encapsulated Document (0042,0011): its value is
#: replaced or removed. A PDF's or CDA's text cannot be checked for identity the way a
#: header's can (compressed streams, kerned pieces, hex strings, font glyph codes), so a
#: policy that keeps or cleans it is refused rather than releasing what is not checked.
DOCUMENT_ACTIONS = frozenset({"D", "X", "Z", "X/Z", "X/D", "Z/D", "X/Z/D"})
_DOCUMENT_KEPT = (
    "not allowed on EncapsulatedDocument (0042,0011): an encapsulated PDF or CDA "
    "document is replaced or removed, never kept, as its text cannot be checked for "
    "identifying values (give D, X or Z)"
)


def _names_document(selector: str) -> bool:
    """Whether an [elements] selector reaches Encapsulated Document (a keyword or a tag
    pattern; private selectors never do)."""
    if selector == "EncapsulatedDocument":
        return True
    if not selector.startswith("(") or ":" in selector:
        return False
    g, gm, e, em = parse_tag_pattern(selector)
    return (ENCAPSULATED_DOCUMENT >> 16) & gm == g and ENCAPSULATED_DOCUMENT & 0xFFFF & em == e


# A private element is named by its creator and the element's low byte; the block byte is
# whatever the file assigned ("xx"), or a fixed one that is ignored when matching.
_PRIVATE_SELECTOR = re.compile(
    r"^(?P<creator>[^:]+):(?P<tag>\((?P<group>[0-9A-Fa-f]{4}),(?:xx|XX|[0-9A-Fa-f]{2})"
    r"[0-9A-Fa-f]{2}\))$"
)
_LOOSE_PRIVATE = re.compile(r"^[^:(]+:\(.*\)$")

# The overlay group (60xx): one Overlay Plane module per group, whose text elements are
# cleaned when the policy keeps overlays.
OVERLAY_DATA = 0x60003000
OVERLAY_TEXT = (
    ("(60xx,0022)", "OverlayDescription"),
    ("(60xx,0045)", "OverlaySubtype"),
    ("(60xx,1500)", "OverlayLabel"),
)


#: The operators of a [filter] test (the same as deid's recipes, plus ``matches``).
FILTER_KINDS: tuple[str, ...] = ("include", "exclude", "graylist")
FILTER_OPS: tuple[str, ...] = (
    "contains",
    "notcontains",
    "equals",
    "notequals",
    "matches",
    "missing",
    "present",
    "empty",
)
#: The action of an element a [lookup] table decides.
LOOKUP_ACTION = "lookup"
#: What a [lookup] does with a value its table does not hold.
LOOKUP_ON_MISSING: tuple[str, ...] = ("quarantine", "keep-pseudonym")
# Lookups replace text values only: a table cannot hold a valid UID or binary value.
_LOOKUP_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_LOOKUP_MAX = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64}


@dataclass(frozen=True)
class FilterTest:
    """One condition of a filter rule: ``field op value``, joined to the previous one."""

    field: str
    op: str
    value: str = ""
    join: str = "and"


@dataclass(frozen=True)
class FilterRule:
    """One [[filter.include]] / [[filter.exclude]] / [[filter.graylist]] entry."""

    kind: str
    index: int
    tests: tuple[FilterTest, ...]
    label: str = ""
    coordinates: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        """How the summary names the rule, e.g. 'exclude[0]'."""
        return f"{self.kind}[{self.index}]"


@dataclass(frozen=True)
class Lookup:
    """A [lookup] table: original value -> site-assigned value for one keyword.

    The table is PHI (original identifiers): it is kept out of ``repr`` so that it never
    reaches a log or an error message.
    """

    keyword: str
    path: str
    on_missing: str = "quarantine"
    table: dict[str, str] = field(default_factory=dict, repr=False, compare=False, hash=False)


@dataclass(frozen=True)
class ElementOverride:
    """A per-element override from the policy's [elements] table."""

    selector: str
    action: str
    params: tuple[tuple[str, Any], ...] = ()


def _coerce(kind: type[Any], value: object, name: str) -> Any:
    """A coded choice from its Enum member or TOML string; PolicyError otherwise."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(c.value) for c in kind)
        raise PolicyError(f"{name} must be one of {choices}, got {value!r}") from None


@dataclass
class Policy:
    """A validated de-identification policy."""

    options: tuple[Option, ...] = DEFAULT_OPTIONS
    unknown_elements: UnknownElements = UnknownElements.KEEP
    combined_codes: CombinedCodes = CombinedCodes.CONSERVATIVE
    keep: tuple[str, ...] = ()
    secret_file: str | None = None
    shift_days: int = 365
    pseudonym_prefix: str = "MV"
    pseudonym_length: int = 20
    pseudonymized: tuple[str, ...] = DEFAULT_PSEUDONYMIZED
    clean_patterns: tuple[str, ...] = (
        r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b",  # e-mail addresses
        r"(?<!\d)(?:\+?\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}(?!\d)",  # phone numbers
        r"\b(?:MRN|MR#|Med\.? ?Rec\.?)[:# ]*\w+",  # medical record numbers by label
    )
    clean_replacement: str = ""
    allow_unmatched_burned_in: bool = False
    pixel_rule_files: tuple[str, ...] = ()
    # Text detection on the classes that usually carry burned-in text (US, SC, XA/RF,
    # documents, Burned In Annotation YES), device rules everywhere (issue 19 item 4).
    pixel_text: PixelText = PixelText.AUTO
    pixel_mask: PixelMask = PixelMask.ALL_TEXT
    overrides: tuple[ElementOverride, ...] = ()
    filters: tuple[FilterRule, ...] = ()
    lookups: tuple[Lookup, ...] = ()
    source: str = "<built-in default>"
    # The compilation and the field values it was made from. Not an init field, so
    # dataclasses.replace never carries it into a policy with other fields; not pickled.
    _compiled: CompiledPolicy | None = field(default=None, init=False, repr=False, compare=False)
    _compiled_from: tuple[object, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Turn TOML strings into the coded choices and refuse values that weaken silently."""
        self.unknown_elements = _coerce(UnknownElements, self.unknown_elements, "unknown_elements")
        self.combined_codes = _coerce(CombinedCodes, self.combined_codes, "combined_codes")
        self.pixel_text = _coerce(PixelText, self.pixel_text, "pixel_text")
        self.pixel_mask = _coerce(PixelMask, self.pixel_mask, "mask")
        if (
            not isinstance(self.shift_days, int)
            or isinstance(self.shift_days, bool)
            or not 1 <= self.shift_days <= 36500
        ):
            raise PolicyError(
                f"shift_days must be an integer from 1 to 36500, got {self.shift_days!r}"
            )
        options = []
        for o in self.options:
            try:
                options.append(o if isinstance(o, Option) else Option.from_name(str(o)))
            except ValueError as exc:
                raise PolicyError(str(exc)) from None
        self.options = tuple(dict.fromkeys(options))
        for a, b in EXCLUSIVE:
            if a in self.options and b in self.options:
                raise PolicyError(f"{a.name.lower()} and {b.name.lower()} exclude each other")
        if not re.fullmatch(r"[A-Z0-9_-]{0,8}", str(self.pseudonym_prefix)):
            raise PolicyError("pseudonym_prefix must be 0-8 characters of A-Z, 0-9, '_' or '-'")
        if (
            not isinstance(self.pseudonym_length, int)
            or isinstance(self.pseudonym_length, bool)
            or not 16 <= self.pseudonym_length <= 52
        ):
            raise PolicyError("pseudonym_length must be an integer from 16 to 52")
        if not isinstance(self.allow_unmatched_burned_in, bool):
            raise PolicyError("allow_unmatched_burned_in must be true or false")
        for name in ("keep", "pseudonymized", "clean_patterns", "pixel_rule_files"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise PolicyError(f"{name} must be a sequence of strings, not {value!r}")

    @classmethod
    def default(cls) -> Policy:
        """The built-in policy: Basic Profile + the options a research archive usually needs."""
        return cls()

    def has(self, option: Option) -> bool:
        """True when the policy selects the option."""
        return option in self.options

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """Read and validate a policy TOML file."""
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as exc:
            raise PolicyError(f"{p}: cannot read policy: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise PolicyError(f"{p}: not UTF-8 text ({exc.reason})") from None
        return cls.from_toml(text, source=str(p))

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>", *, check_files: bool = True) -> Policy:
        """Parse and validate a policy from TOML text.

        Pixel rule files are found next to ``source`` (when it is a path) and checked here,
        so a missing or broken one is a PolicyError at load, not a failure in the workers;
        ``check_files=False`` validates the text alone (documentation examples).
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(_toml_error(source, text, exc)) from None
        return _PolicyParser(text, source, check_files=check_files).parse(data)

    def compile(self) -> CompiledPolicy:
        """Build (once per content) the lookup the engine uses: per tag, mask, private key."""
        # A field set after an earlier compile must not run under the old compilation
        # (a retain_uids added, a keep list changed): the cache holds only for the very
        # objects it was built from (identity, as a lookup's table is left out of ==).
        now = self._fields()
        old = self._compiled_from
        if (
            self._compiled is None
            or old is None
            or not all(a is b for a, b in zip(old, now, strict=True))
        ):
            self._compiled = CompiledPolicy(self)
            self._compiled_from = now
        return self._compiled

    def _fields(self) -> tuple[object, ...]:
        """The values of the fields that define the policy, in declaration order."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.init)

    def __getstate__(self) -> dict[str, object]:
        """The policy's fields for pickling, without its compilation (rebuilt on need)."""
        state = dict(self.__dict__)
        state["_compiled"] = state["_compiled_from"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a pickled policy (compiled again on its first use)."""
        self.__dict__.update(state)
        self._compiled = self._compiled_from = None


def _toml_error(source: str, text: str, exc: Exception) -> str:
    """'source:line: problem' for a TOML syntax error, also at the end of the file."""
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column \d+\)$", msg)
    if m:
        return f"{source}:{m.group(1)}: {msg[: m.start()]} ({m.group(0).strip()[1:-1]})"
    m = re.search(r"\s*\(at end of document\)$", msg)
    if m:
        last = max(1, len(text.splitlines()))
        return f"{source}:{last}: {msg[: m.start()]} (at the end of the file)"
    return f"{source}: {msg}"


_SECTION = re.compile(r"^\s*\[\[?\s*([^\]\[]+?)\s*\]\]?\s*(?:#.*)?$")


class _PolicyParser:
    """Validates the TOML tables, naming the line of every mistake."""

    SECTIONS: frozenset[str] = frozenset(
        {
            "profile",
            "secret",
            "dates",
            "pseudonyms",
            "clean_descriptors",
            "pixels",
            "elements",
            "filter",
            "lookup",
        }
    )

    def __init__(self, text: str, source: str, *, check_files: bool = True) -> None:
        self.lines = text.splitlines()
        self.source = source
        self.check_files = check_files
        self.base = Path(source).parent if source and not source.startswith("<") else None
        self.section = ""

    def line_of(self, key: str, section: str | None = None) -> int:
        """Line of `key` (a section name, or a key of `section`), 0 when not found."""
        if section is None:
            section = self.section
        head = re.compile(r"^\s*\[\[?\s*[\"']?" + re.escape(key) + r"[\"']?\s*[\].]")
        pat = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        current = ""
        for i, line in enumerate(self.lines, 1):
            m = _SECTION.match(line)
            if m:
                current = m.group(1).strip().strip("\"'").split(".")[0]
                if head.search(line):
                    return i
                continue
            if current == section and pat.search(line):
                return i
        return 0

    def fail(self, key: str, problem: str, section: str | None = None) -> PolicyError:
        """A PolicyError naming the file and the line of `key`."""
        line = self.line_of(key, section)
        where = f"{self.source}:{line}" if line else self.source
        return PolicyError(f"{where}: {problem}")

    def table(self, data: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
        """The section `name` as a dict, every key in `allowed`."""
        self.section = name
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"[{name}] must be a table", "")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    key,
                    f"unknown setting {key!r} in [{name}] (known: {', '.join(sorted(allowed))})",
                )
        return value

    def strings(self, table: dict[str, Any], key: str, what: str) -> list[str]:
        """A list of strings (a lone string is refused: it would be read as its letters)."""
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f'{key} must be a list of {what}, e.g. {key} = ["..."]')
        return value

    def string(self, table: dict[str, Any], key: str) -> str:
        """A string value."""
        value = table[key]
        if not isinstance(value, str):
            raise self.fail(key, f"{key} must be a string, not {_toml_type(value)}")
        return value

    def integer(self, table: dict[str, Any], key: str, low: int, high: int, why: str = "") -> int:
        """An integer from `low` to `high`."""
        value = table[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(key, f"{key} must be an integer from {low} to {high}{why}")
        return value

    def choice(self, table: dict[str, Any], key: str, kind: type[Any], label: str) -> Any:
        """One of the string values of the Enum `kind`."""
        value = table[key]
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return kind(value)
        except ValueError:
            choices = ", ".join(repr(c.value) for c in kind)
            raise self.fail(key, f"{label} must be one of {choices}, got {value!r}") from None

    def parse(self, data: dict[str, Any]) -> Policy:
        """Validate every section and build the Policy."""
        for key in data:
            if key not in self.SECTIONS:
                raise self.fail(
                    key,
                    f"unknown section [{key}] (known: {', '.join(sorted(self.SECTIONS))})",
                    "",
                )
        kw: dict[str, Any] = {}
        prof = self.table(
            data,
            "profile",
            {"options", "unknown_elements", "combined_codes", "keep", "pseudonymize"},
        )
        if "options" in prof:
            opts = []
            for name in self.strings(prof, "options", "option names"):
                try:
                    opts.append(Option.from_name(name))
                except ValueError as exc:
                    raise self.fail("options", str(exc)) from None
            for a, b in EXCLUSIVE:
                if a in opts and b in opts:
                    raise self.fail(
                        "options", f"{a.name.lower()} and {b.name.lower()} exclude each other"
                    )
            kw["options"] = tuple(dict.fromkeys(opts))
        if "unknown_elements" in prof:
            kw["unknown_elements"] = self.choice(
                prof, "unknown_elements", UnknownElements, "unknown_elements"
            )
        if "combined_codes" in prof:
            kw["combined_codes"] = self.choice(
                prof, "combined_codes", CombinedCodes, "combined_codes"
            )
        for key, attr in (("keep", "keep"), ("pseudonymize", "pseudonymized")):
            if key in prof:
                names = self.strings(prof, key, "keywords")
                for n in names:
                    if n not in keyword_dict:
                        raise self.fail(key, f"unknown keyword {n!r} in {key}")
                kw[attr] = tuple(names)
        sec = self.table(data, "secret", {"file"})
        if "file" in sec:
            kw["secret_file"] = os.path.expanduser(self.string(sec, "file"))
        dates = self.table(data, "dates", {"shift_days"})
        if "shift_days" in dates:
            # 0 would leave every date as it was while the output says MODIFIED: real dates
            # are kept by the option that says so.
            kw["shift_days"] = self.integer(
                dates,
                "shift_days",
                1,
                36500,
                " (to keep real dates, select retain_longitudinal_full_dates instead)",
            )
        ps = self.table(data, "pseudonyms", {"prefix", "length"})
        if "prefix" in ps:
            prefix = self.string(ps, "prefix")
            if not re.fullmatch(r"[A-Z0-9_-]{0,8}", prefix):
                raise self.fail("prefix", "prefix must be 0-8 characters of A-Z, 0-9, '_' or '-'")
            kw["pseudonym_prefix"] = prefix
        if "length" in ps:
            # 16 base32 characters are 80 bits: below that, collisions among 10^9
            # patients stop being negligible.
            kw["pseudonym_length"] = self.integer(ps, "length", 16, 52)
        cd = self.table(data, "clean_descriptors", {"patterns", "replacement"})
        if "patterns" in cd:
            patterns = self.strings(cd, "patterns", "regular expressions")
            for pat in patterns:
                try:
                    re.compile(pat)
                except re.error as exc:
                    raise self.fail(
                        "patterns", f"invalid regular expression {pat!r}: {exc}"
                    ) from None
            kw["clean_patterns"] = tuple(patterns)
        if "replacement" in cd:
            kw["clean_replacement"] = self.string(cd, "replacement")
        px = self.table(
            data, "pixels", {"rules", "allow_unmatched_burned_in", "pixel_text", "mask"}
        )
        if "pixel_text" in px:
            kw["pixel_text"] = self.choice(px, "pixel_text", PixelText, "[pixels] pixel_text")
        if "mask" in px:
            kw["pixel_mask"] = self.choice(px, "mask", PixelMask, "[pixels] mask")
        if "rules" in px:
            kw["pixel_rule_files"] = tuple(
                self.rule_file(r) for r in self.strings(px, "rules", "rule file paths")
            )
        if "allow_unmatched_burned_in" in px:
            value = px["allow_unmatched_burned_in"]
            if not isinstance(value, bool):
                raise self.fail(
                    "allow_unmatched_burned_in",
                    f"allow_unmatched_burned_in must be true or false (unquoted), not {value!r}",
                )
            kw["allow_unmatched_burned_in"] = value
        self.section = "elements"
        elements = data.get("elements", {})
        if not isinstance(elements, dict):
            raise self.fail("elements", "[elements] must be a table", "")
        overrides = tuple(self.override(sel, spec) for sel, spec in elements.items())
        self.no_duplicates(overrides)
        for ov in overrides:
            if ov.action not in DOCUMENT_ACTIONS and _names_document(ov.selector):
                # Said here, at the file's line: CompiledPolicy refuses it too, but only
                # once the workers compile the policy.
                raise self.fail(ov.selector, f"{ov.selector} = {ov.action!r}: {_DOCUMENT_KEPT}")
        kw["overrides"] = overrides
        kw["filters"] = self.filters(data)
        kw["lookups"] = self.lookups(data)
        looked = {lk.keyword for lk in kw["lookups"]}
        for ov in overrides:
            if ov.selector in looked:
                raise self.fail(
                    ov.selector, f"{ov.selector} has a [lookup] table and an [elements] action"
                )
        try:
            return Policy(source=self.source, **kw)
        except PolicyError as exc:  # pragma: no cover - every value was checked above
            raise PolicyError(f"{self.source}: {exc}") from None

    def fail_filter(self, needle: str, problem: str) -> PolicyError:
        """A PolicyError at the first line of the [filter] tables holding ``needle``."""
        start = self.line_of("filter", "")
        line = next((i for i, s in enumerate(self.lines, 1) if i >= start and needle in s), start)
        return PolicyError(
            f"{self.source}:{line}: {problem}" if line else f"{self.source}: {problem}"
        )

    def filters(self, data: dict[str, Any]) -> tuple[FilterRule, ...]:
        """Validate the [filter] table: include/exclude/graylist lists of labelled tests."""
        self.section = "filter"
        table = data.get("filter", {})
        if not isinstance(table, dict):
            raise self.fail_filter("filter", "[filter] must be a table")
        out: list[FilterRule] = []
        for kind, entries in table.items():
            if kind not in FILTER_KINDS:
                raise self.fail_filter(
                    kind, f"unknown filter list {kind!r} (known: {', '.join(FILTER_KINDS)})"
                )
            if not isinstance(entries, list):
                raise self.fail_filter(
                    kind, f"filter.{kind} must be a list of tables ([[filter.{kind}]])"
                )
            for index, entry in enumerate(entries):
                out.append(self.filter_rule(kind, index, entry))
        return tuple(out)

    def filter_rule(self, kind: str, index: int, entry: Any) -> FilterRule:
        """One filter entry: { label, tests = [{ field, op, value, join }], coordinates }."""
        if not isinstance(entry, dict) or not isinstance(entry.get("tests"), list):
            raise self.fail_filter(kind, f"each [[filter.{kind}]] needs tests = [...]")
        extra = set(entry) - {"label", "tests", "coordinates"}
        if extra:
            raise self.fail_filter(min(extra), f"filter.{kind} takes no {', '.join(sorted(extra))}")
        if not entry["tests"]:
            raise self.fail_filter("tests", f"filter.{kind}[{index}] has no tests")
        tests = []
        for test in entry["tests"]:
            if not isinstance(test, dict):
                raise self.fail_filter(kind, "each test is a table { field, op, value }")
            extra = set(test) - {"field", "op", "value", "join"}
            if extra:
                raise self.fail_filter(
                    min(extra), f"a filter test takes no {', '.join(sorted(extra))}"
                )
            fld, op = test.get("field"), test.get("op")
            if op not in FILTER_OPS:
                raise self.fail_filter(
                    str(op), f"unknown filter op {op!r} (known: {', '.join(FILTER_OPS)})"
                )
            if not isinstance(fld, str) or filter_field_tag(fld) is None:
                raise self.fail_filter(
                    str(fld), f"unknown filter field {fld!r}: use a keyword or a tag"
                )
            join = test.get("join", "and")
            if join not in ("and", "or"):
                raise self.fail_filter("join", "join must be 'and' or 'or'")
            value = test.get("value", "")
            if op not in ("missing", "present", "empty") and "value" not in test:
                raise self.fail_filter(str(fld), f"filter op {op!r} on {fld} needs a value")
            if not isinstance(value, str):
                raise self.fail_filter(
                    kind, f"a filter value must be a string, not {_toml_type(value)}"
                )
            if op in ("contains", "notcontains", "matches"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise self.fail_filter(
                        value, f"invalid regular expression {value!r} in filter.{kind}: {exc}"
                    ) from None
            tests.append(FilterTest(fld, op, value, join))
        label = entry.get("label", "")
        if not isinstance(label, str):
            raise self.fail_filter(kind, "a filter label must be a string")
        coords = entry.get("coordinates", [])
        return FilterRule(
            kind,
            index,
            tuple(tests),
            label,
            tuple(coords) if isinstance(coords, list) else (coords,),
        )

    def lookups(self, data: dict[str, Any]) -> tuple[Lookup, ...]:
        """Validate the [lookup] table: keyword = "table.csv", optional on_missing."""
        self.section = "lookup"
        table = data.get("lookup", {})
        if not isinstance(table, dict):
            raise self.fail("lookup", "[lookup] must be a table", "")
        on_missing = table.get("on_missing", "quarantine")
        if on_missing not in LOOKUP_ON_MISSING:
            raise self.fail(
                "on_missing",
                f"on_missing must be one of {', '.join(map(repr, LOOKUP_ON_MISSING))},"
                f" got {on_missing!r}",
            )
        out = []
        for key, name in table.items():
            if key == "on_missing":
                continue
            tag = tag_for_keyword(key)
            vrs = set(dictionary_VR(tag).split(" or ")) if tag is not None else set()
            if tag is None or tag >> 16 & 1:
                raise self.fail(key, f"[lookup] {key}: not a standard keyword")
            if not vrs <= _LOOKUP_VRS:
                raise self.fail(key, f"[lookup] {key}: only text elements can be looked up")
            if not isinstance(name, str):
                raise self.fail(key, f"[lookup] {key} must be a CSV file path (a string)")
            limit = min((_LOOKUP_MAX.get(v, 1024) for v in vrs), default=64)
            out.append(self.lookup_file(key, name, on_missing, limit))
        return tuple(out)

    def lookup_file(self, key: str, name: str, on_missing: str, limit: int) -> Lookup:
        """A lookup CSV: two columns (original, replacement), header optional, UTF-8."""
        path = Path(os.path.expanduser(name))
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        if not self.check_files:
            return Lookup(key, str(path), on_missing)
        try:
            text = path.read_text("utf-8-sig")
        except OSError as exc:
            raise self.fail(key, f"lookup table {name!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise self.fail(key, f"lookup table {name!r} is not UTF-8 text") from None
        table: dict[str, str] = {}
        # Errors name the table's line, never its values: the table holds identifiers.
        for lineno, row in enumerate(csv.reader(text.splitlines()), 1):
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{path}:{lineno}"
            if len(row) != 2:
                raise PolicyError(f"{where}: a lookup row has two columns, not {len(row)}")
            original, replacement = row[0].strip(), row[1].strip()
            if lineno == 1 and not table and _looks_like_header(original, key):
                continue
            if not original or not replacement:
                raise PolicyError(f"{where}: empty value in a lookup row")
            if original in table:
                raise PolicyError(f"{where}: duplicate original value (given on an earlier line)")
            if "\\" in replacement or len(replacement) > limit:
                raise PolicyError(
                    f"{where}: replacement not a valid {key} value (at most {limit} characters,"
                    " no backslash)"
                )
            table[original] = replacement
        if not table:
            raise self.fail(key, f"lookup table {name!r} has no rows")
        return Lookup(key, str(path), on_missing, table)

    def rule_file(self, name: str) -> str:
        """A pixel rule file: found (next to the policy file when relative) and valid TOML."""
        path = Path(os.path.expanduser(name))
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        if not self.check_files:
            return str(path)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise self.fail("rules", f"pixel rule file {name!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise self.fail("rules", f"pixel rule file {name!r} is not UTF-8 text") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise self.fail(
                "rules", f"pixel rule file {name!r}: {_toml_error(str(path), text, exc)}"
            ) from None
        rules = doc.get("rule")
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise self.fail("rules", f"pixel rule file {name!r} has no [[rule]] tables")
        return str(path)

    def no_duplicates(self, overrides: tuple[ElementOverride, ...]) -> None:
        """Refuse one element given twice (as a keyword and as its tag)."""
        seen: dict[object, str] = {}
        for ov in overrides:
            m = _PRIVATE_SELECTOR.match(ov.selector)
            if m:
                g, _gm, e, _em = parse_tag_pattern(m.group("tag").replace("XX", "xx"))
                key: object = (m.group("creator").strip(), g, e & 0xFF)
            elif ov.selector.startswith("("):
                key = parse_tag_pattern(ov.selector)
            else:
                tag = tag_for_keyword(ov.selector)
                key = (tag >> 16, 0xFFFF, tag & 0xFFFF, 0xFFFF) if tag is not None else ov.selector
            if key in seen:
                raise self.fail(
                    ov.selector, f"{ov.selector}: the same element as {seen[key]}, given twice"
                )
            seen[key] = ov.selector

    def override(self, selector: str, spec: Any) -> ElementOverride:
        """Validate one [elements] entry."""
        vrs = self.selector_vrs(selector)
        if isinstance(spec, str):
            spec = {"action": spec}
        if not isinstance(spec, dict):
            raise self.fail(selector, f"{selector}: give an action string or a table")
        spec = dict(spec)
        if "value" in spec and "action" not in spec:
            spec["action"] = "value"
        action = spec.pop("action", None)
        if action is None:
            raise self.fail(selector, f"{selector}: no action given")
        if not isinstance(action, str):
            raise self.fail(selector, f"{selector}: the action must be a string")
        if action in SIMPLE_ACTIONS or action in COMBINED_ACTIONS:
            if action == "U" and vrs and "UI" not in vrs:
                raise self.fail(
                    selector,
                    f"{selector}: action U needs a UI element, not {'/'.join(sorted(vrs))}",
                )
            if spec:
                raise self.fail(selector, f"{selector}: action {action} takes no parameters")
            return ElementOverride(selector, action)
        if action not in POLICY_ACTIONS:
            known = ", ".join(sorted(SIMPLE_ACTIONS | COMBINED_ACTIONS | set(POLICY_ACTIONS)))
            raise self.fail(selector, f"{selector}: unknown action {action!r} (known: {known})")
        allowed = POLICY_ACTIONS[action]
        if allowed is not None and vrs and not (vrs & allowed):
            raise self.fail(
                selector,
                f"{selector}: action {action!r} is not allowed for VR {'/'.join(sorted(vrs))} "
                f"(allowed: {', '.join(sorted(allowed))})",
            )
        required = {
            "bin": {"width"},
            "age_band": set(),
            "map": {"table"},
            "value": {"value"},
            "noise": {"epsilon", "sensitivity", "lower", "upper"},
            "year": set(),
            "year_month": set(),
            "pseudonym": set(),
        }[action]
        optional = {"age_band": {"width", "top"}, "map": {"default"}}.get(action, set())
        missing = required - set(spec)
        extra = set(spec) - required - optional
        if missing:
            raise self.fail(
                selector, f"{selector}: action {action!r} needs {', '.join(sorted(missing))}"
            )
        if extra:
            raise self.fail(
                selector, f"{selector}: action {action!r} takes no {', '.join(sorted(extra))}"
            )
        for key in ("width", "epsilon", "sensitivity", "top"):
            if key in spec and (not _is_number(spec[key]) or spec[key] <= 0):
                raise self.fail(selector, f"{selector}: {key} must be a positive number")
        if action == "noise":
            if not (_is_number(spec["lower"]) and _is_number(spec["upper"])):
                raise self.fail(selector, f"{selector}: lower and upper must be numbers")
            if not spec["lower"] < spec["upper"]:
                raise self.fail(selector, f"{selector}: lower must be below upper")
        if action == "map":
            table = spec["table"]
            if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
                raise self.fail(
                    selector, f"{selector}: table must map original values to category strings"
                )
            if "default" in spec and not isinstance(spec["default"], str):
                raise self.fail(selector, f"{selector}: default must be a string")
        if action == "value":
            value = spec["value"]
            if vrs and vrs <= NUMERIC_VRS and not _is_number(value):
                raise self.fail(
                    selector,
                    f"{selector}: a {'/'.join(sorted(vrs))} element needs a numeric value",
                )
            if vrs and not (vrs & NUMERIC_VRS) and not isinstance(value, str):
                raise self.fail(
                    selector, f"{selector}: a {'/'.join(sorted(vrs))} element needs a string"
                )
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise self.fail(selector, f"{selector}: value must be a string or a number")
        return ElementOverride(selector, action, tuple(sorted(spec.items())))

    def selector_vrs(self, selector: str) -> set[str]:
        """The VRs of a valid selector; a PolicyError naming the mistake otherwise."""
        if _LOOSE_PRIVATE.match(selector):
            m = _PRIVATE_SELECTOR.match(selector)
            if m is None:
                raise self.fail(
                    selector,
                    f"{selector}: a private element is 'Private Creator:(gggg,xxee)' with a "
                    "4-digit group and ee the element's low byte",
                )
            if not int(m.group("group"), 16) & 1:
                raise self.fail(
                    selector,
                    f"{selector}: group {m.group('group')} is even, a standard group: private "
                    "elements live in odd groups",
                )
            return set()
        vrs = selector_vrs(selector)
        if vrs is None:
            raise self.fail(
                selector,
                f"unknown element {selector!r}: use a keyword, '(gggg,eeee)', a mask such as "
                "'(60xx,4000)', or 'Private Creator:(gggg,xxee)'",
            )
        if selector.startswith("("):
            g, gm, _e, _em = parse_tag_pattern(selector)
            if gm == 0xFFFF and g & 1:
                raise self.fail(
                    selector,
                    f"{selector}: a private element needs its creator: "
                    f"'Private Creator:({g:04X},xxee)'",
                )
        return vrs


def _looks_like_header(first: str, keyword: str) -> bool:
    """True for a CSV header row: its first cell names the column ('original', the keyword).

    Only these names: a data row taken for a header would leave its key unmapped (and its
    files quarantined), so anything else is read as data.
    """
    return first.lower().replace(" ", "_") in {"original", "old", "key", "from", keyword.lower()}


def filter_field_tag(name: str) -> int | None:
    """The tag a filter field names (a keyword or '(gggg,eeee)'/'ggggeeee'), or None."""
    m = re.fullmatch(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?", name)
    if m:
        return int(m.group(1) + m.group(2), 16)
    return tag_for_keyword(name)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _toml_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def selector_vrs(selector: str) -> set[str] | None:
    """VRs an element selector can have ({} when unknown but valid, None when invalid)."""
    if _PRIVATE_SELECTOR.match(selector):
        return set()
    if selector.startswith("("):
        try:
            g, gm, e, em = parse_tag_pattern(selector)
        except ValueError:
            return None
        if gm == 0xFFFF and em == 0xFFFF:
            try:
                return set(dictionary_VR((g << 16) | e).split(" or "))
            except KeyError:
                return set()
        return set()
    tag = tag_for_keyword(selector)
    if tag is None:
        return None
    return set(dictionary_VR(tag).split(" or "))


@dataclass(frozen=True)
class MaskRule:
    """A rule for a family of tags: (tag & mask) == value."""

    group: int
    group_mask: int
    elem: int
    elem_mask: int
    rule: Rule

    def matches(self, tag: int) -> bool:
        """True when the tag is in this family."""
        return ((tag >> 16) & self.group_mask) == self.group and (
            tag & 0xFFFF & self.elem_mask
        ) == self.elem


class BaseTables(NamedTuple):
    """What a policy compiles from before its own choices: the same for the same options."""

    by_tag: dict[int, Rule]  # Table E.1-1's exact rows, then medveil's supplement
    masks: tuple[MaskRule, ...]  # the table's masks
    private_default: str
    private_rule: Rule
    net: tuple[tuple[int, Rule], ...]  # the safety net for every tag nothing above names
    net_masks: tuple[MaskRule, ...]  # and for the dictionary's repeating groups


# The modules whose code builds the base tables (their source is part of the cache key).
_BASE_MODULES = (
    __name__,
    "medveil.policy.standard",
    "medveil.policy.net",
    "medveil.policy.choices",
)


def base_tables(options: tuple[Option, ...], with_net: bool) -> BaseTables:
    """The tables of Table E.1-1 under options (in table order), and the net if asked.

    Kept between runs by :mod:`medveil.policy.tablecache`, keyed by the table and
    keep-list files, the source of the modules that build them and pydicom's dictionary.
    """
    name = (
        "policy-"
        + hashlib.sha256(repr(([o.name for o in options], with_net)).encode()).hexdigest()[:16]
    )
    data = resources.files("medveil.data")
    parts = [
        repr(([o.name for o in options], with_net)).encode(),
        data.joinpath("ps315_e1_1.csv").read_bytes(),
        data.joinpath("safety_net_keep.csv").read_bytes(),
        *tablecache.source(*(sys.modules[m] for m in _BASE_MODULES)),
    ]
    return tablecache.cached(name, parts, lambda: _build_base_tables(options, with_net))


def _build_base_tables(options: tuple[Option, ...], with_net: bool) -> BaseTables:
    """base_tables, computed."""
    by_tag: dict[int, Rule] = {}
    masks: list[MaskRule] = []
    private_default = "X"
    private_rule = Rule("(gggg,eeee)", "", "X", "basic", False)
    for row in table_rows():
        action, decided = option_action(row, options)
        rule = Rule(row.tag_text, row.keyword, action, decided, row.in_std_comp_iod)
        if row.tag_text.startswith("(gggg"):
            private_default = action
            private_rule = rule
            continue
        g, gm, e, em = parse_tag_pattern(row.tag_text)
        if gm == 0xFFFF and em == 0xFFFF:
            by_tag[(g << 16) | e] = rule
        else:
            masks.append(MaskRule(g, gm, e, em, rule))
    for name, action in SUPPLEMENT.items():
        tag = tag_for_keyword(name)
        if tag is not None and tag not in by_tag:
            by_tag[tag] = Rule(_tag_text(tag), name, action, "medveil-supplement", False)
    net: list[tuple[int, Rule]] = []
    net_masks: list[MaskRule] = []
    if with_net:
        chosen = frozenset(options)
        listed = set(by_tag)
        for m in masks:  # MaskRule.matches, inlined: once per dictionary tag and mask
            g, gm, e, em = m.group, m.group_mask, m.elem, m.elem_mask
            listed.update(
                t for t in DicomDictionary if ((t >> 16) & gm) == g and (t & 0xFFFF & em) == e
            )
        # Every unlisted tag: a policy's keep-list is left out when it compiles.
        net = list(net_rules(listed, chosen, set()))
        for selector, rule in net_mask_rules(chosen):
            g, gm, e, em = parse_tag_pattern(selector)
            if g & 0xFF00 == 0x6000 and gm == 0xFF00:
                continue  # overlays: one rule for the whole group (see _overlays)
            probe = (g << 16) | e
            if any(m.matches(probe) for m in masks):
                continue
            net_masks.append(MaskRule(g, gm, e, em, rule))
    return BaseTables(
        by_tag, tuple(masks), private_default, private_rule, tuple(net), tuple(net_masks)
    )


class CompiledPolicy:
    """The policy as lookups: the engine's per-element cost is one dict hit.

    Order of precedence, lowest first: Table E.1-1 under the selected options, medveil's
    supplement, the safety net (``unknown_elements = "keep"`` only), the overlay group
    rule, pseudonyms, the policy's masks (which reach listed attributes too), then the
    policy's exact overrides.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        options = tuple(o for o in Option if o in policy.options)  # table order: precedence
        self.keep_unknown = policy.unknown_elements == UnknownElements.KEEP
        tables = base_tables(options, self.keep_unknown)
        self.by_tag: dict[int, Rule] = dict(tables.by_tag)
        self.masks: list[MaskRule] = list(tables.masks)
        self.private_default = tables.private_default
        self.private_rule = tables.private_rule
        kept_by_name = {t for n in policy.keep if (t := tag_for_keyword(n)) is not None}
        self.net_tags: set[int] = set()
        if self.keep_unknown:
            self._add_net(tables, kept_by_name)
        tag: int | None  # a keyword's tag below (None: not a standard keyword)
        for tag in sorted(kept_by_name - set(self.by_tag)):
            # Shown by `medveil profile`, and kept on purpose for the post-check.
            self.by_tag[tag] = Rule(
                _tag_text(tag),
                keyword_for_tag(tag),
                "K",
                "policy",
                True,
                (),
                "[profile] keep: kept verbatim (exempt from the safety net)",
            )
        self.keeps_overlays = self._overlays(policy)
        for name in policy.pseudonymized:
            tag = tag_for_keyword(name)
            if tag is not None:
                base = self.by_tag.get(tag)
                self.by_tag[tag] = Rule(
                    _tag_text(tag),
                    name,
                    "pseudonym",
                    "policy",
                    base.in_std_comp_iod if base else True,
                )
        self.private_overrides: dict[tuple[str, int, int], Rule] = {}
        exact: list[ElementOverride] = []
        for ov in policy.overrides:
            rule = Rule(ov.selector, "", ov.action, "policy", True, ov.params)
            m = _PRIVATE_SELECTOR.match(ov.selector)
            if m:
                g, _gm, e, _em = parse_tag_pattern(m.group("tag").replace("XX", "xx"))
                self.private_overrides[(m.group("creator").strip(), g, e & 0xFF)] = rule
                continue
            if ov.selector.startswith("("):
                g, gm, e, em = parse_tag_pattern(ov.selector)
                if gm != 0xFFFF or em != 0xFFFF:
                    mask = MaskRule(g, gm, e, em, rule)
                    # A policy mask is the policy's word on the whole family: it replaces
                    # the rules of listed members too, and is checked before table masks.
                    for tag, old in list(self.by_tag.items()):
                        if mask.matches(tag):
                            self.by_tag[tag] = Rule(
                                _tag_text(tag),
                                old.keyword,
                                ov.action,
                                "policy",
                                True,
                                ov.params,
                                f"mask {ov.selector}",
                            )
                    self.masks.insert(0, mask)
                    continue
            exact.append(ov)
        for ov in exact:  # exact selectors are more specific than any mask
            if ov.selector.startswith("("):
                g, _gm, e, _em = parse_tag_pattern(ov.selector)
                tag = (g << 16) | e
                keyword = keyword_for_tag(tag)
            else:
                found = tag_for_keyword(ov.selector)
                assert found is not None  # validated by the parser
                tag, keyword = found, ov.selector
            self.by_tag[tag] = Rule(_tag_text(tag), keyword, ov.action, "policy", True, ov.params)
        # A [lookup] table decides its element wherever it appears (the parser refuses an
        # [elements] action on the same keyword).
        self.lookups: dict[int, Lookup] = {}
        for lookup in policy.lookups:
            found = tag_for_keyword(lookup.keyword)
            assert found is not None  # validated by the parser
            self.lookups[found] = lookup
            self.by_tag[found] = Rule(
                _tag_text(found),
                lookup.keyword,
                LOOKUP_ACTION,
                "policy",
                True,
                (),
                f"[lookup] table {Path(lookup.path).name}",
            )
        self.filters = policy.filters
        self._mask_cache: dict[int, Rule | None] = {}
        self.allow: set[int] = set()
        if not self.keep_unknown:
            for name in (*STRUCTURAL_KEEP, *policy.keep):
                tag = tag_for_keyword(name)
                if tag is not None:
                    self.allow.add(tag)
        self.retain_safe_private = policy.has(Option.RETAIN_SAFE_PRIVATE)
        self.shift_dates = policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
        self.full_dates = policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES)
        doc = self.by_tag.get(ENCAPSULATED_DOCUMENT)
        if doc is not None and doc.action not in DOCUMENT_ACTIONS:
            raise PolicyError(
                f"EncapsulatedDocument (0042,0011): action {doc.action!r} "
                f"({doc.decided_by}): {_DOCUMENT_KEPT}"
            )

    def _add_net(self, tables: BaseTables, exempt: set[int]) -> None:
        """Safety-net rules for dictionary elements no table row, mask or keep names."""
        for tag, rule in tables.net:
            if tag not in exempt:
                self.by_tag[tag] = rule
                self.net_tags.add(tag)
        self.masks.extend(tables.net_masks)

    def _overlays(self, policy: Policy) -> bool:
        """Replace the table's overlay rows by one rule for the whole 60xx group.

        OverlayData alone removed leaves OverlayLabel and OverlayDescription (text) and an
        Overlay Plane without data; an overlay bitmap cannot be cleaned of burned-in text
        either. So the group is removed as a whole (Basic Profile, Clean Graphics, Clean
        Pixel Data), or kept as a whole, its text cleaned, when the policy keeps OverlayData
        ("(60xx,3000)" = "K"). Returns True when overlays are kept.
        """
        keep = False
        for ov in policy.overrides:
            if ov.selector == "OverlayData" or (
                ov.selector.startswith("(")
                and MaskRule(*parse_tag_pattern(ov.selector), rule=self.private_rule).matches(
                    OVERLAY_DATA
                )
            ):
                keep = ov.action == "K"
        # The table's overlay rows go; when overlays are kept, its other rows (comments,
        # retired) stay ahead of the group rule.
        self.masks = [
            m
            for m in self.masks
            if not (m.group & 0xFF00 == 0x6000 and m.group_mask == 0xFF00)
            or (keep and not m.matches(OVERLAY_DATA))
        ]
        for tag in [t for t in self.by_tag if t >> 24 == 0x60 and not (t >> 16) & 1]:
            del self.by_tag[tag]
        if keep:
            for selector, keyword in OVERLAY_TEXT:
                self.masks.append(
                    MaskRule(
                        *parse_tag_pattern(selector),
                        rule=Rule(
                            selector,
                            keyword,
                            "C",
                            "overlay-group",
                            True,
                            (),
                            "overlays kept: their text is cleaned",
                        ),
                    )
                )
            self.masks.append(
                MaskRule(
                    0x6000,
                    0xFF00,
                    0,
                    0,
                    Rule(
                        "(60xx,xxxx)",
                        "Overlay Plane",
                        "K",
                        "overlay-group",
                        True,
                        (),
                        "overlays kept by the policy: the whole group stays",
                    ),
                )
            )
        else:
            self.masks.append(
                MaskRule(
                    0x6000,
                    0xFF00,
                    0,
                    0,
                    Rule(
                        "(60xx,xxxx)",
                        "Overlay Plane",
                        "X",
                        "overlay-group",
                        False,
                        (),
                        "overlay data is removed (or cannot be cleaned): the whole group goes",
                    ),
                )
            )
        # Curves (50xx, retired) are graphics too: Clean Graphics' C cannot clean them.
        for i, m in enumerate(self.masks):
            if m.group == 0x5000 and m.group_mask == 0xFF00 and m.rule.action == "C":
                self.masks[i] = MaskRule(
                    m.group,
                    m.group_mask,
                    m.elem,
                    m.elem_mask,
                    Rule(
                        m.rule.selector,
                        "Curve Data",
                        "X",
                        "overlay-group",
                        False,
                        (),
                        "curve data cannot be cleaned of text: removed",
                    ),
                )
        return keep

    def keeps_unknown(self, tag: int) -> bool:
        """True when an element no rule names is kept (allow-list mode: its list, file meta)."""
        return self.keep_unknown or tag in self.allow or tag >> 16 == 2

    def rule_for(self, tag: int) -> Rule | None:
        """The rule for a standard (even-group) tag, or None when no rule names it."""
        rule = self.by_tag.get(tag)
        if rule is not None:
            return rule
        try:
            return self._mask_cache[tag]
        except KeyError:
            pass
        found = next((m.rule for m in self.masks if m.matches(tag)), None)
        if len(self._mask_cache) < 65536:
            self._mask_cache[tag] = found
        return found

    def rules(self) -> Iterable[Rule]:
        """Every rule in force, for display: exact tags, then masks."""
        yield from (self.by_tag[t] for t in sorted(self.by_tag))
        yield from (m.rule for m in self.masks)

    def safe_private(self, creator: str, group: int, offset: int) -> SafePrivate | None:
        """The Table E.3.10-1 row Retain Safe Private keeps, or None (option off / unlisted)."""
        if not self.retain_safe_private:
            return None
        return safe_private_elements().get((creator, group, offset))

    def safe_private_verdict(
        self, creator: str, tag: int, vr: str | None, value: bytes | None
    ) -> SafePrivateVerdict | None:
        """Retain Safe Private's verdict on one private data element, None when it has none."""
        entry = self.safe_private(creator, tag >> 16, tag & 0xFF)
        return None if entry is None else safe_private_verdict(entry, vr, value)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
