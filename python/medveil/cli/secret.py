"""``medveil secret FILE``: create a project secret for keyed pseudonyms, UIDs and dates."""

from __future__ import annotations

import argparse
import sys

from medveil.pseudonyms import create_secret


def add_subparser(sub: argparse._SubParsersAction) -> None:
    """Register the ``secret`` subcommand."""
    p = sub.add_parser("secret", help="create a 32-byte project secret file (mode 0600)")
    p.add_argument("file", help="where to create it (an existing file is never overwritten)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Create the secret file; never prints the secret."""
    try:
        create_secret(args.file)
    except FileExistsError:
        print(f"medveil: {args.file} exists; it is kept as it is", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"medveil: cannot create {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    print(
        f"created {args.file}: keep it safe, and use the same secret for every run "
        "whose pseudonyms must match"
    )
    return 0
