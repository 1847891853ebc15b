"""``medveil profile``: print the rule table in force for a policy (or its HIPAA view)."""

from __future__ import annotations

import argparse
import json

from medveil.errors import PolicyError
from medveil.policy.schema import Policy
from medveil.policy.standard import ATTRIBUTION


def add_subparser(sub: argparse._SubParsersAction) -> None:
    """Register the ``profile`` subcommand."""
    p = sub.add_parser("profile", help="show the de-identification rules in force for a policy")
    p.add_argument("--policy", help="policy TOML file (default: the built-in policy)")
    p.add_argument("--hipaa", action="store_true", help="show HIPAA Safe Harbor categories instead")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the compiled rules of the policy."""
    try:
        policy = Policy.load(args.policy) if args.policy else Policy.default()
    except PolicyError as exc:
        print(f"medveil: {exc}")
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
        return 0
    rows = [
        {"tag": r.selector, "keyword": r.keyword, "action": r.action, "decided_by": r.decided_by}
        for r in compiled.rules()
    ]
    private = getattr(compiled, "private_rule", None)
    unknown = (
        "keep (the standard's behaviour)" if compiled.keep_unknown else "remove (allow-list mode)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "policy": policy.source,
                    "options": [o.name.lower() for o in policy.options],
                    "unknown_elements": unknown,
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
    print(
        f"# private elements: {private.action if private else 'X'}"
        f"{' (safe private kept)' if compiled.retain_safe_private else ''}"
    )
    print(f"# source: {ATTRIBUTION}")
    print(f"{'tag':14} {'keyword':45} {'action':10} decided by")
    for r in rows:
        print(f"{r['tag']:14} {r['keyword'][:45]:45} {r['action']:10} {r['decided_by']}")
    return 0
