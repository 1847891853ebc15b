"""Fuzzy matching of OCR'd burned-in text against a file's own identifying header values.

The identifiers mode of burned-in text detection masks a text line only when what OCR
read there matches something that identifies this patient: a name component, an ID, a
date in one of the formats devices print, the institution. OCR misreads (``0``/``O``,
``1``/``l``, dropped or doubled letters, split or merged tokens), so the comparison is
case-insensitive, maps look-alike characters together, ignores punctuation, and allows an
edit distance that grows with the value's length. Multi-word values (institution names)
match when all their words appear, in any order.

The values are PHI: an :class:`Identifiers` object must never be logged or written out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from medveil.dicom.keywords import DATE_KEYWORDS, ID_KEYWORDS, NAME_KEYWORDS, PHRASE_KEYWORDS
from medveil.dicom.peek import peek_str

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

# Characters OCR confuses; both sides of a comparison go through the same map, so a
# name read as "D0E" still matches "DOE".
_LOOKALIKE = str.maketrans({"O": "0", "Q": "0", "I": "1", "L": "1", "|": "1", "S": "5", "B": "8"})
_SPLIT = re.compile(r"[\s\^=,;:()\[\]{}\"'<>*#]+")
#: Shortest value kept; with the look-alike map, shorter ones match too much by chance.
MIN_ATOM = 2
#: How many adjacent OCR tokens may be run together to meet one value.
MAX_JOIN = 4


def normalize(text: str) -> str:
    """Upper-case ASCII letters and digits only, look-alike characters mapped together."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Z0-9]", "", folded.upper().translate(_LOOKALIKE))


def tokens(text: str) -> list[str]:
    """The normalized tokens of a text (split at blanks and name/field separators)."""
    return [t for t in (normalize(p) for p in _SPLIT.split(text)) if t]


def allowed_distance(n: int) -> int:
    """Edit distance tolerated for a value of n normalized characters."""
    if n <= 3:
        return 0
    if n <= 6:
        return 1
    if n <= 10:
        return 2
    return 3


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Levenshtein distance of a and b; stops early (returning limit + 1) past ``limit``."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if limit is not None and min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def substring_distance(needle: str, hay: str) -> int:
    """Fewest edits turning ``needle`` into some substring of ``hay`` (Sellers' algorithm)."""
    if not needle:
        return 0
    prev = [0] * (len(hay) + 1)  # a match may start anywhere in hay: row 0 is free
    for i, cn in enumerate(needle, 1):
        cur = [i]
        for j, ch in enumerate(hay, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (cn != ch)))
        prev = cur
    return min(prev)


def date_forms(da: str) -> list[str]:
    """The renderings of a DICOM date (YYYYMMDD) that devices and people print."""
    m = re.fullmatch(r"\s*(\d{4})(\d{2})(\d{2})\s*", da)
    if not m:
        return []
    y, mo, d = m.groups()
    month = int(mo)
    if not 1 <= month <= 12 or not 1 <= int(d) <= 31:
        return []
    mon = MONTHS[month - 1]
    yy, m1, d1 = y[2:], str(month), str(int(d))
    forms = {
        f"{y}{mo}{d}",
        f"{y}-{mo}-{d}",
        f"{y}/{mo}/{d}",
        f"{d}.{mo}.{y}",
        f"{d}/{mo}/{y}",
        f"{mo}/{d}/{y}",
        f"{d}-{mo}-{y}",
        f"{mo}-{d}-{y}",
        f"{d1}.{m1}.{y}",
        f"{d1}/{m1}/{y}",
        f"{m1}/{d1}/{y}",
        f"{d}.{mo}.{yy}",
        f"{d}/{mo}/{yy}",
        f"{mo}/{d}/{yy}",
        f"{d}-{mon}-{y}",
        f"{d} {mon} {y}",
        f"{mon} {d} {y}",
        f"{d1}-{mon}-{y}",
        f"{mon} {d1} {y}",
        f"{y}-{mon}-{d}",
    }
    return sorted(forms)


def _values(ds: Dataset, keyword: str) -> list[str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        return []
    return [v for v in peek_str(ds, tag).split("\\") if v.strip()]


@dataclass(frozen=True)
class Identifiers:
    """A file's identifying values, normalized for matching OCR text (PHI: never log)."""

    atoms: frozenset[str]  # single values: name components, IDs, date renderings
    phrases: tuple[tuple[str, ...], ...]  # multi-word values, matched word by word

    @classmethod
    def from_values(
        cls,
        *,
        names: Iterable[str] = (),
        ids: Iterable[str] = (),
        dates: Iterable[str] = (),
        phrases: Iterable[str] = (),
    ) -> Identifiers:
        """Build the matcher from raw values (PN with ^ separators, DA as YYYYMMDD)."""
        atoms: set[str] = set()
        multi: set[tuple[str, ...]] = set()
        for name in names:
            parts = tokens(name)
            atoms.update(parts)
            if len(parts) > 1:
                # The whole name run together, both orders: OCR often misreads the
                # separator ("DOE^JANE" -> "DOEWANE"), leaving no component intact.
                atoms.add("".join(parts))
                atoms.add("".join(parts[1:] + parts[:1]))
        for value in ids:
            atoms.add(normalize(value))
        for da in dates:
            atoms.update(normalize(f) for f in date_forms(da))
        for text in phrases:
            words = tuple(t for t in tokens(text) if len(t) >= 3)
            if len(words) == 1:
                atoms.add(words[0])
            elif words:
                multi.add(words)
                atoms.add("".join(words))
        return cls(
            frozenset(a for a in atoms if len(a) >= MIN_ATOM),
            tuple(sorted(multi)),
        )

    @classmethod
    def from_dataset(cls, ds: Dataset) -> Identifiers:
        """The identifying values of ``ds`` as it is now: call before de-identification."""

        def collect(kws: tuple[str, ...]) -> list[str]:
            """Every value of every keyword in ``kws`` that ds has."""
            return [v for kw in kws for v in _values(ds, kw)]

        return cls.from_values(
            names=collect(NAME_KEYWORDS),
            ids=collect(ID_KEYWORDS),
            dates=collect(DATE_KEYWORDS),
            phrases=collect(PHRASE_KEYWORDS),
        )

    def __bool__(self) -> bool:
        return bool(self.atoms or self.phrases)

    def __repr__(self) -> str:  # never show the values
        return f"Identifiers({len(self.atoms)} values, {len(self.phrases)} phrases)"

    def matches(self, text: str) -> bool:
        """True when ``text`` (one OCR'd line) contains one of the identifying values."""
        toks = tokens(text)
        if not toks:
            return False
        windows = {
            "".join(toks[i:j])
            for i in range(len(toks))
            for j in range(i + 1, min(len(toks), i + MAX_JOIN) + 1)
        }
        compact = "".join(toks)
        for atom in self.atoms:
            limit = allowed_distance(len(atom))
            if atom in windows:
                return True
            if limit and any(
                abs(len(w) - len(atom)) <= limit and edit_distance(w, atom, limit) <= limit
                for w in windows
            ):
                return True
            # Long values may be run into neighbouring text by OCR ("ID:MRN0012" -> one
            # token); short ones must stand alone or they match inside ordinary words.
            if len(atom) >= 6 and (
                atom in compact or (limit and substring_distance(atom, compact) <= limit)
            ):
                return True
        for words in self.phrases:
            if all(
                any(
                    edit_distance(t, w, allowed_distance(len(w))) <= allowed_distance(len(w))
                    for t in toks
                )
                for w in words
            ):
                return True
        return False
