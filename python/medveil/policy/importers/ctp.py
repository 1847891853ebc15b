"""RSNA CTP DicomAnonymizer scripts -> medveil policy.

A CTP script is XML: ``<p t="NAME">value</p>`` parameters, ``<e en="T|F" t="ggggeeee"
n="Name">function calls</e>`` element rules, ``<k en t="gggg">`` keep-group and
``<r en t="privategroups|unspecifiedelements|overlays|curves">`` global options. Several
scripts can be given: later ones override earlier ones element by element, as CTP's
profile editor stacks a PS3.15 base script and its option scripts.

Elements the scripts do not name: CTP keeps them; the converted policy applies medveil's
Basic Profile (and the options the scripts imply) to them, which removes more, never less.

When the scripts claim DICOM PS3.15 conformance (DeIdentificationMethodCodeSequence
values 113100 + option codes), the policy is medveil's profile for those options and every
script rule that differs from it is listed (``follow="profile"``, the default); with
``follow="script"`` the differing rules become ``[elements]`` overrides instead.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag, tag_for_keyword

from medveil.errors import PolicyError
from medveil.policy.importers import PolicyDraft
from medveil.policy.schema import POLICY_ACTIONS, CompiledPolicy, Policy
from medveil.policy.standard import Option

# Elements medveil writes itself on every output (PatientIdentityRemoved, the method and
# its codes, LongitudinalTemporalInformationModified): script rules for them are dropped.
MARK_TAGS = {0x00120062, 0x00120063, 0x00120064, 0x00280303}
_PSEUDONYM_VRS = POLICY_ACTIONS["pseudonym"] or frozenset()
_NUMERIC_VRS = POLICY_ACTIONS["bin"] or frozenset()

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_ELEMENT = re.compile(
    r"<(?P<kind>[ekrp])\b(?P<attrs>[^>]*?)(?:/>|>(?P<body>.*?)</(?P=kind)\s*>)", re.S
)
_ATTR = re.compile(r"(\w+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_BRANCH = re.compile(r"\{([^{}]*)\}")
# Lower is more protective: which branch of a run-time choice a policy must take.
_RANK = {"X": 0, "Z": 1, "D": 2, "U": 3, "pseudonym": 3, "C": 4, "K": 6}


def _protection(action: str | dict[str, object]) -> int:
    return _RANK.get(action, 5) if isinstance(action, str) else 5


_CALL = re.compile(r"@(?P<name>[A-Za-z_]\w*)\s*(?:\((?P<args>[^()]*(?:\([^()]*\)[^()]*)*)\))?")


@dataclass(frozen=True)
class ScriptRule:
    """One enabled <e> rule of a script."""

    where: str
    tag_text: str  # as written in t=""
    name: str
    body: str


@dataclass
class CtpScript:
    """The parts of one or more stacked CTP scripts that matter to a policy."""

    params: dict[str, str]
    rules: dict[str, ScriptRule]  # t="" (lower case) -> last enabled rule
    disabled: int
    keep_groups: dict[str, bool]  # "0018" / "safeprivateelements" -> enabled
    remove: dict[str, bool]  # "privategroups" | "unspecifiedelements" | "overlays" | "curves"
    codes: set[str]  # DeIdentificationMethodCodeSequence code values the scripts name


def parse_scripts(paths: list[str | os.PathLike[str]]) -> CtpScript:
    """Read CTP scripts (later ones override earlier ones, as CTP stacks profiles)."""
    script = CtpScript({}, {}, 0, {}, {}, set())
    for path in paths:
        p = Path(path)
        try:
            text = p.read_text("utf-8", errors="replace")
        except OSError as exc:
            raise PolicyError(f"{p}: cannot read CTP script: {exc.strerror}") from None
        # Comments may hold disabled rules: blank them, keeping offsets (and line numbers).
        text = _COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
        if "<script" not in text:
            raise PolicyError(f"{p}: not a CTP anonymizer script (no <script> element)")
        for m in _ELEMENT.finditer(text):
            kind = m.group("kind")
            attrs = {k: dq or sq for k, dq, sq in _ATTR.findall(m.group("attrs"))}
            body = html.unescape(m.group("body") or "").strip()
            where = f"{p.name}:{text.count(chr(10), 0, m.start()) + 1}"
            enabled = attrs.get("en", "T").upper() == "T"
            t = attrs.get("t", "").strip()
            if kind == "p":
                script.params[t] = body
            elif kind == "k":
                script.keep_groups[t.lower()] = enabled
            elif kind == "r":
                script.remove[t.lower()] = enabled
            elif not enabled:
                script.disabled += 1
            else:
                script.rules[t.lower()] = ScriptRule(where, t, attrs.get("n", ""), body)
                if t.lower() == "00120064":
                    script.codes |= set(re.findall(r"\b1131\d\d\b", body))
    return script


def claimed_options(codes: set[str]) -> tuple[Option, ...] | None:
    """PS3.15 options named by CID 7050 codes, or None when 113100 (Basic) is absent."""
    if "113100" not in codes:
        return None
    return tuple(o for o in Option if o.code in codes)


@dataclass(frozen=True)
class _Target:
    """Where a rule applies in medveil terms."""

    selector: str  # keyword, "(gggg,eeee)" or "CREATOR:(gggg,xxee)"
    tag: int | None  # exact even tag, else None
    vrs: frozenset[str]
    private: bool


def _target(t: str, creators: dict[tuple[int, int], str]) -> _Target | None:
    m = re.fullmatch(r"([0-9a-fA-F]{4})\[(.+)\]([0-9a-fA-F]{2})", t)
    if m:
        g, creator, e = int(m.group(1), 16), m.group(2).strip(), int(m.group(3), 16)
        return _Target(f"{creator}:({g:04X},xx{e:02X})", None, frozenset(), True)
    if re.fullmatch(r"[0-9a-fA-F]{8}", t):
        tag = int(t, 16)
    else:
        found = tag_for_keyword(t)
        if found is None:
            return None
        tag = found
    g, e = tag >> 16, tag & 0xFFFF
    if g & 1:
        if e < 0x1000:
            return _Target(f"({g:04X},{e:04X})", None, frozenset(), True)  # a creator slot
        creator = creators.get((g, e >> 8))
        if creator is None:
            return _Target(f"({g:04X},{e:04X})", None, frozenset(), True)
        return _Target(f"{creator}:({g:04X},xx{e & 0xFF:02X})", None, frozenset(), True)
    keyword = keyword_for_tag(tag)
    try:
        vrs = frozenset(dictionary_VR(tag).split(" or "))
    except KeyError:
        vrs = frozenset()
    return _Target(keyword or f"({g:04X},{e:04X})", tag, vrs, False)


def _calls(body: str) -> tuple[list[tuple[str, list[str]]], str]:
    """Split a rule body into its @function(args) calls and the literal text left over."""
    calls = []
    for m in _CALL.finditer(body):
        args = [a.strip() for a in (m.group("args") or "").split(",")] if m.group("args") else []
        calls.append((m.group("name").lower(), args))
    literal = _CALL.sub("", body)
    literal = re.sub(r"^\{|\}$", "", literal.strip())
    return calls, literal


def _number(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


class _Converter:
    """Maps each rule to a medveil action, noting every approximation."""

    def __init__(self, script: CtpScript, draft: PolicyDraft) -> None:
        self.script = script
        self.draft = draft
        self.shift = False
        self.actions: dict[str, tuple[_Target, str | dict[str, object], ScriptRule]] = {}
        self.creators: dict[tuple[int, int], str] = {}
        for rule in script.rules.values():
            # A script that writes a private creator (e.g. "@always()CTP" in 0013,0010)
            # tells which block its private rules address.
            if re.fullmatch(r"[0-9a-fA-F]{8}", rule.tag_text):
                tag = int(rule.tag_text, 16)
                _, literal = _calls(rule.body)
                if tag >> 16 & 1 and 0x10 <= tag & 0xFFFF <= 0xFF and literal:
                    self.creators[(tag >> 16, tag & 0xFF)] = literal.strip()

    def param(self, name: str) -> str | None:
        return self.script.params.get(name.lstrip("@"))

    def convert(self) -> None:
        for rule in self.script.rules.values():
            self.convert_rule(rule)

    def convert_rule(self, rule: ScriptRule) -> None:
        note = self.draft.note
        shown = f'<e t="{rule.tag_text}" n="{rule.name}">{rule.body}</e>'
        target = _target(rule.tag_text, self.creators)
        if target is None:
            note(rule.where, shown, "ignored", "the element is neither a tag nor a keyword")
            return
        if target.tag in MARK_TAGS:
            if rule.body and rule.body not in ("@remove()", "@keep()"):
                note(
                    rule.where,
                    shown,
                    "medveil's own value",
                    "medveil writes PatientIdentityRemoved, DeidentificationMethod(Code"
                    "Sequence) and LongitudinalTemporalInformationModified itself, from "
                    "the options actually applied",
                )
            return
        calls, literal = _calls(rule.body)
        always = bool(calls) and calls[0][0] == "always"
        if always:
            calls = calls[1:]
        action = self.action_for(rule, shown, target, calls, literal)
        if always and action not in ("X", "K"):
            note(
                rule.where,
                shown,
                "set when present",
                "@always() also creates a missing "
                "element; medveil never adds elements other than its de-identification marks",
            )
        if target.private:
            if action == "X":
                return  # medveil removes private elements no rule keeps: the same result
            if ":" not in target.selector or target.selector.startswith("("):
                note(
                    rule.where,
                    shown,
                    "removed",
                    "medveil addresses private elements by their private creator, which "
                    "the script does not give for this tag",
                )
                return
            if action != "K":
                note(
                    rule.where,
                    shown,
                    "removed",
                    "medveil can only keep or remove a private element, not rewrite it",
                )
                return
        self.actions[target.selector] = (target, action, rule)

    def action_for(
        self,
        rule: ScriptRule,
        shown: str,
        target: _Target,
        calls: list[tuple[str, list[str]]],
        literal: str,
    ) -> str | dict[str, object]:
        note = self.draft.note
        vrs = target.vrs
        if not calls:
            if not literal:
                return "Z"  # CTP writes an empty value for an enabled empty rule
            return self.value(rule, shown, target, literal)
        if calls[0][0] in ("select", "if"):
            return self.branches(rule, shown, target, calls[0][0])
        if len(calls) > 1 or literal:
            names = "".join(f"@{n}()" for n, _ in calls)
            if calls[0][0] == "append" or (calls[0][0] == "process" and len(calls) == 1):
                pass
            else:
                note(
                    rule.where,
                    shown,
                    "removed",
                    f"{names} with text cannot be expressed; "
                    "removed so nothing it would have kept leaks",
                )
                return "X"
        name, args = calls[0]
        if name == "remove":
            return "X"
        if name in ("empty", "blank"):
            return "Z"
        if name == "keep":
            return "K"
        if name == "process":
            return "K"  # medveil walks a kept sequence's items with the same rules
        if name == "require":
            note(
                rule.where,
                shown,
                "K",
                "medveil keeps the element but does not create an empty one when it is missing",
            )
            return "K"
        if name == "append":
            note(rule.where, shown, "K", "medveil does not append text to a value")
            return "K"
        if name == "hashuid":
            if vrs and "UI" not in vrs:
                note(rule.where, shown, "removed", "@hashuid on a non-UID element")
                return "X"
            root = self.param(args[0]) if args else None
            note(
                rule.where,
                shown,
                "U",
                "UIDs become 2.25.<128 bits of keyed HMAC>, not "
                f"hashes under the script's root{f' {root}' if root else ''}",
            )
            return "U"
        if name in ("hash", "hashname", "hashptid", "lookup"):
            ok = not vrs or bool(vrs & _PSEUDONYM_VRS)
            why = {
                "hash": "a keyed HMAC pseudonym (prefix and length from [pseudonyms]) "
                "instead of CTP's unkeyed MD5 digits",
                "hashname": "a keyed HMAC pseudonym instead of CTP's name hash",
                "hashptid": "a keyed pseudonym of this element's own value, not of "
                "SITEID+PatientID",
                "lookup": "a keyed pseudonym instead of the site's lookup table "
                "([lookup] tables are not in medveil's policy schema yet)",
            }[name]
            if not ok:
                note(
                    rule.where,
                    shown,
                    "removed",
                    f"{why}; not possible for VR "
                    f"{'/'.join(sorted(vrs))}, so the element is removed",
                )
                return "X"
            note(rule.where, shown, "pseudonym", why)
            return "pseudonym"
        if name == "incrementdate":
            days = _number(self.param(args[1]) or "") if len(args) > 1 else None
            if days is None and len(args) > 1:
                days = _number(args[1])
            self.shift = True
            if days:
                cur = self.draft.shift_days or 0
                self.draft.shift_days = max(cur, min(abs(days), 36500))
            note(
                rule.where,
                shown,
                "C (shift)",
                "dates move by one keyed offset per patient "
                f"within +-{self.draft.shift_days or 365} days, not by a fixed "
                f"{days if days is not None else 'DATEINC'} days for everyone",
            )
            return "C"
        if name in ("date", "time"):
            note(rule.where, shown, "D", "a fixed dummy value, not the current date or time")
            return "D"
        if name == "param":
            value = self.param(args[0]) if args else None
            if value is None:
                note(
                    rule.where,
                    shown,
                    "Z",
                    f"parameter {args[0] if args else '?'} is not defined in the script",
                )
                return "Z"
            return self.value(rule, shown, target, value)
        if name == "round":
            width = _number(args[1]) if len(args) > 1 else None
            if width and width > 0:
                if "AS" in vrs:
                    return {"action": "age_band", "width": width}
                if vrs & _NUMERIC_VRS:
                    return {"action": "bin", "width": width}
            note(rule.where, shown, "removed", "@round on this element has no medveil action")
            return "X"
        note(
            rule.where,
            shown,
            "removed",
            f"@{name}() has no medveil equivalent; the element "
            "is removed so nothing it would have kept leaks",
        )
        return "X"

    def branches(
        self, rule: ScriptRule, shown: str, target: _Target, name: str
    ) -> str | dict[str, object]:
        """@select(){a}{b} / @if(...){a}{b}: the most protective branch, whatever decides."""
        bodies = _BRANCH.findall(rule.body)
        if not bodies:
            self.draft.note(rule.where, shown, "removed", f"@{name} without {{branches}}")
            return "X"
        before = len(self.draft.notes)
        picks = []
        for body in bodies:
            calls, literal = _calls(body)
            picks.append(self.action_for(rule, shown, target, calls, literal))
        del self.draft.notes[before:]  # one note for the rule, not one per branch
        best = min(picks, key=_protection)
        shown_best = best if isinstance(best, str) else str(best)
        self.draft.note(
            rule.where,
            shown,
            shown_best,
            f"@{name} chooses between branches at run time; the most protective one is "
            "taken for every file",
        )
        return best

    def value(
        self, rule: ScriptRule, shown: str, target: _Target, text: str
    ) -> str | dict[str, object]:
        if target.vrs & _NUMERIC_VRS:
            try:
                number: int | float = float(text) if "." in text else int(text)
            except ValueError:
                self.draft.note(rule.where, shown, "Z", f"{text!r} is not a number")
                return "Z"
            return {"value": number}
        if target.vrs & {"SQ", "OB", "OW", "UN"}:
            self.draft.note(
                rule.where, shown, "removed", "a text value for a sequence or binary element"
            )
            return "X"
        return {"value": text}


def import_ctp(paths: list[str | os.PathLike[str]], *, follow: str | None = None) -> PolicyDraft:
    """Convert stacked CTP scripts into a policy draft (see the module docstring)."""
    script = parse_scripts(paths)
    names = ", ".join(Path(p).name for p in paths)
    draft = PolicyDraft(source=names)
    draft.header = [
        f"Converted from RSNA CTP anonymizer script(s): {names}",
        "by `medveil policy import-ctp`. Review every note it printed before use.",
    ]
    claimed = claimed_options(script.codes)
    draft.claimed = claimed
    if follow is None:
        follow = "profile" if claimed is not None else "script"
    if follow not in ("profile", "script"):
        raise ValueError("follow must be 'profile' or 'script'")
    for name, value in script.params.items():
        # CTP's published profiles ship prompts ("Enter your date offset...") as values.
        if re.match(r"(enter|insert)\b", value, re.I) or "xxxx" in value.lower():
            draft.note(
                names,
                f'<p t="{name}">{value}</p>',
                "used as written",
                "the parameter looks like an unfilled placeholder: fill it in the script "
                "and convert again",
            )
    conv = _Converter(script, draft)
    conv.convert()
    options = list(claimed or ())
    if conv.shift and Option.RETAIN_LONGITUDINAL_MODIFIED_DATES not in options:
        options.append(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    if script.keep_groups.get("safeprivateelements") and Option.RETAIN_SAFE_PRIVATE not in options:
        options.append(Option.RETAIN_SAFE_PRIVATE)
    draft.options = [o for o in Option if o in options]
    if Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in draft.options and draft.shift_days is None:
        draft.shift_days = 365
    _global_options(script, draft, follow)
    base = Policy(options=tuple(draft.options), pseudonymized=()).compile()
    if claimed is not None:
        _differences(conv, draft, base)
    if follow == "script" or claimed is None:
        for selector, (target, action, _rule) in conv.actions.items():
            allow_list = draft.unknown_elements == "remove"
            if (
                target.tag is not None
                and _same(base, target, action, exact=True)
                and not (allow_list and base.rule_for(target.tag) is None)
            ):
                continue  # medveil's profile already does exactly this
            if action == "pseudonym" and not target.private and keyword_dict.get(selector):
                draft.pseudonymize.append(selector)
            else:
                draft.elements[selector] = action
    unnamed = _unnamed_table_rows(conv, base)
    if unnamed:
        draft.note(
            names,
            f"{unnamed} attribute(s) of Table E.1-1 that no enabled rule names",
            "medveil's profile",
            "CTP keeps elements its script does not name; medveil applies its Basic "
            "Profile and the selected options to them (more is removed, never less)",
        )
    draft.policy()  # a converter bug must not write a policy medveil rejects
    return draft


def _global_options(script: CtpScript, draft: PolicyDraft, follow: str) -> None:
    note = draft.note
    where = draft.source
    if script.remove.get("unspecifiedelements"):
        draft.unknown_elements = "remove"
        kept = [k for k, on in script.keep_groups.items() if on and re.fullmatch(r"[0-9a-f]{4}", k)]
        for group in kept:
            g = int(group, 16)
            draft.keep += sorted(kw for kw, tag in keyword_dict.items() if tag >> 16 == g and kw)
        note(
            where,
            '<r t="unspecifiedelements"> on',
            'unknown_elements = "remove"',
            "medveil's allow-list also keeps its structural elements (pixel geometry, "
            "UIDs) and file meta, which CTP would remove unless named",
        )
    else:
        for group, on in script.keep_groups.items():
            if on and group != "safeprivateelements":
                note(
                    where,
                    f'<k t="{group}"> on',
                    "no effect",
                    "a kept group only matters when unspecified elements are removed",
                )
    if script.keep_groups.get("safeprivateelements"):
        note(
            where,
            '<k t="safeprivateelements"> on',
            "retain_safe_private",
            "medveil's safe list is PS3.15 Table E.3.10-1, not CTP's own list",
        )
    if script.remove.get("privategroups") is False:
        note(
            where,
            '<r t="privategroups"> off',
            "private elements removed",
            "medveil removes every private element no rule keeps (and the safe ones "
            "only with retain_safe_private): it has no keep-all-private switch",
        )
    for kind, mask in (("overlays", "(60xx,xxxx)"), ("curves", "(50xx,xxxx)")):
        state = script.remove.get(kind)
        if state and follow == "script":
            draft.elements[mask] = "X"
        elif state:
            note(
                where,
                f'<r t="{kind}"> on',
                "medveil's profile",
                f"medveil's profile removes only the {kind} elements Table E.1-1 lists"
                + (
                    " (overlay data and comments); the rest of each group is kept"
                    if kind == "overlays"
                    else ""
                ),
            )
        elif state is False:
            note(
                where,
                f'<r t="{kind}"> off',
                "medveil's profile",
                f"{kind} data is removed by the Basic Profile whatever the script says",
            )


def _same(
    base: CompiledPolicy, target: _Target, action: str | dict[str, object], exact: bool = False
) -> bool:
    """True when medveil's profile acts on this tag as the script does.

    With ``exact`` the action must be the same; otherwise a script action that the
    profile's combined code allows (X for X/D) conforms.
    """
    assert target.tag is not None
    rule = base.rule_for(target.tag)
    if not isinstance(action, str):
        return False
    if rule is None:
        return action == "K"
    if rule.action == action:
        return True
    if action == "K" and rule.action == "C" and target.vrs == {"TM"}:
        return True  # whole-day date shifts leave times of day as they are: C keeps a TM
    if "/" in rule.action and not exact:
        choices = rule.action.rstrip("*").split("/")
        if rule.action == "X/Z/U*":
            choices.append("K")  # a sequence is kept and its items cleaned
        return action in choices
    return False


def _differences(conv: _Converter, draft: PolicyDraft, base: CompiledPolicy) -> None:
    for _selector, (target, action, rule) in sorted(
        conv.actions.items(), key=lambda kv: kv[1][0].tag or 0
    ):
        if target.tag is None or _same(base, target, action):
            continue
        have = base.rule_for(target.tag)
        theirs = action if isinstance(action, str) else str(action)
        ours = f"{have.action} ({have.decided_by})" if have else "K (not in Table E.1-1)"
        draft.differences.append(
            f"({target.tag >> 16:04X},{target.tag & 0xFFFF:04X}) {rule.name or target.selector}: "
            f"script {theirs} [{rule.body}], medveil {ours}"
        )


def _unnamed_table_rows(conv: _Converter, base: CompiledPolicy) -> int:
    named = {t.tag for t, _a, _r in conv.actions.values() if t.tag is not None}
    return sum(1 for tag, rule in base.by_tag.items() if tag not in named and rule.action != "K")
