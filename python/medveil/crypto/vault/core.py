"""The re-identification vault: pseudonyms and new UIDs in clear, original values sealed.

Every original value is sealed on its own with ChaCha20-Poly1305 under the vault key and
a fresh random 12-byte nonce, stored as ``nonce || ciphertext || tag`` in its column. The
associated data binds the value to its place: table, the row's clear key, the clear key
of its parent row (the patient of a study, the study of a series) and the column. A value
copied to another row or column, a row re-attached to another patient, or a flipped byte
fails authentication instead of yielding someone else's identity. Deleted rows cannot be
detected this way; the database's own access control has to cover that.

A ``key_check`` value sealed under the key tells a wrong key (nothing opens) from a
tampered row (the check opens, the row does not).
"""

from __future__ import annotations

import csv
import datetime
import getpass
import hmac
import io
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medveil import crypto
from medveil.crypto.keyfile import write_private_file
from medveil.crypto.vault.backends import (
    DEFAULT_LOCK_TIMEOUT,
    Backend,
    Cursor,
    VaultError,
    describe,
    open_backend,
)
from medveil.crypto.vault.keys import KEY_BYTES, load_key
from medveil.errors import AuthenticationError

SCHEMA_VERSION = 1
NONCE_BYTES = 12
AAD_LABEL = b"medveil-vault-v1"
KEY_CHECK = b"medveil vault key check v1"

# Sealed columns of each table, in the order they are stored.
PATIENT_SEALED = ("patient_id", "patient_name", "birth_date", "date_offset")
STUDY_SEALED = ("original_uid", "accession_number")
SERIES_SEALED = ("original_uid",)
# table -> (clear key column, clear parent column or "", sealed columns)
TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "patients": ("pseudonym", "", PATIENT_SEALED),
    "studies": ("study_uid", "pseudonym", STUDY_SEALED),
    "series": ("series_uid", "study_uid", SERIES_SEALED),
}
CROSSWALK_COLUMNS = (
    "pseudonym",
    "patient_id",
    "patient_name",
    "birth_date",
    "date_offset_days",
    "study_uid",
    "original_study_uid",
    "accession_number",
    "series_uid",
    "original_series_uid",
)
# Pending entities written per transaction, and the longest a value waits in memory.
FLUSH_ROWS = 500
FLUSH_SECONDS = 1.0


def _migrations(b: Backend) -> dict[int, list[str]]:
    """Schema statements per version; version N upgrades a vault at N-1."""
    blob = b.blob_type
    return {
        1: [
            f"CREATE TABLE IF NOT EXISTS vault_meta (name TEXT PRIMARY KEY, value {blob} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS patients (pseudonym TEXT PRIMARY KEY, "
            + ", ".join(f"{c} {blob} NOT NULL" for c in PATIENT_SEALED)
            + ", created_at TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS studies (study_uid TEXT PRIMARY KEY, "
            "pseudonym TEXT NOT NULL, "
            + ", ".join(f"{c} {blob} NOT NULL" for c in STUDY_SEALED)
            + ", created_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS studies_by_patient ON studies (pseudonym)",
            "CREATE TABLE IF NOT EXISTS series (series_uid TEXT PRIMARY KEY, "
            "study_uid TEXT NOT NULL, "
            + ", ".join(f"{c} {blob} NOT NULL" for c in SERIES_SEALED)
            + ", created_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS series_by_study ON series (study_uid)",
            f"CREATE TABLE IF NOT EXISTS audit (id {b.serial_type}, os_user TEXT NOT NULL, "
            "host TEXT NOT NULL, at TEXT NOT NULL, action TEXT NOT NULL, "
            "query TEXT NOT NULL, outcome TEXT NOT NULL)",
        ],
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the numeric id still says who
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _field(value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    return len(data).to_bytes(4, "big") + data


def aad(table: str, key: str, parent: str, column: str) -> bytes:
    """Associated data binding a sealed value to its table, row, parent row and column."""
    return AAD_LABEL + b"".join(_field(x) for x in (table, key, parent, column))


@dataclass(frozen=True)
class Identity:
    """One instance's identity: the new clear keys and the original values they replace."""

    pseudonym: str = ""
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    date_offset: int = 0
    study_uid: str = ""
    original_study_uid: str = ""
    accession_number: str = ""
    series_uid: str = ""
    original_series_uid: str = ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> Identity:
        """Build from a dict such as ``CleanResult.identity`` (unknown keys are ignored)."""
        names = cls.__dataclass_fields__
        kw: dict[str, Any] = {k: v for k, v in values.items() if k in names and v is not None}
        for k, v in kw.items():
            kw[k] = int(v) if k == "date_offset" else str(v)
        return cls(**kw)


@dataclass
class Lookup:
    """What a pseudonym or new UID stands for: the patient, and the study/series if asked."""

    kind: str  # 'patient', 'study' or 'series'
    query: str
    patient: dict[str, str] = field(default_factory=dict)
    study: dict[str, str] = field(default_factory=dict)
    series: dict[str, str] = field(default_factory=dict)
    studies: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable ``name: value`` lines (these hold PHI: show, never log)."""
        out = [f"{self.kind}: {self.query}"]
        if self.series:
            out.append(f"original SeriesInstanceUID: {self.series['original_uid']}")
        if self.study:
            out.append(f"StudyInstanceUID: {self.study['study_uid']}")
            out.append(f"original StudyInstanceUID: {self.study['original_uid']}")
            out.append(f"AccessionNumber: {self.study['accession_number']}")
        if self.patient:
            out.append(f"pseudonym: {self.patient['pseudonym']}")
            out.append(f"PatientID: {self.patient['patient_id']}")
            out.append(f"PatientName: {self.patient['patient_name']}")
            out.append(f"PatientBirthDate: {self.patient['birth_date']}")
            out.append(f"date offset (days): {self.patient['date_offset']}")
        elif self.kind != "patient":
            out.append("patient: not recorded (the instances had no PatientID)")
        if self.kind == "patient":
            out.append(f"studies: {len(self.studies)}")
            out.extend(f"  StudyInstanceUID: {uid}" for uid in self.studies)
        return out

    def to_json(self) -> dict[str, object]:
        """The lookup as a JSON-ready dict."""
        return asdict(self)


class Vault:
    """An encrypted crosswalk in SQLite or PostgreSQL; see the module docstring.

    ``add`` queues identities (deduplicated in memory) and writes them in batches inside
    one transaction each; inserts do nothing when the row exists, so re-runs and many
    concurrent writers leave one row per patient, study and series. ``close`` flushes.
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        key: bytes,
        *,
        create: bool = True,
        check_key: bool = True,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise ValueError(f"the vault key must be {KEY_BYTES} bytes")
        self.url = describe(url)
        text = os.fspath(url)
        if not create and "://" not in text and not Path(text).exists():
            raise VaultError(f"{self.url}: no vault there")
        if not create and text.startswith("sqlite:"):
            from urllib.parse import unquote, urlsplit

            if not Path(unquote(urlsplit(text).path)).exists():
                raise VaultError(f"{self.url}: no vault there")
        self._key = bytes(key)
        self.backend = open_backend(text, lock_timeout=lock_timeout)
        self._share = " FOR SHARE" if self.backend.name == "postgresql" else ""
        self._pending: dict[str, dict[str, tuple[Any, ...]]] = {t: {} for t in TABLES}
        self._seen: dict[str, set[str]] = {t: set() for t in TABLES}
        self._last_flush = time.monotonic()
        self.inserted = 0  # rows this object added to the vault (not counting existing ones)
        try:
            self._migrate(create)
            self.key_ok = self._install_or_check_key(create)
        except BaseException:
            self.backend.close()
            raise
        if check_key and not self.key_ok:
            self.backend.close()
            raise self._wrong_key()

    @classmethod
    def open(
        cls, url: str | os.PathLike[str], key_file: str | os.PathLike[str], **kw: Any
    ) -> Vault:
        """Open (creating if needed) the vault at url with the key in key_file."""
        return cls(url, load_key(key_file), **kw)

    # ------------------------------------------------------------------- schema
    def schema_version(self) -> int:
        """The schema version stored in the vault (0 for an empty database)."""

        def read(cur: Cursor) -> int:
            if not self.backend.table_exists(cur, "schema_version"):
                return 0
            cur.execute("SELECT MAX(version) FROM schema_version")
            row = cur.fetchone()
            return int(row[0] or 0) if row else 0

        return self.backend.transaction(read, write=False)

    def _migrate(self, create: bool) -> None:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise VaultError(
                f"{self.url}: vault schema version {current} is newer than this medveil "
                f"supports ({SCHEMA_VERSION}); upgrade medveil"
            )
        if current == SCHEMA_VERSION:
            return
        if current == 0 and not create:
            raise VaultError(f"{self.url}: no vault there (no medveil schema)")
        migrations = _migrations(self.backend)

        def upgrade(cur: Cursor) -> None:
            self.backend.lock_schema(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            cur.execute("SELECT MAX(version) FROM schema_version")
            row = cur.fetchone()
            have = int(row[0] or 0) if row else 0
            for version in range(have + 1, SCHEMA_VERSION + 1):
                for stmt in migrations[version]:
                    cur.execute(stmt)
                cur.execute("DELETE FROM schema_version")
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

        self.backend.transaction(upgrade)

    # --------------------------------------------------------------------- keys
    def _seal(self, value: str, table: str, key: str, parent: str, column: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        data = value.encode("utf-8", "surrogateescape")
        return nonce + crypto.seal(self._key, nonce, data, aad(table, key, parent, column))

    def _open(self, blob: Any, table: str, key: str, parent: str, column: str) -> str:
        where = f"{table} row {key!r} column {column}"
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise AuthenticationError(
                f"vault {where}: sealed value missing; the vault was modified"
            )
        blob = bytes(blob)
        if len(blob) < NONCE_BYTES + crypto.TAG_BYTES:
            raise AuthenticationError(
                f"vault {where}: sealed value truncated; the vault was modified"
            )
        try:
            data = crypto.open(
                self._key, blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad(table, key, parent, column)
            )
        except AuthenticationError:
            raise AuthenticationError(
                f"vault {where} failed authentication: the value was changed or moved "
                "from another row or column; the vault was modified"
            ) from None
        return data.decode("utf-8", "surrogateescape")

    def _key_check_value(self, key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + crypto.seal(
            key, nonce, KEY_CHECK, aad("vault_meta", "key_check", "", "value")
        )

    def _key_opens(self, key: bytes, blob: Any) -> bool:
        blob = bytes(blob)
        try:
            plain = crypto.open(
                key,
                blob[:NONCE_BYTES],
                blob[NONCE_BYTES:],
                aad("vault_meta", "key_check", "", "value"),
            )
        except (AuthenticationError, ValueError):
            return False
        return plain == KEY_CHECK

    def _read_key_check(self, cur: Cursor) -> Any:
        cur.execute(f"SELECT value FROM vault_meta WHERE name = 'key_check'{self._share}")
        row = cur.fetchone()
        return None if row is None else row[0]

    def _install_or_check_key(self, create: bool) -> bool:
        def check(cur: Cursor) -> Any:
            return self._read_key_check(cur)

        blob = self.backend.transaction(check, write=False)
        if blob is None:
            if not create:
                raise VaultError(
                    f"{self.url}: the vault has no key check; it was not created by medveil"
                )

            def install(cur: Cursor) -> Any:
                cur.execute(
                    "INSERT INTO vault_meta (name, value) VALUES ('key_check', ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (self._key_check_value(self._key),),
                )
                return self._read_key_check(cur)

            # Two first writers may race: whichever inserted first set the key; re-read.
            blob = self.backend.transaction(install)
        return self._key_opens(self._key, blob)

    def _wrong_key(self) -> AuthenticationError:
        return AuthenticationError(
            f"the vault key does not open the vault at {self.url} (wrong --key-file, or the "
            "vault was re-keyed by `medveil vault rotate`); nothing was read or written"
        )

    def _require_key(self, cur: Cursor) -> None:
        """Inside a transaction: the key still opens the vault (it may have been rotated)."""
        blob = self._read_key_check(cur)
        if blob is None or not self._key_opens(self._key, blob):
            self.key_ok = False
            raise self._wrong_key()

    def uses_key(self, key: bytes) -> bool:
        """True if key is this vault's key (to refuse a vault key equal to another secret)."""
        return hmac.compare_digest(bytes(key), self._key)

    # ------------------------------------------------------------------- writing
    def add(self, identity: Identity | Mapping[str, object]) -> None:
        """Queue one instance's identity; new patients, studies and series are written soon."""
        if not isinstance(identity, Identity):
            identity = Identity.from_mapping(identity)
        if not self.key_ok:
            raise self._wrong_key()
        i = identity
        if i.pseudonym and i.pseudonym not in self._seen["patients"]:
            self._seen["patients"].add(i.pseudonym)
            values = (i.patient_id, i.patient_name, i.birth_date, str(int(i.date_offset)))
            self._queue("patients", i.pseudonym, "", values)
        if i.study_uid and i.study_uid not in self._seen["studies"]:
            self._seen["studies"].add(i.study_uid)
            self._queue(
                "studies", i.study_uid, i.pseudonym, (i.original_study_uid, i.accession_number)
            )
        if i.series_uid and i.series_uid not in self._seen["series"]:
            self._seen["series"].add(i.series_uid)
            self._queue("series", i.series_uid, i.study_uid, (i.original_series_uid,))
        pending = sum(len(p) for p in self._pending.values())
        if pending >= FLUSH_ROWS or (
            pending and time.monotonic() - self._last_flush > FLUSH_SECONDS
        ):
            self.flush()

    def _queue(self, table: str, key: str, parent: str, values: Sequence[str]) -> None:
        _, _, cols = TABLES[table]
        sealed = tuple(
            self._seal(v, table, key, parent, c) for v, c in zip(values, cols, strict=True)
        )
        self._pending[table][key] = (parent, sealed)

    def record(self, identities: Iterable[Identity | Mapping[str, object]]) -> int:
        """Add every identity and write them now; returns rows newly inserted."""
        start = self.inserted
        for i in identities:
            self.add(i)
        self.flush()
        return self.inserted - start

    def flush(self) -> int:
        """Write the queued rows in one transaction; returns how many were new."""
        self._last_flush = time.monotonic()
        if not any(self._pending.values()):
            return 0
        pending = self._pending

        def write(cur: Cursor) -> int:
            self._require_key(cur)
            now = _now()
            inserted = 0
            for table, rows in pending.items():
                keycol, parentcol, cols = TABLES[table]
                names = [keycol, *([parentcol] if parentcol else []), *cols, "created_at"]
                sql = (
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                    f"({', '.join('?' * len(names))}) ON CONFLICT ({keycol}) DO NOTHING"
                )
                if not rows:
                    continue
                params = [
                    (key, *([parent] if parentcol else []), *sealed, now)
                    for key, (parent, sealed) in rows.items()
                ]
                inserted += max(cur.executemany(sql, params), 0)
            return inserted

        n = self.backend.transaction(write)
        self._pending = {t: {} for t in TABLES}
        self.inserted += n
        return n

    # ------------------------------------------------------------------- reading
    def _audit(self, cur: Cursor, action: str, query: str, outcome: str) -> None:
        cur.execute(
            "INSERT INTO audit (os_user, host, at, action, query, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (_os_user(), socket.gethostname(), _now(), action, query, outcome),
        )

    def _patient(self, cur: Cursor, pseudonym: str) -> dict[str, str]:
        cur.execute(
            f"SELECT {', '.join(PATIENT_SEALED)} FROM patients WHERE pseudonym = ?", (pseudonym,)
        )
        row = cur.fetchone()
        if row is None:
            return {}
        out = {"pseudonym": pseudonym}
        for col, blob in zip(PATIENT_SEALED, row, strict=True):
            out[col] = self._open(blob, "patients", pseudonym, "", col)
        return out

    def _study(self, cur: Cursor, uid: str) -> dict[str, str]:
        cur.execute(
            f"SELECT pseudonym, {', '.join(STUDY_SEALED)} FROM studies WHERE study_uid = ?", (uid,)
        )
        row = cur.fetchone()
        if row is None:
            return {}
        out = {"study_uid": uid, "pseudonym": row[0]}
        for col, blob in zip(STUDY_SEALED, row[1:], strict=True):
            out[col] = self._open(blob, "studies", uid, row[0], col)
        return out

    def _series(self, cur: Cursor, uid: str) -> dict[str, str]:
        cur.execute("SELECT study_uid, original_uid FROM series WHERE series_uid = ?", (uid,))
        row = cur.fetchone()
        if row is None:
            return {}
        return {
            "series_uid": uid,
            "study_uid": row[0],
            "original_uid": self._open(row[1], "series", uid, row[0], "original_uid"),
        }

    def lookup(self, query: str) -> Lookup | None:
        """What a pseudonym, new StudyInstanceUID or SeriesInstanceUID stands for; audited.

        The audit row (OS user, host, UTC time, the query and whether it was found, never
        the answer) is committed in the same transaction that reads the answer: no answer
        leaves without its audit row. Raises AuthenticationError for a wrong key (audited
        too) or a tampered row.
        """
        query = query.strip()

        def read(cur: Cursor) -> tuple[str, Lookup | None]:
            blob = self._read_key_check(cur)
            if blob is None or not self._key_opens(self._key, blob):
                self._audit(cur, "lookup", query, "wrong key")
                return "wrong key", None
            found: Lookup | None = None
            patient = self._patient(cur, query)
            if patient:
                cur.execute(
                    "SELECT study_uid FROM studies WHERE pseudonym = ? ORDER BY study_uid",
                    (query,),
                )
                found = Lookup("patient", query, patient, studies=[r[0] for r in cur.fetchall()])
            else:
                study = self._study(cur, query)
                series: dict[str, str] = {}
                if not study:
                    series = self._series(cur, query)
                    if series:
                        study = self._study(cur, series["study_uid"])
                if study or series:
                    pseudonym = study.get("pseudonym", "") if study else ""
                    found = Lookup(
                        "series" if series else "study",
                        query,
                        self._patient(cur, pseudonym) if pseudonym else {},
                        study,
                        series,
                    )
            self._audit(cur, "lookup", query, found.kind if found else "not found")
            return "ok", found

        state, found = self.backend.transaction(read)
        if state == "wrong key":
            self.key_ok = False
            raise self._wrong_key()
        return found

    def crosswalk(self, only: Iterable[str] | None = None) -> list[dict[str, str]]:
        """Every series (or patient without series) as one decrypted crosswalk row; audited.

        ``only`` restricts the export to these patient pseudonyms.
        """
        wanted = None if only is None else {p.strip() for p in only if p.strip()}

        def read(cur: Cursor) -> list[dict[str, str]]:
            self._require_key(cur)
            cur.execute(f"SELECT pseudonym, {', '.join(PATIENT_SEALED)} FROM patients")
            patients = {}
            for row in cur.fetchall():
                if wanted is None or row[0] in wanted:
                    patients[row[0]] = {
                        c: self._open(b, "patients", row[0], "", c)
                        for c, b in zip(PATIENT_SEALED, row[1:], strict=True)
                    }
            cur.execute(f"SELECT study_uid, pseudonym, {', '.join(STUDY_SEALED)} FROM studies")
            studies = {}
            for row in cur.fetchall():
                if wanted is None or row[1] in wanted:
                    studies[row[0]] = {
                        "pseudonym": row[1],
                        **{
                            c: self._open(b, "studies", row[0], row[1], c)
                            for c, b in zip(STUDY_SEALED, row[2:], strict=True)
                        },
                    }
            cur.execute("SELECT series_uid, study_uid, original_uid FROM series")
            out: list[dict[str, str]] = []
            used_studies: set[str] = set()
            used_patients: set[str] = set()
            for series_uid, study_uid, blob in sorted(cur.fetchall()):
                study = studies.get(study_uid)
                if study is None:
                    continue
                original = self._open(blob, "series", series_uid, study_uid, "original_uid")
                out.append(
                    self._row(patients, study["pseudonym"], study_uid, study, series_uid, original)
                )
                used_studies.add(study_uid)
                used_patients.add(study["pseudonym"])
            for study_uid, study in sorted(studies.items()):
                if study_uid not in used_studies:
                    out.append(self._row(patients, study["pseudonym"], study_uid, study, "", ""))
                    used_patients.add(study["pseudonym"])
            for pseudonym in sorted(patients):
                if pseudonym not in used_patients:
                    out.append(self._row(patients, pseudonym, "", {}, "", ""))
            query = "all" if wanted is None else f"{len(wanted)} pseudonyms"
            self._audit(cur, "export", query, f"{len(out)} rows")
            return out

        return self.backend.transaction(read)

    @staticmethod
    def _row(
        patients: dict[str, dict[str, str]],
        pseudonym: str,
        study_uid: str,
        study: dict[str, str],
        series_uid: str,
        original_series: str,
    ) -> dict[str, str]:
        p = patients.get(pseudonym, {})
        return {
            "pseudonym": pseudonym,
            "patient_id": p.get("patient_id", ""),
            "patient_name": p.get("patient_name", ""),
            "birth_date": p.get("birth_date", ""),
            "date_offset_days": p.get("date_offset", ""),
            "study_uid": study_uid,
            "original_study_uid": study.get("original_uid", ""),
            "accession_number": study.get("accession_number", ""),
            "series_uid": series_uid,
            "original_series_uid": original_series,
        }

    def export(
        self,
        path: str | os.PathLike[str],
        *,
        recipients: Sequence[str] = (),
        passphrase: str | bytes | None = None,
        only: Iterable[str] | None = None,
        replace: bool = True,
    ) -> int:
        """Write the crosswalk as CSV sealed in an age file for a site; returns rows.

        The file is written under a new random temporary name (O_EXCL|O_NOFOLLOW, mode
        0600) and renamed into place; ``replace=False`` keeps an existing file
        (FileExistsError).
        """
        from medveil.crypto import agefile as age

        rows = self.crosswalk(only)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CROSSWALK_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        sealed = age.encrypt_bytes(
            text.getvalue().encode("utf-8", "surrogateescape"),
            recipients=recipients,
            passphrase=passphrase,
        )
        write_private_file(path, sealed, replace=replace)
        return len(rows)

    def rotate(self, new_key: bytes) -> int:
        """Re-seal every row under new_key in one transaction; returns values re-sealed.

        Nothing changes unless every value opens under the current key. The key check is
        updated first, so writers still holding the old key wait, then fail cleanly
        instead of adding rows the new key cannot open.
        """
        if not isinstance(new_key, (bytes, bytearray)) or len(new_key) != KEY_BYTES:
            raise ValueError(f"the new vault key must be {KEY_BYTES} bytes")
        new_key = bytes(new_key)
        if new_key == self._key:
            raise VaultError("the new vault key is the same as the old one")
        self.flush()
        old_key = self._key

        def resealed(blob: Any, table: str, key: str, parent: str, column: str) -> bytes:
            plain = self._open(blob, table, key, parent, column)
            nonce = secrets.token_bytes(NONCE_BYTES)
            return nonce + crypto.seal(
                new_key,
                nonce,
                plain.encode("utf-8", "surrogateescape"),
                aad(table, key, parent, column),
            )

        def run(cur: Cursor) -> int:
            self._require_key(cur)
            cur.execute(
                "UPDATE vault_meta SET value = ? WHERE name = 'key_check'",
                (self._key_check_value(new_key),),
            )
            count = 0
            for table, (keycol, parentcol, cols) in TABLES.items():
                parent_sql = parentcol or "''"
                cur.execute(f"SELECT {keycol}, {parent_sql}, {', '.join(cols)} FROM {table}")
                for row in cur.fetchall():
                    key, parent, blobs = row[0], row[1], row[2:]
                    new = [
                        resealed(b, table, key, parent, c) for b, c in zip(blobs, cols, strict=True)
                    ]
                    cur.execute(
                        f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in cols)} "
                        f"WHERE {keycol} = ?",
                        (*new, key),
                    )
                    count += len(cols)
            self._audit(cur, "rotate", "all", f"{count} values re-sealed")
            return count

        try:
            count = self.backend.transaction(run)
        except BaseException:
            self._key = old_key
            raise
        self._key = new_key
        return count

    def audit_log(self) -> list[dict[str, str]]:
        """Every audit row, oldest first (who, when, what was asked, outcome)."""

        def read(cur: Cursor) -> list[dict[str, str]]:
            cur.execute("SELECT os_user, host, at, action, query, outcome FROM audit ORDER BY id")
            names = ("os_user", "host", "at", "action", "query", "outcome")
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        return self.backend.transaction(read, write=False)

    def counts(self) -> dict[str, int]:
        """Rows per table (patients, studies, series, audit)."""

        def read(cur: Cursor) -> dict[str, int]:
            out = {}
            for table in (*TABLES, "audit"):
                cur.execute(f"SELECT COUNT(*) FROM {table}")
                out[table] = int(cur.fetchone()[0])
            return out

        return self.backend.transaction(read, write=False)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Write what is queued and close the database."""
        try:
            if self.key_ok:
                self.flush()
        finally:
            self.backend.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
