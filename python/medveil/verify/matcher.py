"""One compiled automaton over every learned value, for text and for raw bytes.

Two interchangeable engines find, at every start position of a haystack, the longest
pattern that sits on word boundaries (no letter or digit right before or after it; ``_``
separates words, as in ``DOE_JANE``):

* :class:`RegexMatcher`: the patterns folded into one trie-shaped regular expression
  (``(?=((?<![^\\W_])(?:ab(?:c|d)|x)(?![^\\W_])))``) so the regex engine walks a trie, not
  each pattern in turn; standard library only.
* :class:`AhoCorasickMatcher`: ``pyahocorasick`` (the optional ``verify-fast`` extra), all
  overlapping matches in one pass, boundaries checked afterwards.

* :class:`NativeMatcher`: the core's Aho-Corasick (``medveil._core.termsearch``, C++, the
  GIL released on large haystacks), the same boundary rules in C++; str haystacks are
  searched as UTF-8 with Python's own ``str.isalnum`` for word characters.

All return the same matches (the tests compare them, tests/verify/test_native_matcher.py
on generated terms and on the adversarial corpus). :func:`few_matcher` (the post-check)
and :func:`substring_matcher` take the native one first; :func:`make_matcher` gives it for
``engine='native'``, and for 'auto' pyahocorasick when it is installed, the regex
otherwise. A term set or text the native matcher cannot take (a table past its bound,
lone surrogates) goes to the Python ones.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# Patterns and haystacks are all str or all bytes; the matchers serve both kinds.
Text = str | bytes

try:  # optional extra: medveil[verify-fast]
    import ahocorasick as _ahocorasick
except ImportError:  # pragma: no cover - depends on the environment
    _ahocorasick = None

# The core's matcher; a core built before it falls back to the Python matchers.
# (Looked up by name: the import checker reads any import of the extension as one of the
# root package, which imports every layer.)
_termsearch: Any = getattr(importlib.import_module("medveil._core"), "termsearch", None)

# Word characters for the boundary rule, per haystack kind. Byte haystacks are already
# lower-cased ASCII, so only [a-z0-9] count; UTF-16-LE patterns carry their own rule.
# "_" separates words (DOE_JANE in a file name or an AE title is a name).
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789")
# Scripts written without spaces between words (Thai, Hangul, Kana, Han): a name inside a
# sentence has letters right beside it, so their letters never count for the boundary rule.
SPACELESS = (
    "\u0e00-\u0e7f\u1100-\u11ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002ffff"
)
_SPACELESS_RE = re.compile(f"[{SPACELESS}]")


def is_spaceless(text: str) -> bool:
    """Whether text has a letter of a script written without spaces between words."""
    if text.isascii():
        return False  # every such script lies outside ASCII
    return _SPACELESS_RE.search(text) is not None


def _trie(patterns: Iterable[Text]) -> dict[Any, Any]:
    root: dict[Any, Any] = {}
    for p in patterns:
        node = root
        for ch in p if isinstance(p, str) else [p[i : i + 1] for i in range(len(p))]:
            node = node.setdefault(ch, {})
        node[""] = True  # end marker ('' never collides with a one-character key)
    return root


def _trie_regex(node: dict[Any, Any], esc: Callable[[list[Any]], str]) -> str:
    """Regex text of a trie node; the 'end here' choice comes last, so matches are longest."""
    branches = []
    for ch in sorted(k for k in node if k != ""):
        sub = node[ch]
        # Follow single-child chains iteratively so long values do not nest groups deeply.
        run = [ch]
        while len(sub) == 1 and "" not in sub:
            (nxt,) = sub.keys()
            run.append(nxt)
            sub = sub[nxt]
        branches.append(esc(run) + _trie_regex(sub, esc))
    if "" in node:
        branches.append("")
    if len(branches) == 1:
        return branches[0]
    return "(?:" + "|".join(branches) + ")"


class _Base:
    """Shared interface: ``find(haystack)`` yields ``(start, end, pattern_index)``."""

    def __init__(self, patterns: Sequence[Text], *, utf16: bool = False) -> None:
        self.patterns: list[Any] = list(patterns)
        self.utf16 = utf16
        self._index: dict[Any, int] = {p: i for i, p in enumerate(self.patterns)}

    def __len__(self) -> int:
        return len(self.patterns)


class RegexMatcher(_Base):
    """Trie-shaped compiled regex, longest boundary-respecting match at each position."""

    def __init__(self, patterns: Sequence[Text], *, utf16: bool = False) -> None:
        super().__init__(patterns, utf16=utf16)
        self._re: re.Pattern[Any] | None = None
        if not self.patterns:
            return
        is_bytes = isinstance(self.patterns[0], bytes)
        if is_bytes:

            def esc(run: list[Any]) -> str:
                return "".join(re.escape(b.decode("latin-1")) for b in run)

            body = _trie_regex(_trie(self.patterns), esc)
            if utf16:
                # A code unit before/after the match must not be an ASCII word character.
                pre, post = r"(?<![a-z0-9]\x00)", r"(?![a-z0-9]\x00)"
            else:
                pre, post = r"(?<![a-z0-9])", r"(?![a-z0-9])"
            self._re = re.compile(f"(?=({pre}{body}{post}))".encode("latin-1"), re.DOTALL)
        else:

            def esc(run: list[Any]) -> str:
                return re.escape("".join(run))

            body = _trie_regex(_trie(self.patterns), esc)
            word = rf"[^\W_{SPACELESS}]"
            self._re = re.compile(rf"(?=((?<!{word}){body}(?!{word})))", re.DOTALL)

    def find(self, haystack: Any) -> list[tuple[int, int, int]]:
        """Every ``(start, end, pattern index)`` of the longest match at each start."""
        if self._re is None:
            return []
        out: list[tuple[int, int, int]] = []
        index = self._index
        for m in self._re.finditer(haystack):
            s, e = m.span(1)
            if e > s:
                out.append((s, e, index[m.group(1)]))
        return out


def _is_word_char(h: str | bytes, i: int, utf16: bool) -> bool:
    if isinstance(h, str):
        return 0 <= i < len(h) and h[i].isalnum() and not _SPACELESS_RE.match(h[i])
    if utf16:
        return 0 <= i and i + 1 < len(h) and h[i] in _WORD_BYTES and h[i + 1] == 0
    return 0 <= i < len(h) and h[i] in _WORD_BYTES


class AhoCorasickMatcher(_Base):
    """Aho-Corasick automaton (pyahocorasick); same results as :class:`RegexMatcher`."""

    def __init__(self, patterns: Sequence[Text], *, utf16: bool = False) -> None:
        if _ahocorasick is None:
            raise ImportError("pyahocorasick is not installed: pip install 'medveil[verify-fast]'")
        super().__init__(patterns, utf16=utf16)
        self._bytes = bool(self.patterns) and isinstance(self.patterns[0], bytes)
        self._auto: Any = None
        if not self.patterns:
            return
        # pyahocorasick's str automaton takes str keys; bytes map 1:1 through Latin-1.
        auto = _ahocorasick.Automaton()
        for i, p in enumerate(self.patterns):
            key = p.decode("latin-1") if self._bytes else p
            auto.add_word(key, (i, len(key)))
        auto.make_automaton()
        self._auto = auto

    def find(self, haystack: Any) -> list[tuple[int, int, int]]:
        """Every ``(start, end, pattern index)`` of the longest match at each start."""
        if self._auto is None or not haystack:
            return []
        text = haystack.decode("latin-1") if self._bytes else haystack
        utf16 = self.utf16
        step = 2 if utf16 else 1
        best: dict[int, tuple[int, int]] = {}
        for end_idx, (i, n) in self._auto.iter(text):
            s, e = end_idx + 1 - n, end_idx + 1
            if _is_word_char(haystack, s - step, utf16) or _is_word_char(haystack, e, utf16):
                continue
            if s not in best or best[s][0] < e:
                best[s] = (e, i)
        return sorted((s, e, i) for s, (e, i) in best.items())


class NativeMatcher(_Base):
    """The core's Aho-Corasick automaton; same results as :class:`RegexMatcher`.

    ``substring``: every occurrence, no word boundaries (as :class:`SubstringMatcher`).
    A haystack the core cannot take (a str with lone surrogates) is searched by the
    Python matcher of the same rules instead, so the answer never depends on the input's
    oddities.
    """

    def __init__(
        self, patterns: Sequence[Text], *, utf16: bool = False, substring: bool = False
    ) -> None:
        if _termsearch is None:
            raise ImportError("this medveil core has no termsearch module: rebuild it")
        super().__init__(patterns, utf16=utf16)
        self.substring = substring
        self._auto: Any = None
        self._python: Any = None
        if not self.patterns:
            return
        if isinstance(self.patterns[0], str):
            if substring:
                raise ValueError("the native substring search takes bytes patterns only")
            mode = "text"
        else:
            mode = "substring" if substring else "utf16" if utf16 else "word"
        # ValueError (a table past the core's bound) and UnicodeEncodeError (surrogates)
        # reach the caller, which then builds a Python matcher (see _native_or).
        self._auto = _termsearch.Automaton(self.patterns, mode)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by patterns: the automaton is rebuilt where it is unpickled."""
        return (_rebuild_native, (self.patterns, self.utf16, self.substring))

    def find(self, haystack: Any) -> list[tuple[int, int, int]]:
        """Every ``(start, end, pattern index)`` of the longest match at each start."""
        if self._auto is None or not haystack:
            return []
        try:
            return self._auto.find(haystack)  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            if self._python is None:
                self._python = (
                    SubstringMatcher(self.patterns)
                    if self.substring
                    else RegexMatcher(self.patterns, utf16=self.utf16)
                )
            return self._python.find(haystack)  # type: ignore[no-any-return]


def substring_matcher(patterns: Sequence[Text]) -> Any:
    """Every occurrence of every pattern: the core's automaton, else SubstringMatcher.

    SubstringMatcher (the Python search, the reference) takes what the core cannot: str
    patterns and term sets past the core's bound.
    """
    if _termsearch is not None and patterns and isinstance(patterns[0], bytes):
        try:
            return NativeMatcher(patterns, substring=True)
        except ValueError:
            pass  # too large for the dense table
    return SubstringMatcher(patterns)


def _rebuild_native(patterns: list[Any], utf16: bool, substring: bool) -> Any:
    """A matcher over these patterns (unpickling a NativeMatcher; Python if it cannot be)."""
    if substring:
        return substring_matcher(patterns)
    return _native_or(patterns, utf16, lambda: RegexMatcher(patterns, utf16=utf16))


def _native_or(patterns: Sequence[Text], utf16: bool, fallback: Callable[[], Any]) -> Any:
    """A NativeMatcher over the patterns, or fallback() when the core cannot build one."""
    if _termsearch is not None:
        try:
            return NativeMatcher(patterns, utf16=utf16)
        except (ValueError, UnicodeEncodeError):
            pass  # too large for the dense table, or surrogates: the Python matcher
    return fallback()


def have_native() -> bool:
    """Whether the core's matcher (medveil._core.termsearch) is available."""
    return _termsearch is not None


class FindMatcher(_Base):
    """Each pattern looked for with ``str.find``/``bytes.find``; same results as the others.

    For a handful of patterns (a file's own UIDs, a recheck) building an automaton costs
    more than the search: a find per pattern runs at memchr speed and needs no build.
    """

    def find(self, haystack: Any) -> list[tuple[int, int, int]]:
        """Every ``(start, end, pattern index)`` of the longest match at each start."""
        if not haystack:
            return []
        utf16 = self.utf16
        step = 2 if utf16 else 1
        best: dict[int, tuple[int, int]] = {}
        for i, p in enumerate(self.patterns):
            n = len(p)
            if not n:
                continue
            s = haystack.find(p)
            while s >= 0:
                e = s + n
                if not (
                    _is_word_char(haystack, s - step, utf16) or _is_word_char(haystack, e, utf16)
                ) and (s not in best or best[s][0] < e):
                    best[s] = (e, i)
                s = haystack.find(p, s + 1)
        return sorted((s, e, i) for s, (e, i) in best.items())


# Up to this many patterns, few_matcher gives a FindMatcher (measured with
# bench/profile_instance.py: 16 patterns over a CT header's 2 KB of values are found
# sooner than an automaton over them is built).
FIND_MAX = 16


def few_matcher(patterns: Sequence[Text], *, utf16: bool = False) -> Any:
    """make_matcher for a search of small haystacks: FindMatcher for a handful of patterns.

    The native automaton builds faster than a handful of finds run, so it is taken first.
    """
    if _termsearch is not None:
        return _native_or(patterns, utf16, lambda: few_matcher_python(patterns, utf16=utf16))
    return few_matcher_python(patterns, utf16=utf16)


def few_matcher_python(patterns: Sequence[Text], *, utf16: bool = False) -> Any:
    """few_matcher without the core: FindMatcher for a handful of patterns (the reference)."""
    if len(patterns) <= FIND_MAX:
        return FindMatcher(patterns, utf16=utf16)
    return make_matcher(patterns, utf16=utf16, engine="python")


def have_aho_corasick() -> bool:
    """Whether the optional pyahocorasick engine is importable."""
    return _ahocorasick is not None


def make_matcher(patterns: Sequence[Text], *, utf16: bool = False, engine: str = "auto") -> Any:
    """Build a matcher (``engine``: 'auto', 'native', 'python', 'regex', 'aho' or 'find').

    'auto' and 'python' give pyahocorasick when it is installed and the regex otherwise;
    'native' the core's automaton (falling back to 'python' over a term set or text it
    cannot take). few_matcher and substring_matcher take the core's first.
    """
    if engine == "find":
        return FindMatcher(patterns, utf16=utf16)
    if engine == "native":
        return _native_or(
            patterns, utf16, lambda: make_matcher(patterns, utf16=utf16, engine="python")
        )
    if engine == "aho" or (engine in ("auto", "python") and _ahocorasick is not None):
        return AhoCorasickMatcher(patterns, utf16=utf16)
    if engine not in ("auto", "python", "regex"):
        raise ValueError(
            f"unknown matcher engine {engine!r}: use 'auto', 'native', 'python', 'regex', "
            "'aho' or 'find'"
        )
    return RegexMatcher(patterns, utf16=utf16)


class SubstringMatcher(_Base):
    """Every occurrence of every pattern, with no word boundaries (for binary values).

    Binary values (OB, OW, UN, ...) carry no word structure: a name and an ID glued
    together (``1SurnPID1``) or padded with binary bytes is still a leak, so every
    overlapping match is returned. Aho-Corasick when installed, a find per pattern
    otherwise (both return all matches, so no shorter pattern hides behind a longer one).
    :func:`substring_matcher` gives the core's automaton first.
    """

    def __init__(self, patterns: Sequence[Text]) -> None:
        super().__init__(patterns)
        self._auto: Any = None
        if self.patterns and _ahocorasick is not None and len(self.patterns) > FIND_MAX:
            self._bytes = isinstance(self.patterns[0], bytes)
            auto = _ahocorasick.Automaton()
            for i, p in enumerate(self.patterns):
                key = p.decode("latin-1") if self._bytes else p
                auto.add_word(key, (i, len(key)))
            auto.make_automaton()
            self._auto = auto

    def find(self, haystack: Any) -> list[tuple[int, int, int]]:
        """Every ``(start, end, pattern index)``, overlapping ones included, sorted."""
        if not haystack or not self.patterns:
            return []
        out: list[tuple[int, int, int]] = []
        if self._auto is not None:
            text = haystack.decode("latin-1") if self._bytes else haystack
            for end_idx, (i, n) in self._auto.iter(text):
                out.append((end_idx + 1 - n, end_idx + 1, i))
            return sorted(out)
        for i, p in enumerate(self.patterns):
            n = len(p)
            s = haystack.find(p) if n else -1
            while s >= 0:
                out.append((s, s + n, i))
                s = haystack.find(p, s + 1)
        return sorted(out)
