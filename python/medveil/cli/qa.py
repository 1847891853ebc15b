"""``medveil qa``: contact sheets of de-identified images for a reviewer, grouped by device."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medveil.cli.console import error

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``qa`` subcommand."""
    p = sub.add_parser(
        "qa",
        help="write an HTML page of thumbnails (masked rectangles outlined) to review pixels",
        description="Write OUTPUT/.medveil/qa/index.html: windowed thumbnails of the "
        "de-identified images of an archive run, grouped by device, with the rectangles the "
        "pixel rules blanked outlined in red and the rules that fired.",
    )
    p.add_argument("output", type=Path, help="the OUTPUT folder of an archive run")
    p.add_argument("--sample", type=int, metavar="N", help="show N images spread over devices")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--out", type=Path, help="folder for the page (default OUTPUT/.medveil/qa)")
    p.add_argument(
        "--rules",
        type=Path,
        action="append",
        default=[],
        help="extra pixel rule file (TOML) used by the run; may repeat",
    )
    p.add_argument("--size", type=int, default=256, help="thumbnail size in pixels")
    p.add_argument(
        "--include-quarantined",
        type=Path,
        metavar="INPUT",
        help="also show inputs quarantined for pixel reasons, read from INPUT: THIS SHOWS PHI",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the QA page and print where it is."""
    from medveil.pixels.qa import write_report
    from medveil.pixels.rules import RuleSet

    if not args.output.is_dir():
        error(log, f"qa: {args.output} is not a folder")
        return 2
    if args.sample is not None and args.sample < 1:
        error(log, "qa: --sample must be at least 1")
        return 2
    rules = RuleSet.default()
    for extra in args.rules:
        rules = rules + RuleSet.load(extra)
    index = write_report(
        args.output,
        out_dir=args.out,
        sample=args.sample,
        seed=args.seed,
        rules=rules,
        include_quarantined=args.include_quarantined,
        size=args.size,
    )
    if args.include_quarantined is not None:
        print("warning: the page shows quarantined input images; they may contain PHI")
    print(index)
    return 0
