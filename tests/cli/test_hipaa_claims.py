"""``medveil profile --hipaa`` claims only what a policy does: a pseudonym is not removal,
and the safe-harbor preset's P and Q claims hold on real files run through the archive."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from medveil.cli.main import main
from medveil.engine.dataset import Deidentifier
from medveil.policy.filters import filter_verdict
from medveil.policy.hipaa import CATEGORIES, _sample, assess
from medveil.policy.presets import PRESETS, load_policy
from medveil.policy.schema import Policy
from medveil.run.archive import deidentify_archive
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword

SECRET = bytes(range(32))
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"

# Headers that show no face: the safe-harbor filters must let them through.
NO_FACE = (
    {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "Modality": "CT", "BodyPartExamined": "CHEST"},
    {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4", "Modality": "MR", "BodyPartExamined": "KNEE"},
    {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.1", "Modality": "CR"},  # a radiograph
    {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.6.1", "Modality": "US"},
    {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4", "Modality": "MR", "BodyPartExamined": "HEART"},
)


def _policies() -> dict[str, Policy]:
    out = {name: load_policy(name) for name in PRESETS}
    out["id-only"] = Policy.from_toml('[profile]\noptions = []\npseudonymize = ["PatientID"]\n')
    out["name-only"] = Policy.from_toml('[profile]\noptions = []\npseudonymize = ["PatientName"]\n')
    return out


@pytest.mark.parametrize("name", list(_policies()))
def test_a_pseudonymised_element_never_makes_its_category_handled(name: str) -> None:
    policy = _policies()[name]
    compiled = policy.compile()
    status = {s.category: s for s in assess(compiled)}
    checked = 0
    for category, keywords, _retaining in CATEGORIES:
        for kw in keywords:
            tag = tag_for_keyword(kw)
            rule = compiled.rule_for(tag) if tag is not None else None
            if rule is not None and rule.action == "pseudonym":
                checked += 1
                assert any(
                    kw in r and "pseudonymised, not removed" in r
                    for r in status[category].open_because
                ), (category, kw)
    assert checked == sum(kw in policy.pseudonymized for _c, kws, _r in CATEGORIES for kw in kws)


def test_a_pseudonymised_patient_id_leaves_licences_open_and_names_handled() -> None:
    status = {s.category[0]: s for s in assess(_policies()["id-only"].compile())}
    for letter in "GHKL":
        assert status[letter].open_because, letter
    assert not status["A"].open_because  # the name is emptied by the Basic Profile
    status = {s.category[0]: s for s in assess(_policies()["name-only"].compile())}
    assert status["A"].open_because == (
        "PatientName is pseudonymised, not removed: a keyed hash of the original is a code "
        "derived from it (164.514(c)(1))",
    )
    assert not status["K"].open_because


def test_safe_harbor_shows_no_open_category(capsys) -> None:
    assert main(["profile", "--policy", "safe-harbor", "--hipaa"]) == 0
    out = capsys.readouterr().out
    assert "OPEN" not in out and out.count("    handled") == 18
    assert "note: a head volume whose header names another body part" in out
    assert main(["profile", "--policy", "research", "--hipaa"]) == 0
    out = capsys.readouterr().out
    assert "PatientName is pseudonymised, not removed" in out
    assert "no [filter] rule keeps these out, and medveil does not deface" in out


def test_the_hipaa_view_and_the_engine_share_one_filter_evaluator() -> None:
    # One function decides both what --hipaa claims and what clean_instance excludes.
    from medveil.engine import instance
    from medveil.policy import hipaa

    assert hipaa.filter_verdict is instance.filter_verdict is filter_verdict


def test_safe_harbor_lets_faceless_classes_through() -> None:
    filters = load_policy("safe-harbor").filters
    for header in NO_FACE:
        assert filter_verdict(_sample(header), filters) is None, header


def _file(folder: Path, name: str, source: str, **changes: str) -> None:
    ds = pydicom.dcmread(get_testdata_file(source))
    for kw, value in changes.items():
        setattr(ds, kw, value)
    if "SOPClassUID" in changes:
        ds.file_meta.MediaStorageSOPClassUID = changes["SOPClassUID"]
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[name])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / name)


def test_safe_harbor_run_keeps_face_classes_out_of_the_release(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _file(src, "head-ct.dcm", "CT_small.dcm", BodyPartExamined="HEAD")
    _file(src, "ct-no-part.dcm", "CT_small.dcm")
    _file(src, "brain-mr.dcm", "MR_small.dcm", SeriesDescription="T1 AX BRAIN")
    _file(src, "photo.dcm", "CT_small.dcm", SOPClassUID=VL_PHOTO, Modality="XC")
    _file(src, "chest-ct.dcm", "CT_small.dcm", BodyPartExamined="CHEST")
    _file(src, "knee-mr.dcm", "MR_small.dcm", BodyPartExamined="KNEE")
    summary = deidentify_archive(
        src, tmp_path / "out", policy=load_policy("safe-harbor"), secret=SECRET, workers=1
    )
    assert sum(summary.excluded.values()) == 4
    assert summary.written == 2
    released = [pydicom.dcmread(p) for p in (tmp_path / "out").rglob("*.dcm")]
    assert sorted(str(ds.BodyPartExamined) for ds in released) == ["CHEST", "KNEE"]


def test_safe_harbor_patterns_clean_numbers_out_of_descriptions() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BodyPartExamined = "CHEST"
    ds.SeriesDescription = "CHEST D1234567 1HGCM82633A004352 078-05-1120 7ABC123"
    Deidentifier(load_policy("safe-harbor"), SECRET).apply(ds)
    kept = str(ds.get("SeriesDescription", ""))
    assert "CHEST" in kept  # the description is kept, cleaned
    assert not any(ch.isdigit() for ch in kept), kept
