"""The shortcuts the post-check's fast road relies on, each checked against what it skips.

* FindMatcher (a find per pattern) gives the brute-force matches, like the automata;
* ASCII bytes without an escape decode to themselves in every character set pydicom maps
  (so an ASCII value's decoded search is its raw search);
* ``learns_from`` is False only for elements the learner would ignore anyway.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.verify.elements import value_texts
from medveil.verify.matcher import FindMatcher, few_matcher
from medveil.verify.values import Learner, learns_from
from pydicom.charset import decode_bytes, python_encoding
from pydicom.datadict import DicomDictionary, keyword_for_tag

from .test_matcher import ALPHABET, brute


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(ALPHABET, min_size=1, max_size=5), min_size=1, max_size=8, unique=True),
    st.text(ALPHABET, max_size=40),
)
def test_find_matcher_on_text_equals_brute_force(patterns: list[str], hay: str) -> None:
    assert FindMatcher(patterns).find(hay) == brute(patterns, hay)
    assert few_matcher(patterns).find(hay) == brute(patterns, hay)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=4), min_size=1, max_size=8, unique=True),
    st.binary(max_size=40),
    st.booleans(),
)
def test_find_matcher_on_bytes_equals_brute_force(
    patterns: list[bytes], hay: bytes, utf16: bool
) -> None:
    patterns = list(dict.fromkeys(p.lower() for p in patterns))
    assert FindMatcher(patterns, utf16=utf16).find(hay) == brute(patterns, hay, utf16)


def test_few_matcher_switches_to_an_automaton_for_many_patterns() -> None:
    many = [f"w{i:03d}" for i in range(40)]
    assert not isinstance(few_matcher(many), FindMatcher)
    assert few_matcher(many).find("x w007 w039") == [(2, 6, 7), (7, 11, 39)]


def test_ascii_decodes_to_itself_in_every_character_set() -> None:
    every = bytes(b for b in range(0x20, 0x80)) + b"\t\r\n\x0c"
    encodings = sorted(set(python_encoding.values()))
    for first, second in itertools.product([*encodings, None], encodings):
        codecs = [first, second] if first else [second]
        for vr in ("PN", "LO", "LT", "UT"):
            # value_texts' own ASCII road, and pydicom's decoder, give the same texts.
            fast = value_texts(every, 0, len(every), vr, codecs)
            delims = {0x5E, 0x3D, 0x5C} if vr == "PN" else {0x0D, 0x0A, 0x09, 0x0C, 0x5C}
            text = decode_bytes(every, codecs, delims)
            assert text == every.decode("ascii")
            values = [text] if vr in ("LT", "UT") else text.split("\\")
            assert fast == tuple(t for t in (v.strip(" \x00") for v in values) if t)


def test_learns_from_false_means_the_learner_ignores_the_element() -> None:
    vrs = ["AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "OB", "PN", "SH", "SQ"]
    vrs += ["ST", "TM", "UI", "UN", "US", "UT", "UC", "UR", "FD", "OW"]
    tags = [*list(DicomDictionary)[::7], 0x00090010, 0x00091010, 0x00291001, 0x00020012]
    for tag in tags:
        for vr in vrs:
            kw = keyword_for_tag(tag) or ""
            if learns_from(tag, vr, kw):
                continue
            learner = Learner()
            learner.element(
                tag, vr, kw, ("Zqvalue 19580704", "1.2.3.4.5"), bool(tag >> 16 & 1), "x"
            )
            assert not learner.pending and not learner.benign and not learner.software_uids
            assert not learner.index.values and not learner.index.dates
