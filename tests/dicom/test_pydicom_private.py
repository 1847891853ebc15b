"""Fail loudly when a pydicom release changes an internal that medveil relies on."""

from __future__ import annotations

import pydicom
from medveil.dicom import pydicom_private as pp
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, RLELossless


def test_raw_element_fields_are_what_medveil_builds() -> None:
    assert RawDataElement._fields == pp.RAW_FIELDS


def test_raw_element_round_trips_through_the_store() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    raw = pp.raw_element(0x00100010, "PN", 8, b"DOE^JANE", implicit=False, little=True)
    pp.elements(ds)[raw.tag] = raw
    assert pp.element(ds, 0x00100010) is raw  # stored as given: not decoded
    assert str(ds.PatientName) == "DOE^JANE"  # and pydicom decodes it on public access
    assert pp.element(ds, 0x00100011) is None


def test_store_holds_raw_elements_after_reading() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert any(isinstance(e, RawDataElement) for e in pp.elements(ds).values())


def test_character_set_is_a_codec_list() -> None:
    ds = pydicom.dcmread(get_charset_files("chrH31.dcm")[0])
    cs = pp.character_set(ds)
    assert isinstance(cs, (str, list))
    assert "iso2022_jp" in (cs if isinstance(cs, list) else [cs])


def test_decoders_cover_the_syntaxes_medveil_cleans() -> None:
    known = set(pp.decodable_syntaxes())
    assert {RLELossless, JPEGBaseline8Bit, JPEGLSLossless, JPEG2000Lossless} <= known
