"""Burned-in text rules: conditions on DICOM header attributes and rectangles to blank.

A rule file is TOML::

    [meta]
    name = "my site rules"

    [[rule]]
    id = "us-acme-640x480"
    description = "Acme ultrasound, 640 x 480 screen"
    fill = 0                                   # optional, default 0
    match = { all = [
      { attr = "Modality", equals = "US" },
      { attr = "Manufacturer", contains = "acme", ignore_case = true },
      { attr = "Rows", equals = "480" },
    ] }
    regions = [
      { rows = [0, 40], cols = [0, 640] },
      { rows = [440, 480], cols = [0, 200], frames = [0, 10] },
    ]

A condition is a leaf ``{ attr = KEY, OP = "text" [, ignore_case = true] }`` with OP one of
``equals``, ``prefix``, ``suffix``, ``contains``, ``regex`` (``re.search``), or
``{ attr = KEY, present = true|false }``; or a combination ``{ all = [...] }``,
``{ any = [...] }``, ``{ not = {...} }``. KEY is a keyword (``Manufacturer``) or a tag
(``(6000,0022)``). An attribute's text is what CTP compares: numbers as written in the file,
several values joined by a backslash, and the empty string when the attribute is absent (so
``not equals "YES"`` holds for a file without the attribute). Only top-level attributes and
the file meta group are looked at, never items of sequences. Ranges are half-open
``[start, stop)``; ``frames`` defaults to every frame.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag, Tag

from medveil.dicom.peek import peek
from medveil.dicom.pydicom_private import element
from medveil.errors import PolicyError
from medveil.policy import tablecache

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the tomli backport
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

_CHARSET = BaseTag(0x00080005)
_STRING_OPS = ("equals", "prefix", "suffix", "contains", "regex")
_TAG_RE = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?$")

#: The rule set shipped with medveil: RSNA CTP's burned-in annotation library, converted.
DEFAULT_RULES = "pixel_rules_ctp.toml"


def parse_attr(key: str) -> BaseTag:
    """Resolve a keyword or ``(gggg,eeee)`` tag string to a pydicom tag."""
    m = _TAG_RE.match(key)
    if m:
        return Tag(int(m.group(1), 16), int(m.group(2), 16))
    tag = tag_for_keyword(key)
    if tag is None:
        raise PolicyError(f"unknown DICOM keyword {key!r}; use a PS3.6 keyword or (gggg,eeee)")
    return Tag(tag)


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ")
    if isinstance(value, pydicom.Sequence):
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(_value_text(v) for v in value)
    return str(value)


def _raw_key(ds: pydicom.Dataset, tags: tuple[BaseTag, ...]) -> tuple[object, ...] | None:
    """The undecoded bytes the rules' attribute texts come from, or None if some are decoded.

    Equal bytes (with the same VR, byte order and character set) decode to equal texts, so
    this key finds a series' cached answer without decoding its attributes again.
    """
    meta = getattr(ds, "file_meta", None)
    charset = element(ds, _CHARSET)
    if charset is not None and not (
        isinstance(charset, RawDataElement) and isinstance(charset.value, bytes)
    ):
        return None
    parts: list[object] = [None if charset is None else charset.value]
    for tag in tags:
        container = meta if tag >> 16 == 0x0002 else ds
        elem = None if container is None else element(container, tag)
        if elem is None:
            parts.append(None)
        elif isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
            parts.append((elem.VR, elem.is_little_endian, elem.value))
        else:
            return None
    return ("raw", *parts)


def attribute_text(ds: pydicom.Dataset, tag: BaseTag) -> str | None:
    """Return the attribute's value as CTP sees it, or None when the file lacks it."""
    container: pydicom.Dataset | None = ds
    if tag.group == 0x0002:
        container = getattr(ds, "file_meta", None)
    if container is None:
        return None
    elem = element(container, tag)
    if elem is None:
        return None
    if elem.VR == "SQ":
        return ""
    # peek decodes without storing: the element stays raw and is copied byte for byte.
    return _value_text(peek(container, tag))


class Condition:
    """A predicate over a dataset's header; build with :func:`parse_condition`."""

    def matches(self, ds: pydicom.Dataset, cache: dict[int, str | None] | None = None) -> bool:
        """Say whether ``ds`` satisfies this condition."""
        raise NotImplementedError

    def to_toml(self) -> str:
        """Render as a one-line TOML inline table."""
        raise NotImplementedError

    def attrs(self) -> list[str]:
        """List the attribute keys this condition reads, in order of appearance."""
        raise NotImplementedError


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class Leaf(Condition):
    """One attribute compared with one operator."""

    attr: str
    op: str
    value: str | bool
    ignore_case: bool = False
    tag: BaseTag = field(init=False, compare=False, repr=False)
    itag: int = field(init=False, compare=False, repr=False)
    _regex: re.Pattern[str] | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", parse_attr(self.attr))
        object.__setattr__(self, "itag", int(self.tag))
        rx = None
        if self.op == "regex":
            try:
                rx = re.compile(str(self.value), re.IGNORECASE if self.ignore_case else 0)
            except re.error as exc:
                raise PolicyError(f"bad regex {self.value!r} on {self.attr}: {exc}") from exc
        object.__setattr__(self, "_regex", rx)

    def matches(self, ds: pydicom.Dataset, cache: dict[int, str | None] | None = None) -> bool:
        """Say whether ``ds`` satisfies this comparison."""
        if cache is None:
            text = attribute_text(ds, self.tag)
        else:
            # Keyed by plain int: a BaseTag key would compare through Python code.
            key = self.itag
            text = (
                cache[key] if key in cache else cache.setdefault(key, attribute_text(ds, self.tag))
            )
        if self.op == "present":
            return (text is not None) == bool(self.value)
        text = text or ""
        if self._regex is not None:
            return self._regex.search(text) is not None
        want = str(self.value)
        if self.ignore_case:
            text, want = text.casefold(), want.casefold()
        if self.op == "equals":
            return text == want
        if self.op == "prefix":
            return text.startswith(want)
        if self.op == "suffix":
            return text.endswith(want)
        return want in text  # contains

    def to_toml(self) -> str:
        """Render as a one-line TOML inline table."""
        val = ("true" if self.value else "false") if self.op == "present" else None
        parts = [
            f"attr = {_toml_str(self.attr)}",
            f"{self.op} = {val or _toml_str(str(self.value))}",
        ]
        if self.ignore_case:
            parts.append("ignore_case = true")
        return "{ " + ", ".join(parts) + " }"

    def attrs(self) -> list[str]:
        """List the attribute keys this condition reads."""
        return [self.attr]


@dataclass(frozen=True)
class AllOf(Condition):
    """True when every child is true."""

    children: tuple[Condition, ...]

    def matches(self, ds: pydicom.Dataset, cache: dict[int, str | None] | None = None) -> bool:
        """Say whether every child matches ``ds``."""
        return all(c.matches(ds, cache) for c in self.children)

    def to_toml(self) -> str:
        """Render as a one-line TOML inline table."""
        return "{ all = [" + ", ".join(c.to_toml() for c in self.children) + "] }"

    def attrs(self) -> list[str]:
        """List the attribute keys the children read."""
        return [a for c in self.children for a in c.attrs()]


@dataclass(frozen=True)
class AnyOf(Condition):
    """True when at least one child is true."""

    children: tuple[Condition, ...]

    def matches(self, ds: pydicom.Dataset, cache: dict[int, str | None] | None = None) -> bool:
        """Say whether any child matches ``ds``."""
        return any(c.matches(ds, cache) for c in self.children)

    def to_toml(self) -> str:
        """Render as a one-line TOML inline table."""
        return "{ any = [" + ", ".join(c.to_toml() for c in self.children) + "] }"

    def attrs(self) -> list[str]:
        """List the attribute keys the children read."""
        return [a for c in self.children for a in c.attrs()]


@dataclass(frozen=True)
class Not(Condition):
    """True when the child is false."""

    child: Condition

    def matches(self, ds: pydicom.Dataset, cache: dict[int, str | None] | None = None) -> bool:
        """Say whether the child does not match ``ds``."""
        return not self.child.matches(ds, cache)

    def to_toml(self) -> str:
        """Render as a one-line TOML inline table."""
        return "{ not = " + self.child.to_toml() + " }"

    def attrs(self) -> list[str]:
        """List the attribute keys the child reads."""
        return self.child.attrs()


def parse_condition(obj: Any, where: str = "match") -> Condition:
    """Build a condition from its TOML form (a table), raising PolicyError when malformed."""
    if not isinstance(obj, Mapping):
        raise PolicyError(f"{where}: a condition must be a table, got {obj!r}")
    keys = set(obj)
    for combo, cls in (("all", AllOf), ("any", AnyOf)):
        if combo in keys:
            if keys != {combo}:
                raise PolicyError(
                    f"{where}: '{combo}' cannot be mixed with {sorted(keys - {combo})}"
                )
            items = obj[combo]
            if not isinstance(items, list) or not items:
                raise PolicyError(f"{where}.{combo}: needs a non-empty list of conditions")
            kids = tuple(parse_condition(c, f"{where}.{combo}[{i}]") for i, c in enumerate(items))
            return cls(kids)
    if "not" in keys:
        if keys != {"not"}:
            raise PolicyError(f"{where}: 'not' cannot be mixed with {sorted(keys - {'not'})}")
        return Not(parse_condition(obj["not"], f"{where}.not"))
    if "attr" not in keys:
        raise PolicyError(f"{where}: expected 'attr', 'all', 'any' or 'not', got {sorted(keys)}")
    ops = [k for k in keys if k in (*_STRING_OPS, "present")]
    extra = keys - {"attr", "ignore_case", *ops}
    if len(ops) != 1 or extra:
        raise PolicyError(
            f"{where}: a leaf needs exactly one of {', '.join((*_STRING_OPS, 'present'))} "
            f"(got {sorted(keys)})"
        )
    op = ops[0]
    attr, value, ic = obj["attr"], obj[op], obj.get("ignore_case", False)
    if not isinstance(attr, str) or not isinstance(ic, bool):
        raise PolicyError(f"{where}: 'attr' must be a string and 'ignore_case' a boolean")
    if op == "present" and not isinstance(value, bool):
        raise PolicyError(f"{where}: 'present' must be true or false")
    if op != "present" and not isinstance(value, str):
        raise PolicyError(f"{where}: '{op}' must be a string (write numbers as \"512\")")
    return Leaf(attr, op, value, ic)


#: (row0, row1, col0, col1, frame0, frame1); frame1 None means "to the last frame".
RuleRegion = tuple[int, int, int, int, int, "int | None"]


def _parse_range(obj: Any, name: str, where: str) -> tuple[int, int]:
    if (
        not isinstance(obj, list)
        or len(obj) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in obj)
        or obj[0] < 0
        or obj[1] < obj[0]
    ):
        raise PolicyError(f"{where}: '{name}' must be [start, stop] with 0 <= start <= stop")
    return int(obj[0]), int(obj[1])


def parse_region(obj: Any, where: str) -> RuleRegion:
    """Build a region from ``{ rows = [a, b], cols = [c, d] [, frames = [e, f]] }``."""
    if not isinstance(obj, Mapping) or not {"rows", "cols"} <= set(obj):
        raise PolicyError(f"{where}: a region is {{ rows = [a, b], cols = [c, d] }}")
    extra = set(obj) - {"rows", "cols", "frames"}
    if extra:
        raise PolicyError(f"{where}: unknown region keys {sorted(extra)}")
    r0, r1 = _parse_range(obj["rows"], "rows", where)
    c0, c1 = _parse_range(obj["cols"], "cols", where)
    if "frames" in obj:
        f0, f1 = _parse_range(obj["frames"], "frames", where)
        return (r0, r1, c0, c1, f0, f1)
    return (r0, r1, c0, c1, 0, None)


@dataclass(frozen=True)
class PixelRule:
    """A named condition and the rectangles to blank when it holds."""

    id: str
    match: Condition
    regions: tuple[RuleRegion, ...]
    description: str = ""
    fill: int = 0

    def matches(self, ds: pydicom.Dataset, cache: dict[int, str | None] | None = None) -> bool:
        """Say whether this rule applies to ``ds``."""
        return self.match.matches(ds, cache)

    def to_toml(self) -> str:
        """Render as a ``[[rule]]`` TOML block."""
        lines = ["[[rule]]", f"id = {_toml_str(self.id)}"]
        if self.description:
            lines.append(f"description = {_toml_str(self.description)}")
        if self.fill:
            lines.append(f"fill = {self.fill}")
        lines.append(f"match = {self.match.to_toml()}")
        lines.append("regions = [")
        for r0, r1, c0, c1, f0, f1 in self.regions:
            frames = "" if f1 is None and f0 == 0 else f", frames = [{f0}, {f1}]"
            lines.append(f"  {{ rows = [{r0}, {r1}], cols = [{c0}, {c1}]{frames} }},")
        lines.append("]")
        return "\n".join(lines)


@dataclass(frozen=True)
class RuleSet:
    """An ordered collection of pixel rules; every matching rule applies."""

    rules: tuple[PixelRule, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    _tags: tuple[BaseTag, ...] | None = field(default=None, init=False, compare=False, repr=False)
    _answers: dict[tuple[object, ...], tuple[PixelRule, ...]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "rules") -> RuleSet:
        """Build a rule set from a parsed TOML document."""
        extra = set(doc) - {"meta", "rule"}
        if extra:
            raise PolicyError(f"{where}: unknown top-level keys {sorted(extra)}")
        raw = doc.get("rule", [])
        if not isinstance(raw, list):
            raise PolicyError(f"{where}: 'rule' must be an array of tables ([[rule]])")
        rules: list[PixelRule] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            w = f"{where}: rule[{i}]"
            if not isinstance(item, Mapping):
                raise PolicyError(f"{w}: must be a table")
            extra = set(item) - {"id", "description", "match", "regions", "fill"}
            if extra:
                raise PolicyError(f"{w}: unknown keys {sorted(extra)}")
            rid = item.get("id")
            if not isinstance(rid, str) or not rid:
                raise PolicyError(f"{w}: needs a non-empty string 'id'")
            if rid in seen:
                raise PolicyError(f"{w}: duplicate id {rid!r}")
            seen.add(rid)
            if "match" not in item:
                raise PolicyError(f"{w} ({rid}): needs 'match'")
            regs = item.get("regions")
            if not isinstance(regs, list) or not regs:
                raise PolicyError(f"{w} ({rid}): needs a non-empty 'regions' list")
            fill = item.get("fill", 0)
            if not isinstance(fill, int) or isinstance(fill, bool):
                raise PolicyError(f"{w} ({rid}): 'fill' must be an integer")
            desc = item.get("description", "")
            if not isinstance(desc, str):
                raise PolicyError(f"{w} ({rid}): 'description' must be a string")
            rules.append(
                PixelRule(
                    id=rid,
                    match=parse_condition(item["match"], f"{w} ({rid}).match"),
                    regions=tuple(
                        parse_region(r, f"{w} ({rid}).regions[{j}]") for j, r in enumerate(regs)
                    ),
                    description=desc,
                    fill=fill,
                )
            )
        meta = doc.get("meta", {})
        if not isinstance(meta, Mapping):
            raise PolicyError(f"{where}: 'meta' must be a table")
        return cls(tuple(rules), dict(meta))

    @classmethod
    def loads(cls, text: str, where: str = "rules") -> RuleSet:
        """Parse a rule set from TOML text."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{where}: not valid TOML: {exc}") from exc
        return cls.from_dict(doc, where)

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        """Read a rule set from a TOML file."""
        p = Path(path)
        return cls.loads(p.read_text(encoding="utf-8"), str(p))

    @classmethod
    def default(cls) -> RuleSet:
        """The rules shipped with medveil (RSNA CTP's library, converted)."""
        return _default_rules()

    def __add__(self, other: RuleSet) -> RuleSet:
        """Concatenate two rule sets (site rules after the defaults); ids must stay unique."""
        rules = self.rules + other.rules
        ids = [r.id for r in rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise PolicyError(f"duplicate rule ids when combining rule sets: {dup}")
        return RuleSet(rules, dict(self.meta))

    def __len__(self) -> int:
        """Number of rules."""
        return len(self.rules)

    def matching(self, ds: pydicom.Dataset) -> list[PixelRule]:
        """Return every rule whose condition ``ds`` satisfies, in file order."""
        # Conditions read nothing but these attributes' texts, so the answer is a function
        # of them; the files of one series share them, and the rules run once per series.
        tags = self._tags
        if tags is None:
            found = {parse_attr(a) for r in self.rules for a in r.match.attrs()}
            tags = tuple(sorted(found))
            object.__setattr__(self, "_tags", tags)
        key = _raw_key(ds, tags)
        hit = self._answers.get(key) if key is not None else None
        if hit is None:
            cache = {int(t): attribute_text(ds, t) for t in tags}
            hit = tuple(r for r in self.rules if r.matches(ds, cache))
            if len(self._answers) >= 1024:
                self._answers.clear()
            self._answers[tuple(cache.values()) if key is None else key] = hit
        return list(hit)

    def to_toml(self, header: str = "") -> str:
        """Render the whole rule set as TOML (round-trips through :meth:`loads`)."""
        out = [header.rstrip("\n")] if header else []
        if self.meta:
            out.append("[meta]")
            for k, v in self.meta.items():
                if not isinstance(v, str):
                    raise PolicyError(f"meta.{k}: only string values can be written")
                out.append(f"{k} = {_toml_str(v)}")
            out.append("")
        for r in self.rules:
            out.append(r.to_toml())
            out.append("")
        return "\n".join(out)


@functools.cache
def _default_rules() -> RuleSet:
    # Parsed once per process (a RuleSet is immutable), and kept between runs by the table
    # cache, keyed by the rule file and this module's source: parsing takes ~6 ms.
    res = resources.files("medveil").joinpath("data").joinpath(DEFAULT_RULES)
    text = res.read_text(encoding="utf-8")
    parts = [text.encode(), *tablecache.source(sys.modules[__name__])]
    return tablecache.cached(
        "pixel-rules", parts, lambda: RuleSet.loads(text, f"medveil/data/{DEFAULT_RULES}")
    )
