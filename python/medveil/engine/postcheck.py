"""Post-check of a de-identified file: an independent search of the WRITTEN bytes.

Independent of the rule table and of how either engine read the input. The terms are
learned from the input's bytes (structurally validated first) by the verifier's own
learner (:mod:`medveil.verify`: names, IDs, UIDs, dates, identifying free text and private
text, by VR), plus the patient's identity (:data:`IDENTITY_KEYWORDS`, name components from
three letters, the birth date in the spellings people write). The written file is then
walked to its end, inflated first when deflated (file meta, every depth, after Pixel
Data), each value decoded with its own character set and searched with word boundaries
computed on the value; and the raw bytes of every value are searched in UTF-8, Latin-1,
UTF-16 and the other character sets pydicom writes. Binary values (OB, OW, OD, OF, OL, OV,
UN and VRs no standard names; never pixel data) are searched again for terms of at least
SUBSTRING_MIN characters as substrings, not words (a name glued to an ID), and a zlib or
gzip stream at or near their start is inflated (bounded) and searched the same way. A file
that does not parse to its end, is not marked PatientIdentityRemoved = YES, holds a term or
holds a compressed stream too large to inflate is quarantined.

A value the policy keeps on purpose (the same text at the same element path in input and
output: StationName under Retain Device Identity, a kept private value) is not a term,
except names and the patient's identity, which are never kept; UIDs and dates only when
the policy retains them (``retained``).
"""

from __future__ import annotations

import bisect
import importlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from medveil.dicom.keywords import IDENTITY_KEYWORDS
from medveil.dicom.strict import Prescan
from medveil.errors import QuarantineError
from medveil.policy.schema import CompiledPolicy
from medveil.policy.standard import Option
from medveil.verify.binary import (
    KNOWN_VRS,
    SUBSTRING_MIN,
    SUBSTRING_VRS,
    Budget,
    Uninspectable,
    digit_widths,
    in_digit_run,
    inflated,
    is_binary_vr,
    may_hold_stream,
)
from medveil.verify.elements import (
    Decoded,
    Scanned,
    decoded_elements,
    forget_scan,
    pixel_rows,
    remember_scan,
    scan_file,
    value_segments,
    vr_of_code,
    vr_table,
)
from medveil.verify.hidden import hidden_elements, hidden_in_spans, may_hide
from medveil.verify.matcher import (
    FIND_MAX,
    FindMatcher,
    few_matcher,
    is_spaceless,
    substring_matcher,
)
from medveil.verify.numbers import MIN_NUMBER_TERM, is_numeric_text, number_forms
from medveil.verify.rawscan import PIXEL_TAGS, RawLayout, Span, layouts
from medveil.verify.values import (
    GLUE_VRS,
    MAX_SPELLINGS,
    STOP_WORDS,
    LearnedValue,
    Learner,
    ValueIndex,
    classify,
    counts,
    cut_value,
    date_spellings,
    is_time,
    is_well_known_uid,
    learns_from,
    normalize,
    spelling,
    unaccented,
)

# The core's plan of the searched values; a core built before it uses numpy.
# (Looked up by name: the import checker reads any import of the extension as one of the
# root package, which imports every layer.)
_termsearch: Any = getattr(importlib.import_module("medveil._core"), "termsearch", None)
_row_values: Any = getattr(_termsearch, "row_values", None)

MIN_TERM = 3
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"


# --------------------------------------------------------------------------- the redesign
_IDENTITY_TAGS = frozenset(
    t for t in (tag_for_keyword(kw) for kw in IDENTITY_KEYWORDS) if t is not None
)
_NAME_TAGS = frozenset(
    t for t in (tag_for_keyword(kw) for kw in IDENTITY_KEYWORDS if "Name" in kw) if t
)
_BIRTH_DATE = 0x00100030
_PATIENT_NAME = 0x00100010
_MARK = 0x00120062
# Kinds of learned values the policy may keep in place (same path, same text).
_KEEPABLE = frozenset({"ids", "free_text", "private"})
# Byte encodings a value may be written in besides the file's declared ones.
_ENCODINGS = (
    "utf-8",
    "latin-1",
    "utf-16-le",
    "utf-16-be",
    "iso2022_jp",
    "shift_jis",
    "euc_kr",
    "gb18030",
    "iso8859_2",
    "iso8859_5",
    "iso8859_7",
)
_ASCII_ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be")
_FOLD = bytes((b + 32 if 65 <= b <= 90 else 32 if b == 0x5E else b) for b in range(256))


@dataclass
class Terms:
    """What the post-check searches for, learned from one input file."""

    always: set[str] = field(default_factory=set)  # never kept: names, patient identity
    kinds: dict[str, str] = field(default_factory=dict)  # other value -> kind
    spellings: dict[str, set[str]] = field(default_factory=dict)  # value -> as written
    # Compiled once per input: (text or bytes, kinds allowed) -> matcher and its patterns.
    _compiled: dict[tuple[str, frozenset[str]], tuple[Any, list[bool]]] = field(
        default_factory=dict, repr=False
    )
    # Terms whose never-kept values and non-UID values (and their spellings) are exactly
    # these ones' (a series' shared Terms, of which these add UIDs only): the automaton
    # over those is taken from it, not worked out again per file.
    _shared: Terms | None = field(default=None, repr=False, compare=False)
    _rests: dict[tuple[str, frozenset[str]], tuple[Any, list[bool]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    # On a series' shared Terms: automata over (text or bytes, its UIDs), see _uid_part.
    _uid_parts: dict[tuple[bool, tuple[str, ...]], tuple[Any, list[bool]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _compiled_uids: list[str] | None = field(default=None, repr=False, compare=False)
    # On a series' shared Terms: one automaton over all its values per form (_whole).
    _wholes: dict[tuple[str, frozenset[str]], tuple[Any, list[bool]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def matcher(self, form: str, allowed: frozenset[str] = frozenset()) -> tuple[Any, list[bool]]:
        """(matcher, is-always flag per pattern) over the terms, as 'text' or 'bytes'.

        The terms never allowed (``always``) and the others are searched together, so a
        file costs one pass per form; ``form`` 'always-text'/'always-bytes' gives the
        first kind alone (for rechecking an allowed element).
        """
        key = (form, allowed)
        hit = self._compiled.get(key)
        if hit is None and self._shared is not None and form.startswith("always-"):
            # The never-kept values (and their spellings) are the series' own, which
            # holds every other value this file has but its UIDs: its matcher, built once.
            hit = self._compiled[key] = self._shared.matcher(form, allowed)
        if hit is None:
            only_always = form.startswith("always-")
            sub = form.startswith("sub-")
            # Every instance has its own UIDs, while the rest (names, IDs, dates, texts) is
            # the same for every file of a series: the automaton over the rest is kept
            # across files (_automaton's cache) and the UIDs get a small one of their own.
            uids = [] if only_always or "uids" in allowed else self._uids()
            text = form.endswith("text")
            shared = self._shared
            new = self._new_uids(uids, text) if shared is not None and not sub else []
            if new:
                hit = self._with_new(form, allowed, new)
                self._compiled[key] = hit
                return hit
            parts = [
                p
                for p in (self._rest(form, allowed), self._uid_part(text, uids, sub))
                if p[0] is not None
            ]
            if not parts:
                hit = (None, [])
            elif len(parts) == 1:
                hit = parts[0]
            else:
                hit = (_Union([m for m, _ in parts]), parts[0][1] + parts[1][1])
            self._compiled[key] = hit
        return hit

    def _uids(self) -> list[str]:
        """The UID values (never-kept ones aside), sorted; worked out once."""
        hit = self._compiled_uids
        if hit is None:
            hit = self._compiled_uids = sorted(
                v for v, k in self.kinds.items() if k == "uids" and v not in self.always
            )
        return hit

    def _new_uids(self, uids: list[str], text: bool) -> list[str]:
        """The UIDs of this file the series' shared Terms do not hold (as written here)."""
        assert self._shared is not None
        kinds, theirs, spellings = self._shared.kinds, self._shared.spellings, self.spellings
        # A UID of the series' spelled otherwise in this file: its byte patterns are this
        # file's, so it is searched as one of the file's own.
        return [
            v
            for v in uids
            if kinds.get(v) != "uids"
            or (not text and not v.isascii() and spellings.get(v) != theirs.get(v))
        ]

    def _with_new(
        self, form: str, allowed: frozenset[str], new: list[str]
    ) -> tuple[Any, list[bool]]:
        """matcher() of a file whose own UIDs (``new``) the series' shared Terms lack.

        The series' automaton over all its values, UIDs included (built once), and a find
        per pattern for the file's own: the same matches, at a start where both parts
        have one, as the rest and the UIDs searched apart (each judged alike).
        """
        assert self._shared is not None
        series, flags = self._shared._whole(form, allowed)
        text = form.endswith("text")
        mine: list[Any] = list(new) if text else _patterns(new, self)
        if not mine:
            return series, flags
        own = FindMatcher(mine) if len(mine) <= FIND_MAX else few_matcher(mine)
        if series is None:
            return own, [False] * len(mine)
        return _Union([series, own]), flags + [False] * len(mine)

    def _whole(self, form: str, allowed: frozenset[str]) -> tuple[Any, list[bool]]:
        """One automaton over every value not allowed, UIDs included, built once (a series')."""
        key = (form, allowed)
        hit = self._wholes.get(key)
        if hit is None:
            always = sorted(self.always)
            others = sorted(
                v for v, k in self.kinds.items() if k not in allowed and v not in self.always
            )
            hit = _automaton(form.endswith("text"), always, others, self, keep=False)
            if len(self._wholes) >= 16:
                self._wholes.clear()
            self._wholes[key] = hit
        return hit

    def _uid_part(self, text: bool, uids: list[str], sub: bool) -> tuple[Any, list[bool]]:
        """(matcher, flags) over these UID values (sorted), as _automaton(keep=False) gives.

        A series' shared Terms holding them all builds it once (the same UIDs, file after
        file, when the series' cache served a file that brought none of its own).
        """
        shared = self._shared
        if shared is None or sub or not uids:
            return _automaton(text, [], uids, self, keep=False, sub=sub)
        return shared._uids_of(text, uids)

    def _uids_of(self, text: bool, uids: list[str]) -> tuple[Any, list[bool]]:
        """_automaton(keep=False) over these UIDs of this (shared) Terms, built once."""
        key = (text, tuple(uids))
        hit = self._uid_parts.get(key)
        if hit is None:
            if len(self._uid_parts) >= 16:
                self._uid_parts.clear()
            hit = self._uid_parts[key] = _automaton(text, [], uids, self, keep=False)
        return hit

    def _rest(self, form: str, allowed: frozenset[str]) -> tuple[Any, list[bool]]:
        """(matcher, flags) over the never-kept values and the allowed-out non-UID ones."""
        key = (form, allowed)
        hit = self._rests.get(key)
        if hit is None:
            if self._shared is not None:
                hit = self._shared._rest(form, allowed)
            else:
                always = sorted(self.always)
                rest = (
                    []
                    if form.startswith("always-")
                    else sorted(
                        v
                        for v, k in self.kinds.items()
                        if k not in allowed and k != "uids" and v not in self.always
                    )
                )
                sub = form.startswith("sub-")
                hit = _automaton(form.endswith("text"), always, rest, self, sub=sub)
            self._rests[key] = hit
        return hit

    def __len__(self) -> int:
        return len(self.always) + len(self.kinds)


class _Union:
    """Several matchers searched as one: pattern indices run on from one to the next."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.offsets = [0]
        for m in parts[:-1]:
            self.offsets.append(self.offsets[-1] + len(m.patterns))
        self._patterns: list[Any] | None = None

    @property
    def patterns(self) -> list[Any]:
        """Every part's patterns, in order."""
        # Made when asked: a file's union is searched, its patterns seldom listed.
        if self._patterns is None:
            self._patterns = list(chain.from_iterable(m.patterns for m in self.parts))
        return self._patterns

    def find(self, haystack: Any) -> list[tuple[int, int, int]]:
        """Every match of every part, in haystack order (as one matcher would give them)."""
        out: list[tuple[int, int, int]] = []
        for m, off in zip(self.parts, self.offsets, strict=True):
            found = m.find(haystack)
            if found:
                out.extend(found if not off else [(s, e, i + off) for s, e, i in found])
        return sorted(out) if len(self.parts) > 1 and out else out


class _Recent:
    """A small least-recently-used map, safe to share between threads.

    The caches below hold terms (PHI) in memory only, as the Terms themselves do; they
    are bounded, so a worker's memory stays flat however large the archive.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value of key (now the most recent), or None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: Any, value: Any) -> None:
        """Keep value under key, dropping the least recent entry when full."""
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._items.clear()


# Automata kept across files: (form, always, others, their spellings) -> (matcher, flags).
# A worker cleans series after series of one patient; a few entries cover the files in
# flight.
_AUTOMATA = _Recent(32)


def _automaton(
    text: bool,
    always: Sequence[str],
    others: Sequence[str],
    terms: Terms,
    *,
    keep: bool = True,
    sub: bool = False,
) -> tuple[Any, list[bool]]:
    """(matcher, is-always flags) over these values as text or bytes; (None, []) if none.

    ``keep``: cache it across files (not for a file's own UIDs, which would only push the
    patient's automata out of the cache). ``sub``: a substring matcher (no word
    boundaries) over the values of at least SUBSTRING_MIN characters, for binary values.
    """
    if sub:
        always = [v for v in always if len(v) >= SUBSTRING_MIN]
        others = [v for v in others if len(v) >= SUBSTRING_MIN]
    if not always and not others:
        return None, []
    # Bytes patterns of a non-ASCII value include its spellings as written: part of the key.
    spelled = (
        ()
        if text
        else tuple(
            (v, tuple(sorted(terms.spellings.get(v, ()))))
            for v in (*always, *others)
            if not v.isascii()
        )
    )
    key = (text, sub, tuple(always), tuple(others), spelled)
    hit = _AUTOMATA.get(key) if keep else None
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    flags: dict[Any, bool] = {}
    if text:
        flags = {v: True for v in always}
        for v in others:
            flags.setdefault(v, False)
    else:
        for pat in _patterns(list(always), terms):
            flags[pat] = True
        for pat in _patterns(list(others), terms):
            flags.setdefault(pat, False)
    patterns = list(flags)
    build = substring_matcher if sub else few_matcher
    hit = (build(patterns) if patterns else None, [flags[p] for p in patterns])
    if not keep:
        return hit
    _AUTOMATA.put(key, hit)
    return hit


@lru_cache(maxsize=4096)
def _keyword(tag: int) -> str:
    """The dictionary keyword of a tag ('' for private and unknown tags)."""
    return keyword_for_tag(tag) or ""


@lru_cache(maxsize=16384)
def _learned(tag: int, vr: str) -> bool:
    """Whether learn_terms uses this element's texts (the learner's, or the identity's)."""
    return tag in _IDENTITY_TAGS or learns_from(tag, vr, _keyword(tag))


def learn_terms(data: bytes | bytearray | memoryview, prescan: Prescan | None = None) -> Terms:
    """The terms to hunt in the output, learned from the input file's bytes.

    Call it on a file that passed :func:`medveil.dicom.strict.check_structure`: the walk
    then follows the file exactly, so every element at every depth is learned from.
    ``prescan``: that check's rows of these same, unchanged bytes (not scanned again).
    """
    scan = scan_file(data, prescan)
    if scan is None or scan.codecs is None:
        return learn_terms_spans(data)
    rows, codes = scan.rows, scan.codes
    tags = rows[:, 0]
    # Every element outside pixel data with a value, in file order (as the span road walks
    # them); only those the learner reads are decoded: most of a file's elements are
    # numbers and codes it never looks at.
    memo = scan.shape.memo
    elements = memo.get("elements")
    if elements is None:
        elements = memo["elements"] = np.flatnonzero((tags >= 0) & ~scan.shape.pixel)
    take = elements[rows[elements, 5] > rows[elements, 3]]
    # Which of them the learner reads, and which are the instance's own: the same for
    # every file of a series (same elements, same VRs), so worked out once per layout.
    layouts: dict[bytes, _Layout] | None = memo.get("layouts")
    if layouts is None:
        layouts = memo["layouts"] = {}
    taken = take.tobytes()
    layout = layouts.get(taken)
    if layout is None:
        if len(layouts) >= 16:
            layouts.clear()
        layout = layouts[taken] = _layout_plan(tags[take], codes[take], take.tolist())
    starts, stops = scan.bounds()
    data = scan.data
    # What the elements other than the instance's own UIDs teach is the same for every
    # file of a series (same patient, study, site): learned once per distinct content.
    # The UIDs that stay the same from file to file (study, series, frame of reference)
    # are learned with them; only those seen to change (the instance's) file by file.
    own_values = [bytes(data[starts[i] : stops[i]]) for i, _, _ in layout.own]
    keyed, per_file, signature, keyed_rows = layout.split(own_values)
    values: object = None
    if _row_values is not None:
        # The key's values in one core call: each after its length, one bytes object
        # (the information of the tuple below, and never equal to a tuple).
        try:
            values = _row_values(data, rows, keyed_rows)
        except (TypeError, ValueError):
            pass  # rows or a buffer the core does not take: the tuple
    if values is None:
        values = tuple([bytes(data[starts[i] : stops[i]]) for i, _, _ in keyed])
    key = (tuple(scan.codecs), signature, values)
    part: _Learned | None = _LEARNED.get(key)
    if part is None:
        learner = Learner(strict=False, spell_birth_date=False)  # _identity spells it
        terms = Terms()
        for i, tag, vr in keyed:
            texts = scan.texts(i, vr)
            if texts:
                _learn_element(learner, terms, tag, vr, texts)
        part = _Learned(learner, terms)
        _LEARNED.put(key, part)
    if per_file:
        raw_of = {i: v for (i, _, _), v in zip(layout.own, own_values, strict=True)}
        done = part.with_own(scan, [(i, tag, vr, raw_of[i]) for i, tag, vr in per_file])
    else:
        done = part.with_own(scan, [])
    # Whether any row of this structure may hide elements: most structures have none, and
    # the answer is the same for every file of one (tags, VR codes and pixel rows).
    hiding = memo.get("may_hide")
    if hiding is None:
        hiding = memo["may_hide"] = may_hide(tags, codes, scan.shape.pixel)
    hidden = hidden_elements(scan.data, rows, codes, scan.shape.pixel) if hiding else []
    if done is None or hidden:
        # Not what _own_to_file promised, or names inside binary values (a grown length
        # swallowed their elements): learn the whole file as one, and those as names.
        learner = Learner(strict=False, spell_birth_date=False)
        terms = Terms()
        for i, tag, vr in sorted(layout.fixed + layout.own):
            texts = scan.texts(i, vr)
            if texts:
                _learn_element(learner, terms, tag, vr, texts)
        _learn_hidden(learner, terms, hidden)
        return _finish_terms(learner, terms)
    return done


_Planned = tuple[int, int, str]  # (row of the scan, tag, VR)
# _Layout.split's answer: learned once, learned per file, the signature of the first, the
# scan rows of the first (an array, for the core's row_values).
_Split = tuple[list[_Planned], list[_Planned], bytes, np.ndarray]


class _Layout:
    """The learner's plan for one layout of valued elements, and which own values vary.

    ``fixed``: the elements learned from that are not the instance's own UIDs; ``own``:
    those that are. Own values seen to change from one file of the layout to the next
    (the instance's UIDs) are learned per file; the others (study, series, frame of
    reference) with the fixed ones, once per distinct content. Any split gives the same
    terms (a UID learned whole, or added as with_own adds it), so a race between threads
    over this state costs at most a cache miss.
    """

    def __init__(self, fixed: list[_Planned], own: list[_Planned]) -> None:
        self.fixed = fixed
        self.own = own
        self.rows = [i for i, _, _ in fixed + own]
        self._prev: list[bytes] | None = None
        self._changed: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
        self._splits: dict[frozenset[int], _Split] = {}

    def split(self, own_values: list[bytes]) -> _Split:
        """(learned once, learned per file, signature of the first, its rows) for these.

        Learned per file: the own values that changed from one file to the next in either
        of the last two steps (a new series changes its study's UIDs once: two files
        later they are learned once again).
        """
        prev = self._prev
        changed: frozenset[int] = frozenset()
        if prev is not None and prev != own_values:
            changed = frozenset(
                j for j, (a, b) in enumerate(zip(prev, own_values, strict=True)) if a != b
            )
        last = self._changed[1]
        self._changed = (last, changed)
        self._prev = own_values
        varying = last | changed
        hit = self._splits.get(varying)
        if hit is None:
            keyed = sorted(self.fixed + [p for j, p in enumerate(self.own) if j not in varying])
            per_file = [p for j, p in enumerate(self.own) if j in varying]
            # The tags and VRs of what the key's values are (their positions say nothing
            # across layouts): with the values, all that the shared part is learned from.
            signature = repr([(tag, vr) for _, tag, vr in keyed]).encode()
            if len(self._splits) >= 16:
                self._splits.clear()
            rows = np.array([i for i, _, _ in keyed], dtype=np.int64)
            hit = self._splits[varying] = (keyed, per_file, signature, rows)
        return hit


def _layout_plan(tags: np.ndarray, codes: np.ndarray, rows: list[int]) -> _Layout:
    """The _Layout of the valued elements at these rows (their tags and VR codes).

    A pure function of the three, kept with the scan's Shape for the take of rows
    (with what is seen to vary across the files of that layout).
    """
    fixed: list[_Planned] = []
    own: list[_Planned] = []
    for i, tag, code in zip(rows, tags.tolist(), codes.tolist(), strict=True):
        vr = vr_of_code(code)
        if _learned(tag, vr):
            (own if _own_to_file(tag, vr) else fixed).append((i, tag, vr))
    return _Layout(fixed, own)


@lru_cache(maxsize=16384)
def _own_to_file(tag: int, vr: str) -> bool:
    """Whether an element's value is the instance's own (a UID): not shared across files."""
    if tag == 0x00020012:
        return vr != "CS"  # the writing software's UID (a CS one is a code: shared)
    return classify(tag, vr, _keyword(tag)) == "uids"


class _Learned:
    """What a file's elements other than its own UIDs teach, finished but for the UIDs.

    The learner's finish treats UIDs apart from the rest (the benign-code rule skips
    them; only the writing software's UID is skipped among them), so the UIDs of each
    file are added afterwards exactly as finish would add them.
    """

    def __init__(self, learner: Learner, terms: Terms) -> None:
        self.index = learner.finish()
        self.base = _terms_of(self.index, terms)  # the Terms of a file without UIDs

    def with_own(self, scan: Scanned, own: list[tuple[int, int, str, bytes]]) -> Terms | None:
        """The file's Terms: these values plus its own UIDs (nothing shared is modified).

        ``own``: (row, tag, VR, value bytes) of the file's own elements. None if they
        would teach something else than UIDs.
        """
        software: set[str] | frozenset[str] = frozenset()
        if all(vr == "UI" and _plain_uid(tag) for _, tag, vr, _ in own):
            # What value_texts and Learner.element make of a UI element the learner reads
            # as UIDs: each value, stripped, unless a DICOM constant.
            pending = [
                t
                for _, _, _, raw in own
                for t in (v.strip(" \x00") for v in raw.decode("latin-1").split("\\"))
                if t and not is_well_known_uid(t)
            ]
        else:
            uids = Learner(strict=False, spell_birth_date=False)
            for i, tag, vr, _ in own:
                if tag in _IDENTITY_TAGS:
                    return None  # the patient's identity written as a UID: learned whole
                texts = scan.texts(i, vr)
                if texts:
                    uids.element(tag, vr, _keyword(tag), texts, bool(tag >> 16 & 1), "input")
            if uids.benign or uids.index.values or uids.index.dates:
                return None
            if any(kind != "uids" for _, kind, _ in uids.pending):
                return None
            pending = [t for t, _, _ in uids.pending]
            software = uids.software_uids
        # The usual case: UIDs this part has not learned (the instance's own). What
        # ValueIndex.add then keeps of each is its cut value and spellings, and what
        # _terms_of makes of those a UID term; anything else takes _with_uids.
        values, dates = self.index.values, self.index.dates
        new: dict[str, set[str]] = {}
        for t in pending:
            norm, cut, kept, spelled_as = _uid_forms(t)
            if norm in software:
                continue  # as Learner.finish: the writing software's UID, repeated
            if cut in values or cut in dates:
                return self._with_uids(pending, software)
            if not kept:
                continue  # as ValueIndex.add skips it
            spelled = new.get(cut)
            if spelled is None:
                spelled = new[cut] = set()
            if len(spelled) < MAX_SPELLINGS:
                spelled.add(spelled_as)
        base = self.base
        # Copies of the containers only: a set in spellings is replaced, never changed.
        terms = Terms(set(base.always), dict(base.kinds), dict(base.spellings))
        always, kinds, spellings = terms.always, terms.kinds, terms.spellings
        shared = True
        for v, spelled in new.items():
            if v in always:
                shared = False  # not a UID term: the series' automaton is not the file's
            else:
                kinds[v] = "uids"
            spellings[v] = set(base.spellings.get(v, ())) | spelled
        if shared:
            terms._shared = base
        return terms

    def _with_uids(self, pending: list[str], software: Collection[str]) -> Terms | None:
        """with_own for UIDs that meet learned values: each added as finish would add it."""
        base = self.base
        # Copies of the containers only: a set in spellings is replaced, never changed.
        terms = Terms(set(base.always), dict(base.kinds), dict(base.spellings))
        values = dict(self.index.values)
        index = ValueIndex(values=values, dates=self.index.dates)
        touched = []
        for t in pending:
            norm = normalize(t)
            if norm in software:
                continue  # as Learner.finish: the writing software's UID, repeated
            cut = cut_value(norm)
            if cut in values:  # copied before add changes it: the shared one stays as is
                lv = values[cut]
                values[cut] = LearnedValue(lv.text, lv.kind, set(lv.sources), set(lv.spellings))
            index.add(t, "uids", "input", strict=False, component=False)
            if cut in values:
                touched.append(cut)
        # What _terms_of does for each value the UIDs added or changed.
        for v in touched:
            lv = values[v]
            if lv.kind == "names":
                terms.always.add(v)
            elif v not in terms.always:
                terms.kinds[v] = "dates" if v in index.dates else lv.kind
            terms.spellings[v] = set(base.spellings.get(v, ())) | lv.spellings
            if v in terms.always:
                terms.kinds.pop(v, None)
        # Only UIDs added (the usual case): the series' automaton over the rest is theirs.
        if all(
            terms.kinds.get(v) == "uids"
            and base.kinds.get(v, "uids") == "uids"
            and v not in terms.always
            for v in touched
        ) and len(terms.always) == len(base.always):
            terms._shared = base
        return terms


@lru_cache(maxsize=4096)
def _plain_uid(tag: int) -> bool:
    """Whether the learner reads a UI element of this tag as UIDs and nothing else."""
    return (
        tag not in _IDENTITY_TAGS
        and tag != 0x00020012
        and classify(tag, "UI", _keyword(tag)) == "uids"
        and "UI" not in GLUE_VRS
    )


# UID text -> (normalised, cut, whether it counts, spelling): a series' instances refer
# to each other.
_UID_FORMS: dict[str, tuple[str, str, bool, str]] = {}


def _uid_forms(text: str) -> tuple[str, str, bool, str]:
    """normalize(text), its cut_value, counts() of that and spelling(text); remembered."""
    hit = _UID_FORMS.get(text)
    if hit is None:
        norm = normalize(text)
        cut = cut_value(norm)
        hit = (norm, cut, bool(cut) and counts(cut), spelling(text))
        if len(_UID_FORMS) >= 4096:
            _UID_FORMS.clear()
        _UID_FORMS[text] = hit
    return hit


# What a series' shared elements teach, by their raw values (see learn_terms).
_LEARNED = _Recent(32)


def learn_terms_spans(data: bytes | bytearray | memoryview) -> Terms:
    """:func:`learn_terms` through the decoded spans (any file the verifier's walker reads).

    The road for files the scanner rows do not cover (big endian, deflated, a character
    set of its own in an item, ...), and the reference the fast road is tested against.
    """
    lays, decoded = decoded_elements(bytes(data))
    learner = Learner(strict=False, spell_birth_date=False)  # _identity spells it
    terms = Terms()
    for d in decoded:
        if d.texts:
            _learn_element(learner, terms, d.span.tag, d.span.vr, d.texts)
    _learn_hidden(learner, terms, hidden_in_spans(lays))
    return _finish_terms(learner, terms)


def _learn_hidden(
    learner: Learner, terms: Terms, hidden: list[tuple[int, str, tuple[str, ...]]]
) -> None:
    """Learn names found inside binary values (verify.hidden) as never kept, whatever the
    tag: no rule ever saw them, so none may have kept them."""
    for tag, vr, texts in hidden:
        _learn_element(learner, terms, tag, vr, texts)
        for t in texts:
            _identity(terms, _PATIENT_NAME if vr == "PN" else tag, t)


def _learn_element(
    learner: Learner, terms: Terms, tag: int, vr: str, texts: tuple[str, ...]
) -> None:
    """Learn from one element's decoded texts: the verifier's rules, then the identity's."""
    learner.element(tag, vr, _keyword(tag), texts, bool(tag >> 16 & 1), "input")
    if tag in _IDENTITY_TAGS:
        for t in texts:
            _identity(terms, tag, t)


def _finish_terms(learner: Learner, terms: Terms) -> Terms:
    """The learner's values added to the identity's: names are never kept."""
    return _terms_of(learner.finish(), terms)


def _terms_of(index: ValueIndex, terms: Terms) -> Terms:
    """The index's values added to the identity's terms: names are never kept."""
    for v, lv in index.values.items():
        if lv.kind == "names":
            terms.always.add(v)
        elif v not in terms.always:
            terms.kinds[v] = lv.kind
        terms.spellings.setdefault(v, set()).update(lv.spellings)
    for v in index.dates:
        if v not in terms.always:
            terms.kinds[v] = "dates"
    for v in terms.always:
        terms.kinds.pop(v, None)
    return terms


def _identity(terms: Terms, tag: int, text: str) -> None:
    """The patient's own values: whole, name components from 3 letters, birth spellings."""
    whole = normalize(text)
    if whole.upper() in STOP_WORDS:
        return  # "ANONYMIZED", "UNKNOWN": a placeholder, not an identity
    if len(whole) >= MIN_TERM:
        terms.always.add(whole)
        terms.spellings.setdefault(whole, set()).add(text.replace("^", " ").strip())
    if tag in _NAME_TAGS:
        parts = [p for p in re.split(r"[\^= ,]+", whole) if p]
        # Ideograms: a two-character family name is a name; components run together too;
        # and Latin names as typed without their accents (Müller: muller, mueller).
        found = [*parts, *(a + b for a in parts[:2] for b in parts[:2] if a != b)]
        found += [v for p in found for v in unaccented(p)]
        for part in found:
            short = len(part) < (2 if is_spaceless(part) else MIN_TERM)
            if not short and part.upper() not in STOP_WORDS:
                terms.always.add(part)
    elif tag not in _NAME_TAGS and tag != _BIRTH_DATE:
        # An ID is also written in pieces ("MRN DEMO-10001" cut to "-10001"): each piece
        # of five characters or more with a digit in it is hunted too.
        for piece in re.split(r"[^0-9a-z]+", whole):
            # A piece that reads as a time of day (the ID "11-05-25-142825" ends in its
            # StudyTime) is not hunted alone: the kept times would all match it. The whole
            # ID and its other pieces still are.
            if len(piece) >= 5 and any(ch.isdigit() for ch in piece) and not is_time(piece):
                terms.always.add(piece)
    if len(whole) >= MIN_TERM and not whole.isascii():
        terms.always.update(v for v in unaccented(whole) if len(v) >= MIN_TERM)
    if tag == _BIRTH_DATE:
        da = text.strip()
        for spelled in (da, *date_spellings(da)) if len(da) == 8 and da.isdigit() else ():
            terms.always.add(spelled)


@dataclass(frozen=True)
class Allowance:
    """What the policy keeps on purpose: learned values there are not leaks.

    ``tags``: elements kept by a Retain option or the operator's own K override (their
    own and other learned values found inside them are allowed); ``private``: private
    elements kept under Retain Safe Private; ``kinds``: kinds kept everywhere ('uids'
    under Retain UIDs, 'dates' under Retain Longitudinal Full Dates). Names and the
    patient's identity are never allowed anywhere.
    """

    tags: frozenset[int] = frozenset()
    private: bool = False
    kinds: frozenset[str] = frozenset()

    def covers(self, span: Span | None) -> bool:
        """Whether a value at this element is kept on purpose."""
        if span is None:
            return False
        return span.tag in self.tags or (self.private and span.private)


def policy_allowance(compiled: CompiledPolicy) -> Allowance:
    """What a compiled policy keeps on purpose.

    Elements a Retain option or the operator's own override keeps (action K); private
    elements under Retain Safe Private; UIDs and dates everywhere under Retain UIDs and
    Retain Longitudinal Full Dates.
    """
    policy = compiled.policy
    tags = frozenset(
        tag
        for tag, rule in compiled.by_tag.items()
        if rule.action == "K"
        and (str(rule.decided_by).startswith("retain_") or rule.decided_by == "policy")
    )
    kinds = {"uids"} if policy.has(Option.RETAIN_UIDS) else set()
    if policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES):
        kinds.add("dates")
    return Allowance(tags, policy.has(Option.RETAIN_SAFE_PRIVATE), frozenset(kinds))


def check_written(data: bytes, terms: Terms, allow: Allowance = Allowance()) -> None:
    """Raise QuarantineError unless the written file parses to its end, is marked, is clean.

    The scan of a file that passes is remembered (verify.elements.recall_scan) for the
    archive's reference reader, which reads these same bytes next.
    """
    forget_scan()
    try:
        scan = scan_file(data)
    except Exception:
        scan = None  # the span road names what is wrong
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    if scan is None or scan.codecs is None or (not preamble and scan.meta_end >= 128):
        check_written_spans(data, terms, allow)
        return
    rows = scan.rows
    memo = scan.shape.memo
    top = memo.get("top")
    if top is None:
        # The mark's row and the top-level pixel data rows: the same in every file of a
        # structure.
        mark = np.flatnonzero((rows[:, 0] == _MARK) & (rows[:, 7] == 0))
        pixels = np.flatnonzero((rows[:, 0] == _PIXEL_DATA) & (rows[:, 7] == 0)).tolist()
        top = memo["top"] = (int(mark[0]) if len(mark) else -1, pixels)
    mark_row, pixel_rows_top = top
    if mark_row < 0 or scan.texts(mark_row) != ("YES",):
        raise QuarantineError("post-check: PatientIdentityRemoved is not YES")
    where = _find_scanned(scan, terms, allow, preamble)
    if not where and any(rows[i, 4] == _UNDEFINED for i in pixel_rows_top):
        # Encapsulated frames: their marker segments and trailing bytes (the cleaner strips
        # them; this checks it) are walked only here, the rare case worth the walk.
        where = _find_pixel_side(layouts(bytes(data)), terms, allow)
    if where:
        raise QuarantineError(
            f"post-check: an original identifying value is still in the output ({where})"
        )
    if isinstance(data, bytes):
        remember_scan(scan)


def check_written_spans(data: bytes, terms: Terms, allow: Allowance = Allowance()) -> None:
    """:func:`check_written` through the decoded spans (any file the verifier's walker reads).

    The road for files the scanner rows do not cover, and the reference the fast road is
    tested against: every element's decoded texts, then every value's raw bytes.
    """
    try:
        lays, decoded = decoded_elements(data)
    except Exception as exc:
        raise QuarantineError(f"post-check: output does not parse: {type(exc).__name__}") from None
    if not all(lay.complete for lay in lays):
        raise QuarantineError("post-check: output does not parse to its end")
    body = lays[-1]
    mark = [
        d for d in decoded if d.span.tag == _MARK and d.layout is body and "/" not in d.span.path
    ]
    if not mark or mark[0].texts != ("YES",):
        raise QuarantineError("post-check: PatientIdentityRemoved is not YES")
    where = (
        _find_numbers_spans(lays, terms, allow)
        or _find_decoded(decoded, terms, allow)
        or _find_bytes(lays, terms, allow)
        or _find_binary_spans(lays, terms, allow)
        or _find_pixel_side(lays, terms, allow)
    )
    if where:
        raise QuarantineError(
            f"post-check: an original identifying value is still in the output ({where})"
        )


_NUMBER_VRS = frozenset({"IS", "DS"})
_NUMBER_CODES = vr_table("IS DS")


def _number_terms(terms: Terms, allow: Allowance) -> tuple[frozenset[str], frozenset[str]]:
    """(terms of digits never allowed, the others not allowed by kind) to compare numbers with."""
    always = frozenset(t for t in terms.always if t.isdigit())
    others = frozenset(
        t for t, kind in terms.kinds.items() if t.isdigit() and kind not in allow.kinds
    )
    return always, others


def _number_hit(
    value: bytes, numbers: tuple[frozenset[str], frozenset[str]], covered: bool
) -> bool:
    """Whether an IS/DS value equals a learned term of digits (an ID, a date as digits)."""
    always, others = numbers
    if _PLAIN_SHORT_NUMBERS.fullmatch(value):
        return False  # number_forms finds no run of MIN_NUMBER_TERM digits in it: no forms
    forms = number_forms([value])
    return bool(forms & always) or (not covered and bool(forms & others))


# IS/DS bytes of which number_forms makes nothing: signs, spaces, NULs, backslashes,
# fractions (a point and its digits: they never lengthen the integer) and integer digit
# runs shorter than MIN_NUMBER_TERM; no exponent, underscore or other text float() reads.
# A fraction takes all its digits (as a shorter one followed by a short run would): one
# way to read any input, so a long value that does not match fails in linear time, not
# by trying every split of its fractions.
_PLAIN_SHORT_NUMBERS = re.compile(
    rb"(?:\.[0-9]*(?![0-9])|[0-9]{1,%d}(?![0-9])|[+\- \\\x00])*" % (MIN_NUMBER_TERM - 1)
)
_SQ_CODE, _UN_CODE = (ord(v[0]) | ord(v[1]) << 8 for v in ("SQ", "UN"))
_PIXEL_DATA, _UNDEFINED = 0x7FE00010, 0xFFFFFFFF
# VRs never decoded as text (verify.elements), or not searched: raw bytes at most.
_BINARY_CODES = vr_table("US SS UL SL FL FD AT OF OD OL OV SV UV OW SQ IS DS")
_BAD_TEXT = re.compile(rb"[\x80-\xff\x1b]")
# Rows searched as substrings (verify.binary): binary VRs and codes of no standard VR.
_SUBSTR_CODES = vr_table(" ".join(sorted(SUBSTRING_VRS))) | ~vr_table(" ".join(sorted(KNOWN_VRS)))


def _find_binary(
    pieces: list[tuple[Any, bytes]],
    terms: Terms,
    allow: Allowance,
    covers: Callable[[Any], bool],
    name: Callable[[Any, bool], str],
) -> str:
    """Where a term is inside a binary value, as a substring (raw or inflated; '' if none).

    ``pieces``: (owner, value bytes) of every binary value outside pixel data; ``covers``
    tells whether an owner is kept on purpose, ``name`` names it (raw or inflated). Raises
    QuarantineError when a compressed stream cannot be inflated within its bound.
    """
    # A value shorter than every pattern (SUBSTRING_MIN bytes or more) and than any
    # compressed stream holds nothing: most files' binary values are a few bytes of meta.
    pieces = [(o, v) for o, v in pieces if len(v) >= SUBSTRING_MIN]
    if not pieces:
        return ""
    budget = Budget()
    parts: list[bytes] = []
    owners: list[tuple[Any, bool]] = []
    for owner, value in pieces:
        parts.append(value)
        owners.append((owner, False))
        if not may_hold_stream(value):
            continue
        try:
            streams = inflated(value, budget)
        except Uninspectable as exc:
            raise QuarantineError(
                f"post-check: cannot inspect compressed private data ({exc})"
            ) from None
        for out in streams:
            parts.append(out)
            owners.append((owner, True))
    matcher, always = terms.matcher("sub-bytes", allow.kinds)
    if matcher is None or not parts:
        return ""
    starts = [0]
    for p in parts[:-1]:
        starts.append(starts[-1] + len(p) + 2)
    hay = b"\x00\x00".join(parts).translate(_FOLD)
    digits = _digit_patterns(matcher)
    for s, e, k in matcher.find(hay):
        j = bisect.bisect_right(starts, s) - 1
        if e > starts[j] + len(parts[j]):
            continue  # across the separator: not in one value
        if k in digits and in_digit_run(hay, s, e, digits[k]):
            continue
        owner, from_stream = owners[j]
        if always[k] or not covers(owner):
            return name(owner, from_stream)
    return ""


def _digit_patterns(matcher: Any) -> dict[int, int]:
    """verify.binary.digit_widths of a matcher's patterns, kept on the (cached) matcher."""
    hit: dict[int, int] | None = getattr(matcher, "digits", None)
    if hit is None:
        hit = matcher.digits = digit_widths(matcher.patterns)
    return hit


def _find_binary_scanned(scan: Scanned, rows: np.ndarray, terms: Terms, allow: Allowance) -> str:
    """:func:`_find_binary` over these scanner rows."""
    vstart, stop = scan.bounds()
    data = scan.data
    pieces = [
        (i, bytes(data[vstart[i] : stop[i]]))
        for i in rows.tolist()
        if stop[i] - vstart[i] >= SUBSTRING_MIN
    ]
    if not pieces:
        return ""

    def covers(i: int) -> bool:
        return allow.covers(_row_span(scan, i, named=False))

    def name(i: int, inflated: bool) -> str:
        sp = _row_span(scan, i, named=True)
        path = sp.path if sp is not None else "the preamble"
        return f"{'inflated' if inflated else 'raw'} bytes of {path}"

    return _find_binary(pieces, terms, allow, covers, name)


def _find_pixel_side(lays: list[RawLayout], terms: Terms, allow: Allowance) -> str:
    """Where a term is in what pixel elements hold beside the image ('' if none)."""
    pieces: list[tuple[Any, bytes]] = [
        (sp, bytes(lay.data[sp.start : sp.end])) for lay in lays for sp in lay.side_spans
    ]
    if not pieces:
        return ""

    def name(sp: Span, inflated: bool) -> str:
        return f"{'inflated' if inflated else 'raw'} bytes of {sp.path}"

    return _find_binary(pieces, terms, allow, allow.covers, name)


def _find_binary_spans(lays: list[RawLayout], terms: Terms, allow: Allowance) -> str:
    """:func:`_find_binary` over the binary values of the walked layouts."""
    pieces: list[tuple[Any, bytes]] = [
        (sp, lay.data[a:b])
        for lay, sp, a, b in value_segments(lays)
        if sp is not None and sp.tag not in PIXEL_TAGS and is_binary_vr(sp.vr)
    ]

    def name(sp: Span, inflated: bool) -> str:
        return f"{'inflated' if inflated else 'raw'} bytes of {sp.path}"

    return _find_binary(pieces, terms, allow, allow.covers, name)


def _number_rows(scan: Scanned) -> list[int]:
    """The IS/DS rows the reference walks as values (not items, pixel data or opened)."""
    memo = scan.shape.memo
    hit: list[int] | None = memo.get("numbers")
    if hit is None:
        rows = scan.rows
        hit = memo["numbers"] = [
            i
            for i in np.flatnonzero(_NUMBER_CODES[scan.codes]).tolist()
            if rows[i, 0] >= 0 and int(rows[i, 0]) not in PIXEL_TAGS and rows[i, 6] < 0
        ]
    return hit


def _find_scanned(scan: Scanned, terms: Terms, allow: Allowance, preamble: bool) -> str:
    """Where a term is in a written file read from the scanner rows ('' if none).

    The same search as :func:`_find_decoded` then :func:`_find_bytes`, with one shortcut:
    a value whose bytes are all ASCII (no ESC) decodes to those very bytes in every
    character set pydicom knows, so its decoded search is the raw search's UTF-8 pass
    over the same bytes (same folding: lower case, ``^`` as space; same word boundaries;
    every ASCII term is also a byte pattern, with the same is-always flag). Only the other
    values (Latin-1, ISO 2022, UTF-8 text, printable UN) are decoded and searched as text.
    The raw bytes are searched in one pass over a copy of the file in which everything but
    the searched values (element headers, DICM, pixel data) is zero.
    """
    # IS/DS values: numbers are compared whole with the learned terms of digits; text in
    # a number is searched like any other value.
    text_numbers: list[int] = []
    numbers: tuple[frozenset[str], frozenset[str]] | None = None
    vstarts, vstops = scan.bounds()
    data = scan.data
    values = [
        (i, bytes(data[vstarts[i] : vstops[i]]))
        for i in _number_rows(scan)
        if vstops[i] > vstarts[i]
    ]
    # Usually every one is a short plain number: one match over them all says so (no
    # token of _PLAIN_SHORT_NUMBERS crosses the backslash between two of them).
    if values and _PLAIN_SHORT_NUMBERS.fullmatch(b"\\".join(v for _, v in values)):
        values = []
    for i, raw in values:
        if not is_numeric_text(raw):
            text_numbers.append(i)
        elif not _PLAIN_SHORT_NUMBERS.fullmatch(raw):  # else no number to compare
            if numbers is None:
                numbers = _number_terms(terms, allow)  # only for a file that needs them
            if _number_hit(raw, numbers, allow.covers(_row_span(scan, i, named=False))):
                return _where(scan, i, raw=False)
    seg_rows, starts, ends, hay, regions, decode, substr = _plan(scan, preamble, text_numbers)
    if decode:
        where = _find_rows_decoded(scan, decode, terms, allow)
        if where:
            return where
    where = _find_hay(scan, hay, regions, seg_rows, starts, ends, terms, allow)
    if where:
        return where
    return _find_binary_scanned(scan, substr, terms, allow)


# What _plan returns: searched rows (-1: the preamble), their starts and ends, the masked
# haystack and its regions, the rows also searched decoded, the substring rows.
_Plan = tuple[
    np.ndarray, np.ndarray, np.ndarray, bytes, list[tuple[int, int, int]], list[int], np.ndarray
]


def _plan(scan: Scanned, preamble: bool, extra_leaves: Sequence[int] = ()) -> _Plan:
    """What _find_scanned searches: the core's plan_values, or _plan_python without it.

    ``extra_leaves``: IS/DS rows searched as values (text in a number). Both are the same
    steps (tests/verify/test_native_matcher.py compares them on the adversarial corpus and
    pydicom's files); the core's costs no numpy call per step.
    """
    if _termsearch is not None:
        try:
            seg_rows, starts, ends, hay, regions, decode, substr = _termsearch.plan_values(
                scan.rows,
                scan.codes,
                scan.data,
                preamble,
                _NUMBER_CODES,
                _BINARY_CODES,
                _SUBSTR_CODES,
                _SQ_CODE,
                _UN_CODE,
                np.asarray(extra_leaves, dtype=np.int64),
            )
            return seg_rows, starts, ends, hay, regions, decode.tolist(), substr
        except ValueError:
            pass  # rows the core refuses (never from the scanner): the reference steps
    return _plan_python(scan, preamble, extra_leaves)


def _plan_python(scan: Scanned, preamble: bool, extra_leaves: Sequence[int] = ()) -> _Plan:
    """The reference of _plan, in numpy."""
    rows, codes = scan.rows, scan.codes
    tags, vstart, stop = rows[:, 0], rows[:, 3], rows[:, 5]
    is_elem = tags >= 0
    value = is_elem & ~pixel_rows(tags) & (stop > vstart)
    opened = is_elem & (rows[:, 6] >= 0)
    leaf = value & ~opened & (codes != _SQ_CODE) & ~_NUMBER_CODES[codes]
    leaf[np.asarray(extra_leaves, dtype=np.int64)] = (
        True  # text in a number: searched like any other value
    )
    # A sequence sent as UN is searched whole when no element lies in its items (the span
    # road's value_segments does the same); one with elements through them.
    un_seqs = np.flatnonzero(value & opened & (codes == _UN_CODE)).tolist()
    elems = np.flatnonzero(is_elem)
    depth = rows[:, 7]
    for i in un_seqs:
        k = int(np.searchsorted(elems, i, side="right"))
        if k >= len(elems) or depth[elems[k]] <= depth[i]:
            leaf[i] = True
    seg_rows = np.flatnonzero(leaf)
    starts, ends = vstart[seg_rows], stop[seg_rows]
    if preamble:
        seg_rows = np.concatenate(([-1], seg_rows))
        starts, ends = np.concatenate(([0], starts)), np.concatenate(([128], ends))
    # Decoded search, for the values that do not decode to their own bytes.
    textual = leaf & ~_BINARY_CODES[codes]
    decode = [i for i in un_seqs if not _NUMBER_CODES[codes[i]]]
    hay, regions = _masked(scan.data, starts, ends, rows)
    text_rows = np.flatnonzero(textual)
    if len(text_rows):
        t_starts, t_ends = vstart[text_rows], stop[text_rows]
        for _off, r0, r1 in regions:
            region = bytes(scan.data[r0:r1])
            if not _BAD_TEXT.search(region):
                continue  # all ASCII without ESC: the usual case, found in one C scan
            a = np.frombuffer(region, dtype=np.uint8)
            bad = np.flatnonzero((a >= 0x80) | (a == 0x1B)) + r0
            owner = np.searchsorted(t_starts, bad, side="right") - 1
            ok = (owner >= 0) & (bad < t_ends[np.maximum(owner, 0)])
            decode.extend(text_rows[owner[ok]].tolist())
    substr = np.flatnonzero(leaf & _SUBSTR_CODES[codes])
    return seg_rows, starts, ends, hay, regions, sorted(set(decode)), substr


def _masked(
    data: bytes | bytearray | memoryview, starts: np.ndarray, ends: np.ndarray, rows: np.ndarray
) -> tuple[bytes, list[tuple[int, int, int]]]:
    """The file's bytes with all but [starts, ends) zeroed, folded; pixel data left out.

    Returns the haystack and its regions (haystack offset, file start, file end): the
    stretches between pixel data values, joined by two zero bytes.
    """
    if not len(starts):
        return b"", []
    last = int(ends.max())
    pixel = pixel_rows(rows[:, 0]) & (rows[:, 3] < last)
    cuts = sorted(zip(rows[pixel, 3].tolist(), rows[pixel, 5].tolist(), strict=True))
    arr = np.frombuffer(data, dtype=np.uint8)
    pieces: list[bytes] = []
    regions: list[tuple[int, int, int]] = []
    prev, off = 0, 0
    for a, b in [*cuts, (last, last)]:
        if a > prev:
            inside = (starts >= prev) & (ends <= a)
            s, e = starts[inside] - prev, ends[inside] - prev
            if len(s):
                # Values never overlap: +1 at each start, -1 at each end, a running sum.
                step = np.zeros(a - prev + 1, dtype=np.int8)
                step[s] = 1
                step[e] -= 1
                keep = np.cumsum(step[:-1], dtype=np.int8).view(bool)
                pieces.append(np.where(keep, arr[prev:a], 0).astype(np.uint8).tobytes())
                regions.append((off, prev, a))
                off += a - prev + 2
        prev = max(prev, b)
    return b"\x00\x00".join(pieces).translate(_FOLD), regions


def _to_file(regions: list[tuple[int, int, int]], at: int, hay_at: list[int]) -> int:
    """The file offset of haystack offset ``at`` (``hay_at``: the regions' haystack offsets)."""
    k = bisect.bisect_right(hay_at, at) - 1
    off, r0, _ = regions[k]
    return r0 + at - off


def _to_hay(regions: list[tuple[int, int, int]], at: int, file_at: list[int]) -> int:
    """The haystack offset of file offset ``at`` (inside a region; ``file_at``: their starts)."""
    k = bisect.bisect_right(file_at, at) - 1
    off, r0, _ = regions[k]
    return off + at - r0


def _row_span(scan: Scanned, i: int, *, named: bool) -> Span | None:
    """The element of row i for Allowance.covers (path only when ``named``); None: preamble."""
    if i < 0:
        return None
    if named:
        return scan.span(i)
    rows = scan.rows
    tag, d = int(rows[i, 0]), int(rows[i, 7])
    private = bool(tag >> 16 & 1)
    j = i - 1
    # The enclosing sequence is the last element row one level up: walk up to the top.
    while d > 0 and j >= 0 and not private:
        if rows[j, 0] >= 0 and rows[j, 7] == d - 1:
            private = bool(int(rows[j, 0]) >> 16 & 1)
            d -= 1
        j -= 1
    return Span(int(rows[i, 3]), int(rows[i, 5]), "", tag, scan.vr(i), private)


def _covered(scan: Scanned, i: int, allow: Allowance) -> bool:
    """allow.covers(_row_span(scan, i, named=False)), its tag and privacy kept per Shape."""
    owners: dict[int, tuple[int, bool]] | None = scan.shape.memo.get("owners")
    if owners is None:
        owners = scan.shape.memo["owners"] = {}
    hit = owners.get(i)
    if hit is None:
        sp = _row_span(scan, i, named=False)
        hit = owners[i] = (-1, False) if sp is None else (sp.tag, sp.private)
    tag, private = hit
    return tag >= 0 and (tag in allow.tags or (allow.private and private))


def _where(scan: Scanned, i: int, raw: bool) -> str:
    """How a finding at row i is named in the quarantine reason."""
    sp = _row_span(scan, i, named=True)
    path = sp.path if sp is not None else "the preamble"
    return f"raw bytes of {path}" if raw or sp is None else path


def _find_rows_decoded(scan: Scanned, decode: list[int], terms: Terms, allow: Allowance) -> str:
    """:func:`_find_decoded` over these element rows only (their decoded texts)."""
    matcher, always = terms.matcher("text", allow.kinds)
    if matcher is None:
        return ""
    parts: list[str] = []
    owners: list[int] = []
    for i in decode:
        for t in scan.texts(i):
            parts.append(normalize(t))
            owners.append(i)
    if not parts:
        return ""
    starts = [0]
    for p in parts[:-1]:
        starts.append(starts[-1] + len(p) + 1)
    recheck: list[int] = []
    for s, _e, k in matcher.find("\x00".join(parts)):
        j = bisect.bisect_right(starts, s) - 1
        if always[k] or not allow.covers(_row_span(scan, owners[j], named=False)):
            return _where(scan, owners[j], raw=False)
        recheck.append(j)  # kept on purpose; the patient's own values are not
    if recheck:
        only, _ = terms.matcher("always-text")
        for j in recheck:
            if only is not None and only.find(parts[j]):
                return _where(scan, owners[j], raw=False)
    return ""


def _find_hay(
    scan: Scanned,
    hay: bytes,
    regions: list[tuple[int, int, int]],
    seg_rows: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    terms: Terms,
    allow: Allowance,
) -> str:
    """:func:`_find_bytes` over the masked haystack: each hit judged by the values it touches."""
    matcher, always = terms.matcher("bytes", allow.kinds)
    if matcher is None or not hay:
        return ""
    found = matcher.find(hay)
    if not found:
        return ""
    # Lists for the few hits (kept values, mostly): no numpy call per step.
    begins, stops = starts.tolist(), ends.tolist()
    hay_at = [r[0] for r in regions]
    recheck: set[int] = set()
    for s, e, k in found:
        fs, fe = _to_file(regions, s, hay_at), _to_file(regions, e - 1, hay_at) + 1
        j = max(bisect.bisect_right(begins, fs) - 1, 0)
        touched = []
        while j < len(begins) and begins[j] < fe:
            if stops[j] > fs:
                touched.append(j)
            j += 1
        # Kept on purpose only when the whole match lies in one value the policy keeps: a
        # pattern that begins or ends with a zero byte (UTF-16) may run onto the header
        # beside a value, and such a match is judged as found (the span road judged it by
        # the value before the separator it began in; this is at least as strict).
        whole = len(touched) == 1 and begins[touched[0]] <= fs and fe <= stops[touched[0]]
        for j in touched:
            i = int(seg_rows[j])
            if always[k] or not whole or not _covered(scan, i, allow):
                return _where(scan, i, raw=True)
        recheck.update(touched)
    if recheck:
        only, _ = terms.matcher("always-bytes")
        if only is not None:
            file_at = [r[1] for r in regions]
            for j in sorted(recheck):
                a = max(_to_hay(regions, begins[j], file_at) - 1, 0)
                b = _to_hay(regions, stops[j] - 1, file_at) + 2
                if _holds(only, hay[a:b]):
                    return _where(scan, int(seg_rows[j]), raw=True)
    return ""


def _holds(matcher: Any, piece: bytes) -> bool:
    """Whether matcher finds anything in piece, remembered on the (series') matcher.

    A kept value (the station's name) is rechecked in every file of a series: the answer
    for the same bytes and the same automaton is kept with it (bounded; in memory only).
    """
    seen: dict[bytes, bool] | None = getattr(matcher, "seen", None)
    if seen is None:
        seen = matcher.seen = {}
    hit = seen.get(piece)
    if hit is None:
        if len(seen) >= 256:
            seen.clear()
        hit = seen[piece] = bool(matcher.find(piece))
    return hit


def _find_numbers_spans(lays: list[RawLayout], terms: Terms, allow: Allowance) -> str:
    """The path of an IS/DS value equal to a learned term of digits ('' if none)."""
    numbers = _number_terms(terms, allow)
    if not numbers[0] and not numbers[1]:
        return ""
    for lay, sp, a, b in value_segments(lays):
        if sp is None or sp.vr not in _NUMBER_VRS:
            continue
        raw = bytes(lay.data[a:b])
        if is_numeric_text(raw) and _number_hit(raw, numbers, allow.covers(sp)):
            return sp.path
    return ""


def _find_decoded(decoded: list[Decoded], terms: Terms, allow: Allowance) -> str:
    """The path of an element whose decoded value holds a term ('' if none)."""
    matcher, always = terms.matcher("text", allow.kinds)
    if matcher is None:
        return ""
    parts: list[str] = []
    owners: list[Decoded] = []
    for d in decoded:
        if d.span.vr in _NUMBER_VRS and all(
            is_numeric_text(t.encode("utf-8", "replace")) for t in d.texts
        ):
            continue  # numbers are compared whole (_find_numbers_spans), not searched
        for t in d.texts:
            parts.append(normalize(t))
            owners.append(d)
    if not parts:
        return ""
    starts = [0]
    for p in parts[:-1]:
        starts.append(starts[-1] + len(p) + 1)
    recheck: list[int] = []
    for s, _e, i in matcher.find("\x00".join(parts)):
        j = bisect.bisect_right(starts, s) - 1
        if always[i] or not allow.covers(owners[j].span):
            return owners[j].span.path
        recheck.append(j)  # kept on purpose; the patient's own values are not
    if recheck:
        only, _ = terms.matcher("always-text")
        for j in recheck:
            if only is not None and only.find(parts[j]):
                return owners[j].span.path
    return ""


def _patterns(values: list[str], terms: Terms) -> list[Any]:
    """Each value (as learned, upper case, as written) in every plausible byte encoding."""
    patterns: set[bytes] = set()
    for v in values:
        if v.isascii():
            # The usual value, without the loops below (the same three encodings).
            patterns.update(_ascii_patterns(v))
            continue
        # The haystack is ASCII-folded ('^' as space, lower case): an ASCII value needs
        # one spelling; others also as upper case and as written in the input.
        variants = {v} if v.isascii() else {v, v.upper(), *terms.spellings.get(v, ())}
        for variant in variants:
            # ASCII reads the same in every ASCII-compatible set: UTF-8 and UTF-16 suffice.
            for enc in _ASCII_ENCODINGS if variant.isascii() else _ENCODINGS:
                try:
                    pat = variant.encode(enc).translate(_FOLD)
                except (UnicodeEncodeError, LookupError):
                    continue
                if len(pat) >= MIN_TERM:
                    patterns.add(pat)
    return sorted(patterns)


# ASCII value -> its byte patterns (a series' instances refer to each other's UIDs).
_ASCII_PATTERNS: dict[str, tuple[bytes, ...]] = {}


def _ascii_patterns(value: str) -> tuple[bytes, ...]:
    """An ASCII value's patterns: folded, in UTF-8 and both UTF-16s (remembered, bounded)."""
    hit = _ASCII_PATTERNS.get(value)
    if hit is None:
        hit = tuple(
            pat
            for pat in (
                value.encode("ascii").translate(_FOLD),
                value.encode("utf-16-le").translate(_FOLD),
                value.encode("utf-16-be").translate(_FOLD),
            )
            if len(pat) >= MIN_TERM
        )
        if len(_ASCII_PATTERNS) >= 4096:
            _ASCII_PATTERNS.clear()
        _ASCII_PATTERNS[value] = hit
    return hit


def _find_bytes(lays: list[RawLayout], terms: Terms, allow: Allowance) -> str:
    """Where a term's bytes (any plausible encoding) are in a value's raw bytes ('' if none)."""
    matcher, always = terms.matcher("bytes", allow.kinds)
    if matcher is None:
        return ""
    chosen = [
        (sp, lay.data[a:b])
        for lay, sp, a, b in value_segments(lays)
        if not (sp is not None and sp.vr in _NUMBER_VRS and is_numeric_text(bytes(lay.data[a:b])))
    ]
    starts = [0]
    for _, chunk in chosen[:-1]:
        starts.append(starts[-1] + len(chunk) + 2)
    recheck: list[int] = []
    for s, _e, i in matcher.find(b"\x00\x00".join(c for _, c in chosen).translate(_FOLD)):
        j = bisect.bisect_right(starts, s) - 1
        sp = chosen[j][0]
        if always[i] or not allow.covers(sp):
            return f"raw bytes of {sp.path if sp is not None else 'the preamble'}"
        recheck.append(j)
    if recheck:
        only, _ = terms.matcher("always-bytes")
        for j in recheck:
            sp, chunk = chosen[j]
            if only is not None and only.find(chunk.translate(_FOLD)):
                return f"raw bytes of {sp.path if sp is not None else 'the preamble'}"
    return ""


_RECORD_SPACES = str.maketrans({"/": " ", "_": " ", "^": " "})


@lru_cache(maxsize=4096)
def _record_text(text: str) -> str:
    """normalize() of a path or catalog value, '/' and '_' read as spaces too.

    Remembered (bounded, in memory only): a series' catalog rows repeat most values.
    """
    return text.translate(_RECORD_SPACES).casefold().strip(" \x00\t\r\n")


def check_record(texts: list[str], terms: Terms, allow: Allowance = Allowance()) -> None:
    """Raise QuarantineError if an output path or catalog value holds a learned term.

    The path and catalog are written beside the file (and printed); they are searched
    like any element that no policy keeps on purpose.
    """
    hay = "\x00".join(_record_text(t) for t in texts if t)
    matcher, _ = terms.matcher("text", allow.kinds)
    if matcher is not None and hay and matcher.find(hay):
        raise QuarantineError("post-check: the output path or catalog would hold an original value")
