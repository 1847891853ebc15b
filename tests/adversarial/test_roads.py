"""The adversarial corpus on the other roads: the DICOM gateway and the Spark engine.

Each road gets the whole corpus at once under the default policy (per sending mode one
association; one Spark job on ``local[2]``) and is held to the rules of ``test_no_leaks``,
with its oracle: no canary in any output byte (any encoding, inflated), in the records or
in the logs; every input stored or refused with a reason; and the same set of cases
released as by ``medveil deid`` on the folder. The gateway gets the corpus twice: the
files' data set bytes as they are, and re-encoded by pydicom as pynetdicom sends by
default (a damaged file may then arrive repaired, and may be released if clean). A file
pynetdicom cannot even send counts as refused.

Both roads then run again under the default policy plus one option that keeps more
(:data:`ROAD_OPTIONS`), on a sample of the corpus (every case made for that option, and
every third other case), held to the same rules against a folder run of the same policy."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from medveil.policy.keys import Keyed
from medveil.policy.schema import Policy
from medveil.policy.standard import Option

from .generator import leaks
from .test_no_leaks import BY_PLACE, CASES, SECRET, CliRun, _file_name, _policy_toml, _run_cli

# Damage confined to the file meta, which a C-STORE never carries: the sender reads the
# meta up to its last group 0002 element (whatever the group length says) and sends the
# data set after it, which is sound, so the gateway may release it (clean, it is checked).
META_ONLY_DAMAGE = {"damaged-meta-group-length-short"}

# Cases whose leak on a road is not fixed yet: {(road, place): what leaks where}. With
# strict=True a fixed case fails until its entry goes. Empty since the strict check refuses
# text values holding control bytes: a sender's tolerant read that swallowed the patient's
# elements into an overrun value and re-encoded it well formed (dicom/strict.py).
KNOWN: dict[tuple[str, str], str] = {}


def _params(road: str) -> list[Any]:
    out = []
    for c in CASES:
        why = KNOWN.get((road, c.place))
        marks = pytest.mark.xfail(strict=True, reason=why) if why else ()
        out.append(pytest.param(c.place, id=c.place, marks=marks))
    return out


@dataclass
class RoadRun:
    """One road's run of the corpus: what it wrote and logged, and each case's outcome."""

    blob: bytes = b""  # every output byte, the records, the logs, joined
    # input file name -> ("written", "") or ("quarantined"/"refused", reason)
    outcome: dict[str, tuple[str, str]] = field(default_factory=dict)
    files: int = 0  # DICOM files written (records excluded)


def _tree_blob(root: Path) -> list[bytes]:
    """Every file's bytes and relative path under root."""
    chunks = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            chunks += [path.read_bytes(), str(path.relative_to(root)).encode()]
    return chunks


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("roads-in")
    for i, case in enumerate(CASES):
        (folder / _file_name(i)).write_bytes(case.data)
    return folder


@pytest.fixture(scope="module")
def folder_run(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """``medveil deid`` on the folder, default policy: the reference outcome of each case."""
    base = tmp_path_factory.mktemp("roads-cli")
    secret = base / "secret"
    secret.write_text(SECRET.hex())
    secret.chmod(0o600)
    return _run_cli(corpus_dir, base / "out", secret)


def _released_by_folder(run: CliRun) -> set[str]:
    """Input names the folder run wrote (its records name inputs by keyed hash)."""
    keyed = Keyed(SECRET)
    by_token = {keyed.path_token(_file_name(i)): _file_name(i) for i in range(len(CASES))}
    assert set(run.quarantined) <= set(by_token), "quarantine records name unknown inputs"
    return set(by_token.values()) - {by_token[t] for t in run.quarantined}


# Options the roads are also run under (added to the default): each keeps content the
# default removes (private blobs; structured report content), where the roads' decoding
# and the post-check must still find every canary.
ROAD_OPTIONS = ("retain_safe_private", "clean_structured_content")


def _option_policy(option: str) -> Policy:
    """The default policy plus one option."""
    return Policy(options=(*Policy().options, Option[option.upper()]))


def _option_sample(option: str) -> list[int]:
    """Indices of the cases run under an option: those made for it, every third other."""
    return [
        i
        for i, c in enumerate(CASES)
        if (c.options and set(c.options) <= {option}) or (not c.options and i % 3 == 0)
    ]


@pytest.fixture(scope="module")
def option_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per option, a folder holding its sample of the corpus (file names as in the whole)."""
    out = {}
    for option in ROAD_OPTIONS:
        folder = tmp_path_factory.mktemp(f"roads-in-{option}")
        for i in _option_sample(option):
            (folder / _file_name(i)).write_bytes(CASES[i].data)
        out[option] = folder
    return out


@pytest.fixture(scope="module")
def option_folder_runs(
    option_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, CliRun]:
    """``medveil deid`` on each option's sample, with a policy file naming the options."""
    base = tmp_path_factory.mktemp("roads-cli-options")
    secret = base / "secret"
    secret.write_text(SECRET.hex())
    secret.chmod(0o600)
    runs = {}
    for option in ROAD_OPTIONS:
        policy = base / f"{option}.toml"
        names = [o.name.lower() for o in Policy().options] + [option]
        policy.write_text(_policy_toml(tuple(names)))
        runs[option] = _run_cli(option_dirs[option], base / f"out-{option}", secret, policy)
    return runs


def _option_params() -> list[Any]:
    return [
        pytest.param(option, CASES[i].place, id=f"{option}-{CASES[i].place}")
        for option in ROAD_OPTIONS
        for i in _option_sample(option)
    ]


def _released_among(run: CliRun, indices: list[int]) -> set[str]:
    """Input names among these cases that a folder run wrote."""
    keyed = Keyed(SECRET)
    by_token = {keyed.path_token(_file_name(i)): _file_name(i) for i in indices}
    assert set(run.quarantined) <= set(by_token), "quarantine records name unknown inputs"
    return set(by_token.values()) - {by_token[t] for t in run.quarantined}


def _check_option_run(run: RoadRun, folder: CliRun, option: str, refused_ok: bool) -> None:
    """Every sampled input accounted for, damaged ones held back, same releases as folder."""
    indices = _option_sample(option)
    names = {_file_name(i) for i in indices}
    assert set(run.outcome) == names
    for name, (status, reason) in run.outcome.items():
        assert status in ("written", "quarantined", *(("refused",) if refused_ok else ()))
        if status != "written":
            assert reason.strip(), f"{name}: {status} without a reason"
    place = {_file_name(i): CASES[i].place for i in indices}
    for name in names:
        if BY_PLACE[place[name]].damaged and place[name] not in META_ONLY_DAMAGE:
            assert run.outcome[name][0] != "written", place[name]
    written = [s for s, _ in run.outcome.values()].count("written")
    assert run.files == written
    released = {n for n, (s, _) in run.outcome.items() if s == "written"}
    expected = _released_among(folder, indices)
    expected |= {n for n in names if place[n] in META_ONLY_DAMAGE} & released
    assert sorted(place[n] for n in released - expected) == []
    assert sorted(place[n] for n in expected - released) == []


# ------------------------------------------------------------------------------ gateway
# How the sender turns each file into a C-STORE: "raw" streams the data set bytes of the
# file as they are; "decoded" (pynetdicom's default, as most senders do) reads the file
# with pydicom, tolerantly, and sends its re-encoding, so damage may arrive repaired.
MODES = ("raw", "decoded")


def _gateway_params() -> list[Any]:
    out = []
    for mode in MODES:
        for c in CASES:
            why = KNOWN.get((f"gateway-{mode}", c.place))
            marks = pytest.mark.xfail(strict=True, reason=why) if why else ()
            out.append(pytest.param(mode, c.place, id=f"{mode}-{c.place}", marks=marks))
    return out


def _send_corpus(
    corpus_dir: Path,
    store: Path,
    chunked: bool,
    policy: Policy | None = None,
    indices: list[int] | None = None,
) -> RoadRun:
    """The corpus (or these cases of it) over one association to a fresh store-mode
    gateway (the default policy unless given)."""
    from medveil.net.gateway import STATUS_QUARANTINED, VERIFICATION, Gateway, GatewayConfig
    from pydicom.filereader import read_file_meta_info
    from pynetdicom import AE, _config

    from tests.gateway.helpers import CapturedLog

    log = CapturedLog()
    config = GatewayConfig(
        policy=policy or Policy(),
        secret=SECRET,
        workers=2,
        host="127.0.0.1",
        port=0,
        store=store,
    )
    gw = Gateway(config, log)
    run = RoadRun()
    names = [_file_name(i) for i in (range(len(CASES)) if indices is None else indices)]
    # One presentation context per (SOP class, transfer syntax) the corpus uses; a file
    # whose meta cannot be read has none and cannot be sent.
    contexts: set[tuple[str, str]] = set()
    for name in names:
        try:
            meta = read_file_meta_info(corpus_dir / name)
            contexts.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
        except Exception:
            pass
    ae = AE(ae_title="ROADSCU")
    for sop, ts in sorted(contexts):
        ae.add_requested_context(sop, [ts])
    ae.add_requested_context(VERIFICATION)
    saved = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = chunked
    gw.start()
    try:
        assoc = ae.associate("127.0.0.1", gw.port, ae_title="MEDVEIL")
        assert assoc.is_established
        try:
            for msg_id, name in enumerate(names, 1):
                seen = len(log.events())
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # pydicom on the damaged files
                        rsp = assoc.send_c_store(corpus_dir / name, msg_id=msg_id)
                except Exception as exc:  # pynetdicom refuses to send it: never received
                    run.outcome[name] = ("refused", f"not sent: {type(exc).__name__}")
                    continue
                assert assoc.is_established, f"{name}: the association ended"
                events = log.events()[seen:]
                if "Status" not in rsp:  # pynetdicom could not encode it: nothing was sent
                    assert events == [], (name, events)
                    run.outcome[name] = ("refused", "not sent: pynetdicom could not encode it")
                    continue
                status = int(rsp.Status)
                if status == 0:
                    assert [e["event"] for e in events] == ["stored"], (name, events)
                    run.outcome[name] = ("written", "")
                else:
                    assert status == STATUS_QUARANTINED, (name, hex(status), events)
                    assert [e["event"] for e in events] == ["quarantined"], (name, events)
                    run.outcome[name] = ("quarantined", str(events[0]["reason"]))
        finally:
            assoc.release()
    finally:
        gw.stop()
        _config.STORE_SEND_CHUNKED_DATASET = saved
    run.blob = b"\0\0".join([log.text.encode(), *_tree_blob(store)])
    run.files = len(list(store.rglob("*.dcm")))
    return run


@pytest.fixture(scope="module")
def gateway_runs(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RoadRun]:
    """The corpus sent raw, then decoded, each over one association to its own gateway."""
    pytest.importorskip("pynetdicom", reason="pynetdicom not installed (pip install .[net])")
    base = tmp_path_factory.mktemp("roads-gateway")
    return {mode: _send_corpus(corpus_dir, base / mode, mode == "raw") for mode in MODES}


@pytest.mark.parametrize("mode", MODES)
def test_gateway_accounts_for_every_input(gateway_runs: dict[str, RoadRun], mode: str) -> None:
    run = gateway_runs[mode]
    assert len(run.outcome) == len(CASES)
    for name, (status, reason) in run.outcome.items():
        assert status in ("written", "quarantined", "refused"), (name, status)
        if status != "written":
            assert reason.strip(), f"{name}: {status} without a reason"
    if mode == "raw":  # decoded, the sender may have repaired the damage
        for i, case in enumerate(CASES):
            if case.damaged and case.place not in META_ONLY_DAMAGE:
                assert run.outcome[_file_name(i)][0] != "written", case.place
    written = [s for s, _ in run.outcome.values()].count("written")
    assert run.files == written  # what the oracle searched is every stored file


@pytest.mark.parametrize(("mode", "place"), _gateway_params())
def test_gateway_leaks_nothing(gateway_runs: dict[str, RoadRun], mode: str, place: str) -> None:
    case = BY_PLACE[place]
    got = leaks(case, gateway_runs[mode].blob)
    assert got == [], f"{place} sent {mode}: canaries in the store or the log"


@pytest.mark.parametrize("mode", MODES)
def test_gateway_releases_what_the_folder_run_releases(
    gateway_runs: dict[str, RoadRun], folder_run: CliRun, mode: str
) -> None:
    run = gateway_runs[mode]
    released = {n for n, (s, _) in run.outcome.items() if s == "written"}
    expected = _released_by_folder(folder_run)
    expected |= {_file_name(i) for i, c in enumerate(CASES) if c.place in META_ONLY_DAMAGE}
    place = {_file_name(i): c.place for i, c in enumerate(CASES)}
    extra = sorted(place[n] for n in released - expected)
    if mode == "decoded":  # a damaged file re-encoded by the sender arrives well formed
        extra = [p for p in extra if not BY_PLACE[p].damaged]
    assert extra == []  # released by the gateway only
    assert sorted(place[n] for n in expected - released) == []  # released by the folder only


@pytest.fixture(scope="module")
def gateway_option_runs(
    option_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, RoadRun]:
    """Each option's sample sent raw to a gateway running the default plus that option."""
    pytest.importorskip("pynetdicom", reason="pynetdicom not installed (pip install .[net])")
    base = tmp_path_factory.mktemp("roads-gateway-options")
    return {
        option: _send_corpus(
            option_dirs[option],
            base / option,
            True,
            _option_policy(option),
            _option_sample(option),
        )
        for option in ROAD_OPTIONS
    }


@pytest.mark.parametrize("option", ROAD_OPTIONS)
def test_gateway_under_an_option_agrees_with_the_folder_run(
    gateway_option_runs: dict[str, RoadRun], option_folder_runs: dict[str, CliRun], option: str
) -> None:
    _check_option_run(gateway_option_runs[option], option_folder_runs[option], option, True)


@pytest.mark.parametrize(("option", "place"), _option_params())
def test_gateway_under_an_option_leaks_nothing(
    gateway_option_runs: dict[str, RoadRun], option: str, place: str
) -> None:
    got = leaks(BY_PLACE[place], gateway_option_runs[option].blob)
    assert got == [], f"{place} under {option}: canaries in the store or the log"


# -------------------------------------------------------------------------------- spark
@dataclass
class SparkJob:
    """One Spark job of the corpus: its input folder, policy and cases."""

    name: str
    corpus_dir: Path
    policy: Policy
    indices: list[int]


@pytest.fixture(scope="module")
def spark_runs(
    corpus_dir: Path, option_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RoadRun]]:
    """The corpus as Spark jobs on local[2] (the whole under the default policy, each
    option's sample under its policy), one session, its console (driver, JVM) captured."""
    jobs = [SparkJob("default", corpus_dir, Policy(), list(range(len(CASES))))]
    jobs += [
        SparkJob(o, option_dirs[o], _option_policy(o), _option_sample(o)) for o in ROAD_OPTIONS
    ]
    yield _spark(jobs, tmp_path_factory.mktemp("roads-spark"))


@pytest.fixture(scope="module")
def spark_run(spark_runs: dict[str, RoadRun]) -> RoadRun:
    """The whole corpus through Spark under the default policy."""
    return spark_runs["default"]


def _spark(jobs: list[SparkJob], base: Path) -> dict[str, RoadRun]:
    """Run each job in one local[2] session; the console is each run's log (all jobs')."""
    pytest.importorskip("pyspark", reason="pyspark not installed (pip install .[spark])")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("no Java runtime for Spark (apt-get install default-jre-headless)")
    from medveil.run import spark as mspark
    from pyspark.sql import SparkSession

    saved_env = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ.update(dict.fromkeys(saved_env, sys.executable))
    # The console at the file descriptor level, so a JVM launched here, and the Python
    # workers it forks, write into it too.
    console = tempfile.TemporaryFile()
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    os.dup2(console.fileno(), 1)
    os.dup2(console.fileno(), 2)
    session = None
    results: dict[str, tuple[Path, list[dict[str, Any]], list[Any]]] = {}
    try:
        session = (
            SparkSession.builder.master("local[2]")
            .appName("medveil-adversarial")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "2")
            .getOrCreate()
        )
        for job in jobs:
            out = base / job.name
            df = mspark.deidentify_archive(
                session, str(job.corpus_dir), str(out), policy=job.policy, secret=SECRET
            )
            rows = [r.asDict() for r in df.collect()]
            # Parquet pages may be compressed in ways the oracle cannot undo: the rows.
            tables = [
                [r.asDict() for r in session.read.parquet(str(p)).collect()]
                for p in sorted((out / ".medveil").glob("*.parquet"))
            ]
            results[job.name] = (out, rows, tables)
    finally:
        if session is not None:
            session.stop()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        os.close(saved_fds[0])
        os.close(saved_fds[1])
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    console.seek(0)
    logs = console.read()
    console.close()
    keyed = Keyed(SECRET)
    by_token = {keyed.path_token(_file_name(i)): _file_name(i) for i in range(len(CASES))}
    runs = {}
    for name, (out, rows, tables) in results.items():
        run = RoadRun()
        for r in rows:
            run.outcome[by_token[r["input_key"]]] = (r["status"], r["reason"] or "")
        records = json.dumps([rows, tables], default=str).encode()
        run.blob = b"\0\0".join([logs, records, *_tree_blob(out)])
        run.files = len(list(out.rglob("*.dcm")))
        runs[name] = run
    return runs


def test_spark_accounts_for_every_input(spark_run: RoadRun) -> None:
    assert len(spark_run.outcome) == len(CASES)
    for name, (status, reason) in spark_run.outcome.items():
        assert status in ("written", "quarantined"), (name, status)
        if status == "quarantined":
            assert reason.strip(), f"{name}: quarantined without a reason"
    for i, case in enumerate(CASES):
        if case.damaged:
            assert spark_run.outcome[_file_name(i)][0] == "quarantined", case.place
    written = [s for s, _ in spark_run.outcome.values()].count("written")
    assert spark_run.files == written  # what the oracle searched is every written file


@pytest.mark.parametrize("place", _params("spark"))
def test_spark_leaks_nothing(spark_run: RoadRun, place: str) -> None:
    case = BY_PLACE[place]
    assert leaks(case, spark_run.blob) == [], f"{place}: canaries in the output, records or logs"


def test_spark_releases_what_the_folder_run_releases(
    spark_run: RoadRun, folder_run: CliRun
) -> None:
    released = {n for n, (s, _) in spark_run.outcome.items() if s == "written"}
    expected = _released_by_folder(folder_run)
    place = {_file_name(i): c.place for i, c in enumerate(CASES)}
    assert sorted(place[n] for n in released - expected) == []  # released by Spark only
    assert sorted(place[n] for n in expected - released) == []  # released by the folder only


@pytest.mark.parametrize("option", ROAD_OPTIONS)
def test_spark_under_an_option_agrees_with_the_folder_run(
    spark_runs: dict[str, RoadRun], option_folder_runs: dict[str, CliRun], option: str
) -> None:
    _check_option_run(spark_runs[option], option_folder_runs[option], option, False)


@pytest.mark.parametrize(("option", "place"), _option_params())
def test_spark_under_an_option_leaks_nothing(
    spark_runs: dict[str, RoadRun], option: str, place: str
) -> None:
    got = leaks(BY_PLACE[place], spark_runs[option].blob)
    assert got == [], f"{place} under {option}: canaries in the output, records or logs"
