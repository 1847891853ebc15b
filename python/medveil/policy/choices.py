"""The coded choices of a policy, as Enums whose values are the TOML strings.

Each is a ``str`` subclass, so code that compares with the string (``mode == "minimal"``)
and JSON output keep working while the type checker sees the closed set of values.
"""

from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10 has no StrEnum: the same behaviour by hand

    class StrEnum(str, enum.Enum):
        """A str Enum whose str() and format() give the value, as 3.11's StrEnum."""

        def __str__(self) -> str:
            """The TOML string."""
            return str(self.value)

        def __format__(self, spec: str) -> str:
            """Format as the TOML string."""
            return str(self.value).__format__(spec)


class UnknownElements(StrEnum):
    """What happens to a standard element no rule names (``[profile] unknown_elements``)."""

    KEEP = "keep"  # the standard's behaviour, with medveil's safety net (policy/net.py)
    REMOVE = "remove"  # allow-list mode: only STRUCTURAL_KEEP and [profile] keep stay


class CombinedCodes(StrEnum):
    """How X/Z, X/D, Z/D, X/Z/D and X/Z/U* are resolved (``[profile] combined_codes``)."""

    CONSERVATIVE = "conservative"  # keep a valid IOD valid (see standard.resolve_combined)
    MINIMAL = "minimal"  # always the most removing choice


class PixelText(StrEnum):
    """How burned-in text is found (``[pixels] pixel_text``)."""

    RULES = "rules"  # device rules only
    DETECT = "detect"  # text detection only
    DETECT_RULES = "detect+rules"  # both
    AUTO = "auto"  # both on classes that usually carry burned-in text, rules on the rest


class PixelMask(StrEnum):
    """What text detection masks (``[pixels] mask``)."""

    ALL_TEXT = "all-text"  # every line of text found
    IDENTIFIERS = "identifiers"  # lines that OCR reads as the file's own identifiers


class SafePrivateVerdict(StrEnum):
    """What Retain Safe Private does with one private element listed in Table E.3.10-1."""

    KEEP = "K-safe-private"  # keep the value as it is
    RECURSE = "K-safe-private-recurse"  # keep the sequence, apply the profile to its items
    NOT_SAFE = "X-safe-private-vr"  # listed, but the value is not of the table's VR: remove
