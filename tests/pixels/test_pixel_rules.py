"""The TOML rule format: parsing, validation, matching semantics."""

from __future__ import annotations

import pydicom
import pytest
from medveil.errors import PolicyError
from medveil.pixels.rules import RuleSet, attribute_text, parse_attr, parse_condition
from pydicom.dataset import FileMetaDataset

from .helpers import RULES_TOML


def _ds(**kw: object) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_load_and_match(tmp_path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES_TOML)
    rs = RuleSet.load(path)
    assert [r.id for r in rs.rules] == ["test-acme"]
    assert rs.rules[0].regions == ((0, 12, 4, 60, 0, None), (40, 52, 70, 90, 1, 3))
    hit = _ds(Manufacturer="ACME Medical", ManufacturerModelName="Veil 3000")
    assert [r.id for r in rs.matching(hit)] == ["test-acme"]
    assert rs.matching(_ds(Manufacturer="ACME", ManufacturerModelName="veil 3000")) == []
    assert rs.matching(_ds(ManufacturerModelName="Veil 3000")) == []


@pytest.mark.parametrize(
    ("cond", "value", "expected"),
    [
        ({"equals": "US"}, "US", True),
        ({"equals": "US"}, "USX", False),
        ({"equals": "us", "ignore_case": True}, "US", True),
        ({"prefix": "Veil"}, "Veil 3000", True),
        ({"prefix": "veil"}, "Veil 3000", False),
        ({"suffix": "3000"}, "Veil 3000", True),
        ({"contains": "il 3"}, "Veil 3000", True),
        ({"contains": "IL 3"}, "Veil 3000", False),
        ({"contains": "IL 3", "ignore_case": True}, "Veil 3000", True),
        ({"regex": r"^Veil \d+$"}, "Veil 3000", True),
        ({"regex": r"^veil"}, "Veil 3000", False),
        ({"regex": r"^veil", "ignore_case": True}, "Veil 3000", True),
        ({"present": True}, "x", True),
        ({"present": False}, "x", False),
    ],
)
def test_leaf_operators(cond: dict, value: str, expected: bool) -> None:
    c = parse_condition({"attr": "ManufacturerModelName", **cond})
    assert c.matches(_ds(ManufacturerModelName=value)) is expected


def test_combinators_and_missing_attribute() -> None:
    c = parse_condition(
        {
            "all": [
                {
                    "any": [
                        {"attr": "Modality", "equals": "US"},
                        {"attr": "Modality", "equals": "XC"},
                    ]
                },
                {"not": {"attr": "BurnedInAnnotation", "equals": "NO"}},
            ]
        }
    )
    assert c.matches(_ds(Modality="US"))  # missing BurnedInAnnotation reads as ""
    assert c.matches(_ds(Modality="XC", BurnedInAnnotation="YES"))
    assert not c.matches(_ds(Modality="XC", BurnedInAnnotation="NO"))
    assert not c.matches(_ds(Modality="CT"))
    absent = parse_condition({"attr": "Modality", "present": False})
    assert absent.matches(_ds()) and not absent.matches(_ds(Modality="CT"))


def test_attribute_text_like_ctp() -> None:
    ds = _ds(Rows=512, ImageType=["DERIVED", "SECONDARY"], WindowWidth="1")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.ImplementationVersionName = "MINDRAY_1"
    assert attribute_text(ds, parse_attr("Rows")) == "512"
    assert attribute_text(ds, parse_attr("(0028,0010)")) == "512"
    assert attribute_text(ds, parse_attr("ImageType")) == "DERIVED\\SECONDARY"
    assert attribute_text(ds, parse_attr("WindowWidth")) == "1"
    assert attribute_text(ds, parse_attr("ImplementationVersionName")) == "MINDRAY_1"
    assert attribute_text(ds, parse_attr("Manufacturer")) is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[[rule]]\nmatch = { attr = 'Modality', equals = 'US' }\nregions = []", "id"),
        (
            "[[rule]]\nid='a'\nmatch = { attr = 'Modality', equals = 'US' }\nregions = []",
            "non-empty 'regions'",
        ),
        (
            "[[rule]]\nid='a'\nmatch = { attr = 'NoSuchKeyword', equals = 'US' }\n"
            "regions = [{ rows = [0, 1], cols = [0, 1] }]",
            "unknown DICOM keyword",
        ),
        (
            "[[rule]]\nid='a'\nmatch = { attr = 'Rows', equals = 512 }\n"
            "regions = [{ rows = [0, 1], cols = [0, 1] }]",
            "must be a string",
        ),
        (
            "[[rule]]\nid='a'\nmatch = { attr = 'Rows', equals = '1', contains = '1' }\n"
            "regions = [{ rows = [0, 1], cols = [0, 1] }]",
            "exactly one",
        ),
        (
            "[[rule]]\nid='a'\nmatch = { attr = 'Rows', equals = '1' }\n"
            "regions = [{ rows = [5, 1], cols = [0, 1] }]",
            "start <= stop",
        ),
        (
            "[[rule]]\nid='a'\nmatch = { attr = 'Rows', regex = '(' }\n"
            "regions = [{ rows = [0, 1], cols = [0, 1] }]",
            "bad regex",
        ),
        ("[[rule]]\nid='a'\nid='b'", "not valid TOML"),
    ],
)
def test_invalid_rules_name_the_problem(toml: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        RuleSet.loads(toml)


def test_duplicate_ids_rejected() -> None:
    one = RuleSet.loads(RULES_TOML)
    with pytest.raises(PolicyError, match="duplicate"):
        RuleSet.loads(RULES_TOML + RULES_TOML)
    with pytest.raises(PolicyError, match="duplicate"):
        one + one
    assert len(RuleSet.default() + one) == len(RuleSet.default()) + 1


def test_to_toml_round_trips() -> None:
    rs = RuleSet.loads(RULES_TOML)
    again = RuleSet.loads(rs.to_toml())
    assert again.rules == rs.rules
