"""Shared helpers of the engine tests: both roads on one file, and a file builder."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pydicom
import pytest
from medveil.dicom.io import read_dataset, write_fast_or_generic
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import raw_engine_of
from medveil.engine.raw import NotRaw
from medveil.policy.schema import Policy
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

SECRET = bytes(range(32))


@contextmanager
def quiet() -> Iterator[None]:
    """pydicom warns (and its decoders log) about the invalid values tests use on purpose."""
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def dataset_road(engine: Deidentifier, data: bytes) -> tuple[bytes, dict[str, int]] | str:
    """The Dataset engine's output bytes and actions, or why it failed."""
    try:
        ds = read_dataset(io.BytesIO(data), "input", strict=False)
        report = engine.apply(ds, check=False)
        parts, _ = write_fast_or_generic(ds)
    except Exception as exc:  # the comparison is of outcomes: a failure is one
        return f"failed: {type(exc).__name__}"
    return b"".join(bytes(p) for p in parts), dict(report.actions)


def raw_road(engine: Deidentifier, data: bytes) -> tuple[bytes, dict[str, int]] | str | None:
    """The raw-byte engine's output bytes and actions; None when it declines the file."""
    try:
        out = raw_engine_of(engine).apply(bytearray(data), "input")
    except NotRaw:
        return None
    except Exception as exc:
        return f"failed: {type(exc).__name__}"
    return b"".join(bytes(p) for p in out.parts), dict(out.report.actions)


def part10(ds: Dataset, implicit: bool = False) -> bytes:
    """ds as a Part 10 file (file meta added when missing)."""
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def base_dataset() -> Dataset:
    """A minimal CT instance with a patient."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7.100"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7.101"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7.102"
    ds.Modality = "CT"
    ds.PatientName = "Doe^John^Q"
    ds.PatientID = "DEMO-10001"
    ds.PatientBirthDate = "19510227"
    return ds


@pytest.fixture
def secret() -> bytes:
    """A fixed, public test secret."""
    return SECRET


def both_roads(ds: Dataset, implicit: bool = False, policy: Policy | None = None) -> bytes:
    """The output of both engines, which must agree byte for byte (an accepted file)."""
    engine = Deidentifier(policy or Policy(), SECRET)
    with quiet():
        data = part10(ds, implicit)
        by_dataset = dataset_road(engine, data)
        by_raw = raw_road(engine, data)
    assert not isinstance(by_dataset, str), by_dataset
    assert by_raw is not None and not isinstance(by_raw, str), by_raw
    assert by_raw == by_dataset
    return by_raw[0]


def out(ds: Dataset, implicit: bool = False, policy: Policy | None = None) -> Dataset:
    """The de-identified dataset (both roads checked)."""
    return pydicom.dcmread(io.BytesIO(both_roads(ds, implicit, policy)))
