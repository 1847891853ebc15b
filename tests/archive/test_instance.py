"""clean_instance: a bytearray input (cleaned in place) gives the same file as bytes input."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from medveil import instance
from medveil.deid import Deidentifier
from medveil.demo import demo_rule_file
from medveil.instance import clean_instance, raw_engine_of
from medveil.policy import Policy

SECRET = bytes(range(32))


def test_in_place_and_copying_paths_agree(demo_files) -> None:
    engine = Deidentifier(Policy(pixel_rule_files=(str(demo_rule_file()),)), SECRET)
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
