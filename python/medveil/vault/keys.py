"""The vault key: 32 random bytes in a file of its own, separate from the pseudonym secret."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from medveil.errors import MedveilError

KEY_BYTES = 32


def keygen(path: str | os.PathLike[str]) -> None:
    """Create a new vault key file (64 hex characters, mode 0600, never overwriting)."""
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: an existing key is never replaced (that would orphan every sealed row);
    # mode 0600 from the start rather than a chmod after the key is already on disk.
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a vault key file (64 hex characters, or 32 raw bytes)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise MedveilError(f"cannot read the vault key file {p}: {exc.strerror}") from None
    text = data.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == KEY_BYTES:
        return data
    raise MedveilError(
        f"the vault key file {p} must hold {2 * KEY_BYTES} hex characters or {KEY_BYTES} raw "
        "bytes (create one with `medveil vault keygen FILE`)"
    )
