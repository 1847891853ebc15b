"""Fail loudly when a pydicom release changes an internal that medveil relies on."""

from __future__ import annotations

import pydicom
import pytest
from medveil.dicom import pydicom_private as pp
from pydicom.charset import convert_encodings
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
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


def test_raw_tuple_builds_the_keyword_element() -> None:
    fields = (BaseTag(0x00100010), "PN", 8, b"DOE^JANE", 12, False, True, True, False)
    built = pp.raw_tuple(fields)
    assert type(built) is RawDataElement
    assert built == pp.raw_element(
        0x00100010, "PN", 8, b"DOE^JANE", value_tell=12, implicit=False, little=True
    )
    assert (built.VR, built.length, built.value_tell, built.is_raw) == ("PN", 8, 12, True)


def test_dataset_view_state_is_what_pydicom_sets() -> None:
    # dataset_over replaces these three of a template's attributes: a renamed one would
    # leave the view with pydicom's default shared between every view.
    assert {"_dict", "_private_blocks", "_pixel_array_opts", "_pixel_id"} <= set(Dataset().__dict__)
    assert isinstance(Dataset.__dict__["_character_set"], property)


def _fresh(path: str) -> Dataset:
    return pydicom.dcmread(path)


def test_dataset_over_reads_like_the_file() -> None:
    path = get_testdata_file("CT_small.dcm")
    store = dict(pp.elements(_fresh(path)))
    assert isinstance(store[BaseTag(0x00100010)], RawDataElement)
    meta = _fresh(path).file_meta
    view = pp.dataset_over(store, implicit=False, file_meta=meta)
    assert pp.elements(view) is store  # the store itself, not a copy
    assert view.file_meta is meta
    read = _fresh(path)
    assert [int(t) for t in view.keys()] == [int(t) for t in read.keys()]
    for elem in read:
        if elem.VR != "SQ":
            assert view[elem.tag].value == elem.value, elem.keyword
    assert view.PatientName == "CompressedSamples^CT1"
    assert "PatientName" in view and view.get("PatientAge") == "000Y"
    assert "EthnicGroup" not in view and view.get("EthnicGroup") is None
    assert isinstance(store[BaseTag(0x00100010)], DataElement)  # decoded on public access


def test_dataset_over_reads_implicit_elements_by_the_dictionary() -> None:
    raw = pp.raw_element(0x00100010, None, 8, b"DOE^JANE", implicit=True, little=True)
    view = pp.dataset_over({raw.tag: raw}, implicit=True)
    assert view.original_encoding == (True, True)
    assert view["PatientName"].VR == "PN" and view.PatientName == "DOE^JANE"


def test_dataset_over_decodes_with_the_character_set() -> None:
    for path in (get_charset_files("chrH31.dcm")[0], get_charset_files("chrFrenMulti.dcm")[0]):
        read = _fresh(path)
        view = pp.dataset_over(dict(pp.elements(_fresh(path))))
        assert pp.character_set(view) == pp.character_set(read)
        assert str(view.PatientName) == str(read.PatientName)
    view = pp.dataset_over(
        {
            BaseTag(0x00080005): pp.raw_element(
                0x00080005, "CS", 10, b"ISO_IR 192", implicit=False, little=True
            ),
            BaseTag(0x00100010): pp.raw_element(
                0x00100010, "PN", 12, "Buc^Jérôme".encode(), implicit=False, little=True
            ),
        }
    )
    assert pp.character_set(view) == convert_encodings("ISO_IR 192")
    assert view.PatientName == "Buc^Jérôme"


def test_forget_private_blocks_drops_a_removed_creator() -> None:
    ds = Dataset()
    ds.private_block(0x0011, "ACME", create=True).add_new(0x01, "LO", "x")
    assert ds.private_block(0x0011, "ACME").get_tag(0x01) == 0x00111001
    del pp.elements(ds)[BaseTag(0x00110010)]  # behind pydicom's back, as the engines do
    ds.private_block(0x0011, "ACME")  # still found: pydicom's cache remembers the block
    pp.forget_private_blocks(ds)
    with pytest.raises(KeyError):
        ds.private_block(0x0011, "ACME")
