"""The second realistic generator (tests/corpus/modalities.py): sane files, and a run over it."""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from medveil import Policy
from medveil.policy.keys import Keyed
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from tests.corpus import modalities, realistic

SECRET = bytes(range(32))
#: Classes whose SOP class is a vendor's own (see the last test).
PRIVATE_CLASSES = {"CSANI", "PHSD"}
#: dciodvfy errors the generated files may have (per class, a pattern), and why: the
#: rest of every kind is written as its IOD asks.
KNOWN_DCIODVFY: dict[str, dict[str, str]] = {
    "PHSD": {"Information Object Not found": "a private SOP class: no public IOD to check"},
    "CSANI": {
        "Information Object Not found": "a private SOP class: no public IOD to check",
        r"PixelData\(7fe0,0010\).*Bits Allocated": "dciodvfy reads Siemens' (7FE1,xx10) "
        "spectroscopy data as pixel data, as it does in Siemens' own files",
    },
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, realistic.Manifest]:
    root = tmp_path_factory.mktemp("modalities")
    return root, modalities.generate(root, patients=4)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    modalities.generate(tmp_path / "a", seed=3, patients=1)
    modalities.generate(tmp_path / "b", seed=3, patients=1)
    modalities.generate(tmp_path / "c", seed=4, patients=1)
    assert realistic.digest(tmp_path / "a") == realistic.digest(tmp_path / "b")
    assert realistic.digest(tmp_path / "a") != realistic.digest(tmp_path / "c")


def test_classes_syntaxes_and_pixels(archive: tuple[Path, realistic.Manifest]) -> None:
    root, man = archive
    assert set(Counter(i.cls for i in man.instances)) == set(modalities.CLASS_OF_SOP.values())
    assert set(modalities.SYNTAX_NAMES.values()) - {"big-endian", "jpeg-baseline"} <= {
        i.syntax for i in man.instances
    }
    # No UID of this archive is one of realistic.py's (the two share bench runs).
    assert not set(man.uids) & set(realistic.generate(root / "_r", patients=1).uids)
    shutil.rmtree(root / "_r")
    for inst in man.instances:
        ds = pydicom.dcmread(root / inst.path, force=True)
        assert modalities.CLASS_OF_SOP[ds.SOPClassUID] == inst.cls
        # A bare data set (no file meta) reads as Implicit VR Little Endian.
        syntax = ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian)
        ds.file_meta.TransferSyntaxUID = syntax
        assert modalities.SYNTAX_NAMES[syntax] == inst.syntax
        rows, cols, frames = inst.shape
        if frames:
            arr = ds.pixel_array  # every image decodes with the installed plugins
            colour = int(ds.SamplesPerPixel) == 3
            assert (arr.shape[-3:-1] if colour else arr.shape[-2:]) == (rows, cols), inst.path
            assert (arr.shape[0] if frames > 1 else 1) == frames
            for f0, f1, r0, r1, c0, c1 in inst.text_boxes:  # the planted text is there
                patch = (arr if frames > 1 else arr[None])[f0:f1, r0:r1, c0:c1]
                assert patch.max() > patch.min()
            assert arr.max() > arr.min()
        if "PerFrameFunctionalGroupsSequence" in ds:
            per = ds.PerFrameFunctionalGroupsSequence
            assert len(per) == ds.NumberOfFrames
            n_dims = len(ds.DimensionIndexSequence)
            for item in per:
                values = item.FrameContentSequence[0].DimensionIndexValues
                assert len(values if isinstance(values, list) else [values]) == n_dims


def _dciodvfy(path: Path, tmp: Path) -> list[str]:
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        # dciodvfy cannot read deflated files: it checks the same dataset inflated.
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = tmp / "inflated.dcm"
        ds.save_as(path, enforce_file_format=True)
    dcio = shutil.which("dciodvfy")
    assert dcio
    p = subprocess.run([dcio, "-new", str(path)], capture_output=True, text=True, timeout=60)
    return [x for x in (p.stdout + p.stderr).splitlines() if x.startswith("Error")]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_finds_no_errors(archive: tuple[Path, realistic.Manifest], tmp_path: Path) -> None:
    root, man = archive
    seen: set[tuple[str, str]] = set()
    errors: list[tuple[str, str]] = []
    for inst in man.instances:
        if (inst.cls, inst.syntax) in seen and inst.cls in ("PT", "MG"):
            continue  # one slice per class and syntax is enough (the rest are alike)
        seen.add((inst.cls, inst.syntax))
        errors += [
            (inst.path, e)
            for e in _dciodvfy(root / inst.path, tmp_path)
            if not any(re.search(k, e) for k in KNOWN_DCIODVFY.get(inst.cls, {}))
        ]
    assert not errors, errors[:10]


def _csa_names(blob: bytes) -> dict[str, list[str]]:
    """Parse an SV10 CSA header (the reader nibabel and dcm2niix implement)."""
    assert blob[:8] == b"SV10\x04\x03\x02\x01"
    n, _ = struct.unpack_from("<II", blob, 8)
    at, out = 16, {}
    for _ in range(n):
        name = blob[at : at + 64].split(b"\0")[0].decode()
        _vm, _vr, _sdt, nitems, _x = struct.unpack_from("<i4siii", blob, at + 64)
        at += 84
        vals = []
        for _ in range(nitems):
            length = struct.unpack_from("<iiii", blob, at)[1]
            at += 16
            vals.append(blob[at : at + length].rstrip(b"\0").decode())
            at += length + (-length % 4)
        out[name] = vals
    return out


def test_planted_identity_is_where_the_manifest_says(
    archive: tuple[Path, realistic.Manifest],
) -> None:
    """The PDFs' text, the presentation states, the SRs and the vendor blocks name the
    patient: a run that releases them unchanged would leak."""
    root, man = archive
    found: Counter[str] = Counter()
    for inst in man.instances:
        ds = pydicom.dcmread(root / inst.path, force=True)
        family = modalities._plain(str(ds.PatientName).split("^")[0]).encode()
        if inst.cls == "PDF":
            doc = bytes(ds.EncapsulatedDocument)
            assert doc.startswith(b"%PDF-") and len(doc) - ds.EncapsulatedDocumentLength <= 1
            assert family in modalities.pdf_text(doc).upper()
            found["pdf"] += family not in doc.upper()  # hidden by Flate compression
        if inst.cls == "PR":
            texts = [
                t.UnformattedTextValue
                for a in ds.GraphicAnnotationSequence
                for t in a.TextObjectSequence
            ]
            found["pr"] += any(family.decode() in t for t in texts)
        for elem in ds.iterall():
            if (
                elem.tag.is_private
                and elem.VR in ("LO", "SH")
                and family[:8] in modalities._plain(str(elem.value)).upper().encode()
            ):
                found["private text"] += 1
        if (0x0029, 0x1020) in ds:
            csa = _csa_names(ds[0x0029, 0x1020].value)
            protocol = csa["MrPhoenixProtocol"][0]
            found["csa"] += family.decode() in protocol
    assert found["pdf"] >= 1 and found["pr"] >= 3 and found["csa"] >= 1
    assert found["private text"] >= 5
    for ids in man.identifiers.values():
        assert len(ids) >= 10


def test_default_policy_releases_every_kind_and_leaks_nothing(
    archive: tuple[Path, realistic.Manifest], tmp_path: Path
) -> None:
    """The default policy through ``deidentify_archive``: nothing planted comes out."""
    from medveil.run.archive import deidentify_archive

    src, man = archive
    dst = tmp_path / "out"
    reasons: list[str] = []
    deidentify_archive(
        src,
        dst,
        policy=Policy.default(),
        secret=SECRET,
        workers=1,
        durable=False,
        on_quarantine=lambda name, why: reasons.append(f"{name}: {why}"),
    )
    keyed = Keyed(SECRET)
    by_new = {keyed.uid(i.sop_instance_uid): i for i in man.instances}
    needles = [b for s in man.all_identifiers() for b in modalities.needle_bytes(s)]
    released: set[str] = set()
    for out in dst.rglob("*.dcm"):
        if ".medveil" in out.parts:
            continue
        ds = pydicom.dcmread(out)
        inst = by_new[str(ds.SOPInstanceUID)]
        released.add(inst.path)
        if "PixelData" in ds:
            del ds["PixelData"]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        buf = io.BytesIO()
        ds.save_as(buf)
        head = buf.getvalue()
        if "EncapsulatedDocument" in ds:
            head += modalities.pdf_text(bytes(ds.EncapsulatedDocument))
        assert not [n for n in needles if n in head.upper()], inst.path
    kinds = Counter(i.cls for i in man.instances if i.path in released)
    assert set(kinds) >= set(modalities.CLASS_OF_SOP.values()) - PRIVATE_CLASSES, reasons
    held = [i for i in man.instances if i.path not in released]
    # Held back, rightly: a slide's OVERVIEW and LABEL images (the label's barcode and
    # handwriting cannot be found for sure). Wrongly, for now: vendors' private SOP
    # classes (the post-check learns the class UID as an identifying UID; a fix is asked
    # of verify.values.classify). Nothing else.
    # (the VOLUME image, two tiles, is the slide's research content: it is released)
    labels = {i.path for i in man.instances if i.cls == "SM" and i.shape[2] != 2}
    assert {i.path for i in held if i.cls == "SM"} == labels, reasons
    assert {i.cls for i in held} <= PRIVATE_CLASSES | {"SM"}, reasons
    assert all("specimen label" in r for r in reasons if "/12_SM/" in r), reasons
