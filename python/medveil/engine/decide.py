"""The one decision layer of both engines: what happens to each element, from plain values.

The Dataset engine (:mod:`medveil.engine.dataset`) and the raw-byte engine
(:mod:`medveil.engine.raw`) read and write bytes differently; everything else is asked
here: the action after combined-code resolution, replacement values, the free-text
cleaning terms and the cleaned text, the private-block verdicts, date shifts and the age
cap. Inputs are tags, VRs and decoded values, so both roads give the same answer.
"""

from __future__ import annotations

import datetime as _dt
import enum
import functools
import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple, TypeVar

from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag, tag_for_keyword

from medveil.dicom.keywords import ID_KEYWORDS, IDENTITY_KEYWORDS, NAME_KEYWORDS, TERM_KEYWORDS
from medveil.errors import QuarantineError
from medveil.policy.keys import Keyed, is_well_known_uid
from medveil.policy.schema import LOOKUP_ACTION, CompiledPolicy, Policy
from medveil.policy.standard import (
    COMBINED_ACTIONS,
    Option,
    Rule,
    resolve_combined,
    safety_net_clean,
)
from medveil.verify.values import classify, glued_is_word, letter_run

TEXT_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
BYTES_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMBER_VRS: Final = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"})
#: Binary numbers: the byte size of one value (a dummy is one zero value).
NUMBER_SIZES: Final = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8, "SV": 8}
MAX_LEN: Final = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "DS": 16, "IS": 12}
DUMMY: Final[dict[str, str]] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UR": "urn:medveil:anonymized",
}
#: Years per unit of an AS value (Safe Harbor's cap and the age bands read ages with it).
AGE_UNITS: Final = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}
_AGE = re.compile(r"(\d{3})([DWMY])")
#: VRs whose value is text: their dummy and cleaned values are written as text.
TEXTUAL_VRS: Final = TEXT_VRS | {"AS", "DA", "DT", "TM", "DS", "IS", "UI"}


class Kind(enum.Enum):
    """What an engine does to one element's bytes."""

    KEEP = "keep"  # unchanged (a sequence: its items walked with their own rules)
    REMOVE = "remove"
    EMPTY = "empty"  # present with an empty value (a sequence: no items)
    PUT = "put"  # new text values (Decision.values)
    ZERO = "zero"  # a dummy binary value: one zero value of the VR's size
    DUMMY_ITEMS = "dummy-items"  # a sequence whose items become dummy items
    GENERAL = "general"  # a policy action on decoded values (Dataset engine only)


class Route(enum.Enum):
    """How an element is decided: by its rule, as private, dropped, or as unlisted."""

    RULE = "rule"
    PRIVATE = "private"
    DROP = "drop"  # a group length: stale after any change
    UNKNOWN = "unknown"


class Verdict(enum.Enum):
    """What happens to one private element (see :func:`plan_private`)."""

    REMOVE = "X"
    ACT = "act"  # the policy's rule for it applies
    KEEP = "keep"  # the policy keeps it
    SAFE = "K-safe-private"  # kept by Retain Safe Private
    CREATOR = "creator"  # the creator of a block that keeps something
    # A Retain Safe Private sequence: kept, its items walked with the profile (an Implicit
    # VR value that does not parse as items is removed, as NOT_SAFE).
    SAFE_RECURSE = "K-safe-private-recurse"
    NOT_SAFE = "X-safe-private-vr"  # a safe row of another VR than the table's: removed


# The members as plain module names, for the engines' per-element loops: reading a
# member through its Enum class costs a lookup on every use.
KIND_KEEP, KIND_REMOVE, KIND_EMPTY, KIND_PUT, KIND_ZERO, KIND_DUMMY_ITEMS, KIND_GENERAL = Kind
ROUTE_RULE, ROUTE_PRIVATE, ROUTE_DROP, ROUTE_UNKNOWN = Route
(
    VERDICT_REMOVE,
    VERDICT_ACT,
    VERDICT_KEEP,
    VERDICT_SAFE,
    VERDICT_CREATOR,
    VERDICT_SAFE_RECURSE,
    VERDICT_NOT_SAFE,
) = Verdict


class Decision(NamedTuple):
    """The answer for one element: what to do, what to report, and the new values.

    A NamedTuple: one is made per decided element, and a frozen dataclass costs several
    times as much to build.
    """

    kind: Kind
    report: str = ""  # the action the report records ("" for none)
    values: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # extra report entries, recorded before `report`


_T = TypeVar("_T", bound=int)  # a tag: an int, or the dataset's own BaseTag key
KEEP: Final = Decision(Kind.KEEP)
REMOVED: Final = Decision(Kind.REMOVE, "X")


@dataclass
class DeidReport:
    """What the engine did to one dataset: actions by tag path, never values."""

    actions: Counter[str] = field(default_factory=Counter)
    taken: list[tuple[str, int, str]] = field(default_factory=list)
    date_offset_days: int = 0
    pixels: object | None = None

    def add(self, path: str, tag: int, action: str) -> None:
        """Record one action taken on element `tag` under the sequence path `path`."""
        self.actions[action] += 1
        self.taken.append((path, tag, action))

    def record(self, path: str, tag: int, decision: Decision) -> None:
        """Record a decision's notes and action."""
        if decision.notes:
            for note in decision.notes:
                self.add(path, tag, note)
        action = decision.report
        if action:
            self.actions[action] += 1
            self.taken.append((path, tag, action))

    @property
    def entries(self) -> list[tuple[str, str]]:
        """(element path, action) pairs, e.g. ('(0008,1140)[0]/(0008,1155)', 'U')."""
        return [(path + tag_text(tag), action) for path, tag, action in self.taken]


def tag_text(tag: int) -> str:
    """'(gggg,eeee)' for a tag."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


# ---------------------------------------------------------------------- dictionary
_DICT_VRS: dict[int, tuple[str, ...]] = {}


def dictionary_vrs(tag: int) -> tuple[str, ...]:
    """The VRs the data dictionary allows for a tag, first the usual one; () if undefined."""
    try:
        return _DICT_VRS[tag]
    except KeyError:
        pass
    try:
        vrs = tuple(dictionary_VR(tag).split(" or "))
    except KeyError:
        vrs = ()
    if len(_DICT_VRS) < 100_000:
        _DICT_VRS[tag] = vrs
    return vrs


def dictionary_vr(tag: int) -> str | None:
    """The tag's first dictionary VR, or None if the standard does not define it."""
    vrs = dictionary_vrs(tag)
    return vrs[0] if vrs else None


def in_dictionary(tag: int) -> bool:
    """True when the standard defines the tag."""
    return bool(dictionary_vrs(tag))


def vr_conflict(tag: int, vr: str) -> bool:
    """True when a standard tag is written with a VR its definition does not allow.

    Such an element is not what its keyword says (a UID written as a sequence, a date
    written as LO): no rule for the keyword can be trusted on it, so it is removed.
    UN (the value's VR was not known to the writer) is read as the dictionary's VR.
    """
    if tag >> 16 & 1 or vr == "UN":
        return False
    vrs = dictionary_vrs(tag)
    return bool(vrs) and vr not in vrs


# ---------------------------------------------------------------------- values
def is_empty(value: bytes | bytearray | memoryview | None) -> bool:
    """True for a raw value that holds nothing but padding (NUL and space bytes).

    Reads the value in place, a piece at a time: a value is usually decided by its first
    bytes, and a large one (pixel data) must not be copied whole to find that out.
    """
    if not value:
        return True
    view = memoryview(value)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    step = 64
    for start in range(0, len(view), step):
        if bytes(view[start : start + step]).strip(b"\x00 "):
            return False
        step = min(step * 16, 1 << 20)
    return True


def uids_of(value: bytes | bytearray | memoryview) -> list[str]:
    """The UIDs of a raw UI value."""
    return bytes(value).decode("ascii", "replace").strip("\x00 ").split("\\")


def zero_value(vr: str) -> bytes:
    """The bytes of a binary dummy: one zero value of the VR (two bytes for OB, OW, ...)."""
    return b"\x00" * NUMBER_SIZES.get(vr, 8 if vr == "UV" else 2)


# ---------------------------------------------------------------------- dates
# One DT value: YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]] and an optional &ZZXX offset.
_DT_ONE = re.compile(r"(\d{4}(?:\d{2}){0,5}(?:\.\d{1,6})?)([+-]\d{4})?")


def _valid_offset(offset: str) -> bool:
    return not offset or (int(offset[1:3]) <= 14 and int(offset[3:5]) < 60)


def shift_date_value(value: str, days: int, vr: str) -> str | None:
    """Shift one DA or DT value, or every component of a range 'A-B', by whole days.

    None when it cannot be parsed (and so cannot be shifted for sure).
    """
    value = value.strip()
    if not value:
        return value
    if vr == "DT":
        m = _DT_ONE.fullmatch(value)
        if m is not None and _valid_offset(m.group(2) or ""):
            return _shift_one(m.group(1), days, vr, m.group(2) or "")
    elif "-" not in value:
        return _shift_one(value, days, vr, "")
    # A range: each side is a value (or empty, for an open end). A DT side may carry its
    # own offset, so every '-' is tried as the range separator.
    for at in [i for i, ch in enumerate(value) if ch == "-"]:
        left, right = value[:at], value[at + 1 :]
        if "-" in right and vr == "DA":
            continue
        sides = [shift_date_value(s, days, vr) if s else "" for s in (left, right)]
        if (left or right) and None not in sides and "-" not in (sides[0] or ""):
            return f"{sides[0]}-{sides[1]}"
    return None


def _shift_one(value: str, days: int, vr: str, offset: str) -> str | None:
    head = value[:8]
    if not value[:4].isdigit():
        return None
    if len(value) < 8:
        if vr != "DT" or not value.isdigit() or len(value) not in (4, 6):
            return None
        # Year (or year-month) precision: shift a mid-period day and keep the precision.
        month = int(value[4:6]) if len(value) == 6 else 7
        try:
            d = _dt.date(int(value[:4]), month, 15) + _dt.timedelta(days=days)
        except (ValueError, OverflowError):
            return None
        return d.strftime("%Y%m%d")[: len(value)] + offset
    if not head.isdigit() or (vr == "DA" and len(value) != 8):
        return None
    try:
        d = _dt.date(int(head[:4]), int(head[4:6]), int(head[6:8])) + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{d.year:04d}{d.month:02d}{d.day:02d}" + value[8:] + offset


def shift_values(values: Iterable[str], days: int, vr: str) -> tuple[tuple[str, ...], int]:
    """Each DA/DT value shifted, and how many could not be parsed (those are emptied)."""
    out: list[str] = []
    bad = 0
    for v in values:
        shifted = shift_date_value(v, days, vr)
        if shifted is None:
            bad += 1
            shifted = ""
        out.append(shifted)
    return tuple(out), bad


# ---------------------------------------------------------------------- ages
def age_years(value: str) -> float | None:
    """An AS value ('047Y', '030M', ...) in years; None when it is not one."""
    m = _AGE.fullmatch(value.strip())
    if m is None:
        return None
    return int(m.group(1)) / AGE_UNITS[m.group(2)]


def cap_age(value: str) -> tuple[str, str] | None:
    """Safe Harbor's age cap: (new value, report action), or None to keep the value.

    Ages over 89 become one category (090Y); a value that is not an age is emptied.
    """
    text = value.rstrip("\x00 ")
    if not text:
        return None
    years = age_years(text)
    if years is None:
        return "", "age-unparseable-emptied"
    if years > 89:
        return "090Y", "age-capped"
    return None


def capped_age(text: Callable[[], list[str]]) -> Decision:
    """A kept AS element, at any depth: Safe Harbor's cap (ages over 89 become 090Y).

    A value that is not an age cannot be judged, so it is emptied.
    """
    found = cap_age("\\".join(text()))
    if found is None:
        return KEEP
    new, why = found
    return Decision(Kind.PUT, why, (new,)) if new else Decision(Kind.EMPTY, why)


# ---------------------------------------------------------------------- free text
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_YEAR = r"(?:1[89]|20)\d{2}"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MON = r"(?:0?[1-9]|1[0-2])"
#: Dates in the spellings people and devices write, as one alternation.
DATE_PATTERNS: Final = (
    rf"(?<!\d){_YEAR}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d*(?:\.\d+)?",  # 19510227[hhmmss]
    rf"(?<!\d){_YEAR}([-/. ]){_MON}\1{_DAY}(?!\d)",  # 1951-02-27, 1951/02/27, 1951.2.27
    rf"(?<!\d){_DAY}([-/. ]){_MON}\2(?:{_YEAR}|\d{{2}})(?!\d)",  # 27/02/1951, 27.02.51
    rf"(?<!\d){_MON}([-/. ]){_DAY}\3(?:{_YEAR}|\d{{2}})(?!\d)",  # 02/27/1951
    rf"(?<![^\W_]){_DAY}(?:st|nd|rd|th)?[-/. ]*{_MONTH}[-/., ]*(?:{_YEAR}|\d{{2}})(?!\d)",
    rf"(?<![^\W_]){_MONTH}[-/. ]*{_DAY}(?:st|nd|rd|th)?[-/., ]*(?:{_YEAR}|\d{{2}})(?!\d)",
    rf"(?<![^\W_]){_MONTH}[-/., ]*{_YEAR}(?!\d)",  # Feb 1951
)
#: International and national phone numbers: +CC then groups of digits (a national
#: trunk prefix '(0)' allowed); national forms with the trunk 0: pairs ('06 12 34 56 78'),
#: an area code and a number ('020 7946 0958', '0123/456789', '030-1234567').
PHONE_PATTERN: Final = (
    r"(?<![\w+])\+\d{1,3}(?:[ .\-]?(?:\(0\))?\(?\d{1,5}\)?){2,6}(?!\d)"
    r"|(?<![\w+./\-])0[1-9](?:[ .\-]\d{2}){4}(?![\w])"
    r"|(?<![\w+./\-])0[1-9]\d{0,3}[ /\-][1-9]\d{3,7}(?:[ \-]\d{2,4}){0,2}(?![\w.])"
    r"|(?<![\w+./\-])\(0[1-9]\d{0,3}\)\s?[1-9]\d{3,7}(?:[ \-]\d{2,4}){0,2}(?![\w.])"
)
#: Ages over 89 in free text ('93 yo', '93-year-old', '93y', 'age 93', 'aged: 95'): the
#: number is capped to Safe Harbor's '90+' category, as an AS value is capped to 090Y.
_OLD = r"(?:9\d|1[0-4]\d)"
AGE_PATTERNS: Final = (
    rf"(?<![\d.,/])0?{_OLD}(?=\s?-?\s?(?:years?|yrs?|y\.?\s?o\.?|y/o|y)(?![^\W\d_]))",
    rf"(?<=\bage)(?P<a>s?\s*(?:of\s*)?[:=]?\s*){_OLD}(?![\d.])",
    rf"(?<=\baged)(?P<b>\s*[:=]?\s*){_OLD}(?![\d.])",
)
_AGE_TEXT = re.compile("|".join(AGE_PATTERNS), re.IGNORECASE)
AGE_CAP_TEXT: Final = "90+"


def cap_ages_in_text(text: str) -> str:
    """Ages over 89 written in free text replaced by '90+' (Safe Harbor's category)."""
    if not _DIGIT.search(text):
        return text
    return _AGE_TEXT.sub(lambda m: (m.group("a") or m.group("b") or "") + AGE_CAP_TEXT, text)


# CJK blocks (their text has no spaces between words), by code point: a regex class of
# these ranges took ~2 ms to compile at every start-up.
_CJK_RANGES: Final = ((0x2E80, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F))


def _has_cjk(text: str) -> bool:
    """True when text holds a character of a CJK block (Han, Hangul, half-width kana)."""
    return any(lo <= ord(c) <= hi for c in text for lo, hi in _CJK_RANGES)


_WORD_SPLIT = re.compile(r"[\W_]+")
# Names: not inside a longer word (digits and punctuation are boundaries), or at a
# camel-case change ('seenByDoe'); the lookarounds are case-sensitive on purpose.
_NAME_START = r"(?:(?<![^\W\d_])|(?-i:(?<=[a-z])(?=[A-Z])))"
_NAME_END = r"(?:(?![^\W\d_])|(?-i:(?<=[a-z])(?=[A-Z])))"
_INITIAL = r"[^\W\d_]\.?(?![^\W\d_])"
_SEP = r"[\s_.,^=\-'/]*"
_ALNUM_BEFORE = r"(?<![^\W_])"
_DIGIT = re.compile(r"\d")
_SPACES = re.compile(r"[ \t]{2,}")
_ALNUM_AFTER = r"(?![^\W_])"
# Letters that do not decompose into a base letter and a mark, written the plain way.
_TRANSLIT: Final = {
    "ß": "ss", "ẞ": "SS", "ı": "i", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d",
    "Đ": "D", "ð": "d", "Ð": "D", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "þ": "th",
    "Þ": "TH", "ħ": "h", "Ħ": "H",
}  # fmt: skip
# German umlauts are also written as two letters (Müller, Mueller).
_UMLAUTS: Final = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_FOLDED: dict[str, str] = {}


def fold_char(ch: str) -> str:
    """One character as matching sees it: compatibility form, accents dropped, NFC.

    'ü' -> 'u', 'Ç' -> 'C', 'ό' -> 'ο', a full-width 'Ａ' -> 'A', a lone combining mark
    -> ''. Case is left to the regex (it folds case, Greek final sigma included).
    """
    found = _FOLDED.get(ch)
    if found is None:
        found = _TRANSLIT.get(ch)
        if found is None:
            parts = unicodedata.normalize("NFKD", ch)
            bare = "".join(c for c in parts if not unicodedata.combining(c))
            found = "".join(_TRANSLIT.get(c, c) for c in unicodedata.normalize("NFC", bare))
        if len(_FOLDED) < 65536:
            _FOLDED[ch] = found
    return found


def fold_text(text: str) -> tuple[str, list[int], list[int]]:
    """text folded for matching, with each folded character's source span (start, end).

    HTML character references ('M&uuml;ller') are read as the characters they stand for;
    a combining mark dropped by the fold belongs to the character before it, so a match
    ending there takes the mark too.
    """
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        j = i + 1
        folded = ch if ch < "\x80" and ch != "&" else ""
        if not folded:
            m = _ENTITY.match(text, i) if ch == "&" else None
            if m is not None and (ref := html.unescape(m.group())) != m.group():
                folded, j = "".join(fold_char(c) for c in ref), m.end()
            else:
                folded = ch if ch == "&" else fold_char(ch)
        if folded:
            for c in folded:
                out.append(c)
                starts.append(i)
                ends.append(j)
        elif ends:
            ends[-1] = j
        i = j
    return "".join(out), starts, ends


def fold_term(text: str) -> str:
    """A cleaning term folded as the text it is searched in is."""
    if text.isascii() and "&" not in text:
        return text
    return fold_text(text)[0]


def _sub(
    pattern: re.Pattern[str],
    replacement: str,
    text: str,
    accept: Callable[[str, int, int], bool] | None = None,
) -> str:
    """pattern's matches in text replaced, text compared in its folded form (fold_text).

    ``accept(folded, start, end)``, when given, says which matches are replaced.
    """
    if text.isascii() and "&" not in text and accept is None:
        return pattern.sub(replacement, text)
    folded, starts, ends = fold_text(text)
    pieces: list[str] = []
    last = 0
    for m in pattern.finditer(folded):
        a, b = m.span()
        if a == b or (accept is not None and not accept(folded, a, b)):
            continue
        start, end = max(starts[a], last), ends[b - 1]
        pieces.append(text[last:start])
        pieces.append(replacement)
        last = end
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _is_glued(folded: str, start: int, end: int) -> bool:
    """Whether a name found inside a run of letters is glued there, not part of a word.

    A match that is its whole run was a word (the bounded pattern had its chance); one
    inside an ordinary word ('ali' in 'LOCALIZER', 'lee' in 'SLEEP') stays
    (verify.values.glued_is_word, shared with ``medveil verify``).
    """
    a, b = letter_run(folded, start, end)
    if (a, b) == (start, end):
        return False
    return not glued_is_word(folded[a:b], start - a, end - a)


@dataclass(frozen=True)
class Identity:
    """The identifying values of one file, decoded: what free-text cleaning removes."""

    values: tuple[tuple[str, tuple[str, ...]], ...]  # (keyword, values) of TERM_KEYWORDS
    names: tuple[str, ...]  # every PN value anywhere in the file, sorted


def identity_of(values: Callable[[str], list[str]], names: Iterable[str]) -> Identity:
    """An Identity from a keyword lookup of decoded values and the file's PN values."""
    return Identity(
        tuple((kw, tuple(values(kw))) for kw in TERM_KEYWORDS),
        tuple(sorted(set(names))),
    )


def birth_date_spellings(value: str) -> list[str]:
    """The common spellings of one DA birth date ('19510227' -> '27/02/1951', ...)."""
    if len(value) != 8 or not value.isdigit():
        return [value] if value else []
    try:
        d = _dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return [value]
    y, m, dd = f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}"
    mon, month = d.strftime("%b"), d.strftime("%B")
    out = {value}
    for sep in ("-", "/", ".", " "):
        for mm, day in ((m, dd), (str(d.month), str(d.day))):
            out.update({f"{y}{sep}{mm}{sep}{day}", f"{day}{sep}{mm}{sep}{y}"})
            out.update({f"{mm}{sep}{day}{sep}{y}", f"{day}{sep}{mm}{sep}{y[2:]}"})
            out.add(f"{mm}{sep}{day}{sep}{y[2:]}")
    # Run together: YYMMDD, DDMMYY, MMDDYY, DDMMYYYY, MMDDYYYY.
    out.update({f"{y[2:]}{m}{dd}", f"{dd}{m}{y[2:]}", f"{m}{dd}{y[2:]}", f"{dd}{m}{y}"})
    out.add(f"{m}{dd}{y}")
    for name in (mon, month):
        for day in (dd, str(d.day)):
            out.update({f"{day} {name} {y}", f"{day}-{name}-{y}", f"{day}{name}{y}"})
            out.update({f"{name} {day}, {y}", f"{name} {day} {y}", f"{day}. {name} {y}"})
    return sorted(out)


def _flexible(text: str) -> str:
    """A regex for text whose punctuation and spacing may be written any way."""
    words = [w for w in _WORD_SPLIT.split(text) if w]
    return r"[\W_]*".join(re.escape(w) for w in words)


def _bounded(text: str) -> str:
    """text as a whole token: letters and digits do not continue it on either side.

    A side that is a digit only needs a non-digit beside it ('MRN12345' holds 12345).
    """
    body = _flexible(text)
    if text[:1] == "+":
        body = r"\+?\s*" + body  # an international prefix
    before = r"(?<!\d)" if text[:1].isdigit() else _ALNUM_BEFORE
    after = r"(?!\d)" if text[-1:].isdigit() else _ALNUM_AFTER
    return before + body + after


#: Identifiers and contact numbers, matched by their letters and digits (_id_pattern).
_ID_TERMS: Final = frozenset(ID_KEYWORDS)
#: Between two characters of an identifier in text: a few separators, or none.
_ID_SEP = r"[\W_]{0,3}"


def _id_pattern(value: str) -> str | None:
    """An identifier as text may write it: its letters and digits, separators optional.

    '004512873' is found as '4512873', '004-512-873' and '004 512 873'; 'A4512873' as
    'A-4512873'. Only identifiers of 6 or more letters and digits: a short one written
    with separators would match unrelated numbers ('12.5' for '125'), so those are left
    to the whole-token match. Leading zeros may be dropped (or up to four added) when
    four or more characters remain. A digit at either end needs a non-digit beside it
    (an unrelated longer number is not eaten); an identifier ending in a letter also
    takes the letters and digits glued after it ('RPID01XYA'). Each start tries a
    bounded pattern: linear.
    """
    skeleton = "".join(c for c in fold_term(value) if c.isalnum())
    if len(skeleton) < 6:
        return None
    body = skeleton.lstrip("0")
    zeros = len(skeleton) - len(body)
    if skeleton[0].isdigit() and len(body) >= 4:
        # Zeros dropped, or padded with a few more: a bounded run, so each start is too.
        head = f"(?:0{_ID_SEP}){{0,{zeros + 4}}}"
    else:
        head, body = "", skeleton
    core = head + _ID_SEP.join(re.escape(c) for c in body)
    before = r"(?<!\d)" if skeleton[0].isdigit() else ""
    after = r"(?!\d)" if body[-1].isdigit() else r"[^\W_]*"
    return before + core + after


def _name_parts(pn: str) -> list[str]:
    """The name components of a PN value and their words (length 2 and more).

    Family, given and middle names of each group; prefixes and suffixes (Mr, Dr, Jr)
    identify no one, and removing them would take 'MR' out of 'MR BRAIN'.
    """
    parts: set[str] = set()
    for group in pn.split("="):
        for comp in group.split("^")[:3]:
            comp = comp.strip()
            if len(comp) >= 2:
                parts.add(comp)
            parts.update(w for w in _WORD_SPLIT.split(comp) if len(w) >= 2)
    # Searched in folded text: accents dropped (and umlauts also written out as 'ue').
    out = set()
    for part in parts:
        nfc = unicodedata.normalize("NFC", part)
        out.add(fold_term(nfc))
        out.add(fold_term(nfc.translate(_UMLAUTS)))
    return sorted(p for p in out if len(p) >= 2)


@dataclass(frozen=True)
class TextCleaner:
    """Clean Descriptors on one file: its identity and the policy's patterns, compiled."""

    terms: re.Pattern[str]
    dates: re.Pattern[str] | None
    patterns: re.Pattern[str] | None
    replacement: str
    # Names of three letters or more inside a longer run of letters ('MRLEEBRAIN').
    glued: re.Pattern[str] | None = None
    # A series repeats its descriptions file after file: each text is cleaned once.
    _memo: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def identifies(self, text: str) -> bool:
        """Whether text holds one of the file's own identifying values (a name, an ID).

        Only the file's identity, not the generic patterns: a code of a coding scheme
        (a 10-digit SNOMED CT identifier) may look like a phone number or a date.
        """
        folded = fold_term(text)
        if self.terms.search(folded):
            return True
        if self.glued is None:
            return False
        return any(_is_glued(folded, *m.span()) for m in self.glued.finditer(folded))

    def clean(self, text: str) -> str:
        """text without the file's identifying values, dates and pattern matches."""
        found = self._memo.get(text)
        if found is not None:
            return found
        # Labelled patterns first: 'MRN DEMO-10001' goes whole, label and value together.
        # Each pass compares the text folded (accents, HTML references, compatibility
        # forms) with terms folded the same way, and cuts the matches from the original.
        out = text if self.patterns is None else _sub(self.patterns, self.replacement, text)
        out = _sub(self.terms, self.replacement, out)
        if self.glued is not None:
            out = _sub(self.glued, self.replacement, out, _is_glued)
        if self.dates is not None and _DIGIT.search(out):  # every date spelling has digits
            out = _sub(self.dates, self.replacement, out)
        out = cap_ages_in_text(out)
        cleaned = _SPACES.sub(" ", out).strip() if out != text else text
        if len(self._memo) >= 4096:
            self._memo.clear()
        self._memo[text] = cleaned
        return cleaned


def build_cleaner(
    identity: Identity, patterns: tuple[str, ...], replacement: str, remove_dates: bool
) -> TextCleaner:
    """The free-text cleaner for one identity (names, IDs, phrases, the birth date)."""
    values = dict(identity.values)
    names: set[str] = set()
    for kw in NAME_KEYWORDS:
        for pn in values.get(kw, ()):
            names.update(_name_parts(pn))
    for pn in identity.names:
        names.update(_name_parts(pn))
    latin = sorted((n for n in names if not _has_cjk(n)), key=lambda n: (-len(n), n))
    cjk = sorted((n for n in names if _has_cjk(n)), key=lambda n: (-len(n), n))
    alts: list[str] = []
    if latin:
        name = "(?:" + "|".join(_flexible(n) for n in latin) + ")"
        # Bounded repeats: a text of many one-letter words must not make the search
        # quadratic (each start would take every initial, then look for a name).
        follow = f"(?:{_SEP}(?:{name}|{_INITIAL})){{0,6}}"
        alts.append(f"{_NAME_START}(?:{_INITIAL}{_SEP}){{0,3}}{name}{follow}{_NAME_END}")
    glued = [n for n in latin if len(n) >= 3 and n.isalpha()]
    if cjk:
        # CJK text has no spaces between words: a CJK name is removed wherever it stands.
        alts.append("(?:" + "|".join(re.escape(n) for n in cjk) + ")+")
    tokens: set[str] = set()
    ids: set[str] = set()
    for kw, vals in identity.values:
        if kw in NAME_KEYWORDS:
            continue
        for v in vals:
            v = fold_term(unicodedata.normalize("NFC", v.strip()))
            if kw == "PatientBirthDate":
                tokens.update(birth_date_spellings(v))
            elif len(v) >= 2:
                tokens.add(v)  # IDs, phone numbers, addresses, institution names
                if kw in _ID_TERMS:
                    ids.add(v)
    # Identifiers by their letters and digits first: the glued forms take the whole token.
    by_size = sorted(ids, key=lambda t: (-len(t), t))
    alts[:0] = [p for p in (_id_pattern(t) for t in by_size) if p is not None]
    tokens = {t for t in tokens if _WORD_SPLIT.sub("", t)}
    alts.extend(_bounded(t) for t in sorted(tokens, key=lambda t: (-len(t), t)))
    terms = re.compile("|".join(alts) or r"(?!x)x", re.IGNORECASE)
    dates = dates_pattern() if remove_dates else None
    # Names glued into other letters ('MRLEEBRAIN', 'leebrain'): three letters or more,
    # judged by _is_glued so that 'LOCALIZER' keeps the 'ali' of a patient named Ali.
    glued_re = re.compile("|".join(re.escape(n) for n in glued), re.IGNORECASE) if glued else None
    return TextCleaner(terms, dates, text_patterns(tuple(patterns)), replacement, glued_re)


# The patterns every file's cleaner shares, compiled once per process (the Decider makes
# them before a run forks its workers, which then share them): ~2 ms of compiling.
@functools.cache
def dates_pattern() -> re.Pattern[str]:
    """Every date spelling of DATE_PATTERNS, as one case-insensitive pattern."""
    return re.compile("|".join(DATE_PATTERNS), re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def text_patterns(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """A policy's [clean] patterns and the phone numbers, as one case-insensitive pattern."""
    # A pattern's match is widened over the ID characters glued to it, so 'MRN DEMO-10001'
    # does not leave '-10001' behind.
    pats = [f"(?:{p})(?:[-/#.:]*[^\\W_]+)*" for p in patterns] + [PHONE_PATTERN]
    return re.compile("|".join(pats), re.IGNORECASE)


_CLEANERS: dict[tuple[Identity, tuple[str, ...], str, bool], TextCleaner] = {}


def cleaner_for(
    identity: Identity, patterns: tuple[str, ...], replacement: str, remove_dates: bool
) -> TextCleaner:
    """build_cleaner, memoised: a patient's files come in runs and share one cleaner."""
    key = (identity, patterns, replacement, remove_dates)
    found = _CLEANERS.get(key)
    if found is None:
        if len(_CLEANERS) >= 256:
            _CLEANERS.clear()
        found = _CLEANERS[key] = build_cleaner(identity, patterns, replacement, remove_dates)
    return found


# ---------------------------------------------------------------------- the patient
class PatientContext:
    """Per-file facts read before anything changes: the date offset and the identity.

    ``identity`` is called at most once, when text is first cleaned; the engine makes
    sure what it reads is the input as it was.
    """

    def __init__(
        self,
        patient_key: str,
        identity: Callable[[], Identity],
        keyed: Keyed,
        policy: Policy,
        compiled: CompiledPolicy,
    ) -> None:
        self.patient_key = patient_key
        self.offset = keyed.date_offset(patient_key, policy.shift_days)
        self._identity = identity
        self._policy = policy
        self._compiled = compiled
        self._cleaner: TextCleaner | None = None
        self._patient: TextCleaner | None = None

    @property
    def identity(self) -> Identity:
        """The file's identifying values (read once)."""
        found = self._identity()
        self._identity = lambda: found
        return found

    def cleaner(self) -> TextCleaner:
        """This file's free-text cleaner."""
        if self._cleaner is None:
            policy = self._policy
            self._cleaner = cleaner_for(
                self.identity,
                tuple(policy.clean_patterns),
                policy.clean_replacement,
                not self._compiled.full_dates,
            )
        return self._cleaner

    def clean_text(self, text: str) -> str:
        """Clean Descriptors on one text value."""
        return self.cleaner().clean(text)

    def patient_cleaner(self) -> TextCleaner:
        """A cleaner of the patient's own identity only (names, IDs, the birth date).

        What the post-check refuses to release: a code value is replaced when it holds
        any of it, while other persons' names in the file leave codes alone.
        """
        if self._patient is None:
            own = self.identity
            kept = tuple((kw, v) for kw, v in own.values if kw in IDENTITY_KEYWORDS)
            self._patient = cleaner_for(Identity(kept, ()), (), "", False)
        return self._patient


def patient_key_of(values: Callable[[str], list[str]]) -> str:
    """The key a patient's date offset derives from: the Patient ID, else the name."""
    return "\\".join(values("PatientID")) or "\\".join(values("PatientName"))


# ---------------------------------------------------------------------- decisions
_PSEUDONYM_KIND = {
    "PatientID": "patient",
    "OtherPatientIDs": "patient",
    "IssuerOfPatientID": "issuer",
}


#: Enumerated values of the codes that give a content item its structure (PS3.3 C.17.3).
_STRUCTURAL_CODES: Final[dict[int, frozenset[str]]] = {
    0x0040A040: frozenset(  # ValueType
        "TEXT NUM CODE DATETIME DATE TIME UIDREF PNAME COMPOSITE IMAGE WAVEFORM SCOORD"
        " SCOORD3D TCOORD CONTAINER TABLE".split()
    ),
    0x0040A010: frozenset(  # RelationshipType
        {"CONTAINS", "HAS PROPERTIES", "HAS OBS CONTEXT", "HAS ACQ CONTEXT", "INFERRED FROM"}
        | {"SELECTED FROM", "HAS CONCEPT MOD"}
    ),
    0x0040A050: frozenset({"SEPARATE", "CONTINUOUS"}),  # ContinuityOfContent
    # The shape of SCOORD / SCOORD3D items and the range of TCOORD items (enumerated).
    0x00700023: frozenset("POINT MULTIPOINT POLYLINE CIRCLE ELLIPSE POLYGON ELLIPSOID".split()),
    0x0040A130: frozenset("POINT MULTIPOINT SEGMENT MULTISEGMENT BEGIN END".split()),
}


def dummy_count(tag: int) -> int:
    """How many values a dummy of this element holds: the least its dictionary VM allows."""
    try:
        vm = dictionary_VM(tag)
    except KeyError:
        return 1
    head = vm.split("-", 1)[0]
    return int(head) if head.isdigit() and int(head) > 0 else 1


#: A rule action of this layer: each component of a DICOMDIR file path gets a keyed name.
FILE_ID_ACTION: Final = "file-id"
_WHY = "medveil-decide"
#: Elements no table row names that hold identity all the same: the decision layer's
#: rules for them (a policy rule for the tag wins). RTV identifiers name the sending
#: device or stream; a DICOMDIR's file-set ID and file paths are free names chosen by
#: the writer (a patient's name or ID, often).
_SUPPLEMENT: Final = {
    0x00020035: Rule("(0002,0035)", "RTVSourceIdentifier", "X", _WHY, True, (), "RTV source"),
    0x00020036: Rule("(0002,0036)", "RTVFlowIdentifier", "X", _WHY, True, (), "RTV flow"),
    0x00041130: Rule("(0004,1130)", "FileSetID", "D", _WHY, True, (), "file-set name"),
    0x00041141: Rule(
        "(0004,1141)", "FileSetDescriptorFileID", FILE_ID_ACTION, _WHY, True, (), "file path"
    ),
    0x00041500: Rule("(0004,1500)", "ReferencedFileID", FILE_ID_ACTION, _WHY, True, (), "path"),
}
TEXT_VALUE: Final = 0x0040A160
CODE_MEANING: Final = 0x00080104
#: Code values (short, long, URN): a site's own scheme codes whatever it likes, the
#: patient's ID or name included; such a value gets a keyed stand-in.
CODE_VALUES: Final = (0x00080100, 0x00080119, 0x00080120)
CODE_VALUE_ACTION: Final = "code-value"
CODING_SCHEME: Final = 0x00080102
#: The safety net's verdict that Clean Structured Content turns into cleaning.
_NET = "safety-net"
#: Sequences whose D is a removal: every IOD that has them allows them absent (Type 3,
#: or 1C present only when there is such content), while a dummy item would break the
#: rules of their items (a GraphicLayer no layer defines, one-point graphics, codes
#: that are not enumerated values).
OPTIONAL_SEQUENCES: Final = frozenset(
    {
        0x00700001,  # GraphicAnnotationSequence: 1C, required only if annotations exist
        0x0040B020,  # WaveformAnnotationSequence: Type 3
    }
)
#: Text attributes Clean Descriptors (or the net's clean-list) cleans that are Type 1
#: in the IODs that hold them (PS3.3): cleaned to nothing, they get the dummy instead.
_TYPE1_TEXT: Final = frozenset(
    t
    for t in (
        tag_for_keyword(k)
        for k in (
            "RTPlanLabel",
            "StructureSetLabel",
            "SegmentLabel",
            "AnnotationGroupLabel",
            "RadiationGenerationModeLabel",
            "TreatmentPositionGroupLabel",
            "EntityLabel",
            "RTPrescriptionLabel",
            "RTToleranceSetLabel",
            "RTTreatmentApproachLabel",
            "UnformattedTextValue",  # 1C: the text of a text object
        )
    )
    if t is not None
)
_FREE_TEXT_KINDS: Final = frozenset({"free_text", "ids"})
_SEEN_AS_IDENTIFYING: dict[tuple[int, str], bool] = {}


def seen_as_identifying(tag: int, vr: str) -> bool:
    """Whether the post-check and ``verify`` learn this element's whole value as identifying.

    Such a value (AdditionalPatientHistory, Occupation, ...) may not be released as it
    was, whatever it says: cleaning it must change it, or it is removed.
    """
    key = (tag, vr)
    found = _SEEN_AS_IDENTIFYING.get(key)
    if found is None:
        found = not tag >> 16 & 1 and (
            classify(tag, vr, keyword_for_tag(tag) or "") in _FREE_TEXT_KINDS
        )
        if len(_SEEN_AS_IDENTIFYING) < 65536:
            _SEEN_AS_IDENTIFYING[key] = found
    return found


def is_local_scheme(designator: str | None) -> bool:
    """True for a coding scheme a site made up (99xxx, L, L-..., LOCAL) or an absent one.

    The meanings of such codes are free text written by the site (HL7 table 0396 reserves
    '99zzz' and 'L' for local schemes); an item without a designator is not trusted either.
    """
    d = (designator or "").strip().upper()
    return not d or d.startswith("99") or d == "L" or d.startswith(("L-", "LOCAL"))


class Decider:
    """Answers, for one policy and secret, what happens to each element."""

    def __init__(self, policy: Policy, keyed: Keyed) -> None:
        self.policy = policy
        self.compiled = policy.compile()
        self.keyed = keyed
        self.mode = policy.combined_codes
        self._static: dict[tuple[int, str, bool, int], tuple[Rule, Decision]] = {}
        self.by_tag: Mapping[int, Rule] = self.compiled.by_tag
        structured = policy.has(Option.CLEAN_STRUCTURED_CONTENT)
        net_text = self.by_tag.get(TEXT_VALUE)
        if structured and net_text is not None and net_text.decided_by == _NET:
            # The net empties report text; cleaning structured content means cleaning it
            # as a descriptor is cleaned instead (a rule the policy set itself stays).
            self.by_tag = {
                **self.by_tag,
                TEXT_VALUE: Rule(
                    net_text.selector,
                    net_text.keyword,
                    "C",
                    Option.CLEAN_STRUCTURED_CONTENT.name.lower(),
                    net_text.in_std_comp_iod,
                    (),
                    "TEXT content item: cleaned like a descriptor",
                ),
            }
        #: The meanings of local codes are cleaned as free text (when the policy keeps them).
        self.cleans_code_meaning = structured or policy.has(Option.CLEAN_DESCRIPTORS)
        # What every text cleaner of this policy uses (the file's and the patient's own).
        dates_pattern()
        text_patterns(tuple(policy.clean_patterns))
        text_patterns(())
        if self.cleans_code_meaning:
            # A code value the policy keeps is checked against the file's identity: one
            # that holds the patient's ID or name (a local code made of it) is replaced.
            by_tag = dict(self.by_tag)
            for tag in CODE_VALUES:
                kept = by_tag.get(tag)
                if kept is not None and kept.action == "K":
                    by_tag[tag] = Rule(
                        kept.selector,
                        kept.keyword,
                        CODE_VALUE_ACTION,
                        kept.decided_by,
                        kept.in_std_comp_iod,
                        (),
                        "code value: replaced when it holds the patient's identity",
                    )
            self.by_tag = by_tag
        self._net_clean(policy)

    def _net_clean(self, policy: Policy) -> None:
        """Safety-net rows that must not be emptied: cleaned (C) or a dummy (X/D) instead.

        The clean-list (medveil/data/safety_net_clean.csv) names Type 1 labels and
        identifiers the net would empty; an empty Type 1 value makes the output invalid.
        """
        cleans = policy.has(Option.CLEAN_DESCRIPTORS)
        changed: dict[int, Rule] = {}
        for entry in safety_net_clean().values():
            tag = tag_for_keyword(entry.keyword)
            found = self.by_tag.get(tag) if tag is not None else None
            if tag is None or found is None or found.decided_by != _NET or found.action != "X/Z":
                continue  # a table row, an option or the operator decided it
            action = "C" if entry.action == "C" and cleans else "X/D"
            changed[tag] = Rule(
                found.selector,
                found.keyword,
                action,
                _NET,
                found.in_std_comp_iod,
                (),
                f"clean-list: {entry.reason}",
            )
        if changed:
            self.by_tag = {**self.by_tag, **changed}

    def context(
        self, values: Callable[[str], list[str]], identity: Callable[[], Identity]
    ) -> PatientContext:
        """The patient context of one file from its decoded values."""
        return PatientContext(
            patient_key_of(values), identity, self.keyed, self.policy, self.compiled
        )

    def rule(self, tag: int) -> tuple[Route, Rule | None]:
        """The route of a tag, with its rule when the route is Route.RULE."""
        rule = self.compiled.by_tag.get(tag)
        if rule is not None:
            return Route.RULE, rule
        group = tag >> 16
        if group & 1:
            return Route.PRIVATE, None
        if tag & 0xFFFF == 0 and group != 2:
            return Route.DROP, None
        rule = self.compiled.rule_for(tag) or _SUPPLEMENT.get(tag)
        return (Route.UNKNOWN, None) if rule is None else (Route.RULE, rule)

    def file_id(self, component: str) -> str:
        """A keyed stand-in for one component of a DICOMDIR file path (8 CS characters)."""
        text = component.strip()
        return self.keyed.pseudonym("file-id", text, 8) if text else ""

    def code_meaning(
        self,
        vr: str,
        rule: Rule,
        scheme: list[str] | None,
        empty: bool,
        text: Callable[[], list[str]],
        ctx: PatientContext,
    ) -> Decision:
        """CodeMeaning beside CodingSchemeDesignator ``scheme`` (None: the item has none).

        A local code's meaning is the site's own words: when the policy keeps the meaning,
        it is cleaned as a descriptor is; a standard code's meaning is the policy's to say.
        """
        decision = self.act(CODE_MEANING, vr, rule, empty, text, ctx)
        if (
            decision.kind is Kind.KEEP
            and self.cleans_code_meaning
            and vr in TEXT_VRS
            and is_local_scheme("\\".join(scheme or ()))
        ):
            values = text()
            cleaned = tuple(ctx.clean_text(v) for v in values)
            if cleaned != tuple(values):
                return Decision(Kind.PUT, "C-local-code", cleaned)
        return decision

    def map_uids(self, uids: Iterable[str]) -> list[str]:
        """Keyed replacements for UIDs; well-known ones (SOP classes, ...) stay as they are."""
        return [u if is_well_known_uid(u) else self.keyed.uid(u) for u in uids]

    def pseudonyms(self, vr: str, rule: Rule, values: Iterable[str]) -> tuple[str, ...]:
        """Keyed pseudonyms for the values of one element, sized for its VR."""
        kind = _PSEUDONYM_KIND.get(rule.keyword, rule.keyword or rule.selector)
        prefix = self.policy.pseudonym_prefix
        length = self.policy.pseudonym_length
        limit = MAX_LEN.get(vr, 64)
        if len(prefix) + length > limit:
            prefix, length = "", min(length, limit)
        out = []
        for v in values:
            text = str(v).strip()
            out.append(self.keyed.pseudonym(kind, text, length, prefix) if text else "")
        return tuple(out)

    def act(
        self,
        tag: int,
        vr: str,
        rule: Rule,
        empty: bool,
        text: Callable[[], list[str]],
        ctx: PatientContext,
    ) -> Decision:
        """What one element with a rule comes to.

        ``text`` gives the element's decoded text values (asked only when needed); ``empty``
        says the value (or a sequence's item list) holds nothing.
        """
        key = (tag, vr, empty, id(rule))
        found = self._static.get(key)
        if found is not None and found[0] is rule:
            return found[1]
        asked = False

        def read() -> list[str]:
            nonlocal asked
            asked = True
            return text()

        decision = self._act(tag, vr, rule, empty, read, ctx)
        if not asked and len(self._static) < 65536:
            # Decided without reading the value: the same for every file. The rule is
            # kept with the answer, so its id is not reused by another rule meanwhile.
            self._static[key] = (rule, decision)
        return decision

    def _act(
        self,
        tag: int,
        vr: str,
        rule: Rule,
        empty: bool,
        text: Callable[[], list[str]],
        ctx: PatientContext,
    ) -> Decision:
        action = rule.action
        if action == "X":
            return REMOVED
        if vr_conflict(tag, vr):
            return Decision(Kind.REMOVE, "X-vr-mismatch")
        if action == "K":
            return capped_age(text) if vr == "AS" else KEEP
        if action in COMBINED_ACTIONS:
            action = resolve_combined(
                action, vr=vr, in_std_comp_iod=rule.in_std_comp_iod, empty=empty, mode=self.mode
            )
            if action == "X":
                return REMOVED
            if action == "K":
                return capped_age(text) if vr == "AS" else KEEP
        if action == FILE_ID_ACTION:
            if vr != "CS":
                return REMOVED
            values = text()
            return Decision(Kind.PUT, "file-id", tuple(self.file_id(v) for v in values))
        if action == CODE_VALUE_ACTION:
            if vr not in TEXT_VRS:
                return REMOVED
            values = text()
            cleaner = ctx.patient_cleaner()
            if not any(cleaner.identifies(v) for v in values):
                return KEEP
            return Decision(Kind.PUT, CODE_VALUE_ACTION, self.pseudonyms(vr, rule, values))
        if vr == "SQ":
            return self._sequence(tag, action, empty)
        if action == "D" and vr == "UI":
            action = "U"  # a dummy UID would be one shared by every file: map it instead
        if action == "Z":
            return Decision(Kind.EMPTY, "Z")
        if action == "D":
            if empty:
                return Decision(Kind.KEEP, "D")  # empty is already free of identity
            if vr in DUMMY:
                return Decision(Kind.PUT, "D", (DUMMY[vr],))
            return Decision(Kind.ZERO, "D")
        if action == "U":
            if vr != "UI":
                return Decision(Kind.KEEP if empty else Kind.EMPTY, "U")
            if empty:
                return Decision(Kind.KEEP, "U")
            return Decision(Kind.PUT, "U", tuple(self.map_uids(text())))
        if action == "pseudonym":
            if vr not in TEXT_VRS:
                return REMOVED
            values = text()
            if not values:
                return Decision(Kind.KEEP, "pseudonym")
            return Decision(Kind.PUT, "pseudonym", self.pseudonyms(vr, rule, values))
        if action == "C":
            return self._clean(tag, vr, empty, text, ctx)
        if action == LOOKUP_ACTION:
            return self._lookup(tag, vr, rule, empty, text)
        return Decision(Kind.GENERAL, action)

    def _lookup(
        self, tag: int, vr: str, rule: Rule, empty: bool, text: Callable[[], list[str]]
    ) -> Decision:
        """A [lookup] table's site-assigned value for each original value.

        A value the table lacks quarantines the file (or, with on_missing =
        "keep-pseudonym", gets a keyed pseudonym). The reason names the element and the
        table, never the value: the table and the value are identifiers.
        """
        lookup = self.compiled.lookups[tag]
        if empty or vr not in TEXT_VRS:
            return Decision(Kind.KEEP if empty else Kind.REMOVE, LOOKUP_ACTION)
        out: list[str] = []
        for value in text():
            original = value.strip()
            if not original:
                out.append("")
                continue
            found = lookup.table.get(original)
            if found is not None:
                out.append(found)
            elif lookup.on_missing == "keep-pseudonym":
                out.extend(self.pseudonyms(vr, rule, [original]))
            else:
                raise QuarantineError(
                    f"{rule.keyword} {tag_text(tag)}: value not in the [lookup] table"
                    f" {lookup.path.replace(chr(92), '/').rsplit('/', 1)[-1]}"
                )
        return Decision(Kind.PUT, LOOKUP_ACTION, tuple(out))

    def _sequence(self, tag: int, action: str, empty: bool) -> Decision:
        if action == "D" and tag in OPTIONAL_SEQUENCES:
            return Decision(Kind.REMOVE, "X-optional-sequence")
        if action in ("C", "U"):
            # The items are cleaned by their own rules (U: the UIDs inside are replaced).
            return Decision(Kind.KEEP, action)
        if action == "Z" or empty:
            return Decision(Kind.EMPTY if not empty else Kind.KEEP, action)
        if action == "D":
            return Decision(Kind.DUMMY_ITEMS, "D")
        return REMOVED

    def _clean(
        self, tag: int, vr: str, empty: bool, text: Callable[[], list[str]], ctx: PatientContext
    ) -> Decision:
        """C: dates shifted (or emptied), text cleaned, AE titles replaced, binaries emptied."""
        if vr in ("DA", "DT"):
            if self.compiled.shift_dates:
                if empty:
                    return Decision(Kind.KEEP, "C")
                shifted, bad = shift_values(text(), ctx.offset, vr)
                return Decision(Kind.PUT, "C", shifted, ("date-unparseable-emptied",) * bad)
            if self.compiled.full_dates:
                return Decision(Kind.KEEP, "C")
            return Decision(Kind.EMPTY, "C")
        if vr == "TM":
            return Decision(Kind.KEEP, "C")  # whole-day shifts leave times of day as they were
        if vr == "AE":
            values = text()
            if not values:
                return Decision(Kind.KEEP, "C")
            ae = Rule(tag_text(tag), "AE", "pseudonym", "clean")
            return Decision(Kind.PUT, "C", self.pseudonyms(vr, ae, values))
        if vr in TEXT_VRS:
            values = text()
            cleaned = tuple(ctx.clean_text(v) for v in values)
            if seen_as_identifying(tag, vr) and any(
                c == v and v.strip() for c, v in zip(cleaned, values, strict=True)
            ):
                # The post-check refuses such a value anywhere in the output: a value
                # cleaning leaves as it was goes (the file is released without it).
                return Decision(Kind.REMOVE, "X-identifying-text")
            if cleaned == tuple(values):
                return Decision(Kind.KEEP, "C")
            if tag in _TYPE1_TEXT and not any(c.strip() for c in cleaned):
                # Cleaned to nothing: an empty Type 1 value is invalid, the dummy is not.
                return Decision(Kind.PUT, "C-dummy", (DUMMY[vr],))
            return Decision(Kind.PUT, "C", cleaned)
        # Binary or numeric values cannot be cleaned of text reliably: empty them.
        return Decision(Kind.KEEP if empty else Kind.EMPTY, "C")

    def unknown(
        self, tag: int, vr: str, empty: bool, text: Callable[[], list[str]], ctx: PatientContext
    ) -> Decision:
        """What an element no rule names comes to."""
        if not self.compiled.keeps_unknown(tag):
            return REMOVED
        if not in_dictionary(tag):
            # An even tag the standard does not define is a misparse or a vendor abuse:
            # nobody can say what it holds, so it is not released.
            return Decision(Kind.REMOVE, "X-undefined-tag")
        if vr_conflict(tag, vr):
            return Decision(Kind.REMOVE, "X-vr-mismatch")
        if vr in ("DA", "DT") and self.compiled.shift_dates and not empty:
            shifted, bad = shift_values(text(), ctx.offset, vr)
            return Decision(Kind.PUT, "", shifted, ("date-unparseable-emptied",) * bad)
        if vr == "AS":
            return capped_age(text)
        return KEEP

    def dummy_item_element(
        self, tag: int, vr: str, empty: bool, text: Callable[[], list[str]]
    ) -> Decision:
        """An element inside an item of a sequence whose action is D: its dummy.

        The item keeps its structure (so Type 1 content is still present), each value
        replaced by its VR's dummy; private elements go. The structural codes of content
        items (value type, relationship type, continuity) stay when they hold one of
        their enumerated values, so the item stays valid; any other value is a dummy.
        """
        if tag >> 16 & 1 or (tag & 0xFFFF == 0):
            return Decision(Kind.REMOVE)
        allowed = _STRUCTURAL_CODES.get(tag)
        if allowed is not None and not empty and set(text()) <= allowed:
            return KEEP
        if vr == "SQ":
            return Decision(Kind.KEEP if empty else Kind.DUMMY_ITEMS)
        if empty:
            return Decision(Kind.KEEP)
        if vr == "UI":
            return Decision(Kind.PUT, "", tuple(self.map_uids(text())))
        if vr in DUMMY:
            # As many values as the element must hold (ImagePositionPatient: 3).
            return Decision(Kind.PUT, "", (DUMMY[vr],) * dummy_count(tag))
        return Decision(Kind.ZERO)

    @staticmethod
    def dummy_is_fixed(tag: int, vr: str) -> bool:
        """True when dummy_item_element's answer never depends on the element's value."""
        return vr != "UI" and tag not in _STRUCTURAL_CODES

    def plan_private(
        self,
        tags: list[_T],
        creators: dict[tuple[int, int], str],
        written: Callable[[_T], tuple[str | None, bytes | None]],
    ) -> list[tuple[_T, Verdict, Rule | None]]:
        """The private-block verdicts of one dataset (see :func:`plan_private`).

        ``written(tag)`` gives an element as the file holds it: the VR written in the file
        (None for Implicit VR, "SQ" for a value read as items) and the raw value bytes
        (None for a sequence). It is asked only for elements Retain Safe Private lists.
        """
        compiled = self.compiled
        safe: Callable[[str, _T], str | None] | None = None
        if compiled.retain_safe_private:

            def safe(creator: str, tag: _T) -> str | None:
                if compiled.safe_private(creator, tag >> 16, tag & 0xFF) is None:
                    return None
                vr, value = written(tag)
                return compiled.safe_private_verdict(creator, int(tag), vr, value)

        return plan_private(tags, creators, compiled.private_overrides, safe)


# Retain Safe Private's verdicts (SafePrivateVerdict values) as this layer's.
_BY_SAFE: Final = {v.value: v for v in (Verdict.SAFE, Verdict.SAFE_RECURSE, Verdict.NOT_SAFE)}


def plan_private(
    tags: list[_T],
    creators: dict[tuple[int, int], str],
    overrides: Mapping[tuple[str, int, int], Rule],
    safe: Callable[[str, _T], str | None] | None,
) -> list[tuple[_T, Verdict, Rule | None]]:
    """What happens to each private element of one dataset, in the order it is reported.

    ``safe(creator, tag)`` is Retain Safe Private's verdict (a
    :class:`~medveil.policy.choices.SafePrivateVerdict` value, or None when the row is not
    listed); None when the option is off. Data elements come first, then the low ones
    (creators and stray elements).
    """
    remove, act, keep, creator_keep = (
        Verdict.REMOVE,
        Verdict.ACT,
        Verdict.KEEP,
        Verdict.CREATOR,
    )  # bound once: an Enum member read through its class costs a lookup per use
    by_safe = _BY_SAFE
    plan: list[tuple[_T, Verdict, Rule | None]] = []
    keep_blocks: set[tuple[int, int]] = set()
    for tag in tags:
        group, elem_no = tag >> 16, tag & 0xFFFF
        if elem_no < 0x1000:
            continue  # creators (and stray low elements) are decided below
        block = elem_no >> 8
        creator = creators.get((group, block))
        key = (creator or "", group, elem_no & 0xFF)
        rule = overrides.get(key) if creator is not None else None
        if rule is not None:
            if rule.action == "X":
                plan.append((tag, remove, None))
                continue
            keep_blocks.add((group, block))
            plan.append((tag, keep if rule.action == "K" else act, rule))
            continue
        said = safe(creator, tag) if creator is not None and safe is not None else None
        verdict = by_safe.get(said) if said is not None else None
        if verdict is not None:
            if verdict is not Verdict.NOT_SAFE:
                keep_blocks.add((group, block))
            plan.append((tag, verdict, None))
            continue
        plan.append((tag, remove, None))
    for tag in tags:
        group, elem_no = tag >> 16, tag & 0xFFFF
        if elem_no >= 0x1000:
            continue
        if 0x0010 <= elem_no <= 0x00FF and (group, elem_no) in keep_blocks:
            plan.append((tag, creator_keep, None))
            continue
        plan.append((tag, remove, None))
    return plan
