"""The vault on both backends: round trips, concurrent writers, wrong keys, tampering, audit."""

from __future__ import annotations

import datetime
import getpass
import io
import multiprocessing
import os
import random
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil.crypto import agefile as age
from medveil.crypto.vault import (
    CROSSWALK_COLUMNS,
    SCHEMA_VERSION,
    Identity,
    Vault,
    VaultError,
    keygen,
    load_key,
)
from medveil.errors import AuthenticationError, MedveilError


def make_identities(n_patients: int, studies: int = 2, series: int = 2) -> list[Identity]:
    """Synthetic identities: every (patient, study, series) combination, fake values only."""
    out = []
    for p in range(n_patients):
        for s in range(studies):
            for r in range(series):
                out.append(
                    Identity(
                        pseudonym=f"MVPSEUDO{p:05d}",
                        patient_id=f"FAKE-{p:05d}",
                        patient_name=f"Testperson^Nummer{p}^Ä",
                        birth_date=f"19{50 + p % 50:02d}0101",
                        date_offset=(p * 37) % 731 - 365 or 1,
                        study_uid=f"2.25.{p}{s:03d}",
                        original_study_uid=f"1.2.826.0.1.3680043.10.{p}.{s}",
                        accession_number=f"ACC{p}-{s}",
                        series_uid=f"2.25.{p}{s:03d}{r:03d}",
                        original_series_uid=f"1.2.826.0.1.3680043.10.{p}.{s}.{r}",
                    )
                )
    return out


def expect_lookup(vault: Vault, ident: Identity) -> None:
    """The vault returns ident's originals for its pseudonym, study and series UIDs."""
    patient = vault.lookup(ident.pseudonym)
    assert patient is not None and patient.kind == "patient"
    assert patient.patient["patient_id"] == ident.patient_id
    assert patient.patient["patient_name"] == ident.patient_name
    assert patient.patient["birth_date"] == ident.birth_date
    assert int(patient.patient["date_offset"]) == ident.date_offset
    assert ident.study_uid in patient.studies
    study = vault.lookup(ident.study_uid)
    assert study is not None and study.kind == "study"
    assert study.study["original_uid"] == ident.original_study_uid
    assert study.study["accession_number"] == ident.accession_number
    assert study.patient["patient_id"] == ident.patient_id
    series = vault.lookup(ident.series_uid)
    assert series is not None and series.kind == "series"
    assert series.series["original_uid"] == ident.original_series_uid
    assert series.study["original_uid"] == ident.original_study_uid
    assert series.patient["patient_name"] == ident.patient_name


def raw_sql(vault: Vault, sql: str, params: tuple = ()) -> list[tuple]:
    """Run SQL straight on the vault's database (what an attacker with DB access can do)."""

    def run(cur):  # type: ignore[no-untyped-def]
        cur.execute(sql, params)
        try:
            return cur.fetchall()
        except Exception:  # statements without a result set
            return []

    return vault.backend.transaction(run)


# ----------------------------------------------------------------------------- round trip
def test_round_trip(vault_url: str, key: bytes) -> None:
    idents = make_identities(3)
    with Vault(vault_url, key) as v:
        assert v.schema_version() == SCHEMA_VERSION
        assert v.record(idents) == 3 + 6 + 12
        for ident in idents:
            expect_lookup(v, ident)
        assert v.lookup("MVNOTTHERE") is None
    # Re-opening and re-recording (a re-run of the archive) adds nothing.
    with Vault(vault_url, key) as v:
        assert v.record(idents) == 0
        assert {k: n for k, n in v.counts().items() if k != "audit"} == {
            "patients": 3,
            "studies": 6,
            "series": 12,
        }
        expect_lookup(v, idents[-1])


def test_originals_never_stored_in_clear(tmp_path: Path, key: bytes) -> None:
    url = tmp_path / "vault.sqlite"
    idents = make_identities(2, 1, 1)
    with Vault(url, key) as v:
        v.record(idents)
        v.lookup(idents[0].pseudonym)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("vault.sqlite"))
    assert idents[0].pseudonym.encode() in raw  # the clear key is there, as designed
    for ident in idents:
        for value in (ident.patient_id, ident.accession_number, ident.original_study_uid):
            assert value.encode() not in raw
        assert ident.patient_name.encode("utf-8") not in raw
    assert stat.S_IMODE(os.stat(url).st_mode) == 0o600


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(max_size=64),
    pid=st.text(max_size=64),
    acc=st.text(max_size=16),
    offset=st.integers(-36500, 36500),
)
def test_any_text_round_trips(
    tmp_path: Path, key: bytes, name: str, pid: str, acc: str, offset: int
) -> None:
    ident = Identity(
        f"MV{os.urandom(8).hex()}",
        pid,
        name,
        "",
        offset,
        "2.25.7",
        "1.2.3",
        acc,
        "2.25.8",
        "1.2.3.4",
    )
    # hypothesis re-seeds `random` per example: os.urandom keeps each vault new.
    url = tmp_path / f"h{os.urandom(8).hex()}.sqlite"
    with Vault(url, key) as v:
        v.record([ident])
        got = v.lookup("2.25.8")
    assert got is not None
    assert got.patient["patient_name"] == name
    assert got.patient["patient_id"] == pid
    assert got.study["accession_number"] == acc
    assert int(got.patient["date_offset"]) == offset


def test_identity_from_clean_result_dict() -> None:
    d = {"pseudonym": "MVX", "patient_id": "P", "date_offset": "-3", "study_uid": "2.25.1", "x": 1}
    ident = Identity.from_mapping(d)
    assert ident.date_offset == -3 and ident.pseudonym == "MVX" and ident.study_uid == "2.25.1"


def test_instances_without_patient_id_keep_study_and_series(vault_url: str, key: bytes) -> None:
    ident = Identity("", "", "", "", 0, "2.25.5", "1.2.5", "ACC5", "2.25.6", "1.2.5.6")
    with Vault(vault_url, key) as v:
        v.record([ident])
        got = v.lookup("2.25.6")
        assert got is not None and got.patient == {} and got.study["accession_number"] == "ACC5"
        assert "patient: not recorded" in "\n".join(got.lines())


# ------------------------------------------------------------------------- concurrency
def _writer(url: str, key: bytes, seed: int, flush_every: int, barrier: object) -> int:
    idents = make_identities(12)
    random.Random(seed).shuffle(idents)
    barrier.wait(timeout=120)  # type: ignore[attr-defined]  # all open the vault at once
    with Vault(url, key) as v:
        for i, ident in enumerate(idents):
            v.add(ident)
            if i % flush_every == 0:
                v.flush()
    return seed


def test_concurrent_writers_one_row_per_entity(vault_url: str, key: bytes) -> None:
    # All processes start on a vault that does not exist yet: creating the schema races too.
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [
        ctx.Process(target=_writer, args=(vault_url, key, seed, 1 + seed % 3, barrier))
        for seed in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
        assert p.exitcode == 0
    idents = make_identities(12)
    with Vault(vault_url, key, create=False) as v:
        counts = v.counts()
        assert (counts["patients"], counts["studies"], counts["series"]) == (12, 24, 48)
        for table, col in (
            ("patients", "pseudonym"),
            ("studies", "study_uid"),
            ("series", "series_uid"),
        ):
            rows = raw_sql(
                v, f"SELECT {col}, COUNT(*) FROM {table} GROUP BY {col} HAVING COUNT(*) > 1"
            )
            assert rows == []
        for ident in idents[::5]:
            expect_lookup(v, ident)
        crosswalk = v.crosswalk()
    assert len(crosswalk) == 48
    assert {r["series_uid"] for r in crosswalk} == {i.series_uid for i in idents}


# ------------------------------------------------------------------------------- keys
def test_keygen_mode_and_no_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k"
    keygen(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = load_key(path)
    assert len(key) == 32
    with pytest.raises(FileExistsError):
        keygen(path)
    assert load_key(path) == key
    (tmp_path / "bad").write_text("not a key\n")
    (tmp_path / "bad").chmod(0o600)
    with pytest.raises(MedveilError, match="64 hex characters"):
        load_key(tmp_path / "bad")


def test_wrong_key_fails_cleanly(vault_url: str, key: bytes, tmp_path: Path) -> None:
    ident = make_identities(1, 1, 1)[0]
    with Vault(vault_url, key) as v:
        v.record([ident])
    other = os.urandom(32)
    with pytest.raises(AuthenticationError, match="does not open the vault"):
        Vault(vault_url, other)
    # Without the early check, the lookup itself refuses, and the attempt is audited.
    with Vault(vault_url, other, check_key=False) as v:
        with pytest.raises(AuthenticationError, match="does not open the vault"):
            v.lookup(ident.pseudonym)
        with pytest.raises(AuthenticationError):
            v.crosswalk()
        with pytest.raises(AuthenticationError):
            v.add(ident)
        log = v.audit_log()
    assert log[-1]["outcome"] == "wrong key" and log[-1]["query"] == ident.pseudonym
    # A wrong-key writer added nothing.
    with Vault(vault_url, key) as v:
        assert v.counts()["patients"] == 1


def test_missing_vault_is_not_created(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(VaultError, match="no vault"):
        Vault(tmp_path / "absent.sqlite", key, create=False)
    assert not (tmp_path / "absent.sqlite").exists()
    with pytest.raises(VaultError, match="unknown vault URL"):
        Vault("mysql://u:secretpw@h/db", key)
    try:
        Vault("mysql://u:secretpw@h/db", key)
    except VaultError as exc:
        assert "secretpw" not in str(exc)


def test_newer_schema_is_refused(vault_url: str, key: bytes) -> None:
    with Vault(vault_url, key) as v:
        raw_sql(v, "UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(VaultError, match="newer than this medveil"):
        Vault(vault_url, key)


# ---------------------------------------------------------------------------- tampering
def _flip(blob: bytes, i: int) -> bytes:
    b = bytearray(blob)
    b[i % len(b)] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("where", [0, 5, 12, 20, -1])  # nonce, nonce, ciphertext, ..., tag
def test_flipped_byte_is_detected(vault_url: str, key: bytes, where: int) -> None:
    ident, other = make_identities(2, 1, 1)
    with Vault(vault_url, key) as v:
        v.record([ident, other])
        (blob,) = raw_sql(
            v, "SELECT patient_name FROM patients WHERE pseudonym = ?", (ident.pseudonym,)
        )[0]
        raw_sql(
            v,
            "UPDATE patients SET patient_name = ? WHERE pseudonym = ?",
            (_flip(bytes(blob), where), ident.pseudonym),
        )
        with pytest.raises(AuthenticationError, match=r"patients row .* column patient_name"):
            v.lookup(ident.pseudonym)
        with pytest.raises(AuthenticationError, match="modified"):
            v.crosswalk()
        # The study's lookup shows its patient, so it fails too; other patients open.
        with pytest.raises(AuthenticationError):
            v.lookup(ident.study_uid)
        expect_lookup(v, other)


def test_swapped_rows_and_columns_are_detected(vault_url: str, key: bytes) -> None:
    a, b = make_identities(2, 1, 1)
    with Vault(vault_url, key) as v:
        v.record([a, b])
        rows = dict(raw_sql(v, "SELECT pseudonym, patient_name FROM patients"))
        # Swap two patients' sealed names: each value is intact, but in the wrong row.
        for mine, theirs in ((a, b), (b, a)):
            raw_sql(
                v,
                "UPDATE patients SET patient_name = ? WHERE pseudonym = ?",
                (rows[theirs.pseudonym], mine.pseudonym),
            )
        with pytest.raises(AuthenticationError):
            v.lookup(a.pseudonym)
        with pytest.raises(AuthenticationError):
            v.lookup(b.pseudonym)
        # Restore, then move a value to another column of the same row.
        for ident in (a, b):
            raw_sql(
                v,
                "UPDATE patients SET patient_name = ? WHERE pseudonym = ?",
                (rows[ident.pseudonym], ident.pseudonym),
            )
        expect_lookup(v, a)
        raw_sql(
            v,
            "UPDATE patients SET patient_id = patient_name WHERE pseudonym = ?",
            (a.pseudonym,),
        )
        with pytest.raises(AuthenticationError, match="column patient_id"):
            v.lookup(a.pseudonym)
        # Re-attach b's study to a: the study's values are bound to their patient.
        raw_sql(
            v, "UPDATE studies SET pseudonym = ? WHERE study_uid = ?", (a.pseudonym, b.study_uid)
        )
        with pytest.raises(AuthenticationError, match="studies row"):
            v.lookup(b.study_uid)


# -------------------------------------------------------------------------------- audit
def test_audit_rows_hold_the_question_never_the_answer(vault_url: str, key: bytes) -> None:
    ident = make_identities(1, 1, 1)[0]
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    with Vault(vault_url, key) as v:
        v.record([ident])
        v.lookup(ident.pseudonym)
        v.lookup(ident.series_uid)
        v.lookup("MVUNKNOWN")
        log = v.audit_log()
        everything = raw_sql(v, "SELECT * FROM audit")
    after = datetime.datetime.now(datetime.timezone.utc)
    assert [(r["action"], r["query"], r["outcome"]) for r in log] == [
        ("lookup", ident.pseudonym, "patient"),
        ("lookup", ident.series_uid, "series"),
        ("lookup", "MVUNKNOWN", "not found"),
    ]
    for r in log:
        assert r["os_user"] == getpass.getuser()
        at = datetime.datetime.fromisoformat(r["at"])
        assert at.tzinfo is not None and before <= at <= after
    text = repr(everything)
    for secret in (
        ident.patient_id,
        ident.patient_name,
        ident.birth_date,
        ident.accession_number,
        ident.original_study_uid,
        ident.original_series_uid,
    ):
        assert secret not in text


# ---------------------------------------------------------------------- export / rotate
def test_export_is_sealed_for_the_site(vault_url: str, key: bytes, tmp_path: Path) -> None:
    import csv

    idents = make_identities(3, 1, 2)
    identity, recipient = age.generate_identity()
    out = tmp_path / "site.csv.age"
    with Vault(vault_url, key) as v:
        v.record(idents)
        n = v.export(out, recipients=[recipient], only=[idents[0].pseudonym, "MVNOBODY"])
        assert v.audit_log()[-1]["action"] == "export"
    assert n == 2
    data = out.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n")
    assert idents[0].patient_id.encode() not in data
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    rows = list(
        csv.DictReader(io.StringIO(age.decrypt_bytes(data, identities=[identity]).decode()))
    )
    assert tuple(rows[0]) == CROSSWALK_COLUMNS
    want = [i for i in idents if i.pseudonym == idents[0].pseudonym]
    assert sorted(
        (r["series_uid"], r["original_series_uid"], r["patient_name"]) for r in rows
    ) == sorted((i.series_uid, i.original_series_uid, i.patient_name) for i in want)
    with pytest.raises(AuthenticationError):
        age.decrypt_bytes(data, identities=[age.generate_identity()[0]])


def test_rotate_reseals_everything(vault_url: str, key: bytes) -> None:
    idents = make_identities(3)
    new = os.urandom(32)
    with Vault(vault_url, key) as v:
        v.record(idents)
        before = raw_sql(v, "SELECT pseudonym, patient_id FROM patients ORDER BY pseudonym")
        assert v.rotate(new) == 3 * 4 + 6 * 2 + 12
        after = raw_sql(v, "SELECT pseudonym, patient_id FROM patients ORDER BY pseudonym")
        assert all(bytes(x[1]) != bytes(y[1]) for x, y in zip(before, after, strict=True))
    with pytest.raises(AuthenticationError):
        Vault(vault_url, key)
    with Vault(vault_url, new) as v:
        for ident in idents:
            expect_lookup(v, ident)


def test_rotate_is_all_or_nothing(vault_url: str, key: bytes) -> None:
    idents = make_identities(2, 1, 1)
    with Vault(vault_url, key) as v:
        v.record(idents)
        (blob,) = raw_sql(
            v, "SELECT original_uid FROM series WHERE series_uid = ?", (idents[1].series_uid,)
        )[0]
        raw_sql(
            v,
            "UPDATE series SET original_uid = ? WHERE series_uid = ?",
            (_flip(bytes(blob), 30), idents[1].series_uid),
        )
        snapshot = raw_sql(v, "SELECT pseudonym, patient_id FROM patients ORDER BY pseudonym")
        with pytest.raises(AuthenticationError, match="series row"):
            v.rotate(os.urandom(32))
        assert (
            raw_sql(v, "SELECT pseudonym, patient_id FROM patients ORDER BY pseudonym") == snapshot
        )
    with Vault(vault_url, key) as v:  # the old key still opens the vault: nothing rotated
        expect_lookup(v, idents[0])


def test_writer_with_a_rotated_key_fails(vault_url: str, key: bytes) -> None:
    a, b = make_identities(2, 1, 1)
    stale = Vault(vault_url, key)
    try:
        stale.record([a])
        with Vault(vault_url, key) as admin:
            admin.rotate(os.urandom(32))
        with pytest.raises(AuthenticationError, match="does not open"):
            stale.record([b])
    finally:
        stale.close()


def test_batches_larger_than_one_flush_are_counted_and_stored(vault_url: str, key: bytes) -> None:
    idents = make_identities(300, 1, 1)  # 900 rows: more than one automatic flush
    with Vault(vault_url, key) as v:
        assert v.record(idents) == 900
        assert v.record(idents) == 0
        counts = v.counts()
        assert (counts["patients"], counts["studies"], counts["series"]) == (300, 300, 300)
        expect_lookup(v, idents[0])
        expect_lookup(v, idents[-1])


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path, key: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not an SQLite database, and never was one\n" * 20)
    with pytest.raises(VaultError, match="not an SQLite vault"):
        Vault(path, key)
