"""``medveil profile``: print the rule table in force for a policy (or its HIPAA view)."""

from __future__ import annotations

import argparse
import json
import logging

from medveil.cli.console import error
from medveil.errors import PolicyError
from medveil.policy.presets import load_policy
from medveil.policy.standard import ATTRIBUTION

log = logging.getLogger(__name__)


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``profile`` subcommand."""
    p = sub.add_parser("profile", help="show the de-identification rules in force for a policy")
    p.add_argument(
        "--policy",
        help="preset (basic, research, tcia, safe-harbor) or policy TOML file (default: research)",
    )
    p.add_argument(
        "--hipaa",
        action="store_true",
        help="show the 18 HIPAA Safe Harbor categories instead: handled, or OPEN with the "
        "reasons (a pseudonymised element never counts as handled)",
    )
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the compiled rules of the policy."""
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        error(log, str(exc))
        return 2
    compiled = policy.compile()
    if args.hipaa:
        from medveil.policy.hipaa import assess

        status = assess(compiled)
        if args.json:
            print(json.dumps([s.__dict__ for s in status], indent=2))
            return 0
        for s in status:
            state = "OPEN: " + "; ".join(s.open_because) if s.open_because else "handled"
            print(f"{s.category}\n    {state}")
            for r in s.rules:
                print(f"    - {r}")
            for note in s.notes:
                print(f"    note: {note}")
        return 0
    rows = [
        {
            "tag": r.selector,
            "keyword": r.keyword,
            "action": r.action,
            "decided_by": r.decided_by,
            "why": r.why,
        }
        for r in compiled.rules()
    ]
    private = compiled.private_rule
    unknown = (
        "keep (the standard's behaviour), under the safety net"
        if compiled.keep_unknown
        else "remove (allow-list mode)"
    )
    net = sum(1 for r in rows if r["decided_by"] == "safety-net")
    overlays = "kept whole, text cleaned" if compiled.keeps_overlays else "removed whole"
    if args.json:
        print(
            json.dumps(
                {
                    "policy": policy.source,
                    "options": [o.name.lower() for o in policy.options],
                    "unknown_elements": unknown,
                    "safety_net_rules": net,
                    "overlay_groups": overlays,
                    "rules": rows,
                },
                indent=2,
            )
        )
        return 0
    print(f"# policy: {policy.source}")
    print(
        f"# options: {', '.join(o.name.lower() for o in policy.options) or 'none (Basic Profile)'}"
    )
    print(f"# elements no rule names: {unknown}")
    if net:
        print(
            f"# safety net: {net} standard elements Table E.1-1 does not list get a rule by "
            "their VR (decided by 'safety-net'; the reason follows each)"
        )
    print(f"# overlay groups (60xx): {overlays}")
    print(
        f"# private elements: {private.action}"
        f"{' (safe private kept)' if compiled.retain_safe_private else ''}"
    )
    print(f"# source: {ATTRIBUTION}")
    print(f"{'tag':14} {'keyword':45} {'action':10} decided by")
    for row in rows:
        why = f": {row['why']}" if row["why"] else ""
        print(
            f"{row['tag']:14} {row['keyword'][:45]:45} {row['action']:10} {row['decided_by']}{why}"
        )
    return 0
