"""``medveil keygen FILE``: create an age X25519 identity file (mode 0600)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medveil.cli.console import error
from medveil.crypto import agefile as age

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``keygen`` subcommand."""
    p = sub.add_parser(
        "keygen",
        help="create an age identity file and print its public key",
        description=(
            "Write a new age X25519 identity (AGE-SECRET-KEY-1...) to FILE with mode 0600 "
            "(folders created on the way get 0700), refusing to overwrite, and print the "
            "age1... public key to give to `medveil seal --recipient` or `age -r`. Keep "
            "FILE secret and backed up: without it the sealed files cannot be opened."
        ),
    )
    p.add_argument("file", type=Path, metavar="FILE", help="identity file to create")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Create the identity file; prints the public key, returns 2 if FILE exists."""
    try:
        recipient = age.keygen(args.file)
    except FileExistsError:
        error(log, f"keygen: {args.file} exists; not overwriting a key")
        return 2
    except OSError as exc:
        error(log, f"keygen: cannot create {args.file}: {exc.strerror}")
        return 2
    print(recipient)
    return 0
