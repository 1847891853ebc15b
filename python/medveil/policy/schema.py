"""De-identification policies: a TOML file, validated, compiled into a per-tag lookup.

A policy names the PS3.15 options, where the secret lives, the date-shift range, the
pseudonym format and per-element overrides. Mistakes are rejected with the line and the
problem. Without a file, :meth:`Policy.default` gives the Basic Profile with Retain
Longitudinal Modified Dates, Retain Patient Characteristics, Retain Device Identity and
Clean Descriptors (plus Clean Pixel Data, done by :mod:`medveil.pixels`).

Example::

    [profile]
    options = ["retain_longitudinal_modified_dates", "clean_descriptors"]
    unknown_elements = "keep"          # or "remove": allow-list mode
    combined_codes = "conservative"    # or "minimal"

    [dates]
    shift_days = 365

    [pseudonyms]
    prefix = "MV"
    length = 20

    [elements]
    PatientWeight = { action = "bin", width = 5 }
    "(0010,1010)" = { action = "age_band", width = 5 }
    "(60xx,4000)" = "X"
    "GEMS_IDEN_01:(0009,xx10)" = "K"
    InstitutionName = { value = "RESEARCH SITE" }
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag, tag_for_keyword

from medveil.errors import PolicyError
from medveil.policy.standard import (
    COMBINED_ACTIONS,
    EXCLUSIVE,
    SIMPLE_ACTIONS,
    Option,
    Rule,
    option_action,
    parse_tag_pattern,
    table_rows,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has the same parser as the tomli backport
    import tomli as tomllib

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
}

_PRIVATE_SELECTOR = re.compile(r"^(?P<creator>[^:]+):(?P<tag>\([0-9A-Fa-fx]{4},[0-9A-Fa-fx]{4}\))$")


@dataclass(frozen=True)
class ElementOverride:
    """A per-element override from the policy's [elements] table."""

    selector: str
    action: str
    params: tuple[tuple[str, Any], ...] = ()


@dataclass
class Policy:
    """A validated de-identification policy."""

    options: tuple[Option, ...] = DEFAULT_OPTIONS
    unknown_elements: str = "keep"
    combined_codes: str = "conservative"
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
    pixel_text: str = "rules"  # "rules" | "detect" | "detect+rules" (burned-in text)
    pixel_mask: str = "all-text"  # "all-text" | "identifiers" (what detection masks)
    overrides: tuple[ElementOverride, ...] = ()
    source: str = "<built-in default>"
    _compiled: CompiledPolicy | None = field(default=None, repr=False, compare=False)

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
        return cls.from_toml(text, source=str(p))

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> Policy:
        """Parse and validate a policy from TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: {exc}") from None
        return _PolicyParser(text, source).parse(data)

    def compile(self) -> CompiledPolicy:
        """Build (once) the lookup the engine uses: per tag, per mask and per private key."""
        if self._compiled is None:
            self._compiled = CompiledPolicy(self)
        return self._compiled


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
        }
    )

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def line_of(self, key: str) -> int:
        pat = re.compile(r"^\s*(\[+\s*)?[\"']?" + re.escape(key) + r"[\"']?\s*(=|\])")
        for i, line in enumerate(self.lines, 1):
            if pat.search(line):
                return i
        return 0

    def fail(self, key: str, problem: str) -> PolicyError:
        line = self.line_of(key)
        where = f"{self.source}:{line}" if line else self.source
        return PolicyError(f"{where}: {problem}")

    def table(self, data: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"[{name}] must be a table")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    key,
                    f"unknown setting {key!r} in [{name}] (known: {', '.join(sorted(allowed))})",
                )
        return value

    def parse(self, data: dict[str, Any]) -> Policy:
        for key in data:
            if key not in self.SECTIONS:
                raise self.fail(
                    key, f"unknown section [{key}] (known: {', '.join(sorted(self.SECTIONS))})"
                )
        kw: dict[str, Any] = {}
        prof = self.table(
            data,
            "profile",
            {"options", "unknown_elements", "combined_codes", "keep", "pseudonymize"},
        )
        if "options" in prof:
            opts = []
            for name in prof["options"]:
                try:
                    opts.append(Option.from_name(str(name)))
                except ValueError as exc:
                    raise self.fail("options", str(exc)) from None
            for a, b in EXCLUSIVE:
                if a in opts and b in opts:
                    raise self.fail(
                        "options", f"{a.name.lower()} and {b.name.lower()} exclude each other"
                    )
            kw["options"] = tuple(dict.fromkeys(opts))
        if "unknown_elements" in prof:
            if prof["unknown_elements"] not in ("keep", "remove"):
                raise self.fail("unknown_elements", "unknown_elements must be 'keep' or 'remove'")
            kw["unknown_elements"] = prof["unknown_elements"]
        if "combined_codes" in prof:
            if prof["combined_codes"] not in ("conservative", "minimal"):
                raise self.fail(
                    "combined_codes", "combined_codes must be 'conservative' or 'minimal'"
                )
            kw["combined_codes"] = prof["combined_codes"]
        for key, attr in (("keep", "keep"), ("pseudonymize", "pseudonymized")):
            if key in prof:
                names = prof[key]
                if not isinstance(names, list):
                    raise self.fail(key, f"{key} must be a list of keywords")
                for n in names:
                    if n not in keyword_dict:
                        raise self.fail(key, f"unknown keyword {n!r} in {key}")
                kw[attr] = tuple(names)
        sec = self.table(data, "secret", {"file"})
        if "file" in sec:
            kw["secret_file"] = os.path.expanduser(str(sec["file"]))
        dates = self.table(data, "dates", {"shift_days"})
        if "shift_days" in dates:
            v = dates["shift_days"]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 36500:
                raise self.fail("shift_days", "shift_days must be an integer from 0 to 36500")
            kw["shift_days"] = v
        ps = self.table(data, "pseudonyms", {"prefix", "length"})
        if "prefix" in ps:
            if not re.fullmatch(r"[A-Z0-9_-]{0,8}", str(ps["prefix"])):
                raise self.fail("prefix", "prefix must be 0-8 characters of A-Z, 0-9, '_' or '-'")
            kw["pseudonym_prefix"] = ps["prefix"]
        if "length" in ps:
            v = ps["length"]
            # 16 base32 characters are 80 bits: below that, collisions among 10^9
            # patients stop being negligible.
            if not isinstance(v, int) or isinstance(v, bool) or not 16 <= v <= 52:
                raise self.fail("length", "length must be an integer from 16 to 52")
            kw["pseudonym_length"] = v
        cd = self.table(data, "clean_descriptors", {"patterns", "replacement"})
        if "patterns" in cd:
            for pat in cd["patterns"]:
                try:
                    re.compile(pat)
                except re.error as exc:
                    raise self.fail(
                        "patterns", f"invalid regular expression {pat!r}: {exc}"
                    ) from None
            kw["clean_patterns"] = tuple(cd["patterns"])
        if "replacement" in cd:
            kw["clean_replacement"] = str(cd["replacement"])
        px = self.table(
            data, "pixels", {"rules", "allow_unmatched_burned_in", "pixel_text", "mask"}
        )
        for key, field_name, choices in (
            ("pixel_text", "pixel_text", ("rules", "detect", "detect+rules")),
            ("mask", "pixel_mask", ("all-text", "identifiers")),
        ):
            if key in px:
                if px[key] not in choices:
                    raise self.fail(
                        key,
                        f"[pixels] {key} must be one of {', '.join(repr(c) for c in choices)}, "
                        f"got {px[key]!r}",
                    )
                kw[field_name] = px[key]
        if "rules" in px:
            kw["pixel_rule_files"] = tuple(os.path.expanduser(str(r)) for r in px["rules"])
        if "allow_unmatched_burned_in" in px:
            kw["allow_unmatched_burned_in"] = bool(px["allow_unmatched_burned_in"])
        elements = data.get("elements", {})
        if not isinstance(elements, dict):
            raise self.fail("elements", "[elements] must be a table")
        kw["overrides"] = tuple(self.override(sel, spec) for sel, spec in elements.items())
        return Policy(source=self.source, **kw)

    def override(self, selector: str, spec: Any) -> ElementOverride:
        vrs = selector_vrs(selector)
        if vrs is None:
            raise self.fail(
                selector,
                f"unknown element {selector!r}: use a keyword, '(gggg,eeee)', a mask such as "
                "'(60xx,4000)', or 'Private Creator:(gggg,xxee)'",
            )
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
            if key in spec and (
                not isinstance(spec[key], (int, float))
                or isinstance(spec[key], bool)
                or spec[key] <= 0
            ):
                raise self.fail(selector, f"{selector}: {key} must be a positive number")
        if action == "noise" and not spec["lower"] < spec["upper"]:
            raise self.fail(selector, f"{selector}: lower must be below upper")
        if action == "map" and not isinstance(spec["table"], dict):
            raise self.fail(selector, f"{selector}: table must map original values to categories")
        if (
            action == "value"
            and vrs
            and vrs & NUMERIC_VRS
            and not isinstance(spec["value"], (int, float))
        ):
            raise self.fail(
                selector, f"{selector}: a {'/'.join(sorted(vrs))} element needs a numeric value"
            )
        return ElementOverride(selector, action, tuple(sorted(spec.items())))


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


class CompiledPolicy:
    """The policy as lookups: the engine's per-element cost is one dict hit."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        options = [o for o in Option if o in policy.options]  # table order: stable precedence
        self.by_tag: dict[int, Rule] = {}
        self.masks: list[MaskRule] = []
        self.private_default = "X"
        for row in table_rows():
            action, decided = option_action(row, options)
            rule = Rule(row.tag_text, row.keyword, action, decided, row.in_std_comp_iod)
            if row.tag_text.startswith("(gggg"):
                self.private_default = action
                self.private_rule = rule
                continue
            g, gm, e, em = parse_tag_pattern(row.tag_text)
            if gm == 0xFFFF and em == 0xFFFF:
                self.by_tag[(g << 16) | e] = rule
            else:
                self.masks.append(MaskRule(g, gm, e, em, rule))
        for name, action in SUPPLEMENT.items():
            tag = tag_for_keyword(name)
            if tag is not None and tag not in self.by_tag:
                self.by_tag[tag] = Rule(
                    f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                    name,
                    action,
                    "medveil-supplement",
                    False,
                )
        for name in policy.pseudonymized:
            tag = tag_for_keyword(name)
            if tag is not None:
                base = self.by_tag.get(tag)
                self.by_tag[tag] = Rule(
                    f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                    name,
                    "pseudonym",
                    "policy",
                    base.in_std_comp_iod if base else True,
                )
        self.private_overrides: dict[tuple[str, int, int], Rule] = {}
        for ov in policy.overrides:
            rule = Rule(ov.selector, "", ov.action, "policy", True, ov.params)
            m = _PRIVATE_SELECTOR.match(ov.selector)
            if m:
                g, _gm, e, _em = parse_tag_pattern(m.group("tag"))
                self.private_overrides[(m.group("creator").strip(), g, e & 0xFF)] = rule
                continue
            if ov.selector.startswith("("):
                g, gm, e, em = parse_tag_pattern(ov.selector)
                if gm == 0xFFFF and em == 0xFFFF:
                    tag = (g << 16) | e
                    self.by_tag[tag] = Rule(
                        ov.selector, keyword_for_tag(tag), ov.action, "policy", True, ov.params
                    )
                else:
                    # Policy masks are checked before the table's own masks.
                    self.masks.insert(0, MaskRule(g, gm, e, em, rule))
                continue
            tag = tag_for_keyword(ov.selector)
            assert tag is not None  # validated by the parser
            self.by_tag[tag] = Rule(
                f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                ov.selector,
                ov.action,
                "policy",
                True,
                ov.params,
            )
        self._mask_cache: dict[int, Rule | None] = {}
        self.keep_unknown = policy.unknown_elements == "keep"
        self.allow: set[int] = set()
        if not self.keep_unknown:
            for name in (*STRUCTURAL_KEEP, *policy.keep):
                tag = tag_for_keyword(name)
                if tag is not None:
                    self.allow.add(tag)
        self.retain_safe_private = policy.has(Option.RETAIN_SAFE_PRIVATE)
        self.shift_dates = policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
        self.full_dates = policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES)

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
