"""``medveil qa``: the reviewer's page of a run's released images, and its sign-off."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from medveil.cli.console import error, warning
from medveil.errors import MedveilError

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``qa`` subcommand."""
    p = sub.add_parser(
        "qa",
        help="review a run's released images (every frame, per device) and sign them off",
        description="Write OUTPUT/.medveil/qa/index.html from the released, de-identified "
        "files of a run: sections per device, a filmstrip of every frame of each image (a "
        "click shows the frame at full resolution), the rectangles the pixel rules blanked "
        "outlined in red. The reviewer approves or rejects each image and signs off: the "
        "page downloads qa-signoff.json, which --signoff FILE checks and installs as "
        "OUTPUT/qa-signoff.json; with --serve the page is served on 127.0.0.1 behind a "
        "per-session token and saves the sign-off itself. `medveil deid --resume` then "
        "quarantines the rejected files. A folder that is not a run's OUTPUT is refused.",
    )
    p.add_argument("output", type=Path, help="the OUTPUT folder of a run")
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
    p.add_argument("--size", type=int, default=160, help="filmstrip thumbnail size in pixels")
    p.add_argument(
        "--include-quarantined",
        type=Path,
        metavar="INPUT",
        help="also show inputs quarantined for pixel reasons, read from INPUT: THIS SHOWS PHI",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--signoff",
        type=Path,
        metavar="FILE",
        help="check a qa-signoff.json downloaded from the page and install it in OUTPUT",
    )
    mode.add_argument(
        "--serve",
        action="store_true",
        help="build the page, then serve it on 127.0.0.1 (token in the URL) until Ctrl-C; "
        "its 'save sign-off' button writes OUTPUT/qa-signoff.json",
    )
    p.add_argument("--port", type=int, default=0, help="port for --serve (default: any free)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build (and serve) the QA page, or install a sign-off; print where things are."""
    from medveil.pixels.qa import (
        NotRunOutputError,
        SignoffError,
        check_run_output,
        import_signoff,
        make_server,
        write_report,
    )
    from medveil.pixels.rules import RuleSet

    try:
        check_run_output(args.output)
    except NotRunOutputError as exc:
        error(log, f"qa: {exc}")
        return 2
    if args.signoff is not None:
        try:
            signoff = import_signoff(args.output, args.signoff)
        except SignoffError as exc:
            error(log, f"qa: {exc}")
            return 2
        print(
            f"{args.output / 'qa-signoff.json'}: signed off by {signoff.reviewer} at "
            f"{signoff.time}: {len(signoff.approved)} approved, {len(signoff.rejected)} "
            "rejected (`medveil deid INPUT OUTPUT --resume` quarantines the rejected)"
        )
        return 0
    if args.sample is not None and args.sample < 1:
        error(log, "qa: --sample must be at least 1")
        return 2
    if not 0 <= args.port <= 65535:
        error(log, "qa: --port must be 0-65535")
        return 2
    rules = RuleSet.default()
    for extra in args.rules:
        rules = rules + RuleSet.load(extra)
    try:
        index = write_report(
            args.output,
            out_dir=args.out,
            sample=args.sample,
            seed=args.seed,
            rules=rules,
            include_quarantined=args.include_quarantined,
            size=args.size,
        )
    except MedveilError as exc:
        error(log, f"qa: {exc}")
        return 2
    if args.include_quarantined is not None:
        warning(log, "the page shows quarantined input images; they may contain PHI")
    if not args.serve:
        print(index)
        return 0
    try:
        server, url = make_server(args.output, index.parent, port=args.port)
    except OSError as exc:
        error(log, f"qa: cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc})")
        return 2
    # The URL holds the session's token: printed to the console only, never logged.
    print(f"QA page: {url}\n(serving on 127.0.0.1 until Ctrl-C)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
