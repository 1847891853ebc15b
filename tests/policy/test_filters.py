"""[filter] rules: which instances are processed at all, counted by the rule that excluded them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance, filter_verdict
from medveil.errors import PolicyError
from medveil.policy.presets import load_policy, policy_from_text, policy_to_toml
from medveil.policy.schema import Policy
from medveil.run.archive import deidentify_archive
from pydicom.dataset import Dataset

from tests.engine.conftest import SECRET, base_dataset, part10, quiet

POLICY = """
[[filter.exclude]]
label = "structured reports"
tests = [{ field = "Modality", op = "equals", value = "SR" }]

[[filter.exclude]]
label = "scouts and screen captures"
tests = [
  { field = "SeriesDescription", op = "contains", value = "^(scout|localizer)" },
  { field = "ImageType", op = "equals", value = "SECONDARY", join = "or" },
]

[[filter.exclude]]
label = "burned-in text"
tests = [{ field = "BurnedInAnnotation", op = "equals", value = "YES" }]
"""


def instance(number: int, **values: str) -> Dataset:
    """A CT instance with its own SOP Instance UID and the given header values."""
    ds = base_dataset()
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7.100.{number}"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def verdict(policy_text: str, ds: Dataset) -> str | None:
    """The rule that excludes ds under a policy's filters, or None."""
    return filter_verdict(ds, policy_from_text(policy_text).filters)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),
        ({"Modality": "SR"}, "exclude[0]"),
        ({"Modality": "SRX"}, None),  # equals is the whole value, not a part
        ({"SeriesDescription": "Scout 3 plane"}, "exclude[1]"),  # regex, any case
        ({"SeriesDescription": "Chest after scout"}, None),  # anchored at the start
        ({"ImageType": "DERIVED\\SECONDARY"}, "exclude[1]"),  # one value of several
        ({"ImageType": "ORIGINAL\\PRIMARY"}, None),
        ({"BurnedInAnnotation": "YES"}, "exclude[2]"),
        ({"BurnedInAnnotation": "NO"}, None),
        ({"Modality": "SR", "BurnedInAnnotation": "YES"}, "exclude[0]"),  # the first rule
    ],
)
def test_exclude_rules(values: dict[str, str], expected: str | None) -> None:
    assert verdict(POLICY, instance(1, **values)) == expected


def test_include_keeps_only_matching_instances() -> None:
    text = r"""
[[filter.include]]
[[filter.include.tests]]
field = "SOPClassUID"
op = "matches"
value = '1\.2\.840\.10008\.5\.1\.4\.1\.1\.2(\.1)?'
[[filter.include]]
tests = [{ field = "Modality", op = "equals", value = "MR" }]
[[filter.exclude]]
tests = [{ field = "SeriesDescription", op = "present" }]
"""
    ct = instance(1)
    assert verdict(text, ct) is None
    us = instance(2, SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1", Modality="US")
    assert verdict(text, us) == "include"
    mr = instance(3, SOPClassUID="1.2.840.10008.5.1.4.1.1.4", Modality="MR")
    assert verdict(text, mr) is None
    assert verdict(text, instance(4, SeriesDescription="x")) == "exclude[0]"


def test_and_or_missing_empty_and_not() -> None:
    text = """
[[filter.exclude]]
tests = [
  { field = "Modality", op = "equals", value = "CT" },
  { field = "(0008,103E)", op = "missing" },
]
[[filter.exclude]]
tests = [
  { field = "StudyDescription", op = "empty" },
  { field = "Modality", op = "notequals", value = "CT", join = "and" },
]
[[filter.exclude]]
tests = [{ field = "Manufacturer", op = "notcontains", value = "acme" }]
"""
    with_series = {"SeriesDescription": "axial", "Manufacturer": "ACME Medical"}
    assert verdict(text, instance(1, Manufacturer="ACME")) == "exclude[0]"
    assert verdict(text, instance(1, **with_series)) is None
    mr = instance(1, Modality="MR", StudyDescription="", **with_series)
    assert verdict(text, mr) == "exclude[1]"
    assert verdict(text, instance(1, SeriesDescription="axial")) == "exclude[2]"


@pytest.mark.parametrize(
    ("body", "problem", "line"),
    [
        ('[[filter.exclude]]\ntests = [{ field = "Nope", op = "equals", value = "x" }]', "Nope", 2),
        (
            '[[filter.exclude]]\ntests = [{ field = "Modality", op = "like", value = "x" }]',
            "like",
            2,
        ),
        ('[[filter.exclude]]\ntests = [{ field = "Modality", op = "equals" }]', "needs a value", 2),
        (
            '[[filter.exclude]]\ntests = [{ field = "Modality", op = "contains", value = "(" }]',
            "regular",
            2,
        ),
        ("[[filter.exclude]]\ntests = []", "no tests", 2),
        ("[filter]\nsometimes = []", "unknown filter list", 2),
    ],
)
def test_bad_filters_name_the_line(body: str, problem: str, line: int) -> None:
    with pytest.raises(PolicyError, match=problem) as err:
        Policy.from_toml("[dates]\nshift_days = 30\n" + body, source="p.toml")
    assert f"p.toml:{line + 2}:" in str(err.value)  # the line that holds the mistake


def test_excluded_instance_is_not_processed() -> None:
    engine = Deidentifier(policy_from_text(POLICY), SECRET)
    with quiet():
        result = clean_instance(engine, bytearray(part10(instance(1, Modality="SR"))), "x")
        kept = clean_instance(engine, bytearray(part10(instance(2))), "y")
    assert (result.status, result.reason, result.parts, result.row) == (
        "excluded",
        "exclude[0]",
        [],
        {},
    )
    assert kept.status == "written"


def write_inputs(folder: Path) -> None:
    """12 SR, 3 scouts, 2 burned-in and 5 plain CT instances."""
    folder.mkdir()
    n = 0
    for count, values in (
        (12, {"Modality": "SR"}),
        (3, {"SeriesDescription": "LOCALIZER"}),
        (2, {"BurnedInAnnotation": "YES"}),
        (5, {}),
    ):
        for _ in range(count):
            n += 1
            (folder / f"{n:03d}.dcm").write_bytes(part10(instance(n, **values)))


def test_cli_run_counts_excluded(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_inputs(src)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, "utf-8")
    secret = tmp_path / "secret"
    secret.write_text(SECRET.hex())
    secret.chmod(0o600)
    cmd = [sys.executable, "-m", "medveil", "deid", str(src), str(out), "--quiet"]
    cmd += ["--policy", str(policy), "--secret-file", str(secret), "--workers", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / ".medveil" / "summary.json").read_text())
    assert summary["excluded"] == {"exclude[0]": 12, "exclude[1]": 3, "exclude[2]": 2}
    assert (summary["written"], summary["quarantined"], summary["files_in"]) == (5, 0, 22)
    assert len(list(out.rglob("*.dcm"))) == 5


def test_api_run_counts_excluded_and_resume_keeps_them(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_inputs(src)
    text = '[[filter.include]]\ntests = [{ field = "Modality", op = "equals", value = "SR" }]\n'
    summary = deidentify_archive(src, out, policy=policy_from_text(text), secret=SECRET, workers=1)
    assert dict(summary.excluded) == {"include": 10}
    assert (summary.written, summary.quarantined, summary.exit_code) == (12, 0, 0)


def test_filters_of_presets_and_imports_load(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(POLICY, "utf-8")
    policy = load_policy(path)
    assert [r.name for r in policy.filters] == ["exclude[0]", "exclude[1]", "exclude[2]"]
    assert policy.filters[1].label == "scouts and screen captures"
    assert load_policy("research").filters == ()


def test_resolved_policy_keeps_its_filters() -> None:
    policy = policy_from_text(POLICY)
    again = policy_from_text(policy_to_toml(policy))
    assert again.filters == policy.filters


PASSING = """
[[filter.exclude]]
tests = [{ field = "Modality", op = "equals", value = "SR" }]
[[filter.exclude]]
tests = [{ field = "SeriesDescription", op = "contains", value = "^never" }]
"""


def test_real_secondary_capture_is_excluded() -> None:
    from pydicom.data import get_testdata_file

    data = Path(get_testdata_file("MR_small.dcm")).read_bytes()  # ImageType DERIVED\SECONDARY
    with quiet():
        result = clean_instance(Deidentifier(policy_from_text(POLICY), SECRET), data, "mr")
    assert (result.status, result.reason) == ("excluded", "exclude[1]")


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm"]
)
def test_included_files_are_cleaned_as_without_filters(name: str) -> None:
    """Reading the header for the filters changes nothing of what an included file becomes."""
    from pydicom.data import get_testdata_file

    data = Path(get_testdata_file(name)).read_bytes()
    plain = Deidentifier(Policy(), SECRET)
    filtered = Deidentifier(policy_from_text(PASSING), SECRET)
    with quiet():
        want = clean_instance(plain, bytearray(data), name)
        got = clean_instance(filtered, bytearray(data), name)
    assert got.status == want.status == "written", got.reason
    assert got.data == want.data and got.row == want.row
