"""Post-check of a de-identified file: an independent search of the WRITTEN bytes.

Independent of the rule table and of how either engine read the input. The terms are
learned from the input's bytes (structurally validated first) by the verifier's own
learner (:mod:`medveil.verify`: names, IDs, UIDs, dates, identifying free text and private
text, by VR), plus the patient's identity (:data:`IDENTITY_KEYWORDS`, name components from
three letters, the birth date in the spellings people write). The written file is then
walked to its end, inflated first when deflated (file meta, every depth, after Pixel
Data), each value decoded with its own character set and searched with word boundaries
computed on the value; and the raw bytes of every value are searched in UTF-8, Latin-1,
UTF-16 and the other character sets pydicom writes. A file that does not parse to its end,
is not marked PatientIdentityRemoved = YES or holds a term is quarantined.

A value the policy keeps on purpose (the same text at the same element path in input and
output: StationName under Retain Device Identity, a kept private value) is not a term,
except names and the patient's identity, which are never kept; UIDs and dates only when
the policy retains them (``retained``).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from medveil.dicom.keywords import IDENTITY_KEYWORDS
from medveil.errors import QuarantineError
from medveil.policy.schema import CompiledPolicy
from medveil.policy.standard import Option
from medveil.verify.elements import Decoded, decoded_elements, value_segments
from medveil.verify.matcher import is_spaceless, make_matcher
from medveil.verify.rawscan import RawLayout, Span
from medveil.verify.values import STOP_WORDS, Learner, date_spellings, normalize, unaccented

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

    def matcher(self, form: str, allowed: frozenset[str] = frozenset()) -> tuple[Any, list[bool]]:
        """(matcher, is-always flag per pattern) over the terms, as 'text' or 'bytes'.

        One automaton holds the terms never allowed (``always``) and the others, so a
        file costs one build per form; ``form`` 'always-text'/'always-bytes' gives the
        first kind alone (for rechecking an allowed element).
        """
        key = (form, allowed)
        hit = self._compiled.get(key)
        if hit is None:
            only_always = form.startswith("always-")
            always = sorted(self.always)
            others = (
                []
                if only_always
                else sorted(
                    v for v, k in self.kinds.items() if k not in allowed and v not in self.always
                )
            )
            flags: dict[Any, bool] = {}
            if form.endswith("text"):
                flags = {v: True for v in always}
                for v in others:
                    flags.setdefault(v, False)
            else:
                for pat in _patterns(always, self):
                    flags[pat] = True
                for pat in _patterns(others, self):
                    flags.setdefault(pat, False)
            patterns = list(flags)
            matcher = make_matcher(patterns) if patterns else None
            hit = self._compiled[key] = (matcher, [flags[p] for p in patterns])
        return hit

    def __len__(self) -> int:
        return len(self.always) + len(self.kinds)


@lru_cache(maxsize=4096)
def _keyword(tag: int) -> str:
    """The dictionary keyword of a tag ('' for private and unknown tags)."""
    return keyword_for_tag(tag) or ""


def learn_terms(data: bytes | bytearray | memoryview) -> Terms:
    """The terms to hunt in the output, learned from the input file's bytes.

    Call it on a file that passed :func:`medveil.dicom.strict.check_structure`: the walk
    then follows the file exactly, so every element at every depth is learned from.
    """
    _, decoded = decoded_elements(bytes(data))
    learner = Learner(strict=False, spell_birth_date=False)  # _identity spells it
    terms = Terms()
    for d in decoded:
        sp = d.span
        if not d.texts:
            continue
        kw = _keyword(sp.tag)
        learner.element(sp.tag, sp.vr, kw, d.texts, bool(sp.tag >> 16 & 1), "input")
        if sp.tag in _IDENTITY_TAGS:
            for t in d.texts:
                _identity(terms, sp.tag, t)
    index = learner.finish()
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
            if len(piece) >= 5 and any(ch.isdigit() for ch in piece):
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
    """Raise QuarantineError unless the written file parses to its end, is marked, is clean."""
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
    where = _find_decoded(decoded, terms, allow) or _find_bytes(lays, terms, allow)
    if where:
        raise QuarantineError(
            f"post-check: an original identifying value is still in the output ({where})"
        )


_NUMBER_VRS = frozenset({"IS", "DS"})


def _find_decoded(decoded: list[Decoded], terms: Terms, allow: Allowance) -> str:
    """The path of an element whose decoded value holds a term ('' if none)."""
    matcher, always = terms.matcher("text", allow.kinds)
    if matcher is None:
        return ""
    parts: list[str] = []
    owners: list[Decoded] = []
    for d in decoded:
        if d.span.vr in _NUMBER_VRS:
            continue  # an ID of digits equal to an instance number is no leak
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


def _find_bytes(lays: list[RawLayout], terms: Terms, allow: Allowance) -> str:
    """Where a term's bytes (any plausible encoding) are in a value's raw bytes ('' if none)."""
    matcher, always = terms.matcher("bytes", allow.kinds)
    if matcher is None:
        return ""
    chosen = [
        (sp, lay.data[a:b])
        for lay, sp, a, b in value_segments(lays)
        if not (sp is not None and sp.vr in _NUMBER_VRS)
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


def check_record(texts: list[str], terms: Terms, allow: Allowance = Allowance()) -> None:
    """Raise QuarantineError if an output path or catalog value holds a learned term.

    The path and catalog are written beside the file (and printed); they are searched
    like any element that no policy keeps on purpose.
    """
    hay = "\x00".join(normalize(t.replace("/", " ").replace("_", " ")) for t in texts if t)
    matcher, _ = terms.matcher("text", allow.kinds)
    if matcher is not None and hay and matcher.find(hay):
        raise QuarantineError("post-check: the output path or catalog would hold an original value")
