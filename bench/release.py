"""Release rate of the default policy on a realistic mixed archive (issue 19).

Run: python bench/release.py [--seed 0] [--patients 6] [--pydicom] [--policy P.toml]
     [--pixel-text MODE] [--workers 2] [--keep DIR] [--no-dciodvfy] [--reasons]
     [--modalities [N]]

Generates ``tests/corpus/realistic.py``'s archive (and, with ``--pydicom``, copies
pydicom's bundled test files next to it; with ``--modalities``, adds
``tests/corpus/modalities.py``'s archive of N patients (default 4): enhanced CT/MR, PET,
NM, mammography and tomosynthesis, encapsulated PDF, KO, GSPS, SEG, RT plan and dose,
Comprehensive SR, vendor private groups; ``--patients 0 --modalities`` runs it alone),
runs ``medveil deid`` on it with the default policy (or ``--policy``), then prints per
modality class:

- instances, released, quarantined by reason (the reason's first clause, values blanked);
- leaks: released files whose header (every element but the pixel data, deflated files
  inflated, an encapsulated PDF's compressed streams inflated) holds one of the planted
  identifying strings (names in several spellings, IDs,
  accession numbers, birth dates), and released files where a planted burned-in text line
  is not fully masked (every pixel of its ink box set to one value);
- new dciodvfy errors: error messages of the output that its input does not have
  (``dciodvfy`` from Debian ``dicom3tools``; the column is skipped when it is missing);
- unresolved references: UIDs in the output's sequences that were input UIDs but are not
  the new UID the secret maps them to (left as they were, or pointing at nothing).

``--pixel-text MODE`` runs it with a policy file holding only ``[pixels] pixel_text =
"MODE"`` (the default policy otherwise).

Then, with ``--quality``, the burned-in text figures on the generator's US/SC/XA images:
each image through :class:`medveil.pixels.cleaner.PixelCleaner` in the given mode; a line
counts as found when its whole ink box is inside the masked regions on every frame; false
mask: masked boxes that touch no ink box (grown by 6 px), and the masked area more than
6 px away from every ink box as a share of the image (mostly the detector's padding).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.corpus import modalities, realistic  # noqa: E402

CLASS_OF_SOP = {
    realistic.CT_IMAGE: "CT",
    realistic.MR_IMAGE: "MR",
    realistic.CR_IMAGE: "CR",
    realistic.US_MULTIFRAME: "US",
    "1.2.840.10008.5.1.4.1.1.6.1": "US",
    realistic.SC_IMAGE: "SC",
    realistic.XA_IMAGE: "XA",
    realistic.BASIC_TEXT_SR: "SR",
    realistic.RT_STRUCT: "RTSTRUCT",
    **modalities.CLASS_OF_SOP,
}
SECRET = bytes(range(32))
#: Values medveil writes as dummies: a patient called "Anonymized" is not found in them.
DUMMY_WORDS = {b"ANONYMIZED", b"ANONYMOUS", b"REMOVED", b"UNKNOWN"}
_DCIO_VALUES = re.compile(r"= <[^>]*>|<0x[0-9a-fA-F]+>|\"[^\"]*\"|'[^']*'|\[\d+\]")
_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|<[^>]*>|\b\d[\d.]*\b|\(\w{4},\w{4}\)")


def reason_class(reason: str) -> str:
    """The first clause of a quarantine reason with values and numbers blanked, for grouping."""
    first = re.split(r";|, and |\(", reason, maxsplit=1)[0]
    return _VALUES.sub("#", first).strip()[:90]


def header_bytes(path: Path) -> bytes:
    """The file's header as bytes (pixel data and overlay data dropped, deflate undone)."""
    ds = pydicom.dcmread(path)
    for tag in [
        t
        for t in ds.keys()
        if t == 0x7FE00010 or ((t >> 16) & 0xFF01 == 0x6000 and t & 0xFFFF == 0x3000)
    ]:
        del ds[tag]
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    doc = ds.get("EncapsulatedDocument")
    # A PDF's text is mostly in Flate-compressed streams: search it inflated too.
    extra = modalities.pdf_text(bytes(doc)) if isinstance(doc, bytes) else b""
    return buf.getvalue() + extra


def leaked(data: bytes, needles: list[bytes]) -> list[int]:
    """Indexes of ``needles`` found in ``data`` (upper-cased, so any case matches)."""
    up = data.upper()
    return [i for i, n in enumerate(needles) if n in up]


def boxes_masked(ds: pydicom.Dataset, boxes: list[tuple[int, ...]]) -> int:
    """How many of the (f0, f1, r0, r1, c0, c1) ink boxes are not one flat value in ``ds``."""
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[None]
    bad = 0
    for f0, f1, r0, r1, c0, c1 in boxes:
        patch = arr[f0:f1, r0:r1, c0:c1]
        if patch.size and patch.min() != patch.max():
            bad += 1
    return bad


def dciodvfy_errors(path: Path) -> Counter[str] | None:
    """dciodvfy's error messages for one file (values blanked), None when it is not installed."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        ds = pydicom.dcmread(path, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:
            # A bare data set: dciodvfy reads it as it is (Implicit VR Little Endian).
            pass
        elif ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            # dciodvfy cannot read deflated files: check the same dataset inflated.
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            path = Path(tmp) / "inflated.dcm"
            ds.save_as(path, enforce_file_format=True)
        p = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=60)
    out: Counter[str] = Counter()
    for line in (p.stdout + p.stderr).splitlines():
        if line.startswith("Error"):
            out[_DCIO_VALUES.sub("#", line).strip()] += 1
    return out


def reference_uids(ds: pydicom.Dataset) -> list[str]:
    """UIDs found inside the sequences of ``ds`` (the references), recursively."""
    out: list[str] = []

    def walk(d: pydicom.Dataset, nested: bool) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item, True)
            elif nested and elem.VR == "UI" and elem.value:
                vals = elem.value if isinstance(elem.value, list) else [elem.value]
                out.extend(str(v) for v in vals)

    walk(ds, False)
    return out


def run_cli(
    src: Path, dst: Path, key: Path, policy: str | None, workers: int
) -> tuple[list[tuple[str, str]], float, str]:
    """``medveil deid`` on src; returns the (input name, reason) pairs, wall seconds, last line."""
    cmd = [
        sys.executable,
        "-m",
        "medveil",
        "deid",
        str(src),
        str(dst),
        "--secret-file",
        str(key),
        "--workers",
        str(workers),
        "--quiet",
        "--no-fsync",
    ]
    if policy:
        cmd += ["--policy", policy]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    quarantined = []
    for line in p.stderr.splitlines():
        if line.startswith("quarantined: "):
            name, _, reason = line[len("quarantined: ") :].partition(": ")
            quarantined.append((name, reason))
    if p.returncode not in (0, 1):
        sys.exit(f"medveil deid failed ({p.returncode}):\n{p.stderr[-3000:]}")
    lines = [x for x in p.stdout.splitlines() if x.startswith("medveil deid ")] or [""]
    return quarantined, wall, lines[-1]


def pydicom_inputs(dst: Path) -> dict[str, str]:
    """Copy pydicom's bundled test files that read as composite instances; name -> class."""
    import pydicom.data

    # The files shipped inside the package only: get_testdata_files would also download
    # pydicom-data's external set.
    local = Path(pydicom.data.__file__).parent / "test_files"
    classes: dict[str, str] = {}
    for i, f in enumerate(sorted(str(p) for p in local.rglob("*") if p.is_file())):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                continue
        except Exception:
            continue
        name = f"pydicom/{i:03d}_{Path(f).name}"
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst / name)
        classes[name] = "pydicom:" + str(ds.get("Modality", "?") or "?")
    return classes


def main() -> None:
    """Generate, run, measure, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument(
        "--no-kept-text", action="store_true", help="no names in ProtocolName and the like"
    )
    ap.add_argument("--pydicom", action="store_true", help="add pydicom's bundled test files")
    ap.add_argument("--policy", help="policy TOML for medveil deid (default: built-in)")
    ap.add_argument("--pixel-text", help="a policy file with this [pixels] pixel_text")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="work in this folder and keep it")
    ap.add_argument("--no-dciodvfy", action="store_true")
    ap.add_argument("--reasons", action="store_true", help="print one full reason per group")
    ap.add_argument("--quality", help="also measure recall/false masks in this pixel_text mode")
    ap.add_argument(
        "--modalities",
        type=int,
        nargs="?",
        const=4,
        default=0,
        help="add tests/corpus/modalities.py's archive of N patients (default 4)",
    )
    args = ap.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medveil-release-"))
    if work.exists() and args.keep:
        shutil.rmtree(work)
    src, dst = work / "input", work / "output"
    t = time.perf_counter()
    man = realistic.generate(
        src, seed=args.seed, patients=args.patients, kept_text=not args.no_kept_text
    )
    if args.modalities:
        more = modalities.generate(src / "modalities", seed=args.seed, patients=args.modalities)
        for inst in more.instances:
            inst.path = f"modalities/{inst.path}"
        man.instances += more.instances
        man.uids += more.uids
        for p, ids in more.identifiers.items():
            man.identifiers[100 + p] = ids
    gen_s = time.perf_counter() - t
    classes = {i.path: i.cls for i in man.instances}
    extra = pydicom_inputs(src) if args.pydicom else {}
    classes.update(extra)
    key = work / "site.key"
    key.write_bytes(SECRET)
    key.chmod(0o600)
    print(
        f"generated {len(man.instances)} instances in {gen_s:.1f} s"
        + (f", plus {len(extra)} pydicom test files" if extra else "")
    )

    policy = args.policy
    if args.pixel_text:
        if policy:
            sys.exit("give --policy or --pixel-text, not both")
        policy = str(work / "pixel-text.toml")
        Path(policy).write_text(f'[pixels]\npixel_text = "{args.pixel_text}"\n')
    quarantined, wall, last = run_cli(src, dst, key, policy, args.workers)
    print(f"medveil deid: {wall:.1f} s; {last}")

    from medveil.policy.keys import Keyed

    keyed = Keyed(SECRET)
    new_of = {u: keyed.uid(u) for u in man.uids}
    orig_of_new = {v: k for k, v in new_of.items()}
    out_uids: set[str] = set()
    outputs = sorted(dst.glob("*/*/*/*.dcm"))  # not the DICOMDIR folder's copies

    needles = [b for s in man.all_identifiers() for b in modalities.needle_bytes(s)]
    # pydicom files: each output is searched for its own input's name parts and ID (4+
    # characters), found through the new SOP Instance UID.
    own_needles: dict[str, list[bytes]] = {}
    for name in extra:
        ds = pydicom.dcmread(src / name, stop_before_pixels=True)
        words = [str(ds.get("PatientID", ""))]
        words += re.split(r"[\^ ]", str(ds.get("PatientName", "")))
        # A word the input also holds outside the patient's identity (a name such as
        # "Anonymized" also in InstitutionName, "Text" in the SR tree) proves nothing.
        for kw in ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames"):
            if kw in ds:
                del ds[kw]
        rest = (
            " ".join(str(e.value) for e in ds.iterall() if e.VR not in ("OB", "OW", "UN", "SQ"))
            .upper()
            .encode(errors="replace")
        )
        own_needles[keyed.uid(str(ds.SOPInstanceUID))] = sorted(
            {w.upper().encode() for w in words if len(w.strip()) >= 4} - {b""}
        )
        own_needles[keyed.uid(str(ds.SOPInstanceUID))] = [
            n
            for n in own_needles[keyed.uid(str(ds.SOPInstanceUID))]
            if n not in rest and n not in DUMMY_WORDS
        ]
    quar_by_cls: dict[str, Counter[str]] = defaultdict(Counter)
    full_reason: dict[str, str] = {}
    for name, reason in quarantined:
        cls = classes.get(name, "other")
        rc = reason_class(reason)
        quar_by_cls[cls][rc] += 1
        full_reason.setdefault(rc, f"{name}: {reason}")
    stats: dict[str, Counter[str]] = defaultdict(Counter)
    for cls in classes.values():
        stats[cls]["instances"] += 1
    dcio = None if args.no_dciodvfy else shutil.which("dciodvfy")
    input_of_sop = {i.sop_instance_uid: i for i in man.instances}
    leak_examples: list[str] = []
    released_inputs: set[str] = set()
    for out in outputs:
        ds = pydicom.dcmread(out)
        out_uids.add(str(ds.SOPInstanceUID))
        orig = orig_of_new.get(str(ds.SOPInstanceUID))
        inst = input_of_sop.get(orig) if orig else None
        cls = inst.cls if inst else None
        if inst is None and extra:
            cls = "pydicom:" + str(ds.get("Modality", "?") or "?")
        cls = cls or CLASS_OF_SOP.get(str(ds.SOPClassUID), "other")
        st = stats[cls]
        st["on disk"] += 1
        if inst is not None:
            released_inputs.add(inst.path)
        mine = needles if inst is not None else own_needles.get(str(ds.SOPInstanceUID), [])
        hits = leaked(header_bytes(out), mine)
        if hits:
            st["header leaks"] += 1
            if len(leak_examples) < 12:
                tags = _where(ds, [mine[i] for i in hits])
                leak_examples.append(f"{cls}: {', '.join(tags)}")
        if inst is not None and inst.text_boxes:
            if boxes_masked(ds, inst.text_boxes):
                st["pixel leaks"] += 1
        if inst is not None:
            for u in reference_uids(ds):
                if u in new_of:
                    st["unresolved refs"] += 1  # an input UID left as it was
                elif u.startswith("2.25.") and u not in orig_of_new:
                    st["unresolved refs"] += 1  # a new UID that is no input's
        if dcio and (inst is not None or extra):
            src_path = src / inst.path if inst else None
            if src_path is None:
                continue  # pydicom files: output -> input is not known here
            before, after = dciodvfy_errors(src_path), dciodvfy_errors(out)
            assert before is not None and after is not None
            new = after - before
            st["new dciodvfy errors"] += sum(new.values())
            st["files with new errors"] += bool(new)
            for msg in new:
                full_reason.setdefault("dciodvfy: " + msg, str(inst.path))
    # References to instances that were quarantined are reported apart from the broken ones.
    for cls, st in stats.items():  # written = not quarantined (the input side's count)
        st["released"] = st["instances"] - sum(quar_by_cls.get(cls, Counter()).values())
    _print_table(stats, quar_by_cls, bool(dcio))
    if leak_examples:
        print("\nleak examples (class: attribute):")
        for e in leak_examples:
            print("  " + e)
    if args.reasons:
        print("\none input per reason / new dciodvfy error:")
        for rc, full in sorted(full_reason.items()):
            print(f"  [{rc}]\n      {full[:400]}")
    run_summary = json.loads((dst / ".medveil" / "summary.json").read_text())
    print(
        "run summary: {written} written, {duplicates} duplicates, {replaced} DICOMDIR "
        "replaced (new one: {dicomdir}), {unresolved_references} unresolved references, "
        "{references_unchecked} files' references unchecked".format(
            **{
                k: run_summary.get(k) or 0
                for k in (
                    "written",
                    "duplicates",
                    "replaced",
                    "unresolved_references",
                    "references_unchecked",
                )
            },
            dicomdir=run_summary.get("dicomdir") or "none",
        )
    )
    if args.quality:
        quality(man, src, args.quality)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def _where(ds: pydicom.Dataset, needles: list[bytes]) -> list[str]:
    """Keywords of the elements (any depth) whose value holds one of ``needles``."""
    found: list[str] = []

    def walk(d: pydicom.Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)
            elif elem.tag != 0x7FE00010 and elem.VR not in ("OB", "OW"):
                v = str(elem.value).upper().encode()
                if any(n in v for n in needles):
                    found.append(elem.keyword or str(elem.tag))

    walk(ds)
    return sorted(set(found)) or ["(raw bytes)"]


def _print_table(stats: dict[str, Counter[str]], quar: dict[str, Counter[str]], dcio: bool) -> None:
    cols = ["instances", "released", "on disk", "header leaks", "pixel leaks", "unresolved refs"]
    if dcio:
        cols += ["new dciodvfy errors", "files with new errors"]
    print("\n| class | " + " | ".join(cols) + " | quarantined by reason |")
    print("|---" * (len(cols) + 2) + "|")
    total: Counter[str] = Counter()
    for cls in sorted(stats):
        st = stats[cls]
        total.update(st)
        q = "; ".join(f"{n} {r}" for r, n in quar.get(cls, Counter()).most_common())
        print(f"| {cls} | " + " | ".join(str(st[c]) for c in cols) + f" | {q} |")
    rate = total["released"] / max(1, total["instances"])
    print(
        "| **all** | "
        + " | ".join(str(total[c]) for c in cols)
        + f" | {sum(sum(c.values()) for c in quar.values())} |"
    )
    print(f"\nreleased {total['released']}/{total['instances']} = {100 * rate:.1f} %")
    for prefix in ("pydicom:",):
        sub = [st for cls, st in stats.items() if cls.startswith(prefix)]
        if sub:
            n, r = sum(st["instances"] for st in sub), sum(st["released"] for st in sub)
            print(f"of which {prefix[:-1]}: released {r}/{n} = {100 * r / n:.1f} %")
    print(
        "('on disk' counts output files found per class: fewer than released when inputs "
        "share a SOP Instance UID and their outputs are identical, written once; different "
        "ones are each written, as <uid>.dcm, <uid>~2.dcm, ...)"
    )


def quality(man: realistic.Manifest, src: Path, mode: str) -> None:
    """Recall and false-mask area of PixelCleaner(mode) on the generator's burned-in images."""
    from medveil.pixels.cleaner import PixelCleaner

    cleaner = PixelCleaner(pixel_text=mode)
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    false_area: dict[str, list[float]] = defaultdict(list)
    t_total = 0.0
    for inst in man.instances:
        if inst.cls not in ("US", "SC", "XA"):
            continue
        ds = pydicom.dcmread(src / inst.path)
        t = time.process_time()
        try:
            rep = cleaner.clean(ds)
        except Exception as exc:  # counted, not fatal: the bench reports what happens
            rows[inst.cls]["quarantined"] += 1
            rows[inst.cls][f"q:{reason_class(str(exc))}"] += 1
            continue
        t_total += time.process_time() - t
        h, w, frames = inst.shape
        mask = np.zeros((frames, h, w), dtype=bool)
        for r0, r1, c0, c1, f0, f1 in rep.regions:
            mask[f0:f1, r0:r1, c0:c1] = True
        near = np.zeros((frames, h, w), dtype=bool)
        for f0, f1, r0, r1, c0, c1 in inst.text_boxes:
            rows[inst.cls]["lines"] += 1
            rows[inst.cls]["found"] += bool(mask[f0:f1, r0:r1, c0:c1].all())
            near[f0:f1, max(0, r0 - 6) : r1 + 6, max(0, c0 - 6) : c1 + 6] = True
        rows[inst.cls]["images"] += 1
        false_area[inst.cls].append(float((mask & ~near).mean()))
        for r0, r1, c0, c1, f0, f1 in rep.regions:
            rows[inst.cls]["boxes"] += 1
            rows[inst.cls]["spurious"] += not near[f0:f1, r0:r1, c0:c1].any()
    print(f"\nburned-in text, pixel_text = {mode!r} (PixelCleaner, CPU {t_total:.2f} s):")
    print(
        "| class | images | lines | fully masked | recall | masked boxes | boxes on no text "
        "| area masked > 6 px from text, mean | max |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for cls, c in sorted(rows.items()):
        fa = false_area[cls] or [0.0]
        print(
            f"| {cls} | {c['images']} | {c['lines']} | {c['found']} | "
            f"{c['found'] / max(1, c['lines']):.3f} | {c['boxes']} | {c['spurious']} | "
            f"{100 * np.mean(fa):.2f} % | "
            f"{100 * max(fa):.2f} % |"
        )
        for k, v in c.items():
            if k.startswith("q:"):
                print(f"|   quarantined: {k[2:]} | {v} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
