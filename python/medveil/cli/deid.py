"""``medveil deid INPUT OUTPUT``: de-identify a whole archive (or the bundled demo)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from medveil.errors import MedveilError, PolicyError
from medveil.policy import Policy
from medveil.pseudonyms import create_secret, default_secret_path, load_secret


def add_subparser(sub: argparse._SubParsersAction) -> None:
    """Register the ``deid`` subcommand."""
    p = sub.add_parser(
        "deid", help="de-identify a folder, .zip or .tar(.gz) archive of DICOM files"
    )
    p.add_argument("input", nargs="?", help="folder tree, .zip or .tar(.gz) archive")
    p.add_argument(
        "output", nargs="?", help="output folder (created; must be empty unless --resume)"
    )
    p.add_argument(
        "--demo", metavar="OUT", help="run on a bundled synthetic archive, writing to OUT"
    )
    p.add_argument("--policy", help="policy TOML file (default: the built-in policy)")
    p.add_argument("--secret-file", help="32-byte project secret (default: created once per user)")
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all cores)"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into OUTPUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    p.set_defaults(func=run)


def _secret(args: argparse.Namespace, policy: Policy) -> bytes:
    path = args.secret_file or policy.secret_file
    if path:
        return load_secret(path)
    default = default_secret_path()
    if default.exists():
        return load_secret(default)
    secret = create_secret(default)
    print(
        f"medveil: created a new project secret at {default} (mode 0600); keep it safe and "
        "reuse it so that pseudonyms stay the same across runs",
        file=sys.stderr,
    )
    return secret


def run(args: argparse.Namespace) -> int:
    """Run the archive conversion and print a summary; exit 0 clean, 1 quarantined, 2 error."""
    from medveil.archive import deidentify_archive

    try:
        policy = Policy.load(args.policy) if args.policy else Policy.default()
        if args.demo:
            from medveil.demo import demo_rule_file, write_demo_archive

            source = Path(tempfile.mkdtemp(prefix="medveil-demo-"))
            write_demo_archive(source)
            policy = dataclasses.replace(
                policy,
                pixel_rule_files=(*policy.pixel_rule_files, str(demo_rule_file())),
                _compiled=None,
            )
            args.input, args.output = str(source), args.demo
            print(f"medveil: demo archive with fake PHI written to {source}", file=sys.stderr)
        if not args.input or not args.output:
            print("medveil deid: give INPUT and OUTPUT, or --demo OUT", file=sys.stderr)
            return 2
        secret = _secret(args, policy)
    except (PolicyError, MedveilError) as exc:
        print(f"medveil: {exc}", file=sys.stderr)
        return 2

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="file", dynamic_ncols=True, file=sys.stderr)

    def progress(summary) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(
                f"{summary.mb_per_second:.1f} MB/s, {summary.quarantined} quarantined"
            )

    def quarantined(name: str, reason: str) -> None:
        msg = f"quarantined: {name}: {reason}"
        if bar is not None:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    try:
        summary = deidentify_archive(
            args.input,
            args.output,
            policy=policy,
            secret=secret,
            workers=args.workers,
            resume=args.resume,
            progress=progress,
            on_quarantine=quarantined,
        )
    except MedveilError as exc:
        print(f"medveil: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    state = "interrupted" if summary.interrupted else "done"
    print(
        f"medveil deid {state}: {summary.files_in} files in, {summary.written} written, "
        f"{summary.skipped} skipped (not DICOM), {summary.quarantined} quarantined"
        f"{f', {summary.resumed} already done' if summary.resumed else ''}; "
        f"{summary.seconds:.1f} s, {summary.files_per_second:.0f} files/s, "
        f"{summary.mb_per_second:.1f} MB/s. Records: {Path(args.output) / '.medveil'}"
    )
    return summary.exit_code
