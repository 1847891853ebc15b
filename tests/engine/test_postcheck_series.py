"""The post-check's series caches against a post-check that remembers nothing.

learn_terms learns what the files of a series share once (keyed on the raw values of the
elements it learns from, the study's UIDs among them once they stop changing) and adds
each file's own UIDs; check_written and scan_file keep what a row structure gives. Here
a series is cleaned file by file, in order, through the real per-file pipeline, and
slice k carries a value slices 0..k-1 did not (a name, a private text, a nested text, a
value in another character set, a UN text, a new study UID, an ID as a number). Every
output (the engine's, the input marked as cleaned, the engine's with this slice's own
values planted in it) must get the verdict the reference gives: the terms learned by
the span road (no cache) and the span road's check, on a fresh process state.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil.dicom.strict import check_structure_scan
from medveil.engine import postcheck
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.errors import QuarantineError
from medveil.policy.schema import Policy
from medveil.policy.standard import Option
from medveil.verify import elements
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .conftest import SECRET, quiet

ROOT = "1.2.826.0.1.3680043.10.999"
POLICIES = {
    "default": Policy(),
    "retain-uids-dates-private": Policy(
        options=(
            *(o for o in Policy().options if o != Option.RETAIN_LONGITUDINAL_MODIFIED_DATES),
            Option.RETAIN_SAFE_PRIVATE,
            Option.RETAIN_UIDS,
            Option.RETAIN_LONGITUDINAL_FULL_DATES,
        )
    ),
}


def _forget() -> None:
    """Drop every cache the post-check keeps across files (a fresh worker)."""
    postcheck._LEARNED.clear()
    postcheck._AUTOMATA.clear()
    elements._SHAPES.clear()


def _slice(k: int, *, study: int = 1, implicit: bool = False) -> Dataset:
    """Slice k of a CT series: shared patient, study and site; its own UIDs and position."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = f"{ROOT}8.{study}.3.{k + 1}"  # not under the study's UID
    ds.StudyInstanceUID = f"{ROOT}.{study}"
    ds.SeriesInstanceUID = f"{ROOT}.{study}.2"
    ds.FrameOfReferenceUID = f"{ROOT}.{study}.9"
    ds.StudyDate = ds.SeriesDate = "20240305"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "QACC55123"
    ds.Modality = "CT"
    ds.Manufacturer = "Qzvendor"
    ds.InstitutionName = "Qzimbleton Infirmary"
    ds.StationName = "QZSTATION9"
    ds.DeviceSerialNumber = "QZSN77123"
    ds.ReferringPhysicianName = "Qzrefer^Wxdoc"
    ds.PatientName = "Qzdoebrak^Wxmelkin"
    ds.PatientID = "QX7741230"
    ds.PatientBirthDate = "19580704"
    ds.PatientSex = "F"
    ds.StudyID = "QS4411"
    ds.SeriesNumber = 3
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [-120.5, -98.25, float(-k * 2)]
    ds.SliceLocation = float(-k * 2)
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = f"{ROOT}8.{study}.3.{k + 2}"  # its neighbour
    ds.ReferencedImageSequence = Sequence([ref])
    block = ds.private_block(0x0029, "QZ VENDOR", create=True)
    block.add_new(0x10, "LO", "QZPRIVATE STEADY")
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    with quiet():
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# What slice k carries that the slices before it did not: (name, change, the new value).
def _operator(ds: Dataset) -> str:
    ds.OperatorsName = "Qzopera^Wxnewname"
    return "Qzopera"


def _private(ds: Dataset) -> str:
    ds.private_block(0x0029, "QZ VENDOR").add_new(0x11, "LO", "QZPRIVNEW 88123")
    return "QZPRIVNEW 88123"


def _nested(ds: Dataset) -> str:
    item = Dataset()
    inner = Dataset()
    inner.add_new(0x0040A123, "PN", "Qznested^Wxperson")  # PersonName, two deep
    item.ContentSequence = Sequence([inner])
    ds.ContentSequence = Sequence([item])
    return "Qznested"


def _latin1(ds: Dataset) -> str:
    ds.PatientName = "Qzmüllerova^Wxmelkin"  # ISO_IR 100: ü is one byte, not UTF-8
    return "Qzmüllerova"


def _un(ds: Dataset) -> str:
    ds.add_new(0x00291012, "UN", b"QZUNTEXT 4711 ")
    return "QZUNTEXT 4711"


def _study(ds: Dataset) -> str:
    ds.StudyInstanceUID = f"{ROOT}.77.1"  # a new study UID midway (a varying own value)
    return ds.StudyInstanceUID


def _other_id(ds: Dataset) -> str:
    ds.OtherPatientIDs = "88776655"
    return "88776655"


CHANGES: dict[str, Callable[[Dataset], str]] = {
    "operator": _operator,
    "private": _private,
    "nested": _nested,
    "latin1": _latin1,
    "un": _un,
    "study": _study,
    "other-id": _other_id,
}


def _plants(written: bytes, values: list[str]) -> list[bytes]:
    """The written file with each value planted in another kind of place."""
    out = []
    for value in values:
        for where in ("lt", "private", "nested", "un", "pn", "number", "utf16"):
            ds = pydicom.dcmread(io.BytesIO(written), force=True)
            if where == "lt":
                ds.add_new(0x00204000, "LT", f"note {value} end")  # ImageComments
            elif where == "private":
                block = ds.private_block(0x0031, "QZ PLANT", create=True)
                block.add_new(0x10, "LO", value)
            elif where == "nested":
                item = Dataset()
                item.add_new(0x0040A160, "UT", f"x {value} y")
                ds.ContentSequence = Sequence([Dataset(), item])
            elif where == "un":
                ds.add_new(0x00311020, "UN", f" {value} ".encode("latin-1", "replace"))
            elif where == "pn":
                ds.add_new(0x00081070, "PN", value.replace(" ", "^"))
            elif where == "number":
                if not value.isdigit():
                    continue
                ds.add_new(0x00200012, "IS", value)  # AcquisitionNumber
            else:
                ds.add_new(0x00311030, "OB", value.encode("utf-16-le"))
            out.append(_bytes(ds))
    return out


def _verdict(check: Callable[..., None], data: bytes, terms: object, allow: object) -> bool:
    """True when the check quarantines the file."""
    try:
        with quiet():
            check(data, terms, allow)
    except QuarantineError:
        return True
    return False


@dataclass
class Seen:
    """One slice as the series run saw it: its input, terms, outputs to judge."""

    data: bytes
    terms: postcheck.Terms
    outputs: list[bytes]
    planted: list[bytes]  # its new value (if any), then its own UIDs, planted
    planted_new: list[bytes]  # its new value planted, alone


def _run_series(change: str, k: int, n: int, policy: str, *, implicit: bool = False) -> list[Seen]:
    """Clean a series of n slices in order (slice k changed), as a worker would."""
    engine = Deidentifier(POLICIES[policy], SECRET)
    seen = []
    for i in range(n):
        ds = _slice(i, implicit=implicit)
        new = [CHANGES[change](ds)] if i == k else []
        data = _bytes(ds)
        with quiet():
            _, prescan = check_structure_scan(data)
            terms = postcheck.learn_terms(data, prescan)
            result = clean_instance(engine, bytearray(data), f"s{i}")
        outputs = [_bytes(_marked(data))]
        written = b""
        if result.status == "written":
            written = b"".join(bytes(p) for p in result.parts)
            outputs.append(written)
        # This slice's own values (and its new one) planted in the engine's output.
        mine = [*new, ds.SOPInstanceUID, ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
        seen.append(
            Seen(
                data,
                terms,
                outputs,
                _plants(written, mine) if written else [],
                _plants(written, new) if written else [],
            )
        )
    return seen


def _marked(data: bytes) -> Dataset:
    """The input marked as cleaned: every one of its values is still in it."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    ds.PatientIdentityRemoved = "YES"
    return ds


def _same_terms(a: postcheck.Terms, b: postcheck.Terms) -> None:
    assert a.always == b.always
    assert a.kinds == b.kinds
    assert {k: v for k, v in a.spellings.items() if v} == {
        k: v for k, v in b.spellings.items() if v
    }


def _check_series(seen: list[Seen], policy: str) -> None:
    """Each slice's cached terms and verdicts equal the uncached reference's."""
    allow = Deidentifier(POLICIES[policy], SECRET).allowance
    for s in seen:
        with quiet():
            reference = postcheck.learn_terms_spans(s.data)
        _same_terms(s.terms, reference)
        for out in s.outputs + s.planted:
            fast = _verdict(postcheck.check_written, out, s.terms, allow)
            _forget()
            with quiet():
                fresh_terms = postcheck.learn_terms(s.data)
            fresh = _verdict(postcheck.check_written, out, fresh_terms, allow)
            spans = _verdict(postcheck.check_written_spans, out, reference, allow)
            assert fast == fresh
            # The span road's verdict, or stricter (a UTF-16 match running onto a header).
            assert fast == spans or (fast and not spans)
        # Every output with the original in it, and every planted value, is a finding.
        assert _verdict(postcheck.check_written, s.outputs[0], s.terms, allow)
        for out in s.planted:
            assert _verdict(postcheck.check_written, out, s.terms, allow) == _verdict(
                postcheck.check_written_spans, out, reference, allow
            )


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_slice_with_a_new_value_is_checked_as_if_alone(change: str) -> None:
    _forget()
    seen = _run_series(change, 3, 6, "default")
    _check_series(seen, "default")
    # The engine's outputs pass, and the planted new value of slice 3 is found in it.
    allow = Deidentifier(POLICIES["default"], SECRET).allowance
    assert all(len(s.outputs) == 2 for s in seen)
    assert not any(_verdict(postcheck.check_written, s.outputs[1], s.terms, allow) for s in seen)
    new_value_plants = seen[3].planted_new
    found = [_verdict(postcheck.check_written, p, seen[3].terms, allow) for p in new_value_plants]
    assert any(found)
    # The same plants judged with slice 2's terms (which never saw the value): a cache
    # that handed slice 3 the terms of slice 2 would pass what must be found here.
    if change != "study":
        stale = [
            _verdict(postcheck.check_written, p, seen[2].terms, allow) for p in new_value_plants
        ]
        assert found != stale


def test_each_slice_keeps_its_own_uids_and_no_other() -> None:
    """The series' UIDs are learned once; each slice adds its own instance UIDs only."""
    _forget()
    seen = _run_series("operator", 99, 6, "default")
    assert all(s.terms._shared is not None for s in seen[3:])
    allow = Deidentifier(POLICIES["default"], SECRET).allowance
    for i, s in enumerate(seen):
        uids = {v for v, kind in s.terms.kinds.items() if kind == "uids"}
        assert f"{ROOT}8.1.3.{i + 1}" in uids and f"{ROOT}.1" in uids
        assert f"{ROOT}8.1.3.{i}" not in uids or i == 0  # not the slice before's own
        # The slice's own instance UID planted in its output is found; a neighbour's
        # that it never held is not.
        assert _verdict(postcheck.check_written, s.planted[0], s.terms, allow)
    if len(seen) > 4:
        assert not _verdict(postcheck.check_written, seen[4].planted[0], seen[1].terms, allow)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_series_with_a_new_study_midway_and_implicit_vr(policy: str) -> None:
    _forget()
    for implicit in (False, True):
        seen = _run_series("study", 2, 6, policy, implicit=implicit)
        _check_series(seen, policy)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(CHANGES)),
    st.integers(min_value=0, max_value=4),
    st.sampled_from(sorted(POLICIES)),
    st.booleans(),
)
def test_any_slice_with_any_change_equals_the_reference(
    change: str, k: int, policy: str, implicit: bool
) -> None:
    seen = _run_series(change, k, 5, policy, implicit=implicit)
    _check_series(seen, policy)


def _searched(hit: tuple[object, list[bool]]) -> dict[object, bool]:
    """Each pattern a matcher searches, and whether it is never allowed."""
    matcher, flags = hit
    out: dict[object, bool] = {}
    for p, f in zip(getattr(matcher, "patterns", []), flags, strict=True):
        out[p] = out.get(p, False) or f
    return out


def test_a_files_matcher_searches_its_own_values_and_no_others() -> None:
    """With new UIDs of its own, the file's matcher holds exactly what its Terms give."""
    _forget()
    seen = _run_series("operator", 2, 5, "default")
    for s in seen[3:]:
        assert s.terms._shared is not None
        alone = postcheck.Terms(set(s.terms.always), dict(s.terms.kinds), dict(s.terms.spellings))
        for form in ("text", "bytes", "sub-bytes", "always-text", "always-bytes"):
            for allowed in (frozenset(), frozenset({"uids"}), frozenset({"dates", "ids"})):
                got = _searched(s.terms.matcher(form, allowed))
                assert got == _searched(alone.matcher(form, allowed)), (form, allowed)
                assert got  # the test has something to compare


# The reading of IS/DS values as short plain numbers before this module made it linear.
_OLD_PLAIN = re.compile(rb"(?:\.[0-9]*|[0-9]{1,4}(?![0-9])|[+\- \\\x00])*")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from([b"1", b"23", b"45678", b".", b"-", b"\\", b" ", b"e"]), max_size=12)
)
def test_plain_short_numbers_reads_what_it_read_before(parts: list[bytes]) -> None:
    value = b"".join(parts)
    assert bool(postcheck._PLAIN_SHORT_NUMBERS.fullmatch(value)) == bool(
        _OLD_PLAIN.fullmatch(value)
    )


def test_plain_short_numbers_is_linear_on_long_values() -> None:
    """Thousands of fractions then a long integer: no backtracking over their splits."""
    value = b"\\".join([b"12.3456"] * 5000 + [b"123456"])
    start = time.process_time()
    assert postcheck._PLAIN_SHORT_NUMBERS.fullmatch(value) is None
    assert time.process_time() - start < 1.0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("aZ^/_ \x00\t\r\nßİﬁ.9"), max_size=12))
def test_record_text_is_the_normalised_text(text: str) -> None:
    from medveil.verify.values import normalize

    expected = normalize(text.replace("/", " ").replace("_", " "))
    assert postcheck._record_text(text) == expected
