"""Named presets: load by name, show, validate, and what each one promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from medveil.errors import PolicyError
from medveil.policy.hipaa import assess
from medveil.policy.importers.ctp import import_ctp
from medveil.policy.presets import PRESETS, load_policy, policy_to_toml, preset_text
from medveil.policy.schema import Policy
from medveil.policy.standard import Option

from tests.policy_import.helpers import TCIA_BASIC, cli

PRESET_DIR = Path(__file__).parents[2] / "python" / "medveil" / "policy" / "presets"


def _rules(policy: Policy) -> dict[str, str]:
    return {r.selector: r.action for r in policy.compile().rules()}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_loads_and_shows(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    policy = load_policy(name)
    assert policy.source == f"preset:{name}"
    assert cli(["policy", "show", name]) == 0
    shown = capsys.readouterr().out
    again = Policy.from_toml(shown, source="shown")
    for f in ("options", "unknown_elements", "pseudonymized", "shift_days", "overrides", "keep"):
        assert getattr(again, f) == getattr(policy, f), f
    assert _rules(again) == _rules(policy)


def test_research_is_the_default() -> None:
    research, default = load_policy("research"), Policy.default()
    for f in ("options", "pseudonymized", "shift_days", "unknown_elements", "pixel_text"):
        assert getattr(research, f) == getattr(default, f), f
    assert _rules(research) == _rules(default)
    assert load_policy(None).source == default.source


def test_basic_is_the_basic_profile_alone() -> None:
    basic = load_policy("basic")
    assert basic.options == () and basic.pseudonymized == ()
    rules = basic.compile()
    assert rules.rule_for(0x00100020).action == "Z/D"  # PatientID as Table E.1-1 says
    assert rules.rule_for(0x00080020).action == "Z"  # StudyDate emptied, not shifted


def test_tcia_has_the_options_tcias_own_script_declares() -> None:
    declared = import_ctp([TCIA_BASIC]).claimed
    assert declared is not None
    assert set(load_policy("tcia").options) == set(declared)


def test_safe_harbor_leaves_nothing_open() -> None:
    """Every Safe Harbor category is handled: P and Q by [filter] rules that exclude the
    classes that can show a face or carry a voice (medveil does not deface)."""
    status = {s.category[0]: s for s in assess(load_policy("safe-harbor").compile())}
    open_ = {k for k, s in status.items() if s.open_because}
    assert open_ == set()
    for k in ("P", "Q"):
        assert status[k].rules, k
        assert any("not recognised" in n for n in status[k].notes), k
    assert not load_policy("safe-harbor").pseudonymized  # nothing only pseudonymised


def test_profile_hipaa_view_of_the_preset_file(capsys: pytest.CaptureFixture[str]) -> None:
    # `medveil profile` reads a path today; with load_policy it reads the name too.
    assert cli(["profile", "--policy", str(PRESET_DIR / "safe-harbor.toml"), "--hipaa"]) == 0
    out = capsys.readouterr().out
    opened = [line for line in out.splitlines() if "OPEN" in line]
    assert opened == []


def test_preset_files_are_the_ones_shipped() -> None:
    for name in PRESETS:
        assert preset_text(name) == (PRESET_DIR / f"{name}.toml").read_text()


def test_unknown_name_lists_presets() -> None:
    with pytest.raises(PolicyError, match=r"not a preset .*safe-harbor"):
        load_policy("hipaa-ish")


def test_a_file_beats_a_preset_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("basic").write_text('[profile]\noptions = ["clean_descriptors"]\n')
    assert load_policy("basic").options == (Option.CLEAN_DESCRIPTORS,)


def test_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(policy_to_toml(load_policy("tcia")))
    assert cli(["policy", "validate", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[profile]\noptions = []\n\n[dates]\nshift_days = "a year"\n')
    assert cli(["policy", "validate", str(bad)]) == 2
    assert f"{bad}:5:" in capsys.readouterr().err
    assert cli(["policy", "validate", str(tmp_path / "missing.toml")]) == 2
