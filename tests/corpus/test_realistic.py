"""The realistic archive generator, and a default-policy run over it with pixel_text auto."""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
from medveil import Policy
from medveil.policy.keys import Keyed
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from tests.corpus import realistic

SECRET = bytes(range(32))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = realistic.generate(tmp_path / "a", seed=7, patients=1)
    b = realistic.generate(tmp_path / "b", seed=7, patients=1)
    realistic.generate(tmp_path / "c", seed=8, patients=1)
    assert realistic.digest(tmp_path / "a") == realistic.digest(tmp_path / "b")
    assert realistic.digest(tmp_path / "a") != realistic.digest(tmp_path / "c")
    assert dataclasses.asdict(a) == dataclasses.asdict(b)


def test_classes_syntaxes_text_and_dicomdir(tmp_path: Path) -> None:
    man = realistic.generate(tmp_path, patients=6)
    assert 300 <= len(man.instances) <= 500
    assert set(Counter(i.cls for i in man.instances)) == {
        "CT", "MR", "CR", "US", "SC", "XA", "SR", "RTSTRUCT"
    }  # fmt: skip
    assert set(realistic.SYNTAX_NAMES.values()) <= {i.syntax for i in man.instances}
    assert len({i.patient for i in man.instances}) == 6
    for inst in man.instances:
        ds = pydicom.dcmread(tmp_path / inst.path)
        assert realistic.SYNTAX_NAMES[ds.file_meta.TransferSyntaxUID] == inst.syntax
        if inst.text_boxes:  # the planted text is really in the pixels
            arr = ds.pixel_array
            arr = arr if arr.ndim >= 3 and arr.shape[0] == inst.shape[2] else arr[None]
            f0, f1, r0, r1, c0, c1 = inst.text_boxes[0]
            assert arr[f0:f1, r0:r1, c0:c1].max() > arr[f0:f1, r0:r1, c0:c1].min()
    fs = pydicom.dcmread(tmp_path / man.dicomdir)
    assert len(fs.DirectoryRecordSequence) > 10
    m2 = realistic.Manifest.load(_saved(man, tmp_path / "m.json"))
    assert m2 == man


def _saved(man: realistic.Manifest, path: Path) -> Path:
    man.save(path)
    return path


def _header(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    if "PixelData" in ds:
        del ds["PixelData"]
    if ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue().upper()


def _nested_uids(ds: pydicom.Dataset, nested: bool = False) -> list[str]:
    out = []
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out += _nested_uids(item, True)
        elif nested and elem.VR == "UI" and elem.value:
            out.append(str(elem.value))
    return out


def test_default_policy_with_auto_releases_masked_and_leaks_nothing(tmp_path: Path) -> None:
    """Issue 19: burned-in classes released with their text masked; no planted value out.

    The names in kept text (ProtocolName and the like) are left out here: that is the
    header cleaner's part (item 3), measured by bench/release.py.
    """
    from medveil.run.archive import deidentify_archive

    src, dst = tmp_path / "in", tmp_path / "out"
    man = realistic.generate(src, patients=2, kept_text=False)
    policy = dataclasses.replace(Policy.default(), pixel_text="auto")
    reasons: list[str] = []
    deidentify_archive(
        src,
        dst,
        policy=policy,
        secret=SECRET,
        workers=1,
        durable=False,
        on_quarantine=lambda name, why: reasons.append(f"{name}: {why}"),
    )
    keyed = Keyed(SECRET)
    new_of = {u: keyed.uid(u) for u in man.uids}
    by_new = {new_of[i.sop_instance_uid]: i for i in man.instances}
    needles = [s.encode() for s in man.all_identifiers()]
    released: set[str] = set()
    refs = 0
    for out in dst.rglob("*.dcm"):
        if ".medveil" in out.parts:
            continue
        ds = pydicom.dcmread(out)
        inst = by_new[str(ds.SOPInstanceUID)]
        released.add(inst.path)
        head = _header(out)
        assert not [n for n in needles if n in head], inst.path
        for f0, f1, r0, r1, c0, c1 in inst.text_boxes:
            arr = ds.pixel_array
            arr = arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[None]
            patch = arr[f0:f1, r0:r1, c0:c1]
            assert np.ptp(patch) == 0, f"text left in {inst.path}"
        for u in _nested_uids(ds):
            if u in new_of or u in new_of.values():
                refs += 1
                assert u not in new_of, f"input UID left in a reference of {inst.path}"
    assert refs > 50  # the SR and RT references were seen
    burned = [i for i in man.instances if i.text_boxes]
    assert burned and all(i.path in released for i in burned), reasons
