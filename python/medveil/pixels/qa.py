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
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom

from medveil.pixels.rules import RuleSet

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

RECORDS = ".medveil"
PIXEL_RECORDS = "pixels.jsonl"
QUARANTINE = "quarantine.jsonl"
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
