"""One instance through the whole pipeline: bytes in, de-identified bytes and catalog row out.

The archive run, the Spark job and the network gateway all call :func:`clean_instance`, so
a file gets the same decision and the same bytes whichever way it arrives.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pydicom.dataset import Dataset

from medveil.crypto.vault.capture import identity_of, read_originals
from medveil.crypto.vault.embed import OriginalsEmbedder
from medveil.dicom.io import in_place, inflate_file, read_dataset, write_fast_or_generic
from medveil.dicom.peek import peek_int, peek_str
from medveil.dicom.strict import Prescan, check_structure_scan
from medveil.engine.dataset import Deidentifier, DeidReport
from medveil.engine.generalize import age_band
from medveil.engine.native import NativeEngine
from medveil.engine.postcheck import (
    Allowance,
    Terms,
    check_record,
    check_written,
    learn_terms,
)
from medveil.engine.raw import NotRaw, RawEngine
from medveil.errors import DicomInputError, MedveilError, QuarantineError
from medveil.policy.filters import filter_verdict


@dataclass
class CleanResult:
    """The outcome for one input: status 'written', 'skipped', 'excluded' or 'quarantined'.

    An excluded input (a [filter] rule said not to process it) has the rule's name, e.g.
    'exclude[0]', as its reason.
    """

    status: str
    reason: str = ""
    size_in: int = 0
    parts: list[bytes] = field(default_factory=list)  # the output file, in order
    relpath: str = ""
    row: dict[str, object] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    pixels: dict[str, object] | None = None  # the pixel cleaner's record, for pixels.jsonl
    # With capture_identity: originals + new pseudonym/UIDs for the vault (PHI: never log).
    identity: dict[str, object] = field(default_factory=dict)
    engine: str = ""  # which engine wrote it: "raw" or "dataset"
    # Why the raw-byte engine declined the file (no values in it), when the Dataset one wrote it.
    declined: str = ""
    # Why the native road left the file to Python (no values in it), when it did.
    native_declined: str = ""

    @property
    def data(self) -> bytes:
        """The output file as one bytes object (joins the parts: a copy)."""
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)

    @property
    def size_out(self) -> int:
        """Length of the output file in bytes."""
        return sum(len(p) for p in self.parts)


def looks_like_dicom(head: bytes) -> bool:
    """True for a file with the DICM preamble, or one that starts like a bare dataset."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    elem = int.from_bytes(head[2:4], "little")
    # A dataset without preamble starts with a low even group (0002..0010) element.
    return (
        group in (0x0002, 0x0008, 0x0010)
        and elem < 0x1000
        and (head[4:6].isalpha() or int.from_bytes(head[4:8], "little") < 0x10000)
    )


_UID_TEXT = re.compile(r"[0-9A-Za-z._-]+")


def safe_component(uid: str) -> str:
    """A path component made only of UID-safe characters."""
    if _UID_TEXT.fullmatch(uid):
        return uid  # the usual case, and what the filter below would return
    return "".join(ch for ch in uid if ch.isalnum() or ch in ".-_") or "unknown"


@functools.lru_cache(maxsize=1024)
def age_band_label(age: str) -> str:
    """A catalog age band such as '65-69' or '90+' from a DICOM AS value (remembered)."""
    band = age_band(age) if age else ""
    if not band:
        return ""
    lo = int(band[:3])
    return "90+" if lo >= 90 else f"{lo}-{lo + 4}"


#: peek_str and peek_int of one output (see :func:`_peeks`).
Peeks = tuple[Callable[[int], str], Callable[[int], "int | None"]]


def _peeks(ds: Dataset) -> Peeks:
    """peek_str and peek_int over ``ds``."""
    return functools.partial(peek_str, ds), functools.partial(peek_int, ds)


def output_relpath(ds: Dataset) -> str:
    """<patient pseudonym>/<study UID>/<series UID>/<SOP UID>.dcm of a cleaned dataset."""
    return _relpath(_peeks(ds)[0])


def _relpath(text: Callable[[int], str]) -> str:
    """output_relpath, reading the output's values with ``text`` (a peek_str)."""
    parts = (
        safe_component(text(0x00100020) or "unknown-patient"),
        safe_component(text(0x0020000D)),
        safe_component(text(0x0020000E)),
        safe_component(text(0x00080018)) + ".dcm",
    )
    if "." in parts:
        return str(PurePosixPath(*parts))  # which drops a "." part (check_relpath refuses)
    return "/".join(parts)  # what PurePosixPath gives for parts without "/", "" or "."


# Catalog columns hold coded values only: a value that is not one (a name written into
# Modality, a swallowed element after an overrun) is left out, not copied.
_CS_CODE = re.compile(r"[A-Z0-9_ ]{1,16}")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_SEX = re.compile(r"[MFO]")
_DATE = re.compile(r"[0-9]{8}")


def _checked(value: str, pattern: re.Pattern[str]) -> str:
    """``value`` when it is a well-formed code of its column, else ''."""
    value = value.strip()
    return value if len(value) <= 64 and pattern.fullmatch(value) else ""


def catalog_row(
    ds: Dataset, relpath: str, parts: list[bytes], sha256: str | None = None
) -> dict[str, object]:
    """The de-identified metadata of one written instance (the cohort catalog row).

    ``sha256``: the output's hash when the engine already computed it while writing.
    """
    return _catalog_row(_peeks(ds), relpath, parts, sha256)


def _catalog_row(
    peeks: Peeks, relpath: str, parts: list[bytes], sha256: str | None = None
) -> dict[str, object]:
    """catalog_row, reading the output's values with ``peeks``."""
    text, number = peeks

    def num(tag: int) -> object:
        value = text(tag).split("\\")[0].strip()
        try:
            return float(value) if tag == 0x00180050 else int(float(value))
        except ValueError:
            return None

    return {
        "patient_pseudonym": relpath.split("/", 1)[0],
        "study_uid": _checked(text(0x0020000D), _UID),
        "series_uid": _checked(text(0x0020000E), _UID),
        "sop_uid": _checked(text(0x00080018), _UID),
        "modality": _checked(text(0x00080060), _CS_CODE),
        "body_part": _checked(text(0x00180015), _CS_CODE),
        "sex": _checked(text(0x00100040), _SEX),
        "age_band": age_band_label(text(0x00101010)),
        "study_date": _checked(text(0x00080020), _DATE),
        "manufacturer": text(0x00080070),
        "rows": number(0x00280010),
        "columns": number(0x00280011),
        "frames": num(0x00280008) or 1,
        "slice_thickness": num(0x00180050),
        "path": relpath,
        "size": sum(len(p) for p in parts),
        "sha256": sha256 if sha256 is not None else _sha256(parts),
    }


def _sha256(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|b'[^']*'")
_NUMBERS = re.compile(r"\d[\d.:/^-]{5,}")


@functools.lru_cache(maxsize=1)
def _public_uids() -> frozenset[str]:
    """UIDs and names of pydicom's UID dictionary (transfer syntaxes, SOP classes): no PHI."""
    from pydicom._uid_dict import UID_dictionary

    return frozenset(s for uid, entry in UID_dictionary.items() for s in (uid, entry[0]))


def _blank_quoted(match: re.Match[str]) -> str:
    """A quoted value blanked, unless it is a public UID or its name (kept: users act on it)."""
    inner = match.group(0).removeprefix("b")[1:-1]
    return match.group(0) if inner in _public_uids() else "'…'"


def _blank_number(match: re.Match[str]) -> str:
    """A long number blanked, unless it is a public UID."""
    return match.group(0) if match.group(0) in _public_uids() else "#"


def scrub_reason(reason: str) -> str:
    """A quarantine reason safe for run records and logs: quoted values and long numbers blanked.

    medveil's own reasons name tags and rules, never values; an unexpected exception's
    message may quote a value (a name, a date, a UID), so those are cut out. Public UIDs
    and their names (a transfer syntax, a SOP class) stay. A long reason is cut at a
    word, not inside one.
    """
    text = _NUMBERS.sub(_blank_number, _QUOTED.sub(_blank_quoted, reason))
    if len(text) <= MAX_REASON:
        return text
    cut = text.rfind(" ", 0, MAX_REASON)
    return text[: cut if cut > MAX_REASON // 2 else MAX_REASON] + " …"


MAX_REASON = 300


def describe_exception(exc: BaseException) -> str:
    """An unexpected failure as a user can act on it, without values taken from the file.

    The exception type, the attribute or module a lookup missed and the innermost code
    location are not PHI and say what went wrong; the message's quoted values and long
    numbers are blanked as in :func:`scrub_reason`.
    """
    kind = type(exc).__name__
    if isinstance(exc, AttributeError) and exc.name is not None:
        owner = type(exc.obj).__name__ if exc.obj is not None else "object"
        text = f"{kind}: {owner!r} object has no attribute {exc.name!r}"
    elif isinstance(exc, ImportError) and exc.name is not None:
        text = f"{kind}: cannot import {exc.name!r}"
    else:
        text = scrub_reason(f"{kind}: {exc}")
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        code = tb.tb_frame.f_code
        parts = PurePosixPath(code.co_filename.replace("\\", "/")).parts
        where = "/".join(parts[-2:])
        text += f" (at {where}:{tb.tb_lineno} in {code.co_name})"
    return text


# The raw-byte engine gives the same bytes as the Dataset engine, faster; tests turn it off
# to compare the two.
USE_RAW_ENGINE = True
# The native road (engine/native.py) gives the raw-byte engine's bytes, faster still; tests
# turn it off (or on alone) to compare the roads.
USE_NATIVE_ENGINE = True


def native_engine_of(engine: Deidentifier) -> NativeEngine:
    """The native road sharing ``engine``'s policy and secret (its table made once)."""
    native = getattr(engine, "_native_engine", None)
    if native is None:
        native = NativeEngine(engine, raw_engine_of(engine))
        engine._native_engine = native  # type: ignore[attr-defined]
    return native


def _post_checked(parts: list[bytes], terms: Terms, allow: Allowance) -> list[bytes]:
    """Post-check the output; the one buffer checked, to be written, hashed and read back.

    The check needs the file whole: joined once here, and that very buffer (immutable) is
    what is written, so what was checked is what lands, and the reference reader finds
    the check's scan by identity instead of joining and scanning a cine again.
    """
    data = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)
    check_written(data, terms, allow)
    return [data]


def _clean_native(
    engine: Deidentifier, raw: bytes | bytearray | memoryview, name: str, terms: Terms
) -> CleanResult | str:
    """clean_instance through the native road; why not, when Python must take the file."""
    size_in = len(raw)
    try:
        out = native_engine_of(engine).apply(raw, name)
        if isinstance(out, Exception):
            raise out
        if isinstance(out, str):
            return out
        # The same post-check as the other roads, on the bytes to be written.
        allow = engine.allowance
        checked = _post_checked(out.parts, terms, allow)  # type: ignore[arg-type]
        # The output's values from the core's catalog bytes: its Dataset view only when
        # they need pydicom to decode them.
        peeks = out.peeks()
        return _written(
            out.final if peeks is None else None,
            checked,
            out.report,
            size_in,
            "native",
            terms=terms,
            allow=allow,
            sha256=out.sha256,
            peeks=peeks,
        )
    except Exception as exc:  # fail closed: anything unexpected keeps the file out
        return _quarantined(exc, size_in)


def raw_engine_of(engine: Deidentifier) -> RawEngine:
    """The raw-byte engine sharing ``engine``'s policy and secret (made once per engine)."""
    raw = getattr(engine, "_raw_engine", None)
    if raw is None:
        raw = engine._raw_engine = RawEngine(engine)  # type: ignore[attr-defined]
    return raw


def _clean_raw(
    engine: Deidentifier,
    raw: bytes | bytearray | memoryview,
    name: str,
    terms: Terms | None = None,
) -> CleanResult | str:
    """clean_instance through the raw-byte engine; why not, when the file needs the Dataset one.

    ``terms``: the post-check's terms when the caller already learned them.
    """
    size_in = len(raw)
    if terms is None:
        damaged = _damaged(raw)
        if damaged is not None:
            return damaged
    try:
        # Learned before the engine runs: it may mask the pixels of ``raw`` in place.
        terms = learn_terms(raw) if terms is None else terms
        try:
            out = raw_engine_of(engine).apply(raw, name)
        except NotRaw as why:
            return str(why)
        # One post-check for both roads (check_written), so they agree byte for byte.
        allow = engine.allowance
        checked = _post_checked(out.parts, terms, allow)  # type: ignore[arg-type]
        return _written(
            out.final,
            checked,
            out.report,
            size_in,
            "raw",
            terms=terms,
            allow=allow,
            # Hashed by the raw-byte engine while it joined the output: the very buffer
            # that is written (checked[0] is out.parts[0] when the output came joined).
            sha256=out.sha256 if checked[0] is out.parts[0] else None,
        )
    except Exception as exc:  # fail closed: anything unexpected keeps the file out
        return _quarantined(exc, size_in)


def _learn(
    engine: Deidentifier, raw: bytes | bytearray | memoryview, first: tuple[object, ...]
) -> None:
    """Teach the native road the answers the raw-byte engine just gave for this file.

    ``first`` is the native road's first pass over this very file; the raw-byte engine's
    patient context is the one it made for this file (reset before it ran).
    """
    native = native_engine_of(engine)
    try:
        native.learn(raw, first)
    except Exception:  # a cache left unfilled only costs speed: the next file asks again
        return


def _damaged(raw: bytes | bytearray | memoryview) -> CleanResult | None:
    """A quarantine result when the file's structure is inconsistent, before any engine.

    Neither engine may read a damaged file tolerantly: a length that overruns swallows
    the elements after it, and a tolerant reader then releases what it swallowed.
    """
    return _damaged_scan(raw)[0]


def _damaged_scan(
    raw: bytes | bytearray | memoryview,
) -> tuple[CleanResult | None, Prescan | None]:
    """_damaged, plus the strict check's scanner rows of ``raw`` (for learn_terms)."""
    try:
        return None, check_structure_scan(raw)[1]
    except Exception as exc:
        return _quarantined(exc, len(raw)), None


def _written(
    ds: Dataset | None,
    parts: list[bytes],
    report: DeidReport,
    size_in: int,
    engine: str,
    originals: dict[str, str] | None = None,
    *,
    terms: Terms,
    allow: Allowance,
    sha256: str | None = None,
    peeks: Peeks | None = None,
) -> CleanResult:
    """The result for a written file: its path, catalog row and records, from the output's ds.

    The path and the catalog row are checked for the input's terms like the file itself:
    QuarantineError if either would carry an original value. ``peeks``: readers of ds's
    values that do not need ds (the native road's, from its catalog bytes).
    """
    if peeks is None:
        if ds is None:
            raise ValueError("_written needs the output's Dataset or its peeks")
        peeks = _peeks(ds)
    relpath = _relpath(peeks[0])
    row = _catalog_row(peeks, relpath, parts, sha256)
    check_record([relpath, *(v for v in row.values() if isinstance(v, str))], terms, allow)
    pixels = report.pixels.record(relpath) if report.pixels is not None else None  # type: ignore[attr-defined]
    identity: dict[str, object] = {}
    if originals is not None:
        if ds is None:
            raise ValueError("_written needs the output's Dataset for the originals")
        identity = identity_of(originals, ds, relpath.split("/", 1)[0], report.date_offset_days)
    return CleanResult(
        "written",
        "",
        size_in,
        parts,
        relpath,
        row,
        dict(report.actions),
        pixels,
        identity,
        engine,
    )


def _quarantined(exc: Exception, size_in: int) -> CleanResult:
    """The result for a file that cannot be cleaned for sure, with a reason free of values."""
    if isinstance(exc, (MedveilError, QuarantineError)):
        return CleanResult("quarantined", scrub_reason(str(exc).replace("input: ", "")), size_in)
    return CleanResult("quarantined", describe_exception(exc), size_in)


def _excluded(engine: Deidentifier, raw: bytes | bytearray | memoryview) -> str | None:
    """The filter rule that excludes this input, or None (no filters, or it passes them).

    The header is read without the pixel data, only when the policy has filters.
    """
    filters = engine.compiled.filters
    if not any(r.kind in ("include", "exclude") for r in filters):
        return None
    # A bytearray is read in place (large values stay views of it): no copy of the pixels.
    src = raw if isinstance(raw, (bytearray, memoryview)) and in_place(raw) else io.BytesIO(raw)
    return filter_verdict(read_dataset(src, "input", strict=False), filters)


def clean_instance(
    engine: Deidentifier,
    raw: bytes | bytearray | memoryview,
    name: str = "input",
    *,
    capture_identity: bool = False,
    embed: OriginalsEmbedder | None = None,
    max_size: int | None = None,
) -> CleanResult:
    """De-identify and post-check one file's bytes; never raises for a bad input.

    Given a bytearray or a writable memoryview, large values are not copied: pixel data
    is masked in place in it and the result's parts refer to it. ``capture_identity``
    fills ``result.identity`` for the re-identification vault; ``embed`` seals the
    replaced originals into the Encrypted Attributes Sequence (PS3.15 E.1.1).
    A deflated data set is inflated first, bounded by ``max_size`` (default
    :data:`medveil.dicom.io.MAX_INFLATED`), and cleaned and written as Explicit VR LE.
    """
    size_in = len(raw)
    if size_in == 0:
        return CleanResult("skipped", "empty file")
    if not looks_like_dicom(bytes(raw[:132])):
        return CleanResult("skipped", "not DICOM", size_in)
    try:
        # One bounded buffer for the whole file, before any reader: the strict check,
        # pydicom and the post-check would each inflate it whole (a bomb, 8 x the file).
        inflated = inflate_file(raw, max_size)
    except Exception as exc:
        return _quarantined(exc, size_in)
    if inflated is not None:
        raw = inflated
    damaged, prescan = _damaged_scan(raw)
    if damaged is not None:
        return damaged
    try:
        # Before any cleaning: an excluded instance is not processed at all.
        rule = _excluded(engine, raw)
    except Exception as exc:
        return _quarantined(exc, size_in)
    if rule is not None:
        return CleanResult("excluded", rule, size_in)
    try:
        # From the input's bytes, before an engine may mask its pixels in place.
        terms = learn_terms(raw, prescan)  # the strict check's rows: the same bytes
    except Exception as exc:
        return _quarantined(exc, size_in)
    declined = "raw-byte engine off" if not USE_RAW_ENGINE else "vault capture"
    native_declined = ""
    first: tuple[object, ...] | None = None
    if USE_RAW_ENGINE and USE_NATIVE_ENGINE and not capture_identity and embed is None:
        done = _clean_native(engine, raw, name, terms)
        if isinstance(done, CleanResult):
            return done
        native_declined = done
        if native_declined.startswith("miss: "):
            first = native_engine_of(engine).first_pass[0]
    if (
        USE_RAW_ENGINE
        and not capture_identity
        and embed is None
        and not native_declined.startswith("dataset: ")
    ):
        raw_engine = raw_engine_of(engine)
        raw_engine.last_ctx = None  # learned from below only when set by this very file
        done = _clean_raw(engine, raw, name, terms)
        if isinstance(done, CleanResult):
            done.native_declined = native_declined
            if first is not None and done.status == "written" and done.engine == "raw":
                _learn(engine, raw, first)
            return done
        declined = done
    elif native_declined:
        declined = native_declined
    try:
        # Read in place (the archive's read buffer): pixel data stays a view of it.
        src = raw if isinstance(raw, (bytearray, memoryview)) and in_place(raw) else io.BytesIO(raw)
        ds = read_dataset(src, "input", strict=False)  # validated above
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise DicomInputError("not a composite instance: no SOP Class or SOP Instance UID")
        originals = read_originals(ds) if capture_identity else None
        before = embed.snapshot(ds) if embed is not None else None
        report = engine.apply(ds, source=name, check=False)  # checked below, on the bytes
        if embed is not None:
            embed.embed(before, ds)  # type: ignore[arg-type]
        parts, _ = write_fast_or_generic(ds)
        allow = engine.allowance
        checked = _post_checked(parts, terms, allow)
        result = _written(
            ds, checked, report, size_in, "dataset", originals, terms=terms, allow=allow
        )
        result.declined = declined
        result.native_declined = native_declined
        return result
    except Exception as exc:  # fail closed: anything unexpected keeps the file out
        return _quarantined(exc, size_in)
