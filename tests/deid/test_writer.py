"""The fast writer gives the same bytes as pydicom's writer after de-identification."""

from __future__ import annotations

import io
import warnings

import pydicom
import pytest
from medveil.dicom.io import read_dataset, write_dataset
from medveil.dicom.writer import fast_write, prepare_meta
from medveil.engine.dataset import Deidentifier
from medveil.errors import DicomInputError, MedveilError
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file

from tests.conftest import bundled_test_files

from .conftest import SECRET


def test_fast_writer_matches_pydicom_on_every_test_file() -> None:
    engine = Deidentifier(Policy(allow_unmatched_burned_in=True), SECRET)
    same = generic = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in bundled_test_files():
            try:
                a, b = read_dataset(path, path), read_dataset(path, path)
                engine.apply(a)
                engine.apply(b)
                slow = write_dataset(a)
            except MedveilError:
                continue
            prepare_meta(b)
            try:
                fast, pixel_at = fast_write(b)
            except DicomInputError:
                generic += 1
                continue
            assert fast == slow, path
            if "PixelData" in b:
                assert fast[pixel_at : pixel_at + 4] in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
            same += 1
    assert same >= 60 and generic <= 5


def test_preamble_is_zeroed(tmp_path) -> None:
    path = get_testdata_file("CT_small.dcm")
    ds = read_dataset(path, path)
    ds.preamble = b"SECRET" * 21 + b"XX"
    Deidentifier(Policy(), SECRET).apply(ds)
    prepare_meta(ds)
    data, _ = fast_write(ds)
    assert data[:128] == b"\x00" * 128
    assert write_dataset(ds)[:128] == b"\x00" * 128


@pytest.mark.parametrize("name", ["image_dfl.dcm"])
def test_deflated_goes_to_generic_writer(name) -> None:
    path = get_testdata_file(name)
    ds = read_dataset(path, path)
    Deidentifier(Policy(allow_unmatched_burned_in=True), SECRET).apply(ds)
    prepare_meta(ds)
    with pytest.raises(DicomInputError, match="deflated"):
        fast_write(ds)


def test_meta_names_medveil_as_the_implementation() -> None:
    path = get_testdata_file("CT_small.dcm")
    ds = read_dataset(path, path)
    ds.file_meta.ImplementationVersionName = "SCANNER_X_9"
    Deidentifier(Policy(), SECRET).apply(ds)
    prepare_meta(ds)
    data, _ = fast_write(ds)
    assert b"SCANNER_X_9" not in data
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.file_meta.ImplementationVersionName.startswith("MEDVEIL_")
