"""The Dataset engine: apply a compiled policy to a pydicom Dataset, in place.

Every element at every depth (file meta, nested sequences, private blocks) is decided by
:mod:`medveil.engine.decide`, the layer the raw-byte engine asks too; this module only
reads values out of pydicom elements and writes the answers back. Elements the policy
keeps are not even decoded. Replacements are keyed (see :mod:`medveil.policy.keys`), so
the engine has no shared state and many processes or machines give the same output.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from copy import deepcopy
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.values import convert_SQ

from medveil import __version__
from medveil.dicom.io import read_dataset, write_dataset
from medveil.dicom.peek import decode_text
from medveil.dicom.pydicom_private import (
    character_set,
    elements,
    forget_private_blocks,
    raw_element,
)
from medveil.dicom.strict import check_structure
from medveil.dicom.vr import LONG_VRS
from medveil.dicom.writer import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from medveil.durable import atomic_write
from medveil.engine import decide
from medveil.engine.decide import (
    BYTES_VRS,
    DUMMY,
    MAX_LEN,
    NUMBER_VRS,
    TEXT_VRS,
    Decider,
    Decision,
    DeidReport,
    PatientContext,
    dictionary_vr,
    is_empty,
    plan_private,
    shift_date_value,
    tag_text,
    uids_of,
    vr_conflict,
    zero_value,
)
from medveil.engine.postcheck import Allowance, check_written, learn_terms, policy_allowance
from medveil.policy.keys import Keyed
from medveil.policy.schema import CompiledPolicy, Policy
from medveil.policy.standard import BASIC_PROFILE_CODE, Option, Rule

if TYPE_CHECKING:
    from medveil.pixels.cleaner import PixelReport

__all__ = [
    "BYTES_VRS",
    "DUMMY",
    "MAX_LEN",
    "NUMBER_VRS",
    "TEXT_VRS",
    "DeidReport",
    "Deidentifier",
    "encode_raw",
    "pixel_marks",
    "plan_private",
    "shift_date_value",
    "uids_of",
]

_ASCII_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC"}
    | {"UI", "UR", "UT"}
)


def _vr_of(elem: object, tag: int) -> str:
    """An element's VR; the dictionary's for an Implicit VR raw element."""
    vr = getattr(elem, "VR", None)
    if vr and vr != "UN":
        return str(vr)
    # Implicit VR, or UN: pydicom reads the value with the dictionary's VR.
    return dictionary_vr(tag) or "UN"


def _raw_element(tag: BaseTag, vr: str, value: bytes, like: RawDataElement) -> RawDataElement:
    """A raw element holding `value`, encoded like the element `like` was."""
    implicit = like.is_implicit_VR
    vr_or_none = None if implicit else vr
    return raw_element(
        tag, vr_or_none, len(value), value, implicit=implicit, little=like.is_little_endian
    )


def _put(ds: Dataset, tag: BaseTag, old: object, vr: str, values: list[str]) -> None:
    """Replace an element by new text values, pre-encoded when they are plain ASCII.

    ASCII is valid in every DICOM character set, so the bytes are the same whatever the
    dataset's; such elements stay raw and the writer copies them without re-encoding.
    """
    if isinstance(old, RawDataElement) and vr in _ASCII_VRS and "".join(values).isascii():
        text = "\\".join(values).encode("ascii")
        if len(text) % 2:
            text += b"\x00" if vr == "UI" else b" "
        elements(ds)[tag] = _raw_element(tag, vr, text, old)
    elif not values:
        elements(ds)[tag] = DataElement(tag, vr, _empty(vr))
    else:
        elements(ds)[tag] = DataElement(tag, vr, values if len(values) > 1 else values[0])


def dummy_zeros(tag: int, vr: str) -> bytes:
    """The bytes of a binary element's dummy inside a dummy item: as many zeros as its
    dictionary VM asks at least (Graphic Data, FL 2-n: two), one for OB, OW and the like."""
    zero = zero_value(vr)
    return zero * decide.dummy_count(tag) if vr in decide.NUMBER_SIZES else zero


def _zero(ds: Dataset, tag: BaseTag, vr: str, old: object, zeros: bytes | None = None) -> None:
    """Replace an element by one zero value of its (binary) VR, or by ``zeros`` (its bytes)."""
    zeros = zero_value(vr) if zeros is None else zeros
    if isinstance(old, RawDataElement):
        elements(ds)[tag] = _raw_element(tag, vr, zeros, old)
    elif vr in BYTES_VRS:
        elements(ds)[tag] = DataElement(tag, vr, b"\x00\x00")
    else:
        count = len(zeros) // len(zero_value(vr))
        elements(ds)[tag] = DataElement(tag, vr, 0 if count == 1 else [0] * count)


def _remove(ds: Dataset, tag: BaseTag) -> None:
    # Straight from the element dict: Dataset.__delitem__ costs more than the whole
    # decision for the hundreds of private elements a file can carry.
    elements(ds).pop(tag, None)


def _empty(vr: str) -> object:
    if vr == "SQ":
        return Sequence([])
    if vr in BYTES_VRS:
        return b""
    if vr in NUMBER_VRS:
        return None
    return ""


def _listed(value: object) -> list[object]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, MultiValue, Sequence)) else [value]


def _charsets(ds: Dataset) -> str | list[str]:
    """The dataset's character sets, worked out once per dataset object.

    pydicom works them out from SpecificCharacterSet on every read; text is decoded with
    the input's character sets, so the first answer holds for the whole walk.
    """
    state = ds.__dict__
    found: str | list[str] | None = state.get(_CHARSETS_KEY)
    if found is None:
        found = state[_CHARSETS_KEY] = character_set(ds)
    return found


_CHARSETS_KEY = "_medveil_charsets"


def _text(ds: Dataset, tag: BaseTag) -> list[str]:
    """An element's values as text, decoded without storing the decoded element in ds."""
    elem = elements(ds)[tag]
    if isinstance(elem, RawDataElement):
        charsets = _charsets(ds)
        value = elem.value
        if (elem.VR not in ("UN", None) or elem.is_implicit_VR) and isinstance(value, bytes):
            codec = charsets if isinstance(charsets, str) else None
            if codec is None and len(charsets) == 1:
                codec = charsets[0]
            values = None if codec is None else decode_text(value, codec)
            if values is not None:
                return values
        elif value is None:
            return []
        elem = convert_raw_data_element(elem, encoding=charsets, ds=ds)
    return [str(v) for v in _listed(elem.value)]


def _is_empty(ds: Dataset, tag: BaseTag, elem: object, vr: str) -> bool:
    if vr == "SQ":
        return not ds[tag].value
    if isinstance(elem, RawDataElement):
        return is_empty(elem.value)
    return bool(getattr(elem, "is_empty", True))


def _names(ds: Dataset, out: list[str]) -> list[str]:
    """Every PN value of ds at every depth (items included), decoded."""
    for tag, elem in elements(ds).items():
        vr = elem.VR
        if not vr or vr == "UN":
            vr = _vr_of(elem, int(tag))
        if vr == "PN":
            out.extend(_text(ds, tag))
        elif vr == "SQ":
            for item in ds[tag].value or ():
                _names(item, out)
    return out


def _identity(ds: Dataset) -> decide.Identity:
    """The file's identifying values, read now (the walk changes them)."""
    return decide.identity_of(lambda kw: _keyword_text(ds, kw), _names(ds, []))


def _keyword_text(ds: Dataset, keyword: str) -> list[str]:
    tag = _KEYWORD_TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        tag = _KEYWORD_TAGS[keyword] = BaseTag(found if found is not None else 0xFFFFFFFF)
    elem = elements(ds).get(tag)
    if elem is None or _vr_of(elem, tag) == "SQ":
        return []
    return _text(ds, tag)


_KEYWORD_TAGS: dict[str, BaseTag] = {}
_AGE_TAG = BaseTag(0x00101010)
_SCHEME_TAG = BaseTag(decide.CODING_SCHEME)
_MEANING_TAG = BaseTag(decide.CODE_MEANING)


def _written(ds: Dataset, tag: BaseTag) -> tuple[str | None, bytes | None]:
    """(VR written in the file or None for Implicit VR, raw value or None for a sequence).

    What Retain Safe Private judges a listed private element by. A sequence (read as one,
    whatever the file's VR) is ("SQ", None); an element made in memory is encoded as an
    Explicit VR Little Endian file would hold it.
    """
    elem = elements(ds)[tag]
    if isinstance(elem, RawDataElement):
        if elem.VR == "SQ":
            return "SQ", None
        return elem.VR, bytes(elem.value or b"")
    if elem.VR == "SQ":
        return "SQ", None
    implicit = getattr(ds, "original_encoding", (None, None))[0] is True
    return (None if implicit else elem.VR), _value_bytes(elem)


def _value_bytes(elem: DataElement) -> bytes:
    """An in-memory element's value bytes, encoded as Explicit VR Little Endian."""
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    write_data_element(fp, elem)
    data = fp.getvalue()
    return data[12:] if elem.VR in LONG_VRS else data[8:]


def _as_sequence(ds: Dataset, tag: BaseTag) -> bool:
    """Make element `tag` of ds a sequence of its items; False when its value is not items.

    A value without a VR in the file (Implicit VR, or UN) is read as Implicit VR Little
    Endian items, the encoding of both, only when the project's structure check accepts it
    as exactly a list of items: a name written there is no sequence.
    """
    elem = elements(ds)[tag]
    if elem.VR == "SQ":
        return True
    value = elem.value
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return False
    data = bytes(value)
    if data and not _items_parse(data):
        return False
    charsets = _charsets(ds)
    try:
        seq = convert_SQ(data, True, True, [charsets] if isinstance(charsets, str) else charsets)
    except Exception:
        return False
    elements(ds)[tag] = DataElement(tag, "SQ", seq)
    return True


_IMPLICIT_META = (
    b"\x02\x00\x10\x00UI\x12\x001.2.840.10008.1.2\x00"  # Transfer Syntax: Implicit VR LE
)


def _items_parse(value: bytes) -> bool:
    """True when bytes are exactly a list of well-formed Implicit VR LE sequence items."""
    if value[:4] != b"\xfe\xff\x00\xe0":
        return False
    meta = b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<L", len(_IMPLICIT_META)) + _IMPLICIT_META
    # One sequence (Referenced Series Sequence, a dictionary SQ) holding the value.
    body = struct.pack("<HHL", 0x0008, 0x1115, len(value)) + value
    try:
        check_structure(b"\x00" * 128 + b"DICM" + meta + body)
    except Exception:
        return False
    return True


def _rule_tag(rule: Rule) -> int:
    """The tag a rule names, or 0 for a mask or a keyword-less selector."""
    tag = tag_for_keyword(rule.keyword) if rule.keyword else None
    return int(tag) if tag is not None else 0


class Deidentifier:
    """Applies a policy to datasets; safe to create once per process and reuse."""

    def __init__(self, policy: Policy | None, secret: bytes) -> None:
        """Compile ``policy`` (the default one if None) for the 32-byte project ``secret``.

        The secret is required: replacements are keyed by it, so a run without the
        project's own secret could not be repeated or linked (ValueError otherwise).
        """
        if not isinstance(secret, (bytes, bytearray)):
            raise ValueError(
                "a 32-byte project secret is required (see medveil.policy.keys.load_secret)"
            )
        self.policy = policy or Policy.default()
        self.compiled: CompiledPolicy = self.policy.compile()
        self.keyed = Keyed(secret)
        # What the policy keeps on purpose, for every post-check of this engine's outputs.
        self.allowance: Allowance = policy_allowance(self.compiled)
        self.decider = Decider(self.policy, self.keyed)
        # Text cleaning reads the file's identity: only then is it read before the walk.
        self._reads_identity = self.decider.cleans_code_meaning or any(
            r.action == "C" and dictionary_vr(_rule_tag(r)) not in ("DA", "DT", "TM")
            for r in (*self.compiled.rules(), *self.decider.by_tag.values())
        )
        self._pixels = None
        self._dummies: dict[tuple[int, str, bool, bool, bool], RawDataElement] = {}
        self._mark_templates: dict[bool, Dataset] = {}
        self._mark_raw: dict[tuple[bool, bool, bool], dict[BaseTag, RawDataElement]] = {}
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

    @property
    def pixels(self) -> object | None:
        """The pixel cleaner (None when the policy does not clean pixel data)."""
        return self._pixels

    # ------------------------------------------------------------------ public API
    def apply(self, ds: Dataset, *, source: str = "", check: bool = True) -> DeidReport:
        """De-identify ds in place; the report lists actions by tag path, never values.

        Post-checked like ``medveil deid``: the dataset as given is encoded once to learn
        its identifying values, and the result once to search for them; a result that is
        not clean for sure raises :class:`~medveil.errors.QuarantineError` (ds is then
        changed but must not be released). The preamble is zeroed and the file meta names
        medveil as the writer, so ``ds.save_as`` keeps neither from the source.
        ``check=False`` skips the two encodings, for callers that check the bytes they
        write themselves (as :meth:`apply_bytes` and the archive pipeline do).
        """
        terms = learn_terms(write_dataset(deepcopy(ds))) if check else None
        report = self._apply(ds, source)
        if terms is not None:
            check_written(write_dataset(deepcopy(ds)), terms, self.allowance)
        return report

    def _apply(self, ds: Dataset, source: str) -> DeidReport:
        """The walk of :meth:`apply`, without its post-check."""
        report = DeidReport()
        ctx = self.context(ds)
        report.date_offset_days = ctx.offset if self.compiled.shift_dates else 0
        if self._pixels is not None and any(k in ds for k in _PIXEL_KEYWORDS):
            # Before header changes: device rules match the original Manufacturer etc.
            report.pixels = self._pixels.clean(ds, source=source)
        elif any(k in ds for k in _PIXEL_KEYWORDS):
            from medveil.pixels.sidebytes import strip_beside_image

            # Without Clean Pixel Data too: metadata beside the image is not the image.
            strip_beside_image(ds)
        self._walk(ds, ctx, report, "")
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            self._walk(meta, ctx, report, "meta")
            if "SOPInstanceUID" in ds and "MediaStorageSOPInstanceUID" in meta:
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        self._cap_age(ds, report)
        # After the walk, so that allow-list mode does not remove it again.
        value, clean_pixels = pixel_marks(report)
        if value is not None:
            ds.BurnedInAnnotation = value
        self._mark(ds, clean_pixels)
        _writer_identity(ds)
        return report

    def apply_bytes(self, data: bytes, *, source: str = "<bytes>") -> tuple[bytes, DeidReport]:
        """De-identify one DICOM file given as bytes; return the new file's bytes.

        Post-checked like ``medveil deid``: the input's structure is validated, its
        identifying values learned, and the written bytes searched for them; raises
        :class:`~medveil.errors.QuarantineError` (or StructureError) instead of returning
        a file that is not clean for sure.
        """
        ds = read_dataset(io.BytesIO(data), source)  # validates the structure first
        terms = learn_terms(data)  # before apply: the input as it was
        report = self._apply(ds, source)
        out = write_dataset(ds)
        check_written(out, terms, self.allowance)
        return out, report

    def apply_file(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> DeidReport:
        """De-identify one file into dst (written to a temporary name, then renamed).

        Post-checked as :meth:`apply_bytes` is: nothing is written to dst unless the
        output passes (QuarantineError otherwise).
        """
        data = Path(src).read_bytes()
        ds = read_dataset(io.BytesIO(data), str(src))  # validates the structure first
        terms = learn_terms(data)
        report = self._apply(ds, str(src))
        out = write_dataset(ds)
        check_written(out, terms, self.allowance)
        atomic_write(Path(dst), out)
        return report

    def context(self, ds: Dataset) -> PatientContext:
        """The patient context of ds, read before anything in it changes."""
        values: Callable[[str], list[str]] = lambda kw: _keyword_text(ds, kw)  # noqa: E731
        if self._reads_identity:
            identity = _identity(ds)
            return self.decider.context(values, lambda: identity)
        return self.decider.context(values, lambda: _identity(ds))

    # ------------------------------------------------------------------ the walk
    def _walk(self, ds: Dataset, ctx: PatientContext, report: DeidReport, path: str) -> None:
        decider = self.decider
        by_tag = decider.by_tag
        # A local code's meaning is judged by the item's coding scheme as the input has it.
        scheme: list[str] | None = None
        d = elements(ds)
        meanings = decider.cleans_code_meaning and _MEANING_TAG in d
        if meanings and _SCHEME_TAG in d:
            scheme_elem = d[_SCHEME_TAG]
            if _vr_of(scheme_elem, decide.CODING_SCHEME) == "SH":  # else: not trusted
                scheme = _text(ds, _SCHEME_TAG)
        private: list[BaseTag] = []
        # `tag` is the dataset's own key object: the element dict finds it by identity,
        # while an equal int would go through BaseTag.__eq__ in Python. The policy's
        # dicts are keyed by plain ints, so they are asked with int(tag).
        for tag in list(d.keys()):
            itag = int(tag)
            rule = by_tag.get(itag)
            if rule is None:
                if itag >> 16 & 1:  # the common route of a rule-less tag, without a call
                    private.append(tag)
                    continue
                route, rule = decider.rule(itag)
                if route is decide.ROUTE_PRIVATE:
                    private.append(tag)
                    continue
                if route is decide.ROUTE_DROP:
                    _remove(ds, tag)
                    continue
            elem = d[tag]
            vr = _vr_of(elem, itag)
            if rule is None:
                empty = vr in ("DA", "DT") and _is_empty(ds, tag, elem, vr)
                decision = decider.unknown(itag, vr, empty, partial(_text, ds, tag), ctx)
            elif itag == decide.CODE_MEANING and meanings:
                empty = rule.action not in ("K", "X") and _is_empty(ds, tag, elem, vr)
                text = partial(_text, ds, tag)
                decision = decider.code_meaning(vr, rule, scheme, empty, text, ctx)
            elif rule.action == "K" and vr not in ("SQ", "AS") and not vr_conflict(itag, vr):
                continue  # kept as it is: the common case (an age is capped)
            else:
                # Emptiness is read only where the answer depends on it.
                empty = rule.action not in ("K", "X") and _is_empty(ds, tag, elem, vr)
                decision = decider.act(itag, vr, rule, empty, partial(_text, ds, tag), ctx)
            self._do(ds, tag, vr, decision, ctx, report, path, rule)
        if private:
            self._private(ds, private, ctx, report, path)

    def _do(
        self,
        ds: Dataset,
        tag: BaseTag,
        vr: str,
        decision: Decision,
        ctx: PatientContext,
        report: DeidReport,
        path: str,
        rule: Rule | None,
    ) -> None:
        """Carry out one decision on element `tag` of ds."""
        kind = decision.kind
        old = elements(ds)[tag]
        if kind is decide.KIND_REMOVE:
            _remove(ds, tag)
        elif kind is decide.KIND_KEEP:
            if vr == "SQ":
                self._recurse(ds, tag, ctx, report, path)
        elif kind is decide.KIND_PUT:
            _put(ds, tag, old, vr, list(decision.values))
        elif kind is decide.KIND_EMPTY and vr == "SQ":
            ds[tag].value = Sequence([])  # keeps how its length was encoded
        elif kind is decide.KIND_EMPTY:
            _put(ds, tag, old, vr, [])
        elif kind is decide.KIND_ZERO:
            _zero(ds, tag, vr, old)
        elif kind is decide.KIND_DUMMY_ITEMS:
            for item in ds[tag].value:
                self._dummy_item(item)
        else:
            self._policy_action(ds[tag], rule, decision.report, ctx)  # type: ignore[arg-type]
        report.record(path, tag, decision)

    def _recurse(
        self, ds: Dataset, tag: BaseTag, ctx: PatientContext, report: DeidReport, path: str
    ) -> None:
        elem = ds[tag]
        if elem.VR != "SQ" or not elem.value:
            return
        base = path + tag_text(tag)
        for i, item in enumerate(elem.value):
            self._walk(item, ctx, report, f"{base}[{i}]/")

    def _dummy_item(self, item: Dataset) -> None:
        """An item of a sequence whose action is D: every value becomes its VR's dummy."""
        decider = self.decider
        cache = self._dummies
        d = elements(item)
        for tag in list(d.keys()):
            itag = int(tag)
            elem = d[tag]
            vr = _vr_of(elem, itag)
            empty = _is_empty(item, tag, elem, vr)
            key = None
            if isinstance(elem, RawDataElement):
                # Most dummies depend on the tag, VR and encoding alone: made once.
                key = (itag, vr, elem.is_implicit_VR, elem.is_little_endian, empty)
                done = cache.get(key)
                if done is not None:
                    d[tag] = done
                    continue
            decision = decider.dummy_item_element(itag, vr, empty, partial(_text, item, tag))
            kind = decision.kind
            if kind is decide.KIND_REMOVE:
                _remove(item, tag)
            elif kind is decide.KIND_PUT:
                _put(item, tag, elem, vr, list(decision.values))
                new = d[tag]
                if (
                    key is not None
                    and decider.dummy_is_fixed(itag, vr)
                    and isinstance(new, RawDataElement)
                ):
                    if len(cache) < 4096:
                        cache[key] = new
            elif kind is decide.KIND_ZERO:
                _zero(item, tag, vr, elem, dummy_zeros(tag, vr))
            elif kind is decide.KIND_DUMMY_ITEMS:
                for sub in item[tag].value:
                    self._dummy_item(sub)
        forget_private_blocks(item)

    def _policy_action(
        self, elem: DataElement, rule: Rule, action: str, ctx: PatientContext
    ) -> None:
        from medveil.engine import generalize

        rng_for = None
        if action == "noise":
            from medveil.privacy.dp import keyed_rng

            # The same value of the same patient gets the same noise in every image, so
            # averaging a patient's copies cannot remove it (the value costs epsilon once).
            key = self.keyed.digest("noise-key", b"")
            tag_name = tag_text(int(elem.tag))

            def rng_for(value: float) -> object:
                return keyed_rng(key, ctx.patient_key, tag_name, repr(float(value)))

        generalize.apply(elem, rule, action, rng_for=rng_for)

    def _private(
        self, ds: Dataset, tags: list[BaseTag], ctx: PatientContext, report: DeidReport, path: str
    ) -> None:
        creators: dict[tuple[int, int], str] = {}
        for tag in tags:
            elem_no = tag & 0xFFFF
            if 0x0010 <= elem_no <= 0x00FF:
                value = ds[tag].value
                creators[(tag >> 16, elem_no)] = (
                    value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
                ).strip()
        plan = self.decider.plan_private(tags, creators, partial(_written, ds))
        for tag, verdict, rule in plan:
            if verdict is decide.VERDICT_REMOVE or (verdict is decide.VERDICT_ACT and rule is None):
                _remove(ds, tag)
                report.add(path, tag, "X")
            elif verdict is decide.VERDICT_NOT_SAFE:
                _remove(ds, tag)
                report.add(path, tag, verdict.value)
            elif verdict is decide.VERDICT_SAFE_RECURSE:
                if _as_sequence(ds, tag):
                    self._recurse(ds, tag, ctx, report, path)
                    report.add(path, tag, verdict.value)
                else:
                    _remove(ds, tag)
                    report.add(path, tag, decide.VERDICT_NOT_SAFE.value)
            elif verdict is decide.VERDICT_ACT and rule is not None:
                itag = int(tag)
                elem = elements(ds)[tag]
                vr = _vr_of(elem, itag)
                empty = _is_empty(ds, tag, elem, vr)
                text = partial(_text, ds, tag)
                decision = self.decider.act(itag, vr, rule, empty, text, ctx)
                self._do(ds, tag, vr, decision, ctx, report, path, rule)
            elif verdict is decide.VERDICT_SAFE:
                report.add(path, tag, verdict.value)
            if verdict is decide.VERDICT_SAFE or verdict is decide.VERDICT_KEEP:
                # A kept private age is capped like any other (an explicit AS only).
                elem = elements(ds)[tag]
                if _vr_of(elem, int(tag)) == "AS":
                    capped = decide.capped_age(partial(_text, ds, tag))
                    if capped is not decide.KEEP:
                        self._do(ds, tag, "AS", capped, ctx, report, path, None)
        # pydicom caches private blocks by creator; elements were removed behind its back.
        forget_private_blocks(ds)

    # ------------------------------------------------------------------ finishing
    def _cap_age(self, ds: Dataset, report: DeidReport) -> None:
        if _AGE_TAG not in elements(ds):
            return
        capped = decide.cap_age("\\".join(_text(ds, _AGE_TAG)))
        if capped is not None:
            ds.PatientAge = capped[0]
            report.add("", 0x00101010, capped[1])

    def marks(self, clean_pixels: bool = False) -> Dataset:
        """The elements that say how a dataset was de-identified (built once per kind).

        ``clean_pixels``: the Clean Pixel Data Option held for the file (see
        :func:`pixel_marks`), so the option and its code 113101 are listed.
        """
        marks = self._mark_templates.get(clean_pixels)
        if marks is None:
            policy = self.policy
            applied = [
                o
                for o in Option
                if policy.has(o) and (o is not Option.CLEAN_PIXEL_DATA or clean_pixels)
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
            self._mark_templates[clean_pixels] = marks
        return marks

    def marks_raw(
        self, implicit: bool, little: bool = True, clean_pixels: bool = False
    ) -> dict[BaseTag, RawDataElement]:
        """The marks encoded once for (Implicit or Explicit VR, little or big endian)."""
        key = (implicit, little, clean_pixels)
        raw = self._mark_raw.get(key)
        if raw is None:
            raw = self._mark_raw[key] = encode_raw(self.marks(clean_pixels), implicit, little)
        return raw

    def _mark(self, ds: Dataset, clean_pixels: bool) -> None:
        encoding = getattr(ds, "original_encoding", (None, None))
        if None in encoding:
            for elem in self.marks(clean_pixels):
                ds[elem.tag] = deepcopy(elem)
            return
        raw = self.marks_raw(bool(encoding[0]), bool(encoding[1]), clean_pixels)
        # Pre-encoded: the writer copies these bytes instead of encoding them per file.
        elements(ds).update(raw)


def _writer_identity(ds: Dataset) -> None:
    """Zero the preamble and name medveil as the file's writer, as the pipeline's writer does.

    The preamble is free for applications and can carry anything; the source's
    Implementation Class UID and Version Name identify its software and site.
    """
    if getattr(ds, "preamble", None) is not None:
        ds.preamble = b"\x00" * 128
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME


#: Pixel elements the pixel cleaner looks at (float ones are checked for text beside or
#: in place of the image, issue 18 F2).
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def pixel_marks(report: DeidReport) -> tuple[str | None, bool]:
    """(Burned In Annotation value to write or None, whether 113101 is listed) for a file.

    PS3.15 E.3.1: after Clean Pixel Data the attribute is NO and the option is recorded;
    a file without Pixel Data, or one whose pixels the option does not hold for, gets
    neither (see :mod:`medveil.pixels.cleaner`).
    """
    pixels = report.pixels
    if pixels is None:
        return None, False
    from medveil.pixels.cleaner import burned_in_annotation, deidentification_codes

    found = cast("PixelReport", pixels)
    return burned_in_annotation(found), bool(deidentification_codes(found))


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
        vr = None if implicit else elem.VR
        out[elem.tag] = raw_element(
            elem.tag, vr, len(value), value, implicit=implicit, little=little
        )
    return out
