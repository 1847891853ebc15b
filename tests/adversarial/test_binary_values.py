"""The post-check searches binary values for terms as substrings, inflated when compressed.

Issue 18 item 3: a binary element the policy keeps (a standard one Table E.1-1 does not
list, or a private one under Retain Safe Private) may hold the name and the ID glued
together, or a zlib/gzip stream of them. Both roads of the post-check (scanner rows and
decoded spans) must find them; short terms and pixel data must not cause false finds; a
decompression bomb is quarantined without being inflated past its bound.
"""

from __future__ import annotations

import gzip
import io
import time
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.engine import postcheck
from medveil.errors import QuarantineError
from medveil.verify.binary import INFLATE_RATIO
from medveil.verify.matcher import SubstringMatcher, have_aho_corasick
from pydicom.dataset import Dataset, FileMetaDataset

FAMILY, PID = "Qzdoebrak", "QX7741230"
SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99"]


def _ds(family: str = FAMILY, pid: str = PID) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "2.25.1"
    ds.PatientName = f"{family}^Wxmelkin"
    ds.PatientID = pid
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(8)
    return ds


def _save(ds: Dataset, syntax: str = SYNTAXES[0]) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _written(ds: Dataset, syntax: str = SYNTAXES[0]) -> bytes:
    """ds as a cleaned output: identity removed, marked; binary planted values kept."""
    for kw in ("PatientName", "PatientID"):
        delattr(ds, kw)
    ds.PatientIdentityRemoved = "YES"
    ds.SOPInstanceUID = "2.25.2"  # a new UID, as the engine writes
    return _save(ds, syntax)


def _even(b: bytes) -> bytes:
    return b + b"\0" * (len(b) % 2)


TERMS = postcheck.learn_terms_spans(_save(_ds()))
_NOISE = bytes((i * 7919 + (i >> 3) * 104729) % 251 for i in range(3000))  # compresses poorly
SAFE_PRIVATE = postcheck.Allowance(private=True)


NOTHING_KEPT = postcheck.Allowance()


def _verdicts(data: bytes, allow: postcheck.Allowance = NOTHING_KEPT) -> list[str]:
    """The quarantine reason of each road ('' when it passes the file)."""
    out = []
    for check in (postcheck.check_written, postcheck.check_written_spans):
        try:
            check(data, TERMS, allow)
            out.append("")
        except QuarantineError as exc:
            out.append(str(exc))
    return out


def _with(tag: int, vr: str, value: bytes, private: str | None = None) -> Dataset:
    ds = _ds()
    if private:
        ds.private_block(tag >> 16, private, create=True).add_new(tag & 0xFF, vr, value)
    else:
        ds.add_new(tag, vr, value)
    return ds


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize(
    "tag,vr",
    [(0x7FE00020, "OW"), (0x00281201, "OW"), (0x00660016, "OF"), (0x00143050, "OB")],
)
def test_glued_name_and_id_in_a_binary_standard_element(tag: int, vr: str, syntax: str) -> None:
    value = f"1{FAMILY}{PID}1".encode().ljust(16, b" ")
    assert all("raw bytes of" in v for v in _verdicts(_written(_with(tag, vr, value), syntax)))


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize(
    "blob",
    [
        zlib.compress(f"PatientName={FAMILY};".encode()),
        gzip.compress(f"id:{PID}".encode(), mtime=0),
        b"VEND\x00\x01" + bytes(10) + zlib.compress(f"x{FAMILY}x".encode()),
        # a stream, then a second one right after it
        zlib.compress(b"<codec/>") + zlib.compress(f"{PID}".encode()),
        # compressed twice
        zlib.compress(zlib.compress(f"{FAMILY}".encode())),
        # a chance header first (0x78 0x01 starts no valid stream here), the stream after
        b"\x78\x01\xff\xff" + zlib.compress(FAMILY.encode()),
        # corrupt after the identity: what was inflated before the error is searched
        zlib.compress(bytes(range(256)) * 4 + FAMILY.encode() + _NOISE)[:-600] + b"\xff" * 600,
    ],
    ids=["zlib", "gzip", "after-header", "second-stream", "twice", "chance-header", "cut"],
)
def test_compressed_private_blob_is_inflated(blob: bytes, syntax: str) -> None:
    ds = _with(0x7E011012, "OB", _even(blob), "HOLOGIC, Inc.")
    verdicts = _verdicts(_written(ds, syntax), SAFE_PRIVATE)
    assert all("inflated bytes of (7E01,1012)" in v for v in verdicts), verdicts


def test_a_kept_private_blob_without_the_patient_passes() -> None:
    blob = zlib.compress(b"<codec version='2'><quality>95</quality></codec>" * 20)
    ds = _with(0x7E011012, "OB", _even(blob), "HOLOGIC, Inc.")
    assert _verdicts(_written(ds), SAFE_PRIVATE) == ["", ""]


def test_decompression_bomb_is_quarantined_within_its_bound() -> None:
    z = zlib.compressobj(9)
    blob = b"".join([z.compress(bytes(1 << 20)) for _ in range(256)] + [z.flush()])
    written = _written(_with(0x7E011012, "OB", _even(blob), "HOLOGIC, Inc."))
    tracemalloc.start()
    t = time.process_time()
    verdicts = _verdicts(written, SAFE_PRIVATE)
    elapsed = time.process_time() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert all("cannot inspect compressed private data" in v for v in verdicts), verdicts
    # 256 MiB of zeros in ~256 KiB: bounded at 64 x 256 KiB = 16 MiB per road.
    assert peak < 3 * INFLATE_RATIO * len(blob), peak
    assert elapsed < 5


def test_short_terms_stay_whole_words_in_binary_values() -> None:
    """A name component below SUBSTRING_MIN inside a binary word is no finding."""
    terms = postcheck.learn_terms_spans(_save(_ds(family="Lee", pid="QX7741230")))
    assert "lee" in terms.always
    ds = _with(0x00143050, "OB", b"asleep  ")
    data = _written(ds)
    for check in (postcheck.check_written, postcheck.check_written_spans):
        check(data, terms)  # passes: "lee" inside "asleep" is a word of its own
    # As a word of its own it is found, as before; glued to other letters or digits it is
    # not (the price of no false finds on three-letter names, see SUBSTRING_MIN).
    for check in (postcheck.check_written, postcheck.check_written_spans):
        with pytest.raises(QuarantineError):
            check(_written(_with(0x00143050, "OB", b"1 LEE 2 ")), terms)
        check(_written(_with(0x00143050, "OB", b"1LEE2   ")), terms)


@pytest.mark.parametrize("enc", ["ascii", "utf-16-le", "utf-16-be"])
def test_an_id_of_digits_inside_a_longer_number_is_no_finding(enc: str) -> None:
    terms = postcheck.learn_terms_spans(_save(_ds(pid="12345678")))
    for check in (postcheck.check_written, postcheck.check_written_spans):
        check(_written(_with(0x00143050, "OB", _even("90123456789".encode(enc)))), terms)
        with pytest.raises(QuarantineError):  # glued to letters: the ID
            check(_written(_with(0x00143050, "OB", _even("id12345678x".encode(enc)))), terms)


def test_pixel_data_is_never_searched_for_substrings() -> None:
    ds = _ds()
    ds.Rows, ds.Columns = 4, 8
    ds.PixelData = f"{FAMILY}{PID}".encode().ljust(64, b"\0")
    assert _verdicts(_written(ds)) == ["", ""]


def test_text_values_keep_word_boundaries() -> None:
    """A text element is still searched by whole words (no new false finds there)."""
    terms = postcheck.learn_terms_spans(_save(_ds(family="Chan")))
    ds = _ds()
    ds.StudyDescription = "CHANGE OF PROTOCOL"
    data = _written(ds)
    for check in (postcheck.check_written, postcheck.check_written_spans):
        check(data, terms)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=4), min_size=1, max_size=24, unique=True),
    st.binary(max_size=200),
)
def test_substring_matcher_finds_every_occurrence(patterns: list[bytes], hay: bytes) -> None:
    want = sorted(
        (s, s + len(p), i)
        for i, p in enumerate(patterns)
        for s in range(len(hay) - len(p) + 1)
        if hay[s : s + len(p)] == p
    )
    assert SubstringMatcher(patterns).find(hay) == want


def test_substring_matcher_uses_aho_corasick_for_many_patterns() -> None:
    pats = [f"term{i:03d}".encode() for i in range(40)]
    m = SubstringMatcher(pats)
    assert (m._auto is not None) == have_aho_corasick()
    assert m.find(b"xxterm007term039") == [(2, 9, 7), (9, 16, 39)]
