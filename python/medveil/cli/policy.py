"""``medveil policy``: import CTP scripts and deid recipes, show and validate policies."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medveil.cli.console import error
from medveil.errors import PolicyError
from medveil.policy.presets import PRESETS, filters_of, load_policy, policy_to_toml

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``policy`` subcommand group."""
    p = sub.add_parser(
        "policy",
        help="import CTP scripts or deid recipes; show or validate a policy",
        description="Convert other tools' de-identification rules into a medveil policy, "
        f"print a policy with every default filled in, or check one. Presets: "
        f"{', '.join(PRESETS)}.",
    )
    group = p.add_subparsers(dest="policy_command", metavar="ACTION")
    ctp = group.add_parser(
        "import-ctp",
        help="convert RSNA CTP DicomAnonymizer script(s) into a policy",
        description="Convert one CTP anonymizer script, or a base script and option scripts "
        "stacked in order, into a policy TOML; print every rule without an exact equivalent.",
    )
    ctp.add_argument("scripts", nargs="+", metavar="SCRIPT")
    ctp.add_argument("-o", "--output", help="write the policy here (default: standard output)")
    ctp.add_argument(
        "--follow",
        choices=("profile", "script"),
        help="for scripts that claim PS3.15 conformance: keep medveil's profile and list "
        "the script's differences (profile, the default), or turn them into overrides (script)",
    )
    ctp.set_defaults(func=run_import_ctp)
    deid = group.add_parser(
        "import-deid",
        help="convert a pydicom/deid recipe into a policy with a [filter] table",
        description="Convert a deid recipe (FORMAT dicom) into a policy TOML; print every "
        "rule without an exact equivalent. Filters are written but not yet applied.",
    )
    deid.add_argument("recipe", metavar="RECIPE")
    deid.add_argument("-o", "--output", help="write the policy here (default: standard output)")
    deid.set_defaults(func=run_import_deid)
    show = group.add_parser(
        "show",
        help="print a preset or policy file with every setting resolved",
        description="Print the policy as TOML with every default filled in.",
    )
    show.add_argument("policy", metavar="NAME|FILE")
    show.set_defaults(func=run_show)
    val = group.add_parser(
        "validate",
        help="check a policy file (exit 0 valid, 2 invalid with file:line)",
        description="Check a policy file; print 'FILE:LINE: problem' and exit 2 if invalid.",
    )
    val.add_argument("policy", metavar="FILE")
    val.set_defaults(func=run_validate)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, "utf-8")
    else:
        sys.stdout.write(text)


def _report(report: str, output: str | None, source: str) -> None:
    # With the policy on stdout the notes go to stderr, so a pipe gets only TOML.
    stream = sys.stdout if output else sys.stderr
    print(f"medveil: converted {source}" + (f" -> {output}" if output else ""), file=stream)
    print(report, file=stream)


def run_import_ctp(args: argparse.Namespace) -> int:
    """Convert CTP scripts; exit 0 on success, 2 on an unreadable script."""
    from medveil.policy.importers.ctp import import_ctp

    try:
        draft = import_ctp(args.scripts, follow=args.follow)
    except PolicyError as exc:
        error(log, str(exc))
        return 2
    _write(draft.to_toml(), args.output)
    _report(draft.report(), args.output, draft.source)
    return 0


def run_import_deid(args: argparse.Namespace) -> int:
    """Convert a deid recipe; exit 0 on success, 2 on an unreadable recipe."""
    from medveil.policy.importers.deid import import_deid

    try:
        draft = import_deid(args.recipe)
    except PolicyError as exc:
        error(log, str(exc))
        return 2
    _write(draft.to_toml(), args.output)
    _report(draft.report(), args.output, draft.source)
    if draft.filters:
        stream = sys.stdout if args.output else sys.stderr
        print(
            "medveil: [filter] is written into the policy: its include/exclude rules decide "
            "which instances are processed (graylist boxes are not masked)",
            file=stream,
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print the resolved policy; exit 2 if it does not load."""
    try:
        policy = load_policy(args.policy)
        filters = filters_of(args.policy)
    except (PolicyError, OSError) as exc:
        error(log, str(exc))
        return 2
    sys.stdout.write(policy_to_toml(policy, filters))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Validate a policy; exit 0 valid, 2 invalid."""
    try:
        load_policy(args.policy)
    except PolicyError as exc:
        error(log, str(exc))
        return 2
    print(f"{args.policy}: valid")
    return 0
