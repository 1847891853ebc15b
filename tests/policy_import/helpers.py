"""Shared helpers for the policy import tests: data paths and a CLI runner."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from medveil.cli import policy as policy_cli
from medveil.cli import preview as preview_cli
from medveil.cli import profile as profile_cli

DATA = Path(__file__).parent / "data"
CTP_EXAMPLE = DATA / "example-ctp-dicom-anonymizer.script"
PS315_BASIC = DATA / "DICOM-PS3.15-Basic.script"
PS315_RLMD = DATA / "DICOM-PS3.15-RetainLongitudinalModifiedDates.script"
TCIA_BASIC = DATA / "TCIA-Basic.script"
TCIA_ADDITIONS = DATA / "TCIA-BasicAdditions.script"
DEID_EXAMPLE = DATA / "example.deid"


def cli(argv: list[str]) -> int:
    """Run `medveil <argv>` for the subcommands under test (registered as main.py would)."""
    parser = argparse.ArgumentParser(prog="medveil")
    sub = parser.add_subparsers(dest="command")
    for module in (policy_cli, preview_cli, profile_cli):
        module.add_subparser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def ct_small() -> Path:
    """pydicom's CT test file (GE CT with patient data and private groups)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    if path is None:  # pragma: no cover - pydicom ships it
        pytest.skip("pydicom test data missing")
    return Path(str(path))
