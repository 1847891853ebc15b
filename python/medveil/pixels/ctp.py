"""Convert RSNA CTP DicomPixelAnonymizer scripts into medveil's TOML pixel rules.

A CTP script is free text in which each signature ``{ ... }`` is a boolean expression over
DICOM elements, followed by the rectangles ``(x,y,w,h)`` to blank. Everything else (headings,
remarks) is commentary; the commentary just before a signature becomes the rule's description.

Expression grammar (``*`` binds tighter than ``+``, as multiplication over addition)::

    expr   := term ('+' term)*
    term   := factor ('*' factor)*
    factor := '!' factor | '(' expr ')' | call
    call   := element '.' method '(' string ')'
    element:= Keyword | '[' gggg ',' eeee ']'

Usage: ``python -m medveil.ctp_rules SRC.script DST.toml``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medveil.errors import PolicyError
from medveil.pixels.rules import AllOf, AnyOf, Condition, Leaf, Not, PixelRule, RuleSet

#: CTP method -> (medveil operator, ignore_case). ``matches`` is Java's whole-string match.
METHODS: dict[str, tuple[str, bool]] = {
    "equals": ("equals", False),
    "equalsignorecase": ("equals", True),
    "contains": ("contains", False),
    "containsignorecase": ("contains", True),
    "startswith": ("prefix", False),
    "startswithignorecase": ("prefix", True),
    "endswith": ("suffix", False),
    "endswithignorecase": ("suffix", True),
    "matches": ("regex", False),
}


@dataclass(frozen=True)
class Token:
    """One lexical token of a CTP signature."""

    kind: str  # IDENT TAG STRING INT DOT LPAREN RPAREN COMMA AND OR NOT END
    text: str
    pos: int


class CtpSyntaxError(PolicyError):
    """A CTP script could not be parsed; the message gives the line and column."""


def _where(src: str, pos: int) -> str:
    line = src.count("\n", 0, pos) + 1
    col = pos - (src.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {col}"


_SINGLE = {
    ".": "DOT",
    "(": "LPAREN",
    ")": "RPAREN",
    ",": "COMMA",
    "*": "AND",
    "+": "OR",
    "!": "NOT",
}


def tokenize(src: str, start: int, end: int) -> list[Token]:
    """Split ``src[start:end]`` (the inside of one signature) into tokens."""
    toks: list[Token] = []
    i = start
    while i < end:
        ch = src[i]
        if ch.isspace():
            i += 1
        elif ch in _SINGLE:
            toks.append(Token(_SINGLE[ch], ch, i))
            i += 1
        elif ch == '"':
            j, buf = i + 1, []
            while j < end and src[j] != '"':
                if src[j] == "\\" and j + 1 < end:
                    j += 1
                buf.append(src[j])
                j += 1
            if j >= end:
                raise CtpSyntaxError(f"unterminated string at {_where(src, i)}")
            toks.append(Token("STRING", "".join(buf), i))
            i = j + 1
        elif ch == "[":
            j = src.find("]", i, end)
            m = re.fullmatch(r"\[\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\]", src[i : j + 1])
            if j < 0 or not m:
                raise CtpSyntaxError(f"bad tag at {_where(src, i)}; expected [gggg,eeee]")
            toks.append(Token("TAG", f"({m.group(1).upper()},{m.group(2).upper()})", i))
            i = j + 1
        elif ch.isalpha() or ch == "_":
            j = i
            while j < end and (src[j].isalnum() or src[j] == "_"):
                j += 1
            toks.append(Token("IDENT", src[i:j], i))
            i = j
        else:
            raise CtpSyntaxError(f"unexpected character {ch!r} at {_where(src, i)}")
    toks.append(Token("END", "", end))
    return toks


class _Parser:
    def __init__(self, src: str, toks: list[Token]) -> None:
        self.src, self.toks, self.i = src, toks, 0

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self, kind: str) -> Token:
        tok = self.toks[self.i]
        if tok.kind != kind:
            got = tok.text or "end of signature"
            raise CtpSyntaxError(
                f"expected {kind} but found {got!r} at {_where(self.src, tok.pos)}"
            )
        self.i += 1
        return tok

    def expr(self) -> Condition:
        kids = [self.term()]
        while self.peek().kind == "OR":
            self.i += 1
            kids.append(self.term())
        return kids[0] if len(kids) == 1 else AnyOf(tuple(kids))

    def term(self) -> Condition:
        kids = [self.factor()]
        while self.peek().kind == "AND":
            self.i += 1
            kids.append(self.factor())
        return kids[0] if len(kids) == 1 else AllOf(tuple(kids))

    def factor(self) -> Condition:
        tok = self.peek()
        if tok.kind == "NOT":
            self.i += 1
            return Not(self.factor())
        if tok.kind == "LPAREN":
            self.i += 1
            inner = self.expr()
            self.take("RPAREN")
            return inner
        if tok.kind in ("IDENT", "TAG"):
            self.i += 1
            self.take("DOT")
            meth = self.take("IDENT")
            spec = METHODS.get(meth.text.lower())
            if spec is None:
                raise CtpSyntaxError(
                    f"unsupported method {meth.text!r} at {_where(self.src, meth.pos)}; "
                    f"known: {', '.join(sorted(METHODS))}"
                )
            self.take("LPAREN")
            arg = self.take("STRING").text
            self.take("RPAREN")
            op, ic = spec
            if op == "regex":
                arg = rf"\A(?:{arg})\Z"  # Java String.matches() must match the whole value
            try:
                return Leaf(tok.text, op, arg, ic)
            except PolicyError as exc:
                raise CtpSyntaxError(f"{exc} at {_where(self.src, tok.pos)}") from exc
        got = tok.text or "end of signature"
        raise CtpSyntaxError(
            f"expected a condition but found {got!r} at {_where(self.src, tok.pos)}"
        )


def parse_signature(src: str, start: int = 0, end: int | None = None) -> Condition:
    """Parse one signature's expression (without the braces) into a condition."""
    end = len(src) if end is None else end
    p = _Parser(src, tokenize(src, start, end))
    cond = p.expr()
    p.take("END")
    return cond


_RECT = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")


@dataclass(frozen=True)
class CtpRule:
    """A parsed CTP signature with its rectangles (x, y, w, h) and the commentary before it."""

    condition: Condition
    rects: tuple[tuple[int, int, int, int], ...]
    section: str
    vendor: str
    comment: str
    line: int


def _closing_brace(src: str, brace: int) -> int:
    """Index of the '}' that ends the signature opened at ``brace`` (strings may hold braces)."""
    i = brace + 1
    while i < len(src):
        ch = src[i]
        if ch == '"':
            start = i
            i += 1
            while i < len(src) and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            if i >= len(src):
                raise CtpSyntaxError(f"unterminated string at {_where(src, start)}")
        elif ch == "{":
            raise CtpSyntaxError(f"nested '{{' in the signature at {_where(src, brace)}")
        elif ch == "}":
            return i
        i += 1
    raise CtpSyntaxError(f"'{{' at {_where(src, brace)} is never closed")


def parse_script(src: str) -> list[CtpRule]:
    """Parse a whole CTP pixel script into its signatures and rectangles, in file order."""
    rules: list[CtpRule] = []
    section, vendor, sub = "", "", ""
    pos = 0
    while True:
        brace = src.find("{", pos)
        gap = src[pos : len(src) if brace < 0 else brace]
        if "}" in gap:
            raise CtpSyntaxError(f"'}}' without '{{' at {_where(src, pos + gap.index('}'))}")
        # Headings: a section title sits between two rows of asterisks; an unindented remark
        # names a vendor; indented remarks describe the device. Text before the first
        # section (the file's preamble) describes no rule.
        lines = [ln.rstrip() for ln in gap.splitlines() if ln.strip()]
        subs: list[str] = []
        for k, ln in enumerate(lines):
            bare = ln.strip()
            if set(bare) == {"*"}:
                continue
            prev_stars = k > 0 and set(lines[k - 1].strip()) == {"*"}
            next_stars = k + 1 < len(lines) and set(lines[k + 1].strip()) == {"*"}
            if prev_stars and next_stars:
                section, vendor, sub, subs = bare, "", "", []
            elif not section:
                continue
            elif ln[0].isspace():
                subs.append(bare)
            else:
                vendor, sub, subs = bare, "", []
        if subs:
            sub = " / ".join(subs)
        if brace < 0:
            break
        close = _closing_brace(src, brace)
        cond = parse_signature(src, brace + 1, close)
        # The rectangles: consecutive (x,y,w,h) groups right after the closing brace.
        rects: list[tuple[int, int, int, int]] = []
        j = close + 1
        while True:
            k = j
            while k < len(src) and src[k].isspace():
                k += 1
            m = _RECT.match(src, k)
            if not m:
                break
            x, y, w, h = (int(g) for g in m.groups())
            rects.append((x, y, w, h))
            j = m.end()
        if not rects:
            raise CtpSyntaxError(f"signature at {_where(src, brace)} has no (x,y,w,h) rectangle")
        line = src.count("\n", 0, brace) + 1
        rules.append(CtpRule(cond, tuple(rects), section, vendor, sub, line))
        pos = j
    return rules


def convert(src: str, *, source_name: str = "") -> RuleSet:
    """Convert CTP script text to a rule set; (x,y,w,h) becomes rows y..y+h, cols x..x+w."""
    out: list[PixelRule] = []
    for n, r in enumerate(parse_script(src), start=1):
        head = f"{r.section} {r.vendor.split()[0] if r.vendor else ''}"
        slug = re.sub(r"[^a-z0-9]+", "-", head.lower()).strip("-") or "misc"
        desc = " / ".join(p for p in (r.section, r.vendor, r.comment) if p)
        out.append(
            PixelRule(
                id=f"ctp-{n:02d}-{slug}",
                match=r.condition,
                regions=tuple((y, y + h, x, x + w, 0, None) for x, y, w, h in r.rects),
                description=f"{desc} (CTP script line {r.line})",
            )
        )
    meta = {
        "name": "RSNA CTP burned-in annotation library",
        "converted_from": source_name or "CTP DicomPixelAnonymizer.script",
        "source_sha256": hashlib.sha256(src.encode("utf-8")).hexdigest(),
        "licence": "RSNA Public License; see medveil/data/README.md",
    }
    return RuleSet(tuple(out), meta)


HEADER = """\
# Generated by `python -m medveil.ctp_rules` from {name}; do not edit by hand.
# RSNA CTP DicomPixelAnonymizer burned-in annotation library, (c) Radiological Society of
# North America, released under the RSNA Public License (provenance: data/README.md).
# The CTP file says: it is the responsibility of the user to review DICOM images to be sure
# that all areas of PHI are removed from an image before it is considered anonymized.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Convert SRC (a CTP script) to DST (medveil TOML rules)."""
    ap = argparse.ArgumentParser(
        prog="python -m medveil.ctp_rules", description=__doc__.split("\n")[0]
    )
    ap.add_argument("src", type=Path, help="CTP DicomPixelAnonymizer script")
    ap.add_argument("dst", type=Path, help="TOML rule file to write")
    args = ap.parse_args(argv)
    text = args.src.read_text(encoding="utf-8")
    rules = convert(text, source_name=args.src.name)
    toml = rules.to_toml(HEADER.format(name=args.src.name))
    RuleSet.loads(toml, str(args.dst))  # refuse to write what we could not read back
    args.dst.write_text(toml, encoding="utf-8")
    n_rects = sum(len(r.regions) for r in rules.rules)
    print(f"{len(rules)} rules, {n_rects} rectangles -> {args.dst}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
