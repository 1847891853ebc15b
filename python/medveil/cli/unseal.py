"""``medveil unseal IN OUT``: decrypt an age file or a folder tree of them.

Nothing is written for a file that fails to authenticate: each output is written under
a temporary name and renamed only after its final chunk verified.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medveil.cli.seal import PASSPHRASE_ENV, SUFFIX, add_arguments, read_passphrase, run_tree
from medveil.crypto import agefile as age
from medveil.errors import MedveilError


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``unseal`` subcommand."""
    p = sub.add_parser(
        "unseal",
        help="decrypt an age file or a folder tree of .age files",
        description=(
            "Decrypt IN (an age file, or a folder whose *.age files are mirrored into OUT "
            "without the suffix). A wrong key or a modified, truncated or reordered file "
            "is an error and leaves no output behind. The passphrase is read from "
            f"${PASSPHRASE_ENV} or asked for."
        ),
    )
    add_arguments(
        p,
        input_help="age file or folder",
        output_help="output file, or folder for a tree",
        key_flags=("-i", "--identity"),
        key_options={
            "type": Path,
            "action": "append",
            "metavar": "FILE",
            "help": "age identity file (AGE-SECRET-KEY-1...; repeatable)",
        },
        passphrase_help="decrypt with a passphrase",
    )
    p.set_defaults(func=run)


def identity_keys(args: argparse.Namespace) -> dict[str, object]:
    """age.decrypt_* keyword arguments from args.passphrase (asked once) or args.identity."""
    if args.passphrase:
        return {"passphrase": read_passphrase(confirm=False)}
    return {"identities": [i for f in args.identity for i in age.load_identities(f)]}


def run(args: argparse.Namespace) -> int:
    """Unseal IN to OUT; returns 0 on success, 1 on an authentication failure, 2 on usage."""
    return run_tree(
        args,
        "unseal",
        identity_keys,
        lambda name: name[: -len(SUFFIX)] if name.endswith(SUFFIX) else None,
        age.decrypt_file,
        (ValueError, OSError, MedveilError),
    )
