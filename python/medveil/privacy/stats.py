"""Differentially private statistics of a de-identified cohort (what ``medveil stats`` releases).

The input is the cohort catalog ``OUTPUT/.medveil/catalog.sqlite`` written by the archive
engine (one row per instance). A release goes through four steps, in this order:

1. **Units.** Rows are grouped into privacy units: the patient (the catalog's
   ``patient_pseudonym``, the output folder). An instance without a patient identity
   (the folder ``unknown-patient``, or ``unknown`` when the ID had no usable character)
   is not lumped with every other such instance: it joins the unit of its study (a study
   belongs to one patient), or of its series or its own instance when the study UID is
   empty. So 30 patients without an ID are 30 units, not 1. The guarantee is per unit:
   a patient whose instances carry no ID and span m studies is m units and is protected
   with m * epsilon (group privacy).
2. **Domains.** Every ``--by`` column needs a public list of values fixed before the data
   is read (built in for sex, age_band and modality; ``--domain`` or a domain file for the
   others); values outside it count as ``(other)``. A label taken from the data (a
   manufacturer string seen for one patient) reveals that patient whatever the noise, so
   a column without a domain is refused (:class:`DomainError`) unless the caller opts out
   with ``allow_data_domain``: that release is marked NOT differentially private in its
   output and ledger labels. Its epsilon is still charged, so the noise on its counts
   still draws on the cohort's budget like any other query.
3. **Contribution bounding.** Each unit counts once in at most ``cap`` cells (chosen
   uniformly at random, independently per unit, when it has more), however many instances
   it has; for a mean, its value in a cell is the average of its instances there, clamped
   to the bounds. Adding or removing one unit therefore changes each count by at most 1
   and all counts together by at most ``cap``; each centred sum by at most half the bound
   range (``cap`` of them), and the counts of units with a value by at most ``cap``.
4. **Noise and charge.** Everything that can fail is checked first; then the budget is
   charged (all parts atomically); then exact discrete Laplace noise of scale
   ``cap / epsilon_part`` is added to the counts (and float-safe Laplace to the sums).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from medveil import _core
from medveil.errors import MedveilError
from medveil.privacy import dp

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has the same parser as the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "BUILTIN_DOMAINS",
    "CATEGORICAL",
    "MISSING",
    "NUMERIC",
    "OTHER",
    "UNIDENTIFIED",
    "Aggregates",
    "DomainError",
    "aggregate",
    "catalog_path",
    "compute",
    "load_domain_file",
    "parse_domain",
    "read_units",
    "unit_of",
]

CATEGORICAL = ("modality", "body_part", "sex", "age_band", "manufacturer", "study_year")
NUMERIC = ("rows", "columns", "frames", "slice_thickness", "size")
OTHER = "(other)"
MISSING = ""
#: Folder names the archive engine gives instances without a usable PatientID.
UNIDENTIFIED = frozenset({"unknown-patient", "unknown", ""})

BUILTIN_DOMAINS: dict[str, tuple[str, ...]] = {
    "sex": ("F", "M", "O"),
    # The archive engine's catalog labels: '0-4', '5-9', ..., '85-89', '90+'.
    "age_band": (*(f"{a}-{a + 4}" for a in range(0, 90, 5)), "90+"),
    "modality": (
        *("CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "IO", "PX", "OT"),
        *("SC", "SR", "SEG", "PR", "KO", "DOC", "RTSTRUCT", "RTDOSE", "RTPLAN", "RTIMAGE"),
        *("SM", "OP", "OPT", "ES", "XC", "ECG"),
    ),
}

# A domain larger than this is a mistake (a year range typed wrong), not a histogram.
MAX_DOMAIN = 10_000
_RANGE = re.compile(r"(-?\d{1,9})\.\.(-?\d{1,9})")


class DomainError(MedveilError):
    """A --by column has no public domain; the message gives the remedies."""


def catalog_path(output: str | os.PathLike[str]) -> Path:
    """OUTPUT/.medveil/catalog.sqlite, or MedveilError naming what to run first."""
    out = Path(output)
    path = out / ".medveil" / "catalog.sqlite"
    if not path.is_file():
        raise MedveilError(
            f"no cohort catalog at {path}; run the archive conversion into {out} first"
        )
    return path


# --- domains -----------------------------------------------------------------------------


def _domain_values(col: str, values: Iterable[Any], source: str) -> tuple[str, ...]:
    """Distinct non-empty labels in order; 'A..B' expands to the integers A to B."""
    out: list[str] = []
    for v in values:
        text = str(v).strip()
        m = _RANGE.fullmatch(text)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo or hi - lo >= MAX_DOMAIN:
                raise MedveilError(f"{source}: range {text!r} for {col} is empty or too long")
            out.extend(str(i) for i in range(lo, hi + 1))
        elif text:
            out.append(text)
    values_t = tuple(dict.fromkeys(out))
    if not values_t:
        raise MedveilError(f"{source}: the domain of {col} is empty")
    if len(values_t) > MAX_DOMAIN:
        raise MedveilError(f"{source}: the domain of {col} has more than {MAX_DOMAIN} values")
    return values_t


def parse_domain(spec: str) -> tuple[str, tuple[str, ...]]:
    """Parse ``COL=V1,V2,...`` (or ``study_year=2010..2024``) into (column, values)."""
    col, sep, values = spec.partition("=")
    col = col.strip()
    if not sep or col not in CATEGORICAL:
        raise MedveilError(
            f"--domain {spec!r}: expected COL=V1,V2,... with COL one of {', '.join(CATEGORICAL)}"
        )
    return col, _domain_values(col, values.split(","), f"--domain {col}")


def load_domain_file(path: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """Read public domains from a TOML file: ``[domains]`` with ``COL = ["V1", ...]`` or
    ``COL = "A..B"``; the file is written before the data is seen (a data dictionary)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MedveilError(f"cannot read the domain file {p}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MedveilError(f"{p}: not a TOML domain file ({exc})") from None
    table = data.get("domains")
    if not isinstance(table, dict) or set(data) != {"domains"}:
        raise MedveilError(f'{p}: expected one [domains] table (COL = [values] or "A..B")')
    out: dict[str, tuple[str, ...]] = {}
    for col, values in table.items():
        if col not in CATEGORICAL:
            raise MedveilError(f"{p}: unknown column {col!r} (known: {', '.join(CATEGORICAL)})")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            raise MedveilError(f'{p}: {col} must be a list of values or a range "A..B"')
        out[col] = _domain_values(col, values, str(p))
    return out


# --- units -------------------------------------------------------------------------------


def unit_of(patient: Any, study: Any, series: Any, sop: Any, path: Any) -> str:
    """The privacy unit of one catalog row: its patient, or for an instance without a
    patient identity the finest grouping that surely is one patient (study, series, self)."""
    name = "" if patient is None else str(patient).strip()
    if name not in UNIDENTIFIED:
        return f"patient:{name}"
    for kind, value in (("study", study), ("series", series), ("instance", sop), ("file", path)):
        text = "" if value is None else str(value).strip()
        if text:
            return f"{kind}:{text}"
    raise MedveilError("a catalog row has neither patient, study, series, SOP UID nor path")


def _column_sql(col: str) -> str:
    return "substr(study_date, 1, 4)" if col == "study_year" else col


def read_units(
    catalog: str | os.PathLike[str], by: Sequence[str], mean: str | None = None
) -> dict[str, dict[tuple[str, ...], list[float]]]:
    """unit -> raw cell (the --by values as stored) -> the unit's values of the mean column."""
    cols = ", ".join(_column_sql(c) for c in by)
    extra = f", {mean}" if mean else ""
    con = sqlite3.connect(f"{Path(catalog).resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            # Column names come from the whitelists, never from free text.
            f"SELECT patient_pseudonym, study_uid, series_uid, sop_uid, path, {cols}{extra} "
            "FROM instances"
        ).fetchall()
    finally:
        con.close()
    units: dict[str, dict[tuple[str, ...], list[float]]] = defaultdict(lambda: defaultdict(list))
    n = len(by)
    for row in rows:
        unit = unit_of(*row[:5])
        key = tuple(MISSING if v is None else str(v).strip() for v in row[5 : 5 + n])
        vals = units[unit][key]
        if mean and row[-1] is not None:
            v = float(row[-1])
            if math.isfinite(v):
                vals.append(v)
    return units


# --- contribution bounding ---------------------------------------------------------------


@dataclass
class Aggregates:
    """Exact (noise-free) per-cell totals after contribution bounding."""

    cells: list[tuple[str, ...]]
    counts: list[int]  # units per cell
    sums: list[Fraction] = field(default_factory=list)  # centred clamped per-unit values
    with_value: list[int] = field(default_factory=list)  # units per cell with a value


def _choose(rng: Any, items: list[Any], k: int) -> list[Any]:
    """k distinct items uniformly at random (partial Fisher-Yates on the generator)."""
    items = list(items)
    for i in range(k):
        j = i + int(_core.noise.uniform_below(rng, len(items) - i, 1)[0])
        items[i], items[j] = items[j], items[i]
    return items[:k]


def aggregate(
    units: Mapping[str, Mapping[tuple[str, ...], Sequence[float]]],
    axes: Sequence[Sequence[str]],
    *,
    cap: int,
    selection_key: bytes,
    bounds: tuple[float, float] | None = None,
) -> Aggregates:
    """Bound every unit's contribution and total it per cell (no noise).

    ``units`` maps unit -> cell (already mapped into the domain) -> values. A unit counts
    once in each of at most ``cap`` of its cells; with more, ``cap`` are chosen uniformly by
    a generator keyed by (selection_key, unit), so one unit's choice does not depend on the
    others: adding or removing a unit changes only its own cells.
    """
    cells = list(itertools.product(*axes))
    index = {cell: i for i, cell in enumerate(cells)}
    counts = [0] * len(cells)
    sums = [Fraction(0)] * len(cells)
    with_value = [0] * len(cells)
    lo, hi = bounds if bounds else (0.0, 1.0)
    mid = Fraction(dp._centre(lo, hi)[0])
    for unit in sorted(units):
        contribution = units[unit]
        keys = sorted(contribution)
        if len(keys) > cap:
            keys = _choose(dp.keyed_rng(selection_key, "medveil.stats.cells", unit), keys, cap)
        for key in keys:
            i = index[key]
            counts[i] += 1
            vals = contribution[key]
            if bounds is not None and vals:
                with_value[i] += 1
                avg = math.fsum(vals) / len(vals)
                sums[i] += Fraction(min(hi, max(lo, avg))) - mid
    return Aggregates(cells, counts, sums, with_value)


# --- the release -------------------------------------------------------------------------


def _axes(
    by: Sequence[str],
    domains: Mapping[str, tuple[str, ...]],
    units: Mapping[str, Mapping[tuple[str, ...], Any]],
) -> tuple[list[tuple[str, ...]], list[str]]:
    """The axis of every --by column: its domain + (other) + missing, or (opted out) the
    values seen in the data; and the columns that took theirs from the data."""
    axes: list[tuple[str, ...]] = []
    from_data: list[str] = []
    for j, c in enumerate(by):
        if c in domains:
            axes.append((*domains[c], OTHER, MISSING))
        else:
            from_data.append(c)
            seen = {cell[j] for cells in units.values() for cell in cells}
            axes.append(tuple(sorted(seen)))
    return axes, from_data


def _into_domain(
    units: Mapping[str, Mapping[tuple[str, ...], list[float]]],
    by: Sequence[str],
    domains: Mapping[str, tuple[str, ...]],
) -> dict[str, dict[tuple[str, ...], list[float]]]:
    """Map each cell's values outside a column's domain to (other); merge what collides."""
    allowed = {j: set(domains[c]) for j, c in enumerate(by) if c in domains}
    out: dict[str, dict[tuple[str, ...], list[float]]] = {}
    for unit, cells in units.items():
        mapped: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for cell, vals in cells.items():
            key = tuple(
                OTHER if j in allowed and v != MISSING and v not in allowed[j] else v
                for j, v in enumerate(cell)
            )
            mapped[key].extend(vals)
        out[unit] = mapped
    return out


def _refusal(missing: Sequence[str]) -> str:
    cols = ", ".join(missing)
    examples = " ".join(f"--domain {c}=V1,V2,..." for c in missing)
    return (
        f"column(s) {cols} have no public domain: a label taken from the data (a value only "
        "one patient has) reveals that patient whatever the noise, so nothing was released "
        f"and nothing was charged. Give the public values with {examples} (a year range: "
        "--domain study_year=2010..2024), or in a TOML --domain-file with a [domains] table; "
        "or pass --allow-data-domain to release a table that is NOT differentially private"
    )


def compute(
    catalog: str | os.PathLike[str],
    by: list[str],
    epsilon: float,
    budget: dp.PrivacyBudget,
    *,
    mean: str | None = None,
    bounds: tuple[float, float] | None = None,
    cap: int = 1,
    domains: Mapping[str, tuple[str, ...]] | None = None,
    allow_data_domain: bool = False,
    rng: dp.Rng | None = None,
) -> dict[str, Any]:
    """Validate, charge the budget, then return the noisy release (rows plus metadata).

    Raises DomainError (nothing charged) for a --by column without a public domain unless
    ``allow_data_domain``; MedveilError or ValueError for other bad queries (nothing
    charged); BudgetExceededError when the budget cannot pay (nothing charged).
    """
    for c in by:
        if c not in CATEGORICAL:
            raise MedveilError(f"--by {c!r}: not a categorical column; choose from {CATEGORICAL}")
    if len(set(by)) != len(by) or not by:
        raise MedveilError("--by needs distinct column names")
    if int(cap) != cap or cap < 1:
        raise MedveilError("--max-cells-per-unit must be an integer >= 1")
    if mean is not None and mean not in NUMERIC:
        raise MedveilError(f"--mean {mean!r}: not a numeric column; choose from {NUMERIC}")
    if (mean is None) != (bounds is None):
        raise MedveilError("--mean and --bounds go together")
    if bounds is not None:
        bounds = dp._check_bounds(*bounds)
    known = {c: BUILTIN_DOMAINS[c] for c in by if c in BUILTIN_DOMAINS}
    known.update({c: tuple(v) for c, v in (domains or {}).items() if c in by})
    missing = [c for c in by if c not in known]
    if missing and not allow_data_domain:
        raise DomainError(_refusal(missing))
    epsilon = dp._check_positive("epsilon", epsilon)
    rng = rng or dp.default_rng()

    # The parts and their scales: every one checked against the core's limits here.
    eps_count = epsilon / 2.0 if mean else epsilon
    not_dp = " (NOT DP: domain from the data)" if missing else ""
    parts: list[tuple[float, str]] = [(eps_count, f"stats counts by {','.join(by)}{not_dp}")]
    count_scale = dp.count_scale(cap, eps_count)
    eps_part = epsilon / 4.0
    n_scale = 0.0
    if mean:
        parts += [(eps_part, f"stats sum of {mean}{not_dp}"), (eps_part, f"stats n of {mean}")]
        n_scale = dp.count_scale(cap, eps_part)

    # Read and bound before the charge: a catalog that cannot be read costs nothing.
    units = _into_domain(read_units(catalog, by, mean), by, known)
    axes, from_data = _axes(by, known, units)
    agg = aggregate(units, axes, cap=cap, selection_key=rng.bytes(32), bounds=bounds)
    prepared = None
    lo, hi = bounds if bounds else (0.0, 1.0)
    mid, bound = dp._centre(lo, hi)
    if mean:
        # One unit changes at most `cap` cells' centred sums, each by at most `bound`.
        prepared = dp.prepare_exact_sums(agg.sums, cap * bound, eps_part, coordinates=cap)

    budget.charge_all(parts)

    noisy_counts = np.asarray(agg.counts, dtype=np.int64) + dp.discrete_laplace(
        count_scale, len(agg.cells), rng=rng
    )
    half_width = dp.discrete_laplace_interval(count_scale)
    means = None
    if mean and prepared is not None:
        noisy_sums = dp.release_sums(prepared, rng=rng)
        noisy_n = np.asarray(agg.with_value, dtype=np.int64) + dp.discrete_laplace(
            n_scale, len(agg.cells), rng=rng
        )
        means = [
            None if n <= 0 else min(hi, max(lo, mid + s / n))
            for s, n in zip(noisy_sums, noisy_n.tolist(), strict=True)
        ]

    out_rows = []
    for i, cell in enumerate(agg.cells):
        r: dict[str, Any] = dict(zip(by, cell, strict=True))
        n = int(noisy_counts[i])
        r.update(noisy_count=n, ci95_low=n - half_width, ci95_high=n + half_width)
        if means is not None:
            r[f"noisy_mean_{mean}"] = means[i]
        out_rows.append(r)
    warnings = []
    if from_data:
        warnings.append(
            f"NOT DIFFERENTIALLY PRIVATE: the values of {', '.join(from_data)} were taken "
            "from the data (--allow-data-domain): a value only one patient has reveals that "
            "patient whatever the noise. Do not publish this table as a DP release."
        )
    return {
        "by": by,
        "dp": not from_data,
        "domain_from_data": from_data,
        "unit": "patient; an instance without a patient ID: its study (else series, instance)",
        "max_cells_per_unit": cap,
        "epsilon": epsilon,
        "epsilon_parts": [{"epsilon": e, "for": s} for e, s in parts],
        "count_noise": {"distribution": "discrete Laplace", "scale": count_scale},
        "budget": {"total": budget.total, "spent": budget.spent, "remaining": budget.remaining},
        "mean": None if not mean else {"column": mean, "bounds": [lo, hi]},
        "warnings": warnings,
        "rows": out_rows,
    }
