"""``medveil unseal IN OUT``: decrypt an age file or a folder tree of them.

Nothing is written for a file that fails to authenticate: each output is written under
a temporary name and renamed only after its final chunk verified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medveil import age
from medveil.cli.seal import PASSPHRASE_ENV, SUFFIX, plan, read_passphrase, run_jobs


def add_subparser(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("input", type=Path, metavar="IN", help="age file or folder")
    p.add_argument("output", type=Path, metavar="OUT", help="output file, or folder for a tree")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "-i",
        "--identity",
        type=Path,
        action="append",
        metavar="FILE",
        help="age identity file (AGE-SECRET-KEY-1...; repeatable)",
    )
    who.add_argument("-p", "--passphrase", action="store_true", help="decrypt with a passphrase")
    p.add_argument("--threads", type=int, default=0, help="worker threads (0: all cores)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Unseal IN to OUT; returns 0 on success, 1 on an authentication failure, 2 on usage."""
    if not args.input.exists():
        print(f"medveil unseal: {args.input} does not exist", file=sys.stderr)
        return 2
    try:
        if args.passphrase:
            keys: dict[str, object] = {"passphrase": read_passphrase(confirm=False)}
        else:
            keys = {"identities": [i for f in args.identity for i in age.load_identities(f)]}
        jobs = list(
            plan(
                args.input,
                args.output,
                lambda name: name[: -len(SUFFIX)] if name.endswith(SUFFIX) else None,
            )
        )
        return run_jobs(
            jobs,
            lambda s, d, progress: age.decrypt_file(
                s, d, threads=args.threads, progress=progress, **keys
            ),
            args.force,
            "unseal",
        )
    except (ValueError, OSError) as exc:
        print(f"medveil unseal: {exc}", file=sys.stderr)
        return 2
