"""The vault key: 32 random bytes in a file of its own, separate from the pseudonym secret."""

from __future__ import annotations

import os

from medveil.crypto.keyfile import create_key_file, read_key_file

KEY_BYTES = 32


def keygen(path: str | os.PathLike[str]) -> None:
    """Create a new vault key file (64 hex characters, mode 0600, never overwriting)."""
    # An existing key is never replaced: that would orphan every sealed row.
    create_key_file(path, KEY_BYTES)


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a vault key file (64 hex characters, or 32 raw bytes)."""
    return read_key_file(path, KEY_BYTES, "vault key", "medveil vault keygen FILE")
