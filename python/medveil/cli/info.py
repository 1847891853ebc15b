"""``medveil info``: version and the SIMD backend in use."""

from __future__ import annotations

import argparse
import json

from medveil import __version__
from medveil.backend import cpu_features


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``info`` subcommand."""
    p = sub.add_parser("info", help="show the version and the active SIMD backend")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the version and backend information."""
    info = {"version": __version__, **cpu_features()}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"medveil {info['version']}")
        print(f"backend: {info['backend']} (available: {', '.join(info['available'])})")
        flags = [k for k, v in info["cpu"].items() if v]
        print(f"cpu: {' '.join(flags) or 'no SIMD flags reported'}")
    return 0
