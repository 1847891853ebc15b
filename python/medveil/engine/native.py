"""The native road: the raw-byte engine's walk in the C++ core, for the common file.

:class:`NativeEngine` compiles, once per :class:`~medveil.engine.dataset.Deidentifier`, a
per-tag table from the shared decision layer (:mod:`medveil.engine.decide`): for each
standard tag and each VR the dictionary allows, what the layer answers for an empty and a
non-empty value when the answer does not read the value, and which answers do. The core
(``medveil._core.fastpath``) walks a batch of files with the GIL released, applies the
table, remaps UIDs by HMAC-SHA256 itself and encodes each output with its SHA-256.

Answers that read a value (dates shifted for the patient, cleaned descriptors, pseudonyms,
age caps) come from a cache of what Python answered for the same value under the same
patient identity (the raw-byte engine's identity key, hashed): the first file of a patient
misses, goes to the raw-byte engine, and its answers fill the cache for the next files. A
file the core does not cover (any reason it gives) goes to the raw-byte engine too, so the
native road only ever writes what that engine would write, byte for byte
(tests/native checks it).

Per file, Python does what the core does not: the pixel cleaner's verdict (kept per
series by the raw bytes of exactly the attributes it reads, see :meth:`NativeEngine._prepare`
and tests/native/test_verdict_cache.py) and the catalog row (read from the core's catalog
bytes, :meth:`NativeOutcome.peeks`).
"""

from __future__ import annotations

import copy
import functools
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pydicom import config, datadict
from pydicom._uid_dict import UID_dictionary
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag

from medveil._core import fastpath, gather
from medveil.dicom.io import check_pixel_length
from medveil.dicom.keywords import TERM_KEYWORDS
from medveil.dicom.peek import decode_text
from medveil.dicom.pydicom_private import character_set, dataset_over, raw_tuple
from medveil.dicom.writer import PIXEL_DATA
from medveil.engine.dataset import Deidentifier, pixel_marks
from medveil.engine.decide import (
    CODE_MEANING,
    KIND_EMPTY,
    KIND_KEEP,
    KIND_PUT,
    KIND_REMOVE,
    KIND_ZERO,
    ROUTE_DROP,
    ROUTE_PRIVATE,
    Decision,
    DeidReport,
    dictionary_vrs,
    vr_conflict,
    zero_value,
)
from medveil.engine.raw import (
    _CATALOG_TAGS,
    _CODEC_TEXT,
    _CONTEXT_FREE,
    _ENCAPSULATED,
    _EXPLICIT_LE,
    _IMPLICIT_LE,
    _SQ_TAGS,
    NotRaw,
    RawEngine,
    _header,
    _meta_end,
    _scan,
    _text_bytes,
)
from medveil.pixels.sidebytes import strip_beside_image
from medveil.policy.standard import COMBINED_ACTIONS, resolve_combined

if TYPE_CHECKING:  # the cleaner (and the pixel codecs it loads) comes with the policy
    from medveil.pixels.cleaner import PlainVerdict

# The core's kinds (cpp/include/medveil/fastpath.hpp).
K_FALLBACK, K_KEEP, K_REMOVE, K_EMPTY, K_PUT, K_UID, K_CACHE = range(7)
OK, DECLINED, MISS = 0, 1, 2
COMPRESSED_CHANGED = "compressed pixels changed"
# Specific Character Set values of one plain character set the core may meet (the cache
# key holds the value, so each one's answers are its own).
_CHARSETS = (b"", b"ISO_IR 100", b"ISO_IR 6", b"ISO_IR 192", b"ISO_IR 101", b"ISO_IR 148")
_TERM_TAGS = tuple(
    t for t in (datadict.tag_for_keyword(kw) for kw in (*TERM_KEYWORDS, "PatientID")) if t
)
_RAW_FIELDS_PIXEL = BaseTag(PIXEL_DATA)
# Every output is joined by the core (gather); from this size on, on huge pages.
_GATHER_AT = 4 << 20
_FLOAT_PIXELS = frozenset({BaseTag(0x7FE00008), BaseTag(0x7FE00009)})
_UNDEFINED = 0xFFFFFFFF


class _NeedsValue(Exception):
    """The decision layer read the element's value: the answer is value-dependent."""


class _NoContext:
    """A patient context that refuses to be read: the answer depends on the patient."""

    def __getattr__(self, name: str) -> Any:
        raise _NeedsValue(name)


def _no_text() -> list[str]:
    raise _NeedsValue("text")


def _constant(values: list[str]) -> Callable[[], list[str]]:
    """A text callback giving these values."""
    return lambda: values


@dataclass
class _Entry:
    """What an entry id of the table stands for, to compute a missed answer in Python."""

    tag: int
    vr: str
    rule: Any  # Rule | None (None: the unknown-element route)


@dataclass
class NativeOutcome:
    """What the native road made of one file (the raw-byte engine's RawOutcome, plus hash)."""

    parts: list[bytes | memoryview]
    report: DeidReport
    implicit: bool
    sha256: str
    #: The output's catalog elements (tag, VR, value bytes): what ``final`` holds.
    catalog: list[tuple[int, str, bytes]] = field(default_factory=list)
    #: The input's Specific Character Set element (None: it has none).
    charset: Any = None

    @functools.cached_property
    def final(self) -> Dataset:
        """The output's catalog values as a Dataset view (made only when asked for)."""
        return final_view(self.catalog, self.charset)

    @property
    def codec(self) -> str | None:
        """The one Python codec ``final``'s values decode with; None: more, or none known."""
        return _codec(self.charset)

    def peeks(self) -> tuple[Callable[[int], str], Callable[[int], int | None]] | None:
        """peek_str and peek_int over ``final``, from the catalog bytes; None: use ``final``.

        Only where those read a value the plain way (medveil.dicom.peek.raw_text and
        plain_value): one codec, text without ISO 2022 escapes, a VR other than UN, and
        Rows and Columns as one little-endian number.
        """
        codec = self.codec
        if codec is None:
            return None
        texts: dict[int, str] = {}
        numbers: dict[int, int] = {}
        peeked = _PEEKED
        for tag, vr, value in self.catalog:
            if vr == "UN":
                return None
            key = (value, codec)
            text = peeked.get(key)
            if text is None:
                values = decode_text(value, codec)
                if values is None:
                    return None
                if len(peeked) >= 4096:
                    peeked.clear()  # bounded: a long run's memory stays flat
                text = peeked[key] = "\\".join(values)
            texts[tag] = text
            if tag in _DIMENSIONS:
                number = _US.get(vr)
                if number is None or len(value) != number.size:
                    return None
                numbers[tag] = number.unpack(value)[0]
        return (lambda tag: texts.get(tag, "")), numbers.get


def _meta_tags() -> list[int]:
    """The file meta's tags in the data dictionary."""
    dictionary: dict[int, Any] = datadict.DicomDictionary  # type: ignore[attr-defined]
    return sorted(t for t in dictionary if t >> 16 == 2)


class NativeEngine:
    """The native road for one Deidentifier: its table, caches and the Python fallbacks."""

    def __init__(self, engine: Deidentifier, raw: RawEngine) -> None:
        """Compile the table of ``engine``'s policy; ``raw`` is its raw-byte engine."""
        self.engine = engine
        self.raw = raw
        self.decider = decider = engine.decider
        self.compiled = engine.compiled
        self.actions: list[str] = []
        self._action_ids: dict[str, int] = {}
        self._entries: dict[int, _Entry] = {}
        self._marks: dict[tuple[bool, bool, str | None], int] = {}
        self._offsets: dict[bytes, int] = {}
        self.first_pass: list[tuple[Any, ...]] = []
        # The mark set id the last output was built with: the next first pass builds with
        # it (see _first_pass); -1: none yet.
        self._guess = -1
        # Pixel verdicts by _verdict_key: a series' files share them (see _prepare).
        self._verdicts: dict[tuple[object, ...], PlainVerdict] = {}
        self._verdict_split: tuple[frozenset[int], tuple[int, ...], frozenset[int]] | None = None
        # _verdict_key's rows by (top-level tags, verdict attributes, presence tags).
        self._verdict_plans: dict[tuple[object, ...], tuple[Any, ...]] = {}
        overrides = self.compiled.private_overrides
        private_rules = any(t >> 16 & 1 for t in decider.by_tag)
        simple_private = not overrides and not self.compiled.retain_safe_private
        syntaxes = [(_EXPLICIT_LE, 0), (_IMPLICIT_LE, 1), *((s, 2) for s in _ENCAPSULATED)]
        self.table = fastpath.Table(
            bytes(engine.keyed._secret),
            _SQ_TAGS,
            sorted(UID_dictionary),
            list(_TERM_TAGS),
            list(_CATALOG_TAGS),
            list(_CHARSETS),
            syntaxes,
            self._aid("X") if simple_private and not private_rules else -1,
        )
        # The meta's rules must not read the patient: its template is keyed by bytes alone.
        self._meta_free = all(
            rule is None or rule.action in _CONTEXT_FREE
            for rule in (
                self.compiled.by_tag.get(t) or self.compiled.rule_for(t) for t in _meta_tags()
            )
        )
        # Tags are added as files bring them (a miss of the core): a policy's table is
        # made of the few hundred tags an archive holds, not the dictionary's thousands.
        for tag in decider.by_tag:
            if tag & 0xFFFF == 0 and not tag >> 16 & 1:
                self._add_tag(tag)

    # ------------------------------------------------------------------ the table
    def _aid(self, action: str) -> int:
        found = self._action_ids.get(action)
        if found is None:
            found = self._action_ids[action] = len(self.actions)
            self.actions.append(action)
        return found

    def _add_tag(self, tag: int) -> None:
        decider = self.decider
        rule = decider.by_tag.get(tag)
        if rule is None:
            if tag & 0xFFFF == 0 and tag >> 16 != 2:
                return  # a group length: the core drops it, as the walk does
            route, rule = decider.rule(tag)
            if route is ROUTE_PRIVATE or route is ROUTE_DROP:
                self.table.add_tag(tag, "", "", False, [])
                return
        vrs = [v for v in dictionary_vrs(tag) if len(v) == 2]
        if not vrs:
            self.table.add_tag(tag, "", "", False, [])  # known: the core declines it
            return
        plain = self.raw._plain_vr(tag)
        code_meaning = tag == CODE_MEANING and decider.cleans_code_meaning and rule is not None
        rows = []
        entries = []
        for vr in vrs:
            if rule is None:
                use_empty = vr in ("DA", "DT")
            else:
                use_empty = not (rule.action in ("K", "X") and vr != "SQ")
            variants = [self._variant(tag, vr, rule, empty) for empty in (False, True)]
            rows.append((vr, use_empty, variants[0], variants[1]))
            entries.append(_Entry(tag, vr, rule))
        ids = self.table.add_tag(tag, plain, vrs[0], code_meaning, rows)
        for entry_id, entry in zip(ids, entries, strict=True):
            self._entries[entry_id] = entry

    def _decide(
        self, entry: _Entry, empty: bool, text: Callable[[], list[str]], ctx: Any
    ) -> Decision:
        """The decision layer's answer, asked as the raw-byte engine's walk asks it."""
        if entry.rule is None:
            return self.decider.unknown(entry.tag, entry.vr, empty, text, ctx)
        return self.decider.act(entry.tag, entry.vr, entry.rule, empty, text, ctx)

    def _variant(
        self, tag: int, vr: str, rule: Any, empty: bool
    ) -> tuple[int, int, list[int], bytes, str]:
        entry = _Entry(tag, vr, rule)
        try:
            decision = self._decide(entry, empty, _no_text, _NoContext())
        except _NeedsValue:
            if self._is_uid_map(tag, vr, rule, empty):
                return (K_UID, self._aid("U"), [], b"", "")
            return (K_CACHE, -1, [], b"", "")
        except Exception as exc:  # the layer refuses this combination: Python decides
            return (K_FALLBACK, -1, [], b"", f"decision layer: {type(exc).__name__}")
        encoded = self._encode(vr, decision)
        if encoded is None:
            return (K_FALLBACK, -1, [], b"", f"action {decision.report or 'K'} on {vr}")
        kind, value = encoded
        report = self._aid(decision.report) if decision.report else -1
        return (kind, report, [self._aid(n) for n in decision.notes], value, "")

    def _is_uid_map(self, tag: int, vr: str, rule: Any, empty: bool) -> bool:
        """True when the answer is exactly Decider.map_uids of the value (report U)."""
        if rule is None or vr != "UI" or empty or vr_conflict(tag, vr):
            return False
        action = rule.action
        if action in COMBINED_ACTIONS:
            action = resolve_combined(
                action,
                vr=vr,
                in_std_comp_iod=rule.in_std_comp_iod,
                empty=empty,
                mode=self.decider.mode,
            )
        if action not in ("U", "D"):
            return False
        # The core's remapping is checked against the layer's own on two values.
        for sample in ("1.2.840.10008.1.2.1", "1.2.3.4.5.6789"):
            want = Decision(KIND_PUT, "U", tuple(self.decider.map_uids([sample])))
            try:
                got = self.decider.act(tag, vr, rule, False, _constant([sample]), _NoContext())  # type: ignore[arg-type]
            except Exception:
                return False
            if got != want:
                return False
        return True

    @staticmethod
    def _encode(vr: str, decision: Decision) -> tuple[int, bytes] | None:
        """(core kind, value bytes) of a decision as RawEngine._do encodes it; None: not covered."""
        kind = decision.kind
        if kind is KIND_REMOVE:
            return K_REMOVE, b""
        if kind is KIND_KEEP:
            return K_KEEP, b""
        if kind is KIND_EMPTY:
            return K_EMPTY, b""
        if kind is KIND_ZERO:
            return K_PUT, zero_value(vr)
        if kind is KIND_PUT:
            values = list(decision.values)
            if vr in _CODEC_TEXT and not all(v.isascii() for v in values):
                return None  # encoded with the file's character set: the engine's to do
            try:
                return K_PUT, _text_bytes(vr, values)
            except NotRaw:
                return None
        return None

    def _mark_set(self, implicit: bool, report: DeidReport) -> int:
        """The core's id of this file's marks (RawEngine._pixel_marks), registered once."""
        value, clean = pixel_marks(report)
        key = (implicit, clean, value)
        found = self._marks.get(key)
        if found is None:
            marks = list(self.raw._marks_by[(implicit, clean)])
            if value is not None:
                text = value.encode("ascii")
                if len(text) % 2:
                    text += b" "
                head = _header(0x00280301, "CS", len(text), implicit)
                marks = sorted([*marks, (0x00280301, head + text)])
            found = self._marks[key] = self.table.add_marks(marks)
        return found

    # ------------------------------------------------------------------ learning
    def learn_tags(self, result: tuple[Any, ...]) -> None:
        """Add the entries of the tags the core met and its table lacked."""
        for entry_id, _, tag, _ in result[11].tolist():
            if entry_id == -1:
                self._add_tag(tag)

    def learn(self, buf: bytes | bytearray | memoryview, result: tuple[Any, ...]) -> None:
        """Fill the caches from the raw-byte engine's run on this file (just done)."""
        for _ in range(16):  # a sequence's items are walked once its own entry exists
            if not any(e == -1 for e in result[11][:, 0].tolist()):
                break
            self.learn_tags(result)
            # Asked again with the new entries: their values' misses are learned now too.
            result = fastpath.run(self.table, [buf], None, None, 1, False)[0]
        ctx = self.raw.last_ctx
        if ctx is None:
            return
        fingerprint, meta_rows, misses = result[12], result[14], result[11]
        codec = self.raw.codec
        if len(self._offsets) >= 100_000:
            self._offsets.clear()  # bounded: a long run's memory stays flat
        self._offsets[fingerprint] = ctx.offset if self.compiled.shift_dates else 0
        for entry_id, empty, vstart, vend in misses.tolist():
            entry = self._entries.get(entry_id) if entry_id >= 0 else None
            if entry is None:
                continue
            value = bytes(buf[vstart:vend])

            def text(value: bytes = value) -> list[str]:
                values = decode_text(value, codec)
                if values is None:
                    raise NotRaw("undecodable")
                return values

            try:
                decision = self._decide(entry, bool(empty), text, ctx)
            except Exception:
                continue  # not cached: the next file with it goes to Python again
            encoded = self._encode(entry.vr, decision)
            if encoded is None:
                continue
            kind, out = encoded
            self.table.cache_put(
                entry_id,
                bool(empty),
                fingerprint,
                value,
                kind,
                self._aid(decision.report) if decision.report else -1,
                [self._aid(n) for n in decision.notes],
                out,
            )
        self._learn_meta(buf, meta_rows, ctx)

    def _learn_meta(
        self, buf: bytes | bytearray | memoryview, meta_rows: np.ndarray, ctx: Any
    ) -> None:
        """The output meta's template the raw-byte engine made for this file's meta."""
        if not self._meta_free or not len(meta_rows):
            return
        try:
            elems, _ = _scan(buf, 132, _meta_end(buf))
        except NotRaw:
            return
        key = self.raw.meta_template_key(buf, elems, ctx)
        if key[-2] is not None or key[-1] is not None:
            # Read with the file's character set, or made for this patient (a rule of a
            # meta tag the dictionary lacks reads it): the core's key holds neither.
            return
        found = self.raw._meta_templates.get(key)
        if found is None:
            return
        pre, post, taken = found
        if any(path != "meta" for path, _, _ in taken):
            return
        self.table.add_meta(
            self.table.meta_key(buf, meta_rows),
            pre,
            post,
            [(tag, self._aid(action)) for _, tag, action in taken],
        )

    # ------------------------------------------------------------------ the road
    def apply_batch(
        self,
        bufs: Sequence[bytes | bytearray | memoryview],
        names: Sequence[str] | None = None,
        threads: int = 1,
    ) -> list[NativeOutcome | str | Exception]:
        """Each file's outcome, the reason the native road leaves it to Python, or the error.

        A reason starting with "miss:" means the core lacked Python's answers for one of
        the file's values: after the raw-byte engine ran on that file, :meth:`learn` with
        ``self.first_pass[i]`` fills them. A reason starting with "dataset:" comes after
        the pixels were cleaned in place: only the Dataset engine may take that file (as
        after the raw-byte engine's own late refusals). An exception (a truncated pixel
        value, a pixel rule that cannot be applied) quarantines the file.
        """
        names = list(names) if names is not None else ["input"] * len(bufs)
        first, built = self._first_pass(bufs, threads)
        self.first_pass = first
        out: list[NativeOutcome | str | Exception] = [""] * len(bufs)
        todo: list[int] = []
        marks: list[int] = []
        pixels: list[object] = []
        prepared: dict[int, tuple[Any, DeidReport, object]] = {}
        done: dict[int, tuple[Any, ...]] = {}
        for i, res in enumerate(first):
            status, reason = res[0], res[1]
            if status != OK:
                out[i] = ("miss: " if status == MISS else "") + (reason or "declined")
                continue
            offset = self._offsets.get(res[12])
            if offset is None:
                out[i] = "miss: the patient's date offset"
                continue
            try:
                got = self._prepare(bufs[i], res, names[i], offset)
            except Exception as exc:  # as the raw-byte engine raises it: a quarantine
                out[i] = exc
                continue
            if isinstance(got, str):
                out[i] = got
                continue
            charset, report, new_pixels = got
            prepared[i] = (charset, report, new_pixels)
            mark = self._mark_set(bool(res[16]), report)
            if built[i] and mark == self._guess and new_pixels is None:
                # The first pass built it with these very marks and the input's pixels:
                # the output the second pass would build (pixels masked in place are
                # read when the output is joined, after this).
                done[i] = res
                continue
            todo.append(i)
            marks.append(mark)
            pixels.append(new_pixels)
        if todo:
            second = fastpath.run(
                self.table, [bufs[i] for i in todo], marks, pixels, threads, True, False
            )
            for i, res, mark in zip(todo, second, marks, strict=True):
                if res[0] != OK:
                    out[i] = "dataset: " + (res[1] or "declined")
                    continue
                done[i] = res
                self._guess = mark
        for i, res in done.items():
            charset, report, new_pixels = prepared[i]
            out[i] = self._outcome(bufs[i], res, charset, report, new_pixels)
        return out

    def _first_pass(
        self, bufs: Sequence[bytes | bytearray | memoryview], threads: int
    ) -> tuple[list[tuple[Any, ...]], list[bool]]:
        """The core's decision walk of each file, and whether it also built its output.

        Built (without its hash) with the mark set the last file took (``self._guess``):
        a series' files all take the same one, so the usual file needs no second walk;
        apply_batch builds again any file whose marks or pixels turn out otherwise. A file
        the build declined is walked again without building, so that its reason and its
        road are those of the decision walk alone.
        """
        guess = self._guess
        if guess < 0:
            first = fastpath.run(self.table, list(bufs), None, None, threads, False)
            return first, [False] * len(first)
        first = fastpath.run(
            self.table, list(bufs), [guess] * len(bufs), None, threads, True, False
        )
        built = [res[0] == OK for res in first]
        redo = [i for i, res in enumerate(first) if res[0] == DECLINED]
        if redo:
            again = fastpath.run(self.table, [bufs[i] for i in redo], None, None, threads, False)
            for i, res in zip(redo, again, strict=True):
                first[i] = res
        return first, built

    def apply(
        self, buf: bytes | bytearray | memoryview, name: str = "input"
    ) -> NativeOutcome | str | Exception:
        """apply_batch for one file."""
        return self.apply_batch([buf], [name])[0]

    def _prepare(
        self, buf: bytes | bytearray | memoryview, res: tuple[Any, ...], name: str, offset: int
    ) -> tuple[Any, DeidReport, object] | str:
        """The input's checks and pixels, as the raw-byte engine makes them.

        (its Specific Character Set element, its report, new pixel data or None), or why
        the native road leaves it. A file whose verdict attributes a file before had
        (:meth:`_verdict_key`) takes that file's pixel verdict without a Dataset view.
        """
        pixels = self.engine.pixels
        key = self._verdict_key(buf, res, pixels) if pixels is not None else None
        if key is not None:
            verdict = self._verdicts.get(key[0])
            if verdict is not None:
                got = self._prepare_plain(buf, res, name, offset, verdict, key[1])
                if got is not None:
                    return got
        implicit = bool(res[16])
        view = memoryview(buf)
        meta_store = {
            BaseTag(int(r[0])): _raw_element(buf, view, r, False) for r in res[14].tolist()
        }
        syntax = meta_store.get(_TRANSFER_SYNTAX)
        if syntax is not None:
            meta_store[_TRANSFER_SYNTAX] = _decoded(syntax)
        # The readers of the meta (pixel length check, pixel cleaner) only look elements
        # up: a view over them, without FileMetaDataset's per-element validation (the
        # core's meta rows are group 0002 by construction).
        meta = cast(FileMetaDataset, dataset_over(meta_store))
        store = _store(buf, view, res[13], implicit)
        # Taken before any reader decodes it in the store, as the raw-byte engine takes it.
        charset = store.get(_CHARSET)
        top = dataset_over(store, implicit, meta)
        if "SOPClassUID" not in top or "SOPInstanceUID" not in top:
            return "not a composite instance"
        check_pixel_length(top, "input")  # raises as the raw-byte engine does: quarantine
        report = DeidReport()
        report.date_offset_days = offset if self.compiled.shift_dates else 0
        pixels = self.engine.pixels
        new_pixels: object = None
        has_pixels = _RAW_FIELDS_PIXEL in store
        floats = any(t in store for t in _FLOAT_PIXELS)
        if pixels is None and (has_pixels or floats):
            # RawEngine.apply: metadata beside the image goes without Clean Pixel Data too.
            # Checked on a copy, so that the raw-byte engine takes the file as it came.
            if has_pixels and isinstance(store[_RAW_FIELDS_PIXEL].value, memoryview):
                elem = store[_RAW_FIELDS_PIXEL]
                store[_RAW_FIELDS_PIXEL] = elem._replace(value=bytes(elem.value))
            if strip_beside_image(top):
                return "metadata beside the image"
            return charset, report, None
        if pixels is not None and not has_pixels and floats:
            # Float pixel data is checked (a quarantine at most), never changed.
            report.pixels = pixels.clean(top, source=name)  # type: ignore[attr-defined]
        if pixels is not None and has_pixels:
            tags, lengths = res[13][0], res[13][3]
            undefined = lengths[tags.index(PIXEL_DATA)] == _UNDEFINED
            before = store[_RAW_FIELDS_PIXEL].value
            report.pixels = pixels.clean(top, source=name)  # type: ignore[attr-defined]
            after = store[_RAW_FIELDS_PIXEL].value
            if after is not before:
                new_pixels = after
            pixel_report = report.pixels
            if undefined and (
                new_pixels is not None
                or getattr(pixel_report, "modified", False)
                or getattr(pixel_report, "transfer_syntax_out", None)
                != getattr(pixel_report, "transfer_syntax_in", None)
            ):
                # Compressed pixels are never changed in place: the raw-byte engine takes
                # the file as it came (and writes new fragments or hands it on).
                return COMPRESSED_CHANGED
            if new_pixels is not None and not isinstance(
                new_pixels, (bytes, bytearray, memoryview)
            ):
                return "dataset: new pixel data not bytes"
            if key is not None and new_pixels is None and not floats:
                verdict = pixels.plain_verdict(top, report.pixels)  # type: ignore[attr-defined]
                if verdict is not None:
                    if len(self._verdicts) >= 1024:
                        self._verdicts.clear()  # bounded: a long run's memory stays flat
                    self._verdicts[key[0]] = verdict
        return charset, report, new_pixels

    def _verdict_tags(self, pixels: Any) -> tuple[tuple[int, ...], frozenset[int]]:
        """(top-level, file meta) tags of the pixel cleaner's verdict, sorted; made once."""
        tags = pixels.verdict_tags()
        found = self._verdict_split
        if found is None or found[0] is not tags:
            top = tuple(sorted(t for t in tags if t >> 16 != 2))
            meta = frozenset(t for t in tags if t >> 16 == 2)
            found = self._verdict_split = (tags, top, meta)
        return found[1], found[2]

    def _verdict_key(
        self, buf: bytes | bytearray | memoryview, res: tuple[Any, ...], pixels: Any
    ) -> tuple[tuple[object, ...], tuple[int, int]] | None:
        """(key, (Pixel Data row, character set row or -1)) of a file's pixel verdict.

        The key holds every input the verdict depends on besides the pixel samples: the
        cleaner's options, pydicom's validation mode, the encoding, the raw fields (VR,
        length, bytes) of each verdict attribute (:meth:`PixelCleaner.verdict_tags`), the
        Pixel Data length, and whether the elements read for their presence are there.
        None: no verdict is kept for such a file (no Pixel Data, or undefined length).
        """
        tags, codes, vstarts, lengths, ends = res[13]
        top_tags, meta_tags = self._verdict_tags(pixels)
        presence = tuple(pixels.verdict_presence)
        # Where each attribute sits is the same in every file of a structure (the same
        # top-level tags in the same order): found once per tag list and attribute lists.
        plan_key = (tuple(tags), top_tags, presence)
        plan = self._verdict_plans.get(plan_key)
        if plan is None:
            index = dict(zip(tags, range(len(tags)), strict=True))
            at = index.get(PIXEL_DATA)
            plan = (
                at,
                index.get(_CHARSET, -1),
                (_SOP_INSTANCE in index, *(t in index for t in presence)),
                tuple(index.get(tag) for tag in top_tags),
            )
            if len(self._verdict_plans) >= 64:
                self._verdict_plans.clear()  # bounded: a long run's memory stays flat
            self._verdict_plans[plan_key] = plan
        at, charset_at, present, rows = plan
        if at is None or lengths[at] == _UNDEFINED:
            return None
        src = buf if isinstance(buf, bytes) else memoryview(buf)
        parts: list[object] = [
            pixels.config(),
            config.settings.reading_validation_mode,
            bool(res[16]),
            ends[at] - vstarts[at],
            *present,
        ]
        for i in rows:
            parts.append(
                None if i is None else (codes[i], lengths[i], bytes(src[vstarts[i] : ends[i]]))
            )
        for tag, code, _, vstart, length, end in res[14].tolist():
            if tag in meta_tags:
                parts.append((tag, code, length, bytes(src[vstart:end])))
        return tuple(parts), (at, charset_at)

    def _prepare_plain(
        self,
        buf: bytes | bytearray | memoryview,
        res: tuple[Any, ...],
        name: str,
        offset: int,
        verdict: PlainVerdict,
        rows: tuple[int, int],
    ) -> tuple[Any, DeidReport, object] | None:
        """_prepare for a file with a known plain verdict; None: its samples need the cleaner."""
        tags, codes, vstarts, lengths, ends = res[13]
        at, charset_at = rows
        view = memoryview(buf)
        pixel_report = self.engine.pixels.clean_plain(  # type: ignore[attr-defined]
            verdict, view[vstarts[at] : ends[at]], name
        )
        if pixel_report is None:
            return None
        report = DeidReport()
        report.date_offset_days = offset if self.compiled.shift_dates else 0
        report.pixels = pixel_report
        charset = None
        if charset_at >= 0:
            i = charset_at
            one = ([tags[i]], [codes[i]], [vstarts[i]], [lengths[i]], [ends[i]])
            charset = _store(buf, view, one, bool(res[16]))[_CHARSET]
        return charset, report, None

    def _outcome(
        self,
        buf: bytes | bytearray | memoryview,
        res: tuple[Any, ...],
        charset: Any,
        report: DeidReport,
        new_pixels: object,
    ) -> NativeOutcome:
        """The outcome of the second pass; ``charset``: the input's Specific Character Set."""
        head, tail, pix_start, pix_end, replaced = res[2], res[3], res[4], res[5], res[6]
        parts: list[bytes | memoryview] = [head]
        if pix_start >= 0:
            src = new_pixels if replaced else buf
            parts.append(memoryview(src)[pix_start:pix_end])  # type: ignore[arg-type]
        if tail:
            parts.append(tail)
        # Joined once here (on huge pages when large, as the raw-byte engine joins a large
        # output) and hashed in the same pass: the post-check, the write and the reference
        # reader take that buffer as is, and its bytes are what the hash covers (pixels
        # masked in place included).
        joined, sha256 = gather(parts, True)
        parts = [joined]
        actions = self.actions
        paths = res[9]
        # DeidReport.add's result, built in one go (a CT slice reports ~200 actions): the
        # triples and the counts (by action id, in order of first use, as add counts them)
        # without a Python-level loop per action.
        path_ids, tags, action_ids = res[8]
        named = map(actions.__getitem__, action_ids)
        report.taken.extend(zip(map(paths.__getitem__, path_ids), tags, named, strict=True))
        report.actions.update({actions[a]: n for a, n in Counter(action_ids).items()})
        return NativeOutcome(parts, report, bool(res[16]), str(sha256), res[10], charset)


def final_view(catalog: list[tuple[int, str, bytes]], charset: Any) -> Dataset:
    """The output's catalog elements as a Dataset view (what the other roads' ``final`` is).

    ``charset``: the input's Specific Character Set element (None: it has none).
    """
    values: dict[BaseTag, DataElement | RawDataElement] = {}
    for tag, vr, text in catalog:
        key = BaseTag(tag)
        values[key] = raw_tuple((key, vr, len(text), text, 0, False, True, True, False))
    if isinstance(charset, RawDataElement):
        values[_CHARSET] = _decoded(charset)  # as the first text read would decode it
    return dataset_over(values)


_VR_TEXT: dict[int, str | None] = {}
# A catalog value's text by (value bytes, codec), all decode_text reads: a series' outputs
# repeat most of their catalog values (in memory only, bounded).
_PEEKED: dict[tuple[bytes, str], str] = {}
# Rows and Columns: peek_int reads them as one number (medveil.dicom.peek.plain_value).
_DIMENSIONS = (0x00280010, 0x00280011)
_US = {"US": struct.Struct("<H"), "UL": struct.Struct("<L")}
_US.update({"SS": struct.Struct("<h"), "SL": struct.Struct("<l")})
_CODECS: dict[tuple[object, ...], str | None] = {}
_UNSET = object()


def _codec(charset: Any) -> str | None:
    """The one codec final_view(..., charset) decodes text with (None: not one).

    Asked of pydicom itself (the view's character set), once per raw character set.
    """
    key: tuple[object, ...] = (None,)
    if isinstance(charset, RawDataElement):
        if type(charset.value) is not bytes:
            return None
        key = (
            charset.VR,
            charset.value,
            charset.is_implicit_VR,
            config.settings.reading_validation_mode,
        )
    found = _CODECS.get(key, _UNSET)
    if found is _UNSET:
        if len(_CODECS) >= 256:
            _CODECS.clear()
        codecs = character_set(final_view([], charset))
        codecs = [codecs] if isinstance(codecs, str) else codecs
        found = _CODECS[key] = codecs[0] if len(codecs) == 1 else None
    return found  # type: ignore[return-value]


_TRANSFER_SYNTAX = BaseTag(0x00020010)
_CHARSET = BaseTag(0x00080005)
_SOP_INSTANCE = 0x00080018
# Transfer Syntax UID and Specific Character Set elements as pydicom decodes them, by
# their raw fields: every reader of a file's meta (the pixel length check, the pixel
# cleaner) asks for the decoded syntax, every text read of the output's values for the
# character set, and a series repeats the same few. Each file gets its own copy (a
# reader may set it).
_DECODED: dict[tuple[object, ...], DataElement] = {}


def _decoded(raw: RawDataElement) -> DataElement | RawDataElement:
    """A copy of the element pydicom decodes from this raw one (either tag above; cached)."""
    if type(raw.value) is not bytes or raw.tag not in (_TRANSFER_SYNTAX, _CHARSET):
        return raw
    key = (
        raw.tag,
        raw.VR,
        raw.length,
        raw.value,
        raw.value_tell,
        raw.is_implicit_VR,
        raw.is_little_endian,
        config.settings.reading_validation_mode,
    )
    hit = _DECODED.get(key)
    if hit is None:
        if len(_DECODED) >= 256:
            _DECODED.clear()
        # As Dataset.__getitem__ converts them: the character set in the default encoding
        # (a UID does not depend on one).
        hit = _DECODED[key] = convert_raw_data_element(raw, encoding=default_encoding)
    return copy.copy(hit)


def _store(
    buf: bytes | bytearray | memoryview,
    view: memoryview,
    rows: tuple[list[int], ...],
    implicit: bool,
) -> dict[BaseTag, Any]:
    """RawEngine's top-level element store (its _raw of each element), from the core's rows.

    The same RawDataElements, made in one comprehension: per element this is most of the
    Python the native road still does.
    """
    tags, codes, vstarts, lengths, ends = rows
    vrs = _VR_TEXT
    for code in set(codes):
        if code not in vrs:
            vrs[code] = (chr(code & 0xFF) + chr(code >> 8)) if code else None
    src = buf if isinstance(buf, bytes) else view
    store: dict[BaseTag, Any] = {}
    for tag, code, vstart, length, end in zip(tags, codes, vstarts, lengths, ends, strict=True):
        key = BaseTag(tag)
        if length == _UNDEFINED:
            value: bytes | memoryview = bytes(src[vstart : end - 8])
        elif tag == PIXEL_DATA:
            value = view[vstart:end]  # masked in place
            length = end - vstart
        else:
            value = bytes(src[vstart:end])
            length = end - vstart
        store[key] = raw_tuple(
            (
                key,
                None if implicit else vrs[code],
                length,
                value,
                vstart,
                implicit,
                True,
                True,
                False,
            )
        )
    return store


def _raw_element(
    buf: bytes | bytearray | memoryview, view: memoryview, row: list[int], implicit: bool
) -> Any:
    """RawEngine._raw for one row (tag, vr, start, vstart, length, end) of the core."""
    tag, code, _, vstart, length, end = row
    if length == _UNDEFINED:
        end -= 8
    value: bytes | memoryview
    if tag == PIXEL_DATA and length != _UNDEFINED:
        value = view[vstart:end]  # masked in place
    else:
        value = bytes(buf[vstart:end])
    length = _UNDEFINED if length == _UNDEFINED else len(value)
    is_implicit = implicit and tag >> 16 != 2
    vr = None if is_implicit else (chr(code & 0xFF) + chr(code >> 8))
    return raw_tuple((BaseTag(tag), vr, length, value, vstart, is_implicit, True, True, False))
