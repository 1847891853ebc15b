"""The core's matcher (medveil._core.termsearch) finds exactly what the Python matchers find.

The Python matchers (verify.matcher: the trie regex, pyahocorasick, a find per pattern,
the substring search) are the reference; the native automaton replaces them in the
post-check and in ``medveil verify``, so any difference would be a leak let through or a
release lost. Compared on hypothesis-generated terms and haystacks (word bytes, zero
bytes, UTF-16 units, non-ASCII and spaceless text, lone surrogates) and on the adversarial
corpus: each case's learned terms, in every byte encoding the post-check searches, over the
case's own bytes and texts.
"""

from __future__ import annotations

import pickle
import random
import re
import threading
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medveil._core import termsearch
from medveil.engine import instance as inst
from medveil.engine import postcheck
from medveil.engine.dataset import Deidentifier
from medveil.policy.schema import Policy
from medveil.verify.elements import decoded_elements, scan_file
from medveil.verify.matcher import (
    SPACELESS,
    AhoCorasickMatcher,
    FindMatcher,
    NativeMatcher,
    RegexMatcher,
    SubstringMatcher,
    few_matcher,
    few_matcher_python,
    have_aho_corasick,
    make_matcher,
    substring_matcher,
)

from ..adversarial.generator import corpus
from ..conftest import bundled_test_files

FOLD = bytes((b + 32 if 65 <= b <= 90 else 32 if b == 0x5E else b) for b in range(256))
_SPACELESS = re.compile(f"[{SPACELESS}]")


def references(patterns: list, utf16: bool = False) -> list:
    """Every Python matcher of the word rules over these patterns."""
    refs = [RegexMatcher(patterns, utf16=utf16), FindMatcher(patterns, utf16=utf16)]
    if have_aho_corasick():
        refs.append(AhoCorasickMatcher(patterns, utf16=utf16))
    return refs


def assert_same(patterns: list, hay: object, utf16: bool = False) -> list:
    """The native word matcher's matches equal every reference's; returns them."""
    got = NativeMatcher(patterns, utf16=utf16).find(hay)
    for ref in references(patterns, utf16):
        assert got == ref.find(hay), type(ref).__name__
    return got


def assert_same_substrings(patterns: list[bytes], hay: bytes) -> list:
    """The native substring search equals the Python one (and a brute force)."""
    got = NativeMatcher(patterns, substring=True).find(hay)
    assert got == SubstringMatcher(patterns).find(hay)
    brute = sorted(
        (s, s + len(p), i)
        for i, p in enumerate(patterns)
        for s in range(len(hay) - len(p) + 1)
        if p and hay[s : s + len(p)] == p
    )
    assert got == brute
    return got


# ------------------------------------------------------------------ generated inputs
# Word bytes, separators ('_' and '^' included), zero bytes (UTF-16 and masking), and
# bytes past ASCII (Latin-1, UTF-8 continuation bytes).
BYTE_ALPHABET = b"ab9Z_ ^.-\x00\xe9\xc3\xa9\x1b"
TEXT_ALPHABET = "ab9_ ^.-\x00éÉß山田タ한ไ٣\u0301²Ⅻ𠀀𝒜"

byte_strings = st.lists(st.sampled_from(list(BYTE_ALPHABET)), max_size=6).map(bytes)
byte_patterns = st.lists(byte_strings.filter(bool), min_size=1, max_size=10, unique=True)
byte_hays = st.lists(
    st.one_of(byte_strings, st.just(b"ab"), st.just(b"a\x00b\x00")), max_size=20
).map(b"".join)
text_patterns = st.lists(
    st.text(TEXT_ALPHABET, min_size=1, max_size=5), min_size=1, max_size=10, unique=True
)


@settings(max_examples=200, deadline=None)
@given(byte_patterns, byte_hays, st.booleans())
def test_bytes_word_rules_equal_python(patterns: list[bytes], hay: bytes, fold: bool) -> None:
    if fold:  # as the post-check searches: folded patterns over a folded haystack
        patterns = list(dict.fromkeys(p.translate(FOLD) for p in patterns))
        hay = hay.translate(FOLD)
    got = assert_same(patterns, hay)
    native = NativeMatcher(patterns)
    assert native.find(bytearray(hay)) == native.find(memoryview(hay)) == got


@settings(max_examples=150, deadline=None)
@given(byte_patterns, byte_hays)
def test_utf16_word_rules_equal_python(patterns: list[bytes], hay: bytes) -> None:
    units = [p.decode("latin-1").encode("utf-16-le") for p in patterns]
    units = list(dict.fromkeys(units + patterns))
    assert_same(units, hay, utf16=True)
    assert_same(units, hay.decode("latin-1").encode("utf-16-le"), utf16=True)


@settings(max_examples=150, deadline=None)
@given(byte_patterns, byte_hays)
def test_substrings_equal_python(patterns: list[bytes], hay: bytes) -> None:
    assert_same_substrings(patterns, hay)


@settings(max_examples=200, deadline=None)
@given(text_patterns, st.text(TEXT_ALPHABET, max_size=40))
def test_text_word_rules_equal_python(patterns: list[str], hay: str) -> None:
    assert_same(patterns, hay)


@settings(max_examples=100, deadline=None)
@given(text_patterns, st.text(TEXT_ALPHABET + "\ud800\udfff", max_size=30))
def test_text_with_lone_surrogates_goes_to_python(patterns: list[str], hay: str) -> None:
    # The core reads UTF-8; a str it cannot encode is searched by the regex, same answer.
    got = NativeMatcher(patterns).find(hay)
    assert got == RegexMatcher(patterns).find(hay)


def test_surrogate_patterns_get_a_python_matcher() -> None:
    m = few_matcher(["ab\ud800c", "xyz"])
    assert not isinstance(m, NativeMatcher)
    assert m.find("q ab\ud800c xyz") == [(2, 6, 0), (7, 10, 1)]


def test_word_char_rule_is_pythons_for_every_code_point() -> None:
    # str.isalnum minus the spaceless scripts, as matcher._is_word_char decides it.
    step_high = 7  # every BMP code point; a sample of the higher planes keeps it quick
    points = [*range(0x10000), *range(0x10000, 0x110000, step_high)]
    for cp in points:
        ch = chr(cp)
        want = ch.isalnum() and not _SPACELESS.match(ch)
        assert termsearch.is_word_char(cp) == want, hex(cp)


def test_word_boundaries_in_known_cases() -> None:
    pats = [b"doe", b"john", b"john doe", b"12345"]
    hay = b"x john doe, johnny 12345 doe_jane a12345 doe\x00"
    assert assert_same(pats, hay) == [(2, 10, 2), (7, 10, 0), (19, 24, 3), (25, 28, 0), (41, 44, 0)]
    # Upper case is not a word byte in a folded haystack: the caller folds first.
    assert assert_same([b"doe"], b"Jdoe") == [(1, 4, 0)]
    text = ["müller", "山田", "doe", "ß"]
    hay_t = "herr müller und 山田太郎 doe müllers ßx 9ß"
    assert assert_same(text, hay_t) == [(5, 11, 0), (16, 18, 1), (21, 24, 2)]


def test_repeated_and_empty_patterns() -> None:
    # A repeated pattern answers with its last index (the regex's and pyahocorasick's).
    got = NativeMatcher([b"abc", b"", b"abc"]).find(b"abc")
    assert got == RegexMatcher([b"abc", b"", b"abc"]).find(b"abc") == [(0, 3, 2)]
    assert NativeMatcher([]).find(b"abc") == []
    assert NativeMatcher([b"abc"]).find(b"") == []
    assert substring_matcher([b""]).find(b"abc") == []
    assert isinstance(substring_matcher([b"abcd"]), NativeMatcher)


def test_every_byte_value_in_patterns() -> None:
    # 256 distinct bytes leave no spare class: the automaton uses one class per byte.
    rng = random.Random(7)
    pats = list(dict.fromkeys(bytes(rng.randrange(256) for _ in range(4)) for _ in range(300)))
    pats.append(bytes(range(256)))
    hay = bytes(range(256)) + b"".join(pats[:50]) + bytes(rng.randrange(256) for _ in range(5000))
    assert_same_substrings(pats, hay)
    folded = list(dict.fromkeys(p.translate(FOLD) for p in pats))
    assert_same(folded, hay.translate(FOLD))


def test_too_large_a_term_set_falls_back_to_python() -> None:
    rng = random.Random(3)
    pats = list(dict.fromkeys(bytes(rng.randrange(256) for _ in range(120)) for _ in range(400)))
    with pytest.raises(ValueError, match="too large"):
        termsearch.Automaton(pats, "word")
    m = make_matcher(pats, engine="native")
    assert not isinstance(m, NativeMatcher)
    hay = b" " + pats[5] + b" "
    assert m.find(hay) == RegexMatcher(pats).find(hay)
    sub = substring_matcher(pats)
    assert isinstance(sub, SubstringMatcher)
    assert sub.find(hay) == SubstringMatcher(pats).find(hay)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        termsearch.Automaton([b"a"], "regex")
    with pytest.raises(TypeError, match="str"):
        termsearch.Automaton([b"a"], "text")
    with pytest.raises(TypeError, match="bytes-like"):
        termsearch.Automaton(["a"], "word")
    a = termsearch.Automaton([b"abc"], "word")
    with pytest.raises(TypeError):
        a.find("abc")
    with pytest.raises(TypeError):
        termsearch.Automaton(["abc"], "text").find(b"abc")


def test_pickles_by_patterns() -> None:
    m = NativeMatcher([b"doe", b"jane"])
    back = pickle.loads(pickle.dumps(m))
    assert back.find(b"jane doe") == m.find(b"jane doe") == [(0, 4, 1), (5, 8, 0)]


def test_large_haystacks_from_threads() -> None:
    # Past 4 KiB the search runs without the GIL; threads must not disturb each other.
    rng = random.Random(11)
    pats = [f"term{i:04d}".encode() for i in range(300)]
    hays = []
    for _ in range(6):
        words = [rng.choice(pats) if rng.random() < 0.1 else b"filler" for _ in range(20000)]
        hays.append(b" ".join(words))
    m = NativeMatcher(pats)
    want = [RegexMatcher(pats).find(h) for h in hays]
    got: list = [None] * len(hays)

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = m.find(hays[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(hays))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want
    assert all(want)


def test_few_matcher_is_native_and_agrees_with_its_python_form() -> None:
    pats = [b"doe", b"1.2.3.4", b"d\x00o\x00e\x00"]
    m = few_matcher(pats)
    assert isinstance(m, NativeMatcher)
    hay = b"x doe 1.2.3.45 1.2.3.4 d\x00o\x00e\x00 "
    assert m.find(hay) == few_matcher_python(pats).find(hay)


# ------------------------------------------------------------------ adversarial corpus
CASES = corpus()


@pytest.mark.parametrize("case", CASES, ids=[c.place for c in CASES])
def test_adversarial_corpus_terms_over_their_files(case) -> None:
    try:
        terms = postcheck.learn_terms_spans(case.data)
    except Exception:  # a damaged file the walker refuses: its needles are the terms
        terms = postcheck.Terms(always={n.lower() for n in case.needles})
    values = sorted(terms.always | set(terms.kinds) | {n.lower() for n in case.needles})
    assert values
    patterns = postcheck._patterns(values, terms)
    hay = case.data.translate(FOLD)
    found = assert_same(patterns, hay)
    sub = [p for p in patterns if len(p) >= 4]
    assert_same_substrings(sub, hay)
    u16 = [p for p in patterns if b"\x00" in p]
    assert_same(u16, hay, utf16=True)
    # The decoded texts, as the post-check and verify search them.
    try:
        _, decoded = decoded_elements(case.data)
    except Exception:
        decoded = []
    texts = "\x00".join(unicodedata.normalize("NFC", t).lower() for d in decoded for t in d.texts)
    texts += "\x00" + case.data.decode("latin-1").lower()
    text_found = assert_same(values, texts)
    # Every case plants its canaries in the file: both searches find some of them.
    assert found or text_found


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_adversarial_terms_over_generated_haystacks(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(CASES))
    values = sorted({n.lower() for n in case.needles})
    pieces = data.draw(
        st.lists(
            st.one_of(st.sampled_from(values), st.text(TEXT_ALPHABET, max_size=4)), max_size=12
        )
    )
    text = "".join(pieces)
    assert_same(values, text)
    raw = text.encode("utf-8", "surrogatepass").translate(FOLD)
    pats = sorted({v.encode("utf-8").translate(FOLD) for v in values})
    assert_same(pats, raw)
    assert_same_substrings(pats, raw)


# ------------------------------------------------------------------ the post-check's plan
def _plans_equal(data: bytes) -> bool:
    """The core's plan of a file's values equals the numpy reference (False: not scanned)."""
    try:
        scan = scan_file(data)
    except Exception:
        return False
    if scan is None:
        return False
    # Every IS/DS element row with a value, as text in a number would be searched.
    rows = scan.rows
    numbers = [
        i
        for i in range(len(rows))
        if rows[i, 0] >= 0 and postcheck._NUMBER_CODES[scan.codes[i]] and rows[i, 5] > rows[i, 3]
    ]
    for preamble, extra in [(p, x) for p in (False, len(data) >= 132) for x in ([], numbers)]:
        got = postcheck._plan(scan, preamble, extra)
        want = postcheck._plan_python(scan, preamble, extra)
        assert [a.tolist() for a in got[:3]] == [a.tolist() for a in want[:3]]
        assert got[3] == want[3]
        assert got[4] == want[4]
        assert got[5] == want[5]
        assert got[6].tolist() == want[6].tolist()
    return True


def test_plan_of_values_equals_numpy_on_corpus_and_pydicom_files() -> None:
    raw_engine = inst.raw_engine_of(Deidentifier(Policy.default(), bytes(range(32))))
    scanned = written = 0
    for case in CASES:
        scanned += _plans_equal(case.data)
        try:  # the raw-byte engine's output: what the post-check plans in a run
            out = b"".join(raw_engine.apply(bytearray(case.data)).parts)
        except Exception:
            continue  # refused: quarantined or handed to the Dataset engine
        written += _plans_equal(out)
    for path in bundled_test_files():
        with open(path, "rb") as f:
            scanned += _plans_equal(f.read())
    assert scanned > 50 and written > 20
