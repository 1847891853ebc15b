"""The de-identification engine: apply a compiled policy to a pydicom Dataset, in place.

Every element at every depth (file meta, nested sequences, private blocks) is looked up
once in the compiled policy; elements the policy keeps are not even decoded. Replacements
are keyed (see :mod:`medveil.pseudonyms`), so the engine has no shared state and many
processes or machines give the same output for the same input and secret.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
from collections import Counter
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from medveil import __version__
from medveil.dicom.io import read_dataset, write_dataset
from medveil.dicom.keywords import CLEAN_ID_KEYWORDS, NAME_KEYWORDS, TERM_KEYWORDS
from medveil.dicom.peek import peek, raw_text
from medveil.dicom.writer import LONG_VRS
from medveil.durable import atomic_write
from medveil.policy.keys import Keyed, is_well_known_uid
from medveil.policy.schema import CompiledPolicy, Policy
from medveil.policy.standard import (
    BASIC_PROFILE_CODE,
    COMBINED_ACTIONS,
    Option,
    Rule,
    resolve_combined,
    safe_private_elements,
)

TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMBER_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "AT"})
MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "DS": 16, "IS": 12, "UC": 1 << 30}
DUMMY: dict[str, object] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UR": "urn:medveil:anonymized",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
    "AT": 0,
}
_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d %b %Y", "%b %d, %Y")


@dataclass
class DeidReport:
    """What the engine did to one dataset: actions by tag path, never values."""

    actions: Counter[str] = field(default_factory=Counter)
    taken: list[tuple[str, int, str]] = field(default_factory=list)
    date_offset_days: int = 0
    pixels: object | None = None

    def add(self, path: str, tag: int, action: str) -> None:
        """Record one action taken on element `tag` under the sequence path `path`."""
        self.actions[action] += 1
        self.taken.append((path, tag, action))

    @property
    def entries(self) -> list[tuple[str, str]]:
        """(element path, action) pairs, e.g. ('(0008,1140)[0]/(0008,1155)', 'U')."""
        return [(path + _tag_text(tag), action) for path, tag, action in self.taken]


_DICT_VR: dict[int, str | None] = {}


def _dictionary_vr(tag: int) -> str | None:
    """The tag's first dictionary VR, or None if the standard does not define it (memoised)."""
    try:
        return _DICT_VR[tag]
    except KeyError:
        pass
    try:
        vr: str | None = dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        vr = None
    if len(_DICT_VR) < 100_000:
        _DICT_VR[tag] = vr
    return vr


def _vr_of(elem: object, tag: int) -> str:
    vr = getattr(elem, "VR", None)
    if vr:
        return str(vr)
    return _dictionary_vr(int(tag)) or "UN"


def _in_dictionary(tag: int) -> bool:
    return _dictionary_vr(tag) is not None


_ASCII_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    }
)


_CLEANABLE_TEXT = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "CS"})


def _put(ds: Dataset, tag: int, raw: RawDataElement, vr: str, values: list[object]) -> None:
    """Replace an element by new values, pre-encoded when they are plain ASCII text.

    ASCII is valid in every DICOM character set, so the bytes are the same whatever the
    dataset's; such elements stay raw and the writer copies them without re-encoding.
    """
    if vr in _ASCII_VRS and all(isinstance(v, str) and v.isascii() for v in values):
        text = "\\".join(values).encode("ascii")  # type: ignore[arg-type]
        if len(text) % 2:
            text += b"\x00" if vr == "UI" else b" "
        ds._dict[tag] = RawDataElement(
            tag,
            None if raw.is_implicit_VR else vr,
            len(text),
            text,
            0,
            raw.is_implicit_VR,
            raw.is_little_endian,
            True,
            False,
        )
        return
    if not values:
        ds._dict[tag] = DataElement(tag, vr, _empty(vr))
    else:
        ds._dict[tag] = DataElement(tag, vr, values if len(values) > 1 else values[0])


def _remove(ds: Dataset, tag: int) -> None:
    # Straight from the element dict: Dataset.__delitem__ costs more than the whole
    # decision for the hundreds of private elements a file can carry.
    ds._dict.pop(tag, None)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _empty(vr: str) -> object:
    if vr == "SQ":
        return Sequence([])
    if vr in BYTES_VRS:
        return b""
    if vr in NUMBER_VRS:
        return None
    return ""


_TERM_TAGS = tuple(tag_for_keyword(k) for k in TERM_KEYWORDS)


def _values(value: object) -> list[object]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, MultiValue)) else [value]


# Files of one patient come in runs: their Clean Descriptors pattern is built once.
_CLEANERS: dict[tuple[tuple[str, ...], tuple[str, ...]], re.Pattern[str]] = {}
_TERMS: dict[tuple[object, ...], list[str]] = {}


class _PatientContext:
    """Per-dataset facts read before anything changes: offsets and identifying values."""

    def __init__(self, ds: Dataset, keyed: Keyed, policy: Policy) -> None:
        self.patient_key = str(peek(ds, 0x00100020) or "") or str(peek(ds, 0x00100010) or "")
        self.offset = keyed.date_offset(self.patient_key, policy.shift_days)
        self._policy = policy
        self._regex: re.Pattern[str] | None = None
        self._ds = ds
        # The walk may replace these elements before any text needs cleaning: keep the
        # originals (raw elements are immutable; decoded ones are copied by value).
        self._snapshot = {
            tag: e if isinstance(e, RawDataElement) else e.value
            for tag in _TERM_TAGS
            if (e := ds._dict.get(tag)) is not None
        }
        self._terms: list[str] | None = None

    @property
    def terms(self) -> list[str]:
        """The dataset's own identifying values, as text to remove from descriptions."""
        if self._terms is None:
            snapshot = self._snapshot
            key = None
            if all(
                isinstance(e, RawDataElement) and isinstance(e.value, (bytes, type(None)))
                for e in snapshot.values()
            ):
                # A patient's files carry the same values: their terms are worked out once.
                charset = self._ds._dict.get(0x00080005)
                key = (
                    None if charset is None else repr(charset.value),
                    tuple((int(t), bytes(e.value or b""), e.VR) for t, e in snapshot.items()),
                )
                terms = _TERMS.get(key)
                if terms is not None:
                    self._terms = terms
                    return terms
            self._terms = self.identifying_terms(self._original)
            if key is not None:
                if len(_TERMS) >= 256:
                    _TERMS.clear()
                _TERMS[key] = self._terms
        return self._terms

    def _original(self, keyword: str) -> object:
        item = self._snapshot.get(tag_for_keyword(keyword))
        if isinstance(item, RawDataElement):
            if item.VR not in ("UN", None) or item.is_implicit_VR:
                values = raw_text(self._ds, item)
                if values is not None:
                    return values
            return convert_raw_data_element(
                item, encoding=self._ds._character_set, ds=self._ds
            ).value
        return item

    @staticmethod
    def identifying_terms(get: Callable[[str], object]) -> list[str]:
        """Name components, IDs and birth-date spellings, from a keyword lookup."""
        terms: list[str] = []
        for kw in NAME_KEYWORDS:
            for pn in _values(get(kw)):
                for comp in re.split(r"[\^= ,]+", str(pn)):
                    if len(comp) >= 2:
                        terms.append(comp)
        for kw in CLEAN_ID_KEYWORDS:
            for v in _values(get(kw)):
                if len(str(v).strip()) >= 2:
                    terms.append(str(v).strip())
        bd = str(get("PatientBirthDate") or "")
        if len(bd) == 8 and bd.isdigit():
            try:
                d = _dt.date(int(bd[:4]), int(bd[4:6]), int(bd[6:]))
            except ValueError:
                d = None
            terms.append(bd)
            if d is not None:
                terms.extend(d.strftime(f) for f in _DATE_FORMATS[1:])
        return terms

    def cleaner(self) -> re.Pattern[str]:
        if self._regex is None:
            key = (tuple(self.terms), self._policy.clean_patterns)
            regex = _CLEANERS.get(key)
            if regex is None:
                terms = sorted(set(self.terms), key=len, reverse=True)
                parts = [r"(?<!\w)" + re.escape(t) + r"(?!\w)" for t in terms]
                parts.extend(f"(?:{p})" for p in self._policy.clean_patterns)
                regex = re.compile("|".join(parts) or r"(?!x)x", re.IGNORECASE)
                if len(_CLEANERS) >= 256:
                    _CLEANERS.clear()
                _CLEANERS[key] = regex
            self._regex = regex
        return self._regex

    def clean_text(self, text: str) -> str:
        cleaned = self.cleaner().sub(self._policy.clean_replacement, text)
        return re.sub(r"[ \t]{2,}", " ", cleaned).strip() if cleaned != text else text


class Deidentifier:
    """Applies a policy to datasets; safe to create once per process and reuse."""

    def __init__(self, policy: Policy | None = None, secret: bytes | None = None) -> None:
        if secret is None:
            raise ValueError(
                "a 32-byte project secret is required (see medveil.pseudonyms.load_secret)"
            )
        self.policy = policy or Policy.default()
        self.compiled: CompiledPolicy = self.policy.compile()
        self.keyed = Keyed(secret)
        self._safe_private = safe_private_elements() if self.compiled.retain_safe_private else {}
        self._pixels = None
        self._mark_template: Dataset | None = None
        self._mark_raw: dict[tuple[bool, bool], dict[BaseTag, RawDataElement]] = {}
        if self.policy.has(Option.CLEAN_PIXEL_DATA):
            try:
                from medveil.pixels.cleaner import PixelCleaner
                from medveil.pixels.rules import RuleSet
            except ImportError:  # pragma: no cover - pixel cleaning lands separately
                self._pixels = None
            else:
                rules = RuleSet.default()
                for extra in self.policy.pixel_rule_files:
                    rules = RuleSet(rules=rules.rules + RuleSet.load(extra).rules, meta=rules.meta)
                # Overlays hidden in unused pixel bits are removed whenever pixels are
                # cleaned: the Basic Profile removes overlay data, wherever it is stored.
                self._pixels = PixelCleaner(
                    rules,
                    allow_unmatched_burned_in=self.policy.allow_unmatched_burned_in,
                    clean_graphics=True,
                    pixel_text=self.policy.pixel_text,
                    text_mask=self.policy.pixel_mask,
                )

    # ------------------------------------------------------------------ public API
    def apply(self, ds: Dataset, *, source: str = "") -> DeidReport:
        """De-identify ds in place; the report lists actions by tag path, never values."""
        report = DeidReport()
        ctx = _PatientContext(ds, self.keyed, self.policy)
        report.date_offset_days = ctx.offset if self.compiled.shift_dates else 0
        if self._pixels is not None and "PixelData" in ds:
            # Before header changes: device rules match the original Manufacturer etc.
            report.pixels = self._pixels.clean(ds, source=source)
        self._walk(ds, ctx, report, "")
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            self._walk(meta, ctx, report, "meta")
            if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" in meta:
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        self._cap_age(ds, report)
        self._mark(ds)
        return report

    def apply_bytes(self, data: bytes, *, source: str = "<bytes>") -> tuple[bytes, DeidReport]:
        """De-identify one DICOM file given as bytes; return the new file's bytes."""
        ds = read_dataset(io.BytesIO(data), source)
        report = self.apply(ds, source=source)
        return write_dataset(ds), report

    def apply_file(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> DeidReport:
        """De-identify one file into dst (written to a temporary name, then renamed)."""
        ds = read_dataset(src, str(src))
        report = self.apply(ds, source=str(src))
        atomic_write(Path(dst), write_dataset(ds))
        return report

    # ------------------------------------------------------------------ the walk
    def _walk(self, ds: Dataset, ctx: _PatientContext, report: DeidReport, path: str) -> None:
        compiled = self.compiled
        by_tag = compiled.by_tag
        d = ds._dict
        private: list[int] = []
        # `tag` is the dataset's own key object: the element dict finds it by identity,
        # while an equal int would go through BaseTag.__eq__ in Python. The policy's
        # dicts are keyed by plain ints, so they are asked with int(tag).
        for tag in list(d.keys()):
            itag = int(tag)
            rule = by_tag.get(itag)
            if rule is None:
                group = itag >> 16
                if group & 1:
                    private.append(tag)
                    continue
                if itag & 0xFFFF == 0 and group != 2:
                    _remove(ds, tag)  # group lengths are stale after any change
                    continue
                rule = compiled.rule_for(itag)
                if rule is None:
                    self._unknown(ds, tag, ctx, report, path)
                    continue
            self._act(ds, tag, rule, ctx, report, path)
        if private:
            self._private(ds, private, ctx, report, path)

    def _unknown(
        self, ds: Dataset, tag: int, ctx: _PatientContext, report: DeidReport, path: str
    ) -> None:
        compiled = self.compiled
        if not compiled.keeps_unknown(int(tag)):
            _remove(ds, tag)
            report.add(path, tag, "X")
            return
        if not _in_dictionary(int(tag)):
            # An even tag the standard does not define is a misparse or a vendor abuse:
            # nobody can say what it holds, so it is not released.
            _remove(ds, tag)
            report.add(path, tag, "X-undefined-tag")
            return
        vr = _vr_of(ds._dict[tag], tag)
        if vr == "SQ":
            self._recurse(ds, tag, ctx, report, path)
        elif vr in ("DA", "DT") and compiled.shift_dates:
            self._shift(ds[tag], ctx, report, path, tag)

    def _recurse(
        self, ds: Dataset, tag: int, ctx: _PatientContext, report: DeidReport, path: str
    ) -> None:
        elem = ds[tag]
        if elem.VR != "SQ" or not elem.value:
            return
        base = path + _tag_text(tag)
        for i, item in enumerate(elem.value):
            self._walk(item, ctx, report, f"{base}[{i}]/")

    def _act(
        self, ds: Dataset, tag: int, rule: Rule, ctx: _PatientContext, report: DeidReport, path: str
    ) -> None:
        action = rule.action
        if action == "K":
            if _vr_of(ds._dict[tag], tag) == "SQ":
                self._recurse(ds, tag, ctx, report, path)
            return
        if action == "X":
            _remove(ds, tag)
            report.add(path, tag, "X")
            return
        raw = ds._dict[tag]
        if isinstance(raw, RawDataElement) and self._act_raw(
            ds, tag, raw, rule, action, report, path, ctx
        ):
            return
        elem = ds[tag]
        vr = elem.VR
        if action in COMBINED_ACTIONS:
            action = resolve_combined(
                action,
                vr=vr,
                in_std_comp_iod=rule.in_std_comp_iod,
                empty=elem.is_empty,
                mode=self.policy.combined_codes,
            )
            if action == "X":
                _remove(ds, tag)
                report.add(path, tag, "X")
                return
            if action == "K":
                self._recurse(ds, tag, ctx, report, path)
                return
        if action == "Z":
            elem.value = _empty(vr)
        elif action == "D":
            self._dummy(elem)
        elif action == "U":
            self._replace_uids(elem)
        elif action == "C":
            self._clean(ds, tag, elem, ctx, report, path)
        elif action == "pseudonym":
            self._pseudonym(elem, rule)
        else:
            self._policy_action(elem, rule, action, ctx)
        report.add(path, tag, action)

    def _act_raw(
        self,
        ds: Dataset,
        tag: int,
        raw: RawDataElement,
        rule: Rule,
        action: str,
        report: DeidReport,
        path: str,
        ctx: _PatientContext,
    ) -> bool:
        """Z, D and U straight from the raw bytes, without decoding the old value.

        Returns False when the element needs the general path (sequences, UN, C, ...).
        """
        vr = _vr_of(raw, tag)
        if action == "pseudonym" and vr in ("PN", "LO", "SH", "CS", "AE", "UC"):
            values = raw_text(ds, raw)
            if values is None:
                return False
            if values:
                new = self._pseudonyms(vr, rule, values)
                _put(ds, tag, raw, vr, new)
            report.add(path, tag, "pseudonym")
            return True
        if action == "C" and vr == "TM":
            report.add(path, tag, "C")  # whole-day shifts leave times of day as they were
            return True
        if action == "C" and vr in _CLEANABLE_TEXT:
            values = raw_text(ds, raw)
            if values is None:
                return False
            cleaned = [ctx.clean_text(v) for v in values]
            if cleaned != values:
                _put(ds, tag, raw, vr, cleaned)  # type: ignore[arg-type]
            # else: nothing identifying in it, and the original bytes stay as they were
            report.add(path, tag, "C")
            return True
        if action == "C" and vr in ("DA", "DT") and self.compiled.shift_dates and raw.value:
            return self._shift_raw(ds, tag, raw, vr, report, path, ctx.offset)
        if vr in ("SQ", "UN") or (action not in ("Z", "D", "U") and action not in COMBINED_ACTIONS):
            return False
        value = raw.value
        action, empty = resolve_on_bytes(action, vr, rule, value, self.policy.combined_codes)
        if action == "X":
            _remove(ds, tag)
            report.add(path, tag, "X")
            return True
        if action not in ("Z", "D", "U"):
            return False
        if action == "Z":
            _put(ds, tag, raw, vr, [])
        elif action == "D":
            if not empty:
                dummy = b"\x00\x00" if vr in BYTES_VRS else DUMMY.get(vr, "")
                _put(ds, tag, raw, vr, [dummy])
        elif vr == "UI":
            if not empty:
                _put(ds, tag, raw, "UI", self._map_uids(uids_of(value)))
        else:
            return False
        report.add(path, tag, action)
        return True

    def _shift_raw(
        self,
        ds: Dataset,
        tag: int,
        raw: RawDataElement,
        vr: str,
        report: DeidReport,
        path: str,
        offset: int,
    ) -> bool:
        """Shift a DA/DT value read straight from its (ASCII) bytes."""
        try:
            text = bytes(raw.value).decode("ascii").strip("\x00 ")
        except UnicodeDecodeError:
            return False
        _put(ds, tag, raw, vr, _shift_values(text.split("\\"), offset, vr, report, path, tag))
        report.add(path, tag, "C")
        return True

    # ------------------------------------------------------------------ actions
    def _dummy(self, elem: DataElement) -> None:
        vr = elem.VR
        if elem.is_empty:
            return  # an empty value is already free of identity, and valid for its Type
        if vr == "UI":
            self._replace_uids(elem)
        elif vr == "SQ":
            elem.value = Sequence([Dataset()])
        elif vr in BYTES_VRS:
            elem.value = b"\x00\x00"
        else:
            elem.value = DUMMY.get(vr, "")

    def _replace_uids(self, elem: DataElement) -> None:
        if elem.VR != "UI" or elem.is_empty:
            if elem.VR not in ("UI", "SQ") and not elem.is_empty:
                elem.value = _empty(elem.VR)
            return
        value = elem.value
        if isinstance(value, (list, MultiValue)):
            elem.value = self._map_uids([str(v) for v in value])
        else:
            elem.value = self._map_uids([str(value)])[0]

    def _map_uids(self, uids: list[str]) -> list[str]:
        """Keyed replacements for UIDs; well-known ones (SOP classes, ...) stay as they are."""
        return [u if is_well_known_uid(u) else self.keyed.uid(u) for u in uids]

    def _pseudonym(self, elem: DataElement, rule: Rule) -> None:
        if elem.is_empty:
            return
        value = elem.value
        values = list(value) if isinstance(value, (list, MultiValue)) else [value]
        new = self._pseudonyms(elem.VR, rule, values)
        elem.value = new if isinstance(value, (list, MultiValue)) else new[0]

    def _pseudonyms(self, vr: str, rule: Rule, values: list[object]) -> list[str]:
        """Keyed pseudonyms for the values of one element, sized for its VR."""
        kind = {
            "PatientID": "patient",
            "OtherPatientIDs": "patient",
            "IssuerOfPatientID": "issuer",
        }.get(rule.keyword, rule.keyword or rule.selector)
        prefix = self.policy.pseudonym_prefix
        length = self.policy.pseudonym_length
        limit = MAX_LEN.get(vr, 64)
        if len(prefix) + length > limit:
            prefix, length = "", min(length, limit)

        out = []
        for v in values:
            text = str(v).strip()
            out.append(self.keyed.pseudonym(kind, text, length, prefix) if text else "")
        return out

    def _clean(
        self,
        ds: Dataset,
        tag: int,
        elem: DataElement,
        ctx: _PatientContext,
        report: DeidReport,
        path: str,
    ) -> None:
        vr = elem.VR
        if vr == "SQ":
            self._recurse(ds, tag, ctx, report, path)
        elif vr in ("DA", "DT"):
            if self.compiled.shift_dates:
                self._shift(elem, ctx, report, path, tag)
            elif not self.compiled.full_dates:
                elem.value = _empty(vr)
        elif vr == "TM":
            pass  # whole-day shifts leave times of day as they were
        elif vr == "AE":
            self._pseudonym(elem, Rule(_tag_text(tag), "AE", "pseudonym", "clean"))
        elif vr in TEXT_VRS:
            value = elem.value
            if isinstance(value, (list, MultiValue)):
                elem.value = [ctx.clean_text(str(v)) for v in value]
            elif value is not None:
                elem.value = ctx.clean_text(str(value))
        else:
            # Binary or numeric values cannot be cleaned of text reliably: empty them.
            elem.value = _empty(vr)

    def _shift(
        self, elem: DataElement, ctx: _PatientContext, report: DeidReport, path: str, tag: int
    ) -> None:
        if elem.is_empty:
            return
        value = elem.value
        values = list(value) if isinstance(value, (list, MultiValue)) else [value]
        out = _shift_values([str(v) for v in values], ctx.offset, elem.VR, report, path, tag)
        elem.value = out if len(out) > 1 else out[0]

    def _policy_action(
        self, elem: DataElement, rule: Rule, action: str, ctx: _PatientContext
    ) -> None:
        from medveil.engine import generalize

        rng_for = None
        if action == "noise":
            from medveil.privacy.dp import keyed_rng

            # The same value of the same patient gets the same noise in every image, so
            # averaging a patient's copies cannot remove it (the value costs epsilon once).
            key = self.keyed.digest("noise-key", b"")
            tag_text = _tag_text(int(elem.tag))

            def rng_for(value: float) -> object:
                return keyed_rng(key, ctx.patient_key, tag_text, repr(float(value)))

        generalize.apply(elem, rule, action, rng_for=rng_for)

    def _private(
        self, ds: Dataset, tags: list[int], ctx: _PatientContext, report: DeidReport, path: str
    ) -> None:
        creators: dict[tuple[int, int], str] = {}
        for tag in tags:
            elem_no = tag & 0xFFFF
            if 0x0010 <= elem_no <= 0x00FF:
                value = ds[tag].value
                creators[(tag >> 16, elem_no)] = (
                    value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
                ).strip()
        plan = plan_private(tags, creators, self.compiled.private_overrides, self._safe_private)
        for tag, decision, rule in plan:
            if decision == "X":
                _remove(ds, tag)
                report.add(path, tag, "X")
            elif decision == "act":
                self._act(ds, tag, rule, ctx, report, path)  # type: ignore[arg-type]
            elif decision == "K-safe-private":
                report.add(path, tag, decision)
        # pydicom caches private blocks by creator; elements were removed behind its back.
        blocks = getattr(ds, "_private_blocks", None)
        if blocks:
            blocks.clear()

    # ------------------------------------------------------------------ finishing
    def _cap_age(self, ds: Dataset, report: DeidReport) -> None:
        age = ds.get("PatientAge")
        if not age:
            return
        m = re.fullmatch(r"(\d{3})([DWMY])", str(age).strip())
        if m is None:
            ds.PatientAge = ""
            report.add("", 0x00101010, "age-unparseable-emptied")
            return
        n, unit = int(m.group(1)), m.group(2)
        years = n / {"D": 365.25, "W": 52.18, "M": 12, "Y": 1}[unit]
        if years > 89:
            # HIPAA Safe Harbor: ages over 89 are aggregated into one category.
            ds.PatientAge = "090Y"
            report.add("", 0x00101010, "age-capped")

    def _marks(self) -> Dataset:
        """The elements that say how this dataset was de-identified (built once)."""
        if self._mark_template is None:
            policy = self.policy
            applied = [
                o
                for o in Option
                if policy.has(o) and (o is not Option.CLEAN_PIXEL_DATA or self._pixels)
            ]
            marks = Dataset()
            marks.PatientIdentityRemoved = "YES"
            # LO is limited to 64 characters per value, so each part is its own value.
            marks.DeidentificationMethod = [
                f"medveil {__version__}",
                "DICOM PS3.15 E.1 Basic Application Confidentiality Profile",
                *(o.meaning for o in applied),
            ]
            codes = []
            for value, meaning in [BASIC_PROFILE_CODE, *((o.code, o.meaning) for o in applied)]:
                item = Dataset()
                item.CodeValue = value
                item.CodingSchemeDesignator = "DCM"
                item.CodeMeaning = meaning
                codes.append(item)
            marks.DeidentificationMethodCodeSequence = Sequence(codes)
            if policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
                marks.LongitudinalTemporalInformationModified = "MODIFIED"
            elif policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES):
                marks.LongitudinalTemporalInformationModified = "UNMODIFIED"
            else:
                marks.LongitudinalTemporalInformationModified = "REMOVED"
            self._mark_template = marks
        return self._mark_template

    def _mark(self, ds: Dataset) -> None:
        encoding = getattr(ds, "original_encoding", (None, None))
        if None in encoding:
            for elem in self._marks():
                ds[elem.tag] = deepcopy(elem)
            return
        raw = self._mark_raw.get(encoding)
        if raw is None:
            raw = self._mark_raw[encoding] = encode_raw(self._marks(), *encoding)
        # Pre-encoded: the writer copies these bytes instead of encoding them per file.
        ds._dict.update(raw)


def encode_raw(ds: Dataset, implicit: bool, little: bool) -> dict[BaseTag, RawDataElement]:
    """Encode each top-level element of ds once, as RawDataElements for that encoding."""
    out: dict[BaseTag, RawDataElement] = {}
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = False
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
        write_data_element(fp, elem)
        data = fp.getvalue()
        header = 8 if implicit or elem.VR not in LONG_VRS else 12
        value = data[header:]
        out[elem.tag] = RawDataElement(
            elem.tag,
            None if implicit else elem.VR,
            len(value),
            value,
            0,
            implicit,
            little,
            True,
            False,
        )
    return out


def plan_private(
    tags: list[int],
    creators: dict[tuple[int, int], str],
    overrides: dict[tuple[str, int, int], Rule],
    safe: dict,
) -> list[tuple[int, str, Rule | None]]:
    """What happens to each private element of one dataset, in the order it is reported.

    Decisions: "X" (removed), "act" (the policy's rule for it applies), "keep" (the
    policy keeps it), "K-safe-private" (kept by Retain Safe Private), "creator" (the
    creator of a block that keeps something). Data elements come first, then the low ones.
    """
    plan: list[tuple[int, str, Rule | None]] = []
    keep_blocks: set[tuple[int, int]] = set()
    for tag in tags:
        group, elem_no = tag >> 16, tag & 0xFFFF
        if elem_no < 0x1000:
            continue  # creators (and stray low elements) are decided below
        block = elem_no >> 8
        creator = creators.get((group, block))
        key = (creator or "", group, elem_no & 0xFF)
        rule = overrides.get(key) if creator is not None else None
        if rule is not None:
            if rule.action == "X":
                plan.append((tag, "X", None))
                continue
            keep_blocks.add((group, block))
            plan.append((tag, "keep" if rule.action == "K" else "act", rule))
            continue
        if creator is not None and key in safe:
            keep_blocks.add((group, block))
            plan.append((tag, "K-safe-private", None))
            continue
        plan.append((tag, "X", None))
    for tag in tags:
        group, elem_no = tag >> 16, tag & 0xFFFF
        if elem_no >= 0x1000:
            continue
        if 0x0010 <= elem_no <= 0x00FF and (group, elem_no) in keep_blocks:
            plan.append((tag, "creator", None))
            continue
        plan.append((tag, "X", None))
    return plan


def resolve_on_bytes(
    action: str, vr: str, rule: Rule, value: bytes | memoryview | None, mode: str
) -> tuple[str, bool]:
    """What Z, D, U or a combined code comes to on a raw value, and whether that is empty."""
    empty = not value or not bytes(value).strip(b"\x00 ")
    if action in COMBINED_ACTIONS:
        action = resolve_combined(
            action, vr=vr, in_std_comp_iod=rule.in_std_comp_iod, empty=empty, mode=mode
        )
    if action == "D" and vr == "UI":
        action = "U"  # a dummy UID would be one shared by every file: map it instead
    return action, empty


def uids_of(value: bytes | memoryview) -> list[str]:
    """The UIDs of a raw UI value."""
    return bytes(value).decode("ascii", "replace").strip("\x00 ").split("\\")


def _shift_values(
    values: list[str], days: int, vr: str, report: DeidReport, path: str, tag: int
) -> list[str]:
    """Shift each DA/DT value; one that cannot be parsed cannot be shifted for sure and is
    emptied (and reported)."""
    out = []
    for v in values:
        shifted = shift_date_value(v, days, vr)
        if shifted is None:
            report.add(path, tag, "date-unparseable-emptied")
            shifted = ""
        out.append(shifted)
    return out


def shift_date_value(value: str, days: int, vr: str) -> str | None:
    """Shift one DA or DT value (or a 'from-to' range) by whole days; None if unparseable."""
    value = value.strip()
    if not value:
        return value
    if "-" in value and vr == "DA":
        parts = value.split("-")
        if len(parts) == 2:
            shifted = [shift_date_value(p, days, vr) if p else "" for p in parts]
            return None if None in shifted else "-".join(s or "" for s in shifted)
    head = value[:8]
    if not head.isdigit():
        return None
    if len(value) < 8 and vr == "DT":
        # Year (or year-month) precision: shift a mid-period day and keep the precision.
        year = int(value[:4]) if value[:4].isdigit() else None
        if year is None:
            return None
        month = int(value[4:6]) if len(value) >= 6 and value[4:6].isdigit() else 7
        try:
            d = _dt.date(year, month, 15) + _dt.timedelta(days=days)
        except ValueError:
            return None
        return d.strftime("%Y%m%d")[: len(value)]
    try:
        d = _dt.date(int(head[:4]), int(head[4:6]), int(head[6:8])) + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    if vr == "DA" and len(value) != 8:
        return None
    return f"{d.year:04d}{d.month:02d}{d.day:02d}" + value[8:]
