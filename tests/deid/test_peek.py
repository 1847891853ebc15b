"""Reading raw elements directly gives what pydicom's decoding gives."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from medveil.dicom.peek import _NOT_PLAIN, peek, plain_value, raw_text
from pydicom.data import DATA_ROOT
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.multival import MultiValue

from tests.conftest import bundled_test_files

TEXT_VRS = {"AE", "CS", "LO", "PN", "SH", "UC", "DA", "DT", "TM", "UI"}


def raw_elements(paths: list[str], with_meta: bool = False):
    """(dataset, raw element, pydicom's decoded value) of every element pydicom can decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            try:
                ds = pydicom.dcmread(path, force=True)
            except Exception:
                continue
            owners = [ds]
            if with_meta and getattr(ds, "file_meta", None) is not None:
                owners.append(ds.file_meta)
            for owner in owners:
                for elem in list(owner._dict.values()):
                    if not isinstance(elem, RawDataElement):
                        continue
                    try:
                        ref = convert_raw_data_element(
                            elem, encoding=owner._character_set, ds=owner
                        ).value
                    except Exception:
                        continue
                    yield owner, elem, ref


def test_raw_text_matches_pydicom_on_bundled_files() -> None:
    compared = 0
    for ds, elem, decoded in raw_elements(bundled_test_files()):
        if elem.VR not in TEXT_VRS:
            continue
        mine = raw_text(ds, elem)
        if mine is None:
            continue  # declined: pydicom decodes these (ISO 2022 and the like)
        expected = (
            [str(v) for v in decoded]
            if isinstance(decoded, (list, MultiValue))
            else ([] if decoded in (None, "") else [str(decoded)])
        )
        assert [v.strip() for v in mine] == [v.strip() for v in expected], elem.tag
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
    paths = [str(p) for p in sorted(Path(DATA_ROOT, "test_files").rglob("*")) if p.is_file()]
    checked = 0
    for _owner, elem, ref in raw_elements(paths, with_meta=True):
        fast = plain_value(elem)
        if fast is _NOT_PLAIN:
            continue
        checked += 1
        assert (fast, type(fast), str(fast)) == (ref, type(ref), str(ref)), elem.tag
    assert checked > 1000
