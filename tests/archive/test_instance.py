"""clean_instance: a bytearray input (cleaned in place) gives the same file as bytes input."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest
from medveil.engine import instance
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance, raw_engine_of
from medveil.policy.schema import Policy
from medveil.run.demo import demo_rule_file
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

SECRET = bytes(range(32))


def test_in_place_and_copying_paths_agree(demo_files) -> None:
    # Rules only: the test pins the demo rule's band as the only change to the pixels.
    policy = Policy(pixel_text="rules", pixel_rule_files=(str(demo_rule_file()),))
    engine = Deidentifier(policy, SECRET)
    masked = 0
    for raw in demo_files:
        by_copy = clean_instance(engine, bytes(raw))
        in_place = clean_instance(engine, bytearray(raw))
        assert by_copy.status == in_place.status == "written"
        assert by_copy.data == in_place.data
        assert by_copy.row["sha256"] == in_place.row["sha256"]
        ds = pydicom.dcmread(io.BytesIO(in_place.data))
        if ds.Modality == "US":
            before = pydicom.dcmread(io.BytesIO(raw)).pixel_array
            after = ds.pixel_array
            assert not after[:, :8, :, :].any()  # the demo rule's band is blank
            np.testing.assert_array_equal(after[:, 8:], before[:, 8:])  # the rest untouched
            masked += 1
    assert masked == 2


@pytest.mark.parametrize("road", ["dataset", "raw"])
def test_quarantine_reasons_carry_no_values(demo_files, monkeypatch, road) -> None:
    engine = Deidentifier(Policy(pixel_rule_files=(str(demo_rule_file()),)), SECRET)

    def broken(*args, **kwargs):  # an unexpected failure whose message quotes PHI
        raise ValueError("cannot handle 'Fakename^Alice^Q' born 19580704")

    if road == "dataset":
        monkeypatch.setattr(instance, "USE_RAW_ENGINE", False)
        monkeypatch.setattr(engine, "apply", broken)
    else:
        monkeypatch.setattr(raw_engine_of(engine), "apply", broken)
    result = clean_instance(engine, bytes(demo_files[0]))
    assert result.status == "quarantined"
    assert "Fakename" not in result.reason and "19580704" not in result.reason
    assert result.reason.startswith("ValueError: cannot handle")


@pytest.mark.parametrize("road", ["dataset", "raw"])
def test_a_header_value_of_impossible_length_is_quarantined_not_raised(
    demo_files, monkeypatch, road
) -> None:
    """Rows with 3 bytes: the catalog cannot read it, and the file is kept out, not a crash."""
    monkeypatch.setattr(instance, "USE_RAW_ENGINE", road == "raw")
    engine = Deidentifier(Policy(pixel_rule_files=(str(demo_rule_file()),)), SECRET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in the archive's workers: pydicom warns, we decide
        ds = pydicom.dcmread(io.BytesIO(demo_files[0]))
        rows = BaseTag(0x00280010)  # written as these 3 raw bytes
        ds._dict[rows] = RawDataElement(rows, "US", 3, b"\x00\x02\x00", 0, False, True, True, False)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        result = clean_instance(engine, buf.getvalue())
    assert result.status == "quarantined"
    assert result.reason, result


def test_a_declined_file_says_why_without_values(demo_files) -> None:
    """Big endian is the Dataset engine's: the result names the reason, never a value."""
    from pydicom.data import get_testdata_file

    engine = Deidentifier(Policy(), SECRET)
    with open(get_testdata_file("MR_small_bigendian.dcm"), "rb") as f:
        big_endian = f.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = clean_instance(engine, big_endian)
    assert result.status == "written" and result.engine == "dataset"
    assert result.declined == "not a little-endian transfer syntax it covers"
    assert clean_instance(engine, demo_files[0]).engine == "raw"


def _with(demo: bytes, **values: str) -> bytes:
    """A demo file with some top-level values replaced (pydicom writes it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(demo))
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("road", ["dataset", "raw"])
def test_the_catalog_takes_coded_values_only(demo_files, monkeypatch, road) -> None:
    """A Modality or body part that is not a short CS code is left out of the catalog."""
    monkeypatch.setattr(instance, "USE_RAW_ENGINE", road == "raw")
    engine = Deidentifier(Policy(pixel_rule_files=(str(demo_rule_file()),)), SECRET)
    good = clean_instance(engine, demo_files[0])
    assert good.status == "written" and good.row["modality"] in ("CT", "MR", "US", "CR")
    odd = clean_instance(engine, _with(demo_files[0], Modality="brain scan, left"))
    assert odd.status == "written"  # nothing identifying: released, without the column
    assert odd.row["modality"] == ""  # lower case and a comma: not a CS code
    for column in ("study_uid", "series_uid", "sop_uid"):
        assert all(p.isdigit() for p in str(good.row[column]).split("."))


@pytest.mark.parametrize("road", ["dataset", "raw"])
def test_an_unlisted_uid_under_the_dicom_root_never_reaches_path_or_catalog(
    demo_files, monkeypatch, road
) -> None:
    """1.2.840.10008.x UIDs absent from pydicom's dictionary are instance UIDs like others."""
    monkeypatch.setattr(instance, "USE_RAW_ENGINE", road == "raw")
    engine = Deidentifier(Policy(pixel_rule_files=(str(demo_rule_file()),)), SECRET)
    uid = "1.2.840.10008.9.20240131.4711"
    data = _with(demo_files[0], SOPInstanceUID=uid, StudyInstanceUID=uid + ".1")
    result = clean_instance(engine, data)
    assert result.status in ("written", "quarantined")
    if result.status == "written":
        assert uid not in result.relpath
        assert uid not in repr(result.row)
        assert uid.encode() not in result.data
