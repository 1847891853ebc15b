"""Learn the identifying values of the originals, by VR and by the verifier's own keywords.

This module deliberately does not import the de-identification engine's tag lists or
profiles: an auditor that shares the engine's blind spots proves nothing. An element is
identifying when

* its VR is PN (``names``: the whole value, every ``^``/``=`` component, and "Family
  Given" / "Given Family" as free text would write them), DA or DT
  (``dates``: the 8-digit date), or UI (``uids``: unless the UID is in pydicom's UID
  dictionary, i.e. a SOP class, transfer syntax or other DICOM constant, or is the
  Implementation Class UID of the writing software), or AE (``ids``: application entity
  titles name machines of the site);
* it is a text element (LO, SH, UC, ST, LT, UT) whose keyword ends in ``ID``, ``IDs``,
  ``Identifier``, ``Number`` or ``Numbers`` or names an issuer (``ids``: PatientID,
  OtherPatientIDs, IssuerOfPatientID, AccessionNumber, StudyID, DeviceSerialNumber,
  PatientTelephoneNumbers, ...);
* it is a text element whose keyword contains one of :data:`IDENTITY_KEYWORDS`
  (``free_text``: addresses, institution, department and station names, locations, patient
  comments and history, ...);
* it is private (odd group, not a private creator) and holds text (LO, SH, UC, ST, LT, UT,
  or UN that decodes to printable text): ``private``; a private value that reads as a whole
  DA/DT value (YYYYMMDD...) is a ``dates`` value instead, checked in date elements and in
  private values that read as dates.

Counting rule (not applied with ``strict=True``): a value is not searched for when, after
normalisation (``^`` as space, case-folded, trimmed), it is shorter than :data:`MIN_LENGTH`
(4) characters, has no letter or digit, is in :data:`STOP_WORDS`, is a one-character name
component, or (names, dates and UIDs excepted) also occurs in the originals, as a whole or as
a word-bounded part, in a coded value of a standard element (any CS value, Manufacturer,
ManufacturerModelName, SoftwareVersions, ImplementationVersionName): vendors repeat such
codes in their private groups, and an institution named like its scanner's maker says
nothing about the patient. CS values of private elements are codes, not
free text, and are learned only with ``strict``.

Never searched for, not even with ``strict``: well-known UIDs (DICOM constants present in
every valid file), the Implementation Class UID of the software that wrote an original
(wherever else it is repeated, e.g. InstanceCreatorUID), and coding scheme identification
(CodingScheme* elements name public terminologies).
"""

from __future__ import annotations

import bisect
import io
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from medveil.dicom.strict import StructureError, check_structure
from medveil.verify.hidden import hidden_in_spans
from medveil.verify.inputs import Item
from medveil.verify.matcher import SubstringMatcher, few_matcher, is_spaceless
from medveil.verify.rawscan import layouts, looks_like_dicom

try:
    from pydicom._uid_dict import UID_dictionary as _UID_DICT
except ImportError:  # pragma: no cover - pydicom layout change
    _UID_DICT = {}

#: Kinds of learned values, in priority order when one value has several kinds.
KINDS: tuple[str, ...] = ("names", "ids", "uids", "dates", "free_text", "private")

_RANK = {kind: i for i, kind in enumerate(KINDS)}
# A letter or digit (what str.isalnum accepts, as one C search instead of a loop).
_ALNUM = re.compile(r"[^\W_]")

#: Values shorter than this (after normalisation) are not counted unless ``strict``.
MIN_LENGTH = 4

#: Words that are not identifying on their own (upper case; compared case-insensitively).
STOP_WORDS: frozenset[str] = frozenset(
    {
        "YES",
        "NO",
        "NONE",
        "NULL",
        "N/A",
        "UNKNOWN",
        "ANONYMOUS",
        "ANONYMIZED",
        "ANONYMISED",
        "DEIDENTIFIED",
        "DE-IDENTIFIED",
        "REMOVED",
        "REDACTED",
        "PATIENT",
        "PHANTOM",
        "TEST",
        "OTHER",
        "MALE",
        "FEMALE",
        "NORMAL",
        "ORIGINAL",
        "PRIMARY",
        "SECONDARY",
        "DERIVED",
        "AXIAL",
        "LOCALIZER",
        "UNSPECIFIED",
        "NOT APPLICABLE",
        "DEFAULT",
        "EMPTY",
    }
)

#: Keyword fragments of text elements that carry identity (the verifier's own list).
IDENTITY_KEYWORDS: tuple[str, ...] = (
    "Address",
    "Telephone",
    "Telecom",
    "Institution",
    "Department",
    "StationName",
    "Location",
    "Residence",
    "Country",
    "Region",
    "Occupation",
    "MilitaryRank",
    "BranchOfService",
    "MedicalAlerts",
    "Allergies",
    "PatientHistory",
    "PatientComments",
    "PatientState",
    "InsurancePlan",
    "ResponsibleOrganization",
    "ReligiousPreference",
    "EthnicGroup",
    "BirthName",
)

_BIRTH_DATE = 0x00100030
_ID_PIECES = re.compile(r"[^0-9A-Za-z]+")
_STUDY_TIMES = frozenset({0x00080030, 0x00080031})  # StudyTime, SeriesTime
# Text VRs whose runs of letters are looked at for glued names (Learner.finish).
GLUE_VRS = frozenset({"CS", "SH", "LO", "ST", "LT", "UT", "UC", "AE"})
_MAX_RUNS = 1 << 16
_ID_KEYWORD = re.compile(r"(?:ID|IDs|Identifier|Identifiers|Number|Numbers)$|Issuer")
_TEXT_VRS = frozenset({"LO", "SH", "UC", "ST", "LT", "UT"})
_LEAD_DATE_RE = re.compile(r"(\d{8})\d")
# A whole value that reads as a DA or DT (a private date the parser sees only as UN text).
_DATE_VALUE_RE = re.compile(
    r"(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(\d{2,6}(\.\d{1,6})?)?([+-]\d{4})?"
)
_DATE_RE = re.compile(r"(?<!\d)(\d{4})\.?(\d{2})\.?(\d{2})(?!\d)")
# Values of these standard elements are vendor/device codes repeated in private groups.
_BENIGN_KEYWORDS = frozenset(
    {"Manufacturer", "ManufacturerModelName", "SoftwareVersions", "ImplementationVersionName"}
)
# Longer values are cut (before a word break): a shared 1 KiB prefix is a leak on its own.
MAX_VALUE_CHARS = 1024
MAX_SPELLINGS = 4
_MAX_SOURCES = 16


_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


# ---------------------------------------------------------------------- glued names
# Short tokens of imaging descriptors that join the vocabulary's words ('MR', 'T1', ...).
_SHORT_TOKENS = frozenset(
    "mr ct us pt cr dx xa rf nm pet spect dwi adc swi fl flair gre se tse fse tr te ti ax "
    "sag cor tra obl pd st ce w c r l lt rt bi of in on to and or the with wo fs hr lr s es ed "
    "ing er ers ly".split()
)
_LETTER_RUN = re.compile(r"[^\W\d_]+")
_VOCABULARY: frozenset[str] | None = None


def vocabulary() -> frozenset[str]:
    """Words of ordinary imaging text (lower case): pydicom's data dictionary names and
    the meanings of its coded concepts (CIDs: anatomy, procedures, findings).

    Built on first use (about a second): only text where a name sits inside a longer
    run of letters needs it.
    """
    global _VOCABULARY
    if _VOCABULARY is None:
        from pydicom._dicom_dict import DicomDictionary

        words: set[str] = set(_SHORT_TOKENS)
        texts = [str(v[2]) for v in DicomDictionary.values()]
        try:
            from pydicom.sr._concepts_dict import concepts

            for by_kw in concepts.values():
                for by_code in by_kw.values():
                    entries: dict[str, tuple[str, object]] = by_code  # type: ignore[assignment]
                    texts.extend(str(meaning) for meaning, _cids in entries.values())
        except Exception:  # an older pydicom without the concepts: the dictionary alone
            pass
        for t in texts:
            words.update(w.lower() for w in _LETTER_RUN.findall(t) if len(w) >= 3)
        _VOCABULARY = frozenset(words)
    return _VOCABULARY


def glued_is_word(run: str, start: int, end: int) -> bool:
    """Whether run[start:end], a name found inside the letter run ``run``, is part of an
    ordinary word rather than a name glued to other words.

    True when the run splits wholly into vocabulary words (or short descriptor tokens)
    one of which strictly contains the match ('lee' in 'SLEEPSTUDY', 'ali' in
    'LOCALIZER'); a match that is a whole segment ('ROSEBRAIN' for Rose), crosses two, or
    sits in a run that is not made of known words ('MRLEEBRAIN') is a glued name.
    """
    low = run.lower()
    n = len(low)
    if n > 64:
        return False  # no segmentation of a long run is tried: the name is cut
    vocab = vocabulary()
    # ends[i]: the segments (a, i) of some full segmentation of low[:i].
    reach = [False] * (n + 1)
    reach[0] = True
    segs: list[list[int]] = [[] for _ in range(n + 1)]
    for i in range(n):
        if not reach[i]:
            continue
        for j in range(i + 1, n + 1):
            if low[i:j] in vocab:
                reach[j] = True
                segs[j].append(i)
    if not reach[n]:
        return False
    # Segments on some path from 0 to n: walk back from n.
    good = [False] * (n + 1)
    good[n] = True
    for j in range(n, 0, -1):
        if good[j]:
            for i in segs[j]:
                if reach[i]:
                    good[i] = True
    for j in range(1, n + 1):
        if not good[j]:
            continue
        for i in segs[j]:
            if good[i] and i <= start and end <= j and (i, j) != (start, end):
                return True
    return False


def letter_run(text: str, start: int, end: int) -> tuple[int, int]:
    """The run of letters around text[start:end] (letters only: digits and _ end it)."""
    a, b = start, end
    while a > 0 and text[a - 1].isalpha():
        a -= 1
    while b < len(text) and text[b].isalpha():
        b += 1
    return a, b


def unaccented(text: str) -> list[str]:
    """Latin text as typed without its accents (Müller: muller, mueller); [] if unchanged."""
    if text.isascii():
        return []  # NFKD and the German spellings leave ASCII as it is
    plain = "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )
    out = {plain, text.translate(_GERMAN)} - {text}
    return sorted(v for v in out if v.isascii())


def normalize(text: str) -> str:
    """Normalise a value or haystack: ``^`` as space, case-folded, outer blanks and NULs gone."""
    return text.replace("^", " ").casefold().strip(" \x00\t\r\n")


def is_well_known_uid(uid: str) -> bool:
    """Whether ``uid`` is a DICOM constant from pydicom's UID dictionary."""
    return uid.strip("\x00 ") in _UID_DICT


def is_date_value(text: str) -> bool:
    """Whether a whole (UN or private) value reads as a DA or DT value."""
    return _DATE_VALUE_RE.fullmatch(text.strip(" \x00")) is not None


def dates_in(text: str) -> list[str]:
    """The 8-digit dates (YYYYMMDD, also legacy YYYY.MM.DD) in a DA, DT or TM value.

    A DA value or range yields its dates; a DT value (or a TM that carries a date) starts
    with one, followed by the time digits.
    """
    found = ["".join(m.groups()) for m in _DATE_RE.finditer(text)]
    lead = _LEAD_DATE_RE.match(text.strip())
    if lead and lead.group(1) not in found:
        found.append(lead.group(1))
    return found


# UID elements naming a kind of object or an encoding, never an instance: the policy keeps
# them readable (a vendor's private SOP class included), so they are not learned as UIDs.
_KIND_UID_KEYWORDS = frozenset(
    {
        "SOPClassesInStudy",
        "SOPClassesSupported",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "StoredInstanceTransferSyntaxUID",
    }
)


def classify(tag: int, vr: str, keyword: str, *, strict: bool = False) -> str | None:
    """Kind of value an element holds (``names``, ``ids``, ...), or None when not identifying."""
    group, elem = tag >> 16, tag & 0xFFFF
    if group % 2 == 1:
        if 0x0010 <= elem <= 0x00FF or group < 0x0008:
            return None  # private creators name the vendor block; odd groups < 8 are illegal
        if vr == "PN":
            return "names"
        if vr in ("DA", "DT"):
            return "dates"
        if vr == "UI":
            return "uids"
        if vr in _TEXT_VRS or vr in ("UN", "AE") or (strict and vr == "CS"):
            return "private"
        return None
    if tag == 0x00020012 or tag == 0x00020013:
        return None  # implementation class UID / version name identify the software
    if keyword.startswith("CodingScheme"):
        return None  # identification of a public terminology (SNOMED, LOINC, DCM, ...)
    if vr == "PN":
        return "names"
    if vr in ("DA", "DT"):
        return "dates"
    if keyword.endswith("SOPClassUID") or keyword in _KIND_UID_KEYWORDS:
        return None  # a kind of object or encoding, kept as it is: a vendor's own class too
    if vr == "UI":
        return "uids"
    if vr == "AE":
        return "ids"
    if vr in _TEXT_VRS:
        if _ID_KEYWORD.search(keyword):
            return "ids"
        if any(k in keyword for k in IDENTITY_KEYWORDS):
            return "free_text"
    return None


def learns_from(tag: int, vr: str, keyword: str, *, strict: bool = False) -> bool:
    """Whether :meth:`Learner.element` uses an element's texts (others need no decoding)."""
    if classify(tag, vr, keyword, strict=strict) is not None:
        return True
    if not tag >> 16 & 1 and (vr == "CS" or keyword in _BENIGN_KEYWORDS):
        return True
    if not tag >> 16 & 1 and vr in GLUE_VRS:
        return True  # its runs of letters may hold a glued name (Learner.finish)
    return tag == 0x00020012 or (tag in _STUDY_TIMES and vr == "TM")


def decode_un(raw: bytes) -> str | None:
    """Text of a UN value when it decodes to printable characters, else None."""
    for enc in ("utf-8", "latin-1"):
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError:
            continue
        text = text.strip("\x00 ")
        if text and all(c.isprintable() or c in "\r\n\t" for c in text):
            return text
        return None
    return None  # pragma: no cover - Latin-1 decodes every byte string


def element_texts(elem: DataElement) -> list[str]:
    """The string values of an element (multi-values split), decoded by pydicom."""
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, bytes | bytearray):
        text = decode_un(bytes(value))
        return [t for t in text.split("\\") if t] if text else []
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return [str(value)]


def walk(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, DataElement, bool]]:
    """Every element at every depth as ``(path, element, inside_private)``; errors skipped.

    Paths look like ``(0008,1111)[0]/(0008,1155)``. Elements whose value pydicom cannot
    convert are yielded as UN with their raw bytes, so nothing is silently dropped.
    """
    yield from _walk(ds, prefix, False)


def _walk(ds: Dataset, prefix: str, private: bool) -> Iterator[tuple[str, DataElement, bool]]:
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception:
            raw = ds.get_item(tag)
            if raw is None or not isinstance(getattr(raw, "value", None), bytes | None):
                continue
            elem = DataElement(tag, "UN", raw.value or b"")
        path = f"{prefix}({tag.group:04X},{tag.element:04X})"
        priv = private or tag.is_private
        yield path, elem, priv
        if elem.VR == "SQ" and isinstance(elem.value, DicomSequence):
            for i, item in enumerate(elem.value):
                yield from _walk(item, f"{path}[{i}]/", priv)


def read_dataset(src: Path | BinaryIO) -> Dataset:
    """Read a DICOM file with pydicom, tolerant of missing preambles; warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(src, force=True)


@dataclass
class LearnedValue:
    """One identifying value: its normalised text, kind, and originals it was seen in."""

    text: str
    kind: str
    sources: set[str] = field(default_factory=set)
    spellings: set[str] = field(default_factory=set)  # as written, for the byte search


@dataclass
class ValueIndex:
    """Every identifying value learned from the originals, indexed once."""

    values: dict[str, LearnedValue] = field(default_factory=dict)
    dates: dict[str, LearnedValue] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    originals: int = 0
    skipped: int = 0
    # Name components of three letters (below MIN_LENGTH): searched only where glued into
    # a run of letters that is no ordinary word ('MRLEEBRAIN'), never as words.
    short_names: dict[str, set[str]] = field(default_factory=dict)

    def add(
        self,
        text: str,
        kind: str,
        source: str,
        *,
        strict: bool,
        component: bool,
        text_search: bool = False,
    ) -> None:
        """Record one value under the counting rule; shorter or common values are skipped.

        Dates go to :attr:`dates` (searched in date elements), unless ``text_search``:
        then, like every other kind, to :attr:`values` (searched everywhere).
        """
        norm = _cut(normalize(text))
        if not norm:
            return
        if not strict and not counts(norm, component=component):
            self.skipped += 1
            return
        table = self.dates if kind == "dates" and not text_search else self.values
        cur = table.get(norm)
        if cur is None:
            cur = table[norm] = LearnedValue(norm, kind)
        if len(cur.sources) < _MAX_SOURCES:  # enough to point at originals, bounded memory
            cur.sources.add(source)
        if len(cur.spellings) < MAX_SPELLINGS:
            cur.spellings.add(spelling(text))
        if _RANK[kind] < _RANK[cur.kind]:
            cur.kind = kind


def counts(norm: str, *, component: bool = False) -> bool:
    """Whether a cut, normalised value counts under the lenient rule (not too short/common)."""
    # A name of two ideograms is a whole name: the length rule counts letters of scripts
    # written with spaces.
    return not (
        len(norm) < (2 if is_spaceless(norm) else MIN_LENGTH)
        or norm.upper() in STOP_WORDS
        or (component and len(norm) == 1)
        or not _ALNUM.search(norm)
    )


def spelling(text: str) -> str:
    """A value as written, as :meth:`ValueIndex.add` keeps it for the byte search."""
    return _cut(text.replace("^", " ").strip(" \x00\t\r\n"))


def cut_value(text: str) -> str:
    """A normalised value as :meth:`ValueIndex.add` keys it (long values cut)."""
    return _cut(text)


def _cut(text: str) -> str:
    """At most MAX_VALUE_CHARS, cut before a non-alphanumeric character.

    Matches must end on a word boundary, so a prefix that stops inside a word would never
    match the text it was cut from.
    """
    if len(text) <= MAX_VALUE_CHARS:
        return text
    k = MAX_VALUE_CHARS
    while k > MAX_VALUE_CHARS // 2 and text[k].isalnum():
        k -= 1
    return text[:k]


def _pn_parts(text: str) -> list[tuple[str, bool]]:
    """A person name and its parts: each ``=`` group and each ``^`` component."""
    out = [(text.rstrip("^= "), False)]
    for group in text.split("="):
        group = group.rstrip("^ ")
        if group and group != text:
            out.append((group, False))
        comps = [c.strip() for c in group.split("^")]
        out.extend((c, True) for c in comps if c)
        if len(comps) > 2 and comps[0] and comps[1]:
            # Free text writes "Family Given" or "Given Family", without the middle name.
            out += [(f"{comps[0]} {comps[1]}", False), (f"{comps[1]} {comps[0]}", False)]
        elif len(comps) == 2 and comps[0] and comps[1]:
            out.append((f"{comps[1]} {comps[0]}", False))
        if len(comps) >= 2 and comps[0] and comps[1]:
            # ... or runs them together (JohnDoe, DOEJOHN).
            out += [(comps[1] + comps[0], False), (comps[0] + comps[1], False)]
    return out


_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()


def date_spellings(da: str) -> list[str]:
    """A YYYYMMDD date as people write it in text: 1951-02-27, 27/02/1951, 27 Feb 1951, ..."""
    if len(da) != 8 or not da.isdigit():
        return []
    y, m, d = da[:4], da[4:6], da[6:]
    out = [f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}"]
    out += [f"{d}-{m}-{y}", f"{m}/{d}/{y}", f"{m}-{d}-{y}"]
    if 1 <= int(m) <= 12:
        mon = _MONTHS[int(m) - 1]
        for dd in {d, d.lstrip("0")}:
            out += [f"{dd} {mon} {y}", f"{mon} {dd} {y}", f"{dd}-{mon}-{y}", f"{mon} {dd}, {y}"]
    return out


class Learner:
    """Collects identifying values element by element; :meth:`finish` applies the rules.

    The verifier feeds it pydicom's elements of every original; the engine's post-check
    feeds it the decoded elements of one input (:mod:`medveil.verify.elements`). Both
    then search for the same values, learned by the same rules.
    """

    def __init__(self, *, strict: bool = False, spell_birth_date: bool = True) -> None:
        self.strict = strict
        # The birth date in every written spelling (verify); the post-check adds its own.
        self.spell_birth_date = spell_birth_date
        self.index = ValueIndex()
        self.benign: set[str] = set()
        # (source, HHMMSS) of the study and series times, and (source, piece) of each ID
        # piece: a piece that is the file's own study time (an ID made of the study's
        # date and time, '11-05-25-142825') is not searched on its own, as times of day
        # are kept; the whole ID still is.
        self.times: set[tuple[str, str]] = set()
        self.pieces: set[tuple[str, str]] = set()
        # Runs of letters of the standard text elements: a patient's name glued into one
        # ('ZQABCBRAIN' in a kept code) makes the whole run a name to search for.
        self.runs: dict[str, str] = {}
        self.software_uids: set[str] = set()
        self.pending: list[tuple[str, str, str]] = []  # (text, kind, source), decided later

    def element(
        self, tag: int, vr: str, keyword: str, texts: Iterable[str], private: bool, src: str
    ) -> None:
        """Learn from one element's text values (``private``: a private tag)."""
        strict = self.strict
        index = self.index
        if vr in GLUE_VRS and not private and len(self.runs) < _MAX_RUNS:
            for t in texts:
                for run in _LETTER_RUN.findall(t):
                    if len(run) >= 5:
                        self.runs.setdefault(run.casefold(), src)
        kind = classify(tag, vr, keyword, strict=strict)
        if kind is None:
            if not private and (vr == "CS" or keyword in _BENIGN_KEYWORDS):
                self.benign.update(normalize(t) for t in texts)
            elif tag == 0x00020012:
                self.software_uids.update(normalize(t) for t in texts)
            elif tag in _STUDY_TIMES and vr == "TM":
                self.times.update((src, t.strip().split(".")[0]) for t in texts)
            return
        for t in texts:
            if kind == "dates":
                for d in dates_in(t):
                    index.add(d, "dates", src, strict=True, component=False)
                    if tag == _BIRTH_DATE and self.spell_birth_date:
                        # The birth date is searched in any text, in every spelling.
                        for spelled in (d, *date_spellings(d)):
                            index.add(
                                spelled,
                                "dates",
                                src,
                                strict=True,
                                component=False,
                                text_search=True,
                            )
            elif kind == "uids":
                t = t.strip("\x00 ")
                if not is_well_known_uid(t):
                    self.pending.append((t, "uids", src))
            elif kind == "names":
                # A name stays a name even when it also reads like a device code.
                for part, comp in _pn_parts(t):
                    index.add(part, "names", src, strict=strict, component=comp)
                    short = normalize(part)
                    if comp and len(short) == 3 and short.isalpha():
                        srcs = index.short_names.setdefault(short, set())
                        if len(srcs) < _MAX_SOURCES:
                            srcs.add(src)
                    for plain in unaccented(part):  # as typed on a keyboard without them
                        index.add(plain, "names", src, strict=strict, component=comp)
            elif kind == "private" and is_date_value(t):
                index.add(dates_in(t)[0], "dates", src, strict=True, component=False)
            else:
                self.pending.append((t, kind, src))
                if kind == "ids":
                    # An ID is also written in pieces (DEMO-10001 as -10001): pieces of
                    # five or more characters with a digit count on their own.
                    for piece in _ID_PIECES.split(t):
                        if piece != t and len(piece) >= 5 and any(c.isdigit() for c in piece):
                            self.pending.append((piece, kind, src))
                            self.pieces.add((src, normalize(piece)))

    def finish(self) -> ValueIndex:
        """The learned values, after the counting rule's file-wide exceptions."""
        index, strict = self.index, self.strict
        in_benign: set[str] = set()
        if not strict and self.benign:
            # Values written (word-bounded) inside a device/software code are its words.
            hay = "\x00".join(sorted(self.benign))
            # A value that is not even a substring of the codes cannot match in them: only
            # the others need the automaton (usually none, and none is built).
            texts = sorted(
                {n for t, kind, _ in self.pending if kind != "uids" and (n := normalize(t)) in hay}
            )
            if texts:
                found = few_matcher(texts).find(hay)
                in_benign = {texts[i] for _s, _e, i in found}
        for t, kind, src in self.pending:
            norm = normalize(t)
            if kind == "uids" and norm in self.software_uids:
                index.skipped += 1  # the writing software's UID, repeated (InstanceCreatorUID)
            elif kind != "uids" and norm in in_benign:
                index.skipped += 1
            elif (src, norm) in self.pieces and (src, norm) in self.times and is_time(norm):
                index.skipped += 1
            else:
                index.add(t, kind, src, strict=strict, component=False)
        self.pending = []
        self._glued_runs()
        return index

    def _glued_runs(self) -> None:
        """Runs of letters with a learned name glued inside become names themselves.

        The word search finds 'ZQABC' in 'ZQABC BRAIN' but not in 'ZQABCBRAIN', and a kept
        code is searched only for names: the run, learned whole, is found as a word.
        A run made of ordinary words with the name inside one ('localizer' for Ali) is
        not (verify.values.glued_is_word).
        """
        index = self.index
        names = {
            v
            for v, lv in index.values.items()
            if lv.kind == "names" and v.isalpha() and len(v) >= 3
        }
        names |= set(index.short_names)
        sources = self.runs
        runs = [r for r in sources if r not in names]
        self.runs = {}
        if not names or not runs:
            return
        hay = "\x00".join(runs)
        starts = [0]
        for r in runs[:-1]:
            starts.append(starts[-1] + len(r) + 1)
        ordered = sorted(names)
        found: set[str] = set()
        for s, e, _i in SubstringMatcher(ordered).find(hay):
            j = bisect.bisect_right(starts, s) - 1
            run = runs[j]
            if run in found or e > starts[j] + len(run):
                continue
            if not glued_is_word(run, s - starts[j], e - starts[j]):
                found.add(run)
        for run in sorted(found):
            index.add(run, "names", sources[run], strict=True, component=False)


def is_time(text: str) -> bool:
    """Whether text is a whole time of day, HHMMSS."""
    return (
        len(text) == 6
        and text.isdigit()
        and int(text[:2]) < 24
        and int(text[2:4]) < 60
        and int(text[4:]) < 60
    )


def learn(items: Iterable[Path | Item], *, strict: bool = False) -> ValueIndex:
    """Read every original once and collect its identifying values into a :class:`ValueIndex`.

    An original whose structure is damaged (:func:`medveil.dicom.strict.check_structure`)
    is still learned from, as far as pydicom reads it, and listed in ``damaged``: the
    verifier cannot vouch for an output made from it.
    """
    learner = Learner(strict=strict)
    index = learner.index
    for item in items:
        if isinstance(item, Path):
            item = Item(item)
        src = item.name
        try:
            data = item.read()
            if not looks_like_dicom(data):
                index.unreadable.append((src, "not DICOM"))
                continue
            try:
                check_structure(data)
                damage = ""
            except StructureError as exc:
                damage = str(exc)
            ds = read_dataset(io.BytesIO(data))
        except Exception as exc:  # unreadable originals are reported, never fatal
            index.unreadable.append((src, type(exc).__name__))
            continue
        if not any(keyword_for_tag(t) for t in ds.keys()):
            # Nothing pydicom recognises: a misparse would teach nothing, so say so.
            index.unreadable.append((src, "no standard data elements"))
            continue
        index.originals += 1
        if damage:
            index.damaged.append((src, damage))
        meta = getattr(ds, "file_meta", None)
        elems = list(walk(meta, "")) if meta is not None else []
        elems += list(walk(ds, ""))
        for _p, elem, _priv in elems:
            try:
                texts = element_texts(elem)
            except Exception:
                continue
            tag = int(elem.tag)
            learner.element(
                tag, elem.VR, keyword_for_tag(elem.tag) or "", texts, elem.tag.is_private, src
            )
        # Names inside binary values (a grown length swallowed their elements): pydicom
        # reads them as bytes of the value, so they are found in the file's own bytes.
        for tag, vr, found in hidden_in_spans(layouts(data)):
            learner.element(tag, vr, keyword_for_tag(tag) or "", found, False, src)
    return learner.finish()
