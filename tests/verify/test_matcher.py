"""The regex and Aho-Corasick matchers agree with a brute-force search, and with each other."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from medveil.verify.matcher import AhoCorasickMatcher, RegexMatcher, have_aho_corasick

ALPHABET = "ab ^.-1é_"


def brute(patterns: list, hay, utf16: bool = False) -> list[tuple[int, int, int]]:
    """Longest boundary-respecting match at each start, by trying every pattern everywhere."""
    step = 2 if utf16 else 1

    def word(i: int) -> bool:
        if isinstance(hay, str):
            return 0 <= i < len(hay) and hay[i].isalnum()
        if utf16:
            return i >= 0 and i + 1 < len(hay) and bool(re.match(rb"[a-z0-9]\x00", hay[i : i + 2]))
        return 0 <= i < len(hay) and bool(re.match(rb"[a-z0-9]", hay[i : i + 1]))

    best: dict[int, tuple[int, int]] = {}
    for i, p in enumerate(patterns):
        for s in range(len(hay) - len(p) + 1):
            e = s + len(p)
            if hay[s:e] == p and not word(s - step) and not word(e):
                if s not in best or best[s][0] < e:
                    best[s] = (e, i)
    return sorted((s, e, i) for s, (e, i) in best.items())


def engines():
    """Matcher classes available here."""
    return [RegexMatcher] + ([AhoCorasickMatcher] if have_aho_corasick() else [])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.text(ALPHABET, min_size=1, max_size=5), min_size=1, max_size=8, unique=True),
    st.text(ALPHABET, max_size=40),
)
def test_text_matchers_equal_brute_force(patterns: list[str], hay: str) -> None:
    for cls in engines():
        assert cls(patterns).find(hay) == brute(patterns, hay)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=4), min_size=1, max_size=8, unique=True),
    st.binary(max_size=40),
    st.booleans(),
)
def test_byte_matchers_equal_brute_force(patterns: list[bytes], hay: bytes, utf16: bool) -> None:
    patterns = [p.lower() for p in patterns]
    patterns = list(dict.fromkeys(patterns))
    for cls in engines():
        assert cls(patterns, utf16=utf16).find(hay) == brute(patterns, hay, utf16)


def test_long_values_do_not_nest_deeply() -> None:
    """A 1 KiB value compiles (chains are literal runs, not nested groups)."""
    long = "x" * 1024
    m = RegexMatcher([long, long[:-1] + "y", "short"])
    assert m.find(f" {long} short") == [(1, 1025, 0), (1026, 1031, 2)]


def test_empty_pattern_list() -> None:
    for cls in engines():
        assert cls([]).find("anything") == []


def test_unknown_engine_is_rejected() -> None:
    from medveil.verify.matcher import make_matcher

    with pytest.raises(ValueError, match="engine"):
        make_matcher(["abcd"], engine="grep")


def test_without_pyahocorasick_auto_falls_back_and_aho_is_a_usage_error(
    monkeypatch, tmp_path, capsys
) -> None:
    from medveil.cli.main import main
    from medveil.verify import matcher

    monkeypatch.setattr(matcher, "_ahocorasick", None)
    assert isinstance(matcher.make_matcher(["abcd"]), RegexMatcher)
    with pytest.raises(ImportError, match="verify-fast"):
        matcher.make_matcher(["abcd"], engine="aho")
    (tmp_path / "a").write_bytes(b"x")
    assert main(["verify", "--engine", "aho", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert "verify-fast" in capsys.readouterr().err
