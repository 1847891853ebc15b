"""Retain Safe Private on both engines: sequences walked, rows of another VR removed.

PS3.15 Table E.3.10-1 lists 55 private sequences: their items are cleaned with the
profile like any other item, never kept verbatim. A listed row whose value is not of the
table's VR (a DS element written as LO holding a name) is not safe and goes.
"""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy
from medveil.policy.standard import Option
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .conftest import SECRET, base_dataset, dataset_road, part10, quiet, raw_road

SAFE = Policy(options=(*Policy().options, Option.RETAIN_SAFE_PRIVATE))
PHILIPS = "Philips Imaging DD 001"  # (2001,xx5f) Stack Sequence is an SQ row
STACK = 0x20011000 | 0x5F
ELSCINT = 0x00E11000 | 0x21  # (00E1,xx21) ELSCINT1 DLP: a DS row
NAME = "Qwertzuiop^Yxcvbnm"


def planted(undefined: bool = True, dlp: tuple[str, str] = ("LO", NAME)) -> Dataset:
    """A CT instance with a safe private sequence holding a name, and a DS row as LO."""
    ds = base_dataset()
    ds.PatientName = NAME
    item = Dataset()
    item.PatientName = NAME  # the default policy gives it a pseudonym
    item.OperatorsName = NAME  # a dummy (D)
    item.SliceThickness = "2.5"  # the profile keeps it
    block = ds.private_block(0x2001, PHILIPS, create=True)
    block.add_new(0x5F, "SQ", Sequence([item]))
    ds[STACK].is_undefined_length = undefined
    ds.private_block(0x00E1, "ELSCINT1", create=True).add_new(0x21, *dlp)
    return ds


def roads(data: bytes) -> tuple[tuple[bytes, dict[str, int]], tuple[bytes, dict[str, int]] | None]:
    """(Dataset road, raw road or None when it declines), asserting they agree."""
    engine = Deidentifier(SAFE, SECRET)
    with quiet():
        by_dataset = dataset_road(engine, data)
        by_raw = raw_road(engine, data)
    assert not isinstance(by_dataset, str), by_dataset
    if by_raw is not None:
        assert by_raw == by_dataset, "the two engines disagree"
    return by_dataset, by_raw


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def cleaned(item: Dataset) -> bool:
    """The item's names were replaced by the profile, not kept."""
    return str(item.PatientName) not in ("", NAME) and item.OperatorsName == "ANONYMIZED"


@pytest.mark.parametrize("implicit", [False, True])
def test_safe_private_sequence_is_walked_and_wrong_vr_row_removed(implicit: bool) -> None:
    data = part10(planted(), implicit)
    (out, actions), by_raw = roads(data)
    assert by_raw is not None, "an SQ written as one takes both roads"
    assert NAME.split("^")[0].encode() not in out
    ds = read(out)
    assert ds[0x20010010].value == PHILIPS  # the creator of a kept block stays
    seq = ds[STACK]
    items = seq.value if seq.VR == "SQ" else pydicom.values.convert_SQ(seq.value, True, True)
    assert len(items) == 1
    assert cleaned(items[0])
    assert float(items[0].SliceThickness) == 2.5
    assert ELSCINT not in ds and 0x00E10010 not in ds  # not safe: no block left
    assert actions["K-safe-private-recurse"] == 1
    assert actions["X-safe-private-vr"] == 1


def test_a_safe_ds_row_of_its_own_vr_is_kept_on_both_roads() -> None:
    (out, actions), by_raw = roads(part10(planted(dlp=("DS", "12.5"))))
    assert by_raw is not None
    assert read(out)[ELSCINT].value == 12.5
    assert actions["K-safe-private"] == 1 and "X-safe-private-vr" not in actions


def test_defined_length_implicit_sequence_is_parsed_as_items() -> None:
    # Implicit VR, defined length: no VR says it is a sequence. The raw engine declines;
    # the Dataset engine parses the value as items and cleans them.
    data = part10(planted(undefined=False), implicit=True)
    (out, actions), by_raw = roads(data)
    assert by_raw is None
    assert b"Qwertzuiop" not in out
    items = read(out)[STACK].value
    assert cleaned(items[0])
    assert actions["K-safe-private-recurse"] == 1


def test_implicit_value_that_is_not_items_is_removed() -> None:
    ds = base_dataset()
    block = ds.private_block(0x2001, PHILIPS, create=True)
    block.add_new(0x5F, "LO", NAME)  # an SQ row holding a name
    # Written as Implicit VR, a name in an SQ row has no VR to give it away.
    data = part10(ds, implicit=True)
    (out, actions), _ = roads(data)
    assert b"Qwertzuiop" not in out and STACK not in read(out)
    assert actions["X-safe-private-vr"] == 1 and "K-safe-private-recurse" not in actions


def test_bytes_that_begin_like_an_item_but_overrun_are_removed() -> None:
    ds = base_dataset()
    body = struct.pack("<HHL", 0x0010, 0x0010, len(NAME)) + NAME.encode()
    value = b"\xfe\xff\x00\xe0" + struct.pack("<L", len(body) + 40) + body
    ds.private_block(0x2001, PHILIPS, create=True).add_new(0x5F, "OB", value)
    (out, actions), _ = roads(part10(ds, implicit=True))
    assert b"Qwertzuiop" not in out and actions["X-safe-private-vr"] == 1


def test_explicit_un_sequence_is_parsed_as_implicit_items() -> None:
    # A PACS without the vendor's dictionary sends the sequence as UN: its value is the
    # items in Implicit VR Little Endian. The raw engine declines; the Dataset engine
    # parses and cleans them.
    name = NAME.encode()
    body = struct.pack("<HHL", 0x0010, 0x0010, len(name)) + name
    items = b"\xfe\xff\x00\xe0" + struct.pack("<L", len(body)) + body
    ds = base_dataset()
    ds.private_block(0x2001, PHILIPS, create=True).add_new(0x5F, "UN", items)
    (out, actions), by_raw = roads(part10(ds))
    assert by_raw is None
    assert b"Qwertzuiop" not in out and actions["K-safe-private-recurse"] == 1
    assert str(read(out)[STACK].value[0].PatientName) not in ("", NAME)


@pytest.mark.parametrize("implicit", [False, True])
def test_pipeline_releases_the_cleaned_file(implicit: bool) -> None:
    # Through the whole pipeline (post-check included), on whichever road takes it.
    data = part10(planted(undefined=not implicit), implicit)
    with quiet():
        result = clean_instance(Deidentifier(SAFE, SECRET), bytearray(data), "input")
    assert result.status == "written", result.reason
    assert b"Qwertzuiop" not in result.data and b"QWERTZUIOP" not in result.data
