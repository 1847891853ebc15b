"""Reading raw elements directly gives what pydicom's decoding gives."""

from __future__ import annotations

import warnings

import pydicom
from medveil.peek import peek, raw_text
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.multival import MultiValue

from tests.conftest import bundled_test_files

TEXT_VRS = {"AE", "CS", "LO", "PN", "SH", "UC", "DA", "DT", "TM", "UI"}


def test_raw_text_matches_pydicom_on_bundled_files() -> None:
    compared = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in bundled_test_files():
            try:
                ds = pydicom.dcmread(path, force=True)
                items = list(ds._dict.items())
            except Exception:
                continue
            for _tag, elem in items:
                if not isinstance(elem, RawDataElement) or elem.VR not in TEXT_VRS:
                    continue
                try:
                    decoded = convert_raw_data_element(
                        elem, encoding=ds._character_set, ds=ds
                    ).value
                except Exception:
                    continue
                mine = raw_text(ds, elem)
                if mine is None:
                    continue  # declined: pydicom decodes these (ISO 2022 and the like)
                expected = (
                    [str(v) for v in decoded]
                    if isinstance(decoded, (list, MultiValue))
                    else ([] if decoded in (None, "") else [str(decoded)])
                )
                assert [v.strip() for v in mine] == [v.strip() for v in expected], (path, elem.tag)
                compared += 1
    assert compared > 500


def test_peek_does_not_convert() -> None:
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert peek(ds, 0x00280010) == 128
    assert isinstance(ds._dict[0x00280010], RawDataElement)
    assert peek(ds, 0x00990099, "absent") == "absent"
