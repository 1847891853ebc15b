"""Re-identification vault: the crosswalk from pseudonyms and new UIDs to the originals.

Keyed pseudonyms cannot be inverted, so controlled re-identification (clinical trials,
incidental findings) needs the mapping kept somewhere: here, in an SQLite file (the
default; WAL, many writer processes) or a PostgreSQL database (``postgresql://``, for runs
across machines), with every original value sealed by ChaCha20-Poly1305 under a vault key
kept apart from the pseudonym secret. The pseudonyms and new UIDs stay in clear, since
that is what a researcher holds, so lookups are indexed; every lookup is audited.

>>> from medveil.crypto.vault import Vault, keygen
>>> keygen("vault.key")                                        # doctest: +SKIP
>>> with Vault.open("vault.sqlite", "vault.key") as v:         # doctest: +SKIP
...     v.add(identity)            # dicts from clean_instance(..., capture_identity=True)
...     print(v.lookup("MVABC...").lines())
"""

from __future__ import annotations

from medveil.crypto.vault.backends import PostgresBackend, SQLiteBackend, VaultError, open_backend
from medveil.crypto.vault.core import (
    CROSSWALK_COLUMNS,
    SCHEMA_VERSION,
    Identity,
    Lookup,
    Vault,
    aad,
)
from medveil.crypto.vault.keys import KEY_BYTES, keygen, load_key

__all__ = [
    "CROSSWALK_COLUMNS",
    "KEY_BYTES",
    "SCHEMA_VERSION",
    "Identity",
    "Lookup",
    "PostgresBackend",
    "SQLiteBackend",
    "Vault",
    "VaultError",
    "aad",
    "keygen",
    "load_key",
    "open_backend",
]
