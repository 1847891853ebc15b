"""docs/policy.md is generated from the policy schema; a test fails when they drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from medveil.policy import reference
from medveil.policy.choices import PixelText
from medveil.policy.standard import Option

DOCS = Path(__file__).parents[2] / "docs" / "policy.md"


def test_committed_reference_is_the_generated_one() -> None:
    assert DOCS.read_text() == reference.generate(), (
        "docs/policy.md is out of date: run "
        "`python -m medveil.policy.reference --write docs/policy.md`"
    )


def test_every_key_option_choice_and_action_is_documented() -> None:
    text = reference.generate()
    for section in ("profile", "secret", "dates", "pseudonyms", "clean_descriptors", "pixels"):
        for key in reference._known(section):
            assert f"### `{key}`" in text, (section, key)
    for option in Option:
        assert f"##### `{option.name.lower()}`" in text
    for choice in PixelText:
        assert f"`{choice.value}`:" in text


def test_an_undocumented_key_stops_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = dict(reference.KEYS)
    del keys[("dates", "shift_days")]
    monkeypatch.setattr(reference, "KEYS", keys)
    with pytest.raises(reference.ReferenceDrift, match=r"undocumented keys in \[dates\]"):
        reference.generate()


def test_an_undocumented_choice_stops_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    choices = {k: dict(v) for k, v in reference.CHOICES.items()}
    del choices["PixelText"]["auto"]
    monkeypatch.setattr(reference, "CHOICES", choices)
    with pytest.raises(reference.ReferenceDrift, match="PixelText: undocumented auto"):
        reference.generate()


def test_examples_are_valid_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = dict(reference.KEYS)
    doc = keys[("dates", "shift_days")]
    keys[("dates", "shift_days")] = reference.KeyDoc(
        doc.field, doc.what, doc.keeps, doc.risk, "shift_days = -3"
    )
    monkeypatch.setattr(reference, "KEYS", keys)
    with pytest.raises(reference.ReferenceDrift, match="example does not validate"):
        reference.generate()
