"""``medveil stats`` on a synthetic cohort catalog with the archive engine's schema."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from medveil.cli.main import main
from medveil.privacy import dp, stats

SCHEMA = (
    "CREATE TABLE instances (patient_pseudonym TEXT, study_uid TEXT, series_uid TEXT, "
    "sop_uid TEXT, modality TEXT, body_part TEXT, sex TEXT, age_band TEXT, study_date TEXT, "
    "manufacturer TEXT, rows INTEGER, columns INTEGER, frames INTEGER, slice_thickness REAL, "
    "path TEXT, size INTEGER, sha256 TEXT)"
)

# patient, modality, sex, age_band, slice thickness, number of images
COHORT = [
    ("P1", "CT", "F", "60-64", 1.0, 40),  # one patient with many images counts once
    ("P2", "CT", "F", "60-64", 3.0, 2),
    ("P3", "CT", "M", "45-49", 5.0, 1),
    ("P4", "MR", "F", "60-64", None, 3),
    ("P5", "MR", "M", "90+", 2.0, 1),
    ("P6", "XYZ", "M", "45-49", 20.0, 1),  # outside the modality domain, clamped thickness
]


def make_catalog(root: Path, rows: list[tuple] = COHORT) -> Path:
    """Write OUTPUT/.medveil/catalog.sqlite with one row per image."""
    (root / ".medveil").mkdir(parents=True, exist_ok=True)
    path = root / ".medveil" / "catalog.sqlite"
    con = sqlite3.connect(path)
    con.execute(SCHEMA)
    n = 0
    for patient, modality, sex, age, thick, images in rows:
        for _ in range(images):
            n += 1
            con.execute(
                "INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (patient, f"st{patient}", f"se{patient}", f"sop{n}", modality, "CHEST", sex,
                 age, "20200101", "ACME", 512, 512, 1, thick, f"f{n}.dcm", 1000, "0" * 64),
            )  # fmt: skip
    con.commit()
    con.close()
    return path


def test_counts_patients_not_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_catalog(tmp_path)
    out_json = tmp_path / "release.json"
    # epsilon 1000: discrete Laplace scale 1e-3, so the noise is 0 with probability 1 - 1e-434.
    rc = main(["stats", str(tmp_path), "--epsilon", "1000", "--total-epsilon", "2000",
               "--by", "modality,sex", "--json", str(out_json)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "spent 1000 of 2000, 1000 left" in text
    release = json.loads(out_json.read_text())
    counts = {(r["modality"], r["sex"]): r["noisy_count"] for r in release["rows"]}
    assert counts[("CT", "F")] == 2  # P1 (40 images) and P2
    assert counts[("CT", "M")] == 1
    assert counts[("MR", "F")] == 1 and counts[("MR", "M")] == 1
    assert counts[("(other)", "M")] == 1  # 'XYZ' is not in the public modality domain
    assert counts[("US", "F")] == 0  # empty cells of the domain are released too
    assert sum(counts.values()) == 6
    assert release["unit"].startswith("patient") and release["warnings"] == []
    assert release["dp"] is True
    for r in release["rows"]:
        assert r["ci95_low"] <= r["noisy_count"] <= r["ci95_high"]


def test_small_noisy_counts_are_not_clipped(tmp_path: Path) -> None:
    catalog = make_catalog(tmp_path)
    budget = dp.PrivacyBudget(10.0, catalog, name="cohort")
    release = stats.compute(catalog, ["sex"], 0.1, budget, rng=dp.insecure_rng(8))
    values = [r["noisy_count"] for r in release["rows"]]
    assert min(values) < 0  # scale 10 noise on counts of 0..3: negatives are shown as is
    w = dp.discrete_laplace_interval(release["count_noise"]["scale"])
    assert all(r["ci95_high"] - r["noisy_count"] == w for r in release["rows"])


def test_budget_is_charged_and_refused_across_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_catalog(tmp_path)
    args = ["stats", str(tmp_path), "--epsilon", "1.5", "--by", "sex"]
    assert main([*args, "--total-epsilon", "4"]) == 0
    assert main(args) == 0  # the total is remembered in the catalog
    capsys.readouterr()
    assert main(args) == 1  # 3 spent, 1.5 more would exceed 4
    err = capsys.readouterr().err
    assert "only 1 of the total 4 is left" in err
    assert (
        dp.PrivacyBudget(None, tmp_path / ".medveil" / "catalog.sqlite", name="cohort").spent == 3.0
    )
    assert main([*args, "--total-epsilon", "5"]) == 2  # the total cannot be raised later


def test_mean_with_bounds_and_csv(tmp_path: Path) -> None:
    make_catalog(tmp_path)
    out_csv = tmp_path / "t.csv"
    rc = main(["stats", str(tmp_path), "--epsilon", "4000", "--total-epsilon", "4000",
               "--by", "sex", "--mean", "slice_thickness", "--bounds", "0,10",
               "--csv", str(out_csv)])  # fmt: skip
    assert rc == 0
    with out_csv.open() as f:
        rows = {r["sex"]: r for r in csv.DictReader(f)}
    # F: P1 (1.0), P2 (3.0); P4 has no value. M: P3 5.0, P5 2.0, P6 20 clamped to 10.
    assert float(rows["F"]["noisy_mean_slice_thickness"]) == pytest.approx(2.0, abs=0.05)
    assert float(rows["M"]["noisy_mean_slice_thickness"]) == pytest.approx(17 / 3, abs=0.05)
    assert rows["O"]["noisy_mean_slice_thickness"] == ""  # no patients: no mean
    budget = dp.PrivacyBudget(None, tmp_path / ".medveil" / "catalog.sqlite", name="cohort")
    assert [round(e.epsilon, 6) for e in budget.ledger()] == [2000.0, 1000.0, 1000.0]


def test_cap_on_cells_per_patient(tmp_path: Path) -> None:
    rows = [("P1", "CT", "F", "60-64", 1.0, 1), ("P1", "MR", "F", "60-64", 1.0, 1)]
    catalog = make_catalog(tmp_path, rows)
    budget = dp.PrivacyBudget(1e6, catalog, name="cohort")
    one = stats.compute(catalog, ["modality"], 1000, budget, rng=dp.insecure_rng(1))
    assert sum(r["noisy_count"] for r in one["rows"]) == 1  # one patient, one cell
    two = stats.compute(catalog, ["modality"], 1000, budget, cap=2, rng=dp.insecure_rng(1))
    got = {r["modality"]: r["noisy_count"] for r in two["rows"]}
    assert got["CT"] == 1 and got["MR"] == 1
    assert two["count_noise"]["scale"] == pytest.approx(2 / 1000)  # sensitivity = cap


def _spent(root: Path) -> float:
    return dp.PrivacyBudget(None, root / ".medveil" / "catalog.sqlite", name="cohort").spent


@pytest.mark.parametrize("column", ["manufacturer", "body_part", "study_year"])
def test_column_without_domain_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str
) -> None:
    make_catalog(tmp_path)
    rc = main(["stats", str(tmp_path), "--epsilon", "1", "--total-epsilon", "4",
               "--by", f"sex,{column}"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert f"{column} have no public domain" in err
    assert f"--domain {column}=" in err and "--allow-data-domain" in err  # the remedies
    assert "ACME" not in err and "CHEST" not in err  # no label of the data is shown
    assert _spent(tmp_path) == 0


def test_public_domain_from_option_or_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_catalog(tmp_path)
    base = ["stats", str(tmp_path), "--epsilon", "1000", "--total-epsilon", "4000"]
    rc = main([*base, "--by", "manufacturer", "--domain", "manufacturer=ACME,OTHERCO"])
    out, err = capsys.readouterr()
    assert rc == 0 and "NOT" not in out + err and "OTHERCO" in out
    domains = tmp_path / "domains.toml"
    domains.write_text('[domains]\nstudy_year = "2019..2021"\nbody_part = ["HEAD"]\n')
    out_json = tmp_path / "r.json"
    rc = main([*base, "--by", "study_year,body_part", "--domain-file", str(domains),
               "--json", str(out_json)])  # fmt: skip
    assert rc == 0
    release = json.loads(out_json.read_text())
    counts = {(r["study_year"], r["body_part"]): r["noisy_count"] for r in release["rows"]}
    assert set(counts) == {
        (y, b) for y in ("2019", "2020", "2021", "(other)", "") for b in ("HEAD", "(other)", "")
    }
    assert counts[("2020", "(other)")] == 6  # CHEST is outside the public domain
    assert release["dp"] is True


def test_allow_data_domain_says_not_dp_and_charges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_catalog(tmp_path)
    out_json = tmp_path / "r.json"
    rc = main(["stats", str(tmp_path), "--epsilon", "1", "--total-epsilon", "4",
               "--by", "manufacturer", "--allow-data-domain", "--json", str(out_json)])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0
    assert out.startswith("NOT DIFFERENTIALLY PRIVATE") and "NOT DIFFERENTIALLY PRIVATE" in err
    release = json.loads(out_json.read_text())
    assert release["dp"] is False and release["domain_from_data"] == ["manufacturer"]
    assert [r["manufacturer"] for r in release["rows"]] == ["ACME"]
    assert _spent(tmp_path) == 1.0  # charged like any other query
    catalog = tmp_path / ".medveil" / "catalog.sqlite"
    labels = [e.label for e in dp.PrivacyBudget(None, catalog, name="cohort").ledger()]
    assert labels == ["stats counts by manufacturer (NOT DP: domain from the data)"]


def test_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(tmp_path), "--epsilon", "1", "--by", "sex"]) == 2
    assert "no cohort catalog" in capsys.readouterr().err
    make_catalog(tmp_path)
    assert main(["stats", str(tmp_path), "--epsilon", "1", "--by", "sex"]) == 2
    assert "total epsilon" in capsys.readouterr().err
    base = ["stats", str(tmp_path), "--epsilon", "1", "--total-epsilon", "3"]
    assert main([*base, "--by", "path"]) == 2
    assert main([*base, "--by", "sex", "--mean", "slice_thickness"]) == 2
    assert main([*base, "--by", "sex", "--mean", "size", "--bounds", "5,1"]) == 2
    assert main([*base, "--by", "sex", "--mean", "size", "--bounds", "0,nan"]) == 2
    assert main([*base, "--by", "sex", "--mean", "size", "--bounds=-inf,inf"]) == 2
    assert main([*base, "--by", "sex", "--domain", "sex=F,M", "--domain", "path=x"]) == 2
    assert main([*base, "--by", "study_year", "--domain", "study_year=2024..2010"]) == 2
    assert (
        dp.PrivacyBudget(None, tmp_path / ".medveil" / "catalog.sqlite", name="cohort").spent == 0
    )


def test_unusable_epsilon_charges_nothing(tmp_path: Path) -> None:
    make_catalog(tmp_path)
    assert main(["stats", str(tmp_path), "--epsilon", "1e-20", "--total-epsilon", "3",
                 "--by", "sex"]) == 2  # fmt: skip
    budget = dp.PrivacyBudget(None, tmp_path / ".medveil" / "catalog.sqlite", name="cohort")
    assert budget.spent == 0
    b = dp.PrivacyBudget(1.0)
    with pytest.raises(ValueError):
        dp.noisy_count(3, 1e-20, budget=b)
    with pytest.raises(ValueError):
        dp.add_laplace([1.0, float("inf")], 1.0, 0.5, budget=b)
    assert b.spent == 0


def test_on_a_catalog_written_by_the_archive_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: `medveil deid --demo` writes the catalog, `medveil stats` reads it."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(32)))
    secret.chmod(0o600)  # key files open to others are refused
    out = tmp_path / "out"
    assert main(["deid", "--demo", str(out), "--secret-file", str(secret), "--workers", "1",
                 "--quiet"]) == 0  # fmt: skip
    con = sqlite3.connect(out / ".medveil" / "catalog.sqlite")
    patients = con.execute("SELECT COUNT(DISTINCT patient_pseudonym) FROM instances").fetchone()
    bands = {b for (b,) in con.execute("SELECT DISTINCT age_band FROM instances")}
    con.close()
    assert bands <= set(stats.BUILTIN_DOMAINS["age_band"]) | {""}  # the labels we expect
    release_path = tmp_path / "r.json"
    assert main(["stats", str(out), "--epsilon", "1000", "--total-epsilon", "1000",
                 "--by", "modality,sex,age_band", "--json", str(release_path)]) == 0  # fmt: skip
    release = json.loads(release_path.read_text())
    assert release["warnings"] == []
    assert sum(r["noisy_count"] for r in release["rows"]) == patients[0]
    assert not any(r["age_band"] == "(other)" and r["noisy_count"] for r in release["rows"])
    capsys.readouterr()
