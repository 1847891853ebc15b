"""IS/DS values are no hiding place: text in them is searched, numbers compared whole."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.policy.schema import Policy
from medveil.verify import verify_archive
from medveil.verify.numbers import MIN_NUMBER_TERM, is_numeric_text, number_forms
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from tests.verify import factory as f

NUMERIC_MRN = "10045678"


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**12), 10**12))
def test_numbers_read_as_numeric(x: float) -> None:
    assert is_numeric_text(repr(x).encode() if isinstance(x, float) else str(x).encode())


@pytest.mark.parametrize("text", [b"Doe", b"12 mm", b"1.5\\N/A", b"0x1F", b"\xc3\xa9"])
def test_text_is_not_numeric(text: bytes) -> None:
    assert not is_numeric_text(text)


def test_number_forms() -> None:
    assert number_forms([b" 10045678 "]) == {NUMERIC_MRN}
    assert number_forms([b"1.0045678E+07"]) == {NUMERIC_MRN}
    assert number_forms([b"+10045678.0\\3"]) == {NUMERIC_MRN, "10045678.0"} - {"10045678.0"}
    # Short numbers never count: a series number equal to a short ID means nothing.
    assert number_forms([b"1001\\77"]) == set()
    assert len("9" * MIN_NUMBER_TERM) == MIN_NUMBER_TERM
    assert number_forms([("9" * MIN_NUMBER_TERM).encode()]) == {"9" * MIN_NUMBER_TERM}


def _set(ds: Dataset, values: dict[str, object], path: Path) -> Path:
    """Set (possibly invalid) values and save: pydicom warns about text in a DS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword, value in values.items():
            text = "\\".join(value) if isinstance(value, list) else str(value)
            raw = text.encode("latin-1") + b" " * (len(text) % 2)
            tag = Tag(keyword)
            ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
        return Path(f.save(ds, path))


def _original(tmp_path: Path) -> Path:
    ds = f.original()
    ds.PatientID = NUMERIC_MRN
    root = tmp_path / "orig"
    f.save(ds, root / "ct1.dcm")
    return root


def _verify_output(tmp_path: Path, root: Path, **values: str) -> set[str]:
    out = tmp_path / "out"
    _set(f.clean_output(), dict(values), out / "x.dcm")
    report = verify_archive(root, out, engine="regex", hash_key=b"test key")
    return {x.path for x in report.findings}


def test_verify_finds_ids_in_numbers(tmp_path: Path) -> None:
    root = _original(tmp_path)
    paths = _verify_output(
        tmp_path,
        root,
        AcquisitionNumber=NUMERIC_MRN,
        SeriesNumber=f.BIRTH,
        SliceThickness="Doeling",
    )
    assert {"(0020,0012)", "(0020,0011)", "(0018,0050)"} <= paths


def test_verify_ignores_ordinary_numbers(tmp_path: Path) -> None:
    root = _original(tmp_path)
    paths = _verify_output(tmp_path, root, SeriesNumber="1001", SliceThickness="2.5")
    assert not {"(0020,0011)", "(0018,0050)"} & paths


def _cleaned(**values: str) -> str:
    ds: Dataset = f.original()
    ds.PatientID = NUMERIC_MRN
    path = _set(ds, dict(values), Path("/tmp") / f"medveil-numbers-{id(values)}.dcm")
    try:
        raw = bytearray(path.read_bytes())
    finally:
        path.unlink()
    result = clean_instance(Deidentifier(Policy(), secret=b"n" * 32), raw, "x")
    return f"{result.status}: {result.reason}"


@pytest.mark.parametrize(
    "values",
    [
        {"AcquisitionNumber": NUMERIC_MRN},
        {"SeriesNumber": f.BIRTH},
        {"SliceThickness": "Doeling Janette"},
        {"PixelSpacing": ["0.5", "Doeling"]},
    ],
)
def test_post_check_quarantines_ids_in_numbers(values: dict[str, str]) -> None:
    verdict = _cleaned(**values)
    assert verdict.startswith("quarantined: post-check"), verdict


def test_post_check_releases_ordinary_numbers() -> None:
    verdict = _cleaned(SeriesNumber="1001", AcquisitionNumber="77", SliceThickness="2.5")
    assert verdict.startswith("written"), verdict
