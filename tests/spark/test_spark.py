"""Spark engine vs the local archive run: same files, same bytes, same decisions, same catalog.

Spark runs for real in local[2] mode (one session for the module). Skipped, with the reason
shown, when pyspark or a Java runtime is missing (`pip install .[spark]`; CI installs Java
from .ci/apt-packages).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest
from medveil.errors import MedveilError
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy
from medveil.run.archive import deidentify_archive as local_deidentify_archive
from medveil.run.demo import demo_rule_file, write_demo_archive

pyspark = pytest.importorskip("pyspark", reason="pyspark not installed (pip install .[spark])")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip(
        "no Java runtime for Spark (apt-get install default-jre-headless)", allow_module_level=True
    )

from medveil.cli.main import main as cli_main  # noqa: E402
from medveil.run import spark as mspark  # noqa: E402

SECRET = bytes(range(32))
POLICY = Policy(pixel_rule_files=(str(demo_rule_file()),))
FOLDERS = ("site-a", "site-b/2024", "site c")
CORRUPT = "broken/truncated.dcm"
GARBAGE = "broken/garbage 100%.dcm"  # read by path on the executor


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every output file (run records excluded)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".medveil" not in p.parts
    }


def local_inputs(out: Path) -> dict[str, tuple[str, str]]:
    """input key -> (status, reason) from the local run's SQLite records."""
    db = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    try:
        return {
            k: (s, r or "")
            for k, s, r in db.execute("SELECT source_key, status, reason FROM inputs")
        }
    finally:
        db.close()


def local_catalog(db_path: Path) -> list[tuple[object, ...]]:
    """Every instances row (sorted) in the catalog's columns, the source key and which files
    share its UID ('' when none), as the local tools read them."""
    db = sqlite3.connect(db_path)
    names = [n for n, _ in mspark.CATALOG_COLUMNS] + ["source_key", "shares_uid_with"]
    try:
        rows = db.execute(f"SELECT {', '.join(names)} FROM instances").fetchall()
        return sorted(rows, key=repr)
    finally:
        db.close()


@pytest.fixture(scope="module")
def spark():
    """One local[2] Spark session for the whole module."""
    from pyspark.sql import SparkSession

    # Executors must run this interpreter (the one with medveil installed).
    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ.update(dict.fromkeys(saved, sys.executable))
    session = (
        SparkSession.builder.master("local[2]")
        .appName("medveil-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The demo archive in three sub-folders (distinct patients and UIDs), plus bad files."""
    root = tmp_path_factory.mktemp("spark-in")
    for k, sub in enumerate(FOLDERS):
        write_demo_archive(root / sub)
        for p in (root / sub).rglob("*.dcm"):
            ds = pydicom.dcmread(p)
            ds.PatientID = f"{ds.PatientID}-{k}"
            ds.PatientName = f"{ds.PatientName}{k}"
            for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                setattr(ds, kw, f"{getattr(ds, kw)}.{k}")
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(p, enforce_file_format=True)
    good = (root / FOLDERS[0] / "patient1" / "ct" / "img1.dcm").read_bytes()
    (root / "broken").mkdir()
    (root / CORRUPT).write_bytes(good[: len(good) // 3])
    (root / GARBAGE).write_bytes(b"\0" * 128 + b"DICM" + os.urandom(64))
    return root


@pytest.fixture(scope="module")
def local_out(archive, tmp_path_factory) -> Path:
    """The single-machine run (2 workers) on the same archive."""
    out = tmp_path_factory.mktemp("local") / "out"
    local_deidentify_archive(archive, out, policy=POLICY, secret=SECRET, workers=2)
    return out


@pytest.fixture(scope="module")
def spark_run(spark, archive, tmp_path_factory):
    """The Spark run with the secret passed in the closure, SQLite merge on."""
    out = tmp_path_factory.mktemp("spark") / "out"
    df = mspark.deidentify_archive(
        spark, str(archive), str(out), policy=POLICY, secret=SECRET, sqlite=True
    )
    return out, {r["input_key"]: r.asDict() for r in df.collect()}


def test_same_files_and_bytes_as_local_run(local_out, spark_run) -> None:
    out, _rows = spark_run
    expected = tree(local_out)
    assert len(expected) == 3 * 14
    assert tree(out) == expected
    # The pixel cleaner's records (medveil qa reads them): the same lines, in another order.
    lines = {
        folder: sorted((folder / ".medveil" / "pixels.jsonl").read_text().splitlines())
        for folder in (out, local_out)
    }
    assert len(lines[out]) == 42 and lines[out] == lines[local_out]


def test_same_decisions_and_sizes_as_local_run(archive, local_out, spark_run) -> None:
    _out, rows = spark_run
    local = local_inputs(local_out)
    assert {k: (r["status"], r["reason"]) for k, r in rows.items()} == local
    statuses = [r["status"] for r in rows.values()]
    assert (
        statuses.count("written"),
        statuses.count("skipped"),
        statuses.count("quarantined"),
    ) == (
        42,
        3,
        2,
    )
    for r in rows.values():
        assert (r["output_path"] != "") == (r["status"] == "written")
        if r["output_path"]:
            assert r["size_out"] == (_out / r["output_path"]).stat().st_size
    # Keys are the local run's keyed hashes of the paths relative to the input root.
    keyed = Keyed(SECRET)
    names = [p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()]
    assert set(rows) == {keyed.path_token(n) for n in names}
    assert sum(r["size_in"] for r in rows.values()) == sum(
        (archive / n).stat().st_size for n in names
    )


def test_corrupt_files_are_reported_and_do_not_fail_the_job(spark_run) -> None:
    out, rows = spark_run
    keyed = Keyed(SECRET)
    for name in (CORRUPT, GARBAGE):
        row = rows[keyed.path_token(name)]
        assert row["status"] == "quarantined" and row["reason"]
        assert row["output_path"] == "" and row["size_out"] == 0
    lines = (out / ".medveil" / "quarantine.jsonl").read_text().splitlines()
    listed = [json.loads(line) for line in lines]
    assert {q["input"] for q in listed} == {keyed.path_token(CORRUPT), keyed.path_token(GARBAGE)}
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert (summary["files_in"], summary["written"], summary["quarantined"]) == (47, 42, 2)


def test_catalog_parquet_and_sqlite_match_local_catalog(spark, local_out, spark_run) -> None:
    out, _rows = spark_run
    expected = local_catalog(local_out / ".medveil" / "catalog.sqlite")
    assert len(expected) == 42
    assert local_catalog(out / ".medveil" / "catalog.sqlite") == expected
    parquet = spark.read.parquet(str(out / ".medveil" / "catalog.parquet"))
    names = [n for n, _ in mspark.CATALOG_COLUMNS] + ["source_key"]
    assert parquet.columns == names
    got = sorted(((*tuple(r), "") for r in parquet.collect()), key=repr)
    assert got == expected  # no file shares its UID here


def test_no_secret_in_conf_or_outputs(spark, spark_run) -> None:
    out, _rows = spark_run
    conf = repr(spark.sparkContext.getConf().getAll())
    assert SECRET.hex() not in conf and repr(SECRET) not in conf
    job = repr(mspark._Job(policy=POLICY, root="r", output="o", secret=SECRET))
    assert repr(SECRET) not in job and " secret=" not in job
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert SECRET not in data and SECRET.hex().encode() not in data


def test_secret_file_partitions_and_spark_reads_give_same_output(
    spark, archive, local_out, tmp_path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex() + "\n")
    secret_file.chmod(0o600)
    out = tmp_path / "out"
    df = mspark.deidentify_archive(
        spark,
        f"file://{archive}",
        f"file://{out}",
        policy=POLICY,
        secret_file=str(secret_file),
        partitions=7,
        spark_reads=True,  # the path non-local inputs take: bytes read by Spark
    )
    assert tree(out) == tree(local_out)
    assert {r["input_key"]: (r["status"], r["reason"]) for r in df.collect()} == local_inputs(
        local_out
    )
    assert not (out / ".medveil" / "catalog.sqlite").exists()  # only on request


def test_refuses_bad_arguments(spark, archive, tmp_path) -> None:
    with pytest.raises(MedveilError, match="inside it"):
        mspark.deidentify_archive(spark, str(archive), str(archive / "out"), secret=SECRET)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(MedveilError, match="not empty"):
        mspark.deidentify_archive(spark, str(archive), str(busy), secret=SECRET)
    zipped = tmp_path / "a.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("x.dcm", b"x")
    with pytest.raises(MedveilError, match="unpack"):
        mspark.deidentify_archive(spark, str(zipped), str(tmp_path / "o"), secret=SECRET)
    with pytest.raises(MedveilError, match="not found"):
        mspark.deidentify_archive(spark, str(tmp_path / "nope"), str(tmp_path / "o"), secret=SECRET)
    with pytest.raises(ValueError, match="32 bytes"):
        mspark.deidentify_archive(spark, str(archive), str(tmp_path / "o"), secret=b"short")
    with pytest.raises(MedveilError, match="either"):
        mspark.deidentify_archive(
            spark, str(archive), str(tmp_path / "o"), secret=SECRET, secret_file="f"
        )


# ---------------------------------------------------------------------------- parity (issue 20)
# These run before the CLI tests below: after an in-process `medveil deid --engine spark`
# (test_deid_engine_spark), a local deidentify_archive in this process came back empty
# (files_in 0, no error); reported, not yet understood.
VAULT_KEY = bytes(range(100, 132))


def _originals(folder: Path) -> set[bytes]:
    """The identifying values planted in an input tree (names, IDs, accession numbers)."""
    found: set[bytes] = set()
    for p in folder.rglob("*.dcm"):
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:
            continue  # the damaged inputs
        for kw in ("PatientName", "PatientID", "AccessionNumber"):
            value = str(ds.get(kw, "") or "")
            if len(value) >= 6:
                found.add(value.encode())
    return found


def test_vault_matches_local_vault_and_originals_never_enter_spark_rows(
    spark, archive, tmp_path
) -> None:
    """--vault on Spark: the same crosswalk and bytes as the local run's vault, sealed on
    the executors: no original value in the job's rows, its records or its outputs."""
    from medveil.crypto.vault import Vault

    local_vault = Vault(tmp_path / "local.sqlite", VAULT_KEY)
    local = tmp_path / "local"
    local_deidentify_archive(
        archive, local, policy=POLICY, secret=SECRET, workers=2, vault=local_vault
    )
    local_vault.close()
    key_file = tmp_path / "vault.key"
    key_file.write_bytes(VAULT_KEY.hex().encode())
    key_file.chmod(0o600)
    out = tmp_path / "spark"
    df = mspark.deidentify_archive(
        spark,
        str(archive),
        str(out),
        policy=POLICY,
        secret=SECRET,
        vault_url=str(tmp_path / "spark.sqlite"),
        vault_key_file=str(key_file),
        sqlite=True,
    )
    assert tree(out) == tree(local)  # both through the Dataset engine (identity capture)
    assert {r["input_key"]: (r["status"], r["reason"]) for r in df.collect()} == local_inputs(local)
    with (
        Vault(tmp_path / "local.sqlite", VAULT_KEY) as a,
        Vault(tmp_path / "spark.sqlite", VAULT_KEY) as b,
    ):
        expected = sorted(a.crosswalk(), key=repr)
        assert len(expected) >= 6 and sorted(b.crosswalk(), key=repr) == expected
    originals = _originals(archive)
    assert len(originals) >= 6
    # What Spark holds (cache, shuffle) is what clean_partition yields: run it here.
    job = mspark._Job(
        policy=POLICY,
        root=f"file:{archive}",
        output=str(tmp_path / "again"),
        secret=SECRET,
        vault_url=str(tmp_path / "spark.sqlite"),
        vault_key=VAULT_KEY,
    )
    inputs = [(f"file:{p}",) for p in sorted(archive.rglob("*")) if p.is_file()]
    rows = list(mspark.clean_partition(job, inputs))
    assert sum(r[1] == "written" for r in rows) == 42
    text = repr(rows).encode()
    assert not [o for o in originals if o in text]
    assert repr(VAULT_KEY) not in repr(job)
    for p in [*out.rglob("*"), tmp_path / "spark.sqlite"]:
        if p.is_file():
            data = p.read_bytes()
            assert not [o for o in originals if o in data], p.name


def test_vault_refusals(spark, archive, tmp_path) -> None:
    key_file = tmp_path / "vault.key"
    key_file.write_bytes(SECRET.hex().encode())  # the pseudonym secret itself
    key_file.chmod(0o600)
    with pytest.raises(MedveilError, match="differ from the pseudonym secret"):
        mspark.deidentify_archive(
            spark,
            str(archive),
            str(tmp_path / "o"),
            secret=SECRET,
            vault_url=str(tmp_path / "v.sqlite"),
            vault_key_file=str(key_file),
        )
    with pytest.raises(MedveilError, match="URL and its key"):
        mspark.deidentify_archive(
            spark, str(archive), str(tmp_path / "o"), secret=SECRET, vault_url="v.sqlite"
        )
    assert not list((tmp_path / "o").rglob("*.dcm"))


def test_excluded_counted_apart_from_quarantined_as_local(spark, archive, tmp_path) -> None:
    """[filter] exclusions: not written, not quarantined, counted by rule as locally."""
    text = f'[pixels]\nrules = ["{demo_rule_file()}"]\n'
    text += '[[filter.exclude]]\nlabel = "no ultrasound"\n'
    text += 'tests = [{ field = "Modality", op = "equals", value = "US" }]\n'
    policy = Policy.from_toml(text)
    local = tmp_path / "local"
    expected = local_deidentify_archive(archive, local, policy=policy, secret=SECRET, workers=2)
    assert dict(expected.excluded) == {"exclude[0]": 6} and expected.quarantined == 2
    out = tmp_path / "spark"
    df = mspark.deidentify_archive(spark, str(archive), str(out), policy=policy, secret=SECRET)
    assert {r["input_key"]: (r["status"], r["reason"]) for r in df.collect()} == local_inputs(local)
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert summary["excluded"] == dict(expected.excluded)
    assert (summary["written"], summary["quarantined"]) == (expected.written, 2)
    assert tree(out) == tree(local)


def test_duplicate_sop_uids_named_as_the_local_run(spark, tmp_path) -> None:
    """Identical content: one file, one catalog row, the other input 'duplicate'. Different
    contents under one SOP Instance UID: all written as <uid>.dcm, <uid>~2.dcm, <uid>~3.dcm
    in the local run's listing order (files of a folder before its sub-folders), whatever
    order Spark's tasks placed them in; the names, bytes, catalog and summary agree with the
    local run's."""
    src = tmp_path / "in"
    files = write_demo_archive(src / "demo")
    ct = next(p for p in files if p.parent.name == "ct")
    shutil.copyfile(ct, src / "copy-of-ct.dcm")  # listed first: its content gets <uid>.dcm
    for name, flip, blob in (("m-third.dcm", 1, 0), ("z-other.dcm", 2, 3 << 20)):
        ds = pydicom.dcmread(ct)
        pixels = bytearray(ds.PixelData)
        pixels[0] ^= flip  # the same UIDs, other content
        ds.PixelData = bytes(pixels)
        if blob:
            # A large private element (removed by the policy): Spark packs files by size,
            # largest first, so this last-listed input is placed first on the executors.
            ds.add_new(0x00091010, "LO", "MEDVEIL TEST")
            ds.add_new(0x00091000 | 0x1011, "OB", bytes(blob))
        ds.save_as(src / name, enforce_file_format=True)
    local = tmp_path / "local"
    local_deidentify_archive(src, local, policy=POLICY, secret=SECRET, workers=2)
    out = tmp_path / "out"
    df = mspark.deidentify_archive(
        spark, str(src), str(out), policy=POLICY, secret=SECRET, partitions=3, sqlite=True
    )
    assert tree(out) == tree(local)
    rows = {r["input_key"]: r.asDict() for r in df.collect()}
    keyed = Keyed(SECRET)
    by_name = {
        n: rows[keyed.path_token(n)]
        for n in (ct.relative_to(src).as_posix(), "copy-of-ct.dcm", "m-third.dcm", "z-other.dcm")
    }
    pair = [by_name[ct.relative_to(src).as_posix()], by_name["copy-of-ct.dcm"]]
    assert sorted(r["status"] for r in pair) == ["duplicate", "written"]
    (dup,) = [r for r in pair if r["status"] == "duplicate"]
    assert dup["reason"].startswith("duplicate: another input gave the identical output")
    assert dup["output_path"] == "" and dup["size_out"] == 0
    (first,) = [r for r in pair if r["status"] == "written"]
    base = first["output_path"]
    assert base.endswith(".dcm") and "~" not in base
    assert by_name["m-third.dcm"]["output_path"] == base[: -len(".dcm")] + "~2.dcm"
    assert by_name["z-other.dcm"]["output_path"] == base[: -len(".dcm")] + "~3.dcm"
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*/*/*.dcm"))
    written = sorted(r["output_path"] for r in rows.values() if r["status"] == "written")
    assert on_disk == written and len(on_disk) == 14 + 2

    # The catalog (paths, which files share a UID) as the local run's; only which of two
    # identical inputs owns the row may differ (the local run: whichever finished first).
    def paths_and_shares(db_path: Path) -> list[tuple[object, ...]]:
        db = sqlite3.connect(db_path)
        try:
            return sorted(db.execute("SELECT path, sha256, shares_uid_with FROM instances"))
        finally:
            db.close()

    assert paths_and_shares(out / ".medveil" / "catalog.sqlite") == paths_and_shares(
        local / ".medveil" / "catalog.sqlite"
    )
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert (summary["written"], summary["duplicates"]) == (16, 1)
    parquet = spark.read.parquet(str(out / ".medveil" / "catalog.parquet"))
    assert sorted(r["path"] for r in parquet.collect()) == written


def test_max_file_size_as_local_with_spark_reads(spark, archive, tmp_path) -> None:
    """--max-file-size on the executors, for bytes Spark read too: the local run's verdicts
    and reasons ("too large: ... (--max-file-size)")."""
    sizes = sorted(p.stat().st_size for p in archive.rglob("*.dcm"))
    limit = sizes[len(sizes) // 2]
    local = tmp_path / "local"
    local_deidentify_archive(
        archive, local, policy=POLICY, secret=SECRET, workers=2, max_file_size=limit
    )
    expected = local_inputs(local)
    assert sum(r.startswith("too large: ") for _, r in expected.values()) >= 5
    df = mspark.deidentify_archive(
        spark,
        str(archive),
        str(tmp_path / "spark"),
        policy=POLICY,
        secret=SECRET,
        spark_reads=True,
        max_file_size=limit,
    )
    assert {r["input_key"]: (r["status"], r["reason"] or "") for r in df.collect()} == expected
    assert tree(tmp_path / "spark") == tree(local)


def test_realistic_archive_dicomdir_replaced_as_local(spark, tmp_path) -> None:
    """The realistic corpus (a DICOMDIR, references, every class) with the default policy:
    the same decisions and bytes as the local run, and a new DICOMDIR of the released files."""
    from pydicom.fileset import FileSet

    from tests.corpus import realistic

    src = tmp_path / "in"
    man = realistic.generate(src, patients=1)
    local = tmp_path / "local"
    expected = local_deidentify_archive(src, local, secret=SECRET, workers=2)
    assert expected.replaced == 1 and expected.dicomdir == "dicomdir/DICOMDIR"
    out = tmp_path / "spark"
    df = mspark.deidentify_archive(spark, str(src), str(out), secret=SECRET)
    assert {r["input_key"]: (r["status"], r["reason"]) for r in df.collect()} == local_inputs(local)

    def released(folder: Path) -> dict[str, str]:
        return {k: v for k, v in tree(folder).items() if not k.startswith("dicomdir/")}

    assert released(out) == released(local) and len(released(out)) == expected.written
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert (summary["replaced"], summary["dicomdir"]) == (1, "dicomdir/DICOMDIR")
    assert summary["dicomdir_left_out"] == expected.dicomdir_left_out

    def listed(folder: Path) -> dict[str, bytes]:
        fs = FileSet(pydicom.dcmread(folder / "dicomdir" / "DICOMDIR"))
        try:
            return {str(i.SOPInstanceUID): Path(i.path).read_bytes() for i in fs}
        finally:
            fs._stage["t"].cleanup()

    assert listed(out) == listed(local) and len(listed(out)) == expected.written
    data = (out / "dicomdir" / "DICOMDIR").read_bytes().upper()
    assert not [s for s in man.all_identifiers() if s.encode() in data]


def test_cli_spark_vault_and_counts(spark, archive, tmp_path, capsys) -> None:
    """`medveil deid --engine spark --vault ...` runs (no longer refused) and prints the
    excluded count apart from the quarantined one. (--dicomdir is not used here: on the demo
    outputs write_dicomdir makes no record and leaves pydicom's staging folder to a
    finalizer, a ResourceWarning at exit; reported against run/outputs.py.)"""
    from medveil.crypto.vault import Vault

    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    key_file = tmp_path / "vault.key"
    key_file.write_text(VAULT_KEY.hex())
    key_file.chmod(0o600)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[pixels]\nrules = ["{demo_rule_file()}"]\n[[filter.exclude]]\nlabel = "no MR"\n'
        'tests = [{ field = "Modality", op = "equals", value = "MR" }]\n'
    )
    out = tmp_path / "out"
    args = ["deid", str(archive), str(out), "--engine", "spark", "--master", "local[2]"]
    args += ["--secret-file", str(secret_file), "--policy", str(policy)]
    assert cli_main([*args, "--vault", str(tmp_path / "v.sqlite")]) == 2  # a missing half
    assert "--vault-key" in capsys.readouterr().err
    args += ["--vault", str(tmp_path / "v.sqlite"), "--vault-key", str(key_file)]
    assert cli_main(args) == 1  # two damaged inputs quarantined
    captured = capsys.readouterr()
    printed = captured.out
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    excluded = sum(summary["excluded"].values())
    assert excluded > 0 and f"{excluded} excluded" in printed and "2 quarantined" in printed
    assert summary["dicomdir"] == "" and not (out / "dicomdir").exists()
    assert SECRET.hex() not in captured.out + captured.err
    with Vault(tmp_path / "v.sqlite", VAULT_KEY) as v:
        assert v.counts()["patients"] >= 3


def test_one_job_per_output_and_no_input_inside_output(spark, archive, tmp_path) -> None:
    """A run holding OUTPUT's lock (local or Spark) makes a Spark job fail at once; an
    input inside the output is refused (the release would hold the originals)."""
    from medveil.run.archive import lock_output

    out = tmp_path / "out"
    fd = lock_output(out)
    try:
        with pytest.raises(MedveilError, match="another medveil run"):
            mspark.deidentify_archive(spark, str(archive), str(out), secret=SECRET)
    finally:
        os.close(fd)
    assert not list(out.rglob("*.dcm"))
    inner = tmp_path / "release"
    shutil.copytree(archive / FOLDERS[0], inner / "originals")
    with pytest.raises(MedveilError, match="input must not lie inside the output"):
        mspark.deidentify_archive(
            spark, str(inner / "originals"), str(inner), secret=SECRET, overwrite=True
        )


def test_cli_spark_deid(spark, archive, local_out, tmp_path, capsys) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[pixels]\nrules = ["{demo_rule_file()}"]\n')
    out = tmp_path / "out"
    args = ["spark-deid", str(archive), str(out), "--master", "local[2]"]
    args += ["--secret-file", str(secret_file), "--policy", str(policy), "--sqlite"]
    assert cli_main(args) == 1  # two files quarantined
    printed = capsys.readouterr()
    assert "42 written" in printed.out and "2 quarantined" in printed.out
    assert SECRET.hex() not in printed.out + printed.err
    assert tree(out) == tree(local_out)
    assert local_catalog(out / ".medveil" / "catalog.sqlite") == local_catalog(
        local_out / ".medveil" / "catalog.sqlite"
    )
    assert spark.sparkContext._jsc is not None  # the CLI left the running session alone


def test_deid_engine_spark(spark, archive, local_out, tmp_path, capsys) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[pixels]\nrules = ["{demo_rule_file()}"]\n')
    out = tmp_path / "out"
    args = ["deid", str(archive), str(out), "--engine", "spark", "--master", "local[2]"]
    args += ["--secret-file", str(secret_file), "--policy", str(policy)]
    assert cli_main([*args, "--workers", "2"]) == 2  # a local-engine option
    assert "--workers" in capsys.readouterr().err and not out.exists()
    assert cli_main(args) == 1
    assert "42 written" in capsys.readouterr().out
    assert tree(out) == tree(local_out)
    # A folder run in this same process afterwards (once reported to come back empty):
    # the Spark run leaves nothing behind that changes it.
    folder = tmp_path / "folder"
    local_args = ["deid", str(archive), str(folder), "--workers", "2"]
    local_args += ["--secret-file", str(secret_file), "--policy", str(policy)]
    assert cli_main(local_args) == 1
    assert "42 written" in capsys.readouterr().out
    assert tree(folder) == tree(local_out)


# ---------------------------------------------------------------------------- faults
def _with_dotdot_file(src: Path) -> list[Path]:
    """The demo archive in src plus hostile.dcm, whose Study and Series UIDs are '..'."""
    import io
    import warnings

    files = write_demo_archive(src)
    template = next(p for p in files if p.parent.name == "ct")
    ds = pydicom.dcmread(template)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UI values
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ".."
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    (src / "hostile.dcm").write_bytes(buf.getvalue())
    return files


DOTDOT = "unsafe output path: the Study Instance UID is not a valid path component"


def test_dotdot_uids_write_nothing_outside_output_on_spark(spark, tmp_path) -> None:
    """Retained UIDs of '..' are quarantined on the executors; nothing lands outside OUTPUT,
    whatever jobs ran in this session before (POLICY is compiled in this process by then:
    the vault test runs clean_partition here)."""
    import dataclasses

    from medveil.policy.standard import Option

    src = tmp_path / "in"
    _with_dotdot_file(src)
    out = tmp_path / "a" / "b" / "out"
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    policy = dataclasses.replace(POLICY, options=(*POLICY.options, Option.RETAIN_UIDS))
    df = mspark.deidentify_archive(spark, str(src), str(out), policy=policy, secret=SECRET)
    rows = {r["status"]: r["reason"] for r in df.collect() if r["status"] == "quarantined"}
    assert rows == {"quarantined": DOTDOT}
    assert not any(".." in p.relative_to(out).parts for p in out.rglob("*.dcm"))
    after = {p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents}
    assert after == before


def test_each_job_in_one_session_applies_its_own_policy_and_secret(spark, tmp_path) -> None:
    """Permissive after strict and strict after permissive in ONE SparkSession (its Python
    workers reused), each policy derived by dataclasses.replace from one compiled in this
    process: every job's outputs follow its own policy and secret."""
    import dataclasses

    from medveil.engine.dataset import Deidentifier
    from medveil.policy.schema import ElementOverride
    from medveil.policy.standard import Option

    src = tmp_path / "in"
    files = _with_dotdot_file(src)
    datasets = [pydicom.dcmread(p, force=True) for p in files]
    originals = {ds.SOPInstanceUID: ds for ds in datasets if "SOPInstanceUID" in ds}
    assert len(originals) == 14
    strict = Policy(pixel_rule_files=(str(demo_rule_file()),))
    Deidentifier(strict, SECRET)  # compiled here: replace() used to carry that along
    permissive = dataclasses.replace(
        strict,
        options=(*strict.options, Option.RETAIN_UIDS),
        overrides=(ElementOverride("InstitutionName", "K"),),
    )
    Deidentifier(permissive, SECRET)
    strict_again = dataclasses.replace(
        permissive, options=strict.options, overrides=(ElementOverride("PatientSex", "X"),)
    )
    other_secret = bytes(range(100, 132))
    patients: dict[str, set[str]] = {}
    for name, policy, secret in (
        ("permissive", permissive, SECRET),
        ("strict", strict_again, SECRET),
        ("permissive-other-secret", permissive, other_secret),
    ):
        out = tmp_path / name
        df = mspark.deidentify_archive(spark, str(src), str(out), policy=policy, secret=secret)
        statuses = sorted((r["status"], r["reason"] or "") for r in df.collect())
        written = [p for p in out.rglob("*.dcm") if ".medveil" not in p.parts]
        assert not any(".." in p.relative_to(out).parts for p in written)
        patients[name] = {p.relative_to(out).parts[0] for p in written}
        kept = policy is permissive
        if kept:  # the '..' file quarantined, every other UID and the institution kept
            assert ("quarantined", DOTDOT) in statuses and len(written) == 14
            for p in written:
                ds = pydicom.dcmread(p)
                before = originals[ds.SOPInstanceUID]
                assert ds.StudyInstanceUID == before.StudyInstanceUID
                assert ds.InstitutionName == before.InstitutionName
                assert ds.PatientSex == before.PatientSex
        else:  # UIDs remapped (the '..' file too, written inside OUTPUT), the sex removed
            assert [s for s, _ in statuses].count("written") == 15 and len(written) == 15
            for p in written:
                ds = pydicom.dcmread(p)
                assert ds.SOPInstanceUID not in originals
                assert ds.get("InstitutionName") != "Demo General Hospital"
                assert "PatientSex" not in ds
    # The same policy under another secret: other pseudonyms (no engine of job 1 reused).
    assert patients["permissive"].isdisjoint(patients["permissive-other-secret"])


@pytest.mark.parametrize(
    ("path", "root", "name"),
    [
        ("file:/data/in/a/b.dcm", "file:/data/in", "a/b.dcm"),
        ("file:/data/in/a b/ü.dcm", "file:/data/in/", "a b/ü.dcm"),
        ("hdfs://nn:8020/x/y.dcm", "hdfs://nn:8020/x", "y.dcm"),
        ("file:/data/in/one.dcm", "file:/data/in/one.dcm", "one.dcm"),
        ("file:/data/input2/z.dcm", "file:/data/in", "file:/data/input2/z.dcm"),
    ],
)
def test_relative_name(path: str, root: str, name: str) -> None:
    assert mspark.relative_name(path, root) == name


def test_output_uris() -> None:
    assert mspark.is_local_uri("/x/y") and mspark.is_local_uri("file:///x/y")
    assert not mspark.is_local_uri("hdfs://nn/x") and not mspark.is_local_uri("s3://b/x")
    assert mspark.local_path("file:/x/a b/100%20.dcm") == Path("/x/a b/100%20.dcm")
    assert mspark.local_path("file:///x/y") == Path("/x/y")
    assert mspark.local_path("rel/dir") == Path("rel/dir")
    assert mspark.arrow_uri("s3a://bucket/out") == "s3://bucket/out"
    assert mspark.arrow_uri("hdfs://nn:8020/out") == "hdfs://nn:8020/out"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_arrow_sink_writes_through_pyarrow_fs(tmp_path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow not installed (non-local outputs need it)")
    sink = mspark._ArrowSink(f"file://{tmp_path}/out")
    assert sink.rename  # a file system with rename: temporary name first
    rel = "P1/1.2/1.2.3/1.2.3.4.dcm"
    assert sink.add(rel, [b"first"], _sha(b"first")) == rel
    assert sink.add(rel, [b"fir", memoryview(b"st")], _sha(b"first")) == rel  # a retried task
    # Another input's different output under the same SOP Instance UID: the next variant.
    beside = "P1/1.2/1.2.3/1.2.3.4~2.dcm"
    assert sink.add(rel, [b"second"], _sha(b"second")) == beside
    assert sink.add(rel, [b"second"], _sha(b"second")) == beside  # its retried task
    assert sink.add("P2/9/9.1/9.1.1.dcm", [b"other"], _sha(b"other")) == "P2/9/9.1/9.1.1.dcm"
    assert sink.commit() == {}
    files = {
        p.relative_to(tmp_path).as_posix(): p.read_bytes()
        for p in tmp_path.rglob("*")
        if p.is_file()
    }
    assert files == {
        f"out/{rel}": b"first",
        f"out/{beside}": b"second",
        "out/P2/9/9.1/9.1.1.dcm": b"other",
    }
    many = mspark._ArrowSink(f"file://{tmp_path}/many")
    for i in range(mspark.MAX_VARIANTS):
        many.add(rel, [b"%d" % i], _sha(b"%d" % i))
    with pytest.raises(FileExistsError):
        many.add(rel, [b"one too many"], _sha(b"one too many"))


def test_local_sink_never_replaces_a_different_file(tmp_path) -> None:
    """Within a batch and across batches (other tasks): same bytes kept, different contents
    under the next free variant name (<uid>~2.dcm, ...), as the local run names them."""
    root = tmp_path / "out"
    rel = "P1/1.2/1.2.3/1.2.3.4.dcm"
    second, third = "P1/1.2/1.2.3/1.2.3.4~2.dcm", "P1/1.2/1.2.3/1.2.3.4~3.dcm"
    sink = mspark._LocalSink(root)
    assert sink.add(rel, [b"first"], _sha(b"first")) == rel
    assert sink.add(rel, [b"first"], _sha(b"first")) == rel  # the same output twice
    assert sink.add(rel, [b"second"], _sha(b"second")) == second  # in the same batch
    assert sink.commit() == {rel: ("new", rel), second: ("new", second)}
    other = mspark._LocalSink(root)  # another task, later
    assert other.add(rel, [b"third"], _sha(b"third")) == rel  # staged under the name...
    assert other.add("P3/7/7.1/7.1.1.dcm", [b"x"], _sha(b"x")) == "P3/7/7.1/7.1.1.dcm"
    placed = other.commit()
    assert placed[rel] == ("new", third)  # ...and placed under the next free one at commit
    again = mspark._LocalSink(root)  # a retried task: the same bytes find their names
    again.add(rel, [b"third"], _sha(b"third"))
    assert again.commit() == {rel: ("same", third)}
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert files == {rel: b"first", second: b"second", third: b"third", "P3/7/7.1/7.1.1.dcm": b"x"}


def test_walk_order_is_the_local_listing_order(tmp_path) -> None:
    """walk_order sorts relative names as the local run lists a folder (os.walk, sorted)."""
    from medveil.run.archive import _folder_items

    names = ["b.dcm", "a/z.dcm", "a/b/c.dcm", "a.dcm", "a b/x.dcm", "ab/y.dcm", "a/a.dcm", "Z.dcm"]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_bytes(b"x")
    listed = [item.name for item in _folder_items(tmp_path)]
    assert sorted(names, key=mspark.walk_order) == listed


def _cli_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYSPARK_* prepared, the system python3 on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


@pytest.mark.slow
def test_cli_local_master_from_a_venv_needs_no_prepared_environment(archive, tmp_path) -> None:
    """Executors of a local master run the CLI's interpreter, not the python3 on PATH."""
    import subprocess

    if shutil.which("python3", path="/usr/bin:/bin") is None:
        pytest.skip("no system python3 to stand in for the wrong interpreter")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[pixels]\nrules = ["{demo_rule_file()}"]\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medveil", "deid", str(archive), str(out), "--quiet"]
    cmd += ["--engine", "spark", "--master", "local[1]", "--secret-file", str(secret_file)]
    cmd += ["--policy", str(policy)]
    # Generous: a shared CI machine under load needed over 300 s for this local[1] job.
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_cli_env(), timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]  # two damaged inputs quarantined
    assert "42 written" in proc.stdout and "ModuleNotFoundError" not in proc.stderr


@pytest.mark.slow
def test_executors_without_medveil_fail_before_the_job_in_one_line(archive, tmp_path) -> None:
    import subprocess

    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None or subprocess.run([system, "-c", "import medveil"]).returncode == 0:
        pytest.skip("needs a system python3 without medveil")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medveil", "spark-deid", str(archive), str(out)]
    cmd += ["--master", "local[1]", "--secret-file", str(secret_file)]
    env = _cli_env(PYSPARK_PYTHON=system)  # as on a cluster whose nodes lack medveil
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("medveil: the Spark executors") and "PYSPARK_PYTHON" in last
    assert "docs/spark.md" in last and "Traceback" not in proc.stderr
    assert not list(out.rglob("*.dcm"))


@pytest.mark.slow
def test_killed_spark_job_resumes_to_the_same_output(tmp_path) -> None:
    """kill -9 of spark-deid mid-job, then --resume: the tasks' recorded rows are kept,
    the rest is done, and output and records equal an uninterrupted local run's."""
    import signal
    import subprocess
    import time

    from medveil.run.demo import write_copies

    src = tmp_path / "in"
    files = write_demo_archive(src / "demo")
    ct = next(p for p in files if p.parent.name == "ct")
    write_copies(src / "copies", ct, 400)
    ref = tmp_path / "ref"
    local_deidentify_archive(src, ref, policy=POLICY, secret=SECRET, workers=2)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET.hex())
    secret_file.chmod(0o600)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[pixels]\nrules = ["{demo_rule_file()}"]\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medveil", "spark-deid", str(src), str(out)]
    cmd += ["--master", "local[1]", "--partitions", "40"]
    cmd += ["--secret-file", str(secret_file), "--policy", str(policy)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    progress = out / ".medveil" / "progress"
    while time.monotonic() < deadline and proc.poll() is None:
        if (
            progress.is_dir()
            and sum(len(p.read_text().splitlines()) for p in progress.iterdir()) >= 40
        ):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its JVM and the Python workers
    proc.wait()
    assert not (out / ".medveil" / "summary.json").exists(), "the job finished before the kill"
    done = mspark.read_progress(str(out))
    assert 40 <= len(done) < 415
    # What an executor killed between writing and renaming leaves (the kill above lands
    # there only by chance): the resumed job must not keep it.
    placed = next(p for p in out.rglob("*.dcm") if ".medveil" not in p.parts)
    placed.with_name(f".{placed.name}.99999.tmp").write_bytes(b"partial")
    rerun = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert tree(out) == tree(ref)
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert summary["files_in"] == 415 and summary["resumed"] >= 40
    assert f"{summary['resumed']} already done" in rerun.stdout
