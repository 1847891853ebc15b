"""One scan per file: the strict check's rows feed the learner, the post-check's the refs.

Each reuse must give exactly what a fresh scan of the same bytes gives, and must not be
taken for other bytes (tests below change one byte and check the cache refuses).
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil.dicom import strict
from medveil.dicom.peek import peek
from medveil.dicom.strict import (
    StructureError,
    check_structure,
    check_structure_scan,
    dataset_offset,
)
from medveil.engine.dataset import Deidentifier
from medveil.engine.instance import clean_instance
from medveil.engine.postcheck import (
    _PLAIN_SHORT_NUMBERS,
    Terms,
    check_written,
    learn_terms,
    learn_terms_spans,
)
from medveil.errors import QuarantineError
from medveil.pixels.cleaner import burned_in_reasons, text_classes
from medveil.policy.schema import Policy
from medveil.run.refs import output_references
from medveil.verify.elements import forget_scan, recall_scan, remember_scan, scan_file
from medveil.verify.numbers import number_forms

_FOLDER = Path(pydicom.__file__).parent / "data" / "test_files"
_FILES = sorted(n for n in os.listdir(_FOLDER) if n.endswith(".dcm"))


def _read(name: str) -> bytes:
    return (_FOLDER / name).read_bytes()


def _same_scan(a: object, b: object) -> None:
    if a is None or b is None:
        assert a is None and b is None
        return
    assert np.array_equal(a.rows, b.rows)  # type: ignore[attr-defined]
    assert np.array_equal(a.codes, b.codes)  # type: ignore[attr-defined]
    assert a.meta_end == b.meta_end  # type: ignore[attr-defined]
    assert a.codecs == b.codecs  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", _FILES)
def test_prescan_gives_the_fresh_scan(name: str) -> None:
    """scan_file with the strict check's rows equals scan_file alone, on every pydicom file."""
    data = _read(name)
    try:
        ts, prescan = check_structure_scan(data)
    except StructureError:
        with pytest.raises(StructureError):
            check_structure(data)
        return
    assert ts == check_structure(data)
    _same_scan(scan_file(data, prescan), scan_file(data))
    if prescan is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = learn_terms(data)
            reused = learn_terms(data, prescan)
        assert (reused.always, reused.kinds, reused.spellings) == (
            fresh.always,
            fresh.kinds,
            fresh.spellings,
        )


def test_prescan_only_for_scanned_roads() -> None:
    """Deflated and big-endian files are walked in Python: no rows to hand on."""
    assert check_structure_scan(_read("image_dfl.dcm"))[1] is None
    assert check_structure_scan(_read("MR_small_bigendian.dcm"))[1] is None
    ts, prescan = check_structure_scan(_read("CT_small.dcm"))
    assert prescan is not None and prescan.ts == ts
    # The learner on the scanned road agrees with the span road (its reference).
    data = _read("CT_small.dcm")
    assert learn_terms(data, prescan).always == learn_terms_spans(data).always


_ENGINE = Deidentifier(Policy(), secret=bytes(range(32)))


def _written(name: str) -> bytes:
    engine = _ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = clean_instance(engine, bytearray(_read(name)), name)
    assert result.status == "written", result.reason
    return result.data


def test_refs_take_the_post_check_scan_of_the_same_bytes() -> None:
    """output_references answers the same with the remembered scan as without it."""
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        out = _written(name)
        forget_scan()
        cold = output_references([out])
        check_written(out, learn_terms(_read(name)), _ENGINE.allowance)
        parts = [out[:1000], memoryview(out)[1000:5000], out[5000:]]
        assert recall_scan(parts) is not None  # the post-check's scan, taken once
        assert recall_scan(parts) is None
        check_written(out, learn_terms(_read(name)), _ENGINE.allowance)
        assert output_references(parts) == cold


def test_recall_refuses_other_bytes() -> None:
    """A scan is never taken for bytes that differ, by one byte or in length."""
    out = _written("CT_small.dcm")
    scan = scan_file(out)
    assert scan is not None
    changed = bytearray(out)
    changed[-1] ^= 1
    remember_scan(scan)
    assert recall_scan([bytes(changed)]) is None
    remember_scan(scan)
    assert recall_scan([out, b"\x00\x00"]) is None
    remember_scan(scan)
    assert recall_scan([out[:-2]]) is None
    remember_scan(scan)
    assert recall_scan([out[:10], out[10:]]) is scan


def test_failed_post_check_remembers_nothing() -> None:
    """A file the post-check quarantines leaves no scan for the refs."""
    data = _read("CT_small.dcm")
    terms = learn_terms(data)
    remember_scan(scan_file(_written("CT_small.dcm")))  # type: ignore[arg-type]
    with pytest.raises(QuarantineError):
        check_written(data, terms)  # the input itself: not marked, holds the terms
    assert recall_scan([data]) is None


def test_peeked_uids_are_equal_and_reused() -> None:
    """peek gives the same UID value each time (one object per text, as a cache)."""
    ds = pydicom.dcmread(_FOLDER / "CT_small.dcm")
    first = peek(ds, 0x00080016)
    again = peek(ds, 0x00080016)
    assert first == ds.SOPClassUID and type(first) is type(ds.SOPClassUID)
    assert again is first


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb_gdcm_KY.dcm", "MR_small.dcm"])
@pytest.mark.parametrize("burned", [None, "YES", "NO", "yes"])
def test_text_classes_with_given_reasons(name: str, burned: str | None) -> None:
    """text_classes given burned_in_reasons answers as when it computes them itself."""
    ds = pydicom.dcmread(_FOLDER / name)
    if burned is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 'yes' is not a valid CS on purpose
            ds.BurnedInAnnotation = burned
    reasons = burned_in_reasons(ds)
    copy = list(reasons)
    assert text_classes(ds, reasons) == text_classes(ds)
    assert reasons == copy  # the caller's list is not changed


def _offset_reference(data: bytes) -> tuple[int, int, str | None]:
    """dataset_offset as it was written before its header walk was inlined (_Walker's)."""
    pos = 132 if len(data) >= 132 and data[128:132] == b"DICM" else 0
    start = pos
    if len(data) - pos < 8 or data[pos : pos + 2] != b"\x02\x00":
        if pos:
            raise strict._fail("no file meta after the preamble", pos)
        return 0, 0, None
    w = strict._Walker(data, little=True, explicit=True)
    declared = None
    ts = None
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        tag, _, length, vstart = w.header(pos, len(data))
        if length == 0xFFFFFFFF:
            raise strict._fail("undefined length in the file meta", pos)
        end = vstart + length
        if end > len(data):
            raise strict._fail("file meta value runs past the end", pos)
        if length % 2:
            raise strict._fail("odd value length in the file meta", pos)
        if tag == 0x00020000:
            if pos != start or length != 4:
                raise strict._fail("misplaced file meta group length", pos)
            declared = vstart + 4 + struct.unpack_from("<I", data, vstart)[0]
        elif tag == 0x00020010:
            ts = data[vstart:end].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = end
    if declared is not None and declared != pos:
        raise strict._fail("file meta group length is not the length of the file meta", start)
    return start, pos, ts


def _verdict(fn: Callable[[bytes], object], data: bytes) -> object:
    try:
        return fn(data)
    except StructureError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm"]),
    edits=st.lists(st.tuples(st.integers(128, 340), st.integers(0, 255)), max_size=4),
    cut=st.integers(120, 400),
)
def test_dataset_offset_as_the_walker_reads_it(
    name: str, edits: list[tuple[int, int]], cut: int
) -> None:
    """The inlined meta walk gives the walker's verdict on damaged and truncated metas."""
    data = bytearray(_read(name))
    for at, value in edits:
        data[at] = value
    for sample in (bytes(data), bytes(data[:cut])):
        want = _verdict(_offset_reference, sample)
        assert _verdict(dataset_offset, sample) == want
        assert _verdict(dataset_offset, memoryview(bytearray(sample))) == want


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=24) | st.text("0123456789+-.eE_ \\\x00", max_size=24).map(str.encode))
def test_plain_short_numbers_have_no_forms(value: bytes) -> None:
    """Bytes the number shortcut skips are exactly ones number_forms finds nothing in."""
    if _PLAIN_SHORT_NUMBERS.fullmatch(value):
        assert number_forms([value]) == set()


def _patterns(hit: tuple[object, list[bool]]) -> object:
    matcher, flags = hit
    if matcher is None:
        return None
    return list(matcher.patterns), list(flags)  # type: ignore[attr-defined]


def test_a_series_shared_automaton_is_the_files_own() -> None:
    """Terms taking a series' automaton search exactly what their own values give."""
    datas = [_read(n) for n in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtstruct.dcm")]
    shared = 0
    for data in datas:
        for _ in range(2):  # the second time from the series cache
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                terms = learn_terms(data)
            shared += terms._shared is not None
            alone = Terms(set(terms.always), dict(terms.kinds), dict(terms.spellings))
            for form in ("text", "bytes", "sub-bytes", "always-text", "always-bytes"):
                for allowed in (frozenset(), frozenset({"uids"}), frozenset({"dates", "ids"})):
                    got = _patterns(terms.matcher(form, allowed))
                    assert got == _patterns(alone.matcher(form, allowed)), (form, allowed)
    assert shared


def _raw_ct() -> pydicom.Dataset:
    return pydicom.dcmread(_FOLDER / "CT_small.dcm")  # elements stay raw until read


def test_geometry_cache_keys_on_the_raw_fields() -> None:
    """A cached geometry is the one read afresh; another value is another geometry."""
    from medveil.pixels.cleaner import _Geometry

    first = _Geometry.of(_raw_ct())
    assert _Geometry.of(_raw_ct()) is first  # the same raw fields: from the cache
    assert first == _Geometry._read(_raw_ct())
    other = _raw_ct()
    other.Rows = 64  # decoded now: read as it is, never from the cache
    assert _Geometry.of(other).rows == 64
    bad = _raw_ct()
    bad.BitsStored = 40
    with pytest.raises(QuarantineError, match="BitsStored"):
        _Geometry.of(bad)


def test_decoded_is_pydicoms_own_and_a_copy() -> None:
    """The meta's Transfer Syntax UID as pydicom decodes it, a fresh element per file."""
    from medveil.engine.native import _decoded
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import FileMetaDataset
    from pydicom.tag import BaseTag

    value = b"1.2.840.10008.1.2.1\x00"
    raw = RawDataElement(BaseTag(0x00020010), "UI", len(value), value, 144, False, True)
    a, b = _decoded(raw), _decoded(raw)
    assert a is not b
    want = FileMetaDataset({BaseTag(0x00020010): raw}).TransferSyntaxUID  # pydicom's own
    assert a.value == b.value == want
    assert type(a.value) is type(want)
    assert a.VR == "UI" and a.tag == 0x00020010
    b.value = "1.2.840.10008.1.2"  # a reader may set it: the next file's is untouched
    assert _decoded(raw).value == want


@pytest.mark.parametrize("value", [b"ISO_IR 100", b"ISO_IR 192", b"\\ISO 2022 IR 87", b"GB18030 "])
def test_decoded_charset_is_pydicoms_own(value: bytes) -> None:
    """The output's character set element decodes as pydicom's first text read would."""
    from medveil.dicom.pydicom_private import character_set, dataset_over
    from medveil.engine.native import _decoded
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    raw = RawDataElement(BaseTag(0x00080005), "CS", len(value), value, 300, False, True)
    mine = dataset_over({BaseTag(0x00080005): _decoded(raw)})
    theirs = dataset_over({BaseTag(0x00080005): raw})
    assert mine.SpecificCharacterSet == theirs.SpecificCharacterSet
    assert character_set(mine) == character_set(theirs)
