"""Fixtures: vault URLs for each backend, with a throw-away PostgreSQL server.

The PostgreSQL server is found or started once per session: ``MEDVEIL_TEST_PG_URL`` if
set, otherwise a fresh cluster (initdb from /usr/lib/postgresql/*/bin, Debian package
``postgresql``) in a temporary folder, listening only on a Unix socket there. initdb
refuses to run as root, so as root the cluster is run by the ``postgres`` user (or
``nobody``) through runuser. Every test gets a database of its own.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from medveil.crypto.vault import keygen, load_key

PG_ENV = "MEDVEIL_TEST_PG_URL"
_counter = itertools.count()


def _pg_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _run_as(user: str | None, cmd: list[str], **kw: object) -> subprocess.CompletedProcess:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, **kw)


def _start_server() -> tuple[str | None, str, object]:
    """Start a cluster; returns (url or None, reason when None, stop callable)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg 3 is not installed (pip install 'medveil[vault-pg]')", None
    bindir = _pg_bin()
    if bindir is None:
        return None, "no PostgreSQL server binaries (apt-get install postgresql)", None
    user: str | None = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            user = name
            break
        if user is None or shutil.which("runuser") is None:
            return None, "running as root without a postgres/nobody user and runuser", None
    base = Path(tempfile.mkdtemp(prefix="medveil-pg-"))
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"

    def cleanup() -> None:
        shutil.rmtree(base, ignore_errors=True)

    init = _run_as(
        user,
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "medveil",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
    )
    if init.returncode != 0:
        cleanup()
        return None, f"initdb failed: {init.stderr.strip()[-300:]}", None
    opts = f"-k {base} -c listen_addresses='' -c fsync=off -c max_connections=40"
    start = _run_as(
        user,
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(base / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
    )
    if start.returncode != 0:
        log = (base / "log").read_text(errors="replace")[-300:] if (base / "log").exists() else ""
        cleanup()
        return None, f"pg_ctl start failed: {start.stderr.strip()[-200:]} {log}", None

    def stop() -> None:
        _run_as(user, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        cleanup()

    return f"postgresql://medveil@/postgres?host={base}", "", stop


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database; skips, saying why, without one."""
    url = os.environ.get(PG_ENV)
    if url:
        yield url
        return
    url, reason, stop = _start_server()
    if url is None:
        pytest.skip(f"PostgreSQL not available: {reason}")
    try:
        yield url
    finally:
        stop()  # type: ignore[operator]


def _with_db(url: str, name: str) -> str:
    """The server URL pointed at database name."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts._replace(path="/" + name).geturl()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server (dropped afterwards)."""
    import psycopg

    name = f"medveil_vault_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_db(pg_server, name)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def vault_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty vault on each backend."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'vault.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A new vault key file."""
    path = tmp_path / "vault.key"
    keygen(path)
    return path


@pytest.fixture
def key(key_file: Path) -> bytes:
    """The vault key in key_file."""
    return load_key(key_file)
