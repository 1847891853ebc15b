"""Entry point of the ``medveil`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from medveil import __version__

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
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="medveil",
        description="De-identify DICOM archives fast, and prove nothing leaked.",
    )
    parser.add_argument("--version", action="version", version=f"medveil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"medveil.cli.{name}").add_subparser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
