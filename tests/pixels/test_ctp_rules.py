"""The CTP DicomPixelAnonymizer converter and the shipped default rule set."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.pixels.ctp import (
    METHODS,
    CtpSyntaxError,
    convert,
    main,
    parse_script,
    parse_signature,
)
from medveil.pixels.rules import AllOf, AnyOf, Condition, Leaf, Not, RuleSet, parse_attr
from pydicom.datadict import dictionary_VR
from pydicom.dataset import FileMetaDataset

DATA = resources.files("medveil").joinpath("data")
SCRIPT = DATA.joinpath("ctp_pixel_rules.txt").read_text(encoding="utf-8")
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "ctp_pixel_rules.txt"


def test_script_is_the_verbatim_ctp_file() -> None:
    raw = DATA.joinpath("ctp_pixel_rules.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == (
        "553a86e6717ff373310313df280898b7056c508ca1ac15d95d8496b77ffb0d60"
    )
    if SHARED.exists():
        assert SHARED.read_bytes() == raw


def test_every_signature_and_rectangle_converted() -> None:
    parsed = parse_script(SCRIPT)
    assert len(parsed) == 52
    assert sum(len(r.rects) for r in parsed) == 62
    # Independent counts straight from the text: braces and (x,y,w,h) groups after them.
    assert SCRIPT.count("{") == SCRIPT.count("}") == 52
    rs = RuleSet.default()
    assert len(rs) == 52
    assert sum(len(r.regions) for r in rs.rules) == 62
    for src, rule in zip(parsed, rs.rules, strict=True):
        assert rule.match == src.condition
        assert rule.regions == tuple((y, y + h, x, x + w, 0, None) for x, y, w, h in src.rects)


def test_shipped_toml_is_the_converter_output(tmp_path: Path) -> None:
    out = tmp_path / "rules.toml"
    assert main([str(DATA.joinpath("ctp_pixel_rules.txt")), str(out)]) == 0
    shipped = DATA.joinpath("pixel_rules_ctp.toml").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == shipped
    assert "RSNA Public License" in shipped


def test_known_rules_spot_checks() -> None:
    rs = {r.description.split(" (CTP")[0]: r for r in RuleSet.default().rules}
    atl = rs["US / ATL"]
    assert atl.regions == ((0, 40, 40, 240, 0, None), (0, 16, 240, 430, 0, None))
    vitrea = rs["CT / VITREA / Stent Planning Worksheet"].match
    assert isinstance(vitrea, AllOf) and isinstance(vitrea.children[1], AnyOf)
    siemens_pet = rs["PET/CT / SIEMENS / This is an overlay"].match
    assert siemens_pet == Leaf("(6000,0022)", "contains", "Siemens MedCom Object Graphics", True)


def test_parser_precedence_not_and_tags() -> None:
    c = parse_signature('!Modality.equals("CT") + [0008,0070].startsWith("GE") * Rows.equals("5")')
    assert c == AnyOf(
        (
            Not(Leaf("Modality", "equals", "CT")),
            AllOf((Leaf("(0008,0070)", "prefix", "GE"), Leaf("Rows", "equals", "5"))),
        )
    )
    c2 = parse_signature(
        '(Manufacturer.matches("x+") + Modality.endsWithIgnoreCase("t")) * !(Rows.equals("1"))'
    )
    ds = pydicom.Dataset()
    ds.Manufacturer, ds.Modality, ds.Rows = "xxx", "CT", 2
    assert c2.matches(ds)
    ds.Manufacturer = "xxy"  # matches() is a whole-value match, as in Java
    assert c2.matches(ds)  # still true through the endsWithIgnoreCase branch
    ds.Modality = "MR"
    assert not c2.matches(ds)
    ds.Rows = 1
    ds.Manufacturer = "xxx"
    assert not c2.matches(ds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{ Modality.equals("CT") }', "no \\(x,y,w,h\\) rectangle"),
        ('{ Modality.equals("CT") (0,0,1,1)', "never closed"),
        ('{ Modality.frobnicate("CT") } (0,0,1,1)', "unsupported method"),
        ('{ Modality.equals("CT) } (0,0,1,1)', "unterminated string"),
        ('{ Modality.equals("CT") * } (0,0,1,1)', "expected a condition"),
        ('{ Modality equals("CT") } (0,0,1,1)', "expected DOT"),
        ('{ [00080,0070].equals("CT") } (0,0,1,1)', "bad tag"),
        ('{ NotAKeyword.equals("CT") } (0,0,1,1)', "unknown DICOM keyword"),
        ('{ Modality.equals("CT") # } (0,0,1,1)', "line 1, column 25"),
    ],
)
def test_syntax_errors_point_at_the_problem(text: str, message: str) -> None:
    with pytest.raises(CtpSyntaxError, match=message):
        parse_script(text)


# -- every converted rule matches a dataset built for it, and not one that violates it --------

_NUMERIC_VRS = {"US", "SS", "UL", "SL"}


def _satisfy(cond: Condition, out: dict[str, str]) -> None:
    """Choose attribute values that make ``cond`` true (handles the shapes CTP rules use)."""
    if isinstance(cond, AllOf):
        for c in cond.children:
            _satisfy(c, out)
    elif isinstance(cond, AnyOf):
        _satisfy(cond.children[0], out)
    elif isinstance(cond, Leaf):
        v = str(cond.value)
        vr = dictionary_VR(parse_attr(cond.attr))
        if cond.op == "contains" and vr not in _NUMERIC_VRS | {"CS", "DS", "IS"}:
            # Surround the text, and flip its case when the match ignores case.
            v = "x" + (v.swapcase() if cond.ignore_case else v) + "y"
        elif cond.op == "contains":
            v = f"Q{v}Q" if vr == "CS" else v
        assert cond.attr not in out or out[cond.attr] == v, f"conflict on {cond.attr}"
        out[cond.attr] = v
    else:
        raise AssertionError(f"CTP rules were not expected to need {type(cond).__name__}")


def _dataset(values: dict[str, str]) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    for key, v in values.items():
        tag = parse_attr(key)
        vr = dictionary_VR(tag)
        target = ds.file_meta if tag.group == 2 else ds
        target.add_new(tag, vr, int(v) if vr in _NUMERIC_VRS else v)
    return ds


def _violation(key: str) -> str:
    return "7" if dictionary_VR(parse_attr(key)) in _NUMERIC_VRS | {"DS", "IS"} else "NOPE"


@pytest.mark.parametrize("rule", RuleSet.default().rules, ids=lambda r: r.id)
def test_each_converted_rule_matches_its_witness_and_not_violations(rule) -> None:
    values: dict[str, str] = {}
    _satisfy(rule.match, values)
    assert rule.matches(_dataset(values)), values
    for key in values:
        bad = dict(values)
        bad[key] = _violation(key)
        assert not rule.matches(_dataset(bad)), f"{rule.id} still matches with {key}={bad[key]}"
        del bad[key]
        assert not rule.matches(_dataset(bad)), f"{rule.id} matches without {key}"


def test_convert_records_provenance() -> None:
    rs = convert(SCRIPT, source_name="x.script")
    assert rs.meta["source_sha256"] == hashlib.sha256(SCRIPT.encode()).hexdigest()
    assert rs.meta["converted_from"] == "x.script"


def test_strings_may_hold_braces_parentheses_and_quotes() -> None:
    rules = parse_script(
        "*****\nUS\n*****\n"
        'Odd device (model "X")\n'
        '{ SeriesDescription.contains("{dose} (x,y,w,h) \\"q\\"") } (1,2,3,4)\n'
        "remark (not a rectangle)\n"
    )
    assert len(rules) == 1 and rules[0].rects == ((1, 2, 3, 4),)
    assert rules[0].condition == Leaf("SeriesDescription", "contains", '{dose} (x,y,w,h) "q"')
    assert (rules[0].section, rules[0].vendor) == ("US", 'Odd device (model "X")')


# -- property: render random expression trees as CTP text, parse them back --------------------

_OPS = {v: k for k, v in METHODS.items() if v[0] != "regex"}  # (op, ignore_case) -> method
_ATTRS = ["Modality", "Manufacturer", "Rows", "ImageType", "(0008,1090)", "(6000,0022)"]


def _to_ctp(c: Condition) -> str:
    if isinstance(c, Leaf):
        name = f"[{c.attr[1:-1]}]" if c.attr.startswith("(") else c.attr
        text = str(c.value).replace("\\", "\\\\").replace('"', '\\"')
        return f'{name}.{_OPS[(c.op, c.ignore_case)]}("{text}")'
    if isinstance(c, Not):
        return "!" + _wrap(c.child)
    sep = " * " if isinstance(c, AllOf) else " + "
    return sep.join(_wrap(k) for k in c.children)


def _wrap(c: Condition) -> str:
    return _to_ctp(c) if isinstance(c, (Leaf, Not)) else f"( {_to_ctp(c)} )"


_leaves = st.builds(
    Leaf,
    st.sampled_from(_ATTRS),
    st.sampled_from(["equals", "contains", "prefix", "suffix"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8),
    st.booleans(),
)
_trees = st.recursive(
    _leaves,
    lambda kids: st.one_of(
        st.builds(Not, kids),
        st.lists(kids, min_size=2, max_size=3).map(lambda k: AllOf(tuple(k))),
        st.lists(kids, min_size=2, max_size=3).map(lambda k: AnyOf(tuple(k))),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(_trees)
def test_parser_round_trips_random_expressions(tree: Condition) -> None:
    text = "*****\nX\n*****\n{ " + _to_ctp(tree) + " }\n (0,0,1,1)\n"
    (rule,) = parse_script(text)
    assert rule.condition == tree
