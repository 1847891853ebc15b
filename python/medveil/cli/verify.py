"""``medveil verify ORIGINALS OUTPUT``: report every identifying value that survived."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from medveil.cli.console import error
from medveil.verify import verify_archive

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``verify`` subcommand."""
    p = sub.add_parser(
        "verify",
        help="prove that no identifying value of the originals survived in the output",
        description=(
            "Learn identifying values from ORIGINALS and search every file of OUTPUT for "
            "them (elements at every depth, raw bytes in UTF-8/Latin-1/UTF-16, file names, "
            "hidden pixel bits; folders, .zip and .tar(.gz) archives). Exit 0 when clean; "
            "1 when anything was found, an output could not be read, no original could, or "
            "an original is structurally damaged (cannot verify); "
            "2 on usage error. Values are never printed: only a keyed hash, ASCII initial "
            "and length."
        ),
    )
    p.add_argument("originals", type=Path, help="original DICOM file, folder or archive")
    p.add_argument("output", type=Path, help="de-identified file, folder or archive to check")
    p.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    p.add_argument(
        "--strict",
        action="store_true",
        help="also count short values, common words, one-letter name components and values "
        "that repeat device codes (see medveil.verify.values)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report, not the table")
    p.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="ELEMENTS",
        help="comma-separated keywords or (gggg,eeee) the policy keeps on purpose (e.g. "
        "StationName,DeviceSerialNumber under Retain Device Identity): findings there are "
        "listed but not counted; repeatable",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "regex", "aho"),
        default="auto",
        help="matcher: Aho-Corasick (needs pyahocorasick) or one compiled regex",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the verification; returns 0 (clean), 1 (found) or 2 (usage error)."""
    for label, path in (("ORIGINALS", args.originals), ("OUTPUT", args.output)):
        if not path.exists():
            error(log, f"verify: {label} {path} does not exist")
            return 2
    # Split on commas, except those inside a (gggg,eeee) tag.
    allow = [x for arg in args.allow for x in re.findall(r"\([^)]*\)|[^,\s]+", arg)]
    try:
        report = verify_archive(
            args.originals, args.output, strict=args.strict, allow=allow, engine=args.engine
        )
    except (ImportError, ValueError) as exc:
        error(log, f"verify: {exc}")
        return 2
    if args.report is not None:
        args.report.write_text(report.to_json() + "\n", encoding="utf-8")
    print(report.to_json() if args.json else report.table())
    return report.exit_code
