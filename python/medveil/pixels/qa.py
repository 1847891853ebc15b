"""Visual QA of pixel cleaning: contact sheets of windowed thumbnails, grouped by device.

``medveil qa OUTPUT`` reads the de-identified files of an archive run and writes
``OUTPUT/.medveil/qa/index.html`` with one PNG contact sheet per device (Manufacturer +
model), each thumbnail showing the first frame, windowed for display, with the blanked
rectangles outlined in red and the pixel rules that fired written under it. A reviewer can
scan thousands of images in minutes for text the rules missed. Boxes found by burned-in
text detection (policy ``pixel_text = "detect"``) are outlined in cyan when masked and in
green when kept (``mask = "identifiers"``: OCR read text that matched no identifier); the
OCR text itself is never recorded, only its length, shown as ``▮▮▮▮▮ (5 chars)``.

Which rules fired comes from ``OUTPUT/.medveil/pixels.jsonl`` (one JSON object per line:
``{"path": relative path, "rules": [ids], "regions": [[r0, r1, c0, c1, f0, f1], ...]}``)
when the run wrote it; otherwise the rules are matched again against the output headers,
which finds every rule whose attributes the de-identification kept (the page says which
source was used).

Quarantined inputs are never shown unless asked for (``include_quarantined=INPUT``): their
thumbnails come from the *input* side and may show PHI, and the page says so in red.
Pillow is needed (``pip install medveil[qa]``).
"""

from __future__ import annotations

import html
import json
import os
import random
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom

from medveil.errors import MedveilError
from medveil.pixels.rules import RuleSet

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

RECORDS = ".medveil"
PIXEL_RECORDS = "pixels.jsonl"
QUARANTINE = "quarantine.jsonl"
CATALOG = "catalog.sqlite"
#: Files an archive or Spark run writes under OUTPUT/.medveil; one of them marks a run's output.
RUN_MARKERS = (CATALOG, "catalog.parquet", "summary.json", PIXEL_RECORDS)
#: The DICOMDIR file set a run writes (hard links to released files: not shown twice).
DICOMDIR_FOLDER = "dicomdir"
#: The reviewer's decisions, in OUTPUT (next to the released tree, read by deid --resume).
SIGNOFF = "qa-signoff.json"
#: Every released path a QA page listed (OUTPUT/.medveil): a rejected file that a resumed run
#: has since quarantined stays a known path of the sign-off.
MANIFEST = "qa-manifest.json"
#: Keys of qa-signoff.json: required, then optional.
SIGNOFF_KEYS = ("reviewer", "time", "approved", "rejected")
SIGNOFF_OPTIONAL = ("version", "page")
SIGNOFF_VERSION = 1
#: A sign-off larger than this is not a reviewer's file (about 300 bytes per path allows 200k).
MAX_SIGNOFF_BYTES = 64 << 20
#: Outline colours: rule rectangles, detected text masked, detected text kept.
RULE_COLOUR = (255, 0, 0)
DETECTED_COLOUR = (0, 200, 255)
KEPT_COLOUR = (0, 220, 0)
#: Words in a quarantine reason that say the pixels were the problem.
PIXEL_REASON_WORDS = ("pixel", "burned-in", "burnedinannotation", "decode", "bitsstored", "highbit")


@dataclass
class QaItem:
    """One image on the QA page."""

    path: Path
    label: str
    device: str
    rules: list[str] = field(default_factory=list)
    regions: list[tuple[int, ...]] = field(default_factory=list)
    note: str = ""
    quarantined: bool = False
    detected: list[dict[str, Any]] = field(default_factory=list)  # detection records, no text


# ---------------------------------------------------------------------------- run output
class NotRunOutputError(MedveilError, ValueError):
    """The folder given to ``medveil qa`` is not the OUTPUT of a de-identification run."""


class SignoffError(MedveilError, ValueError):
    """qa-signoff.json is malformed or names a file the run did not release."""


def check_run_output(output: Path) -> None:
    """Raise NotRunOutputError unless ``output`` holds a run's records (OUTPUT/.medveil)."""
    if not output.is_dir():
        raise NotRunOutputError(f"{output}: not a folder (give the OUTPUT folder of a run)")
    records = output / RECORDS
    if not records.is_dir() or not any((records / m).is_file() for m in RUN_MARKERS):
        # Without the records nothing says the images were de-identified: a page of them
        # could show PHI, so the folder is refused rather than rendered.
        raise NotRunOutputError(
            f"{output}: not the output of a medveil run (no {RECORDS}/{CATALOG} or "
            f"{RECORDS}/summary.json); give the OUTPUT folder of `medveil deid INPUT OUTPUT`"
        )


def _catalog_paths(output: Path) -> list[str] | None:
    """Released paths from the run's catalog, or None when the run left no SQLite catalog."""
    db_path = output / RECORDS / CATALOG
    if not db_path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:  # read-only open refused (a WAL file without its -shm): plain open
        db = sqlite3.connect(db_path)
    try:
        rows = db.execute("SELECT DISTINCT path FROM instances ORDER BY path").fetchall()
    except sqlite3.Error as exc:
        raise NotRunOutputError(f"{db_path}: not a readable run catalog ({exc})") from exc
    finally:
        db.close()
    return [str(p) for (p,) in rows if p]


def _walk_release(output: Path) -> list[str]:
    """Files of the release tree on disk: not the records, not the DICOMDIR file set."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(output):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d != RECORDS
            and not (here == output and d == DICOMDIR_FOLDER and (here / d / "DICOMDIR").exists())
        )
        for name in sorted(filenames):
            if here == output and name == SIGNOFF:
                continue
            found.append((here / name).relative_to(output).as_posix())
    return found


def released_paths(output: Path) -> list[str]:
    """Release-tree relative paths of the run's released files that are on disk, sorted."""
    check_run_output(output)
    listed = _catalog_paths(output)
    if listed is None:  # a Spark run without catalog.sqlite: the tree itself
        return _walk_release(output)
    return [p for p in listed if _safe_relpath(p) and (output / p).is_file()]


def _manifest_paths(output: Path) -> set[str]:
    """Paths earlier QA pages listed (empty when none was built or the file is unreadable)."""
    try:
        data = json.loads((output / RECORDS / MANIFEST).read_text(encoding="utf-8"))
        return {p for p in data.get("paths", []) if isinstance(p, str)}
    except (OSError, ValueError, AttributeError):
        return set()


def _record_manifest(output: Path, paths: Iterable[str]) -> None:
    """Add the paths a page lists to OUTPUT/.medveil/qa-manifest.json (atomic replace)."""
    merged = sorted(_manifest_paths(output) | set(paths))
    _atomic_write(output / RECORDS / MANIFEST, json.dumps({"paths": merged}, indent=0))


def known_paths(output: Path) -> set[str]:
    """Paths a sign-off may name: the catalog's released files and every path a page listed."""
    check_run_output(output)
    listed = _catalog_paths(output)
    known = set(_walk_release(output) if listed is None else listed)
    return known | _manifest_paths(output)


def _atomic_write(path: Path, text: str) -> None:
    """Write text to path through a temporary in the same folder, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- sign-off
@dataclass(frozen=True)
class Signoff:
    """A reviewer's decisions on the QA page; paths are relative to the release tree."""

    reviewer: str
    time: str
    approved: frozenset[str]
    rejected: frozenset[str]

    def to_json(self) -> str:
        """The qa-signoff.json text: sorted paths, so equal sign-offs give equal files."""
        return json.dumps(
            {
                "version": SIGNOFF_VERSION,
                "reviewer": self.reviewer,
                "time": self.time,
                "approved": sorted(self.approved),
                "rejected": sorted(self.rejected),
            },
            indent=2,
            ensure_ascii=False,
        )


def _safe_relpath(path: str) -> bool:
    """True for a plain relative POSIX path inside the release tree (no .., no records)."""
    if not path or "\\" in path or any(ord(c) < 0x20 or c == "\x7f" for c in path):
        return False
    pure = PurePosixPath(path)
    parts = path.split("/")
    return (
        not pure.is_absolute()
        and all(p not in ("", ".", "..") for p in parts)
        and parts[0] != RECORDS
        and ":" not in parts[0]  # a Windows drive ("C:") is not a release path
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object hook refusing a key given twice (the second would win silently)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} given twice")
        out[k] = v
    return out


def _refuse_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which are not JSON."""
    raise ValueError(f"{name} is not JSON")


def parse_signoff(text: str | bytes, known: Collection[str], source: str = SIGNOFF) -> Signoff:
    """Validate a sign-off's JSON strictly against the known release paths; SignoffError if not."""

    def bad(why: str) -> SignoffError:
        return SignoffError(f"{source}: {why}")

    if len(text) > MAX_SIGNOFF_BYTES:
        raise bad(f"larger than {MAX_SIGNOFF_BYTES} bytes, not a sign-off")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise bad("expected a JSON object with reviewer, time, approved and rejected")
    missing = [k for k in SIGNOFF_KEYS if k not in data]
    if missing:
        raise bad(f"missing key(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(SIGNOFF_KEYS) - set(SIGNOFF_OPTIONAL))
    if unknown:
        raise bad(f"unknown key(s): {', '.join(unknown)}")
    if "version" in data and (type(data["version"]) is not int or data["version"] != 1):
        raise bad(f"version must be {SIGNOFF_VERSION}")
    if "page" in data and not isinstance(data["page"], str):
        raise bad("page must be a string")
    reviewer = data["reviewer"]
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise bad("reviewer must be a non-empty string")
    if len(reviewer) > 200 or any(ord(c) < 0x20 or c == "\x7f" for c in reviewer):
        raise bad("reviewer must be one line of at most 200 characters")
    when = data["time"]
    if not isinstance(when, str):
        raise bad("time must be an ISO 8601 string such as 2026-12-06T20:31:00Z")
    try:
        stamp = datetime.fromisoformat(when)
    except ValueError as exc:
        raise bad(f"time {when!r} is not ISO 8601 (e.g. 2026-12-06T20:31:00Z)") from exc
    if stamp.tzinfo is None:
        raise bad(f"time {when!r} has no time zone (add Z for UTC)")
    decided: dict[str, frozenset[str]] = {}
    for key in ("approved", "rejected"):
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise bad(f"{key} must be a list of paths relative to the output folder")
        seen: set[str] = set()
        for p in value:
            if not _safe_relpath(p):
                raise bad(f"{key}: {p!r} is not a relative path inside the release tree")
            if p in seen:
                raise bad(f"{key}: {p!r} listed twice")
            if p not in known:
                raise bad(f"{key}: {p!r} is not a file this run released")
            seen.add(p)
        decided[key] = frozenset(seen)
    both = sorted(decided["approved"] & decided["rejected"])
    if both:
        raise bad(f"{both[0]!r} is both approved and rejected")
    return Signoff(reviewer.strip(), when, decided["approved"], decided["rejected"])


def read_signoff(output_dir: Path) -> Signoff | None:
    """The sign-off of a run's OUTPUT, or None when there is none; SignoffError if bad."""
    output_dir = Path(output_dir)
    path = output_dir / SIGNOFF
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():
        raise SignoffError(f"{path}: not a regular file")
    try:
        check_run_output(output_dir)
    except NotRunOutputError as exc:
        raise SignoffError(str(exc)) from exc
    with open(path, "rb") as f:
        text = f.read(MAX_SIGNOFF_BYTES + 1)
    return parse_signoff(text, known_paths(output_dir), source=str(path))


def write_signoff(output_dir: Path, signoff: Signoff) -> Path:
    """Validate and write OUTPUT/qa-signoff.json atomically; return its path."""
    output_dir = Path(output_dir)
    text = signoff.to_json()
    parse_signoff(text, known_paths(output_dir))  # the file written is one read_signoff takes
    path = output_dir / SIGNOFF
    _atomic_write(path, text + "\n")
    return path


def import_signoff(output_dir: Path, source: Path) -> Signoff:
    """Validate a sign-off downloaded from the page and install it as OUTPUT/qa-signoff.json."""
    output_dir = Path(output_dir)
    try:
        with open(source, "rb") as f:
            text = f.read(MAX_SIGNOFF_BYTES + 1)
    except OSError as exc:
        raise SignoffError(f"{source}: cannot read ({exc.strerror or exc})") from exc
    signoff = parse_signoff(text, known_paths(output_dir), source=str(source))
    write_signoff(output_dir, signoff)
    return signoff


def redacted(text_len: object) -> str:
    """OCR text shown as its length only (it is PHI): '▮▮▮▮▮ (5 chars)'."""
    if not isinstance(text_len, int) or isinstance(text_len, bool):
        return "not read by OCR"
    return f"{'▮' * min(text_len, 24)} ({text_len} char{'' if text_len == 1 else 's'})"


def _is_detected(reg: tuple[int, ...], boxes: set[tuple[int, int, int, int]]) -> bool:
    """True when a masked region is one of the detected boxes (give or take a pixel pair)."""
    r0, r1, c0, c1 = reg[:4]
    return any(
        r0 == b[0] and r1 == b[1] and abs(c0 - b[2]) <= 1 and abs(c1 - b[3]) <= 1 for b in boxes
    )


def _require_pillow() -> None:
    try:
        import PIL  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("medveil qa needs Pillow: pip install 'medveil[qa]'") from exc


def device_of(ds: pydicom.Dataset) -> str:
    """A device label from the header: Modality, Manufacturer and model (kept by PS3.15)."""
    parts = [str(ds.get(k, "") or "").strip() for k in ("Manufacturer", "ManufacturerModelName")]
    dev = " ".join(p for p in parts if p) or "unknown device"
    modality = str(ds.get("Modality", "") or "").strip()
    return f"{modality} · {dev}" if modality else dev


def _dicom_files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != RECORDS)
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _read_records(output: Path) -> dict[str, dict[str, Any]]:
    path = output / RECORDS / PIXEL_RECORDS
    out: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                out[str(rec["path"])] = rec
    return out


def collect(output: Path, rules: RuleSet | None = None) -> tuple[list[QaItem], str]:
    """List the output's DICOM images with device, rules and regions; also say the source."""
    records = _read_records(output)
    rules = RuleSet.default() if rules is None else rules
    items: list[QaItem] = []
    for path in _dicom_files(output):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM (or unreadable): not an image to review
            continue
        if "Rows" not in ds:
            continue
        rel = path.relative_to(output).as_posix()
        item = QaItem(path=path, label=rel, device=device_of(ds))
        if rel in records:
            item.rules = list(records[rel].get("rules", []))
            item.regions = [tuple(int(v) for v in r) for r in records[rel].get("regions", [])]
            item.detected = list(records[rel].get("detected", []))
        elif not records:
            fired = rules.matching(ds)
            item.rules = [r.id for r in fired]
            frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
            item.regions = [
                (r0, r1, c0, c1, f0, frames if f1 is None else min(f1, frames))
                for rule in fired
                for r0, r1, c0, c1, f0, f1 in rule.regions
                if f0 < frames
            ]
        items.append(item)
    source = (
        f"rules and rectangles as recorded by the run ({RECORDS}/{PIXEL_RECORDS})"
        if records
        else "rules matched again on the de-identified headers (the run left no pixel records; "
        "rules on attributes the profile removed cannot show here)"
    )
    return items, source


def quarantined_items(output: Path, input_root: Path) -> list[QaItem]:
    """The inputs quarantined for pixel reasons, found under ``input_root`` (they show PHI)."""
    path = output / RECORDS / QUARANTINE
    items: list[QaItem] = []
    if not path.exists():
        return items
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        reason = str(rec.get("reason", ""))
        if not any(w in reason.lower() for w in PIXEL_REASON_WORDS):
            continue
        src = input_root / str(rec.get("input", ""))
        items.append(
            QaItem(
                path=src,
                label=str(rec.get("input", "")),
                device="quarantined (input side)",
                note=reason,
                quarantined=True,
            )
        )
    return items


def sample_items(items: Sequence[QaItem], n: int | None, seed: int = 0) -> list[QaItem]:
    """Pick ``n`` items spread over the devices (round robin over shuffled groups)."""
    if n is None or n >= len(items):
        return list(items)
    rng = random.Random(seed)
    groups: dict[str, list[QaItem]] = defaultdict(list)
    for it in items:
        groups[it.device].append(it)
    for g in groups.values():
        rng.shuffle(g)
    picked: list[QaItem] = []
    queues = [groups[k] for k in sorted(groups)]
    while len(picked) < n:
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop())
    return picked


def display_u8(ds: pydicom.Dataset, frame: np.ndarray) -> np.ndarray:
    """Window one frame for display: uint8, (rows, cols) grey or (rows, cols, 3) colour."""
    from pydicom.pixels.processing import apply_modality_lut

    if frame.ndim == 3:  # colour: already RGB from the decoder; scale deeper samples
        arr = frame.astype(np.float64)
        top = float((1 << int(ds.get("BitsStored", 8))) - 1)
        return np.clip(arr / max(top, 1.0) * 255.0, 0, 255).astype(np.uint8)
    arr = np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        c = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        lo, hi = c - w / 2.0, c + w / 2.0
    else:
        lo, hi = (float(v) for v in np.percentile(arr, [1, 99]))
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((arr - lo) / (hi - lo) * 255.0, 0, 255)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255.0 - out
    return out.astype(np.uint8)


def thumbnail(item: QaItem, size: int = 256) -> Image.Image:
    """Render the item's first frame at most ``size`` px wide/high, rectangles outlined."""
    from PIL import Image, ImageDraw
    from pydicom.pixels.utils import pixel_array

    try:
        ds = pydicom.dcmread(item.path)
        frame = pixel_array(ds, index=0)
        img = Image.fromarray(display_u8(ds, frame)).convert("RGB")
    except Exception as exc:  # a tile that says why, rather than a missing tile
        img = Image.new("RGB", (size, size), (60, 0, 0))
        ImageDraw.Draw(img).text((4, 4), f"cannot render:\n{type(exc).__name__}", fill="white")
        item.note = item.note or f"not rendered ({type(exc).__name__})"
        return img
    rows, cols = frame.shape[:2]
    scale = min(size / cols, size / rows, 1.0)
    if scale < 1.0:
        img = img.resize(
            (max(1, round(cols * scale)), max(1, round(rows * scale))), Image.Resampling.BILINEAR
        )
    draw = ImageDraw.Draw(img)

    def outline(r0: int, r1: int, c0: int, c1: int, colour: tuple[int, int, int]) -> None:
        """Draw a box given in image pixels, scaled to the thumbnail."""
        box = (
            c0 * scale,
            r0 * scale,
            max(c0 * scale, c1 * scale - 1),
            max(r0 * scale, r1 * scale - 1),
        )
        draw.rectangle(box, outline=colour, width=2)

    shown = [d for d in item.detected if d.get("frame", 0) == 0]
    detected_boxes = {tuple(int(v) for v in d["box"]) for d in item.detected}
    for reg in item.regions:
        f0, f1 = (reg[4], reg[5]) if len(reg) == 6 else (0, 1)
        if not f0 <= 0 < f1:
            continue  # the rectangle is on other frames, not the one shown
        if not _is_detected(reg, detected_boxes):  # type: ignore[arg-type]
            r0, r1, c0, c1 = (int(v) for v in reg[:4])
            outline(r0, r1, c0, c1, RULE_COLOUR)
    for d in shown:
        r0, r1, c0, c1 = (int(v) for v in d["box"])
        outline(r0, r1, c0, c1, DETECTED_COLOUR if d.get("masked") else KEPT_COLOUR)
    return img


def contact_sheet(
    items: Sequence[QaItem], start: int, size: int = 256, columns: int = 6
) -> Image.Image:
    """Tile thumbnails with captions (number, rules fired) in a grid."""
    from PIL import Image, ImageDraw

    cap = 28
    rows = (len(items) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (size + 8) + 8, rows * (size + cap + 8) + 8), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, it in enumerate(items):
        x = 8 + (i % columns) * (size + 8)
        y = 8 + (i // columns) * (size + cap + 8)
        tile = thumbnail(it, size)
        sheet.paste(tile, (x + (size - tile.width) // 2, y + (size - tile.height) // 2))
        rules = (
            ", ".join(it.rules) if it.rules else ("QUARANTINED" if it.quarantined else "no rule")
        )
        if it.detected:
            rules += f" +{sum(1 for d in it.detected if d.get('masked'))} detected"
        draw.text((x, y + size + 2), f"#{start + i} {rules}"[:48], fill=(255, 255, 0))
        if it.note:
            draw.text((x, y + size + 14), it.note[:48], fill=(255, 128, 128))
    return sheet


def _swatch(colour: tuple[int, int, int]) -> str:
    r, g, b = colour
    return (
        f"<span style='display:inline-block;width:1em;height:1em;vertical-align:middle;"
        f"border:2px solid rgb({r},{g},{b})'></span>"
    )


def _legend() -> str:
    """The HTML legend of the outline colours."""
    return (
        "<p class='legend'>"
        f"{_swatch(RULE_COLOUR)} blanked by a device pixel rule &nbsp; "
        f"{_swatch(DETECTED_COLOUR)} burned-in text found by detection, blanked &nbsp; "
        f"{_swatch(KEPT_COLOUR)} text found and read by OCR, kept (matched no identifier "
        "of the file). OCR text is shown by its length only: ▮▮▮▮▮ (5 chars).</p>"
    )


def _detected_cell(detected: list[dict[str, Any]]) -> str:
    """Detected boxes of the first frame with their decision and redacted text."""
    rows = []
    for d in detected:
        if d.get("frame", 0) != 0:
            continue
        box = ",".join(str(int(v)) for v in d.get("box", []))
        state = "masked" if d.get("masked") else "kept"
        why = str(d.get("why", ""))
        rows.append(
            f"{state} [{html.escape(box)}] {html.escape(why)}: "
            f"{html.escape(redacted(d.get('text_len')))}"
        )
    more = sum(1 for d in detected if d.get("frame", 0) != 0)
    if more:
        rows.append(f"(+{more} on other frames)")
    return "<br>".join(rows)


def write_report(
    output: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    rules: RuleSet | None = None,
    include_quarantined: str | os.PathLike[str] | None = None,
    size: int = 256,
    per_sheet: int = 36,
) -> Path:
    """Write the QA page and contact sheets for an archive run's OUTPUT; return index.html."""
    _require_pillow()
    output = Path(output)
    dest = Path(out_dir) if out_dir else output / RECORDS / "qa"
    dest.mkdir(parents=True, exist_ok=True)
    items, source = collect(output, rules)
    total = len(items)
    items = sample_items(items, sample, seed)
    groups: dict[str, list[QaItem]] = defaultdict(list)
    for it in items:
        groups[it.device].append(it)
    quarantined: list[QaItem] = []
    if include_quarantined is not None:
        quarantined = quarantined_items(output, Path(include_quarantined))
        if quarantined:
            groups["quarantined (input side)"] = quarantined
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>medveil pixel QA</title>",
        "<style>body{font-family:sans-serif;background:#111;color:#ddd;margin:2em}"
        "img{max-width:100%;border:1px solid #444}table{border-collapse:collapse;font-size:90%}"
        "td,th{border:1px solid #444;padding:2px 6px}.phi{background:#700;color:#fff;"
        "padding:1em;font-weight:bold}</style></head><body>",
        "<h1>medveil pixel QA</h1>",
        f"<p>{len(items)} of {total} de-identified images"
        + (f" (a sample spread over devices, seed {seed})" if len(items) < total else "")
        + f", in {sum(1 for g in groups if not g.startswith('quarantined'))} device groups. "
        "Look for text outside the outlined boxes.</p>",
        _legend(),
        f"<p>Source of rules and rectangles: {html.escape(source)}.</p>",
    ]
    if include_quarantined is not None:
        parts.append(
            "<p class='phi'>This page includes thumbnails of QUARANTINED INPUT files "
            f"({len(quarantined)}), rendered from the original, identified data: they may show "
            "patient names, dates and other PHI, and so may their file names. Handle this page "
            "as identified data.</p>"
        )
    sheet_no = 0
    for device in sorted(groups, key=lambda d: (d.startswith("quarantined"), d)):
        members = groups[device]
        fired: dict[str, int] = defaultdict(int)
        for it in members:
            for r in it.rules:
                fired[r] += 1
        parts.append(f"<h2>{html.escape(device)} — {len(members)} image(s)</h2>")
        summary = ", ".join(f"{html.escape(r)} ×{n}" for r, n in sorted(fired.items())) or "none"
        parts.append(f"<p>Rules fired: {summary}</p>")
        for start in range(0, len(members), per_sheet):
            chunk = members[start : start + per_sheet]
            sheet_no += 1
            name = f"sheet-{sheet_no:03d}.png"
            contact_sheet(chunk, start + 1, size=size).save(dest / name, optimize=True)
            parts.append(f"<p><img src='{name}' alt='{html.escape(device)} sheet'></p>")
        parts.append(
            "<table><tr><th>#</th><th>file</th><th>rules</th><th>rectangles</th>"
            "<th>detected text (first frame)</th><th>note</th></tr>"
        )
        for i, it in enumerate(members, start=1):
            regs = "; ".join(",".join(str(v) for v in r) for r in it.regions)
            parts.append(
                f"<tr><td>{i}</td><td>{html.escape(it.label)}</td>"
                f"<td>{html.escape(', '.join(it.rules))}</td><td>{html.escape(regs)}</td>"
                f"<td>{_detected_cell(it.detected)}</td>"
                f"<td>{html.escape(it.note)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    index = dest / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
