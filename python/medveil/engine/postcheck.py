"""Post-check of a de-identified file: re-read it and hunt the original identity in it.

Independent of the rule table: whatever the policy did, the written header bytes must
not contain the patient's name components, IDs, accession number or birth date, and the
file must parse and say PatientIdentityRemoved = YES. A file that fails is quarantined.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medveil.dicom.keywords import IDENTITY_KEYWORDS
from medveil.errors import QuarantineError

MIN_TERM = 3
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"


def identity_terms(ds: Dataset) -> list[bytes]:
    """The original identifying values (and name components) of a dataset, as bytes."""

    def values(kw: str) -> list[object]:
        value = ds.get(kw)
        if value is None or value == "":
            return []
        return list(value) if isinstance(value, (list, MultiValue)) else [value]

    return terms_from(values)


def terms_from(values: Callable[[str], list[object]]) -> list[bytes]:
    """identity_terms from a lookup of each IDENTITY_KEYWORDS' values."""
    terms: set[str] = set()
    for kw in IDENTITY_KEYWORDS:
        for v in values(kw):
            text = str(v).strip()
            if not text:
                continue
            terms.add(text)
            if kw.endswith(("Name", "Names")):
                terms.update(p for p in re.split(r"[\^= ,]+", text) if p)
    return sorted({t.encode("utf-8", "ignore").lower() for t in terms if len(t) >= MIN_TERM})


def post_check(data: bytes, terms: list[bytes], pixel_at: int | None = None) -> None:
    """Raise QuarantineError if data does not parse or still holds an identifying term.

    ``pixel_at`` is where the top-level Pixel Data starts (from the writer); without it
    the last Pixel Data tag in the file is taken. Pixels are not searched.
    """
    end = data.rfind(_PIXEL_TAG_LE) if pixel_at is None else pixel_at
    header_bytes = data[:end] if end > 0 else data
    try:
        # Every element header is parsed again; only the mark is decoded.
        ds = pydicom.dcmread(io.BytesIO(header_bytes), force=True, specific_tags=[0x00120062])
    except Exception as exc:
        raise QuarantineError(f"post-check: output does not parse: {exc}") from None
    if ds.get("PatientIdentityRemoved") != "YES":
        raise QuarantineError("post-check: PatientIdentityRemoved is not YES")
    if holds_term(header_bytes.lower(), terms):
        raise QuarantineError("post-check: an original identifying value is still in the output")


_WORD = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyz")


def holds_term(header: bytes, terms: list[bytes]) -> bool:
    """True if a (lower-case) term occurs in the lower-cased header as a whole word.

    Alphanumeric boundaries keep a short numeric ID from matching inside a long UID.
    """
    word = _WORD
    for term in terms:
        at = header.find(term)
        while at >= 0:
            end = at + len(term)
            if (at == 0 or header[at - 1] not in word) and (
                end == len(header) or header[end] not in word
            ):
                return True
            at = header.find(term, at + 1)
    return False
