"""The post-check's fast road (scanner rows) finds everything its span road finds.

:func:`medveil.engine.postcheck.learn_terms` and :func:`check_written` read a well-formed
little-endian file from the core scanner's rows, decode only what the learner reads, and
search ASCII values once as raw bytes (see ``_find_scanned``). The span road
(``learn_terms_spans``, ``check_written_spans``: every element decoded, every value
searched as text and as bytes) is the reference: on the adversarial corpus, pydicom's
own files and outputs with one value planted in every kind of place, the fast road
learns the same terms and quarantines every file the span road quarantines.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil.dicom.io import read_dataset, write_fast_or_generic
from medveil.dicom.strict import StructureError, check_structure
from medveil.engine import instance as inst
from medveil.engine import postcheck
from medveil.engine.dataset import Deidentifier
from medveil.engine.raw import NotRaw
from medveil.errors import QuarantineError
from medveil.policy.schema import Policy
from medveil.policy.standard import Option
from medveil.run.demo import write_copies, write_demo_archive
from medveil.verify.elements import scan_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ..conftest import bundled_test_files
from .generator import corpus

SECRET = bytes(range(32))
CASES = [c for c in corpus() if not c.damaged]
POLICIES = {
    "default": Policy(),
    "retain-private-uids-dates": Policy(
        options=(
            *(o for o in Policy().options if o != Option.RETAIN_LONGITUDINAL_MODIFIED_DATES),
            Option.RETAIN_SAFE_PRIVATE,
            Option.RETAIN_UIDS,
            Option.RETAIN_LONGITUDINAL_FULL_DATES,
        )
    ),
}


def _inputs() -> list[tuple[str, bytes]]:
    """Every well-formed input: the corpus, pydicom's files, the demo archive."""
    out = [(c.place, c.data) for c in CASES]
    for path in bundled_test_files():
        data = Path(path).read_bytes()
        try:
            check_structure(data)
        except (StructureError, Exception):
            continue
        out.append((Path(path).name, data))
    return out


INPUTS = _inputs()


def _verdict(check, data: bytes, terms: postcheck.Terms, allow: postcheck.Allowance) -> str:
    """'' when the check passes the file, else the kind of quarantine (without the path)."""
    try:
        check(data, terms, allow)
    except QuarantineError as exc:
        return str(exc).split(" (")[0]
    return ""


def _same_terms(a: postcheck.Terms, b: postcheck.Terms) -> None:
    assert a.always == b.always
    assert a.kinds == b.kinds
    assert {k: v for k, v in a.spellings.items() if v} == {
        k: v for k, v in b.spellings.items() if v
    }


def test_the_fast_road_covers_the_usual_files() -> None:
    """Most inputs take the scanner rows (else the test below proves little)."""
    fast = sum(scan_file(data) is not None for _, data in INPUTS)
    assert fast >= len(INPUTS) // 2


@pytest.mark.parametrize("name,data", INPUTS, ids=[n for n, _ in INPUTS])
def test_learn_terms_equals_the_span_road(name: str, data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _same_terms(postcheck.learn_terms(data), postcheck.learn_terms_spans(data))
        _same_terms(postcheck.learn_terms(bytearray(data)), postcheck.learn_terms_spans(data))


def _outputs(engine: Deidentifier, data: bytes) -> list[bytes]:
    """What each engine writes for data, before any post-check."""
    outs = []
    try:
        outs.append(b"".join(inst.raw_engine_of(engine).apply(bytearray(data)).parts))
    except NotRaw:
        pass
    except Exception:
        pass
    try:
        ds = read_dataset(io.BytesIO(data), "input", strict=False)
        engine.apply(ds, source="input")
        outs.append(b"".join(write_fast_or_generic(ds)[0]))
    except Exception:
        pass
    return outs


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_check_written_agrees_on_every_output(policy: str) -> None:
    engine = Deidentifier(POLICIES[policy], SECRET)
    allow = engine.allowance
    checked = found = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, data in INPUTS:
            terms = postcheck.learn_terms_spans(data)
            for out in _outputs(engine, data):
                # The original marked as cleaned: every term is still in it.
                for written in (out, _marked(data)):
                    if written is None:
                        continue
                    spans = _verdict(postcheck.check_written_spans, written, terms, allow)
                    fast = _verdict(postcheck.check_written, written, terms, allow)
                    assert fast == spans, name
                    checked += 1
                    found += bool(spans)
    assert checked > 100 and found > 20


def _marked(data: bytes) -> bytes | None:
    """The input, PatientIdentityRemoved = YES added (an output that removed nothing)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ds.PatientIdentityRemoved = "YES"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    except Exception:
        return None


# ------------------------------------------------------------------ one value, planted
_PATIENT = "Qzdoebrak^Wxmelkin"


def _clean(charset: str | None) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "2.25.1"
    ds.PatientIdentityRemoved = "YES"
    ds.Modality = "CT"
    ds.StationName = "KEPT"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelData = bytes(8)
    return ds


def _save(ds: Dataset, syntax: str = "1.2.840.10008.1.2.1") -> bytes:
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _original() -> bytes:
    ds = _clean(None)
    del ds.PatientIdentityRemoved
    ds.PatientName = _PATIENT
    ds.PatientID = "QX7741230"
    ds.PatientBirthDate = "19580704"
    ds.InstitutionName = "Qzimbleton Infirmary"
    ds.StationName = "QZSTATION9"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.77.4242.1"
    return _save(ds)


ORIGINAL = _original()
TERMS = postcheck.learn_terms_spans(ORIGINAL)
VALUES = sorted({*TERMS.always, *TERMS.kinds, "Wxmelkin", "QZDOEBRAK", "Qzdoébrak"})
CHARSETS = [None, "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87", "ISO_IR 144"]


@st.composite
def planted(draw: st.DrawFn) -> bytes:
    """A clean output with one learned value (in some spelling) planted in some place."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on over-long values: wanted here
        return _plant(draw)


def _plant(draw: st.DrawFn) -> bytes:
    value = draw(st.sampled_from(VALUES))
    value = draw(st.sampled_from([value, value.upper(), value.title(), f"x {value} y"]))
    charset = draw(st.sampled_from(CHARSETS))
    ds = _clean(charset)
    place = draw(
        st.sampled_from(
            ["text", "pn", "private", "ob-utf16", "ob-latin1", "nested", "after-pixels", "kept"]
        )
    )
    if place == "text":
        ds.add_new(0x00204000, "LT", value)  # ImageComments
    elif place == "pn":
        ds.add_new(0x00081070, "PN", value.replace(" ", "^"))  # OperatorsName
    elif place == "private":
        block = ds.private_block(0x0029, "QZ VENDOR", create=True)
        vr = draw(st.sampled_from(["LO", "UN", "SH"]))
        block.add_new(0x10, vr, value.encode("utf-8") if vr == "UN" else value)
    elif place == "ob-utf16":
        ds.add_new(
            0x00291010, "OB", value.encode(draw(st.sampled_from(["utf-16-le", "utf-16-be"])))
        )
    elif place == "ob-latin1":
        ds.add_new(0x00291010, "OB", value.encode("latin-1", "replace") + b"\x80")
    elif place == "nested":
        item = Dataset()
        item.add_new(0x0040A160, "UT", value)  # TextValue
        if draw(st.booleans()) and charset:
            item.SpecificCharacterSet = charset
        ds.ContentSequence = Sequence([item])
    elif place == "after-pixels":
        ds.add_new(0x7FE10010, "LO", value)
    else:
        ds.StationName = value  # kept on purpose when the policy keeps StationName
    syntax = draw(st.sampled_from(["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]))
    try:
        return _save(ds, syntax)
    except (UnicodeEncodeError, LookupError, ValueError):
        return ds_fallback(value)


def ds_fallback(value: str) -> bytes:
    """The value as UTF-8 text, when the drawn character set cannot encode it."""
    ds = _clean("ISO_IR 192")
    ds.add_new(0x00204000, "LT", value)
    return _save(ds)


ALLOWANCES = [
    postcheck.Allowance(),
    postcheck.Allowance(tags=frozenset({0x00081010}), private=True),
    postcheck.Allowance(kinds=frozenset({"uids", "dates"})),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted(), st.sampled_from(ALLOWANCES))
def test_a_planted_value_is_found_by_the_fast_road_when_the_span_road_finds_it(
    written: bytes, allow: postcheck.Allowance
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spans = _verdict(postcheck.check_written_spans, written, TERMS, allow)
        fast = _verdict(postcheck.check_written, written, TERMS, allow)
    # At least as strict: a UTF-16 match that runs onto a header beside a value the policy
    # keeps is a finding on the fast road, whatever the value before it.
    assert fast == spans or (fast and not spans)


def test_the_planted_cases_are_found_at_all() -> None:
    """The span road itself finds a planted name in every charset (the test has teeth)."""
    for charset in CHARSETS:
        ds = _clean(charset)
        ds.add_new(0x00204000, "LT", "seen by Qzdoebrak today")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            written = _save(ds)
        for check in (postcheck.check_written, postcheck.check_written_spans):
            with pytest.raises(QuarantineError, match="still in the output"):
                check(written, TERMS)


def test_a_series_learned_file_by_file_equals_the_span_road(tmp_path: Path) -> None:
    """Files of one series share what their non-UID elements teach; each keeps its UIDs."""

    paths = [p for p in write_demo_archive(tmp_path / "demo") if p.suffix == ".dcm"]
    paths += write_copies(tmp_path / "copies", paths[0], 5)
    seen: list[postcheck.Terms] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths * 2:
            data = path.read_bytes()
            terms = postcheck.learn_terms(data)
            _same_terms(terms, postcheck.learn_terms_spans(data))
            seen.append(terms)
    # Each copy has its own SOP Instance UID among its terms, and only its own.
    uids = [{v for v, k in t.kinds.items() if k == "uids"} for t in seen[-5:]]
    assert all(len(u - uids[0]) == 1 for u in uids[1:])


def test_a_uid_equal_to_another_learned_value_is_learned_as_the_span_road_does() -> None:
    """A file's own UID that is also an ID, a date-like text or a name piece elsewhere."""
    for other in ("OtherPatientIDs", "StationName", "PatientName", "AccessionNumber"):
        for n in range(3):  # the second and third file take the cache
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an over-long SH is the point
                ds = _clean(None)
                del ds.PatientIdentityRemoved
                ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.77.{n}"
                setattr(ds, other, "1.2.826.0.1.3680043.10.77.1")
                ds.ReferencedSOPInstanceUID = "19580704"
                data = _save(ds)
                _same_terms(postcheck.learn_terms(data), postcheck.learn_terms_spans(data))
