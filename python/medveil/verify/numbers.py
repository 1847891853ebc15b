"""IS and DS values: numbers written as text, and when one gives an identifier away.

Both the verifier and the engine's post-check skip substring searches in IS/DS values
(an ID of digits inside an instance number means nothing), but that must not make them
a hiding place: a value that does not read as numbers is text and is searched as text,
and a number equal to a learned term of digits (a numeric patient ID, a birth date
written as digits) is a finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NUMERIC_TEXT = re.compile(rb"[0-9+\-.eE \\\x00]*")
# Numbers are compared whole with learned terms of digits from this length (a numeric
# MRN has five or more): an instance or series number equal to a shorter ID is too
# common to mean anything.
MIN_NUMBER_TERM = 5


def is_numeric_text(value: bytes) -> bool:
    """Whether an IS/DS value's bytes read as numbers only (digits, sign, point, exponent)."""
    return _NUMERIC_TEXT.fullmatch(value) is not None


def number_forms(values: Iterable[bytes]) -> set[str]:
    """Each number of IS/DS values as written and, when integral, as a plain integer."""
    forms: set[str] = set()
    for value in values:
        for v in value.split(b"\\"):
            text = v.strip(b" \x00").decode("ascii", "replace")
            if not text:
                continue
            forms.add(text.lstrip("+"))
            try:
                number = float(text)
            except ValueError:
                continue
            if number.is_integer() and abs(number) < 1e18:
                forms.add(str(int(number)))
    return {f for f in forms if f.isdigit() and len(f) >= MIN_NUMBER_TERM}
