"""The safety net: standard elements Table E.1-1 does not list get a rule by their VR."""

from __future__ import annotations

import csv
import io
from importlib import resources

import pydicom
import pytest
from medveil.engine import instance
from medveil.engine.dataset import Deidentifier
from medveil.policy.net import FREE_TEXT_VRS, keep_list, net_action
from medveil.policy.schema import STRUCTURAL_KEEP, Policy
from medveil.policy.standard import Option, table_rows
from pydicom.datadict import DicomDictionary, dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECRET = bytes(range(32))

# The hiding places the issue lists, each with a canary value of its VR.
CANARIES = {
    "DocumentAuthorTrial": "Canary^Author",
    "SecondaryReviewerName": "Canary^Reviewer",
    "EvaluatorName": "Canary^Evaluator",
    "RetrieveURL": "https://canary-host.example/studies/1.2.3",
    "DocumentTitle": "Report for CANARYTITLE",
    "CommentsOnTheScheduledProcedureStep": "call CANARYCOMMENT",
    "SOPInstanceUIDOfConcatenationSource": "1.2.826.0.1.3680043.8.498.20240101.77",
    "MultiFrameSourceSOPInstanceUID": "1.2.826.0.1.3680043.8.498.20240102.78",
    "ReferencedColorPaletteInstanceUID": "1.2.826.0.1.3680043.8.498.20240103.79",
    "TextValue": "Dr CANARYTEXT saw the patient",
    "SecondaryReviewDate": "20240304",
}


def listed_tags() -> set[int]:
    """Tags Table E.1-1 names (exact rows; masks are checked through the compiled policy)."""
    out = set()
    for row in table_rows():
        tag = tag_for_keyword(row.keyword) if row.keyword else None
        if tag is not None:
            out.add(tag)
    return out


def test_every_unlisted_dictionary_element_gets_its_vr_rule() -> None:
    compiled = Policy().compile()
    listed = listed_tags()
    checked = 0
    for tag, (vr, _vm, _name, _retired, keyword) in DicomDictionary.items():
        if tag in listed or tag >> 16 in (0x0000, 0xFFFE) or keyword in Policy().pseudonymized:
            continue
        rule = compiled.rule_for(tag)
        if rule is None:
            assert vr not in FREE_TEXT_VRS | {"PN", "UI", "DA", "DT", "TM"}, keyword
            continue
        if rule.decided_by != "safety-net":
            continue
        checked += 1
        entry = keep_list().get(tag)
        if vr == "PN":
            assert rule.action == "X/Z"
        elif vr == "UI":
            assert rule.action == ("K" if entry else "U"), keyword
        elif vr in FREE_TEXT_VRS:
            kept = entry is not None and (entry.when is None or entry.when in Policy().options)
            assert rule.action == ("K" if kept else "X/Z"), keyword
        elif vr in ("DA", "DT"):
            assert rule.action == "C"  # the default policy shifts dates
        elif vr == "TM":
            assert rule.action == "K"
        assert rule.why
    assert checked > 450


@pytest.mark.parametrize(
    ("options", "date", "time"),
    [
        ((Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,), "C", "K"),
        ((Option.RETAIN_LONGITUDINAL_FULL_DATES,), "K", "K"),
        ((), "X/Z", "X/Z"),
    ],
)
def test_dates_follow_the_date_options(options, date, time) -> None:
    got = frozenset(options)
    assert net_action(0x00140102, "DA", got)[0] == date  # type: ignore[index]
    assert net_action(0x00080404, "DT", got)[0] == date  # type: ignore[index]
    assert net_action(0x00140103, "TM", got)[0] == time  # type: ignore[index]


def test_keep_list_file_is_consistent() -> None:
    text = resources.files("medveil.data").joinpath("safety_net_keep.csv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    listed = listed_tags()
    assert len({r["keyword"] for r in rows}) == len(rows) == len(keep_list())
    for row in rows:
        tag = tag_for_keyword(row["keyword"])
        assert tag is not None and tag not in listed, row["keyword"]
        # Only the VRs the net decides: an entry for any other VR would be dead data.
        assert dictionary_VR(tag) in FREE_TEXT_VRS | {"UI"}, row["keyword"]
        assert len(row["reason"]) > 8
        if row["when"]:
            Option.from_name(row["when"])


def test_image_attributes_are_never_blanked() -> None:
    # The net must not cost the image: every structural attribute is listed by the
    # table (and kept there), kept by the net's keep-list, or outside the net's VRs.
    compiled = Policy().compile()
    for kw in STRUCTURAL_KEEP:
        tag = tag_for_keyword(kw)
        assert tag is not None
        rule = compiled.rule_for(tag)
        if rule is not None and rule.decided_by == "safety-net":
            assert rule.action == "K", kw


def _dataset_with_canaries() -> Dataset:
    ds = Dataset()
    ds.PatientID = "PID-CANARY"
    ds.PatientName = "Doe^John"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Manufacturer = "ACME MEDICAL"
    ds.ManufacturerModelName = "Scanner 3000"
    ds.CodeValue = "T-A0100"
    for kw, value in CANARIES.items():
        setattr(ds, kw, value)
    item = Dataset()  # the net holds at every depth
    item.EvaluatorName = "Canary^Nested"
    item.DocumentTitle = "nested CANARYNESTED"
    ds.ReferencedImageSequence = Sequence([item])
    return ds


@pytest.mark.parametrize("combined", ["conservative", "minimal"])
def test_canaries_do_not_survive_the_dataset_engine(combined) -> None:
    ds = _dataset_with_canaries()
    Deidentifier(Policy(combined_codes=combined), SECRET).apply(ds, check=False)
    text = str(ds)
    for kw, value in CANARIES.items():
        if kw == "SecondaryReviewDate":
            assert ds.SecondaryReviewDate != value  # shifted with the patient's offset
            continue
        assert value.split("^")[0] not in text, kw
    assert "CANARYNESTED" not in text and "Canary^Nested" not in text
    assert ds.Manufacturer == "ACME MEDICAL" and ds.CodeValue == "T-A0100"  # keep-list
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    if combined == "conservative":
        assert "SecondaryReviewerName" in ds and ds.SecondaryReviewerName == ""


def test_both_engines_apply_the_net_with_the_same_bytes() -> None:
    ds = _dataset_with_canaries()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    engine = Deidentifier(Policy(), SECRET)
    old = instance.USE_RAW_ENGINE
    try:
        instance.USE_RAW_ENGINE = False
        by_dataset = instance.clean_instance(engine, bytearray(data), "input")
    finally:
        instance.USE_RAW_ENGINE = old
    by_raw = instance._clean_raw(engine, bytearray(data), "input")
    assert by_dataset.status == "written", by_dataset.reason
    assert not isinstance(by_raw, str), by_raw  # the raw engine takes this file
    assert by_raw.status == "written" and by_raw.data == by_dataset.data
    for value in CANARIES.values():
        if value != CANARIES["SecondaryReviewDate"]:
            assert value.encode() not in by_dataset.data
    out = pydicom.dcmread(io.BytesIO(by_dataset.data))
    assert out.Manufacturer == "ACME MEDICAL"


def test_allow_list_mode_has_no_net_and_keep_exempts() -> None:
    remove = Policy(unknown_elements="remove").compile()
    assert not remove.net_tags
    assert remove.rule_for(tag_for_keyword("DocumentTitle")) is None  # removed as unknown
    assert not remove.keeps_unknown(tag_for_keyword("DocumentTitle"))
    for mode in ("keep", "remove"):
        kept = Policy(keep=("DocumentTitle",), unknown_elements=mode).compile()
        rule = kept.rule_for(tag_for_keyword("DocumentTitle"))
        assert rule is not None and (rule.action, rule.decided_by) == ("K", "policy")
        ds = Dataset()
        ds.DocumentTitle = "kept on purpose"
        Deidentifier(Policy(keep=("DocumentTitle",), unknown_elements=mode), SECRET).apply(
            ds, check=False
        )
        assert ds.DocumentTitle == "kept on purpose"


def test_device_ids_follow_retain_device_identity() -> None:
    tag = tag_for_keyword("DeviceID")
    assert Policy().compile().rule_for(tag).action == "K"  # type: ignore[union-attr]
    assert Policy(options=()).compile().rule_for(tag).action == "X/Z"  # type: ignore[union-attr]


def test_instance_uids_under_the_dicom_root_are_replaced() -> None:
    # Well-known means listed in pydicom's UID dictionary, not any UID under 1.2.840.10008.
    minted = "1.2.840.10008.5.1.4.1.1.2.20240101.123456"
    ds = Dataset()
    ds.PatientID = "P1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = minted
    ds.MultiFrameSourceSOPInstanceUID = minted  # decided by the net
    Deidentifier(Policy(), SECRET).apply(ds, check=False)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.SOPInstanceUID.startswith("2.25.")
    assert ds.MultiFrameSourceSOPInstanceUID == ds.SOPInstanceUID  # the same keyed mapping


def _canary_for(vr: str, n: int) -> str:
    if vr == "UI":
        return f"1.2.826.0.1.3680043.8.498.{9000 + n}"
    if vr in ("DA",):
        return "20230405"
    if vr == "DT":
        return "20230405101010"
    if vr == "TM":
        return "101010"
    if vr == "PN":
        return f"Canary{n}^Person"
    if vr == "AE":
        return f"CANARYAE{n}"
    if vr == "UR":
        return f"https://canary{n}.example/x"
    return f"CANARY{n:04d}"[: 16 if vr == "SH" else 64]


@pytest.mark.parametrize("combined", ["conservative", "minimal"])
def test_every_net_vr_through_both_engines(combined) -> None:
    # A sample of the net's tags (up to six per VR and action), top level and nested:
    # the two engines give the same bytes and no emptied or replaced canary survives.
    policy = Policy(combined_codes=combined)
    compiled = policy.compile()
    picked: dict[tuple[str, str], list[int]] = {}
    for tag in sorted(compiled.net_tags):
        vr = dictionary_VR(tag)
        if tag >> 16 in (0x0002, 0x0004) or " " in vr:
            continue
        picked.setdefault((vr, compiled.by_tag[tag].action), []).append(tag)
    ds = _dataset_with_canaries()
    item = ds.ReferencedImageSequence[0]
    expect: dict[str, str] = {}
    for n, ((vr, action), tags) in enumerate(sorted(picked.items())):
        for i, tag in enumerate(tags[:: max(1, len(tags) // 6)][:6]):
            if tag in ds:
                continue
            value = _canary_for(vr, n * 10 + i)
            if (vr, action) == ("UI", "K"):
                # Class UIDs hold classes: a UID the post-check cannot tell from an
                # instance's would quarantine the file whatever the policy says.
                value = ["1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.1"][i % 2]
            (item if i % 2 else ds).add_new(tag, vr, value)
            expect[value] = action
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    engine = Deidentifier(policy, SECRET)
    old = instance.USE_RAW_ENGINE
    try:
        instance.USE_RAW_ENGINE = False
        by_dataset = instance.clean_instance(engine, bytearray(buf.getvalue()), "input")
    finally:
        instance.USE_RAW_ENGINE = old
    by_raw = instance._clean_raw(engine, bytearray(buf.getvalue()), "input")
    assert by_dataset.status == "written", by_dataset.reason
    assert not isinstance(by_raw, str), by_raw
    assert by_raw.data == by_dataset.data
    assert {a for a in expect.values()} >= {"X/Z", "U", "K", "C"}
    for value, action in expect.items():
        if value.startswith("1.2.840.10008."):
            continue  # a dictionary UID is in the output anyway
        present = value.encode() in by_dataset.data
        assert present == (action == "K"), (value, action)
