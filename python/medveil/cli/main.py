"""Entry point of the ``medveil`` command."""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

# numpy's OpenBLAS starts a thread per core when numpy is imported (about 40 ms of CPU per
# run, and again in any process that imports it afresh), and medveil does no linear
# algebra: one thread, unless the user chose otherwise. Set before anything imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from medveil import __version__
from medveil.cli.console import error, setup_logging
from medveil.cli.startup import end_start_up, pause_collection
from medveil.errors import MedveilError

log = logging.getLogger(__name__)

# Subcommand modules under medveil.cli; each has add_subparser(subparsers).
SUBCOMMANDS: tuple[str, ...] = (
    "info",
    "deid",
    "profile",
    "verify",
    "stats",
    "qa",
    "seal",
    "unseal",
    "keygen",
    "secret",
    "serve",
    "reidentify",
    "vault",
    "spark_deid",
    "policy",
    "preview",
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors share the ``medveil: `` prefix of all errors."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and ``medveil: <subcommand>: message``, then exit 2."""
        self.print_usage(sys.stderr)
        command = self.prog.removeprefix("medveil").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"medveil: {where}{message} (see `{self.prog} --help`)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand registered (or just ``only``).

    ``only=""`` registers none: for ``--version``, which ends the parse on its own.
    """
    parser = Parser(
        prog="medveil",
        description="De-identify DICOM archives fast, and prove nothing leaked.",
    )
    parser.add_argument("--version", action="version", version=f"medveil {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        dest="log_verbose",
        action="count",
        default=0,
        help="also log debug messages",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        dest="log_quiet",
        action="store_true",
        help="only warnings and errors; no progress",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="console messages as text lines or as one JSON object per line",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # A command imports only its own module: the others pull in what it never uses (the
    # verifier, HTTP, crypto), which every run would pay for at start-up.
    names = () if only == "" else (only,) if only in SUBCOMMANDS else SUBCOMMANDS
    for name in names:
        importlib.import_module(f"medveil.cli.{name}").add_subparser(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line help as description."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, child in action.choices.items():
            text = helps.get(name)
            if not child.description and isinstance(text, str) and text:
                child.description = text[0].upper() + text[1:] + "."
            _describe(child)


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand module argv names (before parsing), or None: then all are loaded.

    Only the global options come before the command; ``--log-format`` (or a prefix of
    it, as argparse accepts) is the one that takes a separate value. ``--version`` before
    any command: "" (no subcommand is loaded; argparse prints the version and exits).
    """
    args = iter(argv)
    for arg in args:
        if arg == "--":
            arg = next(args, "")
        elif arg == "--version":
            return ""
        elif arg.startswith("-"):
            if len(arg) > 2 and "--log-format".startswith(arg):
                next(args, None)
            continue
        name = arg.replace("-", "_")
        return name if name in SUBCOMMANDS and name.replace("_", "-") == arg else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    return _main(argv)[0]


def command() -> NoReturn:
    """The ``medveil`` program: run the command line, then exit the process.

    A command that says its work is all done and closed (``args.exit_now``, set by
    ``deid`` once its records are written) ends without the interpreter's teardown.
    """
    pause_collection()
    try:
        code, args = _main(None)
    finally:
        end_start_up()  # if the command did not (parse errors, --help, early exits)
    if getattr(args, "exit_now", False) and code in (0, 1):
        exit_now(code)
    sys.exit(code)


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` without tearing the interpreter down.

    Freeing every module and object one by one costs a run about 50 ms of CPU for nothing
    it needs. What the teardown does that matters is done first, in its order: wait for
    threads (their exit hooks), run the exit handlers (logging's flush, multiprocessing's
    joins, temporary folders), flush the standard streams. A thread still running, or a
    stream that cannot be flushed, takes the ordinary exit instead.
    """
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    shutdown = getattr(threading, "_shutdown", None)  # what Py_Finalize calls first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)  # the ordinary exit reports it, as it would have
    os._exit(code)


def _main(argv: Sequence[str] | None) -> tuple[int, argparse.Namespace]:
    """main(), also returning the parsed arguments."""
    parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    return _run(parser, args), args


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the parsed command; returns the process exit code."""
    if not getattr(args, "ends_start_up", False):
        end_start_up()  # the command's imports are done; deid ends it after its build
    setup_logging(args.log_verbose, args.log_quiet, args.log_format)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        error(log, "interrupted")
        return 130
    except (MedveilError, OSError) as exc:
        # An expected failure (bad input, a folder that cannot be made): one line.
        error(log, str(exc))
        return 2
    except Exception as exc:
        where = crash_report(args, exc)
        error(
            log,
            f"unexpected error ({type(exc).__name__}); please report it with the "
            f"details in {where}",
        )
        return 2


def crash_report(args: argparse.Namespace, exc: BaseException) -> Path:
    """Write exc's traceback, without PHI, under OUTPUT/.medveil/ (else a temp folder).

    Only code locations and exception types are written: messages and local values may
    quote a file's contents (a name, an ID), so they are left out.
    """
    lines = [f"medveil {__version__} {getattr(args, 'command', '')}: unexpected error\n"]
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in reversed(chain):
        lines.append(f"{type(err).__module__}.{type(err).__qualname__}\n")
        for frame in traceback.extract_tb(err.__traceback__):
            lines.append(f"  {frame.filename}:{frame.lineno} in {frame.name}\n")
    name = f"crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    for folder in _report_folders(args):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text("".join(lines), encoding="utf-8")
            return path
        except OSError:
            continue
    return Path("(nowhere: no writable folder)")


def _report_folders(args: argparse.Namespace) -> list[Path]:
    """Where a crash report may go: the command's output records folder, then a temp one."""
    out: list[Path] = []
    for attr in ("output", "store", "spool"):
        value = getattr(args, attr, None)
        if isinstance(value, str) and value and Path(value).is_dir():
            out.append(Path(value) / ".medveil")
    out.append(Path(tempfile.gettempdir()))
    return out


if __name__ == "__main__":  # pragma: no cover
    command()
