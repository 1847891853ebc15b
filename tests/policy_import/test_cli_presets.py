"""Every command that takes --policy accepts a preset name, and the new verbs are registered."""

from __future__ import annotations

import pytest
from medveil.cli.main import build_parser, main
from medveil.policy.presets import PRESETS


def test_policy_and_preview_are_subcommands() -> None:
    parser = build_parser()
    for verb in (["policy", "show", "basic"], ["preview", "x.dcm"]):
        assert parser.parse_args(verb).command == verb[0]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_profile_takes_every_preset(preset: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--policy", preset]) == 0
    assert "(0010,0010)" in capsys.readouterr().out


def test_unknown_preset_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--policy", "no-such-preset"]) == 2
    assert "not a preset" in capsys.readouterr().err
