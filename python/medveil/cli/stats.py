"""``medveil stats``: a differentially private histogram (and bounded means) of a cohort.

Reads the cohort catalog ``OUTPUT/.medveil/catalog.sqlite`` written by the archive engine,
reduces it to patients (the privacy unit), adds exact Laplace noise and charges the
cohort's privacy budget, which lives in the same file, before printing anything.

What one query releases, and what it costs (``--epsilon E``):

- counts of patients per cell (each patient in at most ``--max-cells-per-patient`` cells,
  chosen at random when they have more), with discrete Laplace noise of scale ``cap / E``
  (``cap / (E/2)`` when a mean is asked too); small and negative noisy counts are shown as
  they are, with the 95% interval of the noise;
- with ``--mean COL --bounds LO,HI``: per cell, the mean over patients of their (per-cell
  average, clamped) value: a centred noisy sum (``E/4``) over a noisy count of patients
  with a value (``E/4``).

The cells are the product of each ``--by`` column's domain. A domain must not come from the
data, or a cell's mere presence would reveal a patient: sex, age_band and modality have
built-in domains, ``--domain COL=a,b,c`` gives one for any column; values outside a domain
count as ``(other)``. A column without a domain falls back to the values seen in the data,
with a warning that the release is then not purely epsilon-DP.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import sqlite3
import sys
from collections import defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from medveil import _core
from medveil.errors import MedveilError
from medveil.privacy import dp

CATEGORICAL = ("modality", "body_part", "sex", "age_band", "manufacturer", "study_year")
NUMERIC = ("rows", "columns", "frames", "slice_thickness", "size")
OTHER = "(other)"
MISSING = ""

BUILTIN_DOMAINS: dict[str, tuple[str, ...]] = {
    "sex": ("F", "M", "O"),
    # The archive engine's catalog labels: '0-4', '5-9', ..., '85-89', '90+'.
    "age_band": (*(f"{a}-{a + 4}" for a in range(0, 90, 5)), "90+"),
    "modality": (
        "CT",
        "MR",
        "PT",
        "NM",
        "US",
        "CR",
        "DX",
        "MG",
        "XA",
        "RF",
        "IO",
        "PX",
        "OT",
        "SC",
        "SR",
        "SEG",
        "PR",
        "KO",
        "DOC",
        "RTSTRUCT",
        "RTDOSE",
        "RTPLAN",
        "RTIMAGE",
        "SM",
        "OP",
        "OPT",
        "ES",
        "XC",
        "ECG",
    ),
}


def add_subparser(sub: argparse._SubParsersAction) -> None:
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
        "--max-cells-per-patient",
        type=int,
        default=1,
        help="cap on the cells one patient counts in (the sensitivity; default 1)",
    )
    p.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="COL=V1,V2,...",
        help="the public list of values of a --by column (repeatable)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    out.add_argument("--json", type=Path, default=None, help="also write the release as JSON")
    p.set_defaults(func=run)


def _catalog(output: Path) -> Path:
    path = output / ".medveil" / "catalog.sqlite"
    if not path.is_file():
        raise MedveilError(
            f"no cohort catalog at {path}; run the archive conversion into {output} first"
        )
    return path


def _parse_domains(specs: list[str], by: list[str]) -> dict[str, tuple[str, ...]]:
    domains = {c: BUILTIN_DOMAINS[c] for c in by if c in BUILTIN_DOMAINS}
    for spec in specs:
        col, sep, values = spec.partition("=")
        if not sep or col not in by:
            raise MedveilError(f"--domain {spec!r}: expected COL=V1,V2 with COL one of --by")
        domains[col] = tuple(dict.fromkeys(v.strip() for v in values.split(",") if v.strip()))
    return domains


def _column_sql(col: str) -> str:
    return "substr(study_date, 1, 4)" if col == "study_year" else col


def _choose(rng: Any, items: list[Any], k: int) -> list[Any]:
    """k distinct items uniformly at random (partial Fisher-Yates on the CSPRNG)."""
    items = list(items)
    for i in range(k):
        j = i + int(_core.noise.uniform_below(rng, len(items) - i, 1)[0])
        items[i], items[j] = items[j], items[i]
    return items[:k]


def compute(
    catalog: Path,
    by: list[str],
    epsilon: float,
    budget: dp.PrivacyBudget,
    *,
    mean: str | None = None,
    bounds: tuple[float, float] | None = None,
    cap: int = 1,
    domains: dict[str, tuple[str, ...]] | None = None,
    rng: Any = None,
) -> dict[str, Any]:
    """Charge the budget, then return the noisy release as a dict (rows plus metadata)."""
    for c in by:
        if c not in CATEGORICAL:
            raise MedveilError(f"--by {c!r}: not a categorical column; choose from {CATEGORICAL}")
    if len(set(by)) != len(by) or not by:
        raise MedveilError("--by needs distinct column names")
    if cap < 1:
        raise MedveilError("--max-cells-per-patient must be >= 1")
    if (mean is None) != (bounds is None):
        raise MedveilError("--mean and --bounds go together")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise MedveilError("--bounds LO,HI needs LO < HI")
    epsilon = dp._check_positive("epsilon", epsilon)
    rng = rng or dp.default_rng()
    domains = dict(domains or {})
    eps_count = epsilon / 2.0 if mean else epsilon
    parts = [(eps_count, f"stats counts by {','.join(by)}")]
    if mean:
        parts += [(epsilon / 4.0, f"stats sum of {mean}"), (epsilon / 4.0, f"stats n of {mean}")]
    count_scale = math.nextafter(cap / eps_count, math.inf)
    n_scale = math.nextafter(cap / (epsilon / 4.0), math.inf)
    for scale in (count_scale, n_scale) if mean else (count_scale,):
        _core.noise.rational_scale(scale)  # fails (ValueError) before anything is charged
    # Charged before anything is computed: a refused query releases nothing.
    budget.charge_all(parts)

    cols = ", ".join(_column_sql(c) for c in by)
    extra = f", {mean}" if mean else ""
    con = sqlite3.connect(f"{catalog.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            # Column names come from the whitelists above, never from free text.
            f"SELECT patient_pseudonym, {cols}{extra} FROM instances"
        ).fetchall()
    finally:
        con.close()

    observed: dict[str, set[str]] = defaultdict(set)
    # patient -> cell -> list of values of the --mean column
    per_patient: dict[str, dict[tuple[str, ...], list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in rows:
        patient = row[0]
        key = []
        for c, v in zip(by, row[1 : 1 + len(by)], strict=True):
            v = MISSING if v is None else str(v).strip()
            if c in domains and v != MISSING and v not in domains[c]:
                v = OTHER
            observed[c].add(v)
            key.append(v)
        vals = per_patient[patient][tuple(key)]
        if mean and row[-1] is not None and not math.isnan(float(row[-1])):
            vals.append(float(row[-1]))

    warnings = []
    axes = []
    for c in by:
        if c in domains:
            axes.append((*domains[c], OTHER, MISSING))
        else:
            warnings.append(
                f"column {c!r} has no public domain, so its values were taken from the data: "
                "a value seen only for one patient reveals that patient. Give --domain "
                f"{c}=V1,V2,... for a purely epsilon-DP release."
            )
            axes.append(tuple(sorted(observed[c])))
    cells = list(itertools.product(*axes))
    index = {cell: i for i, cell in enumerate(cells)}

    counts = np.zeros(len(cells), dtype=np.int64)
    lo, hi = bounds if bounds else (0.0, 1.0)
    mid, bound = dp._centre(lo, hi)
    # Exact sums: float accumulation error would add to the sensitivity.
    sums = [Fraction(0)] * len(cells)
    nval = np.zeros(len(cells), dtype=np.int64)
    for patient in sorted(per_patient):
        contribution = per_patient[patient]
        keys = sorted(contribution)
        if len(keys) > cap:
            keys = _choose(rng, keys, cap)
        for key in keys:
            i = index[key]
            counts[i] += 1
            vals = contribution[key]
            if mean and vals:
                nval[i] += 1
                sums[i] += Fraction(min(hi, max(lo, math.fsum(vals) / len(vals))) - mid)

    noisy_counts = counts + dp.discrete_laplace(count_scale, len(cells), rng=rng)
    half_width = dp.discrete_laplace_interval(count_scale)
    means = None
    if mean:
        eps_part = epsilon / 4.0
        # One patient changes at most `cap` cells' sums, each by at most `bound`.
        noisy_sums = dp.noisy_exact_sums(sums, cap * bound, eps_part, coordinates=cap, rng=rng)
        noisy_n = nval + dp.discrete_laplace(n_scale, len(cells), rng=rng)
        means = [
            None if n <= 0 else min(hi, max(lo, mid + s / n))
            for s, n in zip(noisy_sums, noisy_n.tolist(), strict=True)
        ]

    out_rows = []
    for i, cell in enumerate(cells):
        r: dict[str, Any] = dict(zip(by, cell, strict=True))
        n = int(noisy_counts[i])
        r.update(noisy_count=n, ci95_low=n - half_width, ci95_high=n + half_width)
        if means is not None:
            r[f"noisy_mean_{mean}"] = means[i]
        out_rows.append(r)
    return {
        "by": by,
        "unit": "patient",
        "max_cells_per_patient": cap,
        "epsilon": epsilon,
        "epsilon_parts": [{"epsilon": e, "for": s} for e, s in parts],
        "count_noise": {"distribution": "discrete Laplace", "scale": count_scale},
        "budget": {"total": budget.total, "spent": budget.spent, "remaining": budget.remaining},
        "mean": None if not mean else {"column": mean, "bounds": [lo, hi]},
        "warnings": warnings,
        "rows": out_rows,
    }


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
    """Run ``medveil stats``: charge the budget, then print (and write) the noisy release."""
    try:
        catalog = _catalog(args.output)
        by = [c.strip() for c in args.by.split(",") if c.strip()]
        bounds = None
        if args.bounds is not None:
            try:
                lo_s, hi_s = args.bounds.split(",")
                bounds = (float(lo_s), float(hi_s))
            except ValueError:
                raise MedveilError(f"--bounds {args.bounds!r}: expected LO,HI") from None
        budget = dp.PrivacyBudget(args.total_epsilon, catalog, name="cohort")
        release = compute(
            catalog,
            by,
            args.epsilon,
            budget,
            mean=args.mean,
            bounds=bounds,
            cap=args.max_cells_per_patient,
            domains=_parse_domains(args.domain, by),
        )
    except (MedveilError, ValueError) as exc:
        print(f"medveil stats: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"medveil stats: cannot use the catalog {args.output}: {exc}", file=sys.stderr)
        return 1
    for w in release["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    b = release["budget"]
    print(
        f"privacy unit: patient (at most {release['max_cells_per_patient']} cell(s) each); "
        f"this query spent epsilon {release['epsilon']:g}"
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
