"""``medveil stats``: a differentially private histogram (and bounded means) of a cohort.

Reads the cohort catalog ``OUTPUT/.medveil/catalog.sqlite`` written by the archive engine,
reduces it to privacy units (patients; an instance without a patient ID counts with its
study), bounds each unit's contribution, checks the query, charges the cohort's privacy
budget (kept in the same file), and only then adds exact Laplace noise and prints.

What one query releases, and what it costs (``--epsilon E``):

- counts of units per cell (each unit in at most ``--max-cells-per-unit`` cells, chosen at
  random when it has more), with discrete Laplace noise of scale ``cap / E`` (``cap / (E/2)``
  when a mean is asked too); small and negative noisy counts are shown as they are, with
  the 95% interval of the noise;
- with ``--mean COL --bounds LO,HI``: per cell, the mean over units of their (per-cell
  average, clamped) value: a centred noisy sum (``E/4``) over a noisy count of units with
  a value (``E/4``).

The cells are the product of each ``--by`` column's public domain: sex, age_band and
modality have built-in domains; ``--domain COL=a,b,c`` (``study_year=2010..2024`` for a
range) or ``--domain-file`` (TOML, a ``[domains]`` table) gives one for any column; values
outside a domain count as ``(other)``. A column without a domain is refused (exit 2):
labels taken from the data reveal the patients who have them. ``--allow-data-domain``
releases anyway, marked NOT differentially private, and still charges the budget.

Exit codes: 0 released, 1 refused by the budget, 2 usage error or no public domain.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any

from medveil.cli.console import error, warning
from medveil.errors import BudgetExceededError, MedveilError
from medveil.privacy import dp
from medveil.privacy import stats as release_stats

log = logging.getLogger(__name__)

# Re-exported for callers that used them from here.
BUILTIN_DOMAINS = release_stats.BUILTIN_DOMAINS
CATEGORICAL = release_stats.CATEGORICAL
NUMERIC = release_stats.NUMERIC
compute = release_stats.compute


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``stats`` subcommand."""
    p = sub.add_parser(
        "stats",
        help="differentially private histogram and means of a de-identified cohort",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("output", type=Path, help="the de-identified archive (holds .medveil/)")
    p.add_argument("--epsilon", type=float, required=True, help="epsilon this query spends")
    p.add_argument("--by", required=True, help=f"comma-separated columns of {CATEGORICAL}")
    p.add_argument(
        "--total-epsilon",
        type=float,
        default=None,
        help="the cohort's total budget; needed once, when the budget is first created",
    )
    p.add_argument("--mean", choices=NUMERIC, default=None, help="a numeric column to average")
    p.add_argument("--bounds", default=None, help="LO,HI clamping bounds for --mean")
    p.add_argument(
        "--max-cells-per-unit",
        "--max-cells-per-patient",
        dest="cap",
        type=int,
        default=1,
        help="cap on the cells one unit counts in (the sensitivity; default 1)",
    )
    p.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="COL=V1,V2,...",
        help="the public list of values of a --by column (repeatable; A..B for a range)",
    )
    p.add_argument(
        "--domain-file",
        type=Path,
        default=None,
        metavar="TOML",
        help='public domains in a [domains] table (COL = [values] or "A..B")',
    )
    p.add_argument(
        "--allow-data-domain",
        action="store_true",
        help="take the values of a column without a domain from the data: NOT DP",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    out.add_argument("--json", type=Path, default=None, help="also write the release as JSON")
    p.set_defaults(func=run)


def _domains(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """--domain-file first, then each --domain (which wins for its column)."""
    domains = (
        release_stats.load_domain_file(args.domain_file) if args.domain_file is not None else {}
    )
    for spec in args.domain:
        col, values = release_stats.parse_domain(spec)
        domains[col] = values
    return domains


def _bounds(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo_s, hi_s = text.split(",")
        return float(lo_s), float(hi_s)
    except ValueError:
        raise MedveilError(f"--bounds {text!r}: expected LO,HI") from None


def _table(release: dict[str, Any]) -> str:
    rows = release["rows"]
    if not rows:
        return "(no cells)\n"
    headers = list(rows[0])

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v) if v != "" else "(missing)"

    grid = [[fmt(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(g[i]) for g in grid)) for i, h in enumerate(headers)]
    buf = io.StringIO()
    buf.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + "\n")
    for g in grid:
        buf.write("  ".join(v.ljust(w) for v, w in zip(g, widths, strict=True)) + "\n")
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    """Run ``medveil stats``: check, charge the budget, then print (and write) the release."""
    try:
        catalog = release_stats.catalog_path(args.output)
        by = [c.strip() for c in args.by.split(",") if c.strip()]
        bounds = _bounds(args.bounds)
        domains = _domains(args)
        budget = dp.PrivacyBudget(args.total_epsilon, catalog, name="cohort")
        release = release_stats.compute(
            catalog,
            by,
            args.epsilon,
            budget,
            mean=args.mean,
            bounds=bounds,
            cap=args.cap,
            domains=domains,
            allow_data_domain=args.allow_data_domain,
        )
    except BudgetExceededError as exc:
        error(log, f"stats: {exc}")
        return 1
    except (MedveilError, ValueError) as exc:
        error(log, f"stats: {exc}")
        return 2
    except sqlite3.Error as exc:
        error(log, f"stats: cannot use the catalog in {args.output}: {exc}")
        return 2
    for w in release["warnings"]:
        warning(log, w)
    b = release["budget"]
    if not release["dp"]:
        print(
            "NOT DIFFERENTIALLY PRIVATE: values of "
            f"{', '.join(release['domain_from_data'])} come from the data "
            "(--allow-data-domain); the epsilon below was charged all the same"
        )
    print(
        f"privacy unit: {release['unit']} (at most {release['max_cells_per_unit']} cell(s) "
        f"each); this query spent epsilon {release['epsilon']:g}"
    )
    print(f"budget: spent {b['spent']:g} of {b['total']:g}, {b['remaining']:g} left")
    print(
        f"count noise: discrete Laplace, scale {release['count_noise']['scale']:.4g}; "
        "ci95 = the 95% interval of the noise around each noisy count"
    )
    sys.stdout.write(_table(release))
    if args.json is not None:
        args.json.write_text(json.dumps(release, indent=2) + "\n")
    if args.csv is not None:
        with args.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(release["rows"][0]) if release["rows"] else [])
            w.writeheader()
            w.writerows(release["rows"])
    return 0
