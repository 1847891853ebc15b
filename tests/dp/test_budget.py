"""PrivacyBudget: sequential charging, refusal, persistence and concurrency across processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.errors import BudgetExceededError, MedveilError
from medveil.privacy import dp


def test_in_memory_sequential_composition() -> None:
    b = dp.PrivacyBudget(1.0)
    for _ in range(10):
        b.charge(0.1, "q")
    assert b.spent == 1.0 and b.remaining == 0.0
    with pytest.raises(BudgetExceededError, match="only 0 of the total 1 is left"):
        b.charge(1e-6, "one more")
    assert len(b.ledger()) == 10


def test_refusal_charges_nothing_and_smaller_queries_still_fit() -> None:
    b = dp.PrivacyBudget(2.0)
    b.charge(1.5)
    with pytest.raises(BudgetExceededError):
        b.charge(0.6)
    assert b.spent == 1.5
    b.charge(0.5)
    assert b.remaining == 0.0


def test_budget_is_an_error_subclass() -> None:
    assert issubclass(BudgetExceededError, MedveilError)


def test_charge_all_is_atomic(tmp_path: Path) -> None:
    b = dp.PrivacyBudget(1.0, tmp_path / "c.sqlite")
    with pytest.raises(BudgetExceededError):
        b.charge_all([(0.5, "a"), (0.6, "b")])
    assert b.spent == 0.0 and b.ledger() == []
    b.charge_all([(0.5, "a"), (0.5, "b")])
    assert [e.label for e in b.ledger()] == ["a", "b"]


def test_noisy_release_helpers_charge_first() -> None:
    b = dp.PrivacyBudget(1.0)
    rng = dp.insecure_rng(1)
    dp.noisy_count(10, 0.5, budget=b, rng=rng)
    dp.add_laplace([1.0, 2.0], 1.0, 0.25, budget=b, rng=rng)
    with pytest.raises(BudgetExceededError):
        dp.noisy_mean([1.0], 0.0, 2.0, 0.5, budget=b, rng=rng)
    assert b.spent == 0.75


def test_persisted_total_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    dp.PrivacyBudget(4.0, path).charge(1.0)
    again = dp.PrivacyBudget(None, path)  # no total: use the stored one
    assert again.total == 4.0 and again.spent == 1.0
    with pytest.raises(MedveilError, match="fixed when first set"):
        dp.PrivacyBudget(8.0, path)
    with pytest.raises(MedveilError, match="by giving a total epsilon"):
        dp.PrivacyBudget(None, tmp_path / "new.sqlite")
    # Budgets of different names in one file are independent.
    other = dp.PrivacyBudget(1.0, path, name="other")
    other.charge(1.0)
    assert dp.PrivacyBudget(None, path).spent == 1.0


SPEND = """
import sys
from medveil.privacy import dp
from medveil.errors import BudgetExceededError
b = dp.PrivacyBudget(None, sys.argv[1])
ok = 0
for _ in range(int(sys.argv[2])):
    try:
        b.charge(0.1, "worker")
        ok += 1
    except BudgetExceededError:
        pass
print(ok)
"""


def test_budget_persists_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    dp.PrivacyBudget(1.0, path)
    run = [sys.executable, "-c", SPEND, str(path), "4"]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip() == "4"
    assert dp.PrivacyBudget(None, path).spent == pytest.approx(0.4)
    # The next run sees what the first spent: only 6 more of 0.1 fit.
    run[-1] = "10"
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip() == "6"


def test_concurrent_processes_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    dp.PrivacyBudget(1.0, path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SPEND, str(path), "8"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    granted = sum(int(p.communicate()[0]) for p in procs)
    assert granted == 10  # 24 attempts of 0.1 against a total of 1.0
    con = sqlite3.connect(path)
    units = con.execute("SELECT SUM(units) FROM dp_ledger").fetchone()[0]
    con.close()
    assert units == 10**12


# --- charges round up; failing queries charge nothing ----------------------------------


@pytest.mark.parametrize("eps", [1e-15, 3e-16, 1e-18, 5e-324, 1e-13])
def test_tiny_epsilon_is_never_free(eps: float) -> None:
    b = dp.PrivacyBudget(1.0)
    b.charge(eps, "tiny")
    assert b.spent >= 1e-12  # rounded up to one accounting unit, not down to 0
    assert b.ledger()[0].epsilon >= eps


def test_released_tiny_epsilon_count_is_charged() -> None:
    """A release at epsilon 1e-15 (scale 1e15, within the core's 2^52) costs something."""
    b = dp.PrivacyBudget(1.0)
    dp.noisy_count(3, 1e-15, budget=b, rng=dp.insecure_rng(3))
    assert b.spent == 1e-12


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-300, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_charge_covers_the_noise_epsilon(eps: float) -> None:
    """What is charged (exact units) is never below what the noise is calibrated to, and
    never below the decimal the user typed."""
    units = dp._units_up(eps)
    charged = Fraction(units, dp._UNIT)
    assert charged >= dp._noise_epsilon(eps)
    assert charged >= Fraction(repr(eps))
    assert units >= 1
    # The scale a count uses covers the charged epsilon: sensitivity / scale <= charge.
    if eps >= 1e-14:
        assert Fraction(1) / Fraction(dp.count_scale(1, eps)) <= charged


def test_decimal_charges_add_up_exactly() -> None:
    b = dp.PrivacyBudget(0.3)
    b.charge(0.1)
    b.charge(0.2)  # 0.1 + 0.2 is 0.3 in decimals, whatever the floats say
    assert b.remaining == 0.0
    with pytest.raises(BudgetExceededError):
        b.charge(1e-20)


def test_total_stored_before_decimal_accounting_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    dp.PrivacyBudget(1.0, path)
    con = sqlite3.connect(path)
    # A catalog written by the float accounting stored floor(0.3 * 1e12) = 299999999999.
    con.execute("UPDATE dp_budget SET total_units = 299999999999")
    con.commit()
    con.close()
    assert dp.PrivacyBudget(0.3, path).total == pytest.approx(0.3)


NAN = float("nan")


@pytest.mark.parametrize(
    "query",
    [
        lambda b: dp.noisy_count(NAN, 0.5, budget=b),
        lambda b: dp.noisy_count(2.5, 0.5, budget=b),
        lambda b: dp.noisy_count(3, 1e-20, budget=b),  # scale over the core's 2^52
        lambda b: dp.noisy_sum([1.0, NAN], 0.0, 1.0, 0.5, budget=b),
        lambda b: dp.noisy_sum([1.0], 0.0, NAN, 0.5, budget=b),
        lambda b: dp.noisy_sum([1e308] * 4, 0.0, 1.7e308, 0.5, budget=b),  # sum beyond a double
        lambda b: dp.noisy_mean([1.0, NAN], 0.0, 2.0, 0.5, budget=b),
        lambda b: dp.noisy_mean([1.0], 0.0, float("inf"), 0.5, budget=b),
        lambda b: dp.noisy_mean([1.0], 0.0, 2.0, 1e-30, budget=b),
        lambda b: dp.add_laplace([1.0, NAN], 1.0, 0.5, budget=b),
        lambda b: dp.add_laplace([1e300], 1.0, 0.5, budget=b),  # the core would clamp it
        lambda b: dp.add_laplace([1.0], 1.0, 1e-300, budget=b),
    ],
)
def test_a_failing_query_charges_nothing(query: Any) -> None:
    b = dp.PrivacyBudget(1.0)
    with pytest.raises(ValueError):
        query(b)
    assert b.spent == 0 and b.ledger() == []


def test_the_same_queries_with_good_inputs_are_charged() -> None:
    b = dp.PrivacyBudget(10.0)
    rng = dp.insecure_rng(4)
    dp.noisy_count(3, 0.5, budget=b, rng=rng)
    dp.noisy_sum([1.0, 2.0], 0.0, 2.0, 0.5, budget=b, rng=rng)
    dp.noisy_mean([1.0, 2.0], 0.0, 2.0, 0.5, budget=b, rng=rng)
    out = dp.add_laplace([1e200], 1.0, 0.5, budget=b, rng=rng)
    assert out[0] == pytest.approx(1e200)  # large but within the grid: released as it is
    assert b.spent == 2.0


def test_total_beyond_the_ledger_integer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 9223372"):
        dp.PrivacyBudget(1e7, tmp_path / "c.sqlite")
