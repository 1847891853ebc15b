"""Console of the ``medveil`` command: log levels and formats, progress, help texts."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest
from medveil.cli import console
from medveil.cli.main import build_parser, main
from medveil.policy.keys import create_secret


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "secret"
    create_secret(path)
    return str(path)


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    console.setup_logging()


def _demo(tmp_path: Path, secret_file: str, *opts: str) -> int:
    return main([*opts, "deid", "--demo", str(tmp_path / "out"), "--secret-file", secret_file])


def test_json_log_lines_parse(tmp_path, secret_file, capsys):
    assert _demo(tmp_path, secret_file, "--log-format", "json") == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert lines
    entries = [json.loads(x) for x in lines]
    for entry in entries:
        assert entry["level"] in {"debug", "info", "warning", "error"}
        assert isinstance(entry["message"], str)
        assert entry["logger"].startswith("medveil")
    assert any("demo archive" in e["message"] and e["level"] == "info" for e in entries)


def test_json_errors_are_json_too(capsys):
    assert main(["--log-format", "json", "deid"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error"
    assert "give INPUT and OUTPUT" in entry["message"]


def test_quiet_silences_info_but_not_errors(tmp_path, secret_file, capsys):
    assert _demo(tmp_path, secret_file, "-q") == 0
    out, err = capsys.readouterr()
    assert "demo archive" not in err
    assert err == ""
    assert "medveil deid done" in out  # the result itself is still printed
    assert main(["-q", "deid"]) == 2
    assert capsys.readouterr().err.startswith("medveil: give INPUT and OUTPUT")


def test_default_shows_info(tmp_path, secret_file, capsys):
    assert _demo(tmp_path, secret_file) == 0
    assert "medveil: demo archive with fake PHI written to" in capsys.readouterr().err


def test_verbose_adds_debug_lines(tmp_path, secret_file, capsys):
    assert _demo(tmp_path, secret_file, "-v") == 0
    err = capsys.readouterr().err
    assert "medveil: policy research, workers all cores, resume False, vault off" in err
    assert _demo(tmp_path / "again", secret_file) == 0
    assert "workers all cores" not in capsys.readouterr().err


def test_non_tty_run_prints_no_bar(tmp_path, secret_file, capsys):
    assert _demo(tmp_path, secret_file) == 0
    err = capsys.readouterr().err
    assert "file/s" not in err and "0file" not in err and "\r" not in err
    assert "%|" not in err


def test_failed_inputs_print_no_bar(tmp_path, capsys):
    """A run refused on its inputs prints the error alone, no empty bar first."""
    rc = main(["deid", str(tmp_path / "missing"), str(tmp_path / "out"), "--policy", "nope"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "0file" not in err and "file/s" not in err
    assert err.startswith("medveil: ")


def test_progress_off_a_terminal_logs_a_line_per_interval(capsys):
    log = logging.getLogger("medveil.test")
    console.setup_logging()
    every = console.Progress(log, interval=0.0, tty=False)
    every.update(3, 10, "0 quarantined")
    never = console.Progress(log, interval=3600.0, tty=False)
    never.update(5, None)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("medveil: 3 of 10 files done, 0 quarantined; ")
    assert "ETA" in err[0]


def test_progress_unknown_total_has_no_eta():
    log = logging.getLogger("medveil.test")
    line = console.Progress(log, tty=False).line(4, None, "", 2.0)
    assert line == "4 files done; 2 s"
    assert console.Progress(log, tty=False).line(4, 8, "", 2.0) == "4 of 8 files done; 2 s, ETA 2 s"


def test_terminal_bar_drawn_only_after_first_file_with_eta(capsys):
    console.setup_logging()
    bar = console.Progress(logging.getLogger("medveil.test"), tty=True)
    assert capsys.readouterr().err == ""  # nothing before any file is done
    bar.update(1, 4, "0 quarantined")
    # While the bar is drawn, log lines go above it through tqdm.write, not into it.
    console.warning(logging.getLogger("medveil.test"), "quarantined: a.dcm: why", bare=True)
    bar.update(2, 4)
    bar.close()
    err = capsys.readouterr().err
    assert "quarantined: a.dcm: why\n" in err
    assert "2/4" in err and "<" in err  # tqdm's ETA field: elapsed<remaining
    assert console._active_bar is None


def test_quiet_disables_progress(capsys):
    console.setup_logging(quiet=True)
    bar = console.Progress(logging.getLogger("medveil.test"), interval=0.0, tty=False)
    bar.update(1, 2)
    assert capsys.readouterr().err == ""


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{prefix}{name}", child
                yield from _subparsers(child, f"{prefix}{name} ")


def test_every_subcommand_help_has_a_description():
    found = list(_subparsers(build_parser()))
    assert {"deid", "verify", "vault keygen", "policy show"} <= {n for n, _ in found}
    for name, parser in found:
        assert parser.description, name
        shown = " ".join(parser.format_help().split())
        assert " ".join(parser.description.split()) in shown, name


def test_global_options_in_top_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--log-format" in out and "-v" in out and "-q" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "/nonexistent/medveil-in", "/nonexistent/medveil-out"],
        ["qa", "/nonexistent/medveil-out"],
        ["profile", "--policy", "/nonexistent/policy.toml"],
        ["unseal", "/nonexistent/medveil.age", "/nonexistent/out", "-i", "/nonexistent/key"],
    ],
)
def test_errors_share_one_prefix(argv, capsys):
    """Every subcommand's error lines start with 'medveil: ', whatever the subcommand."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("medveil: ") for line in err), err


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_hostile_input_names_stay_on_one_line(tmp_path, secret_file, capsys, log_format):
    """A file name with a newline, a terminal escape or undecodable bytes is shown escaped."""
    src = tmp_path / "in"
    src.mkdir()
    hostile = "a\nquarantined: forged.dcm: all clean\x1b[2J\r\x85"
    name = hostile.encode() + b"\xff.dcm"
    (src / name.decode("utf-8", "surrogateescape")).write_bytes(b"\0" * 128 + b"DICM")
    opts = ["--secret-file", secret_file, "--workers", "1"]
    code = main(["--log-format", log_format, "deid", str(src), str(tmp_path / "out"), *opts])
    assert code == 1  # the file is quarantined
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "forged" in x]
    assert len(lines) == 1, err
    assert "\x1b" not in err and "\r" not in err and "\x85" not in err
    if log_format == "json":
        message = json.loads(lines[0])["message"]
        assert message.startswith("quarantined: a\nquarantined: forged.dcm")
    else:
        assert lines[0].startswith("quarantined: a\\nquarantined: forged.dcm: all clean\\x1b")
        assert "\\udcff.dcm: structurally damaged" in lines[0]


def test_one_line_leaves_printable_text_alone():
    """Ordinary names, accents and tabs are printed as they are."""
    assert console.one_line("Müller\tCT 1.dcm") == "Müller\tCT 1.dcm"
    assert console.one_line("x\ny") == "x\\ny"
