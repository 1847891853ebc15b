"""The program's quick exit (``medveil.cli.main.exit_now``): what the interpreter's
teardown would have done that matters is still done, and a run's results are the same."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from medveil.cli.main import main
from medveil.policy.keys import create_secret
from pydicom.data import get_testdata_file

# Block-buffered standard streams, as a program's usually are on pipes.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter with stdout and stderr on pipes."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env=_ENV,
    )


def test_exit_now_keeps_the_code_exit_handlers_and_buffered_output(tmp_path: Path) -> None:
    done = _python(
        "import atexit, logging, sys\n"
        "from medveil.cli.main import exit_now\n"
        "log = logging.getLogger('t'); h = logging.FileHandler('log.txt'); log.addHandler(h)\n"
        "log.warning('logged')\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "print('buffered', end=' ')\n"
        "sys.stderr.write('err')\n"
        "exit_now(3)\n"
        "print('not reached')\n",
        tmp_path,
    )
    assert done.returncode == 3
    assert done.stdout == "buffered handler ran\n"
    assert done.stderr == "err"
    assert (tmp_path / "log.txt").read_text() == "logged\n"  # logging.shutdown flushed it


def test_exit_now_waits_for_a_running_thread(tmp_path: Path) -> None:
    # A non-daemon thread still at work: the ordinary exit, which lets it finish.
    done = _python(
        "import threading, time\n"
        "from medveil.cli.main import exit_now\n"
        "def work():\n"
        "    time.sleep(0.3)\n"
        "    open('done.txt', 'w').write('finished')\n"
        "threading.Thread(target=work).start()\n"
        "exit_now(4)\n",
        tmp_path,
    )
    assert done.returncode == 4, done.stderr
    assert (tmp_path / "done.txt").read_text() == "finished"


def test_exit_now_joins_a_finished_process_pool(tmp_path: Path) -> None:
    # concurrent.futures registers its shutdown with threading: run as at a normal exit.
    done = _python(
        "import concurrent.futures as cf, multiprocessing\n"
        "from medveil.cli.main import exit_now\n"
        "ctx = multiprocessing.get_context('fork')\n"
        "with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:\n"
        "    print(pool.submit(pow, 2, 10).result())\n"
        "exit_now(0)\n",
        tmp_path,
    )
    assert (done.returncode, done.stdout) == (0, "1024\n"), done.stderr


@pytest.mark.parametrize("ending", ["exit_now(0)", "sys.exit(0)"])
def test_exit_now_reports_an_unwritable_stdout_as_the_ordinary_exit(
    tmp_path: Path, ending: str
) -> None:
    # stdout closed by its reader before the buffered text is flushed: exit_now leaves
    # it to the ordinary exit, which reports it (code 120) as it would without exit_now.
    code = (
        "import sys\n"
        "from medveil.cli.main import exit_now\n"
        "sys.stdout.write('buffered')\n"
        "sys.stdin.readline()\n"
        f"{ending}\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=_ENV,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 120
    assert "BrokenPipeError" in err


def _tree(root: Path) -> dict[str, str]:
    """SHA-256 of every released file under root (the records folder left out)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".medveil" not in p.parts
    }


@pytest.mark.parametrize("dry_run", [False, True])
def test_program_run_matches_an_in_process_run(tmp_path: Path, capsys, dry_run: bool) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        (src / name).write_bytes(Path(str(get_testdata_file(name))).read_bytes())
    (src / "notes.txt").write_text("not DICOM")
    secret = tmp_path / "secret"
    create_secret(secret)
    extra = ["--workers", "1", "--quiet", "--secret-file", str(secret)]
    extra += ["--dry-run"] if dry_run else []
    rc = main(["deid", str(src), str(tmp_path / "a"), *extra])
    printed = capsys.readouterr().out
    env = {k: v for k, v in _ENV.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-m", "medveil", "deid", str(src), str(tmp_path / "b"), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == rc, done.stderr
    # The same lines (the timing words aside), flushed before the quick exit.
    assert [ln.split(";")[0] for ln in done.stdout.splitlines()] == [
        ln.split(";")[0].replace(str(tmp_path / "a"), str(tmp_path / "b"))
        for ln in printed.splitlines()
    ]
    assert "1 skipped" in done.stdout
    assert _tree(tmp_path / "b") == _tree(tmp_path / "a")
    records = tmp_path / "b" / ".medveil"
    if dry_run:
        assert json.loads((records / "dry-run.json").read_text())
    else:
        assert len(_tree(tmp_path / "b")) == 3
        summary = json.loads((records / "summary.json").read_text())
        assert summary["written"] == 3
        assert (records / "pixels.jsonl").exists()


# ---------------------------------------------------------------- start-up collection
def test_end_start_up_leaves_a_running_collector_alone(tmp_path: Path) -> None:
    done = _python(
        "import gc\n"
        "from medveil.cli.startup import end_start_up, pause_collection\n"
        "end_start_up()\n"
        "print(gc.isenabled(), gc.get_freeze_count())\n"
        "pause_collection()\n"
        "x = [[] for _ in range(1000)]\n"
        "end_start_up()\n"
        "print(gc.isenabled(), gc.get_freeze_count() >= 1000)\n",
        tmp_path,
    )
    assert done.stdout.splitlines() == ["True 0", "True True"], done.stderr


_PROBE = (
    "import gc, sys\n"
    "from medveil.cli import main\n"
    "from medveil.errors import MedveilError\n"
    "import medveil.run.archive as archive, medveil.cli.info as info\n"
    "def probe(*args, **kwargs):\n"
    "    print('collector', gc.isenabled(), gc.get_freeze_count() > 10000, flush=True)\n"
    "    raise MedveilError('probe')\n"
    "archive.deidentify_archive = probe\n"
    "info.run = lambda args: probe()\n"
    "sys.argv = ['medveil', *sys.argv[1:]]\n"
    "main.command()\n"
)


@pytest.mark.parametrize("command", ["deid", "info"])
def test_commands_run_with_the_collector_on_and_start_up_frozen(
    tmp_path: Path, command: str
) -> None:
    secret = tmp_path / "secret"
    create_secret(secret)
    (tmp_path / "in").mkdir()
    argv = ["deid", "in", "out", "--secret-file", str(secret)] if command == "deid" else ["info"]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=_ENV,
    )
    assert "collector True True" in done.stdout, (done.stdout, done.stderr)
    assert done.returncode == 2 and "probe" in done.stderr


def test_help_and_usage_errors_exit_as_before(tmp_path: Path) -> None:
    for argv, code in ((["--help"], 0), (["deid", "--workers", "x"], 2), (["--version"], 0)):
        done = subprocess.run(
            [sys.executable, "-m", "medveil", *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            env=_ENV,
        )
        assert done.returncode == code, (argv, done.stderr)
        assert (done.stdout if code == 0 else done.stderr).strip()


def test_version_loads_no_subcommand(tmp_path: Path) -> None:
    done = _python(
        "import sys\n"
        "from medveil.cli.main import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as stop:\n"
        "    print('exit', stop.code)\n"
        "base = ('medveil.cli.main', 'medveil.cli.console', 'medveil.cli.startup')\n"
        "print(sorted(m for m in sys.modules if m.startswith('medveil.cli.') and m not in base))\n",
        tmp_path,
    )
    from medveil import __version__

    assert done.stdout.splitlines() == [f"medveil {__version__}", "exit 0", "[]"], done.stderr
