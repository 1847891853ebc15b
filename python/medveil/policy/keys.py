"""Keyed, deterministic replacements: pseudonyms, UIDs and per-patient date offsets.

Everything is HMAC-SHA256 under the project secret with a domain label per use, so the
same original gives the same replacement in every file, run and machine holding the same
secret, with no lookup table; different secrets give unrelated replacements.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from pydicom._uid_dict import UID_dictionary

from medveil.crypto.keyfile import create_key_file, read_key_file
from medveil.errors import MedveilError

SECRET_BYTES = 32
# 2.25 is the UUID-derived root (ITU-T X.667): 128 bits as one decimal number.
UID_ROOT = "2.25."
DICOM_ROOT = "1.2.840.10008."


class PseudonymCollisionError(MedveilError):
    """Two different originals mapped to the same pseudonym in one run."""


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """Read a 32-byte project secret from a file (raw bytes, or 64 hex characters)."""
    return read_key_file(path, SECRET_BYTES, "secret", "medveil secret FILE")


def create_secret(path: str | os.PathLike[str]) -> bytes:
    """Create a new random secret file readable only by its owner (mode 0600) and return it."""
    return create_key_file(path, SECRET_BYTES)


def default_secret_path() -> Path:
    """Where the per-user secret lives when no --secret-file is given."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "medveil" / "secret"


class Keyed:
    """Derivations under one secret; caches UIDs because references repeat them."""

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != SECRET_BYTES:
            raise ValueError(f"the secret must be {SECRET_BYTES} bytes")
        self._secret = bytes(secret)
        self._uid_cache: dict[str, str] = {}
        self._seen: dict[tuple[str, str], bytes] = {}
        self._pseudonyms: dict[tuple[str, str, int, str], str] = {}

    def digest(self, domain: str, value: str | bytes) -> bytes:
        """HMAC-SHA256 of value under the secret, separated by a domain label."""
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, domain.encode() + b"\x00" + value, hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """Replacement UID: '2.25.' + the decimal of 128 bits of HMAC(secret, original)."""
        original = original.strip("\x00 ")
        cached = self._uid_cache.get(original)
        if cached is not None:
            return cached
        value = UID_ROOT + str(int.from_bytes(self.digest("uid", original)[:16], "big"))
        if len(self._uid_cache) > 100_000:
            self._uid_cache.clear()
        self._uid_cache[original] = value
        return value

    def pseudonym(self, kind: str, original: str, length: int, prefix: str = "") -> str:
        """Deterministic pseudonym: prefix + `length` base32 characters of the keyed hash.

        20 characters carry 100 bits: for 10^9 patients the chance of any collision is
        about 4e-13. A collision seen within one run raises PseudonymCollisionError.
        """
        memo_key = (kind, original, length, prefix)
        known = self._pseudonyms.get(memo_key)
        if known is not None:
            return known  # a patient's files repeat the value, and it was checked already
        d = self.digest("pseudonym:" + kind, original.strip())
        text = prefix + base64.b32encode(d).decode("ascii").rstrip("=")[:length]
        fingerprint = hashlib.sha256(original.strip().encode("utf-8", "surrogateescape")).digest()
        key = (kind, text)
        prev = self._seen.get(key)
        if prev is None:
            if len(self._seen) < 1_000_000:
                self._seen[key] = fingerprint
        elif prev != fingerprint:
            raise PseudonymCollisionError(
                f"two different {kind} values map to the same pseudonym; use a longer "
                "pseudonym length in the policy"
            )
        if len(self._pseudonyms) > 100_000:
            self._pseudonyms.clear()
        self._pseudonyms[memo_key] = text
        return text

    def date_offset(self, patient_key: str, max_days: int) -> int:
        """Per-patient shift in days, never 0, uniform in [-max_days, max_days] \\ {0}."""
        if max_days <= 0:
            return 0
        n = int.from_bytes(self.digest("date-offset", patient_key.strip())[:8], "big") % (
            2 * max_days
        )
        return n - max_days if n < max_days else n - max_days + 1

    def path_token(self, path: str) -> str:
        """A keyed hash of an input path, for run records that must not hold PHI."""
        return self.digest("path", path).hex()[:24]


def is_well_known_uid(uid: str) -> bool:
    """True for UIDs the standard defines, as listed in pydicom's UID dictionary.

    Not any UID under 1.2.840.10008: instance UIDs are minted under that root too (with
    dates and serial numbers in them), and they must be replaced like any other.
    """
    return uid.strip("\x00 ") in UID_dictionary
