"""The QA page of a run: every frame of every released image, per device, and a sign-off.

``medveil qa OUTPUT`` refuses a folder that is not a run's OUTPUT (no ``OUTPUT/.medveil``
records) and writes ``OUTPUT/.medveil/qa/index.html`` from the released, de-identified
files only (the run's catalog lists them; the DICOMDIR file set and stray files are not
shown). Sections group the images by device as the output keeps it (Modality,
Manufacturer, model, and StationName when the policy retains it). Each image has a
filmstrip with one thumbnail per frame; a click opens that frame at full resolution.
Windowed frames show the blanked rectangles outlined in red and the pixel rules that
fired. Boxes found by burned-in text detection (policy ``pixel_text = "detect"``) are
outlined in cyan when masked and in green when kept (``mask = "identifiers"``: OCR read
text that matched no identifier); the OCR text itself is never recorded, only its length,
shown as ``▮▮▮▮▮ (5 chars)``.

Which rules fired comes from ``OUTPUT/.medveil/pixels.jsonl`` (one JSON object per line:
``{"path": relative path, "rules": [ids], "regions": [[r0, r1, c0, c1, f0, f1], ...]}``)
when the run wrote it; otherwise the rules are matched again against the output headers,
which finds every rule whose attributes the de-identification kept (the page says which
source was used).

Sign-off: the reviewer marks images approved or rejected on the page (kept in the
browser's local storage) and either downloads ``qa-signoff.json`` and installs it with
``medveil qa OUTPUT --signoff FILE``, or, with the page served by ``medveil qa OUTPUT
--serve`` (127.0.0.1, a random per-session token in every URL), saves it straight to
``OUTPUT/qa-signoff.json``. Both roads validate it with :func:`parse_signoff`;
:func:`read_signoff` is what ``medveil deid --resume`` reads.

Quarantined inputs are never shown unless asked for (``include_quarantined=INPUT``): their
images come from the *input* side and may show PHI, and the page says so in red.
Pillow is needed (``pip install medveil[qa]``).
"""

from __future__ import annotations

import html
import json
import logging
import os
import random
import sqlite3
import tempfile
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom

from medveil.errors import MedveilError
from medveil.pixels.rules import RuleSet

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)

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
#: Marks the page's image folder as medveil's own: a rebuild empties it, nothing else.
IMAGE_MARKER = ".medveil-qa-images"
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
    frames: int = 1
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
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the page from a shared reviewer
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
    """A device label from the output header: Modality, Manufacturer, model, station if kept."""
    parts = [str(ds.get(k, "") or "").strip() for k in ("Manufacturer", "ManufacturerModelName")]
    dev = " ".join(p for p in parts if p) or "unknown device"
    modality = str(ds.get("Modality", "") or "").strip()
    label = f"{modality} · {dev}" if modality else dev
    # StationName is only in the output when the policy keeps it (Retain Device Identity):
    # the page is built from the released files, so it shows what the release shows.
    station = str(ds.get("StationName", "") or "").strip()
    return f"{label} · station {station}" if station else label


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
    """List the run's released images with device, rules and regions; also say the source."""
    records = _read_records(output)
    rules = RuleSet.default() if rules is None else rules
    items: list[QaItem] = []
    for rel in released_paths(output):
        path = output / rel
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM (or unreadable): not an image to review
            continue
        if "Rows" not in ds:
            continue
        frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
        item = QaItem(path=path, label=rel, device=device_of(ds), frames=frames)
        if rel in records:
            item.rules = list(records[rel].get("rules", []))
            item.regions = [tuple(int(v) for v in r) for r in records[rel].get("regions", [])]
            item.detected = list(records[rel].get("detected", []))
        elif not records:
            fired = rules.matching(ds)
            item.rules = [r.id for r in fired]
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


def _outlined(item: QaItem, img: Image.Image, index: int, scale: float) -> Image.Image:
    """Draw the item's boxes of frame ``index`` on img (scaled by ``scale``), inside each box.

    Outlines lie on the box's inner edge: the box is blanked, so they hide no released
    pixel, and text just outside a box stays visible to the reviewer.
    """
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)

    def outline(r0: int, r1: int, c0: int, c1: int, colour: tuple[int, int, int]) -> None:
        """Draw a box given in image pixels, scaled."""
        box = (
            c0 * scale,
            r0 * scale,
            max(c0 * scale, c1 * scale - 1),
            max(r0 * scale, r1 * scale - 1),
        )
        draw.rectangle(box, outline=colour, width=2)

    detected_boxes = {tuple(int(v) for v in d["box"]) for d in item.detected}
    for reg in item.regions:
        f0, f1 = (reg[4], reg[5]) if len(reg) == 6 else (0, 1)
        if not f0 <= index < f1:
            continue  # the rectangle is on other frames, not this one
        if not _is_detected(reg, detected_boxes):  # type: ignore[arg-type]
            r0, r1, c0, c1 = (int(v) for v in reg[:4])
            outline(r0, r1, c0, c1, RULE_COLOUR)
    for d in item.detected:
        if int(d.get("frame", 0)) == index:
            r0, r1, c0, c1 = (int(v) for v in d["box"])
            outline(r0, r1, c0, c1, DETECTED_COLOUR if d.get("masked") else KEPT_COLOUR)
    return img


def _error_tile(item: QaItem, exc: BaseException, size: int) -> Image.Image:
    """A tile that says why an image could not be rendered, rather than a missing tile."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (60, 0, 0))
    ImageDraw.Draw(img).text((4, 4), f"cannot render:\n{type(exc).__name__}", fill="white")
    item.note = item.note or f"not rendered ({type(exc).__name__})"
    return img


def _shrink(img: Image.Image, size: int) -> tuple[Image.Image, float]:
    """The image scaled to fit ``size`` px (never enlarged), and the scale used."""
    from PIL import Image

    scale = min(size / img.width, size / img.height, 1.0)
    if scale < 1.0:
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
            Image.Resampling.BILINEAR,
        )
    return img, scale


def thumbnail(item: QaItem, size: int = 256) -> Image.Image:
    """Render the item's first frame at most ``size`` px wide/high, rectangles outlined."""
    from PIL import Image
    from pydicom.pixels.utils import pixel_array

    try:
        ds = pydicom.dcmread(item.path)
        frame = pixel_array(ds, index=0)
        img = Image.fromarray(display_u8(ds, frame)).convert("RGB")
    except Exception as exc:
        return _error_tile(item, exc, size)
    img, scale = _shrink(img, size)
    return _outlined(item, img, 0, scale)


def render_frames(item: QaItem, dest: Path, size: int) -> list[tuple[str, str, int, int]]:
    """Write every frame of the item as a full-resolution PNG and a thumbnail in ``dest``.

    Returns (thumbnail name, full name, width, height) per frame, the sizes of the full
    image. A file that cannot be decoded gives one error tile, with the reason in the note.
    """
    from PIL import Image
    from pydicom.pixels.utils import iter_pixels

    dest.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, str, int, int]] = []
    try:
        ds = pydicom.dcmread(item.path, stop_before_pixels=True)
        for index, frame in enumerate(iter_pixels(item.path)):
            base = Image.fromarray(display_u8(ds, frame)).convert("RGB")
            thumb, scale = _shrink(base.copy(), size)
            full = _outlined(item, base, index, 1)
            names = (f"f{index:05d}.png", f"t{index:05d}.png")
            full.save(
                dest / names[0], compress_level=1
            )  # fast: a page of a long cine is big anyway
            _outlined(item, thumb, index, scale).save(dest / names[1], compress_level=6)
            out.append((names[1], names[0], full.width, full.height))
    except Exception as exc:
        tile = _error_tile(item, exc, size)
        tile.save(dest / "error.png")
        return [("error.png", "error.png", tile.width, tile.height)]
    item.frames = len(out)
    return out


def _swatch(colour: tuple[int, int, int]) -> str:
    r, g, b = colour
    return f"<span class='swatch' style='border:2px solid rgb({r},{g},{b})'></span>"


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
    """Detected boxes with their frame, decision and redacted text."""
    rows = []
    for d in detected:
        frame = int(d.get("frame", 0))
        box = ",".join(str(int(v)) for v in d.get("box", []))
        state = "masked" if d.get("masked") else "kept"
        why = str(d.get("why", ""))
        where = f"frame {frame + 1}: " if frame else ""
        rows.append(
            f"{where}{state} [{html.escape(box)}] {html.escape(why)}: "
            f"{html.escape(redacted(d.get('text_len')))}"
        )
    return "<br>".join(rows)


def page_id(paths: Iterable[str]) -> str:
    """A short id of the set of files a page lists (names the reviewer's saved decisions)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(paths)).encode("utf-8")).hexdigest()[:16]


def _item_html(n: int, it: QaItem, strip: list[tuple[str, str, int, int]], folder: str) -> str:
    """One image's card: header, the filmstrip of every frame, facts, the decision buttons."""
    label = html.escape(it.label)
    count = len(strip)
    links = []
    for f, (thumb, full, w, h) in enumerate(strip):
        links.append(
            f"<a class='frame' href='{folder}/{full}' data-frame='{f}' data-w='{w}' "
            f"data-h='{h}' title='frame {f + 1} of {count}, {w}×{h}'>"
            f"<img src='{folder}/{thumb}' alt='frame {f + 1} of {count}' loading='lazy'>"
            f"<span>{f + 1}</span></a>"
        )
    regs = "; ".join(",".join(str(v) for v in r) for r in it.regions)
    facts = [
        f"<tr><th>frames</th><td>{it.frames}</td></tr>",
        f"<tr><th>rules</th><td>{html.escape(', '.join(it.rules)) or 'none'}</td></tr>",
        f"<tr><th>rectangles</th><td>{html.escape(regs) or 'none'}</td></tr>",
    ]
    if it.detected:
        facts.append(f"<tr><th>detected text</th><td>{_detected_cell(it.detected)}</td></tr>")
    if it.note:
        facts.append(f"<tr><th>note</th><td class='note'>{html.escape(it.note)}</td></tr>")
    decide = (
        ""
        if it.quarantined
        else (
            "<div class='decide'>"
            f"<label><input type='radio' name='d{n}' value='approved'> approve</label> "
            f"<label><input type='radio' name='d{n}' value='rejected'> reject</label> "
            f"<button type='button' class='clear'>undecided</button></div>"
        )
    )
    path_attr = "" if it.quarantined else f" data-path='{label}'"
    return (
        f"<article class='item{' quarantined' if it.quarantined else ''}' id='item-{n}'"
        f"{path_attr} data-frames='{count}'>"
        f"<h3>#{n} {label}</h3>{decide}"
        f"<div class='filmstrip'>{''.join(links)}</div>"
        f"<table class='facts'>{''.join(facts)}</table></article>"
    )


_CSS = """
body{font-family:sans-serif;background:#111;color:#ddd;margin:0 2em 4em}
header{padding:.5em 0;border-bottom:1px solid #333}a{color:#8cf}
#signoff{position:sticky;top:0;background:#111;z-index:5;padding:.4em 0}
h1{margin:.3em 0}h2{border-bottom:2px solid #555;margin-top:2em}
h3{font-size:100%;margin:.2em 0;overflow-wrap:anywhere}
.swatch{display:inline-block;width:1em;height:1em;vertical-align:middle}
.item{border:1px solid #333;margin:1em 0;padding:.5em;background:#181818}
.item.approved{border-color:#2a2}.item.rejected{border-color:#d22;background:#261414}
.filmstrip{display:flex;gap:6px;overflow-x:auto;padding:4px 0}
.frame{position:relative;flex:none;display:block;line-height:0}
.frame img{border:1px solid #444;background:#000}
.frame span{position:absolute;left:2px;top:2px;font-size:11px;line-height:1;color:#ff0;
background:rgba(0,0,0,.6);padding:1px 3px}
.facts{border-collapse:collapse;font-size:85%}.facts th,.facts td{border:1px solid #333;
padding:1px 6px;text-align:left;vertical-align:top}.note{color:#f88}
.phi{background:#700;color:#fff;padding:1em;font-weight:bold}
#signoff input[type=text]{width:14em}#status{margin-left:1em}
#viewer{position:fixed;inset:0;background:rgba(0,0,0,.94);z-index:10;overflow:auto}
#viewer[hidden]{display:none}#viewer-caption{overflow-wrap:anywhere}
#viewer .bar{position:sticky;top:0;left:0;background:#222;
padding:.4em;display:flex;gap:1em;align-items:center}#viewer img{display:block;margin:0}
"""

_JS = r"""
(function () {
  "use strict";
  const PAGE = document.body.dataset.page;
  const KEY = "medveil-qa-" + PAGE;
  const served = location.protocol === "http:" || location.protocol === "https:";
  let state = null;
  try { state = JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) { state = null; }
  if (!state || typeof state !== "object") {
    // No decisions in this browser yet: start from the sign-off in OUTPUT, if any.
    state = {};
    const prior = JSON.parse(document.getElementById("prior").textContent || "null");
    if (prior) {
      prior.approved.forEach(function (p) { state[p] = "approved"; });
      prior.rejected.forEach(function (p) { state[p] = "rejected"; });
    }
  }
  const items = Array.from(document.querySelectorAll("article.item[data-path]"));
  const reviewer = document.getElementById("reviewer");
  try { reviewer.value = localStorage.getItem("medveil-qa-reviewer") || ""; } catch (e) {}
  function save() {
    try {
      localStorage.setItem(KEY, JSON.stringify(state));
      localStorage.setItem("medveil-qa-reviewer", reviewer.value);
    } catch (e) {}
  }
  function show(item) {
    const d = state[item.dataset.path] || "";
    item.classList.toggle("approved", d === "approved");
    item.classList.toggle("rejected", d === "rejected");
    item.querySelectorAll("input[type=radio]").forEach(function (r) { r.checked = r.value === d; });
  }
  function counts() {
    let a = 0, r = 0;
    items.forEach(function (it) {
      const d = state[it.dataset.path];
      if (d === "approved") a++; else if (d === "rejected") r++;
    });
    document.getElementById("counts").textContent =
      a + " approved, " + r + " rejected, " + (items.length - a - r) + " undecided";
  }
  items.forEach(function (it) {
    it.querySelectorAll("input[type=radio]").forEach(function (r) {
      r.addEventListener("change", function () {
        state[it.dataset.path] = r.value; save(); show(it); counts();
      });
    });
    it.querySelector("button.clear").addEventListener("click", function () {
      delete state[it.dataset.path]; save(); show(it); counts();
    });
    show(it);
  });
  counts();
  reviewer.addEventListener("input", save);
  document.getElementById("approve-rest").addEventListener("click", function () {
    items.forEach(function (it) {
      if (!state[it.dataset.path]) state[it.dataset.path] = "approved";
      show(it);
    });
    save(); counts();
  });
  function signoff() {
    const name = reviewer.value.trim();
    if (!name) { status("enter the reviewer's name first"); reviewer.focus(); return null; }
    const doc = {version: 1, reviewer: name, time: new Date().toISOString(),
                 approved: [], rejected: [], page: PAGE};
    items.forEach(function (it) {
      const d = state[it.dataset.path];
      if (d === "approved" || d === "rejected") doc[d].push(it.dataset.path);
    });
    return doc;
  }
  function status(text) { document.getElementById("status").textContent = text; }
  window.medveilSignoff = signoff;
  document.getElementById("download").addEventListener("click", function () {
    const doc = signoff(); if (!doc) return;
    const blob = new Blob([JSON.stringify(doc, null, 2)], {type: "application/json"});
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob); a.download = "qa-signoff.json";
    document.body.appendChild(a); a.click(); a.remove();
    status("downloaded; install it with: medveil qa OUTPUT --signoff qa-signoff.json");
  });
  const saveButton = document.getElementById("save");
  saveButton.hidden = !served;
  saveButton.addEventListener("click", function () {
    const doc = signoff(); if (!doc) return;
    fetch("signoff", {method: "POST", headers: {"Content-Type": "application/json"},
                      body: JSON.stringify(doc)})
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (res) {
        status(res[0] ? "saved " + res[1].file + " (" + res[1].approved + " approved, "
                        + res[1].rejected + " rejected)" : "refused: " + res[1].error);
      })
      .catch(function (e) { status("not saved: " + e); });
  });
  // The full-resolution viewer: one frame at its own size; arrows step through the frames.
  const viewer = document.getElementById("viewer");
  const big = document.getElementById("viewer-img");
  let strip = null, index = 0;
  function open(frames, i) {
    strip = frames; index = (i + frames.length) % frames.length;
    const a = frames[index], art = a.closest("article");
    big.src = a.getAttribute("href");
    big.width = +a.dataset.w; big.height = +a.dataset.h;
    document.getElementById("viewer-caption").textContent = art.querySelector("h3").textContent
      + " — frame " + (index + 1) + " of " + frames.length + " — " + a.dataset.w + "×" + a.dataset.h
      + " (full resolution)";
    viewer.hidden = false; viewer.scrollTo(0, 0); viewer.focus();
  }
  function close() { viewer.hidden = true; big.removeAttribute("src"); strip = null; }
  document.querySelectorAll(".filmstrip").forEach(function (fs) {
    const frames = Array.from(fs.querySelectorAll("a.frame"));
    frames.forEach(function (a, i) {
      a.addEventListener("click", function (ev) { ev.preventDefault(); open(frames, i); });
    });
  });
  document.getElementById("viewer-close").addEventListener("click", close);
  document.getElementById("viewer-prev").addEventListener("click", function () {
    open(strip, index - 1);
  });
  document.getElementById("viewer-next").addEventListener("click", function () {
    open(strip, index + 1);
  });
  document.addEventListener("keydown", function (ev) {
    if (viewer.hidden) return;
    if (ev.key === "Escape") close();
    else if (ev.key === "ArrowRight") open(strip, index + 1);
    else if (ev.key === "ArrowLeft") open(strip, index - 1);
  });
})();
"""


def _fresh_image_folder(img: Path) -> None:
    """Empty the page's image folder, refusing one that medveil qa did not write.

    An earlier page's frames go: a file rejected since (quarantined by a resumed run for
    burned-in text, say) must not stay rendered at full resolution under the output.
    """
    import shutil

    if img.is_symlink() or (img.exists() and not (img / IMAGE_MARKER).is_file()):
        raise MedveilError(f"{img}: exists and was not written by medveil qa; choose another --out")
    if img.exists():
        shutil.rmtree(img)
    img.mkdir(parents=True)
    (img / IMAGE_MARKER).write_text("frames rendered by medveil qa; rebuilt on every page\n")


def write_report(
    output: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    rules: RuleSet | None = None,
    include_quarantined: str | os.PathLike[str] | None = None,
    size: int = 160,
) -> Path:
    """Write the QA page of a run's OUTPUT (every frame, per device); return index.html."""
    _require_pillow()
    output = Path(output)
    check_run_output(output)
    dest = Path(out_dir) if out_dir else output / RECORDS / "qa"
    dest.mkdir(parents=True, exist_ok=True)
    _fresh_image_folder(dest / "img")
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
    listed = [it.label for it in items]
    try:
        _record_manifest(output, listed)
    except OSError as exc:  # a read-only release (page written with out_dir elsewhere)
        log.warning("qa: cannot record the listed paths in %s (%s)", RECORDS, exc.strerror)
    pid = page_id(listed)
    try:
        prior = read_signoff(output)
        prior_note = (
            f"Signed off by {prior.reviewer} at {prior.time}: {len(prior.approved)} approved, "
            f"{len(prior.rejected)} rejected ({SIGNOFF}); the marks below start from it."
            if prior
            else f"Not signed off yet (no {SIGNOFF} in the output folder)."
        )
    except SignoffError as exc:
        prior, prior_note = None, f"The output's {SIGNOFF} is invalid and ignored: {exc}"
    prior_json = (
        "null"
        if prior is None
        else json.dumps({"approved": sorted(prior.approved), "rejected": sorted(prior.rejected)})
    ).replace("<", "\\u003c")  # never a '</script>' inside the script element
    devices = sorted(groups, key=lambda d: (d.startswith("quarantined"), d))
    body: list[str] = []
    nav: list[str] = []
    n = 0
    for s, device in enumerate(devices, start=1):
        members = groups[device]
        fired: dict[str, int] = defaultdict(int)
        for it in members:
            for r in it.rules:
                fired[r] += 1
        nav.append(f"<a href='#device-{s}'>{html.escape(device)} ({len(members)})</a>")
        summary = ", ".join(f"{html.escape(r)} ×{k}" for r, k in sorted(fired.items())) or "none"
        body.append(
            f"<section class='device' id='device-{s}' data-device='{html.escape(device)}'>"
            f"<h2>{html.escape(device)} — {len(members)} image(s)</h2>"
            f"<p>Rules fired: {summary}</p>"
        )
        for it in members:
            n += 1
            folder = f"img/{n:05d}"
            strip = render_frames(it, dest / folder, size)
            body.append(_item_html(n, it, strip, folder))
        body.append("</section>")
    head = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='referrer' content='no-referrer'>",
        f"<title>medveil QA</title><style>{_CSS}</style></head>",
        f"<body data-page='{pid}'><header>",
        "<h1>medveil QA</h1>",
        f"<p>{len(items)} of {total} released images"
        + (f" (a sample spread over devices, seed {seed})" if len(items) < total else "")
        + f", {sum(it.frames for it in items)} frames, in "
        f"{sum(1 for g in groups if not g.startswith('quarantined'))} device groups. Every "
        "frame is in the filmstrip; click one for full resolution (← → step, Esc closes). "
        "Look for text outside the outlined boxes.</p>",
        "<nav>" + " · ".join(nav) + "</nav></header>",
        "<form id='signoff' onsubmit='return false'>reviewer <input type='text' "
        "id='reviewer' autocomplete='name'> <span id='counts'></span> "
        "<button type='button' id='approve-rest'>approve all undecided</button> "
        "<button type='button' id='download'>download qa-signoff.json</button> "
        "<button type='button' id='save' hidden>save sign-off to the output folder</button>"
        "<span id='status'></span></form>",
        f"<p id='prior-note'>{html.escape(prior_note)}</p>",
        f"<script type='application/json' id='prior'>{prior_json}</script>",
        _legend(),
        f"<p>Source of rules and rectangles: {html.escape(source)}.</p>",
    ]
    if include_quarantined is not None:
        head.append(
            "<p class='phi'>This page includes images of QUARANTINED INPUT files "
            f"({len(quarantined)}), rendered from the original, identified data: they may show "
            "patient names, dates and other PHI, and so may their file names. Handle this page "
            "as identified data.</p>"
        )
    tail = [
        "<div id='viewer' hidden tabindex='-1'><div class='bar'>"
        "<button type='button' id='viewer-prev'>◀</button>"
        "<button type='button' id='viewer-next'>▶</button>"
        "<button type='button' id='viewer-close'>close</button>"
        "<span id='viewer-caption'></span></div><img id='viewer-img' alt='full resolution'></div>",
        f"<script>{_JS}</script></body></html>",
    ]
    index = dest / "index.html"
    _atomic_write(index, "\n".join(head + body + tail))
    return index


# ---------------------------------------------------------------------------- serving
def make_server(
    output: Path, page_dir: Path, *, port: int = 0, token: str | None = None
) -> tuple[ThreadingHTTPServer, str]:
    """A server of the QA page on 127.0.0.1 that saves sign-offs; returns it and its URL.

    Every URL starts with a random per-session token, so another local user or a web page
    open in the same browser cannot read the page or post a sign-off without it. Requests
    must name 127.0.0.1 or localhost as the Host (DNS rebinding), a POST must be
    ``application/json`` (a cross-site form cannot send it without a preflight, which is
    never answered) from this origin. A posted sign-off is validated as read_signoff does,
    then written atomically to OUTPUT/qa-signoff.json.
    """
    import hmac
    import secrets

    output, page_dir = Path(output), Path(page_dir).resolve()
    check_run_output(output)
    token = token or secrets.token_urlsafe(24)
    prefix = f"/{token}/"

    class Handler(BaseHTTPRequestHandler):
        """GET: files of the page folder; POST {prefix}signoff: save the sign-off."""

        server_version = "medveil-qa"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request lines hold the token."""

        def _allowed(self) -> str | None:
            """The path after the token, or None (answered 404) when the request is refused."""
            port_now = self.connection.getsockname()[1]
            host = self.headers.get("Host", "")
            if host not in (f"127.0.0.1:{port_now}", f"localhost:{port_now}"):
                return None
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if not hmac.compare_digest(path[: len(prefix)].encode(), prefix.encode()):
                return None
            return path[len(prefix) :]

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            """Answer with no caching, no sniffing, no referrer and a same-origin CSP."""
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "img-src 'self'; connect-src 'self'; frame-ancestors 'none'",
            )
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: dict[str, Any]) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:
            """Serve index.html and the frame PNGs of the page folder, nothing else."""
            from urllib.parse import unquote

            rest = self._allowed()
            if rest is None:
                self._send(404, b"not found", "text/plain")
                return
            target = (page_dir / (unquote(rest) or "index.html")).resolve()
            if page_dir not in target.parents or not target.is_file():
                self._send(404, b"not found", "text/plain")
                return
            ctype = {".html": "text/html; charset=utf-8", ".png": "image/png"}.get(
                target.suffix, "application/octet-stream"
            )
            self._send(200, target.read_bytes(), ctype)

        def do_POST(self) -> None:
            """Validate a sign-off and write OUTPUT/qa-signoff.json."""
            rest = self._allowed()
            if rest != "signoff":
                self._send(404, b"not found", "text/plain")
                return
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{self.headers.get('Host')}":
                self._json(403, {"error": "cross-origin request refused"})
                return
            if self.headers.get_content_type() != "application/json":
                self._json(415, {"error": "send application/json"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._json(411, {"error": "Content-Length needed"})
                return
            if not 0 < length <= MAX_SIGNOFF_BYTES:
                self._json(413, {"error": "empty or too large"})
                return
            try:
                signoff = parse_signoff(
                    self.rfile.read(length), known_paths(output), source="posted sign-off"
                )
                path = write_signoff(output, signoff)
            except (SignoffError, NotRunOutputError) as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(
                200,
                {
                    "file": str(path),
                    "approved": len(signoff.approved),
                    "rejected": len(signoff.rejected),
                },
            )

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server, f"http://127.0.0.1:{server.server_port}{prefix}index.html"
