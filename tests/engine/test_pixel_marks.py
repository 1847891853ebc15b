"""Burned In Annotation and the Clean Pixel Data code after pixel cleaning, on both roads.

PS3.15 E.3.1: when the Clean Pixel Data Option holds for a file, Burned In Annotation
(0028,0301) is NO and the option (code 113101) is in the De-identification Method Code
Sequence. A file it does not hold for (no Pixel Data; a YES file let through unmasked
under allow_unmatched_burned_in) keeps its value and does not list 113101.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.policy.schema import Policy
from pydicom.dataset import Dataset

from .conftest import SECRET, base_dataset, dataset_road, part10, quiet, raw_road

MASK_TOP = """
[[rule]]
id = "test-top-band"
description = "a test device with text in its top 4 rows"
match = { all = [{ attr = "Manufacturer", equals = "MEDVEIL TEST" }] }
regions = [{ rows = [0, 4], cols = [0, 16] }]
"""


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rules") / "mask_top.toml"
    path.write_text(MASK_TOP)
    return str(path)


RULES = Policy(pixel_text="rules")
LET_THROUGH = Policy(pixel_text="rules", allow_unmatched_burned_in=True)


def with_pixels(modality: str = "CT", burned_in: str | None = None, maker: str = "ACME") -> Dataset:
    """A small 8-bit monochrome image of the given modality and manufacturer."""
    ds = base_dataset()
    ds.Modality = modality
    ds.Manufacturer = maker
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256))
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    return ds


def both_roads(
    policy: Policy, ds: Dataset, implicit: bool = False
) -> tuple[Dataset, dict[str, int]]:
    """The output of the Dataset road, after checking the raw road wrote the same bytes."""
    engine = Deidentifier(policy, SECRET)
    data = part10(ds, implicit)
    with quiet():
        by_dataset = dataset_road(engine, data)
        by_raw = raw_road(engine, data)
    assert not isinstance(by_dataset, str), by_dataset
    assert by_raw == by_dataset, "the two engines disagree"
    return pydicom.dcmread(io.BytesIO(by_dataset[0])), by_dataset[1]


def codes(ds: Dataset) -> list[str]:
    return [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


def methods(ds: Dataset) -> list[str]:
    return list(ds.DeidentificationMethod)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("before", [None, "NO"])
def test_clean_class_says_no_and_lists_the_option(before: str | None, implicit: bool) -> None:
    # A CT image that does not say YES: not a class that carries burned-in text, so the
    # option holds with nothing to mask.
    out, _ = both_roads(RULES, with_pixels("CT", before), implicit)
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in codes(out) and "Clean Pixel Data Option" in methods(out)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("unknown", ["keep", "remove"])
def test_masked_yes_file_becomes_no(rule_file: str, unknown: str, implicit: bool) -> None:
    # Masked by a device rule. Under allow-list mode (unknown_elements = "remove") the walk
    # removes (0028,0301); it is written after the walk, so it is there all the same.
    policy = Policy.from_toml(
        f'[profile]\nunknown_elements = "{unknown}"\n'
        f'[pixels]\npixel_text = "rules"\nrules = ["{rule_file}"]\n'
    )
    out, _ = both_roads(policy, with_pixels("US", "YES", "MEDVEIL TEST"), implicit)
    assert out.BurnedInAnnotation == "NO" and "113101" in codes(out)
    assert not any(out.PixelData[: 4 * 16])  # the masked band


def test_file_without_pixels_gets_neither() -> None:
    ds = base_dataset()
    ds.BurnedInAnnotation = "YES"
    out, _ = both_roads(RULES, ds)
    assert out.BurnedInAnnotation == "YES"
    assert "113101" not in codes(out) and "Clean Pixel Data Option" not in methods(out)
    assert "113100" in codes(out)  # the profile itself is still listed


def test_unmasked_yes_file_let_through_keeps_yes_without_the_code() -> None:
    # An ultrasound image that says YES, no rule for it, released under
    # allow_unmatched_burned_in with nothing masked: the option does not hold.
    out, _ = both_roads(LET_THROUGH, with_pixels("US", "YES"))
    assert out.BurnedInAnnotation == "YES"
    assert "113101" not in codes(out)


def test_the_two_mark_kinds_follow_each_file_in_one_engine() -> None:
    # One engine, files of both kinds in turn: the cached templates must not leak across.
    engine = Deidentifier(RULES, SECRET)
    seen = []
    for ds in (with_pixels("CT"), base_dataset(), with_pixels("CT"), base_dataset()):
        data = part10(ds)
        with quiet():
            by_dataset = dataset_road(engine, data)
            by_raw = raw_road(engine, data)
        assert by_raw == by_dataset and not isinstance(by_dataset, str)
        seen.append("113101" in codes(pydicom.dcmread(io.BytesIO(by_dataset[0]))))
    assert seen == [True, False, True, False]
