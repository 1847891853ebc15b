"""``medveil reidentify --vault URL --key-file K PSEUDONYM|UID``: look up an original identity.

Every lookup, found or not and with a wrong key too, is appended to the vault's audit
table (OS user, host, UTC time, the query and the outcome; never the answer) in the same
transaction that reads the answer.
"""

from __future__ import annotations

import argparse
import json
import logging

from medveil.cli.console import error, warning
from medveil.errors import AuthenticationError, MedveilError

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``reidentify`` subcommand."""
    p = sub.add_parser(
        "reidentify",
        help="print the original identity behind a pseudonym or new UID (audited)",
        description=(
            "Look up a patient pseudonym (the folder name of a de-identified archive), a "
            "new StudyInstanceUID or a new SeriesInstanceUID in the re-identification vault "
            "written by `medveil deid --vault` and print the original values. Every lookup "
            "is recorded in the vault's audit table. Exit 0 when every query was found, 1 "
            "when one was not, 2 on an error (wrong key, modified vault, bad URL)."
        ),
    )
    p.add_argument("query", nargs="+", metavar="PSEUDONYM|UID", help="what to look up")
    p.add_argument(
        "--vault",
        required=True,
        metavar="URL",
        help="sqlite:///path, a file path, or postgresql://",
    )
    p.add_argument("--key-file", required=True, metavar="K", help="the vault key file")
    p.add_argument("--json", action="store_true", help="print one JSON object per query")
    p.set_defaults(func=run)


def _key_of(query: str) -> str:
    """A pseudonym or UID; a path into the released archive (OUT/<pseudonym>/) gives its
    last component, so a folder can be pasted as it is."""
    return query.strip().rstrip("/").rsplit("/", 1)[-1]


def run(args: argparse.Namespace) -> int:
    """Look up every query; prints nothing at all unless the key opens the vault."""
    from medveil.crypto.vault import Vault

    try:
        # check_key=False: a wrong key is refused inside lookup(), which audits the attempt.
        with Vault.open(args.vault, args.key_file, create=False, check_key=False) as vault:
            # Answers are collected first and printed only if every lookup succeeded, so a
            # modified row met in the middle leaves no partial answer on screen.
            answers = [(q, vault.lookup(_key_of(q))) for q in args.query]
    except AuthenticationError as exc:
        error(log, f"reidentify: {exc}")
        return 2
    except MedveilError as exc:
        error(log, f"reidentify: {exc}")
        return 2
    missing = 0
    for query, found in answers:
        if found is None:
            missing += 1
            warning(log, f"reidentify: {query}: not in the vault")
        elif args.json:
            print(json.dumps(found.to_json(), ensure_ascii=False))
        else:
            print("\n".join(found.lines()))
    return 1 if missing else 0
