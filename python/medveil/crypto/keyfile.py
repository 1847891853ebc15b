"""Key files: 32 random bytes stored as 64 hex characters, readable by their owner only.

The pseudonym secret and the vault key use the same format and the same rules: created
with O_EXCL (an existing key is never replaced) and mode 0600 from the start (never a
chmod after the key is already on disk); read back as hex or as raw bytes.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from medveil.errors import MedveilError


def create_key_file(path: str | os.PathLike[str], nbytes: int = 32) -> bytes:
    """Create a new key file of `nbytes` random bytes (hex, mode 0600) and return the key."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(nbytes)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def read_key_file(path: str | os.PathLike[str], nbytes: int, what: str, create_hint: str) -> bytes:
    """Read a key file holding `nbytes` raw bytes or 2*`nbytes` hex characters."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise MedveilError(f"cannot read the {what} file {p}: {exc.strerror}") from None
    text = data.strip()
    if len(text) == 2 * nbytes:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == nbytes:
        return data
    raise MedveilError(
        f"the {what} file {p} must hold {2 * nbytes} hex characters or {nbytes} raw bytes "
        f"(create one with `{create_hint}`)"
    )
