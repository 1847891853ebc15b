"""``medveil preview FILE``: what a policy would do to one file, element by element.

The engine (:class:`medveil.Deidentifier`) is applied to a second copy of the file read
from the same bytes, and the two datasets are compared: every element is printed with
the action taken and its value before and after. Values go to the console only (they are
the file's own, PHI included); nothing is written to a run record. ``--png`` draws the
pixel regions that would be masked on the original first frame.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medveil.cli.console import error
from medveil.errors import MedveilError, PolicyError, QuarantineError

log = logging.getLogger(__name__)

_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
WIDTH = 40  # characters of a value shown per column


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``preview`` subcommand."""
    p = sub.add_parser(
        "preview",
        help="show what a policy does to one file (console only)",
        description="Apply the policy to a copy of FILE and print every element with the "
        "action taken and its value before and after. Values are printed to the console "
        "only, never written to a record. --png draws the pixel regions that would be "
        "masked on the original image (the PNG holds the original pixels: keep it private).",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--policy", help="preset name or policy TOML file (default: built-in)")
    p.add_argument(
        "--secret-file",
        help="project secret, so pseudonyms, UIDs and date shifts are the real ones "
        "(default: the per-user secret if it exists, else a throwaway one)",
    )
    p.add_argument("--png", metavar="OUT", help="write the masked regions over frame 0 here")
    p.add_argument("--frame", type=int, default=0, help="frame drawn by --png (default 0)")
    p.add_argument("--changed", action="store_true", help="list only elements that change")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Row:
    """One element of the preview: where it is, what happened, before and after."""

    path: str  # "(0008,1140)[0]/(0008,1155)"
    keyword: str
    action: str
    before: str
    after: str


def _show(elem: object) -> str:
    """A short printable form of an element's value."""
    vr = getattr(elem, "VR", "")
    value = getattr(elem, "value", None)
    if vr == "SQ":
        return f"<{len(value or [])} item(s)>"
    if vr in _BINARY_VRS or isinstance(value, (bytes, bytearray)):
        return f"<{len(value or b'')} bytes>"
    if value is None or value == "":
        return '""'
    if isinstance(value, (list, MultiValue)):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= WIDTH else text[: WIDTH - 3] + "..."


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _elements(ds: Dataset, path: str) -> Iterator[tuple[str, int, object]]:
    """Every element of ds with its path, items of sequences included."""
    for elem in ds:
        tag = int(elem.tag)
        yield path, tag, elem
        if elem.VR == "SQ" and elem.value:
            for i, item in enumerate(elem.value):
                yield from _elements(item, f"{path}{_tag(tag)}[{i}]/")


def diff(before: Dataset, after: Dataset, taken: list[tuple[str, int, str]]) -> list[Row]:
    """Compare a dataset before and after the engine, with the actions the engine reported."""
    actions: dict[tuple[str, int], str] = {}
    for p, tag, action in taken:
        actions.setdefault((p, tag), action)
    rows: list[Row] = []
    after_map = {(p, t): e for p, t, e in _elements(after, "")}
    seen: set[tuple[str, int]] = set()
    for p, tag, elem in _elements(before, ""):
        key = (p, tag)
        seen.add(key)
        new = after_map.get(key)
        keyword = getattr(elem, "keyword", "") or ("private" if tag >> 16 & 1 else "")
        old_text = _show(elem)
        new_text = _show(new) if new is not None else "(removed)"
        found = actions.get(key)
        if found is not None:
            action = found
        else:
            if new is None:
                action = "X" if not _parent_removed(p, after_map) else "X (parent)"
            elif new_text == old_text and getattr(new, "value", None) == getattr(
                elem, "value", None
            ):
                action = "K"
            else:
                action = "changed"
        rows.append(Row(p + _tag(tag), keyword, action, old_text, new_text))
    for key, elem in after_map.items():
        if key not in seen:
            p, tag = key
            rows.append(Row(p + _tag(tag), getattr(elem, "keyword", ""), "added", "", _show(elem)))
    return rows


def _parent_removed(path: str, after_map: dict[tuple[str, int], object]) -> bool:
    """True when an element is gone because the sequence holding it was removed."""
    if not path:
        return False
    head = path.split("[")[0]
    parent = int(head.rsplit("(", 1)[1].rstrip(")").replace(",", ""), 16)
    parent_path = head[: head.rfind("(")]
    return (parent_path, parent) not in after_map


def _secret(path: str | None) -> tuple[bytes, bool]:
    """The secret to preview with, and whether it is the real (persistent) one."""
    from medveil.policy.keys import default_secret_path, load_secret

    if path:
        return load_secret(path), True
    default = default_secret_path()
    if default.is_file():
        return load_secret(default), True
    return os.urandom(32), False


def preview(
    path: str | os.PathLike[str], policy_name: str | None = None, secret: bytes | None = None
) -> tuple[list[Row], object]:
    """Rows of the element-by-element preview and the engine's pixel report (or None).

    Raises QuarantineError when the file would be quarantined.
    """
    from medveil.dicom.io import read_dataset
    from medveil.engine.dataset import Deidentifier
    from medveil.policy.presets import load_policy

    policy = load_policy(policy_name)
    data = Path(path).read_bytes()
    name = Path(path).name
    before = read_dataset(io.BytesIO(data), name)
    after = read_dataset(io.BytesIO(data), name)  # the engine's copy, from the same bytes
    engine = Deidentifier(policy, secret if secret is not None else os.urandom(32))
    report = engine.apply(after, source=name)
    rows = diff(before, after, report.taken)
    regions = list(getattr(report.pixels, "regions", []) or [])
    if regions:
        # The engine reports pixel masking in its pixel report, not per element.
        rows = [
            Row(r.path, r.keyword, f"masked ({len(regions)})", r.before, r.after)
            if r.path == "(7FE0,0010)"
            else r
            for r in rows
        ]
    meta_rows = diff(
        before.file_meta,
        after.file_meta,
        [(p[4:], t, a) for p, t, a in report.taken if p.startswith("meta")],
    )
    rows += [Row("meta " + r.path, r.keyword, r.action, r.before, r.after) for r in meta_rows]
    return rows, report.pixels


def draw_regions(
    path: str | os.PathLike[str], regions: list[tuple[int, ...]], out: str, frame: int = 0
) -> int:
    """Draw the masked regions over one frame of the original image; returns how many."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise MedveilError("--png needs Pillow: pip install 'medveil[qa]'") from None
    import numpy as np

    from medveil.dicom.io import read_dataset

    ds = read_dataset(path, Path(path).name)
    if "PixelData" not in ds:
        raise MedveilError(f"{Path(path).name}: no pixel data to draw")
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # a missing codec, or pixels pydicom cannot decode
        raise MedveilError(
            f"{Path(path).name}: cannot decode the pixels for --png: {exc}"
        ) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        if not 0 <= frame < frames:
            raise MedveilError(f"--frame {frame}: the image has frames 0 to {frames - 1}")
        arr = arr[frame]
    if spp == 1:
        lo, hi = float(arr.min()), float(arr.max())
        scaled = ((arr.astype(np.float64) - lo) / (hi - lo or 1.0) * 255.0).astype(np.uint8)
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            scaled = 255 - scaled
        img = Image.fromarray(scaled, "L").convert("RGB")
    else:
        img = Image.fromarray(arr.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    drawn = 0
    for region in regions:
        r0, r1, c0, c1 = region[:4]
        f0, f1 = (region[4], region[5]) if len(region) >= 6 else (0, frames)
        if not f0 <= frame < f1:
            continue
        draw.rectangle([c0, r0, max(c0, c1 - 1), max(r0, r1 - 1)], outline=(255, 0, 0), width=2)
        drawn += 1
    img.save(out, "PNG")
    return drawn


def run(args: argparse.Namespace) -> int:
    """Print the preview; exit 0, 1 when the file would be quarantined, 2 on errors."""
    try:
        secret, real = _secret(args.secret_file)
        rows, pixels = preview(args.file, args.policy, secret)
    except QuarantineError as exc:
        print(f"medveil preview: {args.file} would be quarantined: {exc}")
        return 1
    except (PolicyError, MedveilError, OSError) as exc:
        error(log, str(exc))
        return 2
    if not real:
        print(
            "# no project secret found: pseudonyms, UIDs and date shifts below use a "
            "throwaway secret and will differ in a real run (give --secret-file)"
        )
    print("# values are shown here only; nothing is written to a run record")
    w = max((len(r.path) for r in rows), default=4)
    print(f"{'element':{w}}  {'keyword':32}  {'action':14}  {'before':{WIDTH}}  after")
    for r in rows:
        if args.changed and r.before == r.after:
            continue
        print(
            f"{r.path:{w}}  {r.keyword[:32]:32}  {r.action[:14]:14}  {r.before:{WIDTH}}  {r.after}"
        )
    regions = list(getattr(pixels, "regions", []) or [])
    fired = list(getattr(pixels, "rules_fired", []) or [])
    print(
        f"# pixel regions masked: {len(regions)}"
        + (f" (rules: {', '.join(fired)})" if fired else "")
    )
    if args.png:
        try:
            n = draw_regions(args.file, regions, args.png, args.frame)
        except MedveilError as exc:
            error(log, str(exc))
            return 2
        print(f"# {n} region(s) drawn on frame {args.frame} -> {args.png}")
    return 0
