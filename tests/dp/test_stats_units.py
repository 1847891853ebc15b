"""Privacy units and contribution bounding of ``medveil stats`` (medveil.privacy.stats)."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.errors import MedveilError
from medveil.privacy import dp, stats

from .test_stats_cli import SCHEMA


def catalog_of(root: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A catalog of (patient folder, study UID, sex, SOP UID) instances."""
    (root / ".medveil").mkdir(parents=True, exist_ok=True)
    path = root / ".medveil" / "catalog.sqlite"
    con = sqlite3.connect(path)
    con.execute(SCHEMA)
    for patient, study, sex, sop in rows:
        con.execute(
            "INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (patient, study, f"se.{study}", sop, "CT", "CHEST", sex, "60-64", "20200101",
             "ACME", 512, 512, 1, 1.0, f"{patient}/{study}/{sop}.dcm", 1000, "0" * 64),
        )  # fmt: skip
    con.commit()
    con.close()
    return path


def exact_counts(catalog: Path, by: list[str], **kw: object) -> dict[tuple[str, ...], int]:
    """Counts at epsilon 1000 (noise scale 1e-3: zero with probability 1 - 1e-434)."""
    budget = dp.PrivacyBudget(1e6, catalog, name="cohort")
    release = stats.compute(catalog, by, 1000.0, budget, rng=dp.insecure_rng(5), **kw)  # type: ignore[arg-type]
    return {tuple(r[c] for c in by): r["noisy_count"] for r in release["rows"]}


def test_thirty_patients_without_id_are_thirty_units(tmp_path: Path) -> None:
    # 30 patients without PatientID (one folder 'unknown-patient'), 4 images each, each
    # in a study of their own; the sex alternates.
    rows = [
        ("unknown-patient", f"2.25.{p}", "F" if p % 2 else "M", f"2.25.{p}.{i}")
        for p in range(30)
        for i in range(4)
    ]
    counts = exact_counts(catalog_of(tmp_path, rows), ["sex"])
    assert counts[("F",)] == 15 and counts[("M",)] == 15
    assert sum(counts.values()) == 30  # not 1 (one folder), not 120 (images)


def test_instances_of_one_unidentified_study_are_one_unit(tmp_path: Path) -> None:
    rows = [("unknown-patient", "2.25.1", "F", f"2.25.1.{i}") for i in range(10)]
    rows += [("unknown", "", "M", "2.25.9.1"), ("unknown", "", "M", "2.25.9.2")]
    rows += [("P1", "2.25.7", "F", "2.25.7.1"), ("P1", "2.25.8", "F", "2.25.8.1")]
    counts = exact_counts(catalog_of(tmp_path, rows), ["sex"])
    # One unit for the study; two for the instances without study UID (series UIDs are
    # 'se.' + '' here, the same, so they join one series unit); P1 once for two studies.
    assert counts[("F",)] == 2
    assert counts[("M",)] == 1


def test_unit_of() -> None:
    assert stats.unit_of("MVX", "s", "se", "i", "p") == "patient:MVX"
    assert stats.unit_of("unknown-patient", "s", "se", "i", "p") == "study:s"
    assert stats.unit_of("unknown", "", None, "i", "p") == "instance:i"
    assert stats.unit_of(None, "", "", "", "p") == "file:p"
    with pytest.raises(MedveilError):
        stats.unit_of("", "", "", "", "")


# --- sensitivity, checked on the exact aggregates --------------------------------------

CELLS = [("a",), ("b",), ("c",), ("d",), ("e",)]
AXES = [("a", "b", "c", "d", "e")]
BOUNDS = (-3.0, 5.0)
unit_data = st.dictionaries(
    st.sampled_from(CELLS),
    st.lists(st.floats(-100, 100, allow_nan=False), max_size=4),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text("xyz", min_size=1, max_size=4), unit_data, max_size=8),
    unit_data,
    st.integers(1, 4),
    st.binary(min_size=32, max_size=32),
)
def test_one_more_unit_moves_each_release_by_at_most_the_bound(
    others: dict[str, dict[tuple[str, ...], list[float]]],
    newcomer: dict[tuple[str, ...], list[float]],
    cap: int,
    key: bytes,
) -> None:
    """Adding a unit (with any number of cells and values) to any cohort changes each count
    by at most 1 and all of them by at most cap; the centred sums by at most cap * bound in
    total; the counts of units with a value by at most cap. This is the sensitivity the
    noise is calibrated to (scale cap / epsilon)."""
    before = stats.aggregate(others, AXES, cap=cap, selection_key=key, bounds=BOUNDS)
    after = stats.aggregate(
        {**others, "newcomer!": newcomer}, AXES, cap=cap, selection_key=key, bounds=BOUNDS
    )
    dc = [b - a for a, b in zip(before.counts, after.counts, strict=True)]
    assert all(0 <= d <= 1 for d in dc) and sum(dc) <= cap
    assert sum(dc) == min(cap, len(newcomer))
    ds = [abs(b - a) for a, b in zip(before.sums, after.sums, strict=True)]
    _, bound = dp._centre(*BOUNDS)
    assert all(d <= Fraction(bound) for d in ds) and sum(ds) <= cap * Fraction(bound)
    dn = [b - a for a, b in zip(before.with_value, after.with_value, strict=True)]
    assert all(0 <= d <= 1 for d in dn) and sum(dn) <= cap


def test_cell_choice_is_uniform_per_unit() -> None:
    """With cap 1 a unit in 4 cells lands in each about a quarter of the time."""
    seen = {c: 0 for c in CELLS[:4]}
    for i in range(4000):
        agg = stats.aggregate(
            {"u": {c: [] for c in CELLS[:4]}}, AXES, cap=1, selection_key=i.to_bytes(32, "big")
        )
        seen[agg.cells[agg.counts.index(1)]] += 1
    assert all(850 < n < 1150 for n in seen.values()), seen  # 1000 +- 4.7 sigma


def test_a_failing_stats_query_charges_nothing(tmp_path: Path) -> None:
    catalog = catalog_of(tmp_path, [("P1", "2.25.1", "F", "2.25.1.1")])
    budget = dp.PrivacyBudget(10.0, catalog, name="cohort")
    with pytest.raises(ValueError):
        stats.compute(catalog, ["sex"], 1.0, budget, mean="size", bounds=(0.0, float("nan")))
    with pytest.raises(ValueError):
        stats.compute(catalog, ["sex"], 1e-20, budget)  # scale over the core's limit
    with pytest.raises(stats.DomainError):
        stats.compute(catalog, ["sex", "manufacturer"], 1.0, budget)
    con = sqlite3.connect(catalog)
    con.execute("ALTER TABLE instances RENAME TO gone")
    con.commit()
    con.close()
    with pytest.raises(sqlite3.Error):
        stats.compute(catalog, ["sex"], 1.0, budget)  # unreadable catalog: before the charge
    assert budget.spent == 0 and budget.ledger() == []
