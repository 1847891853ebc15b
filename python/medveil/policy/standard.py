"""The DICOM PS3.15 Annex E confidentiality profile, built from the standard's own tables.

Table E.1-1 (attributes and actions) and Table E.3.10-1 (safe private attributes) ship as
CSV in ``medveil/data`` (DICOM PS3.15 2026c, © NEMA); nothing here is hand-typed.

How an action is chosen for an attribute (documented behaviour, tested):

1. The Basic Profile column gives the starting action.
2. Each option the policy selects may change it (a non-empty cell in that option's
   column). When two selected options disagree, the more protective one wins: C (clean)
   beats K (keep). In 2026c this only happens for device calibration dates, which Retain
   Device Identity keeps and Retain Longitudinal Modified Dates shifts: they are shifted.
3. Combined codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) are resolved per element by
   :func:`resolve_combined`, so an output stays a valid instance of its IOD whenever the
   input was (see that function).
"""

from __future__ import annotations

import csv
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from medveil.policy.choices import CombinedCodes, SafePrivateVerdict

ATTRIBUTION = "DICOM PS3.15 2026c, © NEMA"


class Option(enum.Enum):
    """A PS3.15 Annex E profile option, with its CSV column and its CID 7050 code."""

    RETAIN_SAFE_PRIVATE = ("rtn_safe_priv", "113111", "Retain Safe Private Option")
    RETAIN_UIDS = ("rtn_uids", "113110", "Retain UIDs Option")
    RETAIN_DEVICE_IDENTITY = ("rtn_dev_id", "113109", "Retain Device Identity Option")
    RETAIN_INSTITUTION_IDENTITY = ("rtn_inst_id", "113112", "Retain Institution Identity Option")
    RETAIN_PATIENT_CHARACTERISTICS = (
        "rtn_pat_chars",
        "113108",
        "Retain Patient Characteristics Option",
    )
    RETAIN_LONGITUDINAL_FULL_DATES = (
        "rtn_long_full_dates",
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    )
    RETAIN_LONGITUDINAL_MODIFIED_DATES = (
        "rtn_long_modif_dates",
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    )
    CLEAN_DESCRIPTORS = ("clean_desc", "113105", "Clean Descriptors Option")
    CLEAN_STRUCTURED_CONTENT = ("clean_struct_cont", "113104", "Clean Structured Content Option")
    CLEAN_GRAPHICS = ("clean_graph", "113103", "Clean Graphics Option")
    CLEAN_PIXEL_DATA = ("", "113101", "Clean Pixel Data Option")

    @property
    def column(self) -> str:
        """The option's column in Table E.1-1 ('' for options that have none)."""
        return self.value[0]

    @property
    def code(self) -> str:
        """The option's code value in CID 7050 (coding scheme DCM)."""
        return self.value[1]

    @property
    def meaning(self) -> str:
        """The option's code meaning in CID 7050."""
        return self.value[2]

    @classmethod
    def from_name(cls, name: str) -> Option:
        """Look an option up by its lower-case name, e.g. 'retain_uids'."""
        try:
            return cls[name.upper()]
        except KeyError:
            known = ", ".join(o.name.lower() for o in cls)
            raise ValueError(f"unknown profile option {name!r} (known: {known})") from None


BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")

# Options that cannot be selected together.
EXCLUSIVE = ((Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES),)

SIMPLE_ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U"})
COMBINED_ACTIONS = frozenset({"X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})


@dataclass(frozen=True)
class TableRow:
    """One row of Table E.1-1."""

    tag_text: str
    keyword: str
    name: str
    retired: bool
    in_std_comp_iod: bool
    basic: str
    cells: dict[str, str]


@dataclass(frozen=True)
class Rule:
    """The action in force for one attribute (or mask) and what decided it."""

    selector: str  # "(0010,0010)" or a mask such as "(60xx,4000)"
    keyword: str
    action: str  # a simple or combined action code, or a policy action name
    decided_by: str  # "basic", an option name, or "policy"
    in_std_comp_iod: bool = True
    params: tuple[tuple[str, object], ...] = ()
    why: str = ""  # for rules medveil adds beyond the table: the reason, in a few words

    def param(self, name: str, default: object = None) -> object:
        """Return a parameter of a policy action (e.g. a bin width)."""
        return dict(self.params).get(name, default)


# Option -> its column: an enum's property costs more than a dict hit, per row and option.
_COLUMNS: dict[Option, str] = {o: o.column for o in Option}


@lru_cache(maxsize=1)
def table_rows() -> tuple[TableRow, ...]:
    """Rows of Table E.1-1 as shipped in the package."""
    text = resources.files("medveil.data").joinpath("ps315_e1_1.csv").read_text("utf-8")
    # csv.reader by column index: a DictReader's dict per row doubled the cost of a run's
    # policy compile. Blank lines are skipped, as DictReader does.
    reader = csv.reader(text.splitlines())
    at = {name: i for i, name in enumerate(next(reader))}
    tag, keyword, name = at["tag"], at["keyword"], at["name"]
    retired, in_iod, basic = at["retired"], at["in_std_comp_iod"], at["basic_profile"]
    option_columns = [(o.column, at[o.column]) for o in Option if o.column]
    out = []
    for row in reader:
        if not row:
            continue
        out.append(
            TableRow(
                tag_text=row[tag],
                keyword=row[keyword],
                name=row[name],
                retired=row[retired] == "Y",
                in_std_comp_iod=row[in_iod] == "Y",
                basic=row[basic],
                cells={c: row[i] for c, i in option_columns if row[i]},
            )
        )
    return tuple(out)


_TAG_RE = re.compile(r"^\(([0-9A-Fa-fx]{4}),([0-9A-Fa-fx]{4})\)$")


def parse_tag_pattern(text: str) -> tuple[int, int, int, int]:
    """Parse '(gggg,eeee)' with 'x' wildcards into (group, group_mask, elem, elem_mask)."""
    m = _TAG_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a tag or tag mask: {text!r} (expected '(gggg,eeee)', x = any)")

    def part(s: str) -> tuple[int, int]:
        if "x" not in s and "X" not in s:  # the common case: four hex digits
            return int(s, 16), 0xFFFF
        value = int(s.lower().replace("x", "0"), 16)
        mask = int("".join("0" if ch in "xX" else "f" for ch in s), 16)
        return value, mask

    g, gm = part(m.group(1))
    e, em = part(m.group(2))
    return g, gm, e, em


def option_action(row: TableRow, options: Iterable[Option]) -> tuple[str, str]:
    """Return (action, decided_by) for a table row under the selected options."""
    action, decided = row.basic, "basic"
    cells = row.cells
    if not cells:  # most rows: no option changes them (and a policy compiles every row)
        return action, decided
    for opt in options:
        column = _COLUMNS[opt]
        cell = cells.get(column) if column else None
        if not cell:
            continue
        # The more protective choice wins when two selected options disagree.
        if decided != "basic" and action == "C" and cell == "K":
            continue
        action, decided = cell, opt.name.lower()
    return action, decided


@dataclass(frozen=True)
class NetClean:
    """One row of the safety net's clean-list (``medveil/data/safety_net_clean.csv``)."""

    keyword: str
    action: str  # "C": cleaned under Clean Descriptors, else a dummy; "D": always a dummy
    reason: str


@lru_cache(maxsize=1)
def safety_net_clean() -> dict[str, NetClean]:
    """Free-text elements the safety net must not empty, by keyword.

    The net empties free text Table E.1-1 does not list (X/Z); for these an empty value is
    wrong: a Type 1 attribute (SegmentLabel) or a label that names anatomy, not a person.
    """
    text = resources.files("medveil.data").joinpath("safety_net_clean.csv").read_text("utf-8")
    out: dict[str, NetClean] = {}
    for row in csv.DictReader(text.splitlines()):
        if row["action"] not in ("C", "D"):
            raise ValueError(f"safety_net_clean.csv: {row['keyword']}: action must be C or D")
        out[row["keyword"]] = NetClean(row["keyword"], row["action"], row["reason"])
    return out


@dataclass(frozen=True)
class SafePrivate:
    """One row of Table E.3.10-1: a private element by creator and element offset."""

    group: int
    offset: int  # low byte of the element: the block byte is the creator's
    creator: str
    vr: str


@lru_cache(maxsize=1)
def safe_private_elements() -> dict[tuple[str, int, int], SafePrivate]:
    """Table E.3.10-1 keyed by (creator, group, element offset)."""
    text = resources.files("medveil.data").joinpath("ps315_e3_10_1_safe_private.csv")
    out: dict[tuple[str, int, int], SafePrivate] = {}
    for row in csv.DictReader(text.read_text("utf-8").splitlines()):
        g, _gm, e, _em = parse_tag_pattern(row["tag"])
        sp = SafePrivate(
            group=g, offset=e & 0xFF, creator=row["private_creator"].strip(), vr=row["vr"]
        )
        out[(sp.creator, sp.group, sp.offset)] = sp
    return out


def resolve_combined(
    action: str, *, vr: str, in_std_comp_iod: bool, empty: bool, mode: CombinedCodes | str
) -> str:
    """Resolve a combined code (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) for one element.

    Table E.1-1 lets the choice depend on the attribute's Type in the IOD, which the table
    does not give. The rule implemented (mode "conservative", the default):

    - An attribute that is in no standard composite IOD cannot be required by one: the most
      removing choice is taken (X, else Z, else D).
    - Otherwise the output must stay valid whether the attribute is Type 1, 2 or 3 there:
      a present but empty value stays empty (Z) where Z is allowed, since only a Type 2 or
      3 attribute can have been empty; a non-empty value becomes a dummy (D) where D is
      allowed (valid for every Type), else empty (Z: valid for Types 2 and 3, the only
      ones X/Z admits), else removed.
    - X/Z/U*: a sequence is kept and its items cleaned by their own rules (the U applies to
      the UIDs inside), a UID is replaced (U), anything else is emptied (Z).

    Mode "minimal" always takes the most removing choice (X, else Z, else D).
    """
    if action == "X/Z/U*":
        if vr == "SQ":
            return "K"
        if vr == "UI":
            return "U"
        return "Z" if in_std_comp_iod and mode == CombinedCodes.CONSERVATIVE else "X"
    choices = action.split("/")
    if mode == CombinedCodes.MINIMAL or not in_std_comp_iod:
        for pick in ("X", "Z", "D"):
            if pick in choices:
                return pick
    if empty and "Z" in choices:
        return "Z"
    for pick in ("D", "Z", "X"):
        if pick in choices:
            return pick
    raise ValueError(f"not a combined action: {action!r}")


# How a value of each VR must look (PS3.5 6.2), for the VRs a name cannot hide in: a
# value that does not fit was not written by the device the table describes.
_TEXT_SYNTAX: dict[str, re.Pattern[bytes]] = {
    "DS": re.compile(rb" *[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)? *"),
    "IS": re.compile(rb" *[+-]?\d+ *"),
    "CS": re.compile(rb"[A-Z0-9 _]*"),
    "UI": re.compile(rb"[0-9.]*\x00?"),
    "DA": re.compile(rb"\d{8} *|"),
    "TM": re.compile(rb"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)? *|"),
    "DT": re.compile(rb"\d{4,14}(?:\.\d{1,6})?(?:[+-]\d{4})? *|"),
    "AS": re.compile(rb"\d{3}[DWMY]|"),
}
_MAX_LEN = {"DS": 16, "IS": 12, "CS": 16, "UI": 64, "DA": 8, "TM": 16, "DT": 26, "AS": 4}
_BINARY_SIZE = {"FL": 4, "FD": 8, "US": 2, "SS": 2, "UL": 4, "SL": 4, "AT": 4, "UV": 8, "SV": 8}
_NUMERIC = ("DS", "IS", "FL", "FD", "US", "SS", "UL", "SL")


def value_fits_vr(vr: str, value: bytes) -> bool:
    """True when raw value bytes are a valid encoding of VR ``vr`` (any VR not checked: True).

    Checked: the string VRs that hold numbers, codes, UIDs, dates and ages (each value of a
    multi-valued element) and the binary numbers (whole number of values).
    """
    size = _BINARY_SIZE.get(vr)
    if size is not None:
        return len(value) % size == 0
    syntax = _TEXT_SYNTAX.get(vr)
    if syntax is None:
        return True
    text = value.rstrip(b"\x00 ") if vr != "UI" else value.rstrip(b"\x00")
    limit = _MAX_LEN[vr]
    return all(
        not v.strip() or (len(v) <= limit and syntax.fullmatch(v) is not None)
        for v in text.split(b"\\")
    )


def _table_vrs(entry: SafePrivate) -> tuple[str, ...]:
    return tuple(v for v in re.split(r"[/ ]+|\bor\b", entry.vr) if v)


def safe_private_verdict(
    entry: SafePrivate, vr: str | None, value: bytes | None
) -> SafePrivateVerdict:
    """What Retain Safe Private does with one listed private element (Table E.3.10-1).

    ``vr`` is the VR written in the file (None or "UN" when the file does not say: Implicit
    VR, or an explicit UN); ``value`` its raw bytes (None for a sequence). A sequence row
    is never kept verbatim: its items are walked with the profile (RECURSE). A value of
    another VR than the table's (a DS element written as LO holding a name), or one that
    does not parse as the table's VR when the file gives none, is NOT_SAFE.
    """
    table = _table_vrs(entry)
    if "SQ" in table:
        # A sequence written as one (explicit SQ) or without a VR (the engine parses the
        # value as items, and must treat it as NOT_SAFE when they do not parse).
        return (
            SafePrivateVerdict.RECURSE
            if vr in ("SQ", "UN", None)
            else (SafePrivateVerdict.NOT_SAFE)
        )
    if vr == "SQ":
        return SafePrivateVerdict.NOT_SAFE
    if not table:
        # The table gives no VR for a few rows, all numbers: accept a numeric VR only.
        candidates: tuple[str, ...] = _NUMERIC
    else:
        candidates = table
    if vr not in (None, "UN"):
        if vr not in candidates:
            return SafePrivateVerdict.NOT_SAFE
        candidates = (vr,)
    if value is not None and not any(value_fits_vr(v, bytes(value)) for v in candidates):
        return SafePrivateVerdict.NOT_SAFE
    return SafePrivateVerdict.KEEP
