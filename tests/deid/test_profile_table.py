"""Every row of PS3.15 Table E.1-1 is exercised: the dataset gets the table's action."""

from __future__ import annotations

import csv
from importlib import resources

import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.decide import OPTIONAL_SEQUENCES
from medveil.policy.schema import Policy
from medveil.policy.standard import Option, parse_tag_pattern, resolve_combined
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .conftest import SECRET

ROWS = list(
    csv.DictReader(
        resources.files("medveil.data").joinpath("ps315_e1_1.csv").read_text("utf-8").splitlines()
    )
)
SAMPLE = {
    "PN": "Roe^Richard",
    "LO": "SECRET LO",
    "SH": "SECRETSH",
    "CS": "SECRETCS",
    "AE": "SECRETAE",
    "DA": "20200315",
    "TM": "101010",
    "DT": "20200315101010",
    "UI": "1.2.3.4.5.6.7",
    "AS": "045Y",
    "DS": "12.5",
    "IS": "42",
    "US": 7,
    "SS": -7,
    "UL": 7,
    "SL": -7,
    "FL": 1.5,
    "FD": 2.5,
    "ST": "scan of Roe ok",
    "LT": "scan of Roe ok",
    "UT": "scan of Roe ok",
    "UC": "SECRET UC",
    "UR": "http://example.org/x",
    "OB": b"\x01\x02",
    "OW": b"\x01\x02",
    "AT": 0x00100010,
    "UN": b"\x01\x02",
    "OF": b"\x00\x00\x80\x3f",
    "OD": b"\x00" * 8,
    "OL": b"\x01\x00\x00\x00",
}
PSEUDONYMIZED = {"PatientID", "PatientName", "AccessionNumber", "StudyID"}
OPTION_SETS = [()] + [(o,) for o in Option if o.column]


def single_tag_rows():
    for row in ROWS:
        if not row["keyword"] or "x" in row["tag"].lower().replace("0x", ""):
            continue
        tag = tag_for_keyword(row["keyword"])
        if tag is None:
            continue
        yield row, tag


def build(row, tag) -> tuple[Dataset, str, object]:
    vr = dictionary_VR(tag).split(" or ")[0]
    ds = Dataset()
    ds.PatientID = "PID-0001"
    ds.PatientName = "Roe^Richard"  # the identity Clean Descriptors must remove from text
    if vr == "SQ":
        item = Dataset()
        item.CodeMeaning = "meaning"
        value = Sequence([item])
    else:
        value = SAMPLE[vr]
    ds.add_new(tag, vr, value)
    return ds, vr, value


def expected_action(row, options) -> str:
    action = row["basic_profile"]
    for opt in options:
        if row[opt.column]:
            action = row[opt.column]
    return action


@pytest.mark.parametrize(
    "options", OPTION_SETS, ids=lambda o: "+".join(x.name.lower() for x in o) or "basic"
)
def test_every_row_gets_its_action(options) -> None:
    policy = Policy(options=tuple(options), pseudonymized=())
    engine = Deidentifier(policy, SECRET)
    checked = 0
    for row, tag in single_tag_rows():
        if row["keyword"] in ("PatientID", "PatientName"):
            continue  # the date-offset key of the fixture
        ds, vr, original = build(row, tag)
        engine.apply(ds, check=False)
        action = expected_action(row, options)
        if "/" in action:
            action = resolve_combined(
                action,
                vr=vr,
                in_std_comp_iod=row["in_std_comp_iod"] == "Y",
                empty=False,
                mode="conservative",
            )
        if action == "D" and tag in OPTIONAL_SEQUENCES:
            action = "X"  # the IOD allows removal; a dummy item would not conform
        where = f"{row['tag']} {row['keyword']} {action}"
        if action == "X":
            assert tag not in ds, where
        elif action == "Z":
            assert tag in ds and ds[tag].is_empty, where
        elif action == "K":
            assert tag in ds and ds[tag].value == original, where
        elif action == "D":
            assert tag in ds and not ds[tag].is_empty, where
            if vr not in ("SQ",):
                assert ds[tag].value != original or (
                    vr in ("US", "SS", "UL", "SL", "FL", "FD") and original == 0
                ), where
        elif action == "U":
            assert str(ds[tag].value).startswith("2.25."), where
        elif action == "C":
            value = ds[tag].value if tag in ds else None
            if vr in ("DA", "DT"):
                assert value and value != original and len(value) == len(original), where
            elif vr in ("ST", "LT", "UT", "LO", "SH", "UC", "CS") and "Roe" in str(original):
                assert "Roe" not in str(value) and "scan" in str(value), where
            elif vr == "AE":
                assert value and value != original, where
        else:
            pytest.fail(f"unexpected action {action} for {where}")
        checked += 1
    assert checked > 600  # 656 rows minus masks, the private row and 1 tag unknown to pydicom


def test_pseudonymized_identifiers_replaced_not_emptied(secret) -> None:
    ds = Dataset()
    ds.PatientID = "PID-1"
    ds.PatientName = "Doe^Jane"
    ds.AccessionNumber = "ACC12345"
    ds.StudyID = "STUDY77"
    Deidentifier(Policy(), secret).apply(ds, check=False)
    for kw, orig in [
        ("PatientID", "PID-1"),
        ("PatientName", "Doe^Jane"),
        ("AccessionNumber", "ACC12345"),
        ("StudyID", "STUDY77"),
    ]:
        value = str(ds.data_element(kw).value)
        assert value and value != orig
    assert len(ds.StudyID) <= 16 and len(ds.AccessionNumber) <= 16  # SH limit


def _overlay_dataset() -> Dataset:
    ds = Dataset()
    for group in (0x5000, 0x5002, 0x501E):
        ds.add_new((group << 16) | 0x3000, "OW", b"\x00\x01")
        ds.add_new((group << 16) | 0x0005, "US", 16)
    for group in (0x6000, 0x6002, 0x601E):
        ds.add_new((group << 16) | 0x3000, "OW", b"\x00\x01")  # overlay data
        ds.add_new((group << 16) | 0x4000, "LT", "comment Doe")  # overlay comments
        ds.add_new((group << 16) | 0x0010, "US", 8)  # overlay rows: not in the table
        ds.add_new((group << 16) | 0x1500, "LO", "Doe overlay")  # overlay label
        ds.add_new((group << 16) | 0x0022, "LO", "by Doe")  # overlay description
    ds.PatientName = "Doe^John"
    return ds


@pytest.mark.parametrize("options", [(), (Option.CLEAN_GRAPHICS,), (Option.CLEAN_PIXEL_DATA,)])
def test_overlay_groups_go_whole(secret, options) -> None:
    # OverlayData removed (or cleaned, which a bitmap cannot be) takes its whole group:
    # no label or description text, no Overlay Plane module without its data.
    ds = _overlay_dataset()
    Deidentifier(Policy(options=options, pseudonymized=()), secret).apply(ds, check=False)
    tags = {int(t) for t in ds.keys()}
    assert not any(0x5000 <= t >> 16 <= 0x50FF for t in tags)
    assert not any(0x6000 <= t >> 16 <= 0x60FF for t in tags)


def test_overlay_groups_kept_whole_when_the_policy_keeps_overlays(secret) -> None:
    policy = Policy.from_toml('[elements]\n"(60xx,3000)" = "K"\n')
    ds = _overlay_dataset()
    Deidentifier(policy, secret).apply(ds, check=False)
    for group in (0x6000, 0x6002, 0x601E):
        assert ds[(group << 16) | 0x3000].value == b"\x00\x01"
        assert ds[(group << 16) | 0x0010].value == 8
        assert "Doe" not in str(ds[(group << 16) | 0x1500].value)  # text kept, cleaned
        assert ds[(group << 16) | 0x1500].value.strip() == "overlay"
        assert "Doe" not in str(ds[(group << 16) | 0x0022].value)
        assert (group << 16) | 0x4000 not in ds  # retired comments: the table's X
    assert policy.compile().keeps_overlays
    assert not Policy().compile().keeps_overlays


def test_parse_tag_pattern() -> None:
    assert parse_tag_pattern("(0010,0010)") == (0x0010, 0xFFFF, 0x0010, 0xFFFF)
    assert parse_tag_pattern("(60xx,4000)") == (0x6000, 0xFF00, 0x4000, 0xFFFF)
    assert parse_tag_pattern("(50xx,xxxx)") == (0x5000, 0xFF00, 0x0000, 0x0000)
    with pytest.raises(ValueError, match="not a tag"):
        parse_tag_pattern("(0010,001)")


@pytest.mark.parametrize(
    ("code", "vr", "in_iod", "empty", "expected"),
    [
        ("X/Z", "LO", True, False, "Z"),
        ("X/Z", "LO", False, False, "X"),
        ("X/Z", "LO", True, True, "Z"),
        ("X/D", "LO", True, False, "D"),
        ("X/D", "LO", False, False, "X"),
        ("X/D", "LO", True, True, "D"),
        ("Z/D", "LO", True, False, "D"),
        ("Z/D", "LO", True, True, "Z"),
        ("Z/D", "LO", False, False, "Z"),
        ("X/Z/D", "DA", True, False, "D"),
        ("X/Z/D", "DA", True, True, "Z"),
        ("X/Z/D", "DA", False, False, "X"),
        ("X/Z/U*", "SQ", True, False, "K"),
        ("X/Z/U*", "UI", True, False, "U"),
        ("X/Z/U*", "LO", True, False, "Z"),
    ],
)
def test_combined_code_resolution(code, vr, in_iod, empty, expected) -> None:
    assert (
        resolve_combined(code, vr=vr, in_std_comp_iod=in_iod, empty=empty, mode="conservative")
        == expected
    )


def test_combined_minimal_mode_removes() -> None:
    for code in ("X/Z", "X/D", "X/Z/D"):
        assert (
            resolve_combined(code, vr="LO", in_std_comp_iod=True, empty=False, mode="minimal")
            == "X"
        )
    assert (
        resolve_combined("Z/D", vr="LO", in_std_comp_iod=True, empty=False, mode="minimal") == "Z"
    )
