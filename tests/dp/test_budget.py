"""PrivacyBudget: sequential charging, refusal, persistence and concurrency across processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
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
