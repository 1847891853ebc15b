"""Hunt the learned values in every output: parsed elements, raw bytes, and pixel bits."""

from __future__ import annotations

import bisect
import hashlib
import io
import os
import re
import secrets
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from medveil.verify.binary import (
    SUBSTRING_MIN,
    Budget,
    Uninspectable,
    digit_widths,
    in_digit_run,
    inflated,
    is_binary_vr,
    may_hold_stream,
)
from medveil.verify.inputs import Item, iter_items
from medveil.verify.matcher import (
    RegexMatcher,
    SubstringMatcher,
    have_aho_corasick,
    make_matcher,
)
from medveil.verify.numbers import is_numeric_text, number_forms
from medveil.verify.rawscan import PIXEL_TAGS, RawLayout, Span, layouts, looks_like_dicom
from medveil.verify.report import Finding, VerifyReport
from medveil.verify.values import (
    ValueIndex,
    classify,
    dates_in,
    element_texts,
    glued_is_word,
    is_date_value,
    learn,
    letter_run,
    normalize,
    walk,
)

# Ages over 89 are one category under HIPAA Safe Harbor ("90 or older"): an output that
# states a higher age, as an AS value past 090Y or in text ('93 yo', '93-year-old',
# 'age 93'; '90+' is the category), is a finding whatever the originals said.
_AGE_NUMBER = r"(?:9\d|1[0-4]\d)(?![\d+.,])"
_AGE_IN_TEXT = re.compile(
    rf"(?<![\d.,/]){_AGE_NUMBER}(?=\s?-?\s?(?:years?|yrs?|y\.?\s?o\.?|y/o|y)(?![^\W\d_]))"
    rf"|(?<![^\W\d_])aged?s?\s*(?:of\s*)?[:=]?\s*{_AGE_NUMBER}",
    re.IGNORECASE,
)
_AS_VALUE = re.compile(r"(\d{3})([DWMY])")
_AS_PER_YEAR = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}


def ages_over_90(vr: str, texts: Iterable[str]) -> list[str]:
    """The ages past Safe Harbor's top category in one element's values (AS, or text)."""
    out = []
    for t in texts:
        if vr == "AS":
            m = _AS_VALUE.fullmatch(t.strip())
            if m and int(m.group(1)) / _AS_PER_YEAR[m.group(2)] > 90:
                out.append(t.strip())
        elif vr in _AGE_TEXT_VRS:
            out.extend(m.group() for m in _AGE_IN_TEXT.finditer(t))
    return out


_AGE_TEXT_VRS = frozenset({"LO", "LT", "ST", "UT", "UC", "SH"})

# Byte haystacks and patterns get the same transform: ASCII upper -> lower, '^' -> ' '.
_FOLD = bytes((b + 32 if 65 <= b <= 90 else 32 if b == 0x5E else b) for b in range(256))
_NUMERIC_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_TEXT_NUMBER_VRS = frozenset({"IS", "DS"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
# Free text (not SH/CS/AE codes and IDs: a StudyID of 8 digits is a number, not a date).
_FREE_TEXT_VRS = frozenset({"LO", "ST", "LT", "UT", "UC", "UN", "OB"})
_EIGHT_DIGITS = re.compile(r"(?<![0-9])([0-9]{8})(?![0-9])")
_NATIVE_TS = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
)
_MAX_SOURCES = 3


_TAG_IN_PATH = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")


def _extends_uid(text: str, s: int, e: int) -> bool:
    """Whether a UID match is only part of a longer UID (``x.<uid>`` or ``<uid>.y``)."""
    after = text[e : e + 2]
    before = text[max(0, s - 2) : s]
    return (len(after) == 2 and after[0] == "." and after[1].isdigit()) or (
        len(before) == 2 and before[1] == "." and before[0].isdigit()
    )


def leaf_tag(path: str) -> int | None:
    """Tag of the innermost element named in a finding path, or None for raw offsets."""
    tags = _TAG_IN_PATH.findall(path)
    return int(tags[-1][0] + tags[-1][1], 16) if tags else None


def resolve_tags(items: Iterable[int | str]) -> set[int]:
    """Tags from ints, keywords or ``(gggg,eeee)`` / ``ggggeeee`` strings; ValueError if unknown."""
    out: set[int] = set()
    for item in items:
        if isinstance(item, int):
            out.add(item)
            continue
        text = item.strip()
        m = re.fullmatch(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?", text)
        tag = int(m.group(1) + m.group(2), 16) if m else tag_for_keyword(text)
        if tag is None:
            raise ValueError(f"unknown element {text!r}: use a keyword or (gggg,eeee)")
        out.add(tag)
    return out


def outermost(hits: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Drop matches lying inside a longer one (a name's components inside the full name)."""
    out: list[tuple[int, int, int]] = []
    reach = -1
    for h in sorted(hits, key=lambda h: (h[0], -h[1])):
        if h[1] <= reach:
            continue
        out.append(h)
        reach = h[1]
    return out


class Scanner:
    """The learned values compiled once into automata, applied to one output at a time."""

    def __init__(
        self,
        index: ValueIndex,
        *,
        strict: bool = False,
        engine: str = "auto",
        hash_key: bytes | None = None,
        originals_root: Path | None = None,
    ) -> None:
        self.index = index
        self.originals_root = originals_root or Path()
        self._display_cache: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        self.strict = strict
        self.key = hash_key if hash_key is not None else secrets.token_bytes(32)
        self.texts = sorted(index.values)
        self.text_matcher = make_matcher(self.texts, engine=engine)
        self.engine = "regex" if isinstance(self.text_matcher, RegexMatcher) else "aho-corasick"
        byte_pats: dict[bytes, tuple[int, str]] = {}
        u16_pats: dict[bytes, tuple[int, str]] = {}
        for i, v in enumerate(self.texts):
            variants = {v, v.upper()}
            for sp in index.values[v].spellings:
                variants |= {sp, sp.lower(), sp.upper()}
            for variant in variants:
                for enc in ("utf-8", "latin-1"):
                    try:
                        pat = variant.encode(enc).translate(_FOLD)
                    except UnicodeEncodeError:
                        continue
                    byte_pats.setdefault(pat, (i, enc))
                pat = variant.encode("utf-16-le").translate(_FOLD)
                u16_pats.setdefault(pat, (i, "utf-16-le"))
        self._byte_info = list(byte_pats.values())
        self._u16_info = list(u16_pats.values())
        self.byte_matcher = make_matcher(list(byte_pats), engine=engine)
        self.u16_matcher = make_matcher(list(u16_pats), utf16=True, engine=engine)
        # Binary values are searched again for the longer values as substrings (a name
        # glued to an ID), raw and inflated (verify.binary).
        sub = {
            p: info
            for p, info in (*byte_pats.items(), *u16_pats.items())
            if len(self.texts[info[0]]) >= SUBSTRING_MIN
        }
        self._sub_info = list(sub.values())
        self.sub_matcher = SubstringMatcher(list(sub))
        self._sub_digits = digit_widths(list(sub))
        self.uninspectable: set[str] = set()  # files with a stream past its bound
        # Names glued into other letters ('MRLEEBRAIN'): one-word names of three letters
        # or more, as substrings of the decoded text, judged by glued_is_word.
        glued = {v for v in self.texts if index.values[v].kind == "names" and v.isalpha()}
        glued |= set(index.short_names)
        self.glued_names = sorted(n for n in glued if len(n) >= 3)
        self.glued_matcher = SubstringMatcher(self.glued_names)

    # -- helpers ------------------------------------------------------------------------
    def _finding(
        self, file: str, category: str, path: str, how: str, value: str, kind: str
    ) -> Finding:
        lv = self.index.values.get(value) or self.index.dates.get(value)
        sources = (
            tuple(
                self.display(self.originals_root, src)[0]
                for src in sorted(lv.sources)[:_MAX_SOURCES]
            )
            if lv
            else ()
        )
        digest = hashlib.blake2b(value.encode(), key=self.key[:64], digest_size=8).hexdigest()
        return Finding(
            file=file,
            category=category,
            path=path,
            how=how,
            kind=kind,
            value_hash=digest,
            # One ideogram can be a whole surname: only an ASCII initial is shown.
            first=value[:1] if value[:1].isascii() else "*",
            length=len(value),
            sources=sources,
        )

    @staticmethod
    def _category(value_kind: str, in_meta: bool, private: bool, elem_kind: str | None) -> str:
        if in_meta:
            return "meta"
        if private:
            return "private"
        if elem_kind is None:
            return "free_text"
        return elem_kind if value_kind == "private" else value_kind

    # -- the three searches --------------------------------------------------------------
    def scan_elements(self, file: str, ds: Dataset) -> tuple[list[Finding], set[tuple[str, str]]]:
        """Search every parsed element (file meta, sequences, private, UN decoded)."""
        findings: list[Finding] = []
        seen: set[tuple[str, str]] = set()
        parts: list[str] = []
        starts: list[int] = []
        info: list[tuple[str, bool, bool, str | None]] = []
        pos = 0
        meta = getattr(ds, "file_meta", None)
        sources = [(walk(meta), True)] if meta is not None else []
        sources.append((walk(ds), False))
        for walker, in_meta in sources:
            for path, elem, private in walker:
                vr = elem.VR
                if vr == "SQ" or int(elem.tag) in PIXEL_TAGS:
                    continue
                try:
                    texts = element_texts(elem)
                except Exception:
                    continue
                if vr in _DATE_VRS or (private and texts and is_date_value(texts[0])):
                    for t in texts:
                        for d in dates_in(t):
                            if d in self.index.dates and (path, d) not in seen:
                                seen.add((path, d))
                                cat = self._category("dates", in_meta, private, "dates")
                                findings.append(
                                    self._finding(file, cat, path, "element", d, "dates")
                                )
                elif vr in _FREE_TEXT_VRS:
                    # An original date written into text, unshifted, is a leak too.
                    for t in texts:
                        for m in _EIGHT_DIGITS.finditer(t):
                            d = m.group(1)
                            if d in self.index.dates and (path, d) not in seen:
                                seen.add((path, d))
                                cat = self._category("dates", in_meta, private, "dates")
                                findings.append(
                                    self._finding(file, cat, path, "element", d, "dates")
                                )
                for age in ages_over_90(vr, texts):
                    if (path, age) not in seen:
                        seen.add((path, age))
                        # Safe Harbor's element (c): ages go with the dates.
                        cat = "meta" if in_meta else "dates" if vr == "AS" else "free_text"
                        findings.append(self._finding(file, cat, path, "element", age, "ages"))
                if vr in _NUMERIC_VRS and not self.strict:
                    raw = [t.encode("utf-8", "replace") for t in texts]
                    if vr not in _TEXT_NUMBER_VRS or all(is_numeric_text(r) for r in raw):
                        # Numbers are compared whole: one equal to a learned ID or date.
                        for form in number_forms(raw) if vr in _TEXT_NUMBER_VRS else ():
                            if form in self.index.values and (path, form) not in seen:
                                seen.add((path, form))
                                vkind = self.index.values[form].kind
                                cat = self._category(vkind, in_meta, private, None)
                                findings.append(
                                    self._finding(file, cat, path, "element", form, vkind)
                                )
                        continue
                kw = keyword_for_tag(elem.tag) or ""
                ekind = classify(int(elem.tag), vr, kw, strict=True)
                for t in texts:
                    starts.append(pos)
                    info.append((path, in_meta, private, ekind))
                    n = normalize(t)
                    parts.append(n)
                    pos += len(n) + 1
        haystack = "\x00".join(parts)
        for s, e, i in outermost(self.text_matcher.find(haystack)):
            j = bisect.bisect_right(starts, s) - 1
            path, in_meta, private, ekind = info[j]
            value = self.texts[i]
            if (path, value) in seen:
                continue
            vkind = self.index.values[value].kind
            if vkind == "uids" and _extends_uid(haystack, s, e):
                continue
            seen.add((path, value))
            cat = self._category(vkind, in_meta, private, ekind)
            findings.append(self._finding(file, cat, path, "element", value, vkind))
        for s, e, i in self.glued_matcher.find(haystack):
            a, b = letter_run(haystack, s, e)
            if (a, b) == (s, e) or glued_is_word(haystack[a:b], s - a, e - a):
                continue  # a whole word (the word search's), or inside an ordinary word
            j = bisect.bisect_right(starts, s) - 1
            path, in_meta, private, ekind = info[j]
            value = self.glued_names[i]
            if (path, value) in seen:
                continue
            seen.add((path, value))
            cat = self._category("names", in_meta, private, ekind)
            findings.append(self._finding(file, cat, path, "glued", value, "names"))
        return findings, seen

    def scan_bytes(
        self, file: str, data: bytes, seen: set[tuple[str, str]], dicom: bool
    ) -> tuple[list[Finding], bool]:
        """Raw search (UTF-8, Latin-1, UTF-16-LE) of the file outside pixel data."""
        findings: list[Finding] = []
        try:
            lays = layouts(data) if dicom else [RawLayout("file", data, complete=False)]
        except Exception:  # the walker only names paths: search the bytes without it
            lays = [RawLayout("file", data, complete=False)]
        complete = all(lay.complete for lay in lays)
        for lay in lays:
            buf = lay.data
            segments, cur = [], 0
            for a, b in sorted(lay.pixel_ranges):
                if a > cur:
                    segments.append((cur, a))
                cur = max(cur, b)
            segments.append((cur, len(buf)))
            for seg_start, seg_end in segments:
                hay = buf[seg_start:seg_end].translate(_FOLD)
                found = [(s, e, i) for s, e, i in self.byte_matcher.find(hay)]
                found += [(s, e, -1 - i) for s, e, i in self.u16_matcher.find(hay)]
                for s, e, i in outermost(found):
                    vi, enc = self._byte_info[i] if i >= 0 else self._u16_info[-1 - i]
                    f = self._byte_finding(file, lay, s + seg_start, e + seg_start, vi, enc, seen)
                    if f is not None:
                        findings.append(f)
        if dicom:
            findings += self._scan_binary(file, lays, seen)
        return findings, complete

    def _scan_binary(
        self, file: str, lays: list[RawLayout], seen: set[tuple[str, str]]
    ) -> list[Finding]:
        """Binary values (never pixel data) searched for substrings, raw and inflated."""
        findings: list[Finding] = []
        budget = Budget()
        # An element the word searches already reported is not reported again for a
        # shorter value inside it (its raw bytes); what it inflates to still is.
        reported = {path for path, _ in seen}
        for lay in lays:
            walked = {sp.path[: sp.path.rfind("[")] for sp in lay.spans if "[" in sp.path}
            for sp in lay.spans:
                if (
                    sp.tag in PIXEL_TAGS
                    or sp.end <= sp.start
                    or sp.vr == "SQ"
                    or sp.path in walked
                    or (sp.path == "(deflated)" and len(lays) > 1)
                    or not is_binary_vr(sp.vr)
                ):
                    continue
                value = lay.data[sp.start : sp.end]
                parts = [] if sp.path in reported else [(value, sp.start)]
                if may_hold_stream(value):
                    try:
                        parts += [(out, -1) for out in inflated(value, budget)]
                    except Uninspectable:
                        self.uninspectable.add(file)
                for part, at in parts:
                    hay = part.translate(_FOLD)
                    for s, e, i in self.sub_matcher.find(hay):
                        if i in self._sub_digits and in_digit_run(hay, s, e, self._sub_digits[i]):
                            continue
                        vi, enc = self._sub_info[i]
                        if at >= 0:
                            f = self._byte_finding(file, lay, at + s, at + e, vi, enc, seen)
                        else:
                            f = self._stream_finding(file, lay, sp, vi, enc, seen)
                        if f is not None:
                            findings.append(f)
        return findings

    def _stream_finding(
        self, file: str, lay: RawLayout, sp: Span, vi: int, enc: str, seen: set[tuple[str, str]]
    ) -> Finding | None:
        """A value found in what a compressed stream inside element sp inflates to."""
        value = self.texts[vi]
        path = f"{sp.path} (compressed stream)"
        if (path, value) in seen:
            return None
        seen.add((path, value))
        vkind = self.index.values[value].kind
        in_meta = lay.name == "file" and sp.tag >> 16 == 0x0002
        cat = self._category(vkind, in_meta, sp.private, None)
        return self._finding(file, cat, path, f"bytes:{enc}:inflated", value, vkind)

    def _byte_finding(
        self,
        file: str,
        lay: RawLayout,
        start: int,
        end: int,
        vi: int,
        enc: str,
        seen: set[tuple[str, str]],
    ) -> Finding | None:
        value = self.texts[vi]
        vkind = self.index.values[value].kind
        if vkind == "uids":
            step = 2 if enc == "utf-16-le" else 1
            window = lay.data[max(0, start - 2 * step) : end + 2 * step]
            text = window.decode(enc, "replace")
            pre = len(lay.data[max(0, start - 2 * step) : start].decode(enc, "replace"))
            if _extends_uid(
                text, pre, len(text) - len(lay.data[end : end + 2 * step].decode(enc, "replace"))
            ):
                return None
        span: Span | None = lay.element_at(start, end) if lay.spans else None
        if span is not None and span.truncated:
            span = None  # a length that runs past the end names no real element
        if span is not None:
            if (span.path, value) in seen:
                return None  # already reported by the element search
            if (
                span.vr in _TEXT_NUMBER_VRS
                and not self.strict
                and is_numeric_text(bytes(lay.data[span.start : span.end]))
            ):
                return None  # numbers are compared whole by the element search
            seen.add((span.path, value))
            in_meta = lay.name == "file" and span.tag >> 16 == 0x0002
            kw = keyword_for_tag(span.tag) or ""
            ekind = classify(span.tag, span.vr, kw, strict=True) if span.tag else None
            cat = self._category(vkind, in_meta, span.private, ekind)
            path = span.path if lay.name == "file" else f"{span.path} (inflated)"
        else:
            preamble = lay.name == "file" and lay.meta_end > 0 and start < 128
            if lay.complete and lay.spans and not preamble:
                return None  # bytes of element headers, which hold no text
            in_meta = lay.name == "file" and start < lay.meta_end
            where = "preamble" if preamble else lay.name
            path = f"{where}@{start}"
            if (path, value) in seen:
                return None
            seen.add((path, value))
            cat = "meta" if in_meta else ("private" if vkind == "private" else vkind)
        return self._finding(file, cat, path, f"bytes:{enc}", value, vkind)

    def scan_pixels(self, file: str, ds: Dataset) -> list[Finding]:
        """Report samples with bits set outside BitsStored/HighBit (native syntaxes only)."""
        if "PixelData" not in ds:
            return []
        meta = getattr(ds, "file_meta", None)
        ts = str(getattr(meta, "TransferSyntaxUID", "1.2.840.10008.1.2")) if meta else None
        if ts not in _NATIVE_TS and ts is not None:
            return []
        try:
            ba = int(ds.BitsAllocated)
            bs = int(ds.BitsStored)
            hb = int(ds.get("HighBit", bs - 1))
            signed = int(ds.get("PixelRepresentation", 0)) == 1
            raw = ds.PixelData
        except Exception:
            return []
        if ba not in (8, 16, 32) or not (0 < bs <= ba) or not (bs - 1 <= hb < ba):
            return []
        if bs == ba and hb == ba - 1:
            return []
        order = ">" if ts == "1.2.840.10008.1.2.2" else "<"
        dtype = np.dtype(f"{order}u{ba // 8}")
        n = len(raw) // dtype.itemsize
        v = np.frombuffer(raw, dtype=dtype, count=n).astype(dtype.newbyteorder("="), copy=False)
        ut = v.dtype.type
        low = hb - bs + 1
        bad = (v & ut((1 << low) - 1)) != 0 if low else np.zeros(n, dtype=bool)
        if signed:
            upper = v >> ut(hb)  # the sign bit and everything above it
            bad |= (upper != 0) & (upper != ut((1 << (ba - hb)) - 1))
        elif hb + 1 < ba:
            bad |= (v >> ut(hb + 1)) != 0
        count = int(np.count_nonzero(bad))
        if not count:
            return []
        return [
            Finding(
                file=file,
                category="hidden_bits",
                path="(7FE0,0010)",
                how="pixels",
                detail=f"{count} of {n} samples have bits outside BitsStored {bs}/HighBit {hb}",
            )
        ]

    def _name_hits(self, part: str) -> list[str]:
        """Learned values written in one file or folder name ('_' and '.' as spaces)."""
        text = normalize(part.replace("_", " "))
        hits = []
        for s, e, i in self.text_matcher.find(text):
            value = self.texts[i]
            if self.index.values[value].kind == "uids" and _extends_uid(text, s, e):
                continue
            hits.append(value)
        return hits

    def display(self, root: Path, name: str) -> tuple[str, list[tuple[str, str]]]:
        """A file name for the report, every folder/file name that holds a value redacted.

        ``name`` is a path, or ``archive!member`` for a member of a zip/tar. Returns the
        printable name and the ``(value, 'folder'|'file')`` hits, so a patient name used as
        a folder name is reported as a finding instead of being printed.
        """
        cached = self._display_cache.get(name)
        if cached is not None:
            return cached
        disk, bang, member = name.partition("!")
        path = Path(disk)
        try:
            parts = list(path.relative_to(root).parts)
            base = root
        except ValueError:
            parts, base = list(path.parts), Path()
        n_disk = len(parts)
        parts += [p for p in member.split("/") if p] if bang else []
        shown, hits = [], []
        for j, part in enumerate(parts):
            found = self._name_hits(part)
            kind = "file" if j == len(parts) - 1 else "folder"
            hits += [(v, kind) for v in found]
            shown.append("[redacted]" if found else part)
        text = str(base.joinpath(*shown[:n_disk])) if n_disk else str(base)
        if bang:
            text += "!" + "/".join(shown[n_disk:])
        result = (text, hits)
        self._display_cache[name] = result
        return result

    def scan_file(self, item: Item | Path, report: VerifyReport, root: Path | None = None) -> None:
        """Scan one output file and add its findings (or its read error) to ``report``."""
        if isinstance(item, Path):
            item = Item(item)
        name, name_hits = self.display(root if root is not None else item.path.parent, item.name)
        for value, where in name_hits:
            kind = self.index.values[value].kind
            report.findings.append(
                self._finding(name, kind, f"({where} name)", "file-name", value, kind)
            )
        try:
            data = item.read()
        except OSError as exc:
            report.unreadable_outputs.append((name, item.error or type(exc).__name__))
            return
        ds = None
        # Only what looks like DICOM goes to pydicom (force=True would read anything).
        if looks_like_dicom(data):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(io.BytesIO(data), force=True)
            except Exception as exc:
                report.incomplete.append(f"{name} ({type(exc).__name__})")
        seen: set[tuple[str, str]] = set()
        if ds is not None:
            try:
                found, seen = self.scan_elements(name, ds)
            except Exception:  # a dataset pydicom half-reads is still byte-searched
                found = []
                report.incomplete.append(name)
            report.findings.extend(found)
            report.findings.extend(self.scan_pixels(name, ds))
        else:
            report.not_dicom.append(name)
        found, complete = self.scan_bytes(name, data, seen, ds is not None)
        report.findings.extend(found)
        if name in self.uninspectable:
            # A compressed stream past its bound: not verified, so not clean.
            report.unreadable_outputs.append((name, "cannot inspect compressed data"))
        if ds is not None and not complete and name not in report.incomplete:
            report.incomplete.append(name)


def verify_archive(
    originals: str | os.PathLike[str],
    output: str | os.PathLike[str],
    strict: bool = False,
    *,
    allow: Iterable[int | str] = (),
    engine: str = "auto",
    hash_key: bytes | None = None,
) -> VerifyReport:
    """Learn identifying values from ``originals`` and report every survivor in ``output``.

    ``allow`` names elements (keywords, ``(gggg,eeee)`` or int tags) that the policy keeps
    on purpose, e.g. StationName under Retain Device Identity: findings there are listed
    under ``allowed`` and do not make the output unclean. The values are still searched
    everywhere else.
    """
    allowed_tags = resolve_tags(allow)
    # pydicom converts values lazily and warns about non-conformant ones; a verifier reads
    # whatever it is given, so those warnings are not errors here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = _verify(Path(originals), Path(output), strict, engine, hash_key)
    if allowed_tags:
        kept = [x for x in report.findings if leaf_tag(x.path) not in allowed_tags]
        report.allowed = [x for x in report.findings if leaf_tag(x.path) in allowed_tags]
        report.findings = kept
    return report


def _verify(
    originals: Path, output: Path, strict: bool, engine: str, hash_key: bytes | None
) -> VerifyReport:
    index = learn(iter_items(originals), strict=strict)
    orig_root = originals if originals.is_dir() else originals.parent
    scanner = Scanner(
        index, strict=strict, engine=engine, hash_key=hash_key, originals_root=orig_root
    )
    report = VerifyReport(
        originals=index.originals,
        values=len(index.values),
        dates=len(index.dates),
        skipped_values=index.skipped,
        strict=strict,
        engine=scanner.engine,
        unreadable_originals=[(scanner.display(orig_root, p)[0], e) for p, e in index.unreadable],
        damaged_originals=[(scanner.display(orig_root, p)[0], e) for p, e in index.damaged],
    )
    out_root = output if output.is_dir() else output.parent
    for item in iter_items(output):
        report.outputs += 1
        scanner.scan_file(item, report, out_root)
    report.findings.sort(key=lambda f: (f.file, f.category, f.path, f.how))
    return report


__all__ = ["Scanner", "have_aho_corasick", "verify_archive"]
