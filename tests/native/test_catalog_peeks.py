"""The native road's catalog row and output path come from its catalog bytes, not a Dataset.

NativeOutcome.peeks reads the output's catalog values without the Dataset view; where it
answers at all, the path and the row must be exactly what peek_str and peek_int over the
view give (the other roads' readers), whatever the bytes and character set.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.dicom.pydicom_private import raw_tuple
from medveil.engine import instance as inst
from medveil.engine.dataset import Deidentifier, DeidReport
from medveil.engine.native import NativeOutcome, final_view
from medveil.engine.raw import _CATALOG_TAGS
from medveil.policy.schema import Policy
from pydicom.data import get_testdata_file
from pydicom.tag import BaseTag

from tests.native.roads import SECRET, pydicom_files, quiet

_DIMENSIONS = (0x00280010, 0x00280011)
_TEXT_TAGS = [t for t in _CATALOG_TAGS if t not in _DIMENSIONS]
_CHARSETS = [
    None,
    b"",
    b"ISO_IR 100",
    b"ISO_IR 192",
    b"ISO_IR 6 ",
    b"ISO_IR 144",
    b"GB18030 ",
    b"ISO 2022 IR 87",
    b"\\ISO 2022 IR 87",
    b"ISO_IR 100\\ISO_IR 144",
    b"NOT A CHARSET",
]
_VALUES = st.one_of(
    st.binary(max_size=24),
    st.sampled_from(
        [
            *(b"1.2.3.4\x00", b"CT", b"20240101", b"M ", b"065Y", b"M\xfcller "),
            *(b"\xc3\xa9t\xc3\xa9", b"\x1b$B$3$s\x1b(B", b"a\\b ", b"", b"\x00", b" 2.5 "),
            *(b"nan", b"1e3"),
        ]
    ),
)


def _same(catalog: list[tuple[int, str, bytes]], charset_value: bytes | None) -> bool:
    """True when peeks answered (and agreed with the view's readers); False: it declined."""
    charset = None
    if charset_value is not None:
        key = BaseTag(0x00080005)
        fields = (key, "CS", len(charset_value), charset_value, 0, False, True, True, False)
        charset = raw_tuple(fields)
    out = NativeOutcome([], DeidReport(), False, "", catalog, charset)
    with quiet():  # an unknown character set: pydicom warns
        peeks = out.peeks()
        final = final_view(catalog, charset)
    if peeks is None:
        return False
    with quiet():
        want_path = inst.output_relpath(final)
        want = inst.catalog_row(final, want_path, [b"x"], "h")
    got_path = inst._relpath(peeks[0])
    got = inst._catalog_row(peeks, got_path, [b"x"], "h")
    assert got_path == want_path
    assert repr(got) == repr(want)  # repr: a NaN slice thickness equals itself
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_TEXT_TAGS), st.sampled_from(["CS", "LO", "UI", "UN"]), _VALUES),
        max_size=8,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(_DIMENSIONS),
            st.sampled_from(["US", "UL", "SS", "SL", "IS", "UN"]),
            st.binary(max_size=5),
        ),
        max_size=2,
    ),
    st.sampled_from(_CHARSETS),
)
def test_peeks_read_what_the_view_reads(
    texts: list[tuple[int, str, bytes]],
    dims: list[tuple[int, str, bytes]],
    charset: bytes | None,
) -> None:
    _same(texts + dims, charset)


def test_peeks_answer_for_plain_outputs() -> None:
    catalog = [
        (0x00080018, "UI", b"2.25.1\x00"),
        (0x00080060, "CS", b"CT"),
        (0x00080070, "LO", b"M\xfcller "),
        (0x00100020, "LO", b"PSEUDO"),
        (0x00180050, "DS", b"2.5 "),
        (0x00280010, "US", b"\x00\x02"),
        (0x00280011, "US", b"\x00\x02"),
    ]
    for charset in (None, b"ISO_IR 100"):
        assert _same(catalog, charset), charset
    assert not _same(catalog, b"ISO_IR 192")  # not UTF-8: the view decides (replaced)
    catalog[2] = (0x00080070, "LO", "Müller".encode())
    assert _same(catalog, b"ISO_IR 192")
    assert not _same(catalog, b"ISO_IR 100\\ISO_IR 144")  # two codecs: the view decides


def test_native_results_use_peeks_on_real_files() -> None:
    engine = Deidentifier(Policy.default(), SECRET)
    answered = 0
    for name in pydicom_files():
        data = Path(str(get_testdata_file(name))).read_bytes()
        with quiet():
            inst.clean_instance(engine, bytearray(data), name)  # teaches the road
            out = inst.native_engine_of(engine).apply(bytearray(data))
        if not isinstance(out, NativeOutcome):
            continue
        charset = next((t for t in out.catalog if t[0] == 0x00080005), None)
        assert charset is None  # the character set is the view's, not a catalog element
        if out.peeks() is not None:
            answered += 1
            with quiet():
                path = inst.output_relpath(out.final)
                row = inst.catalog_row(out.final, path, [b"x"], "h")
            got = inst._catalog_row(out.peeks(), path, [b"x"], "h")  # type: ignore[arg-type]
            assert repr(got) == repr(row), name
    assert answered >= 5, answered


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([".", "..", "", "a", "1.2", "é", "a/b", " ", "x.y-z_"]),
        min_size=4,
        max_size=4,
    )
)
def test_relpath_is_the_posix_path_of_its_parts(parts: list[str]) -> None:
    texts = dict(zip((0x00100020, 0x0020000D, 0x0020000E, 0x00080018), parts, strict=True))
    want = str(
        PurePosixPath(
            inst.safe_component(texts[0x00100020] or "unknown-patient"),
            inst.safe_component(texts[0x0020000D]),
            inst.safe_component(texts[0x0020000E]),
            inst.safe_component(texts[0x00080018]) + ".dcm",
        )
    )
    assert inst._relpath(texts.__getitem__) == want
