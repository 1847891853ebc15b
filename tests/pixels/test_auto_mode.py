"""pixel_text = "auto": detection on burned-in text classes, rules on the rest (issue 19).

Also the Clean Pixel Data outcome (BurnedInAnnotation after masking, PS3.15 E.3.1) and
compressed pixels held as a memoryview, as the raw-byte engine hands them over.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from medveil.errors import QuarantineError
from medveil.pixels.cleaner import (
    CLEAN_PIXEL_DATA_CODE,
    PixelCleaner,
    burned_in_annotation,
    deidentification_codes,
    text_classes,
)
from medveil.pixels.rules import RuleSet
from pydicom.dataelem import RawDataElement
from pydicom.uid import RLELossless

from tests.pixels.helpers import CT_IMAGE, US_IMAGE, make_dataset
from tests.textdetect.render import covered, draw_text, speckle

XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
NO_RULES = RuleSet(rules=())


def _with_text(rows: int = 200, cols: int = 320) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    img = speckle(rows, cols, seed=3)
    boxes = [
        draw_text(img, "DOE^JOHN 1961-03-14", 6, 8, size=14),
        draw_text(img, "ID SB7300421", 26, 8, size=14),
    ]
    return img[None], boxes


def _dataset(sop: str, modality: str, *, burned: str | None = None) -> tuple[pydicom.Dataset, list]:
    img, boxes = _with_text()
    ds = make_dataset(img, sop_class=sop, modality=modality, manufacturer="Nobody")
    if burned is not None:
        ds.BurnedInAnnotation = burned
    return ds, boxes


@pytest.mark.parametrize(
    ("sop", "modality", "burned"),
    [
        (US_IMAGE, "US", None),  # ultrasound, no header hint
        (CT_IMAGE, "SC", None),  # secondary capture by modality
        (XA_IMAGE, "XA", "NO"),  # angiography: screened whatever the header says
        (CT_IMAGE, "CT", "YES"),  # a CT that says it carries text
    ],
)
def test_auto_masks_text_classes_without_a_rule(
    sop: str, modality: str, burned: str | None
) -> None:
    ds, boxes = _dataset(sop, modality, burned=burned)
    assert text_classes(ds)
    rep = PixelCleaner(NO_RULES, pixel_text="auto").clean(ds)
    assert rep.screened and rep.regions
    for box in boxes:
        assert covered(rep.regions, box, 0)
    out = ds.pixel_array
    for r0, r1, c0, c1 in boxes:
        assert (out[r0:r1, c0:c1] == 0).all()
    assert rep.clean_pixel_data
    assert burned_in_annotation(rep) == "NO"
    assert deidentification_codes(rep) == [CLEAN_PIXEL_DATA_CODE]


def test_auto_leaves_ct_to_the_rules() -> None:
    """A CT without BurnedInAnnotation YES is not screened: its pixels stay as they are."""
    ds, _ = _dataset(CT_IMAGE, "CT")
    before = bytes(ds.PixelData)
    assert text_classes(ds) == []
    rep = PixelCleaner(NO_RULES, pixel_text="auto").clean(ds)
    assert not rep.screened and rep.regions == []
    assert bytes(ds.PixelData) == before
    # The class does not carry burned-in text: E.3.1 holds and BurnedInAnnotation becomes NO.
    assert burned_in_annotation(rep) == "NO"


def test_rules_mode_still_quarantines_and_does_not_screen_xa() -> None:
    ds, _ = _dataset(US_IMAGE, "US")
    with pytest.raises(QuarantineError, match="typically has burned-in text"):
        PixelCleaner(NO_RULES, pixel_text="rules").clean(ds)
    xa, _ = _dataset(XA_IMAGE, "XA")
    rep = PixelCleaner(NO_RULES, pixel_text="rules").clean(xa)
    assert not rep.screened and rep.regions == []


def test_allowed_unmatched_text_keeps_burned_in_yes_and_drops_the_option_code() -> None:
    ds, _ = _dataset(US_IMAGE, "US", burned="YES")
    rep = PixelCleaner(NO_RULES, pixel_text="rules", allow_unmatched_burned_in=True).clean(ds)
    assert rep.regions == [] and not rep.clean_pixel_data
    assert burned_in_annotation(rep) is None
    assert deidentification_codes(rep) == []


def test_burned_in_yes_with_no_text_found_is_quarantined_in_auto() -> None:
    img = np.zeros((1, 64, 64), dtype=np.uint8)
    ds = make_dataset(img, sop_class=US_IMAGE, modality="US", manufacturer="Nobody")
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(QuarantineError, match="found no text"):
        PixelCleaner(NO_RULES, pixel_text="auto").clean(ds)


def test_one_bit_text_class_cannot_be_screened_and_is_quarantined() -> None:
    ds, _ = _dataset(US_IMAGE, "US")
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelData = b"\x00" * (ds.Rows * ds.Columns // 8)
    with pytest.raises(QuarantineError, match="cannot screen 1-bit"):
        PixelCleaner(NO_RULES, pixel_text="auto").clean(ds)


def _memoryview_rle(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds`` RLE-compressed, read back with its Pixel Data value as a memoryview."""
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    back = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    elem = back._dict[0x7FE00010]
    assert isinstance(elem, RawDataElement)
    back._dict[0x7FE00010] = elem._replace(value=memoryview(bytearray(elem.value)))
    return back


def test_compressed_memoryview_pixels_are_decoded_and_masked() -> None:
    """Issue 19 item 1: pydicom called .read on a memoryview and the file was quarantined."""
    ds, boxes = _dataset(US_IMAGE, "US")
    back = _memoryview_rle(ds)
    rep = PixelCleaner(NO_RULES, pixel_text="auto").clean(back)
    assert rep.screened and all(covered(rep.regions, b, 0) for b in boxes)
    assert rep.transfer_syntax_out == RLELossless and rep.reencoded
    out = back.pixel_array
    for r0, r1, c0, c1 in boxes:
        assert (out[r0:r1, c0:c1] == 0).all()


def test_compressed_memoryview_left_alone_when_nothing_is_found() -> None:
    """No text: the caller's own element object is put back, so nothing is rewritten."""
    img = np.zeros((1, 64, 64), dtype=np.uint8)
    ds = make_dataset(img, sop_class=US_IMAGE, modality="US", manufacturer="Nobody")
    back = _memoryview_rle(ds)
    elem = back._dict[0x7FE00010]
    rep = PixelCleaner(NO_RULES, pixel_text="auto").clean(back)
    assert rep.screened and rep.regions == []
    assert back._dict[0x7FE00010] is elem
