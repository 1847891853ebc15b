"""The raw walker agrees with pydicom on element paths, and finds the pixel data to skip."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil.verify.rawscan import layouts
from medveil.verify.values import walk
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from tests.verify import factory as f
from tests.verify.test_verify import PLANTS


def _rich_output():
    ds = f.clean_output()
    for _id, plant, *_ in PLANTS:
        plant(ds)
    return ds


@pytest.mark.parametrize(
    "ts",
    [
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ],
)
def test_walker_paths_equal_pydicom_paths(tmp_path, ts) -> None:
    path = f.save(_rich_output(), tmp_path / "o.dcm", transfer_syntax=ts)
    data = path.read_bytes()
    lays = layouts(data)
    ds = dcmread(io.BytesIO(data))
    expected = {p for p, _e, _priv in walk(ds.file_meta)} | {p for p, _e, _priv in walk(ds)}
    got = {sp.path for lay in lays for sp in lay.spans} - {"(deflated)"}
    assert got == expected
    assert all(lay.complete for lay in lays)
    inner = lays[-1]
    ((start, end),) = inner.pixel_ranges
    assert inner.data[start:end] == ds.PixelData
    assert (lays[0].meta_end > 132) and lays[0].name == "file"
    assert (len(lays) == 2) == (ts == DeflatedExplicitVRLittleEndian)


def test_encapsulated_pixel_data_is_skipped_but_trailing_elements_are_not(tmp_path) -> None:
    originals = f.save(f.original(), tmp_path / "orig" / "o.dcm")
    ds = f.clean_output()
    ds.PixelData = encapsulate([b"\xff\xd8" + f.MRN.encode() + b" \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.BitsStored, ds.HighBit = 16, 15
    ds.private_block(0x7FE1, "TRAILING FAKE", create=True).add_new(0x01, "LO", f.PRIVATE_TEXT)
    out = f.save(ds, tmp_path / "out" / "o.dcm", transfer_syntax=JPEGBaseline8Bit)
    lay = layouts(out.read_bytes())[0]
    ((start, end),) = lay.pixel_ranges
    assert out.read_bytes().index(f.MRN.encode()) in range(start, end)
    from medveil.verify import verify_archive

    report = verify_archive(originals, out)
    assert [(x.category, x.path) for x in report.findings] == [("private", "(7FE1,1001)")]


def test_truncated_file_is_incomplete_not_an_error() -> None:
    data = f.clean_output()
    buf = io.BytesIO()
    data.save_as(buf, enforce_file_format=True)
    raw = buf.getvalue()
    lay = layouts(raw[: len(raw) - 20])[0]
    assert not lay.complete
    assert layouts(b"")[0].spans == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_damaged_files_never_crash_the_verifier(tmp_path, data) -> None:
    """Truncated or bit-flipped outputs are reported, and the planted ID is still found."""
    from medveil.verify import verify_archive

    originals = tmp_path / "orig" / "o.dcm"
    if not originals.exists():
        f.save(f.original(), originals)
    ds = f.clean_output()
    ds.ImageComments = f"see {f.MRN} "
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    raw = bytearray(buf.getvalue())
    where = raw.index(f.MRN.encode())
    cut = data.draw(st.integers(where + len(f.MRN) + 1, len(raw)), label="cut")
    flips = data.draw(st.lists(st.integers(0, where - 1), max_size=6), label="flips")
    for i in flips:
        raw[i] ^= 0xFF
    out = tmp_path / "out" / "damaged.dcm"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(bytes(raw[:cut]))
    for lay in layouts(bytes(raw[:cut])):
        assert all(0 <= sp.start <= sp.end <= len(lay.data) for sp in lay.spans)
    report = verify_archive(originals.parent, out)
    assert any(x.kind == "ids" for x in report.findings), report.table()


def _bundled_files() -> list[str]:
    from pathlib import Path

    from pydicom.data import get_testdata_file

    folder = Path(get_testdata_file("CT_small.dcm")).parent
    return sorted(str(p) for p in folder.glob("*.dcm"))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", _bundled_files(), ids=lambda p: p.rsplit("/", 1)[-1])
def test_walker_agrees_with_pydicom_on_its_test_files(path: str) -> None:
    """Every element pydicom sees has the same path in the raw walk (all syntaxes, no meta,
    big endian, deflate, UN sequences, encapsulated pixels); the walker may see more, only
    inside private sequences sent as UN, which pydicom leaves as bytes."""
    from pathlib import Path

    data = Path(path).read_bytes()
    try:
        ds = dcmread(io.BytesIO(data), force=True)
        expected = {p for p, _e, _pv in walk(ds.file_meta)} | {p for p, _e, _pv in walk(ds)}
    except Exception:
        pytest.skip("pydicom cannot read this file either")
    got = {sp.path for lay in layouts(data) for sp in lay.spans} - {"(deflated)"}
    assert expected <= got
    un = {p for p, e, _pv in walk(ds) if e.VR == "UN"}
    assert all(any(x.startswith(u + "[") for u in un) for x in got - expected)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_element_at_is_the_innermost_containing_span(data) -> None:
    buf = io.BytesIO()
    _rich_output().save_as(buf, enforce_file_format=True)
    (lay,) = layouts(buf.getvalue())
    start = data.draw(st.integers(0, len(lay.data) - 1))
    end = data.draw(st.integers(start + 1, min(len(lay.data), start + 40)))
    containing = [sp for sp in lay.spans if sp.start <= start and end <= sp.end]
    best = min(containing, key=lambda sp: sp.end - sp.start, default=None)
    assert lay.element_at(start, end) == best


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", _bundled_files(), ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_learned_element_is_found_in_its_own_original(path: str) -> None:
    """Completeness: verifying a file against itself reports every element it learned from
    (learning and searching normalise the same way, at every depth, in every syntax)."""
    from pathlib import Path

    from medveil.verify import verify_archive
    from medveil.verify.values import classify, element_texts, learn, normalize
    from pydicom.datadict import keyword_for_tag

    index = learn([Path(path)])
    if not index.originals:
        pytest.skip("not an original the verifier can learn from")
    ds = dcmread(path, force=True)
    expected = set()
    for p, e, _priv in [*walk(ds.file_meta), *walk(ds)]:
        kind = classify(int(e.tag), e.VR, keyword_for_tag(e.tag) or "")
        texts = [normalize(t) for t in element_texts(e)] if kind else []
        if any(t in index.values for t in texts) and e.VR not in ("IS", "DS"):
            expected.add(p)
    found = {x.path for x in verify_archive(path, path).findings}
    assert expected <= found
