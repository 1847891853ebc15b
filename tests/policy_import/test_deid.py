"""`medveil policy import-deid`: recipes convert to a policy plus a [filter] table."""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.errors import PolicyError
from medveil.policy.importers.deid import expand_field, import_deid
from medveil.policy.presets import filters_of, load_policy
from medveil.policy.standard import Option

from tests.policy_import.helpers import DEID_EXAMPLE, cli, ct_small

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECRET = bytes(range(32))


def test_example_recipe_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deid.toml"
    assert cli(["policy", "import-deid", str(DEID_EXAMPLE), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "decide which instances are processed" in printed
    assert cli(["policy", "validate", str(out)]) == 0
    data = tomllib.loads(out.read_text())
    assert data["profile"]["options"] == ["retain_longitudinal_modified_dates"]
    assert data["dates"]["shift_days"] == 31
    assert set(data["profile"]["pseudonymize"]) == {"PatientID", "PatientName"}
    el = data["elements"]
    assert el["InstitutionName"] == {"value": "RESEARCH SITE"}
    assert el["PatientWeight"] == {"value": 70}
    assert el["PatientSex"] == "K" and el["PatientAge"] == "K"
    assert "AccessionNumber" not in el  # BLANK = the table's Z already


def test_filters_keep_deid_semantics() -> None:
    draft = import_deid(DEID_EXAMPLE)
    exclude = draft.filters["exclude"]
    assert [e["label"] for e in exclude] == ["Burned In Annotation", "Secondary capture"]
    assert exclude[0]["tests"] == [
        {"field": "BurnedInAnnotation", "op": "contains", "value": "YES"},
        {"field": "ImageType", "op": "contains", "value": "SAVE", "join": "or"},
    ]
    assert draft.filters["include"][0]["tests"][1] == {
        "field": "ImageType",
        "op": "notcontains",
        "value": "SECONDARY",
        "join": "and",
    }
    gray = draft.filters["graylist"][0]
    assert gray["coordinates"] == [[0, 0, 640, 50]]


def test_filters_survive_the_file(tmp_path: Path) -> None:
    out = tmp_path / "deid.toml"
    out.write_text(import_deid(DEID_EXAMPLE).to_toml())
    assert filters_of(out) == import_deid(DEID_EXAMPLE).filters
    load_policy(out)  # the rest of the policy still validates


def test_bad_filter_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[profile]\noptions = []\n\n[[filter.exclude]]\nlabel = "x"\n'
        'tests = [{ field = "Modality", op = "resembles", value = "CT" }]\n'
    )
    assert cli(["policy", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6:" in err and "resembles" in err


def test_remove_all_is_allow_list(tmp_path: Path) -> None:
    recipe = tmp_path / "r.deid"
    recipe.write_text("FORMAT dicom\n\n%header\nREMOVE ALL\nKEEP PatientSex\nKEEP SliceThickness\n")
    draft = import_deid(recipe)
    assert draft.unknown_elements == "remove"
    assert draft.keep == ["PatientSex", "SliceThickness"]
    compiled = draft.policy().compile()
    assert not compiled.keeps_unknown(pydicom.datadict.tag_for_keyword("StudyComments") or 0)


def test_keep_wins_over_earlier_and_later_actions(tmp_path: Path) -> None:
    recipe = tmp_path / "r.deid"
    recipe.write_text(
        "FORMAT dicom\n%header\nREMOVE PatientSex\nKEEP PatientSex\nBLANK PatientSex\n"
    )
    assert import_deid(recipe).elements["PatientSex"] == "K"


def test_field_expressions_expand_over_the_dictionary() -> None:
    tags = expand_field("endswith:Date")
    assert tags is not None and 0x00080020 in tags and 0x00100030 in tags
    assert expand_field("(0010,0010)") == [0x00100010]
    assert expand_field("00100020") == [0x00100020]
    assert expand_field("values:cookie_names") is None


def test_jitter_and_replace_on_a_real_file() -> None:
    draft = import_deid(DEID_EXAMPLE)
    assert Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in draft.options
    policy = draft.policy()
    original = pydicom.dcmread(ct_small())
    ds = pydicom.dcmread(ct_small())
    report = Deidentifier(policy, SECRET).apply(ds)
    assert ds.InstitutionName == "RESEARCH SITE"
    assert ds.PatientSex == original.PatientSex
    assert ds.PatientID != original.PatientID and ds.PatientID
    assert 0 < abs(report.date_offset_days) <= 31


def test_not_a_dicom_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "r.deid"
    recipe.write_text("FORMAT nifti\n%header\nREMOVE PatientName\n")
    with pytest.raises(PolicyError, match="only dicom"):
        import_deid(recipe)
    recipe.write_text("%header\nREMOVE PatientName\n")
    with pytest.raises(PolicyError, match="FORMAT dicom"):
        import_deid(recipe)
