"""The raw-byte engine gives exactly what the Dataset engine gives, or declines the file."""

from __future__ import annotations

import functools
import io
import tempfile
import warnings
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil.engine import instance
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import CleanResult, clean_instance, raw_engine_of
from medveil.engine.postcheck import check_written, learn_terms
from medveil.engine.raw import NotRaw
from medveil.errors import QuarantineError
from medveil.policy.schema import Policy
from medveil.policy.standard import Option
from medveil.run.demo import demo_rule_file, write_demo_archive
from pydicom.data import DATA_ROOT
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .conftest import SECRET

POLICIES = {
    "default": Policy(),
    "safe-private+descriptors": Policy(
        options=(*Policy().options, Option.RETAIN_SAFE_PRIVATE, Option.CLEAN_DESCRIPTORS)
    ),
    "allow-list": Policy.from_toml('[profile]\nunknown_elements = "remove"\n'),
    "minimal-combined": Policy.from_toml('[profile]\ncombined_codes = "minimal"\n'),
}


def both(engine: Deidentifier, data: bytes) -> tuple[CleanResult, CleanResult | None]:
    """(Dataset engine result, raw engine result or None when it declines the file)."""
    old = instance.USE_RAW_ENGINE
    try:
        instance.USE_RAW_ENGINE = False
        by_dataset = clean_instance(engine, bytearray(data), "input")
    finally:
        instance.USE_RAW_ENGINE = old
    by_raw = instance._clean_raw(engine, bytearray(data), "input")
    return by_dataset, by_raw if isinstance(by_raw, CleanResult) else None


def assert_same(a: CleanResult, b: CleanResult) -> None:
    # The post-check may name the element it found a value in: the verdict must agree.
    assert (a.status, a.reason.split(" (")[0]) == (b.status, b.reason.split(" (")[0])
    if a.status == "written":
        assert a.data == b.data
        assert a.relpath == b.relpath
        assert a.row == b.row
        assert a.actions == b.actions
        assert a.pixels == b.pixels


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_pydicom_files_give_the_same_bytes(policy) -> None:
    engine = Deidentifier(POLICIES[policy], SECRET)
    taken = 0
    for path in sorted(Path(DATA_ROOT, "test_files").rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if not instance.looks_like_dicom(data[:132]):
            continue
        a, b = both(engine, data)
        if b is None:
            continue
        taken += 1
        assert_same(a, b)
    assert taken >= 40  # the raw engine is not just declining everything


def test_demo_archive_takes_the_raw_road_with_the_same_bytes(demo_files) -> None:
    engine = Deidentifier(Policy(pixel_rule_files=(str(demo_rule_file()),)), SECRET)
    for data in demo_files:
        a, b = both(engine, data)
        assert b is not None
        assert a.status == "written"
        assert_same(a, b)


def test_declines_what_it_does_not_cover() -> None:
    engine = Deidentifier(Policy(), SECRET)
    raw = raw_engine_of(engine)
    big_endian = Path(pydicom.data.get_testdata_file("MR_small_bigendian.dcm")).read_bytes()
    with pytest.raises(NotRaw):
        raw.apply(bytearray(big_endian))
    with pytest.raises(NotRaw):
        raw.apply(bytearray(b"\x00" * 200))


def test_post_check_rejects_unmarked_or_leaking_raw_outputs() -> None:
    # The pipeline's one post-check (check_written) on the raw engine's output.
    engine = Deidentifier(Policy(), SECRET)
    data = _file(_dataset({"PatientName": "Qwertz^Anna"}, []))
    terms = learn_terms(data)
    out = raw_engine_of(engine).apply(bytearray(data))
    written = b"".join(bytes(p) for p in out.parts)
    check_written(written, terms)
    with pytest.raises(QuarantineError, match="identifying value"):
        check_written(written + b"\xdf\x7f\x10\x00LO\x06\x00Qwertz", terms)
    with pytest.raises(QuarantineError, match="PatientIdentityRemoved"):
        check_written(written.replace(b"YES ", b"NO  "), terms)
    with pytest.raises(QuarantineError, match="does not parse"):
        check_written(written[:-3], terms)


# --------------------------------------------------------------------- generated files
TEXT = st.text(alphabet=st.sampled_from("ABCXYZabc019 ^-.,/"), min_size=0, max_size=20).map(
    str.strip
)
DATES = st.sampled_from(["20240102", "19400101", "", "2024", "20240230", "20200101-20201231"])
TOP = {
    "PatientName": TEXT,
    "PatientID": TEXT,
    "PatientBirthDate": DATES,
    "PatientSex": st.sampled_from(["F", "M", "O", ""]),
    "PatientAge": st.sampled_from(["030Y", "095Y", "012M", "", "abc"]),
    "AccessionNumber": TEXT,
    "StudyDate": DATES,
    "SeriesDate": DATES,
    "ContentTime": st.sampled_from(["101500", "", "1015"]),
    "InstitutionName": TEXT,
    "StudyDescription": TEXT,
    "ImageComments": TEXT,
    "Manufacturer": TEXT,
    "BodyPartExamined": st.sampled_from(["CHEST", "", "HEAD"]),
    "StationName": TEXT,
    "DeviceSerialNumber": TEXT,
    "FrameOfReferenceUID": st.sampled_from(["1.2.3.4.5", "", "1.2.840.10008.1.2"]),
    "StudyID": TEXT,
}
ITEM_KEYS = {
    "ReferencedSOPClassUID": st.just("1.2.840.10008.5.1.4.1.1.2"),
    "ReferencedSOPInstanceUID": st.sampled_from(["1.2.3.4.9", "", "1.2.3.4.9\\1.2.3.5"]),
    "PatientName": TEXT,
    "StudyDate": DATES,
}


def _dataset(values: dict[str, str], items: list[tuple[str, list[dict], bool, bool]]) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.100"
    ds.StudyInstanceUID = "1.2.3.4.101"
    ds.SeriesInstanceUID = "1.2.3.4.102"
    ds.Modality = "CT"
    for key, value in values.items():
        setattr(ds, key, value)
    for keyword, contents, seq_undefined, item_undefined in items:
        seq = Sequence()
        for content in contents:
            item = Dataset()
            for key, value in content.items():
                setattr(item, key, value)
            item.is_undefined_length_sequence_item = item_undefined
            seq.append(item)
        setattr(ds, keyword, seq)
        ds[keyword].is_undefined_length = seq_undefined
    return ds


def _file(
    ds: Dataset,
    private: list[tuple[str, int, str]] = (),  # type: ignore[assignment]
    implicit: bool = False,
) -> bytes:
    for i, (creator, offset, value) in enumerate(private):
        # Every other block as a PACS that lacks the vendor's dictionary sends it: VR UN.
        vr = "UN" if i % 2 else "LO"
        block = ds.private_block(0x0019 + 2 * i, creator, create=True)
        block.add_new(offset, vr, value.encode() if vr == "UN" else value)
        if vr == "UN":
            creator_tag = (block.group << 16) | (block.block_start >> 8)
            text = creator.encode() + b" " * (len(creator) % 2)
            ds[creator_tag] = DataElement(creator_tag, "UN", text)
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.fixed_dictionaries({}, optional=TOP),
    items=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "ReferencedImageSequence",
                    "RequestAttributesSequence",
                    "ReferencedStudySequence",
                    "OtherPatientIDsSequence",
                    "ProcedureCodeSequence",
                ]
            ),
            st.lists(st.fixed_dictionaries({}, optional=ITEM_KEYS), max_size=3),
            st.booleans(),
            st.booleans(),
        ),
        max_size=3,
        unique_by=lambda t: t[0],
    ),
    private=st.lists(
        st.tuples(
            st.sampled_from(["ACME PRIVATE", "SIEMENS MED HG", "GEMS_PARM_01", "GEMS_IDEN_01"]),
            st.integers(0, 0x20),
            TEXT,
        ),
        max_size=3,
    ),
    policy=st.sampled_from(sorted(POLICIES)),
    implicit=st.booleans(),
)
def test_generated_files_give_the_same_bytes(values, items, private, policy, implicit) -> None:
    engine = Deidentifier(POLICIES[policy], SECRET)
    with warnings.catch_warnings():
        # Invalid values on purpose (a DA of '2024'): pydicom warns, the engines go on.
        warnings.simplefilter("ignore")
        data = _file(_dataset(values, items), private, implicit)
        a, b = both(engine, data)
    assert b is not None, "the raw engine should cover plain little-endian files"
    assert_same(a, b)


@functools.cache
def _demo_bytes() -> tuple[bytes, ...]:
    """The demo archive's files (not a fixture: hypothesis would print them in a failure)."""
    with tempfile.TemporaryDirectory() as folder:
        write_demo_archive(folder)
        return tuple(p.read_bytes() for p in sorted(Path(folder).rglob("*.dcm")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 10),
    cut=st.one_of(st.none(), st.integers(132, 4000)),
    flips=st.lists(st.tuples(st.integers(132, 3000), st.integers(0, 255)), max_size=4),
)
def test_damaged_files_are_declined_or_cleaned_alike(which, cut, flips) -> None:
    """Truncated or corrupted headers: the raw engine declines them or does what pydicom does."""
    files = _demo_bytes()
    data = bytearray(files[which % len(files)])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    if cut is not None:
        del data[cut:]
    engine = Deidentifier(Policy(pixel_rule_files=(str(demo_rule_file()),)), SECRET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = both(engine, bytes(data))
    if b is not None:
        assert_same(a, b)
