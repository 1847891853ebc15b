"""pydicom/deid recipes -> medveil policy plus filters.

A recipe is line based: ``FORMAT dicom``, then ``%header`` actions (``ADD``, ``REPLACE``,
``REMOVE``, ``KEEP``, ``BLANK``, ``JITTER`` on a field: a keyword, a tag, ``ALL`` or an
expression such as ``contains:Date`` / ``startswith:`` / ``endswith:`` / ``except:``), and
``%filter whitelist|blacklist|graylist`` sections of ``LABEL`` groups whose lines are
tests (``contains``, ``notcontains``, ``equals``, ``notequals``, ``missing``, ``present``,
``empty``) joined by ``+`` (and) or ``||`` (or), and ``coordinates`` for graylists.

Header actions become ``[profile]`` and ``[elements]`` settings on top of the Basic
Profile; filters go to a ``[filter]`` table (include = whitelist, exclude = blacklist,
graylist = graylist). The engine applies include and exclude (an excluded instance is not
processed and is counted as excluded); graylist boxes are kept for the record
only. deid keeps fields a recipe does not name; medveil applies its profile to them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag

from medveil.errors import PolicyError
from medveil.policy.importers import PolicyDraft
from medveil.policy.importers.ctp import MARK_TAGS
from medveil.policy.schema import POLICY_ACTIONS, Policy
from medveil.policy.standard import Option

ACTIONS = ("ADD", "REPLACE", "REMOVE", "KEEP", "BLANK", "JITTER", "LABEL")
FILTER_TESTS = ("contains", "notcontains", "equals", "notequals", "missing", "present", "empty")
FILTER_KIND = {"whitelist": "include", "blacklist": "exclude", "graylist": "graylist"}
_PSEUDONYM_VRS = POLICY_ACTIONS["pseudonym"] or frozenset()
_CHAIN = r"\s+(\+|\|\|)\s+(?=(?:" + "|".join(FILTER_TESTS) + r")\b)"
_NUMERIC_VRS = POLICY_ACTIONS["bin"] or frozenset()


def _vrs(tag: int) -> frozenset[str]:
    try:
        return frozenset(dictionary_VR(tag).split(" or "))
    except KeyError:
        return frozenset()


def expand_field(field: str) -> list[int] | None:
    """Tags a recipe field names (None when the field is not understood)."""
    m = re.fullmatch(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?", field)
    if m:
        return [int(m.group(1) + m.group(2), 16)]
    if field in keyword_dict:
        return [keyword_dict[field]]
    kind, _, needle = field.partition(":")
    tests: dict[str, Callable[[str], bool]] = {
        "contains": lambda kw: needle.lower() in kw.lower(),
        "startswith": lambda kw: kw.lower().startswith(needle.lower()),
        "endswith": lambda kw: kw.lower().endswith(needle.lower()),
        "except": lambda kw: kw.lower() != needle.lower(),
    }
    test = tests.get(kind.lower())
    if test is None or not needle:
        return None
    # Retired keywords are included: old files still carry them.
    return sorted(tag for kw, tag in keyword_dict.items() if kw and test(kw))


def _selector(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _parse_tests(
    lines: list[tuple[int, str]], where: str, draft: PolicyDraft
) -> list[dict[str, Any]]:
    """A LABEL group's lines as a flat list of tests, each joined to the previous one."""
    tests: list[dict[str, Any]] = []
    for lineno, raw in lines:
        text = raw.split("#", 1)[0].strip()
        join = "and"
        if text.startswith("+"):
            text = text[1:].strip()
        elif text.startswith("||"):
            join, text = "or", text[2:].strip()
        # One line may chain tests with + and || itself.
        parts = re.split(_CHAIN, text)
        seq = [join, *parts]
        for i in range(0, len(seq) - 1, 2):
            op_join, clause = seq[i], seq[i + 1]
            words = clause.split(None, 2)
            if not words or words[0].lower() not in FILTER_TESTS or len(words) < 2:
                draft.note(f"{where}:{lineno}", raw.strip(), "skipped", "not a deid filter test")
                continue
            test: dict[str, Any] = {"field": words[1], "op": words[0].lower()}
            if test["op"] in ("contains", "notcontains", "equals", "notequals"):
                if len(words) < 3:
                    draft.note(f"{where}:{lineno}", raw.strip(), "skipped", "test without a value")
                    continue
                test["value"] = words[2].strip()
            if tests:
                test["join"] = "or" if op_join in ("||", "or") else "and"
            tests.append(test)
    return tests


class _Recipe:
    """Reads a recipe into a draft, in the order deid applies its actions."""

    def __init__(self, path: Path, draft: PolicyDraft) -> None:
        self.path = path
        self.draft = draft
        self.actions: dict[
            int, tuple[str | dict[str, Any], str, str]
        ] = {}  # tag -> (action, rule, where)
        self.kept: set[int] = set()
        self.remove_all = False
        self.shift = False

    def where(self, lineno: int) -> str:
        return f"{self.path.name}:{lineno}"

    def read(self) -> None:
        try:
            lines = self.path.read_text("utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise PolicyError(f"{self.path}: cannot read deid recipe: {exc.strerror}") from None
        section: str | None = None
        name = ""
        fmt = None
        i = 0
        while i < len(lines):
            lineno, line = i + 1, lines[i].strip()
            i += 1
            if not line or line.startswith("#"):
                continue
            if re.match(r"format\b", line, re.I):
                fmt = line.split(None, 1)[1].strip().lower() if len(line.split()) > 1 else ""
                if fmt != "dicom":
                    raise PolicyError(f"{self.where(lineno)}: FORMAT {fmt!r}: only dicom recipes")
                continue
            if line.startswith("%"):
                head = line.split("#", 1)[0].split()
                section = head[0][1:].lower()
                name = " ".join(head[1:])
                if section not in ("header", "filter", "labels", "values", "fields"):
                    raise PolicyError(f"{self.where(lineno)}: unknown section %{section}")
                if section in ("labels", "values", "fields"):
                    self.draft.note(
                        self.where(lineno),
                        line,
                        "skipped",
                        f"%{section} groups are not converted; actions naming "
                        f"them ({section}:...) are noted where used",
                    )
                continue
            if section == "filter":
                if not line.upper().startswith("LABEL"):
                    self.draft.note(self.where(lineno), line, "skipped", "outside a LABEL group")
                    continue
                members: list[tuple[int, str]] = []
                while i < len(lines) and not re.match(r"\s*(LABEL|%)", lines[i], re.I):
                    if lines[i].strip() and not lines[i].strip().startswith("#"):
                        members.append((i + 1, lines[i]))
                    i += 1
                self.filter_group(lineno, line, name, members)
            elif section == "header":
                self.header(lineno, line)
            elif section is None:
                raise PolicyError(f"{self.where(lineno)}: an action before any %header section")
        if fmt is None:
            raise PolicyError(f"{self.path}: not a deid recipe (no 'FORMAT dicom' line)")

    def filter_group(
        self, lineno: int, line: str, name: str, members: list[tuple[int, str]]
    ) -> None:
        label = line[5:].split("#", 1)[0].strip()
        kind = FILTER_KIND.get(name.lower())
        if kind is None:
            self.draft.note(
                self.where(lineno),
                f"%filter {name}",
                "exclude",
                "an unknown filter list is treated as a blacklist",
            )
            kind = "exclude"
        coords = []
        tests_lines = []
        for n, member in members:
            text = member.strip()
            if text.lower().startswith(("coordinates", "ctpcoordinates")):
                nums = [int(x) for x in re.findall(r"-?\d+", text)]
                if len(nums) == 4:
                    coords.append(nums)
                else:
                    self.draft.note(self.where(n), text, "skipped", "coordinates need 4 numbers")
            else:
                tests_lines.append((n, member))
        entry: dict[str, Any] = {
            "label": label,
            "tests": _parse_tests(tests_lines, self.path.name, self.draft),
        }
        if coords:
            entry["coordinates"] = coords
            self.draft.note(
                self.where(lineno),
                f"LABEL {label} (coordinates)",
                "recorded only",
                "graylist boxes are written to [filter] but not masked: write "
                "them as a medveil pixel rule file ([pixels] rules) to mask them",
            )
        self.draft.filters.setdefault(kind, []).append(entry)

    def header(self, lineno: int, line: str) -> None:
        text = line.split("#", 1)[0].strip()
        parts = text.split(None, 2)
        verb = parts[0].upper()
        if verb not in ACTIONS or verb == "LABEL" or len(parts) < 2:
            self.draft.note(self.where(lineno), line, "skipped", "not a deid header action")
            return
        field = parts[1]
        value = parts[2].strip() if len(parts) > 2 else ""
        if field.upper() == "ALL":
            if verb == "REMOVE":
                self.remove_all = True
            else:
                self.draft.note(
                    self.where(lineno), line, "skipped", f"{verb} ALL has no equivalent"
                )
            return
        tags = expand_field(field)
        if tags is None:
            self.draft.note(
                self.where(lineno),
                line,
                "skipped",
                f"field {field!r} is not a keyword, a tag or a "
                "contains:/startswith:/endswith:/except: expression",
            )
            return
        if not tags:
            return
        many = len(tags) > 1
        for tag in tags:
            self.action(lineno, line, verb, tag, value, quiet=many)

    def action(
        self, lineno: int, line: str, verb: str, tag: int, value: str, *, quiet: bool
    ) -> None:
        note = self.draft.note
        where = self.where(lineno)
        vrs = _vrs(tag)
        if tag in MARK_TAGS:
            if not quiet:
                note(
                    where,
                    line,
                    "medveil's own value",
                    "medveil writes the de-identification "
                    "marks itself, from the options actually applied",
                )
            return
        if tag >> 16 & 1:
            if verb == "KEEP":
                note(
                    where,
                    line,
                    "removed",
                    "medveil keeps a private element only by its "
                    "creator ('Creator:(gggg,xxee)' in [elements])",
                )
            return  # private elements are removed anyway
        if tag in self.kept:
            return  # deid: a KEEP field is left out of every other action
        act: str | dict[str, Any]
        if verb == "KEEP":
            self.kept.add(tag)
            act = "K"
        elif verb == "BLANK":
            act = "Z"
        elif verb == "REMOVE":
            act = "X"
            if value:
                note(
                    where,
                    line,
                    "X",
                    "removed whatever the condition: medveil has no conditional removal",
                )
        elif verb == "JITTER":
            days = _int(value)
            if not vrs & {"DA", "DT"}:
                if not quiet:
                    note(where, line, "kept as the profile says", "JITTER only shifts dates here")
                return
            self.shift = True
            if days:
                self.draft.shift_days = max(self.draft.shift_days or 0, min(abs(days), 36500))
            if not quiet:
                note(
                    where,
                    line,
                    "C (shift)",
                    "dates move by one keyed offset per patient within "
                    f"+-{abs(days) if days else 365} days, not by the same {value} days for all",
                )
            act = "C"
        else:  # ADD, REPLACE
            act = self.replacement(where, line, verb, tag, vrs, value, quiet)
        self.actions[tag] = (act, line, where)

    def replacement(
        self,
        where: str,
        line: str,
        verb: str,
        tag: int,
        vrs: frozenset[str],
        value: str,
        quiet: bool,
    ) -> str | dict[str, Any]:
        note = self.draft.note
        if verb == "ADD":
            note(where, line, "set when present", "medveil never adds a missing element")
        m = re.match(r"(var|func|deid_func):(\S+)", value)
        if m:
            what = m.group(2)
            if "UI" in vrs:
                note(
                    where,
                    line,
                    "U",
                    f"{m.group(1)}:{what} is code medveil cannot run; the UID "
                    "is replaced by a keyed HMAC UID",
                )
                return "U"
            if vrs & _PSEUDONYM_VRS:
                note(
                    where,
                    line,
                    "pseudonym",
                    f"{m.group(1)}:{what} is code medveil cannot run; "
                    "a keyed pseudonym is written instead",
                )
                return "pseudonym"
            if vrs & {"DA", "DT"} and "jitter" in what.lower():
                self.shift = True
                note(where, line, "C (shift)", "a keyed per-patient date shift")
                return "C"
            note(where, line, "removed", f"{m.group(1)}:{what} is code medveil cannot run")
            return "X"
        if vrs & _NUMERIC_VRS:
            num = _int(value)
            if num is None:
                try:
                    return {"value": float(value)}
                except ValueError:
                    note(where, line, "Z", "not a number for a numeric element")
                    return "Z"
            return {"value": num}
        if vrs & {"SQ", "OB", "OW", "UN"}:
            note(where, line, "removed", "a text value for a sequence or binary element")
            return "X"
        return {"value": value}


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def import_deid(path: str | os.PathLike[str]) -> PolicyDraft:
    """Convert a deid recipe into a policy draft with a [filter] table."""
    p = Path(path)
    draft = PolicyDraft(source=p.name)
    draft.header = [
        f"Converted from the pydicom/deid recipe {p.name} by `medveil policy import-deid`.",
        "Review every note it printed before use.",
    ]
    recipe = _Recipe(p, draft)
    recipe.read()
    options: list[Option] = []
    if recipe.shift:
        options.append(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
        draft.shift_days = draft.shift_days or 365
    draft.options = options
    if recipe.remove_all:
        draft.unknown_elements = "remove"
        draft.keep = sorted(_selector(t) for t in recipe.kept if keyword_for_tag(t))
        draft.note(
            p.name,
            "REMOVE ALL",
            'unknown_elements = "remove"',
            "medveil's allow-list still keeps its structural elements (UIDs, pixel "
            "geometry) and file meta, and applies Table E.1-1 to the elements it names",
        )
    base = Policy(options=tuple(options), pseudonymized=()).compile()
    for tag, (act, _line, _where) in sorted(recipe.actions.items()):
        rule = base.rule_for(tag)
        if isinstance(act, str) and rule is not None and rule.action == act:
            continue
        if isinstance(act, str) and rule is None and act == "K" and not recipe.remove_all:
            continue
        selector = _selector(tag)
        if act == "pseudonym" and selector in keyword_dict:
            draft.pseudonymize.append(selector)
        else:
            draft.elements[selector] = act
    if draft.filters:
        draft.note(
            p.name,
            "%filter",
            "[filter] written",
            "include/exclude decide which instances are processed; graylist boxes are not masked",
        )
    draft.note(
        p.name,
        "fields the recipe does not name",
        "medveil's profile",
        "deid keeps them; medveil applies its Basic Profile to them (more is removed)",
    )
    draft.policy()
    return draft
