"""``medveil secret FILE``: create a project secret for keyed pseudonyms, UIDs and dates."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

from medveil.cli.console import error, info
from medveil.policy.keys import create_secret

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``secret`` subcommand."""
    p = sub.add_parser("secret", help="create a 32-byte project secret file (mode 0600)")
    p.add_argument("file", help="where to create it (an existing file is never overwritten)")
    p.set_defaults(func=run)


def create_key_file_reporting(
    create: Callable[[str | os.PathLike[str]], object],
    path: str | os.PathLike[str],
    *,
    exists: str,
    failed: str,
    done: str,
    done_to_stderr: bool,
) -> int:
    """Run create(path) and report it; 2 if path exists or the OS refuses, else 0.

    The messages are templates with {path} (and {error}, the OS's reason, in failed).
    """
    try:
        create(path)
    except FileExistsError:
        error(log, exists.format(path=path))
        return 2
    except OSError as exc:
        error(log, failed.format(path=path, error=exc.strerror))
        return 2
    if done_to_stderr:
        info(log, done.format(path=path))
    else:
        print(done.format(path=path))
    return 0


def run(args: argparse.Namespace) -> int:
    """Create the secret file; never prints the secret."""
    return create_key_file_reporting(
        create_secret,
        args.file,
        exists="{path} exists; it is kept as it is",
        failed="cannot create {path}: {error}",
        done=(
            "created {path}: keep it safe, and use the same secret for every run "
            "whose pseudonyms must match"
        ),
        done_to_stderr=False,
    )
