"""Storage backends of the re-identification vault: SQLite (default) and PostgreSQL.

A backend only moves rows: it runs SQL written with ``?`` placeholders inside
transactions and retries a transaction that lost a race for a lock. Everything secret is
sealed by :class:`medveil.vault.Vault` before a backend sees it.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from medveil.errors import MedveilError

T = TypeVar("T")

# How long a writer keeps trying to get the write lock before giving up.
DEFAULT_LOCK_TIMEOUT = 120.0


class VaultError(MedveilError):
    """The vault cannot be opened or used (bad URL, missing driver, newer schema, ...)."""


class Cursor(Protocol):
    """The part of a DB-API cursor the vault uses."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any:
        """Run one statement."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement per row; returns the rows affected in total."""

    def fetchone(self) -> Any:
        """Next row or None."""

    def fetchall(self) -> list[Any]:
        """All remaining rows."""


class Backend(Protocol):
    """What the vault needs from a database."""

    name: str
    blob_type: str
    serial_type: str

    def transaction(self, fn: Callable[[Cursor], T], *, write: bool = True) -> T:
        """Run fn(cursor) in one transaction (retried whole on lock conflicts); commit."""

    def table_exists(self, cur: Cursor, table: str) -> bool:
        """True if the table exists."""

    def lock_schema(self, cur: Cursor) -> None:
        """Serialise schema migrations among concurrent openers (inside a transaction)."""

    def close(self) -> None:
        """Close the connection."""


def _backoff(attempt: int) -> None:
    # Jitter keeps processes that collided once from colliding again in lock step.
    time.sleep(min(0.5, 0.005 * (2**attempt)) * (0.5 + random.random()))


# ----------------------------------------------------------------------------- SQLite
class _SQLiteCursor:
    """sqlite3's cursor with executemany returning the rows affected."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        self._cur.executemany(sql, rows)
        return int(self._cur.rowcount)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class SQLiteBackend:
    """An SQLite file in WAL mode; writers serialise through BEGIN IMMEDIATE + retries."""

    name = "sqlite"
    blob_type = "BLOB"
    serial_type = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: str | Path, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        if not self.path.parent.exists():
            raise VaultError(f"{self.path}: folder {self.path.parent} does not exist")
        if not self.path.exists():
            # Owner-only from the start; SQLite gives its -wal and -shm files the same mode.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE), so
        # the write lock is taken up front instead of on upgrade, where SQLite cannot wait
        # and fails with "database is locked" at once.
        self.db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        deadline = time.monotonic() + lock_timeout
        attempt = 0
        while True:
            try:
                # Switching a new file to WAL needs a moment of exclusive access, which
                # another process creating the same vault may hold: retry like a writer.
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc).lower() and time.monotonic() < deadline:
                    attempt += 1
                    _backoff(attempt)
                    continue
                self.db.close()
                raise VaultError(f"{self.path}: cannot open the SQLite vault ({exc})") from None
            except sqlite3.DatabaseError as exc:
                self.db.close()
                raise VaultError(f"{self.path}: not an SQLite vault ({exc})") from None

    def transaction(self, fn: Callable[[Cursor], T], *, write: bool = True) -> T:
        """Run fn(cursor) in one transaction (retried whole on lock conflicts); commit."""
        deadline = time.monotonic() + self.lock_timeout
        attempt = 0
        while True:
            cur = self.db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
                out = fn(_SQLiteCursor(cur))
                cur.execute("COMMIT")
                return out
            except sqlite3.OperationalError as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                msg = str(exc).lower()
                if ("locked" not in msg and "busy" not in msg) or time.monotonic() > deadline:
                    raise
                attempt += 1
                _backoff(attempt)
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def table_exists(self, cur: Cursor, table: str) -> bool:
        """True if the table exists."""
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return cur.fetchone() is not None

    def lock_schema(self, cur: Cursor) -> None:
        """Nothing to do: BEGIN IMMEDIATE already excludes every other writer."""

    def close(self) -> None:
        """Close the connection."""
        self.db.close()


# ------------------------------------------------------------------------- PostgreSQL
# An arbitrary constant naming medveil's advisory lock for schema migrations.
_PG_SCHEMA_LOCK = 0x6D65647665696C  # "medveil"


class _PgCursor:
    """Adapts ``?`` placeholders to psycopg's ``%s`` and bytes out of memoryviews."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        # psycopg 3 pipelines executemany: one round trip per batch, not per row.
        self._cur.executemany(sql.replace("?", "%s"), rows)
        return int(self._cur.rowcount)

    def fetchone(self) -> Any:
        row = self._cur.fetchone()
        return None if row is None else tuple(_unview(v) for v in row)

    def fetchall(self) -> list[Any]:
        return [tuple(_unview(v) for v in row) for row in self._cur.fetchall()]


def _unview(v: Any) -> Any:
    return bytes(v) if isinstance(v, memoryview) else v


class PostgresBackend:
    """A PostgreSQL database through psycopg 3 (extra ``medveil[vault-pg]``)."""

    name = "postgresql"
    blob_type = "BYTEA"
    serial_type = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        try:
            import psycopg
        except ImportError:
            raise VaultError(
                "a postgresql:// vault needs psycopg 3: pip install 'medveil[vault-pg]'"
            ) from None
        self._psycopg = psycopg
        self.lock_timeout = lock_timeout
        try:
            self.db = psycopg.connect(url, autocommit=False)
        except psycopg.Error as exc:
            # The message may quote the URL (a malformed one is quoted back, password and
            # all): keep the driver's class and first line, with any password masked.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise VaultError(
                f"cannot connect to the PostgreSQL vault {describe(url)}: "
                f"{type(exc).__name__}: {scrub(first, url)}"
            ) from None

    def transaction(self, fn: Callable[[Cursor], T], *, write: bool = True) -> T:
        """Run fn(cursor) in one transaction (retried whole on lock conflicts); commit."""
        errors = self._psycopg.errors
        retry = (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable)
        deadline = time.monotonic() + self.lock_timeout
        attempt = 0
        while True:
            try:
                with self.db.cursor() as raw:
                    out = fn(_PgCursor(raw))
                self.db.commit()
                return out
            except retry:
                self.db.rollback()
                if time.monotonic() > deadline:
                    raise
                attempt += 1
                _backoff(attempt)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.db.rollback()
                raise

    def table_exists(self, cur: Cursor, table: str) -> bool:
        """True if the table exists in the connection's search path."""
        cur.execute("SELECT to_regclass(?) IS NOT NULL", (table,))
        row = cur.fetchone()
        return bool(row and row[0])

    def lock_schema(self, cur: Cursor) -> None:
        """Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL: serialise."""
        cur.execute("SELECT pg_advisory_xact_lock(?)", (_PG_SCHEMA_LOCK,))

    def close(self) -> None:
        """Close the connection."""
        self.db.close()


# ------------------------------------------------------------------------------ URLs
# `password=...` in a URL query (libpq reads it there too) or a keyword connection string.
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]*)")
# A libpq keyword connection string ("host=db dbname=x ...") given where a URL belongs.
_KEYWORD_DSN = re.compile(r"(?i)(^|\s)(host|hostaddr|dbname|user|password|port|service)\s*=")


def _userinfo(text: str) -> tuple[str, str, str | None, str] | None:
    """(scheme://, user, password or None, rest after '@') of a URL with userinfo; parsed by
    hand so a URL urlsplit rejects (a bad IPv6 host) is masked all the same."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return None
    # Up to the last '@' before any query: a raw '@' or '/' in a password stays in it
    # (over-masking a database name with an '@' in it is the safe side).
    authority = rest.split("?", 1)[0]
    if rest.startswith("/") or "@" not in authority:
        return None
    userinfo, _, _ = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return scheme + sep, user, password if colon else None, rest[len(userinfo) + 1 :]


def _secrets_in(text: str) -> list[str]:
    """The password strings a URL or connection string carries (raw and decoded)."""
    found: list[str] = []
    parsed = _userinfo(text)
    if parsed is not None and parsed[2]:
        found += [parsed[2], unquote(parsed[2])]
    for m in _PASSWORD_PARAM.finditer(text):
        value = m.group(2).strip("'")
        if value:
            found += [value, unquote(value)]
    return [s for s in found if s]


def describe(url: str | os.PathLike[str]) -> str:
    """The URL (or path) without any password, for messages: userinfo passwords and
    ``password=`` parameters become ``***``."""
    text = os.fspath(url)
    out = text
    parsed = _userinfo(text)
    if parsed is not None and parsed[2] is not None:
        scheme, user, _, rest = parsed
        out = f"{scheme}{user}:***@{rest}"
    out = _PASSWORD_PARAM.sub(lambda m: m.group(1) + "***", out)
    return scrub(out, text)


def scrub(message: str, url: str | os.PathLike[str]) -> str:
    """message with every password that url carries replaced by ``***``."""
    for secret in sorted(set(_secrets_in(os.fspath(url))), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def open_backend(url: str | Path, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Backend:
    """A backend for ``sqlite:///path``, a plain file path, or ``postgresql://...``."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(text, lock_timeout=lock_timeout)
    if text.startswith("sqlite:"):
        parts = urlsplit(text)
        if parts.netloc:
            raise VaultError(
                f"{describe(text)}: an SQLite URL has no host; write sqlite:///path/to/file"
            )
        path = unquote(parts.path)
        if not path:
            raise VaultError(
                f"{describe(text)}: no file in the SQLite URL; write sqlite:///path/to/file"
            )
        return SQLiteBackend(path, lock_timeout=lock_timeout)
    if "://" in text:
        raise VaultError(
            f"{describe(text)}: unknown vault URL (use sqlite:///path, a file path, "
            "or postgresql://...)"
        )
    if _KEYWORD_DSN.search(text):
        # Taken as a path, it would become an SQLite file named after the password.
        raise VaultError(
            f"{describe(text)}: looks like a PostgreSQL keyword connection string; write "
            "postgresql://user@host/dbname (the password in PGPASSWORD or ~/.pgpass)"
        )
    return SQLiteBackend(text, lock_timeout=lock_timeout)
