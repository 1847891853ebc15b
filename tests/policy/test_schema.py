"""Policy values are type-checked; every mistake names the file and the line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medveil.engine.dataset import Deidentifier
from medveil.errors import PolicyError
from medveil.policy.choices import CombinedCodes, PixelMask, PixelText, UnknownElements
from medveil.policy.schema import Policy
from medveil.policy.standard import Option
from pydicom.dataset import Dataset

SECRET = bytes(range(32))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # A shift of 0 days leaves dates as they were while the output says MODIFIED.
        ("[dates]\nshift_days = 0\n", 2, "from 1 to 36500.*retain_longitudinal_full_dates"),
        ("[dates]\nshift_days = '30'\n", 2, "shift_days must be an integer"),
        ("[dates]\nshift_days = true\n", 2, "shift_days must be an integer"),
        ('[pixels]\nallow_unmatched_burned_in = "false"\n', 2, "true or false"),
        ("[pixels]\nallow_unmatched_burned_in = 0\n", 2, "true or false"),
        ('[clean_descriptors]\npatterns = "MRN"\n', 2, "patterns must be a list"),
        ("[clean_descriptors]\npatterns = [1]\n", 2, "patterns must be a list"),
        ("[clean_descriptors]\nreplacement = 0\n", 2, "replacement must be a string"),
        ('[pixels]\nrules = "x.toml"\n', 2, "rules must be a list"),
        ('[pixels]\n\nrules = ["no-such-rules.toml"]\n', 3, "no-such-rules.toml"),
        ("[pixels]\npixel_text = 1\n", 2, "pixel_text must be one of"),
        ('[profile]\noptions = "retain_uids"\n', 2, "options must be a list"),
        ('[profile]\nkeep = "PatientAge"\n', 2, "keep must be a list"),
        ('[profile]\ncombined_codes = "lax"\n', 2, "'conservative', 'minimal'"),
        ("[secret]\nfile = 5\n", 2, "file must be a string"),
        ("[pseudonyms]\nprefix = 5\n", 2, "prefix must be a string"),
        ('[elements]\n"ACME:(0010,xx10)" = "K"\n', 2, "group 0010 is even"),
        ('[elements]\n"ACME:(0011,10)" = "K"\n', 2, "Private Creator:\\(gggg,xxee\\)"),
        ('[elements]\n"(0009,1010)" = "K"\n', 2, "needs its creator"),
        ("[elements]\nPatientName = 'X'\n\"(0010,0010)\" = 'K'\n", 3, "given twice"),
        ("[elements]\nInstitutionName = { value = 5 }\n", 2, "needs a string"),
        ("[elements]\nPatientWeight = { value = 'heavy' }\n", 2, "needs a numeric value"),
        ("[elements]\nPatientName = 3\n", 2, "action string or a table"),
        ("[elements]\nPatientName = { action = 3 }\n", 2, "action must be a string"),
        (
            "[elements]\nMedicalAlerts = { action = 'map', table = { A = 1 } }\n",
            2,
            "category strings",
        ),
        (
            "[elements]\nPatientWeight = { action = 'noise', epsilon = 1, sensitivity = 1,"
            " lower = 'a', upper = 2 }\n",
            2,
            "lower and upper must be numbers",
        ),
        # A key that appears in an earlier section is reported where it is wrong.
        ("[profile]\nkeep = ['PatientAge']\n[pixels]\nkeep = 1\n", 4, "unknown setting 'keep'"),
        ("[pseudonyms]\nlength = 20\n[dates]\nlength = 3\n", 4, "unknown setting 'length'"),
        ("[profile]\noptions = []\n[pixels]\nmask = 'x'\n", 4, "mask must be one of"),
        # TOML syntax errors, at the end of the file too, have a line.
        ('[profile]\noptions = ["retain_uids"\n', 2, "Unclosed array"),
        ("[profile]\noptions = \n", 2, "Invalid value"),
        ("[profile\n", 1, "Expected"),
    ],
)
def test_mistakes_name_file_line_and_problem(text, line, message) -> None:
    with pytest.raises(PolicyError, match=message) as err:
        Policy.from_toml(text, source="p.toml")
    assert str(err.value).startswith(f"p.toml:{line}: ")


def test_rule_files_resolve_next_to_the_policy_and_are_checked(tmp_path) -> None:
    (tmp_path / "site.toml").write_text('[[rule]]\nid = "a"\n', "utf-8")
    (tmp_path / "broken.toml").write_text("[[rule]\n", "utf-8")
    (tmp_path / "empty.toml").write_text("[meta]\nname = 'x'\n", "utf-8")
    p = tmp_path / "p.toml"
    p.write_text('[pixels]\nrules = ["site.toml"]\n', "utf-8")
    assert Policy.load(p).pixel_rule_files == (str(tmp_path / "site.toml"),)
    for name, why in (("broken.toml", "broken.toml:1: Expected"), ("empty.toml", "no \\[\\[rule")):
        p.write_text(f'[pixels]\nrules = ["{name}"]\n', "utf-8")
        with pytest.raises(PolicyError, match=why) as err:
            Policy.load(p)
        assert str(err.value).startswith(f"{p}:2: ")


def test_choices_are_enums_with_the_toml_strings() -> None:
    p = Policy.from_toml(
        "[profile]\nunknown_elements = 'remove'\ncombined_codes = 'minimal'\n"
        "[pixels]\npixel_text = 'auto'\nmask = 'identifiers'\n"
    )
    assert p.unknown_elements is UnknownElements.REMOVE
    assert p.combined_codes is CombinedCodes.MINIMAL
    assert p.pixel_text is PixelText.AUTO and p.pixel_mask is PixelMask.IDENTIFIERS
    # The strings still compare, print and serialise as they are written in TOML.
    assert p.combined_codes == "minimal" and f"{p.pixel_text}" == "auto"
    assert json.dumps([p.pixel_mask]) == '["identifiers"]'
    # Built in Python, the strings are turned into the same members; mistakes are refused.
    assert Policy(pixel_text="detect").pixel_text is PixelText.DETECT  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="pixel_text must be one of"):
        Policy(pixel_text="ocr")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="shift_days"):
        Policy(shift_days=0)
    with pytest.raises(PolicyError, match="allow_unmatched_burned_in"):
        Policy(allow_unmatched_burned_in="false")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="clean_patterns must be a sequence of strings"):
        Policy(clean_patterns="MRN")  # type: ignore[arg-type]


def test_a_mask_override_reaches_listed_attributes() -> None:
    policy = Policy.from_toml('[elements]\n"(0010,xxxx)" = "X"\nPatientSex = "K"\n')
    compiled = policy.compile()
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientAge", "PatientWeight"):
        rule = compiled.rule_for(_tag(kw))
        assert rule is not None and rule.action == "X" and rule.decided_by == "policy", kw
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "PID1"
    ds.PatientAge = "045Y"
    ds.PatientSex = "F"
    ds.PatientSpeciesDescription = "canine"  # in no table row: the mask reaches it too
    Deidentifier(policy, SECRET).apply(ds, check=False)
    assert [e.keyword for e in ds if e.tag.group == 0x0010] == ["PatientSex"]


def _tag(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    assert tag is not None
    return tag


def test_check_files_false_validates_the_text_alone() -> None:
    text = '[pixels]\nrules = ["site-devices.toml"]\n'
    with pytest.raises(PolicyError, match=r"site-devices\.toml"):
        Policy.from_toml(text, source="p.toml")
    assert Policy.from_toml(text, check_files=False).pixel_rule_files == ("site-devices.toml",)
    with pytest.raises(PolicyError, match="rules must be a list"):
        Policy.from_toml('[pixels]\nrules = "x.toml"\n', check_files=False)


def test_python_built_policies_get_the_same_checks() -> None:
    p = Policy(options=("retain_uids", Option.CLEAN_DESCRIPTORS))  # type: ignore[arg-type]
    assert p.options == (Option.RETAIN_UIDS, Option.CLEAN_DESCRIPTORS)
    with pytest.raises(PolicyError, match="unknown profile option"):
        Policy(options=("retain_uidz",))  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="exclude each other"):
        Policy(
            options=(
                Option.RETAIN_LONGITUDINAL_FULL_DATES,
                Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,
            )
        )
    with pytest.raises(PolicyError, match="pseudonym_length"):
        Policy(pseudonym_length=8)
    with pytest.raises(PolicyError, match="pseudonym_prefix"):
        Policy(pseudonym_prefix="lower")


# Valid lines per section, and one mistake per section, each a key the other sections
# (or a comment) also spell, so a search by key alone would find the wrong line.
_GOOD = {
    "profile": ['options = ["retain_uids"]', 'keep = ["PatientAge"]'],
    "dates": ["shift_days = 30"],
    "pseudonyms": ['prefix = "MV"', "length = 20"],
    "clean_descriptors": ['replacement = ""', 'patterns = ["x"]'],
    "pixels": ['mask = "all-text"', "rules = []"],
}
_BAD = {
    "profile": ("keep = 1", "keep must be a list"),
    "dates": ("length = 3", "unknown setting 'length'"),
    "pseudonyms": ("keep = 2", "unknown setting 'keep'"),
    "clean_descriptors": ("mask = 3", "unknown setting 'mask'"),
    "pixels": ("keep = []", "unknown setting 'keep'"),
}


@given(
    order=st.permutations(sorted(_GOOD)),
    bad=st.sampled_from(sorted(_BAD)),
    comments=st.booleans(),
)
def test_the_line_is_the_mistakes_whatever_the_layout(order, bad, comments) -> None:
    lines: list[str] = []
    where = 0
    for section in order:
        lines.append(f"[{section}]")
        if comments:
            lines.append(f"# {_BAD[bad][0]}")
        if section == bad:
            lines.append(_BAD[bad][0])
            where = len(lines)
        key = _BAD[bad][0].split()[0]
        lines.extend(line for line in _GOOD[section] if section != bad or line.split()[0] != key)
    with pytest.raises(PolicyError, match=_BAD[bad][1]) as err:
        Policy.from_toml("\n".join(lines) + "\n", source="p.toml")
    assert str(err.value).startswith(f"p.toml:{where}: ")


# ------------------------------------------------------------- compiled cache (issue 20)
def _study_uid_kept(policy: Policy) -> bool:
    """Whether the Dataset engine under policy keeps a Study Instance UID."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.StudyInstanceUID = "1.2.3.4.5.6"
    Deidentifier(policy, SECRET).apply(ds, check=False)
    return str(ds.StudyInstanceUID) == "1.2.3.4.5.6"


def test_replace_of_a_compiled_policy_compiles_its_own_fields():
    """A policy derived with dataclasses.replace never runs under its parent's compilation."""
    import dataclasses

    base = Policy()
    base.compile()
    retained = dataclasses.replace(base, options=(*base.options, Option.RETAIN_UIDS))
    assert retained.compile() is not base.compile()
    assert _study_uid_kept(retained) and not _study_uid_kept(base)
    # Back the other way: a stricter policy derived from a compiled permissive one.
    strict = dataclasses.replace(
        retained, options=tuple(o for o in retained.options if o is not Option.RETAIN_UIDS)
    )
    retained.compile()
    assert not _study_uid_kept(strict)


def test_a_field_set_after_compile_is_compiled_again():
    """Setting a field on a compiled policy gives the next compile() the new field."""
    policy = Policy()
    first = policy.compile()
    assert policy.compile() is first  # cached while nothing changed
    policy.options = (*policy.options, Option.RETAIN_UIDS)
    assert policy.compile() is not first
    assert _study_uid_kept(policy)


def test_pickled_policy_leaves_its_compilation_behind():
    """What travels to a worker is the policy's fields; the worker compiles them itself."""
    import copy
    import pickle

    policy = Policy()
    policy.compile()
    for clone in (pickle.loads(pickle.dumps(policy)), copy.copy(policy)):
        assert clone._compiled is None and clone == policy
        assert clone.compile() is not policy.compile()
