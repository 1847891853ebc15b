"""Reading raw elements directly gives what pydicom's decoding gives."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from medveil.peek import _NOT_PLAIN, peek, plain_value, raw_text
from pydicom.data import DATA_ROOT
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


def test_plain_values_are_pydicoms_values() -> None:
    """Every element peek decodes itself gets the value (and type) pydicom would give."""

    checked = 0
    for path in sorted(Path(DATA_ROOT, "test_files").rglob("*")):
        if not path.is_file():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, force=True)
            except Exception:
                continue
            for owner in (ds, getattr(ds, "file_meta", None) or ds):
                for elem in list(owner._dict.values()):
                    if not isinstance(elem, RawDataElement):
                        continue
                    fast = plain_value(elem)
                    if fast is _NOT_PLAIN:
                        continue
                    try:
                        ref = convert_raw_data_element(
                            elem, encoding=owner._character_set, ds=owner
                        ).value
                    except Exception:
                        continue
                    checked += 1
                    assert (fast, type(fast), str(fast)) == (ref, type(ref), str(ref)), elem.tag
    assert checked > 1000
