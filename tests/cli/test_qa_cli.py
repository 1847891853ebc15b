"""``medveil qa`` on the command line: refusals, --signoff, --serve as a real process."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from medveil.cli import console
from medveil.cli.main import main
from medveil.pixels.qa import SIGNOFF, read_signoff, released_paths

from tests.pixels.test_qa_signoff import make_run

pytest.importorskip("PIL")


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    console.setup_logging()


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run (three released images, one with five frames)."""
    return make_run(tmp_path_factory.mktemp("qa-cli"))


@pytest.fixture
def out(run_out: Path, tmp_path: Path) -> Path:
    """A private copy of the run's output."""
    dest = tmp_path / "out"
    shutil.copytree(run_out, dest)
    return dest


def test_input_folder_is_refused(run_out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run's INPUT holds identified DICOM files: no page of them is ever written."""
    src = run_out.parent / "in"
    assert main(["qa", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medveil: qa: ") and "not the output of a medveil run" in err
    assert not (src / ".medveil").exists()


def test_signoff_errors_exit_2_and_name_the_file(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.json"
    assert main(["qa", str(out), "--signoff", str(missing)]) == 2
    assert "nowhere.json: cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"reviewer": "R"')
    assert main(["qa", str(out), "--signoff", str(bad)]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err
    assert not (out / SIGNOFF).exists()
    with pytest.raises(SystemExit) as e:  # one mode at a time
        main(["qa", str(out), "--signoff", str(bad), "--serve"])
    assert e.value.code == 2


def test_signoff_installs(out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = released_paths(out)
    doc = {"reviewer": "R", "time": "2026-12-06T20:31:00Z", "approved": [a, b], "rejected": [c]}
    (tmp_path / "s.json").write_text(json.dumps(doc))
    assert main(["qa", str(out), "--signoff", str(tmp_path / "s.json")]) == 0
    assert "2 approved, 1 rejected" in capsys.readouterr().out
    got = read_signoff(out)
    assert got is not None and got.rejected == {c}


def test_serve_runs_until_interrupted(out: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "medveil", "qa", str(out), "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("QA page: http://127.0.0.1:"), line
        url = line.split()[-1]
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"medveil QA" in r.read()
            assert r.headers["Referrer-Policy"] == "no-referrer"
        for wrong in (url.replace("/index.html", "x/index.html"), url + "/../../catalog.sqlite"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(wrong, timeout=10)
            assert e.value.code == 404
        # A page fetched through another host name (DNS rebinding) is refused.
        req = urllib.request.Request(url, headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 404
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
